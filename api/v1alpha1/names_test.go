package v1alpha1

import (
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The names are stored in clusters and on certificates: these values are what earlier versions wrote.
var _ = Describe("names of what custos makes for a tenant", func() {
	t := &Tenant{ObjectMeta: metav1.ObjectMeta{Name: "kliniek-noord", UID: "dfa21dc0-1234-4abc-8def-000000000000"}}
	It("keeps the values earlier versions wrote", func() {
		Expect(t.MasterSecretName()).To(Equal("custos-db-kliniek-noord"))
		Expect(t.RepoKeySecretName()).To(Equal("custos-repo-kliniek-noord"))
		Expect(t.CertificateName()).To(Equal("kliniek-noord-dfa21dc0"))
		Expect(t.RepositoryName()).To(Equal("kliniek-noord-dfa21dc0"))
		Expect(t.AuditPrefix()).To(Equal("custos-audit-kliniek-noord-dfa21dc0"))
		Expect(t.ManagedLabels()).To(Equal(map[string]string{"custos.io/tenant": "kliniek-noord", "app.kubernetes.io/managed-by": "custos"}))
	})
	It("places the bag at <delivery>/<name>.tar until the artefact records where it is", func() {
		de := &DataExport{ObjectMeta: metav1.ObjectMeta{Name: "kliniek-noord-exit"},
			Spec: DataExportSpec{Delivery: ExportDelivery{Filesystem: FilesystemDelivery{Path: "/exports"}}}}
		Expect(de.BagPath()).To(Equal("/exports/kliniek-noord-exit.tar"))
		Expect(de.ArtefactPath()).To(Equal("/exports/kliniek-noord-exit.tar"))
		de.Status.Artefact = &ExportArtefact{Location: "/elsewhere/x.tar"}
		Expect(de.ArtefactPath()).To(Equal("/elsewhere/x.tar"))
	})
	It("is disposing once the repositories' destruction started", func() {
		Expect(t.Disposing()).To(BeFalse())
		d := &Tenant{Status: TenantStatus{Phase: TenantDestroyed}}
		Expect(d.Disposing()).To(BeTrue())
	})
})
