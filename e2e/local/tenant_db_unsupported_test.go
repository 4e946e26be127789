package local

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	custosv1alpha1 "github.com/custos-io/custos/api/v1alpha1"
	"github.com/custos-io/custos/controllers"
)

// A Tenant waits for its DatabaseServer while the manager's own check calls that server unsupported. PostgreSQL 16
// cannot run here (only Debian's postgresql-15 is installed), so the manager's check is made to fail for real on
// its other half: the pg_dump it is given is an executable that reports an older major (14.0) than the harness's
// PostgreSQL 15, or fails to run, and the DatabaseServer controller runs it and compares (pg_dump refuses a newer
// server). PostgreSQL, the API server and the manager are the real ones.
var _ = Describe("Tenant on an unsupported DatabaseServer", Ordered, Label("integration", "provisioning", "databaseserver"), func() {
	const name = "pg-unsupported"
	var (
		mgr    *runningManager
		tenant *custosv1alpha1.Tenant
		dir    string
	)
	withPgDump := func(path string) func(*controllers.Options) {
		return func(o *controllers.Options) { o.Programs.PgDump = path }
	}
	script := func(file, body string) string {
		p := filepath.Join(dir, file)
		Expect(os.WriteFile(p, []byte("#!/bin/sh\n"+body+"\n"), 0o755)).To(Succeed())
		return p
	}
	restart := func(configure ...func(*controllers.Options)) {
		mgr.stop()
		mgr = startManager(configure...)
	}
	server := func() *custosv1alpha1.DatabaseServer {
		return &custosv1alpha1.DatabaseServer{ObjectMeta: metav1.ObjectMeta{Name: name}}
	}
	roleConnLimit := func(ctx context.Context, role string) int {
		admin, err := pgx.Connect(ctx, pg.URL("postgres"))
		Expect(err).NotTo(HaveOccurred())
		defer admin.Close(context.Background())
		var n int
		Expect(admin.QueryRow(ctx, "SELECT rolconnlimit FROM pg_roles WHERE rolname = $1", role).Scan(&n)).To(Succeed())
		return n
	}

	BeforeAll(func(ctx SpecContext) {
		dir = GinkgoT().TempDir()
		old := script("pg_dump-14", `echo "pg_dump (PostgreSQL) 14.0"`)
		mgr = startManager(withPgDump(old))
		DeferCleanup(func() { mgr.stop() })
		ensureObject(ctx, &custosv1alpha1.RetentionPolicy{ObjectMeta: metav1.ObjectMeta{Name: policyName}, Spec: custosv1alpha1.RetentionPolicySpec{
			Primary: custosv1alpha1.ObjectReference{Name: "primary"}, KeepWithin: "90d",
			AllowedJurisdictions: []custosv1alpha1.JurisdictionSelector{"EEA"},
		}})
		databaseServerFor(ctx, name, pg, "NL")
	})

	It("provisions nothing on the server while the manager's pg_dump is older than it, and resumes once it is supported", func(ctx SpecContext) {
		By("the manager's check calling the server unsupported: its pg_dump 14.0 cannot dump PostgreSQL 15")
		s := server()
		Eventually(condition(ctx, s, custosv1alpha1.ConditionReady)).WithTimeout(30 * time.Second).
			Should(And(haveStatus(metav1.ConditionFalse, custosv1alpha1.ReasonUnsupportedVersion),
				HaveField("Message", ContainSubstring("pg_dump"))))
		serverMsg := apimeta.FindStatusCondition(s.Status.Conditions, custosv1alpha1.ConditionReady).Message

		By("a Tenant on it waiting with a condition that names the server and quotes its message")
		tenant = newTenant("unsup")
		tenant.Spec.Database.ServerRef.Name = name
		Expect(k8s.Create(ctx, tenant)).To(Succeed())
		Eventually(condition(ctx, tenant, custosv1alpha1.ConditionReady)).
			Should(And(haveStatus(metav1.ConditionFalse, custosv1alpha1.ReasonDatabaseServerUnsupported),
				HaveField("Message", And(ContainSubstring(`DatabaseServer "`+name+`"`), ContainSubstring(strconv.Quote(serverMsg))))))
		Expect(tenant.Status.Phase).To(Equal(custosv1alpha1.TenantPending))
		Eventually(func() []string { return warningEvents(ctx, tenant.Name) }).Should(ContainElement(custosv1alpha1.ReasonDatabaseServerUnsupported))

		By("nothing made: no database, no role on the server, no namespace, no credentials")
		db := tenant.DatabaseName()
		Consistently(func(g Gomega) {
			g.Expect(adminExists(ctx, "SELECT 1 FROM pg_database WHERE datname = $1", db)).To(BeFalse(), "database %s exists", db)
			g.Expect(adminExists(ctx, "SELECT 1 FROM pg_roles WHERE rolname = $1", db)).To(BeFalse(), "role %s exists", db)
			var tt custosv1alpha1.Tenant
			g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(tenant), &tt)).To(Succeed())
			g.Expect(tt.Status.Database).To(BeNil())
			g.Expect(tt.Status.Namespaces).To(BeEmpty())
		}).WithTimeout(3 * time.Second).WithPolling(500 * time.Millisecond).Should(Succeed())
		for _, ns := range tenant.Spec.Namespaces.Names {
			err := k8s.Get(ctx, client.ObjectKey{Name: ns}, &corev1.Namespace{})
			Expect(apierrors.IsNotFound(err)).To(BeTrue(), "namespace %s: %v", ns, err)
		}

		By("the manager started again with the real pg_dump: the server is Ready and the Tenant provisioned")
		restart()
		Eventually(condition(ctx, s, custosv1alpha1.ConditionReady)).WithTimeout(30 * time.Second).
			Should(haveStatus(metav1.ConditionTrue, custosv1alpha1.ReasonReconciled))
		expectReady(ctx, tenant)
		Expect(tenant.Status.Database).NotTo(BeNil())
		Expect(adminExists(ctx, "SELECT 1 FROM pg_database WHERE datname = $1 AND oid = $2", db, tenant.Status.Database.OID)).To(BeTrue())
		Expect(adminExists(ctx, "SELECT 1 FROM pg_roles WHERE rolname = $1", db)).To(BeTrue())
	})

	It("keeps everything of a provisioned tenant whose server becomes unsupported, waits, and resumes through the watch", func(ctx SpecContext) {
		Expect(tenant).NotTo(BeNil(), "the spec before provisions the tenant")
		db := tenant.DatabaseName()
		oid, roleOID := tenant.Status.Database.OID, tenant.Status.Database.RoleOID
		creds := credentials(ctx, tenant.Spec.Namespaces.Names[0])

		By("the manager started with a pg_dump that cannot run while a marker file exists (failures are not cached)")
		marker := filepath.Join(dir, "broken")
		Expect(os.WriteFile(marker, nil, 0o644)).To(Succeed())
		toggle := script("pg_dump-toggle", `if [ -e "`+marker+`" ]; then echo "pg_dump: broken" >&2; exit 3; fi
exec "`+programs.PgDump+`" "$@"`)
		restart(withPgDump(toggle))
		s := server()
		Eventually(condition(ctx, s, custosv1alpha1.ConditionReady)).WithTimeout(30 * time.Second).
			Should(haveStatus(metav1.ConditionFalse, custosv1alpha1.ReasonUnsupportedVersion))

		By("the Tenant saying so, Active still (the DatabaseServer watch, not the 1-minute resync)")
		Eventually(condition(ctx, tenant, custosv1alpha1.ConditionDatabaseReady)).WithTimeout(15 * time.Second).
			Should(And(haveStatus(metav1.ConditionFalse, custosv1alpha1.ReasonDatabaseServerUnsupported),
				HaveField("Message", And(ContainSubstring(`DatabaseServer "`+name+`"`), ContainSubstring("kept as they are")))))
		Eventually(condition(ctx, tenant, custosv1alpha1.ConditionReady)).
			Should(haveStatus(metav1.ConditionFalse, custosv1alpha1.ReasonDatabaseServerUnsupported))
		Expect(tenant.Status.Phase).To(Equal(custosv1alpha1.TenantActive))
		Expect(tenant.Status.Database.OID).To(Equal(oid))

		By("a spec change is not carried to the unsupported server; nothing is lost: database, role, Secrets, namespaces, login")
		limit := roleConnLimit(ctx, db)
		updateSpec(ctx, tenant, func() { tenant.Spec.Database.ConnectionLimit = int32(limit + 1) })
		Consistently(func(g Gomega) {
			g.Expect(roleConnLimit(ctx, db)).To(Equal(limit))
			g.Expect(adminExists(ctx, "SELECT 1 FROM pg_database WHERE datname = $1 AND oid = $2", db, oid)).To(BeTrue())
			g.Expect(adminExists(ctx, "SELECT 1 FROM pg_roles WHERE rolname = $1 AND oid = $2", db, roleOID)).To(BeTrue())
		}).WithTimeout(3 * time.Second).WithPolling(500 * time.Millisecond).Should(Succeed())
		Expect(condition(ctx, tenant, custosv1alpha1.ConditionDatabaseReady)(Default)).
			To(haveStatus(metav1.ConditionFalse, custosv1alpha1.ReasonDatabaseServerUnsupported))
		Expect(tenant.Status.Phase).To(Equal(custosv1alpha1.TenantActive))
		for _, ns := range tenant.Spec.Namespaces.Names {
			Expect(k8s.Get(ctx, client.ObjectKey{Name: ns}, &corev1.Namespace{})).To(Succeed())
			Expect(credentials(ctx, ns)).To(Equal(creds))
		}
		conn, err := connectWith(ctx, creds, db)
		Expect(err).NotTo(HaveOccurred())
		Expect(conn.Ping(ctx)).To(Succeed())
		Expect(conn.Close(ctx)).To(Succeed())

		By("the pg_dump working again: the server is Ready at its next check and the Tenant resumes, the spec change applied")
		Expect(os.Remove(marker)).To(Succeed())
		Eventually(condition(ctx, s, custosv1alpha1.ConditionReady)).WithTimeout(30 * time.Second).
			Should(haveStatus(metav1.ConditionTrue, custosv1alpha1.ReasonReconciled))
		Eventually(condition(ctx, tenant, custosv1alpha1.ConditionReady)).WithTimeout(15 * time.Second).
			Should(haveStatus(metav1.ConditionTrue, custosv1alpha1.ReasonReconciled))
		Expect(tenant.Status.Database.OID).To(Equal(oid))
		Expect(roleConnLimit(ctx, db)).To(Equal(limit + 1))
	})
})
