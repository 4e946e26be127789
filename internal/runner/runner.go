// Package runner runs custos' long work (dumps, backups, copies, expiry, checks, drills) outside Reconcile.
//
// A controller records a task in the object's status, then submits its Spec. The Spec is plain data (tenant,
// kind, location, scheduled slot) so that a runner may carry it anywhere: the in-process Pool here runs it in a
// goroutine under a global and a per-location concurrency limit; a Job runner could start a Kubernetes Job that
// runs the same Executor from the same image and reads the Output back, without touching the controllers. A
// finished task's Result waits in the runner until the controller has recorded it and Forgets it, and Notify tells the controller to
// come and look.
package runner

import (
	"context"
	"fmt"
	"sync"
	"time"

	custosv1alpha1 "github.com/custos-io/custos/api/v1alpha1"
)

// Spec is one unit of work. Key() is its idempotency key: submitting a Spec whose key is queued, running or
// finished-but-not-forgotten does nothing.
type Spec struct {
	Tenant string                  `json:"tenant"`
	Kind   custosv1alpha1.TaskKind `json:"kind"`
	// Location is the BackupLocation the task works at (empty for an Export).
	Location string `json:"location,omitempty"`
	// Export names the DataExport whose bag an Export task writes.
	Export string    `json:"export,omitempty"`
	Slot   time.Time `json:"slot"`
	// Attempt counts from 1; it is not part of the key. A first attempt has never started before, so work that
	// must check for a half-done earlier attempt can skip that check.
	Attempt int `json:"attempt,omitempty"`
}

// exportPlace is where an Export task is keyed and counted: "export/<name>", as earlier versions carried it in
// Location (keys stay the same).
const exportPlace = "export/"

// place is the location part of the keys, and what the per-location limit counts: the location, or
// "export/<name>" for an Export task.
func (s Spec) place() string {
	if s.Export != "" {
		return exportPlace + s.Export
	}
	return s.Location
}

// Key is tenant/kind/location/slot (location: "export/<name>" for an Export).
func (s Spec) Key() string {
	return fmt.Sprintf("%s/%s/%s/%d", s.Tenant, s.Kind, s.place(), s.Slot.Unix())
}

// TaskKey is the key a task is recorded under in the tenant's status (the tenant is the object itself).
func (s Spec) TaskKey() string {
	return fmt.Sprintf("%s/%s/%d", s.Kind, s.place(), s.Slot.Unix())
}

// Executor does the work of a Spec and returns its outcome as JSON.
type Executor interface {
	Execute(ctx context.Context, s Spec) ([]byte, error)
}

// ExecutorFunc adapts a function to Executor.
type ExecutorFunc func(ctx context.Context, s Spec) ([]byte, error)

// Execute calls f.
func (f ExecutorFunc) Execute(ctx context.Context, s Spec) ([]byte, error) { return f(ctx, s) }

// Result is a finished task.
type Result struct {
	Spec     Spec
	Output   []byte
	Err      error
	Started  time.Time
	Finished time.Time
}

// Runner is what controllers see of a runner.
type Runner interface {
	// Submit queues s unless its key is already queued, running or finished and not taken; it reports whether
	// it queued it.
	Submit(s Spec) bool
	// Active reports whether the key is queued or running.
	Active(key string) bool
	// Result returns the result of a finished task; it stays until Forget, so that a controller whose status
	// write fails finds it again.
	Result(key string) (Result, bool)
	// Forget drops a result once the controller has recorded it.
	Forget(key string)
}

// Pool is the in-process Runner. Start it with the manager (it is a manager.Runnable): tasks submitted before
// Start wait for it; Start's context ending cancels running tasks and waits for them.
type Pool struct {
	exec        Executor
	notify      func(Spec)
	timeout     time.Duration
	global      chan struct{}
	perLocation int
	now         func() time.Time

	mu        sync.Mutex
	locations map[string]chan struct{}
	active    map[string]bool
	results   map[string]Result
	started   chan struct{}
	ctx       context.Context
	wg        sync.WaitGroup
}

// PoolOptions configure a Pool.
type PoolOptions struct {
	// Global is how many tasks run at once in all; PerLocation how many at one location. Both default to 2.
	Global, PerLocation int
	// Timeout ends a task that runs longer; 0 means 6 hours.
	Timeout time.Duration
	// Notify is called (from the task's goroutine) when a task finished and its result can be taken.
	Notify func(Spec)
	// Now is the clock of Result's times; time.Now when nil.
	Now func() time.Time
}

// NewPool returns a Pool running exec.
func NewPool(exec Executor, o PoolOptions) *Pool {
	if o.Global <= 0 {
		o.Global = 2
	}
	if o.PerLocation <= 0 {
		o.PerLocation = 2
	}
	if o.Timeout <= 0 {
		o.Timeout = 6 * time.Hour
	}
	if o.Notify == nil {
		o.Notify = func(Spec) {}
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Pool{
		exec: exec, notify: o.Notify, timeout: o.Timeout, now: o.Now,
		global: make(chan struct{}, o.Global), perLocation: o.PerLocation,
		locations: map[string]chan struct{}{}, active: map[string]bool{}, results: map[string]Result{},
		started: make(chan struct{}),
	}
}

// Start runs the pool until ctx ends, then cancels running tasks and waits for them to return.
func (p *Pool) Start(ctx context.Context) error {
	p.mu.Lock()
	p.ctx = ctx
	p.mu.Unlock()
	close(p.started)
	<-ctx.Done()
	p.wg.Wait()
	return nil
}

// NeedLeaderElection: only the leader runs tasks, like the controllers that submit them.
func (p *Pool) NeedLeaderElection() bool { return true }

// Submit implements Runner.
func (p *Pool) Submit(s Spec) bool {
	key := s.Key()
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, done := p.results[key]; done || p.active[key] {
		return false
	}
	p.active[key] = true
	loc := p.locations[s.place()]
	if loc == nil {
		loc = make(chan struct{}, p.perLocation)
		p.locations[s.place()] = loc
	}
	p.wg.Add(1)
	go p.run(s, loc)
	return true
}

func (p *Pool) run(s Spec, loc chan struct{}) {
	defer p.wg.Done()
	<-p.started
	p.mu.Lock()
	base := p.ctx
	p.mu.Unlock()
	res := Result{Spec: s}
	// The location slot first, then the global one: a task waiting for a busy location holds no global slot.
	select {
	case loc <- struct{}{}:
	case <-base.Done():
		p.finish(res, base.Err())
		return
	}
	defer func() { <-loc }()
	select {
	case p.global <- struct{}{}:
	case <-base.Done():
		p.finish(res, base.Err())
		return
	}
	defer func() { <-p.global }()
	ctx, cancel := context.WithTimeoutCause(base, p.timeout, fmt.Errorf("task ran longer than %s", p.timeout))
	defer cancel()
	res.Started = p.now()
	func() {
		defer func() {
			if r := recover(); r != nil {
				res.Err = fmt.Errorf("task panicked: %v", r)
			}
		}()
		res.Output, res.Err = p.exec.Execute(ctx, s)
	}()
	p.finish(res, res.Err)
}

func (p *Pool) finish(res Result, err error) {
	res.Err = err
	res.Finished = p.now()
	key := res.Spec.Key()
	p.mu.Lock()
	delete(p.active, key)
	// A task cut short by the manager stopping leaves no result: the next manager finds it in status and
	// runs it again.
	stopping := p.ctx != nil && p.ctx.Err() != nil
	if !stopping {
		p.results[key] = res
	}
	p.mu.Unlock()
	if !stopping {
		p.notify(res.Spec)
	}
}

// Active implements Runner.
func (p *Pool) Active(key string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.active[key]
}

// Result implements Runner.
func (p *Pool) Result(key string) (Result, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	r, ok := p.results[key]
	return r, ok
}

// Forget implements Runner.
func (p *Pool) Forget(key string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.results, key)
}
