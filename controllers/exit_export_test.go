package controllers

import (
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	custosv1alpha1 "github.com/custos-io/custos/api/v1alpha1"
)

// Which DataExport the exit accepts as its own, and the grace period it reads, as pure functions of the objects.
var _ = Describe("Exit export binding", func() {
	terminated := time.Date(2026, 4, 1, 10, 0, 0, 0, time.UTC)
	tenant := func() *custosv1alpha1.Tenant {
		return &custosv1alpha1.Tenant{ObjectMeta: metav1.ObjectMeta{Name: "kliniek", UID: "uid-now"},
			Status: custosv1alpha1.TenantStatus{Exit: &custosv1alpha1.TenantExitStatus{TerminatedAt: ptrTime(terminated)}}}
	}
	// own is the export the exit makes: bound by UID and terminatedAt, made after the exit began, with everything.
	own := func() *custosv1alpha1.DataExport {
		return &custosv1alpha1.DataExport{ObjectMeta: metav1.ObjectMeta{Name: exitExportName(tenant()), CreationTimestamp: metav1.NewTime(terminated.Add(time.Second)),
			Annotations: map[string]string{custosv1alpha1.AnnotationTenantUID: "uid-now", annotationExitTerminatedAt: terminated.Format(time.RFC3339)}},
			Spec: custosv1alpha1.DataExportSpec{TenantRef: custosv1alpha1.ObjectReference{Name: "kliniek"},
				Include: custosv1alpha1.ExportInclude{Database: true, KubernetesObjects: true}}}
	}

	It("names the exit's export for the moment the exit began", func() {
		Expect(exitExportName(tenant())).To(Equal("kliniek-exit-20260401-100000"))
	})

	DescribeTable("refuses what is not this exit's export, and says why",
		func(mutate func(de *custosv1alpha1.DataExport), why string) {
			de := own()
			Expect(exitExportProblem(de, tenant())).To(BeEmpty())
			mutate(de)
			Expect(exitExportProblem(de, tenant())).To(ContainSubstring(why))
		},
		Entry("another tenant's", func(de *custosv1alpha1.DataExport) { de.Spec.TenantRef.Name = "other" }, "it exports tenant other"),
		Entry("made by hand (no UID annotation)", func(de *custosv1alpha1.DataExport) { delete(de.Annotations, custosv1alpha1.AnnotationTenantUID) }, "no custos.io/tenant-uid annotation"),
		Entry("an earlier tenant of the same name", func(de *custosv1alpha1.DataExport) { de.Annotations[custosv1alpha1.AnnotationTenantUID] = "uid-before" }, "made for tenant uid uid-before"),
		Entry("an earlier (cancelled) exit", func(de *custosv1alpha1.DataExport) {
			de.Annotations[annotationExitTerminatedAt] = terminated.Add(-48 * time.Hour).Format(time.RFC3339)
		}, "an exit that began at 2026-03-30T10:00:00Z"),
		Entry("created before the exit began", func(de *custosv1alpha1.DataExport) { de.CreationTimestamp = metav1.NewTime(terminated.Add(-time.Hour)) }, "before this exit began"),
		Entry("without the database", func(de *custosv1alpha1.DataExport) { de.Spec.Include.Database = false }, "holds no copy of the database"),
		Entry("without the Kubernetes objects", func(de *custosv1alpha1.DataExport) { de.Spec.Include.KubernetesObjects = false }, "include.kubernetesObjects is false"),
	)

	DescribeTable("the grace period never shorter than the default by mistake",
		func(p *custosv1alpha1.RetentionPolicy, want time.Duration) {
			Expect(exitGracePeriod(p)).To(Equal(want))
		},
		Entry("no policy", nil, 72*time.Hour),
		Entry("not set", &custosv1alpha1.RetentionPolicy{}, 72*time.Hour),
		Entry("unreadable", &custosv1alpha1.RetentionPolicy{Spec: custosv1alpha1.RetentionPolicySpec{ExitGracePeriod: "soon"}}, 72*time.Hour),
		Entry("set", &custosv1alpha1.RetentionPolicy{Spec: custosv1alpha1.RetentionPolicySpec{ExitGracePeriod: "24h"}}, 24*time.Hour),
		Entry("turned off", &custosv1alpha1.RetentionPolicy{Spec: custosv1alpha1.RetentionPolicySpec{ExitGracePeriod: "0s"}}, time.Duration(0)),
	)
})
