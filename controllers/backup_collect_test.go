package controllers

import (
	"encoding/json"
	"errors"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/events"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	custosv1alpha1 "github.com/custos-io/custos/api/v1alpha1"
	"github.com/custos-io/custos/internal/backup"
	"github.com/custos-io/custos/internal/runner"
)

// finished is a Runner whose tasks have all finished with the results given (keyed by Spec.Key).
type finished map[string]runner.Result

func (f finished) Submit(runner.Spec) bool { return false }
func (f finished) Active(string) bool      { return false }
func (f finished) Result(key string) (runner.Result, bool) {
	r, ok := f[key]
	return r, ok
}
func (f finished) Forget(key string) { delete(f, key) }

// What collect makes of a task held back at its start (a legal hold, the tenant's database found missing after it
// was submitted), and what the executor holds back: a held expiry forgot nothing, so its slot must stay open.
var _ = Describe("Held tasks", func() {
	now := time.Date(2026, 4, 1, 10, 0, 0, 0, time.UTC)
	slot := metav1.NewTime(now.Add(-time.Minute))
	lost := metav1.Condition{Type: custosv1alpha1.ConditionDatabaseReady, Status: metav1.ConditionFalse, Reason: custosv1alpha1.ReasonDatabaseMissing}
	hold := &custosv1alpha1.LegalHold{Reason: "court order 17"}

	tenant := func() *custosv1alpha1.Tenant {
		t := &custosv1alpha1.Tenant{ObjectMeta: metav1.ObjectMeta{Name: "kliniek"}, Status: custosv1alpha1.TenantStatus{
			Phase:   custosv1alpha1.TenantActive,
			Backups: []custosv1alpha1.LocationBackupStatus{{Location: "ams", RepositoryID: "r", Snapshots: 4}},
			Tasks: []custosv1alpha1.BackupTask{{Kind: custosv1alpha1.TaskExpiry, Location: "ams", Slot: slot, Attempts: 1,
				StartedAt: &slot}}}}
		t.Status.Tasks[0].Key = specOf(t, t.Status.Tasks[0]).TaskKey()
		return t
	}
	collect := func(t *custosv1alpha1.Tenant, err error) (*backupScope, *events.FakeRecorder) {
		rec := events.NewFakeRecorder(10)
		r := &TenantBackupReconciler{Runner: finished{specOf(t, t.Status.Tasks[0]).Key(): {Err: err}}, Recorder: rec, RetryAfter: time.Minute}
		s := &backupScope{tenant: t, now: now, primary: "ams"}
		r.collect(GinkgoT().Context(), s)
		return s, rec
	}

	DescribeTable("a held result is taken, not answered, not retried, not given up",
		func(err error, event string) {
			t := tenant()
			s, rec := collect(t, err)
			Expect(t.Status.Tasks).To(BeEmpty(), "the result is taken")
			Expect(s.recorded).To(HaveLen(1))
			Expect(s.submit).To(BeEmpty())
			lb := t.LocationStatus("ams")
			Expect(lb.LastExpiry).To(BeNil(), "the slot is not answered: the plan asks for it again once the hold or loss is resolved")
			Expect(lb.LastError).To(BeEmpty())
			Expect(lb.Snapshots).To(Equal(int32(4)), "nothing applied from a task that forgot nothing")
			if event == "" {
				Expect(rec.Events).To(BeEmpty())
			} else {
				Expect(rec.Events).To(Receive(ContainSubstring(event)))
			}
		},
		Entry("a legal hold", &errHeld{hold.Reason}, custosv1alpha1.ReasonLegalHoldActive),
		Entry("the database found missing", errLostHeld, ""),
		Entry("the database found missing, wrapped", errors.Join(errors.New("expiry"), errLostHeld), ""),
	)

	It("retries an ordinary failure, and answers it after the last attempt", func() {
		t := tenant()
		s, _ := collect(t, errors.New("connection refused"))
		Expect(t.Status.Tasks).To(HaveLen(1))
		Expect(t.Status.Tasks[0].NotBefore).NotTo(BeNil())
		Expect(t.LocationStatus("ams").LastExpiry).To(BeNil())
		Expect(s.submit).To(BeEmpty())

		t = tenant()
		t.Status.Tasks[0].Attempts = maxAttempts
		collect(t, errors.New("connection refused"))
		Expect(t.Status.Tasks).To(BeEmpty())
		Expect(t.LocationStatus("ams").LastExpiry).To(HaveValue(HaveField("Time", BeTemporally("==", slot.Time))), "given up: answered, with the error")
		Expect(t.LocationStatus("ams").LastError).To(ContainSubstring("gave up"))
	})

	DescribeTable("the executor holds back",
		func(kind custosv1alpha1.TaskKind, lostDB bool, h *custosv1alpha1.LegalHold, want error) {
			t := tenant()
			t.Spec.LegalHold = h
			if lostDB {
				meta.SetStatusCondition(&t.Status.Conditions, lost)
			}
			e := &BackupExecutor{Clock: clocktesting.NewFakePassiveClock(now)}
			err := e.heldBack(t, kind)
			if want == nil {
				Expect(err).NotTo(HaveOccurred())
				return
			}
			Expect(err).To(MatchError(want))
		},
		Entry("nothing: every kind runs", custosv1alpha1.TaskExpiry, false, nil, nil),
		Entry("a hold: the expiry", custosv1alpha1.TaskExpiry, false, hold, &errHeld{hold.Reason}),
		Entry("a hold: not a snapshot", custosv1alpha1.TaskSnapshot, false, hold, nil),
		Entry("a lost database: the expiry", custosv1alpha1.TaskExpiry, true, nil, errLostHeld),
		Entry("a lost database: the snapshot (it would store an empty database)", custosv1alpha1.TaskSnapshot, true, nil, errLostHeld),
		Entry("a lost database: the copy", custosv1alpha1.TaskCopy, true, nil, errLostHeld),
		Entry("a lost database: not the integrity check", custosv1alpha1.TaskCheck, true, nil, nil),
	)

	It("stops an expiry whose database is found missing between its listing and its forget", func() {
		ctx := GinkgoT().Context()
		t := tenant()
		scheme := runtime.NewScheme()
		Expect(custosv1alpha1.AddToScheme(scheme)).To(Succeed())
		c := fake.NewClientBuilder().WithScheme(scheme).WithObjects(t).WithStatusSubresource(t).Build()
		e := &BackupExecutor{Clock: clocktesting.NewFakePassiveClock(now), Reader: c}
		Expect(e.notHeld(ctx, t.Name)).To(Succeed())
		meta.SetStatusCondition(&t.Status.Conditions, lost)
		Expect(c.Status().Update(ctx, t)).To(Succeed())
		Expect(e.notHeld(ctx, t.Name)).To(MatchError(errLostHeld), "the guard reads the Tenant again, not the copy the task started with")
	})
})

// A check that found damage or a drill whose data differs ran to its end: it is a failure in the task metric, as it
// is in status and events.
var _ = Describe("Failed checks and drills", func() {
	now := time.Date(2026, 4, 1, 10, 0, 0, 0, time.UTC)
	counted := func(kind, result string) float64 {
		mfs, err := ctrlmetrics.Registry.Gather()
		Expect(err).NotTo(HaveOccurred())
		for _, mf := range mfs {
			if mf.GetName() != "custos_backup_tasks_total" {
				continue
			}
			for _, m := range mf.GetMetric() {
				l := map[string]string{}
				for _, lp := range m.GetLabel() {
					l[lp.GetName()] = lp.GetValue()
				}
				if l["kind"] == kind && l["result"] == result {
					return m.GetCounter().GetValue()
				}
			}
		}
		return 0
	}
	run := func(kind custosv1alpha1.TaskKind, out taskOutput) *custosv1alpha1.Tenant {
		t := &custosv1alpha1.Tenant{ObjectMeta: metav1.ObjectMeta{Name: "kliniek"}}
		task := custosv1alpha1.BackupTask{Kind: kind, Location: "ams", Slot: metav1.NewTime(now), Attempts: 1}
		b, err := json.Marshal(out)
		Expect(err).NotTo(HaveOccurred())
		r := &TenantBackupReconciler{Recorder: events.NewFakeRecorder(10)}
		s := &backupScope{tenant: t, now: now, primary: "ams"}
		Expect(r.succeeded(GinkgoT().Context(), s, task, runner.Result{Output: b, Started: now, Finished: now.Add(time.Second)})).To(Succeed())
		return t
	}
	DescribeTable("counted by result",
		func(kind custosv1alpha1.TaskKind, out taskOutput, result string) {
			before := map[string]float64{"success": counted(string(kind), "success"), "failed": counted(string(kind), "failed")}
			run(kind, out)
			Expect(counted(string(kind), result)).To(Equal(before[result] + 1))
			other := map[string]string{"success": "failed", "failed": "success"}[result]
			Expect(counted(string(kind), other)).To(Equal(before[other]))
		},
		Entry("a clean check", custosv1alpha1.TaskCheck, taskOutput{}, "success"),
		Entry("a check that found damage", custosv1alpha1.TaskCheck, taskOutput{CheckError: "pack 3f2a: not referenced"}, "failed"),
		Entry("a drill that matched", custosv1alpha1.TaskDrill, taskOutput{Drill: &backup.DrillResult{Snapshot: "abc", Tables: 1}}, "success"),
		Entry("a drill whose rows differ", custosv1alpha1.TaskDrill, taskOutput{Drill: &backup.DrillResult{Snapshot: "abc", Tables: 1, Differences: []string{"patients: 49 rows, 50 at backup"}}}, "failed"),
	)
})
