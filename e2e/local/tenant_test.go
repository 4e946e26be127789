package local

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	custosv1alpha1 "github.com/custos-io/custos/api/v1alpha1"
	"github.com/custos-io/custos/internal/testharness"
)

// Fixtures of the provisioning specs: a policy admitting the EEA, a DatabaseServer for the suite's PostgreSQL.
const (
	policyName = "prov-eea"
	serverName = "prov-pg"
)

var tenantSeq int

func newTenant(prefix string) *custosv1alpha1.Tenant {
	tenantSeq++
	name := fmt.Sprintf("%s-%d", prefix, tenantSeq)
	return &custosv1alpha1.Tenant{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: custosv1alpha1.TenantSpec{
			DisplayName:        "Clinic " + name,
			DataController:     custosv1alpha1.DataController{Name: "Clinic " + name + " B.V.", Contact: "Privacy officer"},
			Contract:           custosv1alpha1.Contract{ID: "DPA-" + name, Start: metav1.NewTime(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))},
			RetentionPolicyRef: custosv1alpha1.ObjectReference{Name: policyName},
			Namespaces:         custosv1alpha1.TenantNamespaces{Names: []string{name, name + "-jobs"}},
			Quota:              &custosv1alpha1.TenantQuota{Hard: corev1.ResourceList{corev1.ResourcePods: resource.MustParse("10")}},
			Limits:             &custosv1alpha1.TenantLimits{Default: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("256Mi")}},
			Owners:             []custosv1alpha1.TenantOwner{{Kind: "Group", Name: name + "-admins"}},
			Database: custosv1alpha1.TenantDatabase{
				ServerRef: custosv1alpha1.ObjectReference{Name: serverName}, ConnectionLimit: 5, Extensions: []string{"pgcrypto"},
			},
		},
	}
}

// updateSpec changes an object's spec, reading it again when a controller wrote its status in between
// (a status write moves the resourceVersion too, so an Update from an older read would conflict).
func updateSpec(ctx context.Context, t client.Object, mutate func()) {
	GinkgoHelper()
	Expect(retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := k8s.Get(ctx, client.ObjectKeyFromObject(t), t); err != nil {
			return err
		}
		mutate()
		return k8s.Update(ctx, t)
	})).To(Succeed())
}

func ensureObject(ctx context.Context, o client.Object) {
	if err := k8s.Create(ctx, o); err != nil && !apierrors.IsAlreadyExists(err) {
		Expect(err).NotTo(HaveOccurred())
	}
}

// databaseServerFor creates the admin Secret and a DatabaseServer for a PostgreSQL of the harness.
func databaseServerFor(ctx context.Context, name string, p *testharness.Postgres, jurisdiction custosv1alpha1.Jurisdiction) {
	ensureObject(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name + "-admin", Namespace: managerNamespace,
		Annotations: map[string]string{custosv1alpha1.AnnotationCredentialsFor: "DatabaseServer/" + name}},
		StringData: map[string]string{"username": p.User, "password": p.Password}})
	ensureObject(ctx, &custosv1alpha1.DatabaseServer{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: custosv1alpha1.DatabaseServerSpec{
		Host: p.Host, Port: int32(p.Port), SSLMode: "disable", Jurisdiction: jurisdiction,
		AdminCredentialsSecretRef: custosv1alpha1.SecretReference{Name: name + "-admin"}, MaintenanceDatabase: "postgres",
	}})
}

func condition(ctx context.Context, obj client.Object, typ string) func(Gomega) *metav1.Condition {
	return func(g Gomega) *metav1.Condition {
		g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(obj), obj)).To(Succeed())
		var conds []metav1.Condition
		switch o := obj.(type) {
		case *custosv1alpha1.Tenant:
			conds = o.Status.Conditions
		case *custosv1alpha1.DatabaseServer:
			conds = o.Status.Conditions
		case *custosv1alpha1.BackupLocation:
			conds = o.Status.Conditions
		case *custosv1alpha1.RetentionPolicy:
			conds = o.Status.Conditions
		}
		c := meta.FindStatusCondition(conds, typ)
		g.Expect(c).NotTo(BeNil(), "condition %s not set yet", typ)
		return c
	}
}

func haveStatus(status metav1.ConditionStatus, reason string) OmegaMatcher {
	return And(HaveField("Status", status), HaveField("Reason", reason))
}

func expectReady(ctx context.Context, t *custosv1alpha1.Tenant) {
	GinkgoHelper()
	Eventually(condition(ctx, t, custosv1alpha1.ConditionReady)).WithTimeout(60 * time.Second).
		Should(haveStatus(metav1.ConditionTrue, custosv1alpha1.ReasonReconciled))
	Expect(t.Status.Phase).To(Equal(custosv1alpha1.TenantActive))
	Expect(t.Status.ObservedGeneration).To(Equal(t.Generation))
}

func credentials(ctx context.Context, ns string) map[string]string {
	GinkgoHelper()
	var sec corev1.Secret
	Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "custos-database"}, &sec)).To(Succeed())
	out := map[string]string{}
	for k, v := range sec.Data {
		out[k] = string(v)
	}
	return out
}

// connectWith connects with a tenant's credentials to database db.
func connectWith(ctx context.Context, creds map[string]string, db string) (*pgx.Conn, error) {
	uri := strings.Replace(creds["uri"], "/"+creds["dbname"]+"?", "/"+db+"?", 1)
	return pgx.Connect(ctx, uri)
}

var _ = Describe("Tenant provisioning", Ordered, Label("integration", "provisioning"), func() {
	var mgr *runningManager

	BeforeAll(func(ctx SpecContext) {
		mgr = startManager()
		DeferCleanup(func() { mgr.stop() })
		ensureObject(ctx, &custosv1alpha1.RetentionPolicy{ObjectMeta: metav1.ObjectMeta{Name: policyName}, Spec: custosv1alpha1.RetentionPolicySpec{
			Primary: custosv1alpha1.ObjectReference{Name: "primary"}, KeepWithin: "90d",
			AllowedJurisdictions: []custosv1alpha1.JurisdictionSelector{"EEA"},
		}})
		databaseServerFor(ctx, serverName, pg, "NL")
	})

	It("reports the DatabaseServer Ready with its version", func(ctx SpecContext) {
		s := &custosv1alpha1.DatabaseServer{ObjectMeta: metav1.ObjectMeta{Name: serverName}}
		Eventually(condition(ctx, s, custosv1alpha1.ConditionReady)).WithTimeout(30 * time.Second).
			Should(haveStatus(metav1.ConditionTrue, custosv1alpha1.ReasonReconciled))
		Expect(s.Status.Version).To(MatchRegexp(`^\d+`))
	})

	It("reports a wrong admin password as AuthenticationFailed without revealing it", func(ctx SpecContext) {
		ensureObject(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "badpw-admin", Namespace: managerNamespace,
			Annotations: map[string]string{custosv1alpha1.AnnotationCredentialsFor: "DatabaseServer/badpw"}},
			StringData: map[string]string{"username": pg.User, "password": "not-the-admin-password"}})
		s := &custosv1alpha1.DatabaseServer{ObjectMeta: metav1.ObjectMeta{Name: "badpw"}, Spec: custosv1alpha1.DatabaseServerSpec{
			Host: pg.Host, Port: int32(pg.Port), SSLMode: "disable", Jurisdiction: "NL",
			AdminCredentialsSecretRef: custosv1alpha1.SecretReference{Name: "badpw-admin"}}}
		ensureObject(ctx, s)
		Eventually(condition(ctx, s, custosv1alpha1.ConditionReady)).WithTimeout(30 * time.Second).
			Should(And(haveStatus(metav1.ConditionFalse, custosv1alpha1.ReasonAuthenticationFailed),
				HaveField("Message", Not(ContainSubstring("not-the-admin-password")))))
	})

	It("provisions two tenants that cannot reach each other's data", func(ctx SpecContext) {
		a, b := newTenant("iso"), newTenant("iso")
		Expect(k8s.Create(ctx, a)).To(Succeed())
		Expect(k8s.Create(ctx, b)).To(Succeed())
		expectReady(ctx, a)
		expectReady(ctx, b)
		Expect(a.Status.Database.OID).NotTo(BeZero())
		Expect(a.Status.Namespaces).To(HaveLen(2))

		By("labelling, limiting and isolating each namespace")
		for _, ns := range a.Spec.Namespaces.Names {
			var n corev1.Namespace
			Expect(k8s.Get(ctx, client.ObjectKey{Name: ns}, &n)).To(Succeed())
			Expect(n.Labels).To(HaveKeyWithValue(custosv1alpha1.LabelTenant, a.Name))
			var q corev1.ResourceQuota
			Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "custos-quota"}, &q)).To(Succeed())
			Expect(q.Spec.Hard.Pods().String()).To(Equal("10"))
			var lr corev1.LimitRange
			Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "custos-limits"}, &lr)).To(Succeed())
			var deny networkingv1.NetworkPolicy
			Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "custos-default-deny"}, &deny)).To(Succeed())
			Expect(deny.Spec.PodSelector.MatchLabels).To(BeEmpty())
			Expect(deny.Spec.PolicyTypes).To(ConsistOf(networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress))
			Expect(deny.Spec.Ingress).To(BeEmpty())
			Expect(deny.Spec.Egress).To(BeEmpty())
			var db networkingv1.NetworkPolicy
			Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "custos-allow-database"}, &db)).To(Succeed())
			Expect(db.Spec.Egress[0].To[0].IPBlock.CIDR).To(Equal(pg.Host + "/32"))
			Expect(db.Spec.Egress[0].Ports[0].Port.IntValue()).To(Equal(pg.Port))
			var same networkingv1.NetworkPolicy
			Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "custos-allow-tenant"}, &same)).To(Succeed())
			Expect(same.Spec.Ingress[0].From[0].NamespaceSelector.MatchExpressions[0].Values).To(ConsistOf(a.Spec.Namespaces.Names))
			var rb rbacv1.RoleBinding
			Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "custos-owners"}, &rb)).To(Succeed())
			Expect(rb.RoleRef.Name).To(Equal("admin"))
			Expect(rb.Subjects).To(ConsistOf(HaveField("Name", a.Name+"-admins")))
		}

		credsA, credsB := credentials(ctx, a.Spec.Namespaces.Names[0]), credentials(ctx, b.Spec.Namespaces.Names[0])
		Expect(credsA).To(HaveKey("jdbc-uri"))
		Expect(len(credsA["password"])).To(BeNumerically(">=", 43), "32 bytes of entropy")
		Expect(credentials(ctx, a.Spec.Namespaces.Names[1])).To(Equal(credsA))

		By("letting A work in its own database")
		connA, err := connectWith(ctx, credsA, credsA["dbname"])
		Expect(err).NotTo(HaveOccurred())
		defer connA.Close(ctx)
		_, err = connA.Exec(ctx, "CREATE TABLE patients (id int PRIMARY KEY, name text); INSERT INTO patients VALUES (1, 'A only')")
		Expect(err).NotTo(HaveOccurred())

		By("refusing A's credentials on B's database and B's on A's")
		_, err = connectWith(ctx, credsA, credsB["dbname"])
		Expect(err).To(MatchError(ContainSubstring("permission denied for database")))
		_, err = connectWith(ctx, credsB, credsA["dbname"])
		Expect(err).To(MatchError(ContainSubstring("permission denied for database")))

		By("keeping B from creating objects in or seeing A's tables")
		connB, err := connectWith(ctx, credsB, credsB["dbname"])
		Expect(err).NotTo(HaveOccurred())
		defer connB.Close(ctx)
		_, err = connB.Exec(ctx, "SELECT * FROM patients")
		Expect(err).To(MatchError(ContainSubstring(`relation "patients" does not exist`)))
		_, err = connB.Exec(ctx, fmt.Sprintf("CREATE TABLE %s.public.intruder (id int)", pgx.Identifier{credsA["dbname"]}.Sanitize()))
		Expect(err).To(MatchError(ContainSubstring("cross-database references are not implemented")))

		By("refusing a role that belongs to neither tenant")
		admin, err := pgx.Connect(ctx, pg.URL("postgres"))
		Expect(err).NotTo(HaveOccurred())
		defer admin.Close(ctx)
		_, err = admin.Exec(ctx, "CREATE ROLE bystander LOGIN PASSWORD 'bystander-pw'")
		Expect(err).NotTo(HaveOccurred())
		for _, db := range []string{credsA["dbname"], credsB["dbname"]} {
			_, err := connectWith(ctx, map[string]string{"uri": strings.Replace(credsA["uri"],
				credsA["user"]+":"+credsA["password"], "bystander:bystander-pw", 1), "dbname": credsA["dbname"]}, db)
			Expect(err).To(MatchError(ContainSubstring("permission denied for database")), db)
		}
	})

	It("settles: once Ready, nothing it made is rewritten again and again", func(ctx SpecContext) {
		t := newTenant("calm")
		t.Spec.Limits = &custosv1alpha1.TenantLimits{
			Default: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("256Mi")},
			Max:     corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("2")},
		}
		Expect(k8s.Create(ctx, t)).To(Succeed())
		expectReady(ctx, t)
		ns := t.Spec.Namespaces.Names[0]
		objs := []client.Object{
			t,
			&corev1.LimitRange{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "custos-limits"}},
			&corev1.ResourceQuota{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "custos-quota"}},
			&networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "custos-allow-database"}},
			&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "custos-database"}},
			&rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "custos-owners"}},
		}
		versions := func() []string {
			var out []string
			for _, o := range objs {
				Expect(k8s.Get(ctx, client.ObjectKeyFromObject(o), o)).To(Succeed())
				out = append(out, fmt.Sprintf("%T=%s", o, o.GetResourceVersion()))
			}
			return out
		}
		Eventually(func() []string { a := versions(); time.Sleep(time.Second); return append(a, versions()...) }).
			WithTimeout(20*time.Second).Should(Satisfy(func(v []string) bool {
			half := len(v) / 2
			for i := 0; i < half; i++ {
				if v[i] != v[i+half] {
					return false
				}
			}
			return true
		}), "settles within 20 s")
		settled := versions()
		Consistently(versions).WithTimeout(5 * time.Second).WithPolling(500 * time.Millisecond).Should(Equal(settled))
	})

	It("restores what was deleted or changed by hand, and follows spec changes", func(ctx SpecContext) {
		t := newTenant("drift")
		Expect(k8s.Create(ctx, t)).To(Succeed())
		expectReady(ctx, t)
		ns := t.Spec.Namespaces.Names[0]
		for _, o := range []client.Object{
			&networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "custos-default-deny"}},
			&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "custos-database"}},
			&corev1.ResourceQuota{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "custos-quota"}},
		} {
			Expect(k8s.Delete(ctx, o)).To(Succeed())
			Eventually(func() error { return k8s.Get(ctx, client.ObjectKeyFromObject(o), o) }).
				WithTimeout(30*time.Second).Should(Succeed(), "%T %s restored", o, o.GetName())
		}
		creds := credentials(ctx, ns)
		c, err := connectWith(ctx, creds, creds["dbname"])
		Expect(err).NotTo(HaveOccurred(), "the restored Secret holds the working password")
		Expect(c.Close(ctx)).To(Succeed())

		By("overwriting a hand edit of the deny-all policy")
		var deny networkingv1.NetworkPolicy
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "custos-default-deny"}, &deny)).To(Succeed())
		deny.Spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}
		Expect(k8s.Update(ctx, &deny)).To(Succeed())
		Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(&deny), &deny)).To(Succeed())
			g.Expect(deny.Spec.PolicyTypes).To(ConsistOf(networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress))
		}).WithTimeout(30 * time.Second).Should(Succeed())

		By("updating the quota when the spec changes")
		updateSpec(ctx, t, func() { t.Spec.Quota.Hard[corev1.ResourcePods] = resource.MustParse("25") })
		Eventually(func(g Gomega) {
			var q corev1.ResourceQuota
			g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "custos-quota"}, &q)).To(Succeed())
			g.Expect(q.Spec.Hard.Pods().String()).To(Equal("25"))
		}).WithTimeout(30 * time.Second).Should(Succeed())
	})

	It("rotates the password when rotatePasswordAt passes", func(ctx SpecContext) {
		t := newTenant("rot")
		Expect(k8s.Create(ctx, t)).To(Succeed())
		expectReady(ctx, t)
		ns := t.Spec.Namespaces.Names[0]
		before := credentials(ctx, ns)
		at := metav1.NewTime(time.Now().Add(-time.Second))
		updateSpec(ctx, t, func() { t.Spec.Database.RotatePasswordAt = &at })
		Eventually(func() string { return credentials(ctx, ns)["password"] }).WithTimeout(30 * time.Second).
			ShouldNot(Equal(before["password"]))
		after := credentials(ctx, ns)
		Eventually(func() error {
			c, err := connectWith(ctx, after, after["dbname"])
			if err == nil {
				_ = c.Close(ctx)
			}
			return err
		}).WithTimeout(30 * time.Second).Should(Succeed())
		_, err := connectWith(ctx, before, before["dbname"])
		Expect(err).To(MatchError(ContainSubstring("password authentication failed")))
		Expect(credentials(ctx, t.Spec.Namespaces.Names[1])["password"]).To(Equal(after["password"]))
	})

	It("converges after the manager is killed mid-provisioning, without duplicates", func(ctx SpecContext) {
		ts := []*custosv1alpha1.Tenant{newTenant("crash"), newTenant("crash"), newTenant("crash")}
		for _, t := range ts {
			Expect(k8s.Create(ctx, t)).To(Succeed())
		}
		Eventually(func() bool { // wait until provisioning has visibly begun
			var n corev1.Namespace
			return k8s.Get(ctx, client.ObjectKey{Name: ts[0].Spec.Namespaces.Names[0]}, &n) == nil
		}).WithTimeout(30 * time.Second).Should(BeTrue())
		mgr.stop()
		mgr = startManager()
		for _, t := range ts {
			expectReady(ctx, t)
		}
		admin, err := pgx.Connect(ctx, pg.URL("postgres"))
		Expect(err).NotTo(HaveOccurred())
		defer admin.Close(ctx)
		for _, t := range ts {
			var dbs, roles int
			Expect(admin.QueryRow(ctx, "SELECT count(*) FROM pg_database WHERE datname = $1", t.DatabaseName()).Scan(&dbs)).To(Succeed())
			Expect(admin.QueryRow(ctx, "SELECT count(*) FROM pg_roles WHERE rolname = $1", t.DatabaseName()).Scan(&roles)).To(Succeed())
			Expect([]int{dbs, roles}).To(Equal([]int{1, 1}))
			var secrets corev1.SecretList
			Expect(k8s.List(ctx, &secrets, client.MatchingLabels{custosv1alpha1.LabelTenant: t.Name})).To(Succeed())
			Expect(secrets.Items).To(HaveLen(3), "one master copy and one per namespace")
			creds := credentials(ctx, t.Spec.Namespaces.Names[0])
			c, err := connectWith(ctx, creds, creds["dbname"])
			Expect(err).NotTo(HaveOccurred())
			Expect(c.Close(ctx)).To(Succeed())
		}
	})

	Context("refusing bad input with a reason and touching nothing it does not own", func() {
		It("waits for an unknown DatabaseServer and creates nothing", func(ctx SpecContext) {
			t := newTenant("nosrv")
			t.Spec.Database.ServerRef.Name = "no-such-server"
			Expect(k8s.Create(ctx, t)).To(Succeed())
			Eventually(condition(ctx, t, custosv1alpha1.ConditionReady)).WithTimeout(30 * time.Second).
				Should(And(haveStatus(metav1.ConditionFalse, custosv1alpha1.ReasonNotFound),
					HaveField("Message", ContainSubstring(`DatabaseServer "no-such-server" not found`))))
			Expect(t.Status.Phase).To(Equal(custosv1alpha1.TenantPending))
			Consistently(func() bool {
				return apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKey{Name: t.Spec.Namespaces.Names[0]}, &corev1.Namespace{}))
			}).WithTimeout(3 * time.Second).Should(BeTrue())

			By("going on once the server exists")
			t.Spec.Database.ServerRef.Name = serverName
			bindCredentials(ctx, serverName+"-admin", "DatabaseServer/no-such-server")
			Expect(k8s.Create(ctx, &custosv1alpha1.DatabaseServer{ObjectMeta: metav1.ObjectMeta{Name: "no-such-server"}, Spec: custosv1alpha1.DatabaseServerSpec{
				Host: pg.Host, Port: int32(pg.Port), SSLMode: "disable", Jurisdiction: "NL",
				AdminCredentialsSecretRef: custosv1alpha1.SecretReference{Name: serverName + "-admin"}}})).To(Succeed())
			expectReady(ctx, t)
		})

		It("refuses a server outside the policy's jurisdictions", func(ctx SpecContext) {
			bindCredentials(ctx, serverName+"-admin", "DatabaseServer/pg-us")
			ensureObject(ctx, &custosv1alpha1.DatabaseServer{ObjectMeta: metav1.ObjectMeta{Name: "pg-us"}, Spec: custosv1alpha1.DatabaseServerSpec{
				Host: pg.Host, Port: int32(pg.Port), SSLMode: "disable", Jurisdiction: "US",
				AdminCredentialsSecretRef: custosv1alpha1.SecretReference{Name: serverName + "-admin"}}})
			t := newTenant("us")
			t.Spec.Database.ServerRef.Name = "pg-us"
			Expect(k8s.Create(ctx, t)).To(Succeed())
			Eventually(condition(ctx, t, custosv1alpha1.ConditionReady)).WithTimeout(30 * time.Second).
				Should(And(haveStatus(metav1.ConditionFalse, custosv1alpha1.ReasonJurisdictionNotAllowed),
					HaveField("Message", ContainSubstring("is in US, which RetentionPolicy"))))
			Expect(apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKey{Name: t.Spec.Namespaces.Names[0]}, &corev1.Namespace{}))).To(BeTrue())
			admin, err := pgx.Connect(ctx, pg.URL("postgres"))
			Expect(err).NotTo(HaveOccurred())
			defer admin.Close(ctx)
			var n int
			Expect(admin.QueryRow(ctx, "SELECT count(*) FROM pg_database WHERE datname = $1", t.DatabaseName()).Scan(&n)).To(Succeed())
			Expect(n).To(BeZero())
		})

		It("refuses a pre-existing namespace without the tenant's label and leaves it as it was", func(ctx SpecContext) {
			t := newTenant("squat")
			foreign := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: t.Spec.Namespaces.Names[1], Labels: map[string]string{"team": "other"}}}
			Expect(k8s.Create(ctx, foreign)).To(Succeed())
			Expect(k8s.Create(ctx, t)).To(Succeed())
			Eventually(condition(ctx, t, custosv1alpha1.ConditionNamespacesReady)).WithTimeout(30 * time.Second).
				Should(And(haveStatus(metav1.ConditionFalse, custosv1alpha1.ReasonNamespaceNotOwned),
					HaveField("Message", ContainSubstring(fmt.Sprintf("namespace %q exists and was not created by custos for this tenant", foreign.Name)))))
			Expect(meta.FindStatusCondition(t.Status.Conditions, custosv1alpha1.ConditionReady).Status).To(Equal(metav1.ConditionFalse))
			Expect(k8s.Get(ctx, client.ObjectKeyFromObject(foreign), foreign)).To(Succeed())
			Expect(foreign.Labels).To(Equal(map[string]string{"team": "other", "kubernetes.io/metadata.name": foreign.Name}))
			var policies networkingv1.NetworkPolicyList
			Expect(k8s.List(ctx, &policies, client.InNamespace(foreign.Name))).To(Succeed())
			Expect(policies.Items).To(BeEmpty())
			Expect(apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKey{Name: t.Spec.Namespaces.Names[0]}, &corev1.Namespace{}))).To(BeTrue(),
				"nothing half-made: the other namespace was not created either")
		})

		It("refuses a namespace someone prepared with the tenant's label", func(ctx SpecContext) {
			t := newTenant("forged")
			forged := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: t.Spec.Namespaces.Names[0], Labels: map[string]string{custosv1alpha1.LabelTenant: t.Name}}}
			Expect(k8s.Create(ctx, forged)).To(Succeed())
			Expect(k8s.Create(ctx, t)).To(Succeed())
			Eventually(condition(ctx, t, custosv1alpha1.ConditionNamespacesReady)).WithTimeout(30 * time.Second).
				Should(haveStatus(metav1.ConditionFalse, custosv1alpha1.ReasonNamespaceNotOwned))
			var sec corev1.Secret
			Expect(apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKey{Namespace: forged.Name, Name: "custos-database"}, &sec))).To(BeTrue(),
				"no credentials are written into a namespace custos did not create")
		})

		It("refuses a database name that belongs to another tenant", func(ctx SpecContext) {
			first := newTenant("owner")
			Expect(k8s.Create(ctx, first)).To(Succeed())
			expectReady(ctx, first)
			second := newTenant("thief")
			second.Spec.Database.Name = first.DatabaseName()
			Expect(k8s.Create(ctx, second)).To(Succeed())
			Eventually(condition(ctx, second, custosv1alpha1.ConditionDatabaseReady)).WithTimeout(30 * time.Second).
				Should(And(haveStatus(metav1.ConditionFalse, custosv1alpha1.ReasonDatabaseNotOwned),
					HaveField("Message", ContainSubstring("never adopts a database or role"))))
			Expect(apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKey{Name: second.Spec.Namespaces.Names[0]}, &corev1.Namespace{}))).To(BeTrue(),
				"nothing half-made: no namespace was created for a refused database name")
			Expect(second.Status.Namespaces).To(BeEmpty())
			Expect(k8s.Delete(ctx, second)).To(Succeed(), "a Tenant for which nothing was provisioned can be deleted")
			creds := credentials(ctx, first.Spec.Namespaces.Names[0])
			c, err := connectWith(ctx, creds, creds["dbname"])
			Expect(err).NotTo(HaveOccurred(), "the first tenant still works")
			Expect(c.Close(ctx)).To(Succeed())
		})

		It("reports a stopped server as Unreachable and recovers when it is back", func(ctx SpecContext) {
			down, err := testharness.StartPostgres(ctx)
			Expect(err).NotTo(HaveOccurred())
			DeferCleanup(down.Stop)
			databaseServerFor(ctx, "pg-down", down, "DE")
			t := newTenant("down")
			t.Spec.Database.ServerRef.Name = "pg-down"
			Expect(k8s.Create(ctx, t)).To(Succeed())
			expectReady(ctx, t)

			Expect(down.Pause()).To(Succeed())
			s := &custosv1alpha1.DatabaseServer{ObjectMeta: metav1.ObjectMeta{Name: "pg-down"}}
			// The server is rechecked on its own schedule; a spec change makes it look now.
			updateSpec(ctx, s, func() { s.Spec.Region = "Frankfurt" })
			Eventually(condition(ctx, s, custosv1alpha1.ConditionReady)).WithTimeout(30 * time.Second).
				Should(haveStatus(metav1.ConditionFalse, custosv1alpha1.ReasonUnreachable))
			Eventually(condition(ctx, t, custosv1alpha1.ConditionDatabaseReady)).WithTimeout(90 * time.Second).
				Should(And(haveStatus(metav1.ConditionFalse, custosv1alpha1.ReasonUnreachable),
					HaveField("Message", ContainSubstring(`cannot reach DatabaseServer "pg-down"`))))

			Expect(down.Resume(ctx)).To(Succeed())
			expectReady(ctx, t)
		})
	})

	It("refuses to delete a provisioned Tenant until it is Destroyed", func(ctx SpecContext) {
		t := newTenant("keep")
		Expect(k8s.Create(ctx, t)).To(Succeed())
		expectReady(ctx, t)
		err := k8s.Delete(ctx, t)
		Expect(err).To(HaveOccurred())
		Expect(apierrors.IsForbidden(err) || apierrors.IsInvalid(err)).To(BeTrue(), "%v", err)
		Expect(err.Error()).To(ContainSubstring("is Active, not Destroyed"))
		Expect(err.Error()).To(ContainSubstring("set spec.contract.end"))
		Expect(k8s.Get(ctx, client.ObjectKeyFromObject(t), t)).To(Succeed())

		By("allowing the delete of a Tenant for which nothing was provisioned")
		never := newTenant("typo")
		never.Spec.RetentionPolicyRef.Name = "no-such-policy"
		Expect(k8s.Create(ctx, never)).To(Succeed())
		Eventually(condition(ctx, never, custosv1alpha1.ConditionReady)).WithTimeout(30 * time.Second).
			Should(haveStatus(metav1.ConditionFalse, custosv1alpha1.ReasonNotFound))
		Expect(k8s.Delete(ctx, never)).To(Succeed())

		By("allowing the delete once Destroyed")
		mgr.stop() // the provisioning controller must not see a phase it does not own being set by hand
		DeferCleanup(func() { mgr = startManager() })
		// Read again: the controller may have written status between the first Get and its stop.
		Expect(retry.RetryOnConflict(retry.DefaultRetry, func() error {
			if err := k8s.Get(ctx, client.ObjectKeyFromObject(t), t); err != nil {
				return err
			}
			t.Status.Phase = custosv1alpha1.TenantDestroyed
			return k8s.Status().Update(ctx, t)
		})).To(Succeed())
		Eventually(func() error { return k8s.Delete(ctx, t) }).WithTimeout(10 * time.Second).Should(Succeed())
	})
})
