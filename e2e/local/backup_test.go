package local

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	custosv1alpha1 "github.com/custos-io/custos/api/v1alpha1"
	"github.com/custos-io/custos/internal/backup"
	"github.com/custos-io/custos/internal/restic"
	"github.com/custos-io/custos/internal/storage"
	"github.com/custos-io/custos/internal/testharness"
)

// everyMinutePolicy is a RetentionPolicy whose snapshot, copy and expiry run every minute, keeping 30 days.
func everyMinutePolicy(ctx context.Context, name, primary, offsite string) {
	every := custosv1alpha1.Schedule{Cron: "* * * * *", TimeZone: "UTC"}
	ensureObject(ctx, &custosv1alpha1.RetentionPolicy{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: custosv1alpha1.RetentionPolicySpec{
		Primary: custosv1alpha1.ObjectReference{Name: primary}, Offsite: &custosv1alpha1.ObjectReference{Name: offsite},
		Schedule: every, CopySchedule: every, ExpirySchedule: every, KeepWithin: "30d", MaxSnapshotAge: "26h",
		AllowedJurisdictions: []custosv1alpha1.JurisdictionSelector{"EEA"},
		// Specs that end a contract are about the steps after the grace period, and sign once the bag is gone.
		ExitGracePeriod: "0s", Export: custosv1alpha1.ExportPolicy{ExpireAfterDelivery: "20s"},
	}})
}

// locationStatusOf reads the tenant's status at one location (empty until custos reports on it).
func locationStatusOf(ctx context.Context, tenant *custosv1alpha1.Tenant, loc string) func(Gomega) custosv1alpha1.LocationBackupStatus {
	return func(g Gomega) custosv1alpha1.LocationBackupStatus {
		g.Expect(k8s.Get(ctx, keyOf(tenant), tenant)).To(Succeed())
		for _, lb := range tenant.Status.Backups {
			if lb.Location == loc {
				return lb
			}
		}
		return custosv1alpha1.LocationBackupStatus{}
	}
}

// backdateSnapshot adds a small db snapshot of the tenant taken age ago to r, and returns its id.
func backdateSnapshot(ctx context.Context, r restic.Repository, tenant string, age time.Duration) string {
	GinkgoHelper()
	at := time.Now().Add(-age).UTC().Truncate(time.Second)
	r.Dir = GinkgoT().TempDir()
	Expect(os.WriteFile(filepath.Join(r.Dir, "old.sql"), []byte("-- a day long gone\n"), 0o600)).To(Succeed())
	res, err := r.BackupDir(ctx, tenant, []string{"tenant=" + tenant, "kind=db", "slot=" + backup.SlotTag(at)}, at, ".")
	Expect(err).NotTo(HaveOccurred())
	return res.SnapshotID
}

var _ = Describe("Backups", Ordered, Label("integration", "backups"), func() {
	const (
		primaryName = "bk-primary"
		offsiteName = "bk-offsite"
		bkPolicy    = "bk-every-minute"
		bkServer    = "bk-pg"
	)
	var (
		mgr        *runningManager
		offsiteSrv *testharness.RestServer
		primaryDir string
		tenant     *custosv1alpha1.Tenant
	)

	// repo opens the tenant's repository at a location with the key custos keeps for it.
	repo := func(ctx context.Context, loc string) restic.Repository {
		GinkgoHelper()
		var keys corev1.Secret
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: managerNamespace, Name: "custos-repo-" + tenant.Name}, &keys)).To(Succeed())
		url := filepath.Join(primaryDir, tenant.Name+"-"+string(tenant.UID)[:8])
		if loc == offsiteName {
			url = offsiteSrv.URL + tenant.Name + "-" + string(tenant.UID)[:8]
		}
		return restic.Repository{Binary: programs.Restic, URL: url, Password: string(keys.Data[loc]), RetryLock: time.Minute}
	}
	location := func(ctx context.Context, loc string) func(Gomega) custosv1alpha1.LocationBackupStatus {
		return locationStatusOf(ctx, tenant, loc)
	}
	slotCounts := func(ctx context.Context, r restic.Repository, slot time.Time) map[string]int {
		GinkgoHelper()
		snaps, err := r.Snapshots(ctx, "tenant="+tenant.Name, "slot="+backup.SlotTag(slot))
		Expect(err).NotTo(HaveOccurred())
		out := map[string]int{}
		for _, s := range snaps {
			out[s.Tag("kind")]++
		}
		return out
	}
	backdate := func(ctx context.Context, r restic.Repository, age time.Duration) string {
		GinkgoHelper()
		return backdateSnapshot(ctx, r, tenant.Name, age)
	}
	has := func(ctx context.Context, r restic.Repository, id string) bool {
		snaps, err := r.Snapshots(ctx, "tenant="+tenant.Name)
		Expect(err).NotTo(HaveOccurred())
		for _, s := range snaps {
			if s.ID == id {
				return true
			}
		}
		return false
	}

	BeforeAll(func(ctx SpecContext) {
		var err error
		offsiteSrv, err = testharness.StartRestServer(ctx)
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(offsiteSrv.Stop)
		primaryDir = filepath.Join(GinkgoT().TempDir(), "primary")
		mgr = startManager()
		DeferCleanup(func() { mgr.stop() })

		ensureObject(ctx, &custosv1alpha1.BackupLocation{ObjectMeta: metav1.ObjectMeta{Name: primaryName},
			Spec: custosv1alpha1.BackupLocationSpec{URL: primaryDir, Jurisdiction: "NL"}})
		ensureObject(ctx, &custosv1alpha1.BackupLocation{ObjectMeta: metav1.ObjectMeta{Name: offsiteName},
			Spec: custosv1alpha1.BackupLocationSpec{URL: offsiteSrv.URL, Jurisdiction: "DE"}})
		everyMinutePolicy(ctx, bkPolicy, primaryName, offsiteName)
		databaseServerFor(ctx, bkServer, pg, "NL")

		tenant = newTenant("bk")
		tenant.Spec.RetentionPolicyRef.Name = bkPolicy
		tenant.Spec.Database.ServerRef.Name = bkServer
		Expect(k8s.Create(ctx, tenant)).To(Succeed())
		expectReady(ctx, tenant)
		// The clinic's own data, written with its own credentials: a drill restores with the tenant's rights only.
		conn, err := connectWith(ctx, credentials(ctx, tenant.Name), tenant.Status.Database.Name)
		Expect(err).NotTo(HaveOccurred())
		defer conn.Close(ctx)
		for _, stmt := range []string{
			`CREATE TABLE appointments (id int PRIMARY KEY, patient text, at timestamptz, note text)`,
			`INSERT INTO appointments SELECT g, 'patient ' || g, now() + g * interval '1 hour', CASE WHEN g % 7 = 0 THEN NULL ELSE E'line\nbreak' END FROM generate_series(1, 500) g`,
		} {
			_, err := conn.Exec(ctx, stmt)
			Expect(err).NotTo(HaveOccurred())
		}
		Expect(k8s.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "clinic-settings", Namespace: tenant.Name}, Data: map[string]string{"opening": "08:00"}})).To(Succeed())
	})

	It("reports the locations Ready, a location that does not answer Unreachable, and a policy outside its jurisdictions", func(ctx SpecContext) {
		bl := &custosv1alpha1.BackupLocation{ObjectMeta: metav1.ObjectMeta{Name: primaryName}}
		Eventually(condition(ctx, bl, custosv1alpha1.ConditionReady)).Should(haveStatus(metav1.ConditionTrue, "Reachable"))
		bl = &custosv1alpha1.BackupLocation{ObjectMeta: metav1.ObjectMeta{Name: offsiteName}}
		Eventually(condition(ctx, bl, custosv1alpha1.ConditionReady)).Should(haveStatus(metav1.ConditionTrue, "Reachable"))

		port, err := testharness.FreePort()
		Expect(err).NotTo(HaveOccurred())
		down := &custosv1alpha1.BackupLocation{ObjectMeta: metav1.ObjectMeta{Name: "bk-down"},
			Spec: custosv1alpha1.BackupLocationSpec{URL: fmt.Sprintf("rest:http://127.0.0.1:%d/", port), Jurisdiction: "NL"}}
		ensureObject(ctx, down)
		c := condition(ctx, down, custosv1alpha1.ConditionReady)
		Eventually(c).Should(haveStatus(metav1.ConditionFalse, custosv1alpha1.ReasonUnreachable))
		Expect(c(Default).Message).To(ContainSubstring("does not answer"))

		us := &custosv1alpha1.BackupLocation{ObjectMeta: metav1.ObjectMeta{Name: "bk-us"},
			Spec: custosv1alpha1.BackupLocationSpec{URL: primaryDir + "-us", Jurisdiction: "US"}}
		ensureObject(ctx, us)
		p := &custosv1alpha1.RetentionPolicy{ObjectMeta: metav1.ObjectMeta{Name: "bk-us-policy"}, Spec: custosv1alpha1.RetentionPolicySpec{
			Primary: custosv1alpha1.ObjectReference{Name: primaryName}, Offsite: &custosv1alpha1.ObjectReference{Name: "bk-us"},
			KeepWithin: "90d", AllowedJurisdictions: []custosv1alpha1.JurisdictionSelector{"EEA"}}}
		ensureObject(ctx, p)
		pc := condition(ctx, p, custosv1alpha1.ConditionReady)
		Eventually(pc).WithTimeout(time.Minute).Should(haveStatus(metav1.ConditionFalse, custosv1alpha1.ReasonJurisdictionNotAllowed))
		Expect(pc(Default).Message).To(ContainSubstring("US"))

		good := &custosv1alpha1.RetentionPolicy{ObjectMeta: metav1.ObjectMeta{Name: bkPolicy}}
		Eventually(condition(ctx, good, custosv1alpha1.ConditionReady)).Should(haveStatus(metav1.ConditionTrue, custosv1alpha1.ReasonReconciled))
		Eventually(func(g Gomega) int32 {
			g.Expect(k8s.Get(ctx, keyOf(good), good)).To(Succeed())
			return good.Status.Tenants
		}).Should(Equal(int32(1)))
	})

	It("takes the first snapshot at once, copies it offsite, checks both repositories and passes a restore drill", func(ctx SpecContext) {
		Eventually(location(ctx, primaryName)).WithTimeout(2 * time.Minute).Should(And(
			HaveField("Snapshots", BeNumerically(">=", 1)), HaveField("RepositoryID", Not(BeEmpty())), HaveField("Role", "Primary"),
			HaveField("LastCheckSucceeded", HaveValue(BeTrue())), HaveField("GoneBy", Not(BeNil()))))
		Eventually(location(ctx, offsiteName)).WithTimeout(2 * time.Minute).Should(And(
			HaveField("Snapshots", BeNumerically(">=", 1)), HaveField("RepositoryID", Not(BeEmpty())), HaveField("Role", "Offsite"),
			HaveField("LastCopy", Not(BeNil())), HaveField("LastCheckSucceeded", HaveValue(BeTrue()))))
		Eventually(func(g Gomega) *custosv1alpha1.RestoreDrillStatus {
			g.Expect(k8s.Get(ctx, keyOf(tenant), tenant)).To(Succeed())
			if d := tenant.Status.LastDrill; d != nil {
				g.Expect(d.Succeeded).To(BeTrue(), "the drill failed: %s", d.Message)
			}
			return tenant.Status.LastDrill
		}).WithTimeout(2 * time.Minute).Should(And(Not(BeNil()), HaveField("Succeeded", BeTrue()), HaveField("Tables", int32(1)), HaveField("Duration", Not(BeNil()))))
		Eventually(condition(ctx, tenant, custosv1alpha1.ConditionBackupsHealthy)).Should(haveStatus(metav1.ConditionTrue, "SnapshotsFresh"))
		Expect(tenant.Status.NextBackup).NotTo(BeNil())

		By("keeping one key per repository, in the operator's namespace only")
		p, o := repo(ctx, primaryName), repo(ctx, offsiteName)
		Expect(p.Password).NotTo(Equal(o.Password))
		Expect(len(p.Password)).To(BeNumerically(">=", 40))
		for _, ns := range tenant.Status.Namespaces {
			var secrets corev1.SecretList
			Expect(k8s.List(ctx, &secrets, client.InNamespace(ns.Name))).To(Succeed())
			for _, s := range secrets.Items {
				for _, v := range s.Data {
					Expect(string(v)).NotTo(Or(ContainSubstring(p.Password), ContainSubstring(o.Password)), "a repository key in tenant namespace %s", ns.Name)
				}
			}
		}
		ids := map[string]bool{}
		for _, lb := range tenant.Status.Backups {
			ids[lb.RepositoryID] = true
		}
		Expect(ids).To(HaveLen(2), "two repositories with ids of their own")

		By("restoring the snapshot's objects as YAML")
		snaps, err := p.Snapshots(ctx, "tenant="+tenant.Name, "kind=objects")
		Expect(err).NotTo(HaveOccurred())
		Expect(snaps).NotTo(BeEmpty())
		var cm bytes.Buffer
		Expect(p.Dump(ctx, snaps[len(snaps)-1].ID, "/custos-backup/objects/"+tenant.Name+"/configmap/clinic-settings.yaml", &cm)).To(Succeed())
		Expect(cm.String()).To(ContainSubstring("opening: \"08:00\""))
	})

	It("shows a tenant's backups at a glance: kubectl's columns, from the API server's table", func(ctx SpecContext) {
		Eventually(condition(ctx, tenant, custosv1alpha1.ConditionBackupsHealthy)).Should(haveStatus(metav1.ConditionTrue, "SnapshotsFresh"))
		cells := func(g Gomega, path string) map[string]any {
			hc, err := rest.HTTPClientFor(controlPlane.Config)
			g.Expect(err).NotTo(HaveOccurred())
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(controlPlane.Config.Host, "/")+path, nil)
			g.Expect(err).NotTo(HaveOccurred())
			req.Header.Set("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io")
			resp, err := hc.Do(req)
			g.Expect(err).NotTo(HaveOccurred())
			defer resp.Body.Close()
			g.Expect(resp.StatusCode).To(Equal(http.StatusOK))
			var table metav1.Table
			g.Expect(json.NewDecoder(resp.Body).Decode(&table)).To(Succeed())
			g.Expect(table.Rows).To(HaveLen(1))
			out := map[string]any{}
			for i, c := range table.ColumnDefinitions {
				out[c.Name] = table.Rows[0].Cells[i]
			}
			return out
		}
		Eventually(func(g Gomega) {
			row := cells(g, "/apis/custos.io/v1alpha1/tenants/"+tenant.Name)
			g.Expect(row).To(HaveKeyWithValue("Phase", "Active"))
			g.Expect(row).To(HaveKeyWithValue("Ready", "True"))
			g.Expect(row).To(HaveKeyWithValue("Backups", "SnapshotsFresh"), "BackupsHealthy's reason: stale backups do not hide behind Ready")
			g.Expect(row).To(HaveKeyWithValue("Last Snapshot", Not(BeEmpty())), "the age of the primary's newest snapshot")
			g.Expect(row).To(HaveKeyWithValue("Offsite Newest", Not(BeEmpty())))
			g.Expect(row).To(HaveKeyWithValue("Policy", bkPolicy))
			g.Expect(row).To(HaveKey("Message"))
		}).Should(Succeed())
		row := cells(Default, "/apis/custos.io/v1alpha1/backuplocations/"+primaryName)
		Expect(row).To(HaveKeyWithValue("Ready", "True"))
		Expect(row).To(HaveKeyWithValue("Last Checked", Not(BeEmpty())))
		Expect(row).To(HaveKeyWithValue("Message", Not(BeEmpty())))

		By("every kind answers to the category custos (kubectl get custos), and the Tenant's short name is not Capsule's tnt")
		dc, err := discovery.NewDiscoveryClientForConfig(controlPlane.Config)
		Expect(err).NotTo(HaveOccurred())
		rl, err := dc.ServerResourcesForGroupVersion(custosv1alpha1.GroupVersion.String())
		Expect(err).NotTo(HaveOccurred())
		kinds := map[string][]string{}
		for _, r := range rl.APIResources {
			if strings.Contains(r.Name, "/") {
				continue // a subresource
			}
			Expect(r.Categories).To(ContainElement("custos"), r.Name)
			Expect(r.ShortNames).NotTo(ContainElement("tnt"), r.Name)
			kinds[r.Kind] = r.ShortNames
		}
		Expect(kinds).To(HaveLen(6))
		Expect(kinds).To(HaveKeyWithValue("Tenant", ConsistOf("ctnt")))
	})

	It("expires snapshots older than the window by the wall clock, at both locations", func(ctx SpecContext) {
		old := backdate(ctx, repo(ctx, primaryName), 45*24*time.Hour)
		oldOff := backdate(ctx, repo(ctx, offsiteName), 45*24*time.Hour)
		Eventually(func() bool { return has(ctx, repo(ctx, primaryName), old) || has(ctx, repo(ctx, offsiteName), oldOff) }).
			WithTimeout(3 * time.Minute).WithPolling(5 * time.Second).Should(BeFalse())
		// The status follows once the expiry's result is collected: the repositories change first.
		Eventually(func(g Gomega) {
			lb := location(ctx, primaryName)(g)
			g.Expect(lb.Oldest.Time).To(BeTemporally(">", time.Now().Add(-30*24*time.Hour)))
			g.Expect(lb.GoneBy.Time).To(BeTemporally(">", lb.Oldest.Add(30*24*time.Hour-time.Second)))
		}).WithTimeout(time.Minute).Should(Succeed())
	})

	It("completes a slot exactly once when the manager stops in the middle of its snapshot", func(ctx SpecContext) {
		var slot time.Time
		Eventually(func(g Gomega) bool {
			g.Expect(k8s.Get(ctx, keyOf(tenant), tenant)).To(Succeed())
			for _, task := range tenant.Status.Tasks {
				if task.Kind == custosv1alpha1.TaskSnapshot {
					slot = task.Slot.Time
					return true
				}
			}
			return false
		}).WithTimeout(2 * time.Minute).WithPolling(50 * time.Millisecond).Should(BeTrue())
		mgr.stop()
		Expect(slotCounts(ctx, repo(ctx, primaryName), slot)["db"]).To(BeNumerically("<=", 1))
		mgr = startManager()
		Eventually(func(g Gomega) {
			lb := location(ctx, primaryName)(g)
			g.Expect(lb.LastSnapshotSlot).NotTo(BeNil())
			g.Expect(lb.LastSnapshotSlot.Time).To(BeTemporally(">=", slot))
		}).WithTimeout(2 * time.Minute).Should(Succeed())
		Expect(slotCounts(ctx, repo(ctx, primaryName), slot)).To(Equal(map[string]int{"db": 1, "objects": 1}))
	})

	// Pending: passed alone, but in a randomized run no snapshot followed the kill within 3 minutes; not yet
	// understood (see the closing note of issue 4). internal/restic and internal/backup cover stale locks and a
	// killed backup against real restic.
	It("clears a stale lock left by a killed restic, and the next snapshot succeeds", func(ctx SpecContext) {
		p := repo(ctx, primaryName)
		cmd := exec.Command(programs.Restic, "--no-cache", "backup", "--stdin-from-command", "--stdin-filename", "x", "--", "sleep", "60")
		cmd.Env = append(os.Environ(), "RESTIC_REPOSITORY="+p.URL, "RESTIC_PASSWORD="+p.Password)
		Expect(cmd.Start()).To(Succeed())
		// A complete lock file: restic writes "<id>-tmp-<n>" and renames it; a kill in between leaves no lock.
		locks := func() []string {
			var done []string
			l, _ := os.ReadDir(filepath.Join(p.URL, "locks"))
			for _, e := range l {
				if !strings.Contains(e.Name(), "-tmp-") {
					done = append(done, e.Name())
				}
			}
			return done
		}
		Eventually(locks, 20*time.Second).ShouldNot(BeEmpty())
		Expect(cmd.Process.Kill()).To(Succeed())
		_ = cmd.Wait()
		killedAt := time.Now()
		Eventually(func(g Gomega) {
			lb := location(ctx, primaryName)(g)
			g.Expect(lb.Newest.Time).To(BeTemporally(">", killedAt))
		}).WithTimeout(3 * time.Minute).Should(Succeed())
		Expect(location(ctx, primaryName)(Default).LastError).To(BeEmpty())
	})

	It("reports a wrong repository key clearly and deletes nothing", func(ctx SpecContext) {
		right := repo(ctx, primaryName)
		before, err := right.Snapshots(ctx)
		Expect(err).NotTo(HaveOccurred())
		var keys corev1.Secret
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: managerNamespace, Name: "custos-repo-" + tenant.Name}, &keys)).To(Succeed())
		keys.Data[primaryName] = []byte("not-the-key")
		Expect(k8s.Update(ctx, &keys)).To(Succeed())

		c := condition(ctx, tenant, custosv1alpha1.ConditionBackupsHealthy)
		Eventually(c).WithTimeout(3 * time.Minute).Should(haveStatus(metav1.ConditionFalse, "WrongRepositoryPassword"))
		Expect(c(Default).Message).To(ContainSubstring(primaryName))
		// A task started with the right key may still finish after the change and clear the error once.
		Eventually(func(g Gomega) string { return location(ctx, primaryName)(g).LastErrorReason }).WithTimeout(2 * time.Minute).
			Should(Equal("WrongRepositoryPassword"))
		after, err := right.Snapshots(ctx)
		Expect(err).NotTo(HaveOccurred())
		Expect(len(after)).To(BeNumerically(">=", len(before)), "nothing was deleted")

		Expect(k8s.Get(ctx, keyOf(&keys), &keys)).To(Succeed())
		keys.Data[primaryName] = []byte(right.Password)
		Expect(k8s.Update(ctx, &keys)).To(Succeed())
		Eventually(c).WithTimeout(3 * time.Minute).Should(haveStatus(metav1.ConditionTrue, "SnapshotsFresh"))
	})

	It("keeps backing up and expiring the primary while the offsite is down, and says why", func(ctx SpecContext) {
		// The offsite goes down between two of its tasks. (One that dies under a running restic is stopped after
		// Programs.BackendRetryLimit: internal/restic's specs show it with a rest-server taken down mid-backup.)
		Eventually(func(g Gomega) bool {
			g.Expect(k8s.Get(ctx, keyOf(tenant), tenant)).To(Succeed())
			for _, task := range tenant.Status.Tasks {
				if task.Location == offsiteName || task.Kind == custosv1alpha1.TaskCopy {
					return false
				}
			}
			return true
		}).WithTimeout(2 * time.Minute).WithPolling(20 * time.Millisecond).Should(BeTrue())
		Expect(offsiteSrv.Stop()).To(Succeed())
		old := backdate(ctx, repo(ctx, primaryName), 40*24*time.Hour)
		stoppedAt := time.Now()
		c := condition(ctx, tenant, custosv1alpha1.ConditionBackupsHealthy)
		Eventually(c).WithTimeout(3 * time.Minute).Should(haveStatus(metav1.ConditionFalse, custosv1alpha1.ReasonUnreachable))
		Expect(c(Default).Message).To(And(ContainSubstring(offsiteName), ContainSubstring("does not answer")))
		Eventually(func(g Gomega) string { return location(ctx, offsiteName)(g).LastErrorReason }).WithTimeout(2 * time.Minute).
			Should(Equal(custosv1alpha1.ReasonUnreachable))
		Eventually(func(g Gomega) {
			lb := location(ctx, primaryName)(g)
			g.Expect(lb.Newest.Time).To(BeTemporally(">", stoppedAt))
			g.Expect(lb.LastError).To(BeEmpty())
		}).WithTimeout(3 * time.Minute).Should(Succeed())
		Eventually(func() bool { return has(ctx, repo(ctx, primaryName), old) }).WithTimeout(3 * time.Minute).WithPolling(5 * time.Second).Should(BeFalse())
	})
})

var _ = Describe("Backups to an S3 location", Ordered, Label("integration", "backups", "s3"), func() {
	const (
		primaryName = "s3b-primary"
		offsiteName = "s3b-offsite"
		s3Policy    = "s3b-every-minute"
		s3Server    = "s3b-pg"
		credentials = "s3b-credentials"
	)
	var (
		mgr        *runningManager
		s3         *testharness.S3Server
		bucket     string
		primaryDir string
		tenant     *custosv1alpha1.Tenant
	)

	offsite := func(ctx context.Context) restic.Repository {
		GinkgoHelper()
		var keys corev1.Secret
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: managerNamespace, Name: "custos-repo-" + tenant.Name}, &keys)).To(Succeed())
		return restic.Repository{Binary: programs.Restic, URL: s3.Endpoint + "/" + bucket + "/" + tenant.Name + "-" + string(tenant.UID)[:8],
			Password: string(keys.Data[offsiteName]), Env: s3.Env(), RetryLock: time.Minute}
	}
	offsiteStatus := func(ctx context.Context) func(Gomega) custosv1alpha1.LocationBackupStatus {
		return locationStatusOf(ctx, tenant, offsiteName)
	}

	BeforeAll(func(ctx SpecContext) {
		var err error
		s3, err = testharness.StartS3Server(ctx)
		Expect(err).NotTo(HaveOccurred(), "versitygw is built by make tools-test")
		DeferCleanup(s3.Stop)
		bucket = "custos-offsite"
		primaryDir = filepath.Join(GinkgoT().TempDir(), "primary")
		mgr = startManager()
		DeferCleanup(func() { mgr.stop() })

		ensureObject(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: credentials, Namespace: managerNamespace,
			Annotations: map[string]string{custosv1alpha1.AnnotationCredentialsFor: "BackupLocation/" + offsiteName}},
			StringData: map[string]string{"AWS_ACCESS_KEY_ID": s3.AccessKey, "AWS_SECRET_ACCESS_KEY": s3.SecretKey}})
		ensureObject(ctx, &custosv1alpha1.BackupLocation{ObjectMeta: metav1.ObjectMeta{Name: primaryName},
			Spec: custosv1alpha1.BackupLocationSpec{URL: primaryDir, Jurisdiction: "NL"}})
		ensureObject(ctx, &custosv1alpha1.BackupLocation{ObjectMeta: metav1.ObjectMeta{Name: offsiteName},
			Spec: custosv1alpha1.BackupLocationSpec{URL: s3.Endpoint + "/" + bucket, Jurisdiction: "DE",
				CredentialsSecretRef: &custosv1alpha1.SecretReference{Name: credentials}}})
		everyMinutePolicy(ctx, s3Policy, primaryName, offsiteName)
		databaseServerFor(ctx, s3Server, pg, "NL")

		tenant = newTenant("s3b")
		tenant.Spec.RetentionPolicyRef.Name = s3Policy
		tenant.Spec.Database.ServerRef.Name = s3Server
		Expect(k8s.Create(ctx, tenant)).To(Succeed())
		expectReady(ctx, tenant)
		conn, err := pgx.Connect(ctx, pg.URL(tenant.Status.Database.Name))
		Expect(err).NotTo(HaveOccurred())
		defer conn.Close(ctx)
		_, err = conn.Exec(ctx, `CREATE TABLE visits AS SELECT g AS id, 'visit ' || g AS note FROM generate_series(1, 300) g`)
		Expect(err).NotTo(HaveOccurred())
	})

	It("reports a missing bucket BucketMissing, the S3 location Ready once it exists, and wrong keys AuthenticationFailed", func(ctx SpecContext) {
		oc := condition(ctx, &custosv1alpha1.BackupLocation{ObjectMeta: metav1.ObjectMeta{Name: offsiteName}}, custosv1alpha1.ConditionReady)
		Eventually(oc).Should(haveStatus(metav1.ConditionFalse, "BucketMissing"))
		Expect(oc(Default).Message).To(ContainSubstring("create it"))
		Expect(storage.CreateS3Bucket(ctx, s3.Endpoint+"/"+bucket, s3.Env(), false)).To(Succeed())
		Eventually(oc).WithTimeout(3 * time.Minute).Should(haveStatus(metav1.ConditionTrue, "Reachable"))

		ensureObject(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: credentials + "-wrong", Namespace: managerNamespace,
			Annotations: map[string]string{custosv1alpha1.AnnotationCredentialsFor: "BackupLocation/s3b-wrong-keys"}},
			StringData: map[string]string{"AWS_ACCESS_KEY_ID": s3.AccessKey, "AWS_SECRET_ACCESS_KEY": "not-the-secret-24680"}})
		wrong := &custosv1alpha1.BackupLocation{ObjectMeta: metav1.ObjectMeta{Name: "s3b-wrong-keys"},
			Spec: custosv1alpha1.BackupLocationSpec{URL: s3.Endpoint + "/" + bucket, Jurisdiction: "DE",
				CredentialsSecretRef: &custosv1alpha1.SecretReference{Name: credentials + "-wrong"}}}
		ensureObject(ctx, wrong)
		c := condition(ctx, wrong, custosv1alpha1.ConditionReady)
		Eventually(c).Should(haveStatus(metav1.ConditionFalse, custosv1alpha1.ReasonAuthenticationFailed))
		Expect(c(Default).Message).To(And(ContainSubstring("refused the credentials"), ContainSubstring("SignatureDoesNotMatch"),
			Not(ContainSubstring("not-the-secret-24680"))))
	})

	It("copies every slot into the bucket, checks it there, and expires a back-dated snapshot from it", func(ctx SpecContext) {
		Eventually(func(g Gomega) {
			lb := offsiteStatus(ctx)(g)
			g.Expect(lb).To(And(
				HaveField("Snapshots", BeNumerically(">=", 2)), HaveField("RepositoryID", Not(BeEmpty())), HaveField("Role", "Offsite"),
				HaveField("LastCopy", Not(BeNil())), HaveField("LastCheckSucceeded", HaveValue(BeTrue())), HaveField("LastError", BeEmpty())),
				"offsite status: %+v; tasks: %+v", lb, tenant.Status.Tasks)
		}).WithTimeout(3 * time.Minute).Should(Succeed())
		Eventually(condition(ctx, tenant, custosv1alpha1.ConditionBackupsHealthy)).WithTimeout(2 * time.Minute).
			Should(haveStatus(metav1.ConditionTrue, "SnapshotsFresh"))

		By("finding the dump in the bucket, readable with the offsite's own key")
		r := offsite(ctx)
		snaps, err := r.Snapshots(ctx, "tenant="+tenant.Name, "kind=db")
		Expect(err).NotTo(HaveOccurred())
		Expect(snaps).NotTo(BeEmpty())
		var dump bytes.Buffer
		Expect(r.Dump(ctx, snaps[len(snaps)-1].ID, "/"+backup.DumpFile, &dump)).To(Succeed())
		Expect(dump.String()).To(And(ContainSubstring(`COPY "public"."visits"`), ContainSubstring("300\tvisit 300")))
		packs, err := filepath.Glob(filepath.Join(s3.Root, bucket, tenant.Name+"-"+string(tenant.UID)[:8], "data", "*", "*"))
		Expect(err).NotTo(HaveOccurred())
		Expect(packs).NotTo(BeEmpty(), "the repository's packs are objects in the bucket")

		By("expiring a snapshot older than the window from the bucket")
		oldID := backdateSnapshot(ctx, r, tenant.Name, 45*24*time.Hour)
		Eventually(func(g Gomega) []string {
			snaps, err := r.Snapshots(ctx, "tenant="+tenant.Name)
			g.Expect(err).NotTo(HaveOccurred())
			ids := []string{}
			for _, s := range snaps {
				ids = append(ids, s.ID)
			}
			return ids
		}).WithTimeout(3 * time.Minute).WithPolling(5 * time.Second).ShouldNot(ContainElement(oldID))
		Eventually(func(g Gomega) time.Time {
			lb := offsiteStatus(ctx)(g)
			g.Expect(lb.Oldest).NotTo(BeNil())
			return lb.Oldest.Time
		}).WithTimeout(2*time.Minute).Should(BeTemporally(">", time.Now().Add(-30*24*time.Hour)), "status follows at the location's next task")
	})
})
