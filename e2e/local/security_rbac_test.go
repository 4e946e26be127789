package local

import (
	"context"
	"path/filepath"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	custosv1alpha1 "github.com/custos-io/custos/api/v1alpha1"
	"github.com/custos-io/custos/internal/testharness"
)

// managerServiceAccount is the service account of config/rbac, which config/admission/manager-guard.yaml names.
const managerServiceAccount = "system:serviceaccount:custos-system:custos-manager"

// asManager is a client that acts as custos' service account with the ClusterRole generated from the RBAC markers
// (config/rbac), so that what the API server lets it do is what an installed manager may do.
func asManager() client.Client {
	GinkgoHelper()
	cfg := rest.CopyConfig(controlPlane.Config)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: managerServiceAccount,
		Groups: []string{"system:serviceaccounts", "system:serviceaccounts:custos-system", "system:authenticated"}}
	c, err := client.New(cfg, client.Options{Scheme: controlPlane.Scheme})
	Expect(err).NotTo(HaveOccurred())
	return c
}

func expectForbidden(err error, want string) {
	GinkgoHelper()
	Expect(err).To(HaveOccurred(), "the API server let custos' service account do it (want %q)", want)
	Expect(apierrors.IsForbidden(err)).To(BeTrue(), "want Forbidden, got: %v", err)
	Expect(err.Error()).To(ContainSubstring(want))
}

var _ = Describe("What custos' own service account may destroy or stop", Ordered, Label("integration", "security", "rbac"), func() {
	var custos client.Client

	BeforeAll(func(ctx SpecContext) {
		root, err := testharness.RepoRoot()
		Expect(err).NotTo(HaveOccurred())
		for _, f := range []string{"config/rbac/role.yaml", "config/rbac/role_binding.yaml", "config/admission/manager-guard.yaml"} {
			Expect(testharness.ApplyManifests(ctx, k8s, filepath.Join(root, f))).To(Succeed(), f)
		}
		ensureObject(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: managerNamespace}})
		custos = asManager()
		// The policy takes effect once the API server has loaded it: wait until a refusal comes back, with a
		// dry run (admission sees it, nothing is deleted) so that the probe survives the wait.
		probe := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "secr-probe"}}
		ensureObject(ctx, probe)
		Eventually(func() error { return custos.Delete(ctx, probe.DeepCopy(), client.DryRunAll) }).WithTimeout(30 * time.Second).
			Should(MatchError(ContainSubstring("custos may delete only a namespace it created for a tenant")))
	})

	It("refuses deleting a namespace custos did not create for a tenant, and allows one it did", func(ctx SpecContext) {
		foreign := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "secr-foreign", Labels: map[string]string{"team": "payments"}}}
		Expect(k8s.Create(ctx, foreign)).To(Succeed())
		expectForbidden(custos.Delete(ctx, foreign), "namespace secr-foreign is not one")
		Expect(k8s.Get(ctx, keyOf(foreign), foreign)).To(Succeed())
		Expect(foreign.DeletionTimestamp).To(BeNil())

		By("a label alone (which whoever made the namespace may have set) is not enough")
		labelled := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "secr-labelled", Labels: map[string]string{custosv1alpha1.LabelTenant: "clinic"}}}
		Expect(k8s.Create(ctx, labelled)).To(Succeed())
		expectForbidden(custos.Delete(ctx, labelled), "label custos.io/tenant and annotation custos.io/tenant-uid")

		By("the manager's own namespace")
		expectForbidden(custos.Delete(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: managerNamespace}}), "is not one")

		tenantNS := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "secr-tenant",
			Labels:      map[string]string{custosv1alpha1.LabelTenant: "clinic"},
			Annotations: map[string]string{"custos.io/tenant-uid": "0b6f3c2e-0000-4000-8000-000000000000"}}}
		Expect(k8s.Create(ctx, tenantNS)).To(Succeed())
		Expect(custos.Delete(ctx, tenantNS)).To(Succeed())
	})

	It("refuses scaling a Deployment and writing a Secret outside the tenant namespaces and its own", func(ctx SpecContext) {
		other := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "secr-apps"}}
		tenant := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "secr-apps-tenant", Labels: map[string]string{custosv1alpha1.LabelTenant: "clinic"}}}
		for _, ns := range []*corev1.Namespace{other, tenant} {
			ensureObject(ctx, ns)
		}
		deployment := func(ns string) *appsv1.Deployment {
			labels := map[string]string{"app": "web"}
			return &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns}, Spec: appsv1.DeploymentSpec{
				Replicas: ptr.To[int32](2), Selector: &metav1.LabelSelector{MatchLabels: labels},
				Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels},
					Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "nginx"}}}}}}
		}
		scaleToZero := func(ctx context.Context, d *appsv1.Deployment) error {
			patch := client.MergeFrom(d.DeepCopy())
			d.Spec.Replicas = ptr.To[int32](0)
			return custos.Patch(ctx, d, patch)
		}
		foreign := deployment(other.Name)
		Expect(k8s.Create(ctx, foreign)).To(Succeed())
		expectForbidden(scaleToZero(ctx, foreign), "custos may change deployments only in the tenant namespaces it provisioned")
		Expect(k8s.Get(ctx, keyOf(foreign), foreign)).To(Succeed())
		Expect(*foreign.Spec.Replicas).To(Equal(int32(2)))

		owned := deployment(tenant.Name)
		Expect(k8s.Create(ctx, owned)).To(Succeed())
		Expect(scaleToZero(ctx, owned)).To(Succeed())

		secret := func(ns string) *corev1.Secret {
			return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "secr-written", Namespace: ns}, StringData: map[string]string{"k": "v"}}
		}
		expectForbidden(custos.Create(ctx, secret(other.Name)), "and in its own namespace custos-system: namespace secr-apps is neither")
		Expect(custos.Create(ctx, secret(tenant.Name))).To(Succeed())
		Expect(custos.Create(ctx, secret(managerNamespace))).To(Succeed())
	})
})
