package controllers

import (
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	custosv1alpha1 "github.com/custos-io/custos/api/v1alpha1"
)

// What the backup controller records and submits around retention.Plan (which has its own specs): deduplication,
// the legal hold and an unusable keepWithin stopping expiry, and what a tenant that is not Active still gets.
var _ = Describe("Backup plan", func() {
	now := time.Date(2026, 4, 1, 10, 0, 0, 0, time.UTC)
	daily := custosv1alpha1.Schedule{Cron: "@daily", TimeZone: "UTC"}

	// scope: an Active tenant with a database, repositories with snapshots at primary "ams" and offsite "fra",
	// every kind of work answered for today except expiry.
	scope := func() *backupScope {
		p := &custosv1alpha1.RetentionPolicy{Spec: custosv1alpha1.RetentionPolicySpec{Schedule: daily, CopySchedule: daily, ExpirySchedule: daily,
			Check: custosv1alpha1.RepositoryCheck{Schedule: daily}, RestoreDrill: custosv1alpha1.RestoreDrill{Schedule: daily}}}
		sc, err := parseSchedules(p)
		Expect(err).NotTo(HaveOccurred())
		done := ptrTime(now)
		loc := func(name string) custosv1alpha1.LocationBackupStatus {
			return custosv1alpha1.LocationBackupStatus{Location: name, RepositoryID: "r-" + name, Snapshots: 5, Newest: ptrTime(now.Add(-time.Hour)),
				LastSnapshotSlot: done, LastCopySlot: done, LastCheck: done}
		}
		t := &custosv1alpha1.Tenant{ObjectMeta: metav1.ObjectMeta{Name: "kliniek"}, Status: custosv1alpha1.TenantStatus{
			Phase: custosv1alpha1.TenantActive, Database: &custosv1alpha1.DatabaseStatus{Name: "tenant_kliniek", OID: 16384},
			Backups: []custosv1alpha1.LocationBackupStatus{loc("ams"), loc("fra")}, LastDrill: &custosv1alpha1.RestoreDrillStatus{Slot: done}}}
		return &backupScope{tenant: t, policy: p, scheds: sc, now: now, primary: "ams", offsite: "fra", keep: 90 * 24 * time.Hour}
	}
	kinds := func(s *backupScope) []string {
		var out []string
		for _, sp := range s.submit {
			out = append(out, string(sp.Kind)+"/"+sp.Location)
		}
		return out
	}
	plan := func(s *backupScope) { (&TenantBackupReconciler{}).plan(s) }

	It("records and submits the expiry due at each location, once", func() {
		s := scope()
		plan(s)
		Expect(kinds(s)).To(ConsistOf("Expiry/ams", "Expiry/fra"))
		Expect(s.tenant.Status.Tasks).To(HaveLen(2))
		for _, task := range s.tenant.Status.Tasks {
			Expect(task.Key).To(Equal(specOf(s.tenant, task).TaskKey()))
			Expect(task.Attempts).To(Equal(int32(1)))
			Expect(task.StartedAt).To(HaveValue(HaveField("Time", BeTemporally("==", now))))
		}
		Expect(s.tenant.Status.NextBackup).To(HaveValue(HaveField("Time", BeTemporally("==", now.Truncate(24*time.Hour).Add(24*time.Hour)))))

		By("planning again with the tasks recorded: nothing new")
		s.submit = nil
		plan(s)
		Expect(s.submit).To(BeEmpty())
		Expect(s.tenant.Status.Tasks).To(HaveLen(2))
	})

	It("plans no expiry under an active legal hold, and again once it has passed", func() {
		s := scope()
		s.tenant.Spec.LegalHold = &custosv1alpha1.LegalHold{Reason: "court order 2026/113", Until: ptrTime(now.Add(time.Hour))}
		plan(s)
		Expect(s.submit).To(BeEmpty())
		Expect(s.tenant.Status.Tasks).To(BeEmpty())

		s.now = now.Add(2 * time.Hour)
		plan(s)
		Expect(kinds(s)).To(ConsistOf("Expiry/ams", "Expiry/fra"))
	})

	It("plans no expiry while keepWithin is unusable (never a window of 0)", func() {
		s := scope()
		s.keepInvalid = "keepWithin is not usable"
		plan(s)
		Expect(s.submit).To(BeEmpty())
	})

	It("gives a tenant that is not Active no new snapshot, copy or drill, only expiry, and no next backup", func() {
		s := scope()
		s.tenant.Status.Phase = custosv1alpha1.TenantAwaitingBackupExpiry
		s.tenant.Status.Backups[0].LastSnapshotSlot, s.tenant.Status.Backups[1].LastCopySlot, s.tenant.Status.LastDrill = nil, nil, nil
		plan(s)
		Expect(kinds(s)).To(ConsistOf("Expiry/ams", "Expiry/fra"))
		Expect(s.tenant.Status.NextBackup).To(BeNil())
		for _, lb := range s.tenant.Status.Backups {
			Expect(lb.NextRun).NotTo(BeNil(), "the next expiry at %s is shown", lb.Location)
		}
	})
})

// A copy to the offsite lists the primary too, and can overlap the primary's expiry: whichever result is
// collected last, the figures listed last stand.
var _ = Describe("Repository figures of overlapping tasks", func() {
	now := time.Date(2026, 4, 1, 10, 0, 0, 0, time.UTC)
	p := &custosv1alpha1.RetentionPolicy{Spec: custosv1alpha1.RetentionPolicySpec{ExpirySchedule: custosv1alpha1.Schedule{Cron: "@daily", TimeZone: "UTC"}}}
	scope := func() *backupScope {
		sc, err := parseSchedules(p)
		Expect(err).NotTo(HaveOccurred())
		t := &custosv1alpha1.Tenant{ObjectMeta: metav1.ObjectMeta{Name: "kliniek"}}
		return &backupScope{tenant: t, policy: p, scheds: sc, now: now, primary: "ams", offsite: "fra", keep: 30 * 24 * time.Hour}
	}
	old, recent := now.Add(-45*24*time.Hour), now.Add(-time.Hour)
	// beforeForget: the copy listed the primary while the backdated snapshot was still there.
	beforeForget := locationSummary{RepositoryID: "r", Snapshots: 6, Oldest: old, Newest: recent, ListedAt: now.Add(-time.Minute)}
	// afterForget: the expiry listed it after forgetting the snapshot, 200 ms later.
	afterForget := locationSummary{RepositoryID: "r", Snapshots: 4, Oldest: recent.Add(-time.Hour), Newest: recent, ListedAt: now.Add(-time.Minute + 200*time.Millisecond)}

	It("keeps the expiry's figures when the copy's earlier listing is collected after them", func() {
		s := scope()
		applySummaries(s, map[string]locationSummary{"ams": afterForget})
		applySummaries(s, map[string]locationSummary{"ams": beforeForget, "fra": {RepositoryID: "o", Snapshots: 2, Oldest: recent, Newest: recent, ListedAt: now}})
		lb := s.tenant.LocationStatus("ams")
		Expect(lb.Snapshots).To(Equal(int32(4)))
		Expect(lb.Oldest.Time).To(Equal(afterForget.Oldest))
		Expect(lb.ListedAt.Time).To(Equal(afterForget.ListedAt))
		Expect(lb.GoneBy.Time).To(BeTemporally(">=", afterForget.Oldest.Add(30*24*time.Hour)))
		Expect(s.tenant.LocationStatus("fra").Snapshots).To(Equal(int32(2)), "the other location's figures are applied")
	})

	It("applies figures in the order they were listed", func() {
		s := scope()
		applySummaries(s, map[string]locationSummary{"ams": beforeForget})
		Expect(s.tenant.LocationStatus("ams").Oldest.Time).To(Equal(old))
		applySummaries(s, map[string]locationSummary{"ams": afterForget})
		lb := s.tenant.LocationStatus("ams")
		Expect(lb.Snapshots).To(Equal(int32(4)))
		Expect(lb.Oldest.Time).To(Equal(afterForget.Oldest))
	})

	It("applies the figures of an output without a listing time (written before it was recorded)", func() {
		s := scope()
		applySummaries(s, map[string]locationSummary{"ams": afterForget})
		applySummaries(s, map[string]locationSummary{"ams": {RepositoryID: "r", Snapshots: 1, Oldest: recent, Newest: recent}})
		lb := s.tenant.LocationStatus("ams")
		Expect(lb.Snapshots).To(Equal(int32(1)))
		Expect(lb.ListedAt).To(BeNil())
	})
})
