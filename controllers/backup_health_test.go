package controllers

import (
	"fmt"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	custosv1alpha1 "github.com/custos-io/custos/api/v1alpha1"
	"github.com/custos-io/custos/internal/runner"
)

// The backup controller's decisions that read only one reconcile's view (backupScope), on a fake clock.
var _ = Describe("Backup decisions", func() {
	now := time.Date(2026, 4, 1, 10, 0, 0, 0, time.UTC)
	ago := func(d time.Duration) *metav1.Time { return ptrTime(now.Add(-d)) }

	// scope is an Active tenant created 30 days ago, with a policy of primary "ams" and offsite "fra" and a
	// maxSnapshotAge of 26h.
	scope := func(backups ...custosv1alpha1.LocationBackupStatus) *backupScope {
		t := &custosv1alpha1.Tenant{ObjectMeta: metav1.ObjectMeta{Name: "kliniek", Generation: 3, CreationTimestamp: metav1.NewTime(now.Add(-30 * 24 * time.Hour))},
			Status: custosv1alpha1.TenantStatus{Phase: custosv1alpha1.TenantActive, Backups: backups}}
		p := &custosv1alpha1.RetentionPolicy{Spec: custosv1alpha1.RetentionPolicySpec{MaxSnapshotAge: "26h"}}
		return &backupScope{tenant: t, policy: p, now: now, maxAge: 26 * time.Hour, primary: "ams", offsite: "fra"}
	}
	healthOf := func(s *backupScope) *metav1.Condition {
		(&TenantBackupReconciler{}).health(s)
		c := meta.FindStatusCondition(s.tenant.Status.Conditions, custosv1alpha1.ConditionBackupsHealthy)
		Expect(c).NotTo(BeNil())
		Expect(c.ObservedGeneration).To(Equal(int64(3)))
		return c
	}
	fresh := func(loc string) custosv1alpha1.LocationBackupStatus {
		return custosv1alpha1.LocationBackupStatus{Location: loc, RepositoryID: "r-" + loc, Snapshots: 3, Newest: ago(2 * time.Hour)}
	}

	DescribeTable("BackupsHealthy",
		func(mutate func(s *backupScope), status metav1.ConditionStatus, reason string, inMessage string) {
			s := scope(fresh("ams"), fresh("fra"))
			mutate(s)
			c := healthOf(s)
			Expect(c.Status).To(Equal(status))
			Expect(c.Reason).To(Equal(reason))
			Expect(c.Message).To(ContainSubstring(inMessage))
		},
		Entry("both locations younger than maxSnapshotAge", func(*backupScope) {}, metav1.ConditionTrue, custosv1alpha1.ReasonSnapshotsFresh, "younger than 26h"),
		Entry("the offsite's newest older than maxSnapshotAge", func(s *backupScope) { s.tenant.Status.Backups[1].Newest = ago(27 * time.Hour) },
			metav1.ConditionFalse, custosv1alpha1.ReasonSnapshotTooOld, "offsite fra is from"),
		Entry("no snapshot at the primary although the tenant is older than maxSnapshotAge", func(s *backupScope) { s.tenant.Status.Backups[0].Newest = nil },
			metav1.ConditionFalse, custosv1alpha1.ReasonSnapshotTooOld, "primary ams holds no snapshot"),
		Entry("no snapshot yet on a tenant younger than maxSnapshotAge", func(s *backupScope) {
			s.tenant.CreationTimestamp = metav1.NewTime(now.Add(-time.Hour))
			s.tenant.Status.Backups = nil
		}, metav1.ConditionUnknown, custosv1alpha1.ReasonNoSnapshotYet, "on their way"),
		Entry("the latest work failed, with the failure's own reason", func(s *backupScope) {
			s.tenant.Status.Backups[0].LastError, s.tenant.Status.Backups[0].LastErrorReason = "Snapshot: repository locked (attempt 1 of 3)", "RepositoryLocked"
		}, metav1.ConditionFalse, "RepositoryLocked", "primary ams: Snapshot: repository locked"),
		Entry("a failure without a reason is TaskFailed", func(s *backupScope) { s.tenant.Status.Backups[1].LastError = "Copy: exit status 1" },
			metav1.ConditionFalse, custosv1alpha1.ReasonTaskFailed, "offsite fra: Copy: exit status 1"),
		Entry("a too-old snapshot outranks a failure's reason", func(s *backupScope) {
			s.tenant.Status.Backups[0].Newest = ago(48 * time.Hour)
			s.tenant.Status.Backups[1].LastError, s.tenant.Status.Backups[1].LastErrorReason = "Copy: refused", "AuthenticationFailed"
		}, metav1.ConditionFalse, custosv1alpha1.ReasonSnapshotTooOld, "offsite fra: Copy: refused"),
		Entry("an unusable keepWithin is shown, snapshots fresh or not", func(s *backupScope) { s.keepInvalid = "keepWithin \"90x\" is not usable" },
			metav1.ConditionFalse, custosv1alpha1.ReasonScheduleInvalid, "keepWithin \"90x\" is not usable"),
		Entry("a failure at a retired location (still expired) is shown", func(s *backupScope) {
			s.tenant.Status.Backups = append(s.tenant.Status.Backups, custosv1alpha1.LocationBackupStatus{Location: "old", RepositoryID: "r-old", LastError: "Expiry: unreachable"})
		}, metav1.ConditionFalse, custosv1alpha1.ReasonTaskFailed, "retired old (no longer in the policy, still expired): Expiry: unreachable"),
		Entry("a tenant that is not Active takes no snapshots: Unknown, never True", func(s *backupScope) {
			s.tenant.Status.Phase = custosv1alpha1.TenantTerminating
			s.tenant.Status.Backups[0].Newest = ago(100 * time.Hour)
		}, metav1.ConditionUnknown, custosv1alpha1.ReasonBackupsNotActive, "the tenant is Terminating"),
	)

	It("names the roles of locations: the policy's primary and offsite, and any other with a repository as retired", func() {
		s := scope(fresh("ams"), fresh("fra"), custosv1alpha1.LocationBackupStatus{Location: "old", RepositoryID: "r-old"},
			custosv1alpha1.LocationBackupStatus{Location: "never-used"})
		Expect([]string{roleOf(s, "ams"), roleOf(s, "fra"), roleOf(s, "old")}).To(Equal([]string{rolePrimary, roleOffsite, roleRetired}))
		Expect(s.retired()).To(Equal([]string{"old"}), "a location without a repository has nothing to expire")
	})

	It("while the recorded database is missing, starts no task but the integrity check, and says why", func() {
		s := scope(fresh("ams"), fresh("fra"))
		t := s.tenant
		t.Status.Conditions = []metav1.Condition{{Type: custosv1alpha1.ConditionDatabaseReady, Status: metav1.ConditionFalse, Reason: custosv1alpha1.ReasonDatabaseMissing}}
		slot := metav1.NewTime(now.Add(-time.Minute))
		for _, k := range []custosv1alpha1.TaskKind{custosv1alpha1.TaskSnapshot, custosv1alpha1.TaskExpiry, custosv1alpha1.TaskCheck, custosv1alpha1.TaskDrill} {
			task := custosv1alpha1.BackupTask{Kind: k, Location: "ams", Slot: slot, Attempts: 1}
			task.Key = specOf(t, task).TaskKey()
			t.Status.Tasks = append(t.Status.Tasks, task)
			s.submit = append(s.submit, specOf(t, task))
		}
		t.Status.NextBackup = ptrTime(now.Add(time.Hour))

		stopForLostDatabase(s)

		Expect(s.submit).To(HaveLen(1))
		Expect(s.submit[0].Kind).To(Equal(custosv1alpha1.TaskCheck))
		Expect(t.Status.Tasks).To(HaveLen(1))
		Expect(t.Status.Tasks[0].Kind).To(Equal(custosv1alpha1.TaskCheck))
		Expect(t.Status.NextBackup).To(BeNil())
		c := meta.FindStatusCondition(t.Status.Conditions, custosv1alpha1.ConditionBackupsHealthy)
		Expect(c).To(HaveValue(And(HaveField("Status", metav1.ConditionFalse), HaveField("Reason", custosv1alpha1.ReasonDatabaseMissing))))
	})

	It("leaves everything to the exit once a person ended the contract, even with the database missing", func() {
		s := scope(fresh("ams"))
		s.tenant.Status.Phase = custosv1alpha1.TenantTerminating
		s.tenant.Status.Conditions = []metav1.Condition{{Type: custosv1alpha1.ConditionDatabaseReady, Status: metav1.ConditionFalse, Reason: custosv1alpha1.ReasonDatabaseMissing}}
		s.submit = []runner.Spec{{Tenant: "kliniek", Kind: custosv1alpha1.TaskExpiry, Location: "ams", Slot: now}}
		stopForLostDatabase(s)
		Expect(s.submit).To(HaveLen(1))
	})

	DescribeTable("a task failure's reason",
		func(err error, reason string) { Expect(errorReason(err)).To(Equal(reason)) },
		Entry("objects over the limit", fmt.Errorf("snapshot: %w", &errObjectsTooLarge{limit: 1, at: "ns/x"}), custosv1alpha1.ReasonObjectsTooLarge),
		Entry("stopped by a legal hold", fmt.Errorf("expiry: %w", &errHeld{reason: "court order"}), custosv1alpha1.ReasonLegalHoldActive),
		Entry("held back for a lost database", fmt.Errorf("expiry: %w", errLostHeld), custosv1alpha1.ReasonDatabaseMissing),
		Entry("a Secret that is not bound", &errSecretNotBound{msg: "not bound"}, custosv1alpha1.ReasonSecretNotBound),
		Entry("a missing Secret", &errSecret{msg: "missing"}, custosv1alpha1.ReasonSecretMissing),
		Entry("anything else", fmt.Errorf("exit status 1"), custosv1alpha1.ReasonTaskFailed),
	)
})

func ptrTime(t time.Time) *metav1.Time { m := metav1.NewTime(t); return &m }
