package controllers

import (
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	custosv1alpha1 "github.com/custos-io/custos/api/v1alpha1"
	"github.com/custos-io/custos/internal/storage"
)

var _ = Describe("Shred intent", func() {
	now := time.Date(2026, 4, 1, 10, 0, 0, 0, time.UTC)
	tenant := func() *custosv1alpha1.Tenant {
		return &custosv1alpha1.Tenant{Status: custosv1alpha1.TenantStatus{
			Backups: []custosv1alpha1.LocationBackupStatus{{Location: "ams", RepositoryID: "3f2a9c77", Snapshots: 14}},
			Exit:    &custosv1alpha1.TenantExitStatus{}}}
	}

	It("records the repository the backups saw before the Shred, and names it when the re-run finds nothing left", func() {
		t := tenant()
		Expect(shredIntentOf(t, "ams")).To(BeNil())
		recordShredIntent(t, "ams", now)
		in := shredIntentOf(t, "ams")
		Expect(in).To(HaveValue(Equal(custosv1alpha1.ShredIntent{Location: "ams", RepositoryID: "3f2a9c77", Snapshots: 14, RecordedAt: metav1.NewTime(now)})))

		By("the first Shred destroyed the repository and its outcome was lost; the re-run opens nothing")
		rerun := storage.Report{Repository: "rest:https://backup.example/clinic-0b6f3c2e"}
		id := shredRepositoryID(in, rerun)
		Expect(id).To(HavePrefix("3f2a9c77 "))
		Expect(id).To(ContainSubstring("recorded before the Shred at 2026-04-01T10:00:00Z with 14 snapshot(s)"))
		Expect(id).NotTo(ContainSubstring("no repository existed"))
	})

	It("names what the Shred opened, and says none only when no backup ever reached the location", func() {
		t := tenant()
		recordShredIntent(t, "ams", now)
		Expect(shredRepositoryID(shredIntentOf(t, "ams"), storage.Report{RepositoryID: "3f2a9c77"})).To(Equal("3f2a9c77"))
		recordShredIntent(t, "fra", now)
		Expect(shredRepositoryID(shredIntentOf(t, "fra"), storage.Report{})).To(Equal("none (no repository existed)"))
		Expect(shredRepositoryID(nil, storage.Report{})).To(Equal("none (no repository existed)"))
	})
})
