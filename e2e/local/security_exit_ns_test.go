package local

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	custosv1alpha1 "github.com/custos-io/custos/api/v1alpha1"
	"github.com/custos-io/custos/controllers"
)

// namespaceContentKinds are the kinds playNamespaceController deletes from a namespace being deleted.
var namespaceContentKinds = []schema.GroupVersionKind{
	{Version: "v1", Kind: "ConfigMap"}, {Version: "v1", Kind: "Secret"}, {Version: "v1", Kind: "Pod"}, {Version: "v1", Kind: "Service"},
	{Version: "v1", Kind: "ServiceAccount"}, {Version: "v1", Kind: "PersistentVolumeClaim"}, {Version: "v1", Kind: "ResourceQuota"},
	{Version: "v1", Kind: "LimitRange"}, {Version: "v1", Kind: "ReplicationController"},
	{Group: "apps", Version: "v1", Kind: "Deployment"}, {Group: "apps", Version: "v1", Kind: "StatefulSet"},
	{Group: "apps", Version: "v1", Kind: "DaemonSet"}, {Group: "apps", Version: "v1", Kind: "ReplicaSet"},
	{Group: "batch", Version: "v1", Kind: "Job"}, {Group: "batch", Version: "v1", Kind: "CronJob"},
	{Group: "networking.k8s.io", Version: "v1", Kind: "NetworkPolicy"}, {Group: "networking.k8s.io", Version: "v1", Kind: "Ingress"},
	{Group: "rbac.authorization.k8s.io", Version: "v1", Kind: "Role"}, {Group: "rbac.authorization.k8s.io", Version: "v1", Kind: "RoleBinding"},
}

// playNamespaceController plays the namespace controller envtest does not run, more faithfully than
// finalizeNamespaces: the objects of a namespace being deleted are deleted; while any remains (held by a
// finalizer) the namespace keeps its own finalizer and gets the conditions the real controller sets
// (NamespaceContentRemaining, NamespaceFinalizersRemaining); once none remains, it is finalized and goes.
func playNamespaceController(ctx context.Context) {
	for ctx.Err() == nil {
		var list corev1.NamespaceList
		if err := k8s.List(ctx, &list); err == nil {
			for i := range list.Items {
				if ns := &list.Items[i]; ns.DeletionTimestamp != nil && len(ns.Spec.Finalizers) > 0 {
					deleteNamespaceContent(ctx, ns)
				}
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(300 * time.Millisecond):
		}
	}
}

func deleteNamespaceContent(ctx context.Context, ns *corev1.Namespace) {
	remaining := map[string]int{}
	finalizers := map[string]int{}
	for _, gvk := range namespaceContentKinds {
		list := &unstructured.UnstructuredList{}
		list.SetGroupVersionKind(gvk.GroupVersion().WithKind(gvk.Kind + "List"))
		if err := k8s.List(ctx, list, client.InNamespace(ns.Name)); err != nil {
			return
		}
		for i := range list.Items {
			o := &list.Items[i]
			if o.GetDeletionTimestamp() == nil {
				_ = k8s.Delete(ctx, o)
			}
		}
		if err := k8s.List(ctx, list, client.InNamespace(ns.Name)); err != nil {
			return
		}
		for _, o := range list.Items {
			remaining[strings.ToLower(gvk.Kind)+"s."+gvk.Group]++
			for _, f := range o.GetFinalizers() {
				finalizers[f]++
			}
		}
	}
	if len(remaining) == 0 {
		ns.Spec.Finalizers = nil
		_ = k8s.SubResource("finalize").Update(ctx, ns)
		return
	}
	var content, held []string
	for k, n := range remaining {
		content = append(content, fmt.Sprintf("%s has %d resource instances", k, n))
	}
	for f, n := range finalizers {
		held = append(held, fmt.Sprintf("%s in %d resource instances", f, n))
	}
	conds := []corev1.NamespaceCondition{{Type: corev1.NamespaceContentRemaining, Status: corev1.ConditionTrue, Reason: "SomeResourcesRemain",
		Message: "Some resources are remaining: " + strings.Join(content, ", "), LastTransitionTime: metav1.Now()}}
	if len(held) > 0 {
		conds = append(conds, corev1.NamespaceCondition{Type: corev1.NamespaceFinalizersRemaining, Status: corev1.ConditionTrue, Reason: "SomeFinalizersRemain",
			Message: "Some content in the namespace has finalizers remaining: " + strings.Join(held, ", "), LastTransitionTime: metav1.Now()})
	}
	if len(ns.Status.Conditions) != len(conds) {
		ns.Status.Conditions = conds
		_ = k8s.Status().Update(ctx, ns)
	}
}

// playRoleAggregation plays the ClusterRole aggregation controller envtest does not run: "view", "edit" and
// "admin" (in that order, since view is aggregated into edit and edit into admin) get the rules of the roles their
// aggregationRule selects, as in a cluster. Without it, binding "admin" grants nothing.
func playRoleAggregation(ctx context.Context) {
	GinkgoHelper()
	for _, name := range []string{"view", "edit", "admin"} {
		var role rbacv1.ClusterRole
		Expect(k8s.Get(ctx, client.ObjectKey{Name: name}, &role)).To(Succeed())
		Expect(role.AggregationRule).NotTo(BeNil())
		var rules []rbacv1.PolicyRule
		for _, sel := range role.AggregationRule.ClusterRoleSelectors {
			var roles rbacv1.ClusterRoleList
			Expect(k8s.List(ctx, &roles, client.MatchingLabels(sel.MatchLabels))).To(Succeed())
			for _, r := range roles.Items {
				rules = append(rules, r.Rules...)
			}
		}
		Expect(rules).NotTo(BeEmpty())
		role.Rules = rules
		Expect(k8s.Update(ctx, &role)).To(Succeed())
	}
}

// impersonating is a client acting as user in groups.
func impersonating(user string, groups ...string) client.Client {
	GinkgoHelper()
	cfg := rest.CopyConfig(controlPlane.Config)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: user, Groups: groups}
	c, err := client.New(cfg, client.Options{Scheme: controlPlane.Scheme})
	Expect(err).NotTo(HaveOccurred())
	return c
}

// can asks the API server whether user (in groups) may do verb on resource (group/resource[/subresource]) in ns.
func can(ctx context.Context, user string, groups []string, verb, group, resource, sub, ns string) bool {
	GinkgoHelper()
	sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{User: user, Groups: groups,
		ResourceAttributes: &authorizationv1.ResourceAttributes{Namespace: ns, Verb: verb, Group: group, Resource: resource, Subresource: sub}}}
	Expect(k8s.Create(ctx, sar)).To(Succeed())
	return sar.Status.Allowed
}

// tenantEvents returns the messages of the Events about Tenant name with reason.
func tenantEvents(ctx context.Context, name, reason string) func(Gomega) []string {
	return func(g Gomega) []string {
		var list eventsv1.EventList
		g.Expect(k8s.List(ctx, &list)).To(Succeed())
		var out []string
		for _, e := range list.Items {
			if e.Regarding.Kind == "Tenant" && e.Regarding.Name == name && e.Reason == reason {
				out = append(out, e.Note)
			}
		}
		return out
	}
}

// bystander is a namespace that is not the tenant's, with workloads, a Secret, a NetworkPolicy and a RoleBinding.
type bystander struct {
	ns     string
	dep    *appsv1.Deployment
	policy *networkingv1.NetworkPolicy
	secret *corev1.Secret
	rb     *rbacv1.RoleBinding
}

func plantBystander(ctx context.Context, ns string, labels map[string]string) bystander {
	GinkgoHelper()
	ensureObject(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: labels}})
	b := bystander{ns: ns}
	app := map[string]string{"app": "bystander"}
	b.dep = &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "records"}, Spec: appsv1.DeploymentSpec{Replicas: ptr.To[int32](2),
		Selector: &metav1.LabelSelector{MatchLabels: app}, Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: app},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "records", Image: "registry.example.eu/records:1"}}}}}}
	b.policy = &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "custos-allow-tenant"},
		Spec: networkingv1.NetworkPolicySpec{PodSelector: metav1.LabelSelector{}, Ingress: []networkingv1.NetworkPolicyIngressRule{{}}}}
	b.secret = &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "custos-database"}, StringData: map[string]string{"password": "not yours"}}
	b.rb = &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "custos-owners"},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "view"},
		Subjects: []rbacv1.Subject{{Kind: "User", APIGroup: rbacv1.GroupName, Name: "someone-else"}}}
	for _, o := range []client.Object{b.dep, b.policy, b.secret, b.rb} {
		Expect(k8s.Create(ctx, o)).To(Succeed())
	}
	return b
}

// expectUntouched checks that nothing of the bystander was changed or deleted.
func (b bystander) expectUntouched(ctx context.Context) {
	GinkgoHelper()
	var ns corev1.Namespace
	Expect(k8s.Get(ctx, client.ObjectKey{Name: b.ns}, &ns)).To(Succeed(), "namespace %s exists", b.ns)
	Expect(ns.DeletionTimestamp).To(BeNil(), "namespace %s is not being deleted", b.ns)
	dep := &appsv1.Deployment{}
	Expect(k8s.Get(ctx, keyOf(b.dep), dep)).To(Succeed())
	Expect(dep.Spec.Replicas).To(HaveValue(BeEquivalentTo(2)), "Deployment %s/%s not scaled", b.ns, dep.Name)
	Expect(dep.Annotations).NotTo(HaveKey("custos.io/suspended-from"))
	Expect(dep.ResourceVersion).To(Equal(b.dep.ResourceVersion), "Deployment %s/%s not changed", b.ns, dep.Name)
	for _, o := range []client.Object{&networkingv1.NetworkPolicy{}, &corev1.Secret{}, &rbacv1.RoleBinding{}} {
		var want client.Object
		switch o.(type) {
		case *networkingv1.NetworkPolicy:
			want = b.policy
		case *corev1.Secret:
			want = b.secret
		case *rbacv1.RoleBinding:
			want = b.rb
		}
		Expect(k8s.Get(ctx, keyOf(want), o)).To(Succeed(), "%T %s/%s still there", o, b.ns, want.GetName())
		Expect(o.GetResourceVersion()).To(Equal(want.GetResourceVersion()), "%T %s/%s not changed", o, b.ns, want.GetName())
	}
	var cm corev1.ConfigMap
	Expect(apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKey{Namespace: b.ns, Name: "custos-suspension"}, &cm))).To(BeTrue(), "nothing written into %s", b.ns)
}

var _ = Describe("Exit: only what provisioning proved the tenant's", Ordered, Label("integration", "exit", "security"), func() {
	const (
		location = "secns-primary"
		policy   = "secns-policy"
		server   = "secns-pg"
	)
	var exportDir string

	BeforeAll(func(ctx SpecContext) {
		exportDir = filepath.Join(GinkgoT().TempDir(), "exports")
		// Made before the manager starts, so that it is removed after the manager has stopped (cleanups run last
		// first): a restic still writing into it would make the removal fail.
		primaryDir := filepath.Join(GinkgoT().TempDir(), "primary")
		Expect(os.MkdirAll(exportDir, 0o700)).To(Succeed())
		nsCtx, stopNS := context.WithCancel(context.Background())
		go playNamespaceController(nsCtx)
		DeferCleanup(stopNS)
		mgr := startManager(func(o *controllers.Options) { o.ExportDir = exportDir; o.NamespaceStuckAfter = 2 * time.Second })
		DeferCleanup(func() { mgr.stop() })
		ensureObject(ctx, &custosv1alpha1.BackupLocation{ObjectMeta: metav1.ObjectMeta{Name: location},
			Spec: custosv1alpha1.BackupLocationSpec{URL: primaryDir, Jurisdiction: "NL"}})
		yearly := custosv1alpha1.Schedule{Cron: "0 3 1 1 *", TimeZone: "UTC"}
		ensureObject(ctx, &custosv1alpha1.RetentionPolicy{ObjectMeta: metav1.ObjectMeta{Name: policy}, Spec: custosv1alpha1.RetentionPolicySpec{
			Primary: custosv1alpha1.ObjectReference{Name: location}, Schedule: yearly, CopySchedule: yearly, ExpirySchedule: yearly,
			KeepWithin: "30d", AllowedJurisdictions: []custosv1alpha1.JurisdictionSelector{"EEA"},
			ExitGracePeriod: "0s", Export: custosv1alpha1.ExportPolicy{ExpireAfterDelivery: "20s"},
		}})
		databaseServerFor(ctx, server, pg, "NL")
	})

	tenant := func(prefix string, dataReturn custosv1alpha1.DataReturn) *custosv1alpha1.Tenant {
		t := newTenant(prefix)
		t.Spec.RetentionPolicyRef.Name = policy
		t.Spec.Database.ServerRef.Name = server
		t.Spec.Quota = nil // envtest runs no quota controller: a quota without status refuses every Pod
		t.Spec.Exit = custosv1alpha1.TenantExit{DataReturn: dataReturn, Backups: custosv1alpha1.BackupDisposalShred}
		return t
	}
	endContract := func(ctx context.Context, t *custosv1alpha1.Tenant) {
		GinkgoHelper()
		updateSpec(ctx, t, func() { t.Spec.Contract.End = &metav1.Time{Time: time.Now().Add(-time.Second).Truncate(time.Second)} })
	}
	phaseOf := func(ctx context.Context, t *custosv1alpha1.Tenant) func(Gomega) custosv1alpha1.TenantPhase {
		DeferCleanup(func() {
			if CurrentSpecReport().Failed() {
				b, _ := yaml.Marshal(t.Status)
				AddReportEntry("tenant "+t.Name+" status", string(b))
			}
		})
		return func(g Gomega) custosv1alpha1.TenantPhase {
			g.Expect(k8s.Get(ctx, keyOf(t), t)).To(Succeed())
			return t.Status.Phase
		}
	}

	It("a Tenant whose spec names another tenant's namespace and the manager's own reaches Destroyed without touching either", func(ctx SpecContext) {
		a := tenant("secns-a", custosv1alpha1.DataReturnNone)
		Expect(k8s.Create(ctx, a)).To(Succeed())
		expectReady(ctx, a)
		victim := a.Status.Namespaces[0].Name
		var aDeny, aOwners, aCreds client.Object = &networkingv1.NetworkPolicy{}, &rbacv1.RoleBinding{}, &corev1.Secret{}
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: victim, Name: "custos-allow-tenant"}, aDeny)).To(Succeed())
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: victim, Name: "custos-owners"}, aOwners)).To(Succeed())
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: victim, Name: "custos-database"}, aCreds)).To(Succeed())
		app := map[string]string{"app": "a"}
		aDep := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: victim, Name: "a-emr"}, Spec: appsv1.DeploymentSpec{Replicas: ptr.To[int32](2),
			Selector: &metav1.LabelSelector{MatchLabels: app}, Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: app},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "emr", Image: "registry.example.eu/emr:1"}}}}}}
		Expect(k8s.Create(ctx, aDep)).To(Succeed())
		mgrNS := &corev1.Namespace{}
		Expect(k8s.Get(ctx, client.ObjectKey{Name: managerNamespace}, mgrNS)).To(Succeed())

		By("a Tenant B naming A's namespace and the manager's namespace: provisioning refuses it")
		b := tenant("secns-b", custosv1alpha1.DataReturnNone)
		b.Spec.Namespaces.Names = []string{victim, managerNamespace}
		Expect(k8s.Create(ctx, b)).To(Succeed())
		Eventually(condition(ctx, b, custosv1alpha1.ConditionNamespacesReady)).Should(haveStatus(metav1.ConditionFalse, custosv1alpha1.ReasonNamespaceNotOwned))
		Expect(b.Status.Namespaces).To(BeEmpty())

		By("ending B's contract: B is suspended, purged and destroyed")
		endContract(ctx, b)
		Eventually(phaseOf(ctx, b)).WithTimeout(3 * time.Minute).WithPolling(time.Second).Should(Equal(custosv1alpha1.TenantDestroyed))

		By("finding A's namespace, policies, owners' binding, credentials and workload as they were")
		var ns corev1.Namespace
		Expect(k8s.Get(ctx, client.ObjectKey{Name: victim}, &ns)).To(Succeed())
		Expect(ns.DeletionTimestamp).To(BeNil())
		for _, o := range []client.Object{aDeny, aOwners, aCreds} {
			fresh := o.DeepCopyObject().(client.Object)
			Expect(k8s.Get(ctx, keyOf(o), fresh)).To(Succeed(), "%T %s", o, o.GetName())
			Expect(fresh.GetResourceVersion()).To(Equal(o.GetResourceVersion()), "%T %s unchanged", o, o.GetName())
		}
		dep := &appsv1.Deployment{}
		Expect(k8s.Get(ctx, keyOf(aDep), dep)).To(Succeed())
		Expect(dep.Spec.Replicas).To(HaveValue(BeEquivalentTo(2)))
		Expect(dep.ResourceVersion).To(Equal(aDep.ResourceVersion))
		Expect(k8s.Get(ctx, client.ObjectKey{Name: managerNamespace}, &ns)).To(Succeed())
		Expect(ns.DeletionTimestamp).To(BeNil(), "the manager's namespace is not being deleted")
		Expect(ns.UID).To(Equal(mgrNS.UID))
		expectReady(ctx, a)

		By("reporting what was left alone: a condition naming both namespaces, and a Warning Event")
		Expect(k8s.Get(ctx, keyOf(b), b)).To(Succeed())
		c := condOf(b, custosv1alpha1.ConditionNamespacesReady)
		Expect(c).To(haveStatus(metav1.ConditionFalse, custosv1alpha1.ReasonNamespaceNotOwned))
		Expect(c.Message).To(And(ContainSubstring("left entirely alone"), ContainSubstring(`"`+victim+`"`), ContainSubstring(`"`+managerNamespace+`"`)))
		Eventually(tenantEvents(ctx, b.Name, custosv1alpha1.ReasonNamespaceNotOwned)).Should(ContainElement(ContainSubstring("left entirely alone")))
		for _, d := range b.Status.Exit.Destroyed {
			Expect(d.Kind).NotTo(Equal(custosv1alpha1.DestroyedNamespace), "B's certificate claims no namespace")
			Expect(d.Name).NotTo(HavePrefix(victim+"/"), "B destroyed nothing in A's namespace")
		}
	})

	It("count raised from 1 to 2 onto a <name>-2 that belongs to someone else: the exit destroys <name> and leaves <name>-2 alone", func(ctx SpecContext) {
		c := tenant("secns-c", custosv1alpha1.DataReturnNone)
		c.Spec.Namespaces = custosv1alpha1.TenantNamespaces{Count: ptr.To[int32](1)}
		Expect(k8s.Create(ctx, c)).To(Succeed())
		expectReady(ctx, c)
		Expect(c.Status.Namespaces).To(HaveLen(1))
		own := c.Status.Namespaces[0]

		By("someone else's namespace " + c.Name + "-2, with a workload, a NetworkPolicy, a Secret and a RoleBinding under custos' names")
		other := plantBystander(ctx, c.Name+"-2", map[string]string{"team": "radiology"})

		By("raising count to 2: provisioning refuses the foreign namespace and records nothing more")
		updateSpec(ctx, c, func() { c.Spec.Namespaces.Count = ptr.To[int32](2) })
		Eventually(condition(ctx, c, custosv1alpha1.ConditionNamespacesReady)).Should(haveStatus(metav1.ConditionFalse, custosv1alpha1.ReasonNamespaceNotOwned))
		Expect(c.Status.Namespaces).To(Equal([]custosv1alpha1.NamespaceStatus{own}))

		By("ending the contract")
		endContract(ctx, c)
		Eventually(phaseOf(ctx, c)).WithTimeout(3 * time.Minute).WithPolling(time.Second).Should(Equal(custosv1alpha1.TenantDestroyed))

		By("finding the tenant's own namespace gone and the other one as it was")
		Expect(apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKey{Name: own.Name}, &corev1.Namespace{}))).To(BeTrue())
		other.expectUntouched(ctx)
		var nss []string
		for _, d := range c.Status.Exit.Destroyed {
			if d.Kind == custosv1alpha1.DestroyedNamespace {
				nss = append(nss, d.Identifier)
			}
			Expect(d.Name).NotTo(HavePrefix(other.ns+"/"), "nothing in %s is claimed destroyed", other.ns)
		}
		Expect(nss).To(Equal([]string{fmt.Sprintf("namespace %s uid %s", own.Name, own.UID)}))
		cond := condOf(c, custosv1alpha1.ConditionNamespacesReady)
		Expect(cond).To(haveStatus(metav1.ConditionFalse, custosv1alpha1.ReasonNamespaceNotOwned))
		Expect(cond.Message).To(And(ContainSubstring(`"`+other.ns+`"`), ContainSubstring("never recorded")))
		Eventually(tenantEvents(ctx, c.Name, custosv1alpha1.ReasonNamespaceNotOwned)).Should(ContainElement(ContainSubstring(other.ns)))
	})

	It("a finalizer the tenant put on an object holds its namespace: the exit says which namespace, object and finalizer, since when, and goes on once it is removed", func(ctx SpecContext) {
		e := tenant("secns-e", custosv1alpha1.DataReturnNone)
		e.Spec.Namespaces.Names = []string{e.Name}
		Expect(k8s.Create(ctx, e)).To(Succeed())
		expectReady(ctx, e)
		held := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: e.Name, Name: "held", Finalizers: []string{"clinic.example/keep"}},
			Data: map[string]string{"note": "the tenant does not want to go"}}
		Expect(k8s.Create(ctx, held)).To(Succeed())

		endContract(ctx, e)
		Eventually(condition(ctx, e, custosv1alpha1.ConditionLiveDataPurged)).WithTimeout(2 * time.Minute).Should(haveStatus(metav1.ConditionFalse, "NamespaceStuck"))
		c := condOf(e, custosv1alpha1.ConditionLiveDataPurged)
		Expect(c.Message).To(And(ContainSubstring("namespace "+e.Name+" is being deleted since "), ContainSubstring("ConfigMap/held (finalizers clinic.example/keep)"),
			ContainSubstring("NamespaceFinalizersRemaining: Some content in the namespace has finalizers remaining: clinic.example/keep in 1 resource instances"),
			ContainSubstring("kubectl -n "+e.Name+" patch")))
		Expect(e.Status.Phase).To(Equal(custosv1alpha1.TenantPurging))
		Eventually(tenantEvents(ctx, e.Name, "NamespaceStuck")).Should(ContainElement(ContainSubstring("ConfigMap/held")))
		Consistently(phaseOf(ctx, e)).WithTimeout(4*time.Second).Should(Equal(custosv1alpha1.TenantPurging), "nothing is certified while the namespace is there")

		By("removing the finalizer: the namespace goes and the exit finishes")
		Expect(k8s.Get(ctx, keyOf(held), held)).To(Succeed())
		held.Finalizers = nil
		Expect(k8s.Update(ctx, held)).To(Succeed())
		Eventually(phaseOf(ctx, e)).WithTimeout(3 * time.Minute).WithPolling(time.Second).Should(Equal(custosv1alpha1.TenantDestroyed))
		Expect(condOf(e, custosv1alpha1.ConditionLiveDataPurged)).To(haveStatus(metav1.ConditionTrue, "Purged"))
		Expect(apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKey{Name: e.Name}, &corev1.Namespace{}))).To(BeTrue())
	})

	It("suspension stops the tenant completely: owners lose access, only the default deny is left, every workload kind stopped, and what was removed is kept and exported", func(ctx SpecContext) {
		d := tenant("secns-d", custosv1alpha1.DataReturnExport)
		Expect(k8s.Create(ctx, d)).To(Succeed())
		expectReady(ctx, d)
		ns := d.Status.Namespaces[0].Name
		group := d.Spec.Owners[0].Name
		owner := impersonating("alice", group)
		playRoleAggregation(ctx)
		Eventually(func() bool { return can(ctx, "alice", []string{group}, "update", "apps", "deployments", "scale", ns) }).Should(BeTrue(), "an owner has admin in the tenant's namespace")

		By("the owner runs every kind of workload, opens the network with a policy of its own, and hands admin to someone")
		ensureObject(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "default"}})
		labels := map[string]string{"app": "emr"}
		tmpl := corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "emr", Image: "registry.example.eu/emr:1"}}}}
		jobTmpl := *tmpl.DeepCopy()
		jobTmpl.Spec.RestartPolicy = corev1.RestartPolicyNever
		dep := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "emr"},
			Spec: appsv1.DeploymentSpec{Replicas: ptr.To[int32](3), Selector: &metav1.LabelSelector{MatchLabels: labels}, Template: tmpl}}
		sts := &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "emr-cache"},
			Spec: appsv1.StatefulSetSpec{Replicas: ptr.To[int32](2), Selector: &metav1.LabelSelector{MatchLabels: labels}, Template: tmpl}}
		rs := &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "emr-bare"},
			Spec: appsv1.ReplicaSetSpec{Replicas: ptr.To[int32](2), Selector: &metav1.LabelSelector{MatchLabels: labels}, Template: tmpl}}
		ds := &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "emr-agent"},
			Spec: appsv1.DaemonSetSpec{Selector: &metav1.LabelSelector{MatchLabels: labels}, Template: *tmpl.DeepCopy()}}
		ds.Spec.Template.Spec.NodeSelector = map[string]string{"kubernetes.io/os": "linux"}
		job := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "emr-import"}, Spec: batchv1.JobSpec{Template: jobTmpl}}
		cj := &batchv1.CronJob{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "emr-report"},
			Spec: batchv1.CronJobSpec{Schedule: "0 6 * * *", JobTemplate: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{Template: jobTmpl}}}}
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "emr-debug", Labels: map[string]string{"app": "debug"}}, Spec: *tmpl.Spec.DeepCopy()}
		allowAll := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "allow-everything"},
			Spec: networkingv1.NetworkPolicySpec{PodSelector: metav1.LabelSelector{}, PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress},
				Ingress: []networkingv1.NetworkPolicyIngressRule{{}}, Egress: []networkingv1.NetworkPolicyEgressRule{{}}}}
		handOver := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "bob-admin"},
			RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "admin"},
			Subjects: []rbacv1.Subject{{Kind: "User", APIGroup: rbacv1.GroupName, Name: "bob"}}}
		for _, o := range []client.Object{dep, sts, rs, ds, job, cj, pod, allowAll, handOver} {
			Expect(owner.Create(ctx, o)).To(Succeed(), "the owner creates %T %s", o, o.GetName())
		}
		Eventually(func() bool { return can(ctx, "bob", nil, "update", "apps", "deployments", "scale", ns) }).Should(BeTrue(), "the owner handed admin to bob")

		By("ending the contract: suspended, then the exit's export is written")
		endContract(ctx, d)
		Eventually(phaseOf(ctx, d)).WithTimeout(time.Minute).Should(Equal(custosv1alpha1.TenantExporting))

		By("no RoleBinding left: neither the owners nor whom they handed admin can scale back up or reopen the network")
		var rbs rbacv1.RoleBindingList
		Expect(k8s.List(ctx, &rbs, client.InNamespace(ns))).To(Succeed())
		Expect(rbs.Items).To(BeEmpty())
		for _, who := range []struct {
			user   string
			groups []string
		}{{"alice", []string{group}}, {"bob", nil}} {
			Expect(can(ctx, who.user, who.groups, "update", "apps", "deployments", "scale", ns)).To(BeFalse(), who.user)
			Expect(can(ctx, who.user, who.groups, "create", "networking.k8s.io", "networkpolicies", "", ns)).To(BeFalse(), who.user)
			Expect(can(ctx, who.user, who.groups, "create", "", "pods", "", ns)).To(BeFalse(), who.user)
		}
		scaled := &appsv1.Deployment{}
		Expect(owner.Get(ctx, keyOf(dep), scaled)).To(MatchError(apierrors.IsForbidden, "the owner cannot even read it"))
		Expect(k8s.Get(ctx, keyOf(dep), scaled)).To(Succeed())
		scaled.Spec.Replicas = ptr.To[int32](3)
		Expect(owner.Update(ctx, scaled)).To(MatchError(apierrors.IsForbidden, "the owner cannot scale back up"))

		By("only custos' default deny is left of the NetworkPolicies")
		var nps networkingv1.NetworkPolicyList
		Expect(k8s.List(ctx, &nps, client.InNamespace(ns))).To(Succeed())
		Expect(nps.Items).To(HaveLen(1))
		Expect(nps.Items[0].Name).To(Equal("custos-default-deny"))
		Expect(nps.Items[0].Spec.Ingress).To(BeEmpty())
		Expect(nps.Items[0].Spec.Egress).To(BeEmpty())

		By("every workload kind stopped, with what was changed kept on it; the bare Pod deleted")
		for _, o := range []client.Object{dep, sts, rs} {
			Expect(k8s.Get(ctx, keyOf(o), o)).To(Succeed())
		}
		Expect(dep.Spec.Replicas).To(HaveValue(BeZero()))
		Expect(dep.Annotations).To(HaveKeyWithValue("custos.io/suspended-from", `{"replicas":3}`))
		Expect(sts.Spec.Replicas).To(HaveValue(BeZero()))
		Expect(sts.Annotations).To(HaveKeyWithValue("custos.io/suspended-from", `{"replicas":2}`))
		Expect(rs.Spec.Replicas).To(HaveValue(BeZero()))
		Expect(k8s.Get(ctx, keyOf(ds), ds)).To(Succeed())
		Expect(ds.Spec.Template.Spec.NodeSelector).To(Equal(map[string]string{"kubernetes.io/os": "linux", "custos.io/suspended": "true"}))
		Expect(ds.Annotations).To(HaveKeyWithValue("custos.io/suspended-from", `{"nodeSelector":{"kubernetes.io/os":"linux"}}`))
		Expect(k8s.Get(ctx, keyOf(job), job)).To(Succeed())
		Expect(job.Spec.Suspend).To(HaveValue(BeTrue()))
		Expect(job.Annotations).To(HaveKeyWithValue("custos.io/suspended-from", `{"suspend":false}`))
		Expect(k8s.Get(ctx, keyOf(cj), cj)).To(Succeed())
		Expect(cj.Spec.Suspend).To(HaveValue(BeTrue()))
		err := k8s.Get(ctx, keyOf(pod), &corev1.Pod{})
		Expect(apierrors.IsNotFound(err)).To(BeTrue(), "the bare Pod is deleted: %v", err)

		By("what was deleted kept as manifests in the ConfigMap custos-suspension")
		var kept corev1.ConfigMap
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "custos-suspension"}, &kept)).To(Succeed())
		Expect(kept.Data).To(HaveKey("rolebinding.custos-owners.yaml"))
		Expect(kept.Data["rolebinding.bob-admin.yaml"]).To(ContainSubstring("name: bob"))
		Expect(kept.Data["networkpolicy.allow-everything.yaml"]).To(ContainSubstring("kind: NetworkPolicy"))
		Expect(kept.Data).To(HaveKey("networkpolicy.custos-allow-database.yaml"))
		Expect(kept.Data["pod.emr-debug.yaml"]).To(ContainSubstring("registry.example.eu/emr:1"))
		var restored networkingv1.NetworkPolicy
		Expect(yaml.Unmarshal([]byte(kept.Data["networkpolicy.allow-everything.yaml"]), &restored)).To(Succeed())
		Expect(restored.Spec).To(Equal(allowAll.Spec), "the manifest is the object as the owner had it")

		By("the exit's export, taken after the suspension, holds that ConfigMap")
		de := exitExportOf(ctx, d)
		Eventually(exportPhase(ctx, de)).WithTimeout(2 * time.Minute).Should(Equal(custosv1alpha1.ExportReady))
		Expect(bagFile(de.Status.Artefact.Location, "/data/objects/"+ns+"/configmap/custos-suspension.yaml")).To(ContainSubstring("rolebinding.bob-admin.yaml"))
	})
})

// bagFile returns the content of the file of the bag (a tar) whose path ends with suffix.
func bagFile(path, suffix string) string {
	GinkgoHelper()
	f, err := os.Open(path)
	Expect(err).NotTo(HaveOccurred())
	defer f.Close()
	tr := tar.NewReader(f)
	var names []string
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		Expect(err).NotTo(HaveOccurred())
		names = append(names, hdr.Name)
		if strings.HasSuffix(hdr.Name, suffix) {
			b, err := io.ReadAll(tr)
			Expect(err).NotTo(HaveOccurred())
			return string(b)
		}
	}
	Fail(fmt.Sprintf("no %s in the bag; it holds %v", suffix, names))
	return ""
}
