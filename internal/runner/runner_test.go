package runner_test

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	custosv1alpha1 "github.com/custos-io/custos/api/v1alpha1"
	"github.com/custos-io/custos/internal/runner"
)

// gate is an executor whose tasks block until released, and which records how many ran at once.
type gate struct {
	release  chan struct{}
	running  atomic.Int32
	peak     atomic.Int32
	perLoc   sync.Map // location -> *atomic.Int32 peak
	runs     atomic.Int32
	locCount sync.Map // location -> *atomic.Int32 running
}

func newGate() *gate { return &gate{release: make(chan struct{})} }

func (g *gate) Execute(ctx context.Context, s runner.Spec) ([]byte, error) {
	g.runs.Add(1)
	n := g.running.Add(1)
	defer g.running.Add(-1)
	for {
		p := g.peak.Load()
		if n <= p || g.peak.CompareAndSwap(p, n) {
			break
		}
	}
	c, _ := g.locCount.LoadOrStore(s.Location, new(atomic.Int32))
	ln := c.(*atomic.Int32).Add(1)
	defer c.(*atomic.Int32).Add(-1)
	pk, _ := g.perLoc.LoadOrStore(s.Location, new(atomic.Int32))
	for {
		p := pk.(*atomic.Int32).Load()
		if ln <= p || pk.(*atomic.Int32).CompareAndSwap(p, ln) {
			break
		}
	}
	select {
	case <-g.release:
		return []byte(`{"ok":true}`), nil
	case <-ctx.Done():
		return nil, context.Cause(ctx)
	}
}

func spec(tenant, loc string, slot int64) runner.Spec {
	return runner.Spec{Tenant: tenant, Kind: "Snapshot", Location: loc, Slot: time.Unix(slot, 0)}
}

var _ = Describe("Pool", func() {
	var (
		ctx    context.Context
		cancel context.CancelFunc
		done   chan error
		notes  chan runner.Spec
	)
	start := func(p *runner.Pool) {
		ctx, cancel = context.WithCancel(context.Background())
		done = make(chan error, 1)
		go func() { done <- p.Start(ctx) }()
	}
	stop := func() {
		cancel()
		Eventually(done, 10*time.Second).Should(Receive(BeNil()))
	}
	BeforeEach(func() { notes = make(chan runner.Spec, 100) })
	notify := func(s runner.Spec) { notes <- s }

	It("runs a key once while it is queued, running or not yet taken, and again after it was forgotten", func() {
		g := newGate()
		p := runner.NewPool(g, runner.PoolOptions{Notify: notify})
		start(p)
		defer stop()
		s := spec("a", "primary", 100)
		Expect(p.Submit(s)).To(BeTrue())
		Expect(p.Submit(s)).To(BeFalse())
		Eventually(func() int32 { return g.running.Load() }).Should(Equal(int32(1)))
		Expect(p.Active(s.Key())).To(BeTrue())
		close(g.release)
		Eventually(notes).Should(Receive(Equal(s)))
		Expect(p.Active(s.Key())).To(BeFalse())
		Expect(p.Submit(s)).To(BeFalse(), "a finished result not yet forgotten still holds the key")
		r, ok := p.Result(s.Key())
		Expect(ok).To(BeTrue())
		_, ok = p.Result(s.Key())
		Expect(ok).To(BeTrue(), "a result stays until it is forgotten")
		p.Forget(s.Key())
		Expect(r.Err).NotTo(HaveOccurred())
		Expect(string(r.Output)).To(Equal(`{"ok":true}`))
		Expect(r.Finished).NotTo(BeTemporally("<", r.Started))
		_, ok = p.Result(s.Key())
		Expect(ok).To(BeFalse())
		Expect(p.Submit(s)).To(BeTrue(), "a retry after the result was forgotten")
		Eventually(notes).Should(Receive())
		Expect(g.runs.Load()).To(Equal(int32(2)))
	})

	It("keeps to the global and the per-location limits", func() {
		g := newGate()
		p := runner.NewPool(g, runner.PoolOptions{Global: 3, PerLocation: 2, Notify: notify})
		start(p)
		defer stop()
		for i := range 4 {
			p.Submit(spec("t", "primary", int64(i)))
			p.Submit(spec("t", "offsite", int64(i)))
		}
		Eventually(func() int32 { return g.running.Load() }).Should(Equal(int32(3)))
		Consistently(func() int32 { return g.running.Load() }, 300*time.Millisecond).Should(Equal(int32(3)))
		close(g.release)
		for range 8 {
			Eventually(notes).Should(Receive())
		}
		Expect(g.peak.Load()).To(Equal(int32(3)))
		for _, loc := range []string{"primary", "offsite"} {
			pk, _ := g.perLoc.Load(loc)
			Expect(pk.(*atomic.Int32).Load()).To(BeNumerically("<=", 2), loc)
		}
	})

	It("turns a panic and a timeout into failed results", func() {
		p := runner.NewPool(runner.ExecutorFunc(func(ctx context.Context, s runner.Spec) ([]byte, error) {
			if s.Kind == "Panic" {
				panic("boom")
			}
			<-ctx.Done()
			return nil, context.Cause(ctx)
		}), runner.PoolOptions{Timeout: 200 * time.Millisecond, Notify: notify})
		start(p)
		defer stop()
		panicking := runner.Spec{Tenant: "t", Kind: "Panic", Slot: time.Unix(1, 0)}
		slow := runner.Spec{Tenant: "t", Kind: "Slow", Slot: time.Unix(1, 0)}
		p.Submit(panicking)
		p.Submit(slow)
		Eventually(notes).Should(Receive())
		Eventually(notes).Should(Receive())
		r, _ := p.Result(panicking.Key())
		Expect(r.Err).To(MatchError(ContainSubstring("panicked: boom")))
		r, _ = p.Result(slow.Key())
		Expect(r.Err).To(MatchError(ContainSubstring("ran longer than 200ms")))
	})

	It("waits for Start, and on stop cancels running tasks and keeps no result for them", func() {
		g := newGate()
		p := runner.NewPool(g, runner.PoolOptions{Notify: notify})
		s := spec("a", "primary", 1)
		Expect(p.Submit(s)).To(BeTrue())
		Consistently(func() int32 { return g.runs.Load() }, 200*time.Millisecond).Should(BeZero())
		start(p)
		Eventually(func() int32 { return g.running.Load() }).Should(Equal(int32(1)))
		stop()
		Expect(g.running.Load()).To(BeZero())
		_, ok := p.Result(s.Key())
		Expect(ok).To(BeFalse(), "a task cut short by the stop must be found in status and run again, not reported")
		Expect(notes).NotTo(Receive())
	})

	It("keys tasks by tenant, kind, location and slot", func() {
		a := runner.Spec{Tenant: "a", Kind: "Copy", Location: "off", Slot: time.Unix(86400, 0)}
		Expect(a.Key()).To(Equal("a/Copy/off/86400"))
		Expect(a.TaskKey()).To(Equal("Copy/off/86400"))
		b := a
		b.Slot = a.Slot.Add(24 * time.Hour)
		Expect(b.Key()).NotTo(Equal(a.Key()))
	})

	It("keys an Export by its DataExport as earlier versions did (export/<name> where the location is), and a Shred by its location", func() {
		slot := time.Unix(1772323200, 0)
		e := runner.Spec{Tenant: "kliniek-noord", Kind: custosv1alpha1.TaskExport, Export: "kliniek-noord-exit-20260301-000000", Slot: slot}
		Expect(e.Key()).To(Equal("kliniek-noord/Export/export/kliniek-noord-exit-20260301-000000/1772323200"))
		Expect(e.TaskKey()).To(Equal("Export/export/kliniek-noord-exit-20260301-000000/1772323200"))
		old := runner.Spec{Tenant: "kliniek-noord", Kind: "Export", Location: "export/kliniek-noord-exit-20260301-000000", Slot: slot}
		Expect(e.Key()).To(Equal(old.Key()), "a result kept under the old key must still be found")
		s := runner.Spec{Tenant: "kliniek-noord", Kind: custosv1alpha1.TaskShred, Location: "primary", Slot: slot}
		Expect(s.Key()).To(Equal("kliniek-noord/Shred/primary/1772323200"))
	})
})
