package lifecycle_test

import (
	"math/rand/v2"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"

	custosv1alpha1 "github.com/custos-io/custos/api/v1alpha1"
	"github.com/custos-io/custos/internal/lifecycle"
)

func TestLifecycle(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "lifecycle decisions (pure, fake clock)")
}

var (
	start = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	end   = time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	day   = 24 * time.Hour
)

func spec(ret custosv1alpha1.DataReturn, disp custosv1alpha1.BackupDisposal) custosv1alpha1.TenantSpec {
	e := metav1.NewTime(end)
	return custosv1alpha1.TenantSpec{
		Contract: custosv1alpha1.Contract{ID: "c-1", Start: metav1.NewTime(start), End: &e},
		Exit:     custosv1alpha1.TenantExit{DataReturn: ret, Backups: disp},
	}
}

// world plays the controller: it records each decision in status and carries out its action at once (or after a
// delay), and the receiver acts at given times.
type world struct {
	clock     *clocktesting.FakeClock
	spec      custosv1alpha1.TenantSpec
	status    custosv1alpha1.TenantStatus
	facts     lifecycle.Facts
	deliverIn time.Duration // how long the export takes once requested
	receiptAt time.Time     // when the receiver acknowledges (zero: never)
	wrongAt   time.Time     // when the receiver sends a wrong receipt (zero: never)
	requested time.Time
	// expireAfter is the bag's lifetime after delivery, or after the receipt (0: 10 days).
	expireAfter time.Duration
	phases      []custosv1alpha1.TenantPhase
	actions     []lifecycle.Action
	destroyed   []destruction
	goneByLast  time.Time
	cancelled   []time.Time
	certs       []time.Time
}

func ptrTime(t time.Time) *metav1.Time { m := metav1.NewTime(t); return &m }

func (w *world) bagLifetime() time.Duration {
	if w.expireAfter == 0 {
		return 10 * day
	}
	return w.expireAfter
}

type destruction struct {
	action lifecycle.Action
	at     time.Time
}

func newWorld(s custosv1alpha1.TenantSpec) *world {
	return &world{
		clock: clocktesting.NewFakeClock(start.Add(30 * day)), spec: s,
		status:    custosv1alpha1.TenantStatus{Phase: custosv1alpha1.TenantActive},
		facts:     lifecycle.Facts{KeepWithin: 90 * day, AcknowledgeTimeout: 30 * day},
		deliverIn: time.Hour,
	}
}

// step asks Next once, applies the decision, and moves the clock to the next interesting moment.
func (w *world) step() lifecycle.Decision {
	now := w.clock.Now()
	// The receiver and the export move on their own.
	if !w.requested.IsZero() && w.facts.Export.DeliveredAt.IsZero() && !now.Before(w.requested.Add(w.deliverIn)) {
		w.facts.Export.Phase, w.facts.Export.DeliveredAt = custosv1alpha1.ExportReady, w.requested.Add(w.deliverIn)
	}
	if !w.facts.Export.DeliveredAt.IsZero() {
		if !w.wrongAt.IsZero() && !now.Before(w.wrongAt) {
			w.facts.Export.ReceiptMismatch = true
		}
		if w.facts.Export.ExpiresAt.IsZero() {
			w.facts.Export.ExpiresAt = w.facts.Export.DeliveredAt.Add(w.bagLifetime())
		}
		if !w.receiptAt.IsZero() && !now.Before(w.receiptAt) && w.facts.Export.Phase != custosv1alpha1.ExportAcknowledged && !w.facts.Export.BagGone {
			w.facts.Export.Phase, w.facts.Export.ReceiptMismatch = custosv1alpha1.ExportAcknowledged, false
			w.facts.Export.ExpiresAt = w.receiptAt.Add(w.bagLifetime())
		}
		if !now.Before(w.facts.Export.ExpiresAt) {
			w.facts.Export.Phase, w.facts.Export.BagGone = custosv1alpha1.ExportExpired, true
		}
	}
	// While the tenant is active, it takes a snapshot a day.
	if w.status.Phase == custosv1alpha1.TenantActive {
		w.facts.NewestSnapshot = now.Truncate(day).Add(2 * time.Hour)
		if w.facts.NewestSnapshot.After(now) {
			w.facts.NewestSnapshot = w.facts.NewestSnapshot.Add(-day)
		}
	}

	d := lifecycle.Next(w.spec, w.status, w.facts, now)
	if len(w.phases) == 0 || w.phases[len(w.phases)-1] != d.Phase {
		w.phases = append(w.phases, d.Phase)
	}
	w.status.Phase = d.Phase
	if w.status.Exit == nil && d.Phase.ExitStarted() {
		w.status.Exit = &custosv1alpha1.TenantExitStatus{EndObservedAt: ptrTime(now)}
	}
	if !d.DestructionNotBefore.IsZero() {
		w.status.Exit.DestructionNotBefore = ptrTime(d.DestructionNotBefore)
	}
	if !d.BackupsGoneBy.IsZero() {
		t := metav1.NewTime(d.BackupsGoneBy)
		w.status.Exit.BackupsGoneBy = &t
		w.goneByLast = d.BackupsGoneBy
	}
	if d.Action != lifecycle.Wait {
		w.actions = append(w.actions, d.Action)
	}
	if w.facts.Export.Phase == custosv1alpha1.ExportAcknowledged || d.AcknowledgeTimedOut {
		if w.status.Exit.ExportAcknowledgedAt == nil {
			t := metav1.NewTime(now)
			w.status.Exit.ExportAcknowledgedAt, w.status.Exit.ExportAcknowledgeTimedOut = &t, d.AcknowledgeTimedOut
		}
	}
	switch d.Action {
	case lifecycle.Suspend:
		w.facts.Suspended = true
	case lifecycle.RequestExport:
		w.facts.Export.Exists, w.facts.Export.Phase, w.requested = true, custosv1alpha1.ExportRunning, now
		w.status.Exit.ExportRef = &custosv1alpha1.ExitExportReference{Name: "t-exit", UID: "u"}
	case lifecycle.CancelExit:
		w.status = custosv1alpha1.TenantStatus{Phase: custosv1alpha1.TenantActive}
		w.facts.Suspended, w.facts.Export, w.requested = false, lifecycle.ExportFacts{}, time.Time{}
		w.cancelled = append(w.cancelled, now)
	case lifecycle.Purge:
		w.facts.LiveDataGone = true
		w.destroyed = append(w.destroyed, destruction{d.Action, now})
	case lifecycle.DisposeBackups:
		w.facts.RepositoriesGone = true
		w.destroyed = append(w.destroyed, destruction{d.Action, now})
	case lifecycle.IssueCertificate:
		w.facts.CertificateIssued = true
		w.certs = append(w.certs, now)
	}
	next := time.Minute
	if d.Action == lifecycle.Wait && d.RequeueAfter > 0 {
		next = d.RequeueAfter
	}
	if d.Action == lifecycle.Wait && d.RequeueAfter == 0 {
		next = time.Hour // an event would wake the controller; the receiver or the export are on their own clock
	}
	w.clock.Step(next)
	return d
}

// run steps until Destroyed or until the clock passes limit.
func (w *world) run(limit time.Time) {
	for i := 0; i < 10000 && w.status.Phase != custosv1alpha1.TenantDestroyed && w.clock.Now().Before(limit); i++ {
		w.step()
	}
}

var _ = Describe("Next", func() {
	It("waits for contract.end, with a timer at most a day long", func() {
		s := spec(custosv1alpha1.DataReturnExport, custosv1alpha1.BackupDisposalExpire)
		d := lifecycle.Next(s, custosv1alpha1.TenantStatus{Phase: custosv1alpha1.TenantActive}, lifecycle.Facts{}, end.Add(-time.Hour))
		Expect(d).To(Equal(lifecycle.Decision{Phase: custosv1alpha1.TenantActive, Reason: custosv1alpha1.ReasonContractRunning,
			Message: "the contract runs until 2026-03-01T00:00:00Z; the exit starts then", RequeueAfter: time.Hour}))
		d = lifecycle.Next(s, custosv1alpha1.TenantStatus{Phase: custosv1alpha1.TenantActive}, lifecycle.Facts{}, end.Add(-40*day))
		Expect(d.RequeueAfter).To(Equal(24 * time.Hour))
		s.Contract.End = nil
		d = lifecycle.Next(s, custosv1alpha1.TenantStatus{Phase: custosv1alpha1.TenantActive}, lifecycle.Facts{}, end)
		Expect(d.Action).To(Equal(lifecycle.Wait))
		Expect(d.RequeueAfter).To(BeZero())
	})

	It("suspends at the exact end, also a tenant that never finished provisioning", func() {
		s := spec(custosv1alpha1.DataReturnNone, custosv1alpha1.BackupDisposalShred)
		for _, p := range []custosv1alpha1.TenantPhase{"", custosv1alpha1.TenantPending, custosv1alpha1.TenantProvisioning, custosv1alpha1.TenantActive} {
			d := lifecycle.Next(s, custosv1alpha1.TenantStatus{Phase: p}, lifecycle.Facts{}, end)
			Expect(d.Phase).To(Equal(custosv1alpha1.TenantTerminating), string(p))
			Expect(d.Action).To(Equal(lifecycle.Suspend), string(p))
		}
		d := lifecycle.Next(s, custosv1alpha1.TenantStatus{Phase: custosv1alpha1.TenantActive}, lifecycle.Facts{}, end.Add(-time.Nanosecond))
		Expect(d.Action).To(Equal(lifecycle.Wait))
	})

	DescribeTable("whole exits",
		func(ret custosv1alpha1.DataReturn, disp custosv1alpha1.BackupDisposal, receiptAfter time.Duration,
			wantPhases []custosv1alpha1.TenantPhase, wantActions []lifecycle.Action, destroyedAfterEnd time.Duration) {
			w := newWorld(spec(ret, disp))
			if receiptAfter > 0 {
				w.receiptAt = end.Add(receiptAfter)
			}
			w.run(end.Add(400 * day))
			Expect(w.phases).To(Equal(wantPhases))
			Expect(w.actions).To(Equal(wantActions))
			last := w.destroyed[len(w.destroyed)-1]
			Expect(last.at.Sub(end)).To(BeNumerically("~", destroyedAfterEnd, 2*time.Hour))
		},
		Entry("Export + Expire: the backups go keepWithin after the last snapshot, before the contract's end + 90 days",
			custosv1alpha1.DataReturnExport, custosv1alpha1.BackupDisposalExpire, 3*day,
			[]custosv1alpha1.TenantPhase{custosv1alpha1.TenantActive, custosv1alpha1.TenantTerminating, custosv1alpha1.TenantExporting,
				custosv1alpha1.TenantPurging, custosv1alpha1.TenantAwaitingBackupExpiry, custosv1alpha1.TenantDestroyed},
			[]lifecycle.Action{lifecycle.Suspend, lifecycle.RequestExport, lifecycle.Purge, lifecycle.DisposeBackups, lifecycle.IssueCertificate},
			90*day-22*time.Hour),
		Entry("Export + Shred: everything goes right after the receipt",
			custosv1alpha1.DataReturnExport, custosv1alpha1.BackupDisposalShred, 3*day,
			[]custosv1alpha1.TenantPhase{custosv1alpha1.TenantActive, custosv1alpha1.TenantTerminating, custosv1alpha1.TenantExporting,
				custosv1alpha1.TenantPurging, custosv1alpha1.TenantAwaitingBackupExpiry, custosv1alpha1.TenantDestroyed},
			[]lifecycle.Action{lifecycle.Suspend, lifecycle.RequestExport, lifecycle.Purge, lifecycle.DisposeBackups, lifecycle.IssueCertificate},
			3*day),
		Entry("None + Shred: no export, everything goes at the end",
			custosv1alpha1.DataReturnNone, custosv1alpha1.BackupDisposalShred, time.Duration(0),
			[]custosv1alpha1.TenantPhase{custosv1alpha1.TenantActive, custosv1alpha1.TenantTerminating, custosv1alpha1.TenantPurging,
				custosv1alpha1.TenantAwaitingBackupExpiry, custosv1alpha1.TenantDestroyed},
			[]lifecycle.Action{lifecycle.Suspend, lifecycle.Purge, lifecycle.DisposeBackups, lifecycle.IssueCertificate},
			time.Duration(0)),
		Entry("Export never acknowledged: the exit goes on acknowledgeTimeout after delivery",
			custosv1alpha1.DataReturnExport, custosv1alpha1.BackupDisposalShred, time.Duration(0),
			[]custosv1alpha1.TenantPhase{custosv1alpha1.TenantActive, custosv1alpha1.TenantTerminating, custosv1alpha1.TenantExporting,
				custosv1alpha1.TenantPurging, custosv1alpha1.TenantAwaitingBackupExpiry, custosv1alpha1.TenantDestroyed},
			[]lifecycle.Action{lifecycle.Suspend, lifecycle.RequestExport, lifecycle.Purge, lifecycle.DisposeBackups, lifecycle.IssueCertificate},
			30*day+time.Hour),
	)

	It("records that the exit went on without a receipt", func() {
		w := newWorld(spec(custosv1alpha1.DataReturnExport, custosv1alpha1.BackupDisposalShred))
		w.run(end.Add(400 * day))
		Expect(w.status.Exit.ExportAcknowledgeTimedOut).To(BeTrue())
		Expect(w.status.Exit.ExportAcknowledgedAt.Time).To(BeTemporally("~", end.Add(30*day+time.Hour), time.Minute))
	})

	It("destroys nothing while the receipt is wrong, even after acknowledgeTimeout; a right receipt lets it go on", func() {
		w := newWorld(spec(custosv1alpha1.DataReturnExport, custosv1alpha1.BackupDisposalShred))
		w.expireAfter = 300 * day // the bag outlives the wrong receipt
		w.wrongAt = end.Add(2 * day)
		w.run(end.Add(100 * day))
		Expect(w.destroyed).To(BeEmpty())
		Expect(w.status.Phase).To(Equal(custosv1alpha1.TenantExporting))
		d := lifecycle.Next(w.spec, w.status, w.facts, w.clock.Now())
		Expect(d.Reason).To(Equal(custosv1alpha1.ReasonReceiptMismatch))
		Expect(d.Message).To(ContainSubstring("nothing is destroyed"))

		w.receiptAt = w.clock.Now()
		w.run(end.Add(500 * day))
		Expect(w.status.Phase).To(Equal(custosv1alpha1.TenantDestroyed))
		Expect(w.status.Exit.ExportAcknowledgeTimedOut).To(BeFalse())
	})

	It("destroys nothing while the export failed", func() {
		s := spec(custosv1alpha1.DataReturnExport, custosv1alpha1.BackupDisposalShred)
		st := custosv1alpha1.TenantStatus{Phase: custosv1alpha1.TenantExporting, Exit: &custosv1alpha1.TenantExitStatus{}}
		d := lifecycle.Next(s, st, lifecycle.Facts{Suspended: true, AcknowledgeTimeout: day,
			Export: lifecycle.ExportFacts{Exists: true, Phase: custosv1alpha1.ExportFailed, Message: "disk full"}}, end.Add(100*day))
		Expect(d).To(Equal(lifecycle.Decision{Phase: custosv1alpha1.TenantExporting, Reason: custosv1alpha1.ReasonExportFailed,
			Message: "the export failed, nothing is destroyed: disk full", DestructionNotBefore: end.Add(100 * day)}))
	})

	It("a legal hold freezes purge and disposal, not suspension or export; lifted, the exit goes on", func() {
		s := spec(custosv1alpha1.DataReturnExport, custosv1alpha1.BackupDisposalShred)
		until := metav1.NewTime(end.Add(50 * day))
		s.LegalHold = &custosv1alpha1.LegalHold{Reason: "case 2026/17", Until: &until}
		w := newWorld(s)
		w.receiptAt = end.Add(day)
		w.run(end.Add(49 * day))
		Expect(w.actions).To(Equal([]lifecycle.Action{lifecycle.Suspend, lifecycle.RequestExport}))
		Expect(w.status.Phase).To(Equal(custosv1alpha1.TenantPurging))
		d := lifecycle.Next(w.spec, w.status, w.facts, w.clock.Now())
		Expect(d.Frozen).To(BeTrue())
		Expect(d.Message).To(ContainSubstring("case 2026/17"))
		Expect(d.RequeueAfter).To(BeNumerically(">", 0))
		w.run(end.Add(200 * day))
		Expect(w.status.Phase).To(Equal(custosv1alpha1.TenantDestroyed))
		Expect(w.destroyed[0].at).To(BeTemporally(">=", until.Time))
	})

	It("a hold set while waiting for expiry stops the final removal; without until it lasts until removed", func() {
		s := spec(custosv1alpha1.DataReturnNone, custosv1alpha1.BackupDisposalExpire)
		w := newWorld(s)
		w.run(end.Add(10 * day))
		Expect(w.status.Phase).To(Equal(custosv1alpha1.TenantAwaitingBackupExpiry))
		w.spec.LegalHold = &custosv1alpha1.LegalHold{Reason: "audit"}
		w.run(end.Add(300 * day))
		Expect(w.status.Phase).To(Equal(custosv1alpha1.TenantAwaitingBackupExpiry))
		Expect(w.actions).NotTo(ContainElement(lifecycle.DisposeBackups))
		w.spec.LegalHold = nil
		w.run(end.Add(400 * day))
		Expect(w.status.Phase).To(Equal(custosv1alpha1.TenantDestroyed))
	})

	It("fixes the backup deadline when the live data goes; a late snapshot does not move it", func() {
		s := spec(custosv1alpha1.DataReturnNone, custosv1alpha1.BackupDisposalExpire)
		goneBy := metav1.NewTime(end.Add(80 * day))
		st := custosv1alpha1.TenantStatus{Phase: custosv1alpha1.TenantAwaitingBackupExpiry, Exit: &custosv1alpha1.TenantExitStatus{BackupsGoneBy: &goneBy}}
		f := lifecycle.Facts{Suspended: true, LiveDataGone: true, KeepWithin: 90 * day, NewestSnapshot: end.Add(5 * day)}
		d := lifecycle.Next(s, st, f, end.Add(80*day))
		Expect(d.Action).To(Equal(lifecycle.DisposeBackups))
		Expect(d.BackupsGoneBy).To(Equal(goneBy.Time))
	})

	It("a tenant that never took a snapshot has nothing to wait for", func() {
		s := spec(custosv1alpha1.DataReturnNone, custosv1alpha1.BackupDisposalExpire)
		st := custosv1alpha1.TenantStatus{Phase: custosv1alpha1.TenantPurging}
		d := lifecycle.Next(s, st, lifecycle.Facts{Suspended: true, LiveDataGone: true, KeepWithin: 90 * day}, end)
		Expect(d.Phase).To(Equal(custosv1alpha1.TenantAwaitingBackupExpiry))
		Expect(d.Action).To(Equal(lifecycle.DisposeBackups))
	})

	It("resumes after a crash: the same status and facts give the same step", func() {
		s := spec(custosv1alpha1.DataReturnExport, custosv1alpha1.BackupDisposalShred)
		w := newWorld(s)
		w.receiptAt = end.Add(day)
		for w.status.Phase != custosv1alpha1.TenantDestroyed {
			now := w.clock.Now()
			a := lifecycle.Next(w.spec, w.status, w.facts, now)
			b := lifecycle.Next(w.spec, *w.status.DeepCopy(), w.facts, now)
			Expect(a).To(Equal(b))
			w.step()
		}
	})

	It("never destroys before the export is acknowledged or timed out, nor under a hold (random timelines)", func() {
		r := rand.New(rand.NewPCG(1, 2))
		phases := []custosv1alpha1.TenantPhase{custosv1alpha1.TenantActive, custosv1alpha1.TenantTerminating, custosv1alpha1.TenantExporting,
			custosv1alpha1.TenantPurging, custosv1alpha1.TenantAwaitingBackupExpiry}
		exportPhases := []custosv1alpha1.DataExportPhase{"", custosv1alpha1.ExportPending, custosv1alpha1.ExportRunning, custosv1alpha1.ExportReady,
			custosv1alpha1.ExportAcknowledged, custosv1alpha1.ExportFailed, custosv1alpha1.ExportExpired}
		checked := 0
		for i := 0; i < 20000; i++ {
			ret := custosv1alpha1.DataReturnExport
			if r.IntN(3) == 0 {
				ret = custosv1alpha1.DataReturnNone
			}
			disp := custosv1alpha1.BackupDisposalExpire
			if r.IntN(2) == 0 {
				disp = custosv1alpha1.BackupDisposalShred
			}
			s := spec(ret, disp)
			now := end.Add(time.Duration(r.IntN(400*24)-24) * time.Hour)
			if r.IntN(3) == 0 {
				until := metav1.NewTime(now.Add(time.Duration(r.IntN(48)-24) * time.Hour))
				s.LegalHold = &custosv1alpha1.LegalHold{Reason: "x", Until: &until}
			}
			st := custosv1alpha1.TenantStatus{Phase: phases[r.IntN(len(phases))]}
			if st.Phase != custosv1alpha1.TenantActive && r.IntN(2) == 0 {
				st.Exit = &custosv1alpha1.TenantExitStatus{}
				if r.IntN(2) == 0 {
					st.Exit.EndObservedAt = ptrTime(now.Add(-time.Duration(r.IntN(200)) * time.Hour))
				}
			}
			if r.IntN(4) == 0 {
				s.Contract.End = nil
			}
			f := lifecycle.Facts{Suspended: r.IntN(2) == 0, KeepWithin: 90 * day, AcknowledgeTimeout: time.Duration(r.IntN(3)) * 10 * day,
				LiveDataGone: r.IntN(2) == 0, RepositoriesGone: r.IntN(2) == 0, CertificateIssued: r.IntN(2) == 0,
				Export:      lifecycle.ExportFacts{Exists: r.IntN(4) != 0, Phase: exportPhases[r.IntN(len(exportPhases))], ReceiptMismatch: r.IntN(4) == 0},
				GracePeriod: time.Duration(r.IntN(3)) * 72 * time.Hour}
			if r.IntN(5) == 0 {
				f.Export.Refused = "not this exit's"
			}
			if r.IntN(2) == 0 {
				f.Export.DeliveredAt = now.Add(-time.Duration(r.IntN(60*24)) * time.Hour)
			}
			if r.IntN(2) == 0 {
				f.NewestSnapshot = now.Add(-time.Duration(r.IntN(120*24)) * time.Hour)
			}
			d := lifecycle.Next(s, st, f, now)
			if d.Action != lifecycle.Purge && d.Action != lifecycle.DisposeBackups {
				continue
			}
			checked++
			if st.Phase == custosv1alpha1.TenantActive || st.Phase == custosv1alpha1.TenantTerminating || st.Phase == custosv1alpha1.TenantExporting {
				Expect(lifecycle.Ended(s, now)).To(BeTrue(), "destroying before the contract ended, or after it was removed")
				Expect(now).NotTo(BeTemporally("<", lifecycle.DestructionNotBefore(st, f, now)), "destroying within the grace period: %+v %+v", st, f)
				if ret == custosv1alpha1.DataReturnExport {
					Expect(f.Export.Refused).To(BeEmpty(), "destroying on the strength of an export that is not this exit's")
				}
			}
			Expect(lifecycle.HoldActive(s.LegalHold, now)).To(BeFalse(), "destroying under a legal hold")
			if st.Phase == custosv1alpha1.TenantActive || st.Phase == custosv1alpha1.TenantTerminating {
				Expect(f.Suspended).To(BeTrue(), "destroying a tenant that was not suspended first")
			}
			if ret == custosv1alpha1.DataReturnExport && (st.Phase == custosv1alpha1.TenantTerminating || st.Phase == custosv1alpha1.TenantExporting || st.Phase == custosv1alpha1.TenantActive) {
				acked := f.Export.Exists && f.Export.Phase == custosv1alpha1.ExportAcknowledged
				timedOut := f.Export.Exists && !f.Export.ReceiptMismatch && f.Export.Phase != custosv1alpha1.ExportFailed && !f.Export.DeliveredAt.IsZero() &&
					f.AcknowledgeTimeout > 0 && !now.Before(f.Export.DeliveredAt.Add(f.AcknowledgeTimeout))
				Expect(acked || timedOut).To(BeTrue(), "destroying before the export was acknowledged: %+v %+v", st, f)
				Expect(d.AcknowledgeTimedOut).To(Equal(!acked))
			}
			if d.Action == lifecycle.DisposeBackups && disp == custosv1alpha1.BackupDisposalExpire && !f.NewestSnapshot.IsZero() {
				Expect(now).NotTo(BeTemporally("<", f.NewestSnapshot.Add(f.KeepWithin)), "expired backups early")
			}
		}
		Expect(checked).To(BeNumerically(">", 1000), "the random timelines reach destructive steps")
	})
})

var _ = Describe("the grace period before destruction", func() {
	// firstDestruction is when the first destructive step ran (zero: none).
	firstDestruction := func(w *world) time.Time {
		if len(w.destroyed) == 0 {
			return time.Time{}
		}
		return w.destroyed[0].at
	}

	DescribeTable("nothing is destroyed before endObservedAt + exitGracePeriod",
		func(ret custosv1alpha1.DataReturn, observedAfterEnd, receiptAfterEnd, wantFirstAfterEnd time.Duration) {
			w := newWorld(spec(ret, custosv1alpha1.BackupDisposalShred))
			w.facts.GracePeriod = 72 * time.Hour
			// The manager first looks at the tenant observedAfterEnd after contract.end (a contract.end set in the past).
			w.clock.SetTime(end.Add(observedAfterEnd))
			if receiptAfterEnd > 0 {
				w.receiptAt = end.Add(receiptAfterEnd)
			}
			w.run(end.Add(400 * day))
			Expect(w.status.Phase).To(Equal(custosv1alpha1.TenantDestroyed))
			Expect(w.status.Exit.EndObservedAt.Time).To(Equal(end.Add(observedAfterEnd)))
			Expect(w.status.Exit.DestructionNotBefore.Time).To(Equal(end.Add(observedAfterEnd + 72*time.Hour)))
			Expect(firstDestruction(w)).To(BeTemporally(">=", w.status.Exit.DestructionNotBefore.Time))
			Expect(firstDestruction(w).Sub(end)).To(BeNumerically("~", wantFirstAfterEnd, 2*time.Hour)) // the world steps an hour while it waits without a timer
		},
		Entry("None, end observed when it came: the purge waits 72h after the end",
			custosv1alpha1.DataReturnNone, time.Duration(0), time.Duration(0), 72*time.Hour),
		Entry("None, contract.end set 10 days in the past: 72h from when it was observed, not from the end date",
			custosv1alpha1.DataReturnNone, 10*day, time.Duration(0), 10*day+72*time.Hour),
		Entry("Export acknowledged after a day: the purge still waits for the grace period",
			custosv1alpha1.DataReturnExport, time.Duration(0), day, 72*time.Hour),
		Entry("Export acknowledged after five days: the grace period is long over, the receipt decides",
			custosv1alpha1.DataReturnExport, time.Duration(0), 5*day, 5*day),
		Entry("Export never acknowledged: acknowledgeTimeout (30d) after delivery",
			custosv1alpha1.DataReturnExport, time.Duration(0), time.Duration(0), 30*day+time.Hour),
	)

	It("waits in Terminating (None) or Exporting (Export) and says until when and how to cancel", func() {
		s := spec(custosv1alpha1.DataReturnNone, custosv1alpha1.BackupDisposalShred)
		observed := metav1.NewTime(end.Add(time.Hour))
		st := custosv1alpha1.TenantStatus{Phase: custosv1alpha1.TenantTerminating, Exit: &custosv1alpha1.TenantExitStatus{EndObservedAt: &observed}}
		f := lifecycle.Facts{Suspended: true, GracePeriod: 72 * time.Hour}
		d := lifecycle.Next(s, st, f, end.Add(2*time.Hour))
		Expect(d.Action).To(Equal(lifecycle.Wait))
		Expect(d.Phase).To(Equal(custosv1alpha1.TenantTerminating))
		Expect(d.Reason).To(Equal(custosv1alpha1.ReasonGracePeriod))
		Expect(d.RequeueAfter).To(Equal(24 * time.Hour))
		Expect(d.DestructionNotBefore).To(Equal(end.Add(73 * time.Hour)))
		Expect(d.Message).To(And(ContainSubstring("2026-03-04T01:00:00Z"), ContainSubstring("Removing spec.contract.end")))

		d = lifecycle.Next(s, st, f, end.Add(73*time.Hour-time.Second))
		Expect(d.Action).To(Equal(lifecycle.Wait))
		Expect(d.RequeueAfter).To(Equal(time.Second))
		d = lifecycle.Next(s, st, f, end.Add(73*time.Hour))
		Expect(d.Action).To(Equal(lifecycle.Purge))

		s.Exit.DataReturn = custosv1alpha1.DataReturnExport
		st.Phase = custosv1alpha1.TenantExporting
		f.Export = lifecycle.ExportFacts{Exists: true, Phase: custosv1alpha1.ExportAcknowledged, DeliveredAt: end.Add(90 * time.Minute)}
		d = lifecycle.Next(s, st, f, end.Add(2*time.Hour))
		Expect(d.Phase).To(Equal(custosv1alpha1.TenantExporting))
		Expect(d.Reason).To(Equal(custosv1alpha1.ReasonGracePeriod))
		Expect(d.Action).To(Equal(lifecycle.Wait))
	})

	It("a grace period of 0s destroys as soon as the other conditions hold", func() {
		s := spec(custosv1alpha1.DataReturnNone, custosv1alpha1.BackupDisposalShred)
		st := custosv1alpha1.TenantStatus{Phase: custosv1alpha1.TenantTerminating, Exit: &custosv1alpha1.TenantExitStatus{EndObservedAt: ptrTime(end)}}
		d := lifecycle.Next(s, st, lifecycle.Facts{Suspended: true}, end)
		Expect(d.Action).To(Equal(lifecycle.Purge))
	})

	DescribeTable("removing contract.end, or moving it into the future, during the grace period cancels the exit",
		func(ret custosv1alpha1.DataReturn, editAfterEnd time.Duration, newEnd *time.Time) {
			w := newWorld(spec(ret, custosv1alpha1.BackupDisposalShred))
			w.facts.GracePeriod = 72 * time.Hour
			w.clock.SetTime(end)
			w.run(end.Add(editAfterEnd))
			Expect(w.status.Phase.ExitStarted()).To(BeTrue())
			Expect(w.destroyed).To(BeEmpty())
			if newEnd == nil {
				w.spec.Contract.End = nil
			} else {
				w.spec.Contract.End = ptrTime(*newEnd)
			}
			d := w.step()
			Expect(d.Action).To(Equal(lifecycle.CancelExit))
			Expect(d.Reason).To(Equal(custosv1alpha1.ReasonExitCancelled))
			Expect(w.status.Phase).To(Equal(custosv1alpha1.TenantActive))
			w.run(end.Add(100 * day))
			if newEnd == nil {
				Expect(w.destroyed).To(BeEmpty(), "nothing is destroyed once the end is removed")
				Expect(w.status.Phase).To(Equal(custosv1alpha1.TenantActive))
				return
			}
			// A later end starts a new exit with a grace period of its own.
			Expect(w.status.Phase).To(Equal(custosv1alpha1.TenantDestroyed))
			Expect(w.status.Exit.EndObservedAt.Time).To(BeTemporally("~", *newEnd, 2*time.Minute))
			Expect(firstDestruction(w)).To(BeTemporally(">=", newEnd.Add(72*time.Hour)))
		},
		Entry("None, end removed after a day", custosv1alpha1.DataReturnNone, day, nil),
		Entry("Export, end removed while the bag waits for its receipt", custosv1alpha1.DataReturnExport, 2*day, nil),
		Entry("None, end moved 30 days on", custosv1alpha1.DataReturnNone, day, ptr(end.Add(30*day))),
	)

	It("cannot be cancelled once the purge began: the exit finishes what it started", func() {
		s := spec(custosv1alpha1.DataReturnNone, custosv1alpha1.BackupDisposalShred)
		s.Contract.End = nil
		for _, st := range []custosv1alpha1.TenantStatus{
			{Phase: custosv1alpha1.TenantPurging, Exit: &custosv1alpha1.TenantExitStatus{EndObservedAt: ptrTime(end)}},
			{Phase: custosv1alpha1.TenantAwaitingBackupExpiry, Exit: &custosv1alpha1.TenantExitStatus{EndObservedAt: ptrTime(end), LiveDataPurgedAt: ptrTime(end)}},
			{Phase: custosv1alpha1.TenantTerminating, Exit: &custosv1alpha1.TenantExitStatus{Destroyed: []custosv1alpha1.DestroyedLocation{{Kind: custosv1alpha1.DestroyedDatabase}}}},
		} {
			Expect(lifecycle.NothingDestroyed(st)).To(BeFalse())
			d := lifecycle.Next(s, st, lifecycle.Facts{Suspended: true}, end.Add(day))
			Expect(d.Action).NotTo(Equal(lifecycle.CancelExit), string(st.Phase))
		}
	})
})

var _ = Describe("the exit's export", func() {
	It("destroys nothing on the strength of a DataExport that is not this exit's, even past acknowledgeTimeout", func() {
		s := spec(custosv1alpha1.DataReturnExport, custosv1alpha1.BackupDisposalShred)
		st := custosv1alpha1.TenantStatus{Phase: custosv1alpha1.TenantExporting, Exit: &custosv1alpha1.TenantExitStatus{EndObservedAt: ptrTime(end)}}
		f := lifecycle.Facts{Suspended: true, AcknowledgeTimeout: day, Export: lifecycle.ExportFacts{Exists: true, Phase: custosv1alpha1.ExportAcknowledged,
			DeliveredAt: end.Add(-300 * day), Refused: "DataExport t-exit was made for another tenant"}}
		d := lifecycle.Next(s, st, f, end.Add(50*day))
		Expect(d.Action).To(Equal(lifecycle.Wait))
		Expect(d.Phase).To(Equal(custosv1alpha1.TenantExporting))
		Expect(d.Reason).To(Equal(custosv1alpha1.ReasonExportNotBound))
		Expect(d.Message).To(Equal("DataExport t-exit was made for another tenant"))
		Expect(d.AcknowledgeTimedOut).To(BeFalse())
	})

	It("signs the certificate only once the exit's bag is deleted and verified gone (expireAfterDelivery from the receipt)", func() {
		w := newWorld(spec(custosv1alpha1.DataReturnExport, custosv1alpha1.BackupDisposalShred))
		w.receiptAt = end.Add(3 * day)
		w.run(end.Add(400 * day))
		Expect(w.status.Phase).To(Equal(custosv1alpha1.TenantDestroyed))
		Expect(w.certs).To(HaveLen(1))
		Expect(w.certs[0]).To(BeTemporally(">=", end.Add(13*day)), "10 days after the receipt")
		Expect(w.certs[0]).To(BeTemporally("<", end.Add(13*day+2*time.Hour)))
		Expect(w.destroyed[len(w.destroyed)-1].at).To(BeTemporally("~", end.Add(3*day), 2*time.Hour), "the backups go at the receipt")

		s := spec(custosv1alpha1.DataReturnExport, custosv1alpha1.BackupDisposalShred)
		st := custosv1alpha1.TenantStatus{Phase: custosv1alpha1.TenantAwaitingBackupExpiry, Exit: &custosv1alpha1.TenantExitStatus{
			ExportRef: &custosv1alpha1.ExitExportReference{Name: "t-exit-1", UID: "u"}, ExportAcknowledgedAt: ptrTime(end)}}
		f := lifecycle.Facts{Suspended: true, LiveDataGone: true, RepositoriesGone: true,
			Export: lifecycle.ExportFacts{Exists: true, Phase: custosv1alpha1.ExportAcknowledged, ExpiresAt: end.Add(10 * day)}}
		d := lifecycle.Next(s, st, f, end.Add(day))
		Expect(d.Action).To(Equal(lifecycle.Wait))
		Expect(d.Reason).To(Equal(custosv1alpha1.ReasonAwaitingBagExpiry))
		Expect(d.Message).To(And(ContainSubstring("t-exit-1"), ContainSubstring("2026-03-11T00:00:00Z")))
		Expect(d.RequeueAfter).To(Equal(24 * time.Hour))
		f.Export.Phase, f.Export.BagGone = custosv1alpha1.ExportExpired, true
		Expect(lifecycle.Next(s, st, f, end.Add(10*day)).Action).To(Equal(lifecycle.IssueCertificate))
		f.Export = lifecycle.ExportFacts{} // the DataExport was deleted: without proof the bag is gone, no certificate
		Expect(lifecycle.Next(s, st, f, end.Add(10*day)).Action).To(Equal(lifecycle.Wait))
	})
})

func ptr(t time.Time) *time.Time { return &t }
