package local

import (
	"context"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	custosv1alpha1 "github.com/custos-io/custos/api/v1alpha1"
	"github.com/custos-io/custos/internal/restic"
)

// Specs of issue 13's database part: custos destroys only the databases it proved are the tenant's, never makes a
// lost one again, and never runs a tenant's code with the administrator's rights.

// gauge reads a gauge of the manager (which runs in this process) for one tenant; ok is false when it has no value.
func gauge(name, tenant string) (float64, bool) {
	families, err := metrics.Registry.Gather()
	Expect(err).NotTo(HaveOccurred())
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "tenant" && l.GetValue() == tenant {
					return m.GetGauge().GetValue(), true
				}
			}
		}
	}
	return 0, false
}

// warningEvents lists the reasons of the Warning Events about object name.
func warningEvents(ctx context.Context, name string) []string {
	var list eventsv1.EventList
	Expect(k8s.List(ctx, &list)).To(Succeed())
	var out []string
	for _, e := range list.Items {
		if e.Regarding.Name == name && e.Type == corev1.EventTypeWarning {
			out = append(out, e.Reason)
		}
	}
	return out
}

// adminExists runs SELECT EXISTS (query) as the suite's PostgreSQL administrator.
func adminExists(ctx context.Context, query string, args ...any) bool {
	GinkgoHelper()
	admin, err := pgx.Connect(ctx, pg.URL("postgres"))
	Expect(err).NotTo(HaveOccurred())
	defer admin.Close(context.Background())
	var ok bool
	Expect(admin.QueryRow(ctx, "SELECT EXISTS ("+query+")", args...).Scan(&ok)).To(Succeed())
	return ok
}

// adminExec runs statements as the suite's PostgreSQL administrator in database db.
func adminExec(ctx context.Context, db string, stmts ...string) {
	GinkgoHelper()
	admin, err := pgx.Connect(ctx, pg.URL(db))
	Expect(err).NotTo(HaveOccurred())
	defer admin.Close(context.Background())
	for _, s := range stmts {
		_, err := admin.Exec(ctx, s)
		Expect(err).NotTo(HaveOccurred(), s)
	}
}

// asTenant runs statements in the tenant's database with the credentials custos wrote for it.
func asTenant(ctx context.Context, t *custosv1alpha1.Tenant, stmts ...string) {
	GinkgoHelper()
	creds := credentials(ctx, t.Spec.Namespaces.Names[0])
	conn, err := connectWith(ctx, creds, creds["dbname"])
	Expect(err).NotTo(HaveOccurred())
	defer conn.Close(context.Background())
	for _, s := range stmts {
		_, err := conn.Exec(ctx, s)
		Expect(err).NotTo(HaveOccurred(), s)
	}
}

// memberOf reports whether role member was granted role.
func memberOf(ctx context.Context, member, role string) bool {
	return adminExists(ctx, `SELECT 1 FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid JOIN pg_roles u ON u.oid = m.member
		WHERE r.rolname = $1 AND u.rolname = $2`, role, member)
}

var _ = Describe("Database security", Ordered, Label("integration", "security", "database"), func() {
	const (
		locName    = "sdb-primary"
		policyName = "sdb-every-minute"
		serverName = "sdb-pg"
	)
	var (
		mgr        *runningManager
		primaryDir string
	)

	BeforeAll(func(ctx SpecContext) {
		primaryDir = filepath.Join(GinkgoT().TempDir(), "primary")
		nsCtx, stopNS := context.WithCancel(context.Background())
		go finalizeNamespaces(nsCtx)
		DeferCleanup(stopNS)
		mgr = startManager()
		DeferCleanup(func() { mgr.stop() })
		ensureObject(ctx, &custosv1alpha1.BackupLocation{ObjectMeta: metav1.ObjectMeta{Name: locName},
			Spec: custosv1alpha1.BackupLocationSpec{URL: primaryDir, Jurisdiction: "NL"}})
		every := custosv1alpha1.Schedule{Cron: "* * * * *", TimeZone: "UTC"}
		ensureObject(ctx, &custosv1alpha1.RetentionPolicy{ObjectMeta: metav1.ObjectMeta{Name: policyName}, Spec: custosv1alpha1.RetentionPolicySpec{
			Primary: custosv1alpha1.ObjectReference{Name: locName}, Schedule: every, ExpirySchedule: every, KeepWithin: "30d", MaxSnapshotAge: "26h",
			RestoreDrill:         custosv1alpha1.RestoreDrill{Schedule: every},
			AllowedJurisdictions: []custosv1alpha1.JurisdictionSelector{"EEA"}, ExitGracePeriod: "0s",
		}})
		databaseServerFor(ctx, serverName, pg, "NL")
	})

	tenantFor := func(ctx context.Context, prefix string) *custosv1alpha1.Tenant {
		GinkgoHelper()
		t := newTenant(prefix)
		t.Spec.RetentionPolicyRef.Name = policyName
		t.Spec.Database.ServerRef.Name = serverName
		Expect(k8s.Create(ctx, t)).To(Succeed())
		expectReady(ctx, t)
		return t
	}
	repo := func(ctx context.Context, t *custosv1alpha1.Tenant) restic.Repository {
		GinkgoHelper()
		var keys corev1.Secret
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: managerNamespace, Name: "custos-repo-" + t.Name}, &keys)).To(Succeed())
		return restic.Repository{Binary: programs.Restic, URL: filepath.Join(primaryDir, t.Name+"-"+string(t.UID)[:8]),
			Password: string(keys.Data[locName]), RetryLock: time.Minute}
	}
	snapshotIDs := func(ctx context.Context, t *custosv1alpha1.Tenant) []string {
		GinkgoHelper()
		snaps, err := repo(ctx, t).Snapshots(ctx, "tenant="+t.Name)
		Expect(err).NotTo(HaveOccurred())
		ids := []string{}
		for _, s := range snaps {
			ids = append(ids, s.ID)
		}
		sort.Strings(ids)
		return ids
	}
	waitSnapshot := func(ctx context.Context, t *custosv1alpha1.Tenant, after time.Time) {
		GinkgoHelper()
		Eventually(func(g Gomega) {
			lb := locationStatusOf(ctx, t, locName)(g)
			g.Expect(lb.Newest).NotTo(BeNil())
			g.Expect(lb.Newest.Time).To(BeTemporally(">", after))
		}).WithTimeout(3 * time.Minute).WithPolling(2 * time.Second).Should(Succeed())
	}

	It("does not make a lost database again: DatabaseMissing, a Warning Event, the metric, no new snapshot and no expiry until a person accepts the loss", func(ctx SpecContext) {
		t := tenantFor(ctx, "lost")
		asTenant(ctx, t, `CREATE TABLE public.records (id int PRIMARY KEY, note text)`,
			`INSERT INTO public.records SELECT g, 'record ' || g FROM generate_series(1, 100) g`)
		created := time.Now()
		waitSnapshot(ctx, t, created)
		lostOID := t.Status.Database.OID
		Expect(lostOID).NotTo(BeZero())

		By("dropping the tenant's database behind custos' back")
		adminExec(ctx, "postgres", "DROP DATABASE "+pgx.Identifier{t.DatabaseName()}.Sanitize()+" WITH (FORCE)")
		c := condition(ctx, t, custosv1alpha1.ConditionDatabaseReady)
		Eventually(c).WithTimeout(2 * time.Minute).Should(haveStatus(metav1.ConditionFalse, custosv1alpha1.ReasonDatabaseMissing))
		Expect(c(Default).Message).To(And(ContainSubstring(fmt.Sprint(lostOID)), ContainSubstring(custosv1alpha1.AnnotationAcceptDatabaseLoss)))
		Expect(adminExists(ctx, "SELECT 1 FROM pg_database WHERE datname = $1", t.DatabaseName())).To(BeFalse(), "not made again")
		Eventually(func() []string { return warningEvents(ctx, t.Name) }).Should(ContainElement(custosv1alpha1.ReasonDatabaseMissing))
		Eventually(func() float64 { v, _ := gauge("custos_database_missing", t.Name); return v }).Should(Equal(1.0))
		Eventually(condition(ctx, t, custosv1alpha1.ConditionBackupsHealthy)).WithTimeout(2 * time.Minute).
			Should(haveStatus(metav1.ConditionFalse, custosv1alpha1.ReasonDatabaseMissing))

		By("keeping every snapshot, even one older than keepWithin, and taking none while the loss is not accepted")
		old := backdateSnapshot(ctx, repo(ctx, t), t.Name, 45*24*time.Hour)
		Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx, keyOf(t), t)).To(Succeed())
			for _, task := range t.Status.Tasks {
				g.Expect(task.Kind).To(Equal(custosv1alpha1.TaskCheck), "only checks go on: %+v", task)
			}
		}).WithTimeout(2 * time.Minute).Should(Succeed())
		kept := snapshotIDs(ctx, t)
		Expect(kept).To(ContainElement(old))
		// Expiry and snapshots are due every minute: over two minutes each would have run at least once.
		Consistently(func(g Gomega) {
			g.Expect(snapshotIDs(ctx, t)).To(Equal(kept))
			g.Expect(adminExists(ctx, "SELECT 1 FROM pg_database WHERE datname = $1", t.DatabaseName())).To(BeFalse())
		}).WithTimeout(2 * time.Minute).WithPolling(10 * time.Second).Should(Succeed())
		Expect(c(Default).Reason).To(Equal(custosv1alpha1.ReasonDatabaseMissing))

		By("making a new, empty database once a person accepts the loss; backups and expiry resume")
		updateSpec(ctx, t, func() {
			if t.Annotations == nil {
				t.Annotations = map[string]string{}
			}
			t.Annotations[custosv1alpha1.AnnotationAcceptDatabaseLoss] = fmt.Sprint(lostOID)
		})
		Eventually(c).WithTimeout(2 * time.Minute).Should(haveStatus(metav1.ConditionTrue, custosv1alpha1.ReasonReconciled))
		Expect(t.Status.Database.OID).NotTo(Equal(lostOID))
		Eventually(func() []string { return warningEvents(ctx, t.Name) }).Should(ContainElement("DatabaseLossAccepted"))
		Eventually(func() float64 { v, _ := gauge("custos_database_missing", t.Name); return v }).Should(BeZero())
		accepted := time.Now()
		waitSnapshot(ctx, t, accepted)
		Eventually(func() []string { return snapshotIDs(ctx, t) }).WithTimeout(3*time.Minute).WithPolling(5*time.Second).
			ShouldNot(ContainElement(old), "expiry resumed")
	})

	It("suspends and purges a tenant that rewrote its database's COMMENT: ownership rests on the recorded OIDs", func(ctx SpecContext) {
		t := newTenant("cmt")
		t.Spec.RetentionPolicyRef.Name = policyName
		t.Spec.Database.ServerRef.Name = serverName
		t.Spec.Exit = custosv1alpha1.TenantExit{DataReturn: custosv1alpha1.DataReturnNone, Backups: custosv1alpha1.BackupDisposalShred}
		Expect(k8s.Create(ctx, t)).To(Succeed())
		expectReady(ctx, t)
		Expect(t.Status.Database.RoleOID).NotTo(BeZero(), "the role's OID is recorded")
		dbOID, roleOID := t.Status.Database.OID, t.Status.Database.RoleOID
		asTenant(ctx, t, "COMMENT ON DATABASE "+pgx.Identifier{t.DatabaseName()}.Sanitize()+" IS 'not custos'' any more'")

		updateSpec(ctx, t, func() { t.Spec.Contract.End = &metav1.Time{Time: time.Now().Add(-time.Second).Truncate(time.Second)} })
		Eventually(func() bool {
			return adminExists(ctx, "SELECT 1 FROM pg_roles WHERE oid = $1 AND rolcanlogin", roleOID)
		}).WithTimeout(3*time.Minute).WithPolling(time.Second).Should(BeFalse(), "suspension revoked LOGIN")
		Eventually(func() bool {
			return adminExists(ctx, "SELECT 1 FROM pg_database WHERE oid = $1", dbOID) || adminExists(ctx, "SELECT 1 FROM pg_roles WHERE oid = $1", roleOID)
		}).WithTimeout(5*time.Minute).WithPolling(2*time.Second).Should(BeFalse(), "the purge dropped the database and the role")
	})

	It("leaves alone a live database that has a tenant's drill name, and refuses such a name for a tenant", func(ctx SpecContext) {
		t := newTenant("drl")
		drill := "custos_drill_" + strings.ReplaceAll(t.Name, "-", "_")
		By("refusing custos_ names for a tenant's database")
		bad := newTenant("drlbad")
		bad.Spec.Database.Name = drill
		err := k8s.Create(ctx, bad)
		Expect(apierrors.IsInvalid(err)).To(BeTrue(), "%v", err)
		Expect(err.Error()).To(ContainSubstring("must not start with custos_"))

		By("keeping a database of that name that someone else owns (made by the administrator, as before the reservation)")
		adminExec(ctx, "postgres", "CREATE ROLE sdb_live_owner NOLOGIN", "CREATE DATABASE "+drill+" OWNER sdb_live_owner")
		adminExec(ctx, drill, "CREATE TABLE public.precious (id int)", "INSERT INTO public.precious VALUES (1), (2), (3)")
		t.Spec.RetentionPolicyRef.Name = policyName
		t.Spec.Database.ServerRef.Name = serverName
		Expect(k8s.Create(ctx, t)).To(Succeed())
		expectReady(ctx, t)
		asTenant(ctx, t, `CREATE TABLE public.items AS SELECT g AS id FROM generate_series(1, 10) g`)
		Eventually(func(g Gomega) string { return locationStatusOf(ctx, t, locName)(g).LastError }).WithTimeout(4 * time.Minute).
			Should(ContainSubstring("is not a restore-drill scratch of this tenant"))
		Expect(adminExists(ctx, "SELECT 1 FROM pg_database WHERE datname = $1 AND pg_get_userbyid(datdba) = 'sdb_live_owner'", drill)).To(BeTrue(),
			"the live database survives the tenant's drill")
		live, err := pgx.Connect(ctx, pg.URL(drill))
		Expect(err).NotTo(HaveOccurred())
		var n int
		Expect(live.QueryRow(ctx, "SELECT count(*) FROM public.precious").Scan(&n)).To(Succeed())
		Expect(live.Close(ctx)).To(Succeed())
		Expect(n).To(Equal(3))

		By("drilling once the name is free, and leaving no scratch behind")
		adminExec(ctx, "postgres", "DROP DATABASE "+drill, "DROP ROLE sdb_live_owner")
		Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx, keyOf(t), t)).To(Succeed())
			g.Expect(t.Status.LastDrill).NotTo(BeNil())
			g.Expect(t.Status.LastDrill.Succeeded).To(BeTrue())
			g.Expect(t.Status.LastDrill.Tables).To(BeNumerically(">=", 1))
		}).WithTimeout(4 * time.Minute).WithPolling(2 * time.Second).Should(Succeed())
		Eventually(func() bool {
			return adminExists(ctx, "SELECT 1 FROM pg_database WHERE datname = $1", drill) || adminExists(ctx, "SELECT 1 FROM pg_roles WHERE rolname = $1", drill)
		}).WithTimeout(time.Minute).Should(BeFalse())
	})

	It("restores the drill as a scratch role: a tenant's CHECK constraint that grants it another tenant's role gains nothing, and the drill passes", func(ctx SpecContext) {
		adminExec(ctx, "postgres", "CREATE ROLE sdb_other_tenant NOLOGIN")
		t := tenantFor(ctx, "trapd")
		role := t.DatabaseName()
		asTenant(ctx, t, fmt.Sprintf(`CREATE FUNCTION public.sneak() RETURNS boolean LANGUAGE plpgsql AS $$
			BEGIN
				BEGIN
					EXECUTE 'GRANT sdb_other_tenant TO %s';
				EXCEPTION WHEN OTHERS THEN NULL;
				END;
				RETURN true;
			END $$`, pgx.Identifier{role}.Sanitize()),
			`CREATE TABLE public.visits (id int PRIMARY KEY, CONSTRAINT sneaky CHECK (public.sneak()))`,
			`INSERT INTO public.visits SELECT generate_series(1, 50)`)
		Expect(memberOf(ctx, role, "sdb_other_tenant")).To(BeFalse(), "the tenant's own rights do not reach")
		since := time.Now()
		waitSnapshot(ctx, t, since)
		Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx, keyOf(t), t)).To(Succeed())
			d := t.Status.LastDrill
			g.Expect(d).NotTo(BeNil())
			g.Expect(d.Time.Time).To(BeTemporally(">", since))
			g.Expect(d.Tables).To(BeNumerically(">=", 1))
			g.Expect(d.Succeeded).To(BeTrue(), d.Message)
		}).WithTimeout(4 * time.Minute).WithPolling(2 * time.Second).Should(Succeed())
		Expect(memberOf(ctx, role, "sdb_other_tenant")).To(BeFalse(), "the restore ran the CHECK without the administrator's rights")
	})

	It("never reads a tenant's own pg_extension as admin: the search_path the tenant gives its database does not reach custos' sessions", func(ctx SpecContext) {
		adminExec(ctx, "postgres", "CREATE ROLE sdb_victim NOLOGIN")
		t := tenantFor(ctx, "sptrap")
		role := t.DatabaseName()
		asTenant(ctx, t, `CREATE TABLE public.caught (who text)`, `GRANT INSERT ON public.caught TO PUBLIC`,
			fmt.Sprintf(`CREATE FUNCTION public.trap() RETURNS boolean LANGUAGE plpgsql AS $$
			BEGIN
				INSERT INTO public.caught VALUES (current_user);
				BEGIN
					EXECUTE 'GRANT sdb_victim TO %s';
				EXCEPTION WHEN OTHERS THEN NULL;
				END;
				RETURN true;
			END $$`, pgx.Identifier{role}.Sanitize()),
			`CREATE VIEW public.pg_extension AS SELECT e.* FROM pg_catalog.pg_extension e WHERE public.trap()`,
			"ALTER DATABASE "+pgx.Identifier{role}.Sanitize()+" SET search_path = public, pg_catalog")
		updateSpec(ctx, t, func() { t.Spec.Database.Extensions = append(t.Spec.Database.Extensions, "citext") })
		Eventually(func() bool {
			conn, err := pgx.Connect(ctx, pg.URL(role))
			if err != nil {
				return false
			}
			defer conn.Close(context.Background())
			var ok bool
			return conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'citext')").Scan(&ok) == nil && ok
		}).WithTimeout(2*time.Minute).Should(BeTrue(), "the extension check ran and made citext")
		Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx, keyOf(t), t)).To(Succeed())
			g.Expect(t.Status.ObservedGeneration).To(Equal(t.Generation))
		}).WithTimeout(time.Minute).Should(Succeed())
		expectReady(ctx, t)
		conn, err := pgx.Connect(ctx, pg.URL(role))
		Expect(err).NotTo(HaveOccurred())
		defer conn.Close(context.Background())
		var caught int
		Expect(conn.QueryRow(ctx, "SELECT count(*) FROM public.caught").Scan(&caught)).To(Succeed())
		Expect(caught).To(BeZero(), "the tenant's function never ran in custos' session")
		Expect(memberOf(ctx, role, "sdb_victim")).To(BeFalse())
	})
})
