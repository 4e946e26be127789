package cluster

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	custosv1alpha1 "github.com/custos-io/custos/api/v1alpha1"
)

const receivedBy = "custos e2e/cluster"

var _ = Describe("A tenant's whole life on a real cluster", Label("cluster"), Ordered, func() {
	var (
		tenant *custosv1alpha1.Tenant
		name   string
		end    time.Time
	)

	get := func(ctx context.Context) *custosv1alpha1.Tenant {
		GinkgoHelper()
		t := &custosv1alpha1.Tenant{}
		Expect(k8s.Get(ctx, client.ObjectKey{Name: name}, t)).To(Succeed())
		return t
	}
	BeforeAll(func(ctx SpecContext) {
		name = "custos-e2e-" + time.Now().UTC().Format("0102-1504") + "-" + randomSuffix()
		end = time.Now().Add(cfg.contractEndAfter).Truncate(time.Second)
		tenant = e2eTenant(name, "lifecycle")
		tenant.Spec.Contract.End = &metav1.Time{Time: end}
		tenant.Spec.Namespaces.Count = ptr.To[int32](2)
		tenant.Spec.Quota.Hard = corev1.ResourceList{corev1.ResourcePods: mustQuantity("10")}
		tenant.Spec.Exit = custosv1alpha1.TenantExit{DataReturn: cfg.dataReturn, Backups: cfg.backups}
		By(fmt.Sprintf("creating Tenant %s: DatabaseServer %s, RetentionPolicy %s, contract end %s (in %s), exit %s + %s",
			name, cfg.server, cfg.policy, end.UTC().Format(time.RFC3339), cfg.contractEndAfter, cfg.dataReturn, cfg.backups))
		Expect(k8s.Create(ctx, tenant)).To(Succeed())

		// On a failure: the Tenant goes only if its exit has not started and the deletion guard lets it (a
		// provisioned tenant cannot be deleted before it is Destroyed); otherwise it stays, with what to do.
		DeferCleanup(func(ctx SpecContext) {
			t := &custosv1alpha1.Tenant{}
			if err := k8s.Get(ctx, client.ObjectKey{Name: name}, t); err != nil {
				return
			}
			if t.Status.Phase == custosv1alpha1.TenantDestroyed {
				GinkgoWriter.Printf("Tenant %s is Destroyed; deleting it (its DestructionCertificate %s stays)\n", name, certName(t))
				_ = k8s.Delete(ctx, t)
				return
			}
			if t.Status.Exit != nil || (t.Spec.Contract.End != nil && !time.Now().Before(t.Spec.Contract.End.Time)) {
				GinkgoWriter.Printf("Tenant %s is left as it is: its exit has started (phase %s). custos finishes it; delete the Tenant once it is Destroyed: kubectl delete tenant %s\n", name, t.Status.Phase, name)
				return
			}
			// custos holds no finalizer on a Tenant: one whose provisioning has begun is left for its exit to clean up.
			var nss corev1.NamespaceList
			if err := k8s.List(ctx, &nss, client.MatchingLabels{"custos.io/tenant": name}); err != nil || len(nss.Items) > 0 || t.Status.Database != nil {
				GinkgoWriter.Printf("Tenant %s is left as it is: its provisioning has begun (namespaces %d, database %v). Its contract end %s starts its exit; delete it once it is Destroyed.\n",
					name, len(nss.Items), t.Status.Database != nil, t.Spec.Contract.End.UTC().Format(time.RFC3339))
				return
			}
			if err := k8s.Delete(ctx, t); err != nil {
				GinkgoWriter.Printf("Tenant %s could not be deleted (%v).\nIt keeps its contract end %s: custos then exports or destroys its (test) data and the Tenant can be deleted once Destroyed; or set spec.contract.end now.\n",
					name, err, t.Spec.Contract.End.UTC().Format(time.RFC3339))
				return
			}
			GinkgoWriter.Printf("deleted Tenant %s (its exit had not started)\n", name)
		}, NodeTimeout(2*time.Minute))
	}, NodeTimeout(2*time.Minute))

	It("provisions it: namespaces, quota, network policies, database, credentials Secret", func(ctx SpecContext) {
		By("waiting for the Tenant to be Active and Ready (CUSTOS_E2E_PROVISION_TIMEOUT " + cfg.provisionTimeout.String() + ")")
		var t *custosv1alpha1.Tenant
		Eventually(func(g Gomega) {
			t = &custosv1alpha1.Tenant{}
			g.Expect(k8s.Get(ctx, client.ObjectKey{Name: name}, t)).To(Succeed())
			g.Expect(t.Status.Phase).NotTo(Equal(custosv1alpha1.TenantFailed), describe(t))
			g.Expect(t.Status.Phase).To(Equal(custosv1alpha1.TenantActive), describe(t))
			g.Expect(meta.IsStatusConditionTrue(t.Status.Conditions, custosv1alpha1.ConditionReady)).To(BeTrue(), describe(t))
		}).WithContext(ctx).WithTimeout(cfg.provisionTimeout).WithPolling(2 * time.Second).Should(Succeed())

		Expect(t.Status.Database).NotTo(BeNil())
		By(fmt.Sprintf("checking namespaces %v, database %s (OID %d)", t.NamespaceNames(), t.DatabaseName(), t.Status.Database.OID))
		for _, ns := range t.NamespaceNames() {
			var n corev1.Namespace
			Expect(k8s.Get(ctx, client.ObjectKey{Name: ns}, &n)).To(Succeed())
			Expect(n.Labels).To(HaveKeyWithValue("custos.io/tenant", name))
			var quotas corev1.ResourceQuotaList
			Expect(k8s.List(ctx, &quotas, client.InNamespace(ns))).To(Succeed())
			Expect(quotas.Items).NotTo(BeEmpty(), "no ResourceQuota in %s", ns)
			var nps networkingv1.NetworkPolicyList
			Expect(k8s.List(ctx, &nps, client.InNamespace(ns))).To(Succeed())
			var npNames []string
			for _, np := range nps.Items {
				npNames = append(npNames, np.Name)
			}
			Expect(npNames).To(ContainElement("custos-default-deny"), "network policies in %s", ns)
			var secret corev1.Secret
			Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "custos-database"}, &secret)).To(Succeed(), "the credentials Secret in %s", ns)
			Expect(secret.Data).To(HaveKey("password"))
			GinkgoWriter.Printf("namespace %s: quota, network policies %v, Secret custos-database\n", ns, npNames)
		}
		Expect(t.Status.Database.OID).NotTo(BeZero())
	})

	It("takes the first snapshot and copies it offsite", func(ctx SpecContext) {
		var policy custosv1alpha1.RetentionPolicy
		Expect(k8s.Get(ctx, client.ObjectKey{Name: cfg.policy}, &policy)).To(Succeed())
		By(fmt.Sprintf("waiting for a snapshot in every location and BackupsHealthy=True (copy schedule %q; CUSTOS_E2E_BACKUP_TIMEOUT %s)", policy.Spec.CopySchedule.Cron, cfg.backupTimeout))
		var t *custosv1alpha1.Tenant
		Eventually(func(g Gomega) {
			t = &custosv1alpha1.Tenant{}
			g.Expect(k8s.Get(ctx, client.ObjectKey{Name: name}, t)).To(Succeed())
			g.Expect(t.Status.Phase).To(Equal(custosv1alpha1.TenantActive),
				"the contract ended before the first snapshot and copy: raise CUSTOS_E2E_CONTRACT_END_AFTER (now %s); %s", cfg.contractEndAfter, describe(t))
			g.Expect(t.Status.Backups).NotTo(BeEmpty(), describe(t))
			for _, lb := range t.Status.Backups {
				g.Expect(lb.Snapshots).To(BeNumerically(">", 0), "no snapshot yet at %s (%s); %s", lb.Location, lb.Role, describe(t))
			}
			g.Expect(meta.IsStatusConditionTrue(t.Status.Conditions, custosv1alpha1.ConditionBackupsHealthy)).To(BeTrue(), describe(t))
		}).WithContext(ctx).WithTimeout(cfg.backupTimeout).WithPolling(5 * time.Second).Should(Succeed())
		want := 1
		if policy.Spec.Offsite != nil {
			want = 2
		}
		Expect(t.Status.Backups).To(HaveLen(want), "a repository per location of RetentionPolicy %s", cfg.policy)
		for _, lb := range t.Status.Backups {
			GinkgoWriter.Printf("%-10s %-20s repository %s, %d snapshot(s), newest %s\n", lb.Role, lb.Location, lb.RepositoryID, lb.Snapshots, lb.Newest)
		}
	})

	It("ends the contract: suspension, then "+exitWord(), func(ctx SpecContext) {
		By("waiting for the contract end " + end.UTC().Format(time.RFC3339) + " and the exit to start")
		Eventually(func(g Gomega) {
			t := &custosv1alpha1.Tenant{}
			g.Expect(k8s.Get(ctx, client.ObjectKey{Name: name}, t)).To(Succeed())
			g.Expect(t.Status.Exit).NotTo(BeNil(), describe(t))
			g.Expect(t.Status.Exit.TerminatedAt).NotTo(BeNil(), describe(t))
		}).WithContext(ctx).WithTimeout(time.Until(end) + cfg.exitTimeout).WithPolling(5 * time.Second).Should(Succeed())

		if cfg.dataReturn == custosv1alpha1.DataReturnNone {
			By("exit.dataReturn None: no export, nothing to acknowledge")
			t := get(ctx)
			Expect(t.Status.Exit.ExportRef).To(BeNil(), "the exit made DataExport %v although exit.dataReturn is None", t.Status.Exit.ExportRef)
			return
		}
		de := &custosv1alpha1.DataExport{}
		By("waiting for the exit's DataExport (status.exit.exportRef) to be Ready with a digest")
		Eventually(func(g Gomega) {
			t := get(ctx)
			g.Expect(t.Status.Exit.ExportRef).NotTo(BeNil(), describe(t))
			g.Expect(k8s.Get(ctx, client.ObjectKey{Name: t.Status.Exit.ExportRef.Name}, de)).To(Succeed())
			msg := ""
			if c := meta.FindStatusCondition(de.Status.Conditions, custosv1alpha1.ConditionReady); c != nil {
				msg = c.Reason + ": " + c.Message
			}
			g.Expect(de.Status.Phase).NotTo(Equal(custosv1alpha1.ExportFailed), "DataExport %s failed: %s", de.Name, msg)
			g.Expect(de.Status.Phase).To(Equal(custosv1alpha1.ExportReady), "DataExport %s phase %q %s", de.Name, de.Status.Phase, msg)
			g.Expect(de.Status.Artefact).NotTo(BeNil())
			g.Expect(de.Status.Artefact.SHA256).To(MatchRegexp(`^[a-f0-9]{64}$`))
		}).WithContext(ctx).WithTimeout(cfg.exitTimeout).WithPolling(3 * time.Second).Should(Succeed())
		art := de.Status.Artefact
		GinkgoWriter.Printf("DataExport %s Ready: %s, %d bytes, sha256 %s\n", de.Name, art.Location, art.Bytes, art.SHA256)

		if cfg.exportDir != "" {
			By("fetching and verifying the bag from CUSTOS_E2E_EXPORT_DIR=" + cfg.exportDir + " with custos export fetch, which writes the receipt")
			out, err := run(ctx, "export", "fetch", de.Name, "--to", ".", "--from", cfg.exportDir, "--received-by", receivedBy)
			Expect(err).NotTo(HaveOccurred(), "custos export fetch:\n%s", out)
			Expect(filepath.Join(workDir, filepath.Base(art.Location))).To(BeAnExistingFile())
		} else {
			By("CUSTOS_E2E_EXPORT_DIR is not set, so the bag is not fetched here: writing spec.receipt from the sha256 in status (the bag itself is not verified)")
			Expect(retry.RetryOnConflict(retry.DefaultRetry, func() error {
				if err := k8s.Get(ctx, client.ObjectKey{Name: de.Name}, de); err != nil {
					return err
				}
				de.Spec.Receipt = &custosv1alpha1.ExportReceipt{SHA256: de.Status.Artefact.SHA256, ReceivedBy: receivedBy + " (receipt from status, bag not fetched)"}
				return k8s.Update(ctx, de)
			})).To(Succeed())
		}
		By("waiting for the DataExport to be Acknowledged")
		Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx, client.ObjectKey{Name: de.Name}, de)).To(Succeed())
			g.Expect(de.Status.Phase).To(Equal(custosv1alpha1.ExportAcknowledged), "DataExport %s phase %q", de.Name, de.Status.Phase)
		}).WithContext(ctx).WithTimeout(cfg.exitTimeout).WithPolling(3 * time.Second).Should(Succeed())
	})

	It("purges the live data, disposes of the backups ("+envOr("CUSTOS_E2E_BACKUPS", "Shred")+") and is Destroyed", func(ctx SpecContext) {
		By("waiting for the purge (LiveDataPurged)")
		Eventually(func(g Gomega) {
			t := get(ctx)
			g.Expect(t.Status.Exit).NotTo(BeNil())
			g.Expect(t.Status.Exit.LiveDataPurgedAt).NotTo(BeNil(), describe(t))
		}).WithContext(ctx).WithTimeout(cfg.exitTimeout).WithPolling(3 * time.Second).Should(Succeed())
		t := get(ctx)
		for _, ns := range t.NamespaceNames() {
			err := k8s.Get(ctx, client.ObjectKey{Name: ns}, &corev1.Namespace{})
			Expect(apierrors.IsNotFound(err)).To(BeTrue(), "namespace %s is still there after the purge (%v)", ns, err)
		}
		By(fmt.Sprintf("waiting for the backups to be disposed of (%s) and the Tenant Destroyed (CUSTOS_E2E_DISPOSAL_TIMEOUT %s)", cfg.backups, cfg.disposalTimeout))
		Eventually(func(g Gomega) {
			t = get(ctx)
			g.Expect(t.Status.Phase).NotTo(Equal(custosv1alpha1.TenantFailed), describe(t))
			g.Expect(t.Status.Phase).To(Equal(custosv1alpha1.TenantDestroyed), describe(t))
		}).WithContext(ctx).WithTimeout(cfg.disposalTimeout).WithPolling(5 * time.Second).Should(Succeed())
		Expect(meta.IsStatusConditionTrue(t.Status.Conditions, custosv1alpha1.ConditionBackupsExpired)).To(BeTrue(), describe(t))
		for _, l := range t.Status.Exit.Destroyed {
			GinkgoWriter.Printf("destroyed %-10s %-50s %s\n", l.Kind, l.Name, l.Method)
		}
		for _, secret := range []string{"custos-db-" + name, "custos-repo-" + name} {
			err := k8s.Get(ctx, client.ObjectKey{Namespace: cfg.namespace, Name: secret}, &corev1.Secret{})
			Expect(apierrors.IsNotFound(err)).To(BeTrue(), "Secret %s/%s is still there (%v)", cfg.namespace, secret, err)
		}
	})

	It("issues a DestructionCertificate that custos verify accepts with the key published in the cluster", func(ctx SpecContext) {
		t := get(ctx)
		Expect(t.Status.Exit.CertificateRef).NotTo(BeNil(), "the Destroyed tenant names no certificate")
		cert := &custosv1alpha1.DestructionCertificate{}
		By("reading DestructionCertificate " + t.Status.Exit.CertificateRef.Name)
		Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx, client.ObjectKey{Name: t.Status.Exit.CertificateRef.Name}, cert)).To(Succeed())
			g.Expect(meta.IsStatusConditionTrue(cert.Status.Conditions, custosv1alpha1.ConditionVerified)).To(BeTrue(), "condition Verified: %v", cert.Status.Conditions)
		}).WithContext(ctx).WithTimeout(2 * time.Minute).WithPolling(2 * time.Second).Should(Succeed())

		By("writing it to a file, and the published public key with custos pubkey --cluster --namespace " + cfg.namespace)
		cert.ManagedFields = nil
		cert.APIVersion, cert.Kind = custosv1alpha1.GroupVersion.String(), "DestructionCertificate"
		certFile := filepath.Join(workDir, cert.Name+".yaml")
		Expect(os.WriteFile(certFile, mustYAML(cert), 0o600)).To(Succeed())
		out, err := run(ctx, "pubkey", "--cluster", "--namespace", cfg.namespace)
		Expect(err).NotTo(HaveOccurred(), "custos pubkey --cluster:\n%s", out)
		keyFile := filepath.Join(workDir, "processor.pub.pem")
		Expect(os.WriteFile(keyFile, []byte(out), 0o600)).To(Succeed())

		args := []string{"verify", filepath.Base(certFile), "--key", filepath.Base(keyFile)}
		if cfg.exportDir != "" && t.Status.Exit.ExportRef != nil {
			var de custosv1alpha1.DataExport
			Expect(k8s.Get(ctx, client.ObjectKey{Name: t.Status.Exit.ExportRef.Name}, &de)).To(Succeed())
			args = append(args, "--artefact", filepath.Base(de.Status.Artefact.Location))
		}
		By("custos " + strings.Join(args, " "))
		out, err = run(ctx, args...)
		Expect(err).NotTo(HaveOccurred(), "custos verify:\n%s", out)
		Expect(out).To(ContainSubstring("VERIFIED"))
		Expect(out).To(ContainSubstring(name))
	})
})

func certName(t *custosv1alpha1.Tenant) string {
	if t.Status.Exit != nil && t.Status.Exit.CertificateRef != nil {
		return t.Status.Exit.CertificateRef.Name
	}
	return "-"
}

func exitWord() string {
	if envOr("CUSTOS_E2E_DATA_RETURN", "Export") == string(custosv1alpha1.DataReturnNone) {
		return "no export (dataReturn None)"
	}
	return "the export and its receipt"
}
