package restic

import (
	"bytes"
	"fmt"
	"regexp"
	"sync"
	"time"
)

// restic retries a failing backend operation for up to 15 minutes (a constant in restic, not an option), printing
// one line to stderr per failed attempt and one when an operation succeeds after retries:
//
//	Save(<data/75a2551384>) returned error, retrying after 805.111612ms: Post "http://…": dial tcp …: connection refused
//	Save(<data/cd38b32cc3>) operation successful after 2 retries
//
// A rest-server or S3 endpoint that goes away under a running command would hold its task, and its location's
// runner slots, for those 15 minutes. custos watches these lines and stops restic once one operation has kept
// failing for Repository.BackendRetryLimit.
var (
	retryLine   = regexp.MustCompile(`^(.+) returned error, retrying after \S+: (.*)$`)
	successLine = regexp.MustCompile(`^(.+) operation successful after \d+ retries$`)
)

// RetryEvent is one of restic's retry lines.
type RetryEvent struct {
	// Op is the backend operation, e.g. "Save(<data/75a2551384>)" or "Stat(<config/>)".
	Op string
	// Failed is true for a failed attempt (Err says why), false for an operation that succeeded after retries.
	Failed bool
	Err    string
}

// ParseRetryLine recognises restic's retry lines; ok is false for every other line.
func ParseRetryLine(line string) (RetryEvent, bool) {
	if m := retryLine.FindStringSubmatch(line); m != nil {
		return RetryEvent{Op: m[1], Failed: true, Err: m[2]}, true
	}
	if m := successLine.FindStringSubmatch(line); m != nil {
		return RetryEvent{Op: m[1]}, true
	}
	return RetryEvent{}, false
}

// BackendStalled is why custos stopped a restic command: one backend operation kept failing for longer than the
// limit.
type BackendStalled struct {
	Op    string
	For   time.Duration
	Limit time.Duration
	Err   string
}

func (e *BackendStalled) Error() string {
	return fmt.Sprintf("the repository's backend kept failing for %s (limit %s; restic would retry for 15m): %s: %s",
		e.For.Round(time.Second), e.Limit, e.Op, e.Err)
}

// stallWatch follows restic's stderr line by line and reports a BackendStalled once an operation has failed
// without success for limit. Its decisions are a function of the lines seen and the clock it is given, so tests
// drive it with a fake one.
type stallWatch struct {
	limit time.Duration
	now   func() time.Time
	stop  func(error)

	mu      sync.Mutex
	partial []byte
	failing map[string]failure
	stopped *BackendStalled
}

type failure struct {
	since time.Time
	err   string
}

func newStallWatch(limit time.Duration, now func() time.Time, stop func(error)) *stallWatch {
	return &stallWatch{limit: limit, now: now, stop: stop, failing: map[string]failure{}}
}

// Write looks at each complete line of p (a line may span writes).
func (w *stallWatch) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.partial = append(w.partial, p...)
	for {
		i := bytes.IndexByte(w.partial, '\n')
		if i < 0 {
			break
		}
		w.observe(string(bytes.TrimRight(w.partial[:i], "\r")))
		w.partial = w.partial[i+1:]
	}
	if len(w.partial) > 64<<10 { // a line this long is no retry line
		w.partial = w.partial[:0]
	}
	return len(p), nil
}

func (w *stallWatch) observe(line string) {
	ev, ok := ParseRetryLine(line)
	if !ok {
		return
	}
	if !ev.Failed {
		delete(w.failing, ev.Op)
		return
	}
	f, seen := w.failing[ev.Op]
	if !seen {
		f.since = w.now()
	}
	f.err = ev.Err
	w.failing[ev.Op] = f
	w.checkLocked()
}

// check stops the command when an operation has been failing for the limit or longer.
func (w *stallWatch) check() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.checkLocked()
}

func (w *stallWatch) checkLocked() {
	if w.stopped != nil {
		return
	}
	now := w.now()
	var worst *BackendStalled
	for op, f := range w.failing {
		if d := now.Sub(f.since); d >= w.limit && (worst == nil || d > worst.For || d == worst.For && op < worst.Op) {
			worst = &BackendStalled{Op: op, For: d, Limit: w.limit, Err: f.err}
		}
	}
	if worst != nil {
		w.stopped = worst
		w.stop(worst)
	}
}

// every calls check every d until the returned function is called: retry lines come at restic's backoff
// intervals, up to a minute apart, and the command must stop on time between them.
func (w *stallWatch) every(d time.Duration) (stop func()) {
	tick := time.NewTicker(d)
	done := make(chan struct{})
	go func() {
		defer tick.Stop()
		for {
			select {
			case <-tick.C:
				w.check()
			case <-done:
				return
			}
		}
	}()
	return func() { close(done) }
}

// Stalled is the reason the command was stopped, or nil.
func (w *stallWatch) Stalled() *BackendStalled {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.stopped
}
