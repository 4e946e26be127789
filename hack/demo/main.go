// Command demo (make demo) walks one sample clinic through its whole life under custos, on this machine alone: it
// starts the harness's kube-apiserver and etcd, a throwaway PostgreSQL, a directory as the primary backup
// repository and restic's rest-server as the offsite one, runs the custos manager in this process, and then
// provisions the tenant "kliniek-noord", fills its database, shows its snapshots and their expiry, ends its
// contract, fetches and verifies its export, watches the purge and the shredding of its backups, and verifies the
// signed certificate of destruction with the real custos CLI. Every step is printed in plain words with what to
// look at. Everything it started is stopped and removed at the end, on failure and on Ctrl-C.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

func main() {
	keep := flag.Bool("keep", false, "keep the demo's directory (kubeconfig, certificate, public key, bag, audit trail, manager log) after the end")
	hold := flag.Bool("hold", false, "after the last step, keep everything running until Ctrl-C, to look around with kubectl")
	flag.Parse()

	d := &demo{start: time.Now(), keep: *keep, hold: *hold}
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sigs
		d.interrupted.Store(true)
		d.say("")
		d.say("Interrupted: stopping the manager, rest-server, PostgreSQL and the control plane (Ctrl-C again to leave at once).")
		cancel()
		<-sigs
		fmt.Fprintln(os.Stderr, "\ndemo: second interrupt: exiting without cleaning up; temporary directories under", os.TempDir(), "may remain")
		os.Exit(130)
	}()

	err := d.run(ctx)
	cancel()
	cleanupErr := d.cleanup()
	total := time.Since(d.start).Round(100 * time.Millisecond)
	switch {
	case d.interrupted.Load() && !d.completed.Load():
		fmt.Fprintf(os.Stderr, "\ndemo: interrupted after %s; everything it started is stopped\n", total)
		os.Exit(130)
	case err != nil:
		fmt.Fprintf(os.Stderr, "\ndemo FAILED after %s: %v\n", total, err)
		os.Exit(1)
	case cleanupErr != nil:
		fmt.Fprintf(os.Stderr, "\ndemo: every step passed, but cleaning up failed after %s: %v\n", total, cleanupErr)
		os.Exit(1)
	}
	d.printTimes(total)
}

// printTimes ends a successful run with the time each step took.
func (d *demo) printTimes(total time.Duration) {
	fmt.Println()
	fmt.Println("Done. Time per step:")
	for _, s := range d.steps {
		fmt.Printf("  %-34s %9s\n", firstWords(s.title), s.took.Round(100*time.Millisecond))
	}
	fmt.Printf("  %-34s %9s\n", "total (with starting and stopping)", total)
}

// cleanup undoes what run started, newest first, and removes the demo's directory (unless -keep).
func (d *demo) cleanup() error {
	if len(d.cleanups) == 0 && d.dir == "" {
		return nil
	}
	start := time.Now()
	d.header("Cleaning up")
	var errs []error
	for i := len(d.cleanups) - 1; i >= 0; i-- {
		c := d.cleanups[i]
		t0 := time.Now()
		if c.what == "" { // quietly
			if err := c.fn(); err != nil {
				errs = append(errs, err)
			}
			continue
		}
		if err := c.fn(); err != nil {
			d.say("  %-40s FAILED: %v", c.what, err)
			errs = append(errs, fmt.Errorf("%s: %w", c.what, err))
			continue
		}
		d.say("  %-40s stopped (%s)", c.what, time.Since(t0).Round(100*time.Millisecond))
	}
	if d.dir != "" {
		if d.keep {
			d.say("  kept %s (-keep)", d.dir)
		} else if err := os.RemoveAll(d.dir); err != nil {
			errs = append(errs, err)
		} else {
			d.say("  removed %s", d.dir)
		}
	}
	d.steps = append(d.steps, stepTime{title: "cleanup", took: time.Since(start)})
	return errors.Join(errs...)
}

type stepTime struct {
	title string
	took  time.Duration
}

type cleanupFn struct {
	what string
	fn   func() error
}

// say prints one line, prefixed with the time since the start; safe from any goroutine.
func (d *demo) say(format string, a ...any) {
	d.mu.Lock()
	defer d.mu.Unlock()
	line := fmt.Sprintf(format, a...)
	if line == "" {
		fmt.Println()
		return
	}
	el := time.Since(d.start)
	fmt.Printf("[%02d:%02d] %s\n", int(el.Minutes()), int(el.Seconds())%60, line)
}

// block prints a block of text (a command's output) indented, without timestamps.
func (d *demo) block(text string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	text = strings.TrimRight(text, "\n")
	if text == "" {
		return
	}
	for _, l := range strings.Split(text, "\n") {
		fmt.Println("        " + l)
	}
}

func (d *demo) header(title string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	fmt.Println()
	fmt.Println("━━ " + title + " " + strings.Repeat("━", max(3, 100-len([]rune(title)))))
}

// step runs one numbered step and records how long it took.
func (d *demo) step(ctx context.Context, title string, f func(context.Context) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	d.header(title)
	t0 := time.Now()
	err := f(ctx)
	took := time.Since(t0)
	d.steps = append(d.steps, stepTime{title: title, took: took})
	if err != nil {
		if ctx.Err() != nil && d.interrupted.Load() {
			return ctx.Err()
		}
		return fmt.Errorf("%s: %w", title, err)
	}
	d.say("✓ %s (%s)", firstWords(title), took.Round(100*time.Millisecond))
	return nil
}

func firstWords(title string) string {
	if i := strings.Index(title, ":"); i > 0 {
		return title[:i]
	}
	return title
}

// waitFor polls cond until it reports done, ctx ends or timeout passes. cond's detail says what it last saw and
// goes into the timeout error.
func waitFor(ctx context.Context, what string, timeout, poll time.Duration, cond func(ctx context.Context) (bool, string, error)) error {
	deadline := time.Now().Add(timeout)
	var detail string
	for {
		done, d, err := cond(ctx)
		if err != nil && ctx.Err() == nil {
			detail = err.Error()
		} else if err == nil {
			detail = d
		}
		if done && err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if time.Now().After(deadline) {
			if detail != "" {
				return fmt.Errorf("%s: not within %s; last seen: %s", what, timeout, detail)
			}
			return fmt.Errorf("%s: not within %s", what, timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(poll):
		}
	}
}

func filepathRel(base, p string) string {
	if r, err := filepath.Rel(base, p); err == nil && !strings.HasPrefix(r, "..") {
		return r
	}
	return p
}
