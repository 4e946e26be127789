package local

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	custosv1alpha1 "github.com/custos-io/custos/api/v1alpha1"
	"github.com/custos-io/custos/controllers"
	"github.com/custos-io/custos/internal/backup"
	"github.com/custos-io/custos/internal/evidence"
	"github.com/custos-io/custos/internal/restic"
)

// backdateSlot adds a complete slot (a small db and an objects snapshot with the same slot tag) of the tenant
// taken age ago to r, and returns the slot's tag value.
func backdateSlot(ctx context.Context, r restic.Repository, tenant string, age time.Duration) string {
	GinkgoHelper()
	at := time.Now().Add(-age).UTC().Truncate(time.Second)
	slot := backup.SlotTag(at)
	for _, kind := range []string{backup.KindDB, backup.KindObjects} {
		r.Dir = GinkgoT().TempDir()
		Expect(os.WriteFile(filepath.Join(r.Dir, kind+".txt"), []byte("-- a day long gone: "+kind+"\n"), 0o600)).To(Succeed())
		_, err := r.BackupDir(ctx, tenant, []string{"tenant=" + tenant, "kind=" + kind, "slot=" + slot}, at, ".")
		Expect(err).NotTo(HaveOccurred())
	}
	return slot
}

// slotsOf maps each slot tag of the tenant's snapshots in r to its kinds.
func slotsOf(ctx context.Context, r restic.Repository, tenant string) map[string][]string {
	GinkgoHelper()
	snaps, err := r.Snapshots(ctx, "tenant="+tenant)
	Expect(err).NotTo(HaveOccurred())
	out := map[string][]string{}
	for _, s := range snaps {
		out[s.Tag("slot")] = append(out[s.Tag("slot")], s.Tag("kind"))
	}
	return out
}

// snapshotIDs are the ids of the tenant's snapshots in r.
func snapshotIDs(ctx context.Context, r restic.Repository, tenant string) []string {
	GinkgoHelper()
	snaps, err := r.Snapshots(ctx, "tenant="+tenant)
	Expect(err).NotTo(HaveOccurred())
	var ids []string
	for _, s := range snaps {
		ids = append(ids, s.ID)
	}
	return ids
}

// auditActions are the actions on the tenant's audit trail, in order.
func auditActions(ctx context.Context, t *custosv1alpha1.Tenant) func(Gomega) []evidence.Action {
	return func(g Gomega) []evidence.Action {
		var cms corev1.ConfigMapList
		g.Expect(k8s.List(ctx, &cms, client.InNamespace(managerNamespace), client.MatchingLabels{"custos.io/audit-tenant": t.Name})).To(Succeed())
		var out []evidence.Action
		for _, cm := range cms.Items {
			es, err := evidence.ParseLines([]byte(cm.Data["entries.jsonl"]))
			g.Expect(err).NotTo(HaveOccurred())
			for _, e := range es {
				out = append(out, e.Action)
			}
		}
		return out
	}
}

var _ = Describe("Retention that holds", Ordered, ContinueOnFailure, Label("integration", "backups", "security"), func() {
	const (
		locA      = "sr-a"
		locB      = "sr-b"
		locBig    = "sr-big"
		policy    = "sr-policy"
		bigPolicy = "sr-big-policy"
		server    = "sr-pg"
		// objectsLimit is the manager's cap on a snapshot's objects in these specs.
		objectsLimit = 2 << 20
	)
	var (
		mgr    *runningManager
		base   string
		tenant *custosv1alpha1.Tenant
	)
	dirOf := func(loc string) string { return filepath.Join(base, loc) }
	repoAt := func(ctx context.Context, t *custosv1alpha1.Tenant, loc string) restic.Repository {
		GinkgoHelper()
		var keys corev1.Secret
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: managerNamespace, Name: "custos-repo-" + t.Name}, &keys)).To(Succeed())
		Expect(keys.Data).To(HaveKey(loc))
		return restic.Repository{Binary: programs.Restic, URL: filepath.Join(dirOf(loc), t.Name+"-"+string(t.UID)[:8]),
			Password: string(keys.Data[loc]), RetryLock: time.Minute}
	}
	// expiryAfter waits for an expiry at loc whose slot is later than since.
	expiryAfter := func(ctx context.Context, t *custosv1alpha1.Tenant, loc string, since time.Time) {
		GinkgoHelper()
		Eventually(func(g Gomega) {
			lb := locationStatusOf(ctx, t, loc)(g)
			g.Expect(lb.LastExpiry).NotTo(BeNil())
			g.Expect(lb.LastExpiry.Time).To(BeTemporally(">", since))
		}).WithTimeout(3 * time.Minute).Should(Succeed())
	}

	BeforeAll(func(ctx SpecContext) {
		base = filepath.Join(GinkgoT().TempDir(), "locations")
		mgr = startManager(func(o *controllers.Options) { o.Programs.ObjectsLimit = objectsLimit })
		DeferCleanup(func() { mgr.stop() })
		for _, loc := range []string{locA, locB, locBig} {
			ensureObject(ctx, &custosv1alpha1.BackupLocation{ObjectMeta: metav1.ObjectMeta{Name: loc},
				Spec: custosv1alpha1.BackupLocationSpec{URL: dirOf(loc), Jurisdiction: "NL"}})
		}
		every := custosv1alpha1.Schedule{Cron: "* * * * *", TimeZone: "UTC"}
		yearly := custosv1alpha1.Schedule{Cron: "0 0 1 1 *", TimeZone: "UTC"}
		// One snapshot when the tenant is new (the first slot is due at once), then none this year: the
		// snapshots age while expiry runs every minute, as when backups fail for longer than keepWithin.
		ensureObject(ctx, &custosv1alpha1.RetentionPolicy{ObjectMeta: metav1.ObjectMeta{Name: policy}, Spec: custosv1alpha1.RetentionPolicySpec{
			Primary: custosv1alpha1.ObjectReference{Name: locA}, Schedule: yearly, ExpirySchedule: every, KeepWithin: "30d",
			Check: custosv1alpha1.RepositoryCheck{Schedule: yearly}, RestoreDrill: custosv1alpha1.RestoreDrill{Enabled: ptr.To(false)},
			AllowedJurisdictions: []custosv1alpha1.JurisdictionSelector{"EEA"},
		}})
		ensureObject(ctx, &custosv1alpha1.RetentionPolicy{ObjectMeta: metav1.ObjectMeta{Name: bigPolicy}, Spec: custosv1alpha1.RetentionPolicySpec{
			Primary: custosv1alpha1.ObjectReference{Name: locBig}, Schedule: every, ExpirySchedule: yearly, KeepWithin: "30d",
			Check: custosv1alpha1.RepositoryCheck{Schedule: yearly}, RestoreDrill: custosv1alpha1.RestoreDrill{Enabled: ptr.To(false)},
			AllowedJurisdictions: []custosv1alpha1.JurisdictionSelector{"EEA"},
		}})
		databaseServerFor(ctx, server, pg, "NL")

		tenant = newTenant("sr")
		tenant.Spec.RetentionPolicyRef.Name = policy
		tenant.Spec.Database.ServerRef.Name = server
		Expect(k8s.Create(ctx, tenant)).To(Succeed())
		expectReady(ctx, tenant)
		Eventually(locationStatusOf(ctx, tenant, locA)).WithTimeout(2 * time.Minute).Should(HaveField("Snapshots", BeNumerically(">=", 1)))
	})

	It("keeps an active tenant's newest complete slot when every snapshot is older than keepWithin", func(ctx SpecContext) {
		r := repoAt(ctx, tenant, locA)
		// With the manager stopped: an expiry that listed the repository before the real snapshot is forgotten
		// below would rightly keep that one and forget the rest, and the spec would race it.
		mgr.stop()
		older := backdateSlot(ctx, r, tenant.Name, 45*24*time.Hour)
		newest := backdateSlot(ctx, r, tenant.Name, 40*24*time.Hour)
		By("forgetting the tenant's real snapshot, so that every snapshot left is older than the window")
		snaps, err := r.Snapshots(ctx, "tenant="+tenant.Name)
		Expect(err).NotTo(HaveOccurred())
		var current []string
		for _, s := range snaps {
			if slot := s.Tag("slot"); slot != older && slot != newest {
				current = append(current, s.ID)
			}
		}
		Expect(current).NotTo(BeEmpty())
		Expect(r.Forget(ctx, current)).To(Succeed())
		Expect(slotsOf(ctx, r, tenant.Name)).To(HaveLen(2))
		mgr = startManager(func(o *controllers.Options) { o.Programs.ObjectsLimit = objectsLimit })

		Eventually(func() map[string][]string { return slotsOf(ctx, r, tenant.Name) }).
			WithTimeout(3*time.Minute).WithPolling(2*time.Second).ShouldNot(HaveKey(older), "the older slot outlived the window and goes")
		Expect(slotsOf(ctx, r, tenant.Name)).To(And(HaveLen(1), HaveKeyWithValue(newest, ConsistOf("db", "objects"))),
			"the newest complete slot stays, older than keepWithin as it is")
		By("keeping it at the next expiry too")
		expiryAfter(ctx, tenant, locA, time.Now())
		Expect(slotsOf(ctx, r, tenant.Name)).To(HaveKey(newest))
		Expect(locationStatusOf(ctx, tenant, locA)(Default)).To(And(HaveField("Snapshots", int32(1)), HaveField("LastError", BeEmpty())))
	})

	It("shows a legal hold on an Active tenant, records it, and starts no expiry that was recorded before it", func(ctx SpecContext) {
		r := repoAt(ctx, tenant, locA)
		By("stopping the manager with an expiry recorded in status but not started, as a manager that stopped leaves it")
		mgr.stop()
		slot := time.Now().UTC().Truncate(time.Minute)
		Eventually(func() error {
			if err := k8s.Get(ctx, keyOf(tenant), tenant); err != nil {
				return err
			}
			started := metav1.NewTime(slot)
			tenant.Status.Tasks = append(tenant.Status.Tasks, custosv1alpha1.BackupTask{Kind: custosv1alpha1.TaskExpiry, Location: locA,
				Slot: metav1.NewTime(slot), Attempts: 1, StartedAt: &started, Key: fmt.Sprintf("Expiry/%s/%d", locA, slot.Unix())})
			return k8s.Status().Update(ctx, tenant)
		}).Should(Succeed())
		old := backdateSnapshot(ctx, r, tenant.Name, 60*24*time.Hour)
		updateSpec(ctx, tenant, func() { tenant.Spec.LegalHold = &custosv1alpha1.LegalHold{Reason: "court order 2026/204"} })

		mgr = startManager(func(o *controllers.Options) { o.Programs.ObjectsLimit = objectsLimit })
		c := condition(ctx, tenant, custosv1alpha1.ConditionLegalHold)
		Eventually(c).WithTimeout(time.Minute).Should(haveStatus(metav1.ConditionTrue, custosv1alpha1.ReasonLegalHoldActive))
		Expect(c(Default).Message).To(ContainSubstring("court order 2026/204"))
		Expect(tenant.Status.Phase).To(Equal(custosv1alpha1.TenantActive))
		Eventually(auditActions(ctx, tenant)).WithTimeout(30 * time.Second).Should(ContainElement(evidence.ActionLegalHoldSet))
		Eventually(func(g Gomega) []custosv1alpha1.BackupTask {
			g.Expect(k8s.Get(ctx, keyOf(tenant), tenant)).To(Succeed())
			return tenant.Status.Tasks
		}).WithTimeout(time.Minute).Should(Not(ContainElement(HaveField("Kind", custosv1alpha1.TaskExpiry))), "the recorded expiry is dropped, not run")
		Expect(snapshotIDs(ctx, r, tenant.Name)).To(ContainElement(old), "the snapshot past the window is still there")

		By("lifting the hold: it is on the record, and expiry resumes")
		updateSpec(ctx, tenant, func() { tenant.Spec.LegalHold = nil })
		Eventually(c).WithTimeout(30 * time.Second).Should(haveStatus(metav1.ConditionFalse, custosv1alpha1.ReasonLegalHoldExpired))
		Eventually(auditActions(ctx, tenant)).WithTimeout(30 * time.Second).Should(ContainElement(evidence.ActionLegalHoldLifted))
		Eventually(func() []string { return snapshotIDs(ctx, r, tenant.Name) }).WithTimeout(3 * time.Minute).WithPolling(2 * time.Second).
			ShouldNot(ContainElement(old))
	})

	It("keeps expiring a location taken out of the policy until it holds no snapshot", func(ctx SpecContext) {
		r := repoAt(ctx, tenant, locA)
		By("pointing the policy at a new location, as the guide says to change a location's URL")
		p := &custosv1alpha1.RetentionPolicy{ObjectMeta: metav1.ObjectMeta{Name: policy}}
		updateSpec(ctx, p, func() { p.Spec.Primary.Name = locB })
		Eventually(locationStatusOf(ctx, tenant, locB)).WithTimeout(2 * time.Minute).Should(HaveField("Snapshots", BeNumerically(">=", 1)))
		By("finding snapshots past the window in the old location after the change")
		stale := backdateSnapshot(ctx, r, tenant.Name, 50*24*time.Hour)
		Expect(snapshotIDs(ctx, r, tenant.Name)).To(ContainElement(stale))

		Eventually(func() map[string][]string { return slotsOf(ctx, r, tenant.Name) }).
			WithTimeout(3*time.Minute).WithPolling(2*time.Second).Should(BeEmpty(), "the retired repository is expired to empty")
		Eventually(locationStatusOf(ctx, tenant, locA)).WithTimeout(2 * time.Minute).Should(And(
			HaveField("Role", "Retired"), HaveField("Snapshots", int32(0)), HaveField("RepositoryID", Not(BeEmpty())), HaveField("LastError", BeEmpty())))
		Expect(slotsOf(ctx, repoAt(ctx, tenant, locB), tenant.Name)).NotTo(BeEmpty(), "the new location keeps its snapshot")
	})

	It("pages through many ConfigMaps, and refuses a snapshot above the objects limit with a reason", func(ctx SpecContext) {
		t := newTenant("sr-big")
		t.Spec.RetentionPolicyRef.Name = bigPolicy
		t.Spec.Database.ServerRef.Name = server
		Expect(k8s.Create(ctx, t)).To(Succeed())
		expectReady(ctx, t)
		value := strings.Repeat("x", 8<<10)
		create := func(from, to int) {
			for i := from; i < to; i++ {
				Expect(k8s.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("settings-%03d", i), Namespace: t.Name},
					Data: map[string]string{"blob": value}})).To(Succeed())
			}
		}
		By("120 ConfigMaps of 8 KiB, more than two pages: all in the snapshot")
		create(0, 120)
		created := time.Now()
		Eventually(func(g Gomega) {
			lb := locationStatusOf(ctx, t, locBig)(g)
			g.Expect(lb.LastSnapshotSlot).NotTo(BeNil())
			g.Expect(lb.LastSnapshotSlot.Time).To(BeTemporally(">", created))
			g.Expect(lb.LastError).To(BeEmpty())
		}).WithTimeout(3 * time.Minute).Should(Succeed())
		r := repoAt(ctx, t, locBig)
		snaps, err := r.Snapshots(ctx, "tenant="+t.Name, "kind=objects")
		Expect(err).NotTo(HaveOccurred())
		Expect(snaps).NotTo(BeEmpty())
		out, err := runRestic(ctx, r.URL, r.Password, nil, "ls", snaps[len(snaps)-1].ID, "/custos-backup/objects/"+t.Name+"/configmap")
		Expect(err).NotTo(HaveOccurred())
		Expect(strings.Count(string(out), "/settings-")).To(Equal(120))

		By("200 more, past the 2 MiB limit: no snapshot, and the reason says why")
		create(120, 320)
		tooMany := time.Now()
		c := condition(ctx, t, custosv1alpha1.ConditionBackupsHealthy)
		Eventually(func(g Gomega) string { return locationStatusOf(ctx, t, locBig)(g).LastErrorReason }).WithTimeout(3 * time.Minute).
			Should(Equal("ObjectsTooLarge"))
		Eventually(c).WithTimeout(30 * time.Second).Should(haveStatus(metav1.ConditionFalse, "ObjectsTooLarge"))
		Expect(c(Default).Message).To(And(ContainSubstring(locBig), ContainSubstring(fmt.Sprintf("exceed %d bytes", objectsLimit)), ContainSubstring("ConfigMap")))
		Expect(locationStatusOf(ctx, t, locBig)(Default).Newest.Time).To(BeTemporally("<", tooMany), "no snapshot since the limit was passed")
	})
})
