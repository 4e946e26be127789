package controllers

import (
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	custosv1alpha1 "github.com/custos-io/custos/api/v1alpha1"
)

var _ = Describe("patchStatus", func() {
	var (
		c    client.Client
		orig *custosv1alpha1.Tenant
	)
	BeforeEach(func(ctx SpecContext) {
		scheme := runtime.NewScheme()
		Expect(custosv1alpha1.AddToScheme(scheme)).To(Succeed())
		orig = &custosv1alpha1.Tenant{ObjectMeta: metav1.ObjectMeta{Name: "kliniek"}}
		c = fake.NewClientBuilder().WithScheme(scheme).WithObjects(orig).WithStatusSubresource(orig).Build()
		Expect(c.Get(ctx, client.ObjectKeyFromObject(orig), orig)).To(Succeed())
	})
	// another writes a field of its own (another controller) after this reconcile read the tenant.
	another := func(ctx SpecContext) {
		var t custosv1alpha1.Tenant
		Expect(c.Get(ctx, client.ObjectKeyFromObject(orig), &t)).To(Succeed())
		t.Status.AuditLength = 7
		Expect(c.Status().Update(ctx, &t)).To(Succeed())
	}
	read := func(ctx SpecContext) *custosv1alpha1.Tenant {
		var t custosv1alpha1.Tenant
		Expect(c.Get(ctx, client.ObjectKeyFromObject(orig), &t)).To(Succeed())
		return &t
	}

	It("writes nothing when the status did not change", func(ctx SpecContext) {
		base, t := orig.DeepCopy(), orig.DeepCopy()
		t.Labels = map[string]string{"only": "metadata"}
		another(ctx) // would make any write conflict
		Expect(patchStatus(ctx, c, c, base, t, nil)).To(Succeed())
	})

	It("writes a changed status", func(ctx SpecContext) {
		base, t := orig.DeepCopy(), orig.DeepCopy()
		t.Status.Phase = custosv1alpha1.TenantActive
		Expect(patchStatus(ctx, c, c, base, t, nil)).To(Succeed())
		Expect(read(ctx).Status.Phase).To(Equal(custosv1alpha1.TenantActive))
	})

	It("never overwrites a status written meanwhile: without reapply the conflict is returned", func(ctx SpecContext) {
		base, t := orig.DeepCopy(), orig.DeepCopy()
		t.Status.Phase = custosv1alpha1.TenantActive
		another(ctx)
		err := patchStatus(ctx, c, c, base, t, nil)
		Expect(apierrors.IsConflict(err)).To(BeTrue(), "got %v", err)
		Expect(read(ctx).Status.AuditLength).To(Equal(int64(7)))
		Expect(read(ctx).Status.Phase).To(BeEmpty())
	})

	It("with reapply, writes its own fields onto the fresh object and keeps the other's", func(ctx SpecContext) {
		base, t := orig.DeepCopy(), orig.DeepCopy()
		t.Status.Phase = custosv1alpha1.TenantActive
		t.Status.AuditLength = 1 // not this controller's field: reapply does not copy it
		another(ctx)
		Expect(patchStatus(ctx, c, c, base, t, func(fresh, mine *custosv1alpha1.Tenant) { fresh.Status.Phase = mine.Status.Phase })).To(Succeed())
		got := read(ctx)
		Expect(got.Status.Phase).To(Equal(custosv1alpha1.TenantActive))
		Expect(got.Status.AuditLength).To(Equal(int64(7)))
		Expect(t.Status.AuditLength).To(Equal(int64(7)), "obj holds what was written")
	})

	It("is not an error for an object deleted meanwhile", func(ctx SpecContext) {
		base, t := orig.DeepCopy(), orig.DeepCopy()
		t.Status.Phase = custosv1alpha1.TenantActive
		Expect(c.Delete(ctx, orig.DeepCopy())).To(Succeed())
		Expect(patchStatus(ctx, c, c, base, t, nil)).To(Succeed())
	})
})
