package local

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	custosv1alpha1 "github.com/custos-io/custos/api/v1alpha1"
	"github.com/custos-io/custos/controllers"
	"github.com/custos-io/custos/internal/evidence"
	"github.com/custos-io/custos/internal/export"
	"github.com/custos-io/custos/internal/restic"
	"github.com/custos-io/custos/internal/signing"
	"github.com/custos-io/custos/internal/testharness"
)

// finalizeNamespaces plays the namespace controller envtest does not run: a namespace being deleted loses its
// "kubernetes" finalizer, so it goes away as it would in a cluster once its content is deleted.
func finalizeNamespaces(ctx context.Context) {
	for ctx.Err() == nil {
		var list corev1.NamespaceList
		if err := k8s.List(ctx, &list); err == nil {
			for i := range list.Items {
				ns := &list.Items[i]
				if ns.DeletionTimestamp != nil && len(ns.Spec.Finalizers) > 0 {
					ns.Spec.Finalizers = nil
					_ = k8s.SubResource("finalize").Update(ctx, ns)
				}
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(500 * time.Millisecond):
		}
	}
}

var _ = Describe("Exit", Ordered, Label("integration", "exit"), func() {
	const (
		primaryName = "exit-primary"
		offsiteName = "exit-offsite"
		shredPolicy = "exit-shred"
		shortPolicy = "exit-short"
		ackPolicy   = "exit-ack"
		exitServer  = "exit-pg"
	)
	var (
		mgr        *runningManager
		offsiteSrv *testharness.RestServer
		primaryDir string
		exportDir  string
	)

	BeforeAll(func(ctx SpecContext) {
		var err error
		offsiteSrv, err = testharness.StartRestServer(ctx)
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(offsiteSrv.Stop)
		primaryDir = filepath.Join(GinkgoT().TempDir(), "primary")
		exportDir = filepath.Join(GinkgoT().TempDir(), "exports")
		Expect(os.MkdirAll(exportDir, 0o700)).To(Succeed())
		nsCtx, stopNS := context.WithCancel(context.Background())
		go finalizeNamespaces(nsCtx)
		DeferCleanup(stopNS)
		mgr = startManager(func(o *controllers.Options) { o.ExportDir = exportDir })
		DeferCleanup(func() { mgr.stop() })

		ensureObject(ctx, &custosv1alpha1.BackupLocation{ObjectMeta: metav1.ObjectMeta{Name: primaryName},
			Spec: custosv1alpha1.BackupLocationSpec{URL: primaryDir, Jurisdiction: "NL"}})
		ensureObject(ctx, &custosv1alpha1.BackupLocation{ObjectMeta: metav1.ObjectMeta{Name: offsiteName},
			Spec: custosv1alpha1.BackupLocationSpec{URL: offsiteSrv.URL, Jurisdiction: "DE"}})
		every := custosv1alpha1.Schedule{Cron: "* * * * *", TimeZone: "UTC"}
		for name, keep := range map[string]custosv1alpha1.Duration{shredPolicy: "30d", shortPolicy: "24h", ackPolicy: "30d"} {
			// No grace period (these specs are about the steps after it) and a bag that lives 20s after its receipt
			// (45s under shredPolicy, whose spec keeps it through a wrong receipt first): the certificate is signed
			// once it is gone.
			p := &custosv1alpha1.RetentionPolicy{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: custosv1alpha1.RetentionPolicySpec{
				Primary: custosv1alpha1.ObjectReference{Name: primaryName}, Offsite: &custosv1alpha1.ObjectReference{Name: offsiteName},
				Schedule: every, CopySchedule: every, ExpirySchedule: every, KeepWithin: keep, MaxSnapshotAge: "26h",
				AllowedJurisdictions: []custosv1alpha1.JurisdictionSelector{"EEA"}, ExitGracePeriod: "0s",
				Export: custosv1alpha1.ExportPolicy{ExpireAfterDelivery: "20s"},
			}}
			if name == shredPolicy {
				p.Spec.Export.ExpireAfterDelivery = "45s"
			}
			if name == ackPolicy {
				p.Spec.Export = custosv1alpha1.ExportPolicy{ExpireAfterDelivery: "20s", AcknowledgeTimeout: "15s"}
			}
			ensureObject(ctx, p)
		}
		databaseServerFor(ctx, exitServer, pg, "NL")
	})

	// activeTenant makes a tenant with data and waits until both locations hold a snapshot.
	activeTenant := func(ctx context.Context, prefix, policy string, exit custosv1alpha1.TenantExit) *custosv1alpha1.Tenant {
		GinkgoHelper()
		t := newTenant(prefix)
		t.Spec.RetentionPolicyRef.Name = policy
		t.Spec.Database.ServerRef.Name = exitServer
		t.Spec.Exit = exit
		Expect(k8s.Create(ctx, t)).To(Succeed())
		expectReady(ctx, t)
		conn, err := pgx.Connect(ctx, pg.URL(t.Status.Database.Name))
		Expect(err).NotTo(HaveOccurred())
		defer conn.Close(ctx)
		_, err = conn.Exec(ctx, `CREATE TABLE patients (id int PRIMARY KEY, name text, born date);
			INSERT INTO patients SELECT g, 'patiënt ' || g, date '1950-01-01' + g FROM generate_series(1, 200) g`)
		Expect(err).NotTo(HaveOccurred())
		Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx, keyOf(t), t)).To(Succeed())
			n := 0
			for _, lb := range t.Status.Backups {
				if lb.Snapshots > 0 && lb.RepositoryID != "" {
					n++
				}
			}
			g.Expect(n).To(Equal(2), "a snapshot in both locations")
		}).WithTimeout(3*time.Minute).WithPolling(2*time.Second).Should(Succeed(), func() string {
			b, _ := yaml.Marshal(t.Status)
			return "tenant status:\n" + string(b)
		})
		return t
	}
	endContract := func(ctx context.Context, t *custosv1alpha1.Tenant) {
		GinkgoHelper()
		updateSpec(ctx, t, func() { t.Spec.Contract.End = &metav1.Time{Time: time.Now().Add(-time.Second).Truncate(time.Second)} })
	}
	phase := func(ctx context.Context, t *custosv1alpha1.Tenant) func(Gomega) custosv1alpha1.TenantPhase {
		DeferCleanup(func() {
			if CurrentSpecReport().Failed() {
				b, _ := yaml.Marshal(t.Status)
				AddReportEntry("tenant status", string(b))
			}
		})
		return func(g Gomega) custosv1alpha1.TenantPhase {
			g.Expect(k8s.Get(ctx, keyOf(t), t)).To(Succeed())
			return t.Status.Phase
		}
	}
	repoURL := func(t *custosv1alpha1.Tenant, loc string) string {
		if loc == offsiteName {
			return offsiteSrv.URL + t.Name + "-" + string(t.UID)[:8]
		}
		return filepath.Join(primaryDir, t.Name+"-"+string(t.UID)[:8])
	}
	publicKey := func(ctx context.Context) []byte {
		GinkgoHelper()
		var cm corev1.ConfigMap
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: managerNamespace, Name: signing.DefaultName}, &cm)).To(Succeed())
		return []byte(cm.Data["public.pem"])
	}

	// expectDestroyed checks every place the tenant's data lived, the certificate and the audit trail.
	expectDestroyed := func(ctx context.Context, t *custosv1alpha1.Tenant, oid int64) *custosv1alpha1.DestructionCertificate {
		GinkgoHelper()
		By("finding no database with the tenant's name or OID, and no role")
		admin, err := pgx.Connect(ctx, pg.URL("postgres"))
		Expect(err).NotTo(HaveOccurred())
		defer admin.Close(ctx)
		var n int
		Expect(admin.QueryRow(ctx, "SELECT count(*) FROM pg_database WHERE datname = $1 OR oid = $2", t.DatabaseName(), oid).Scan(&n)).To(Succeed())
		Expect(n).To(BeZero())
		Expect(admin.QueryRow(ctx, "SELECT count(*) FROM pg_roles WHERE rolname = $1", t.DatabaseName()).Scan(&n)).To(Succeed())
		Expect(n).To(BeZero())

		By("finding no namespace and no Secret of the tenant")
		for _, ns := range t.NamespaceNames() {
			Expect(apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKey{Name: ns}, &corev1.Namespace{}))).To(BeTrue(), "namespace %s", ns)
		}
		for _, name := range []string{"custos-db-" + t.Name, "custos-repo-" + t.Name} {
			Expect(apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKey{Namespace: managerNamespace, Name: name}, &corev1.Secret{}))).To(BeTrue(), "Secret %s", name)
		}

		By("finding no repository at either location")
		for _, loc := range []string{primaryName, offsiteName} {
			_, err := (restic.Repository{Binary: programs.Restic, URL: repoURL(t, loc), Password: "any"}).ID(ctx)
			Expect(err).To(HaveOccurred(), loc)
			Expect(err.Error()).To(Or(ContainSubstring("does not exist"), ContainSubstring("exit code 10")), loc)
		}
		Expect(filepath.Join(primaryDir, t.Name+"-"+string(t.UID)[:8])).NotTo(BeADirectory())
		entries, err := os.ReadDir(filepath.Join(offsiteSrv.Dir, "data", t.Name+"-"+string(t.UID)[:8]))
		if err == nil {
			files := 0
			for _, e := range entries {
				if !e.IsDir() {
					files++
				}
			}
			Expect(files).To(BeZero())
		}

		By("verifying the certificate offline with the published key")
		cert := &custosv1alpha1.DestructionCertificate{}
		Expect(k8s.Get(ctx, client.ObjectKey{Name: t.Status.Exit.CertificateRef.Name}, cert)).To(Succeed())
		pub, err := evidence.ParsePublicKey(publicKey(ctx))
		Expect(err).NotTo(HaveOccurred())
		st, err := evidence.Verify(evidence.EnvelopeFromAPI(cert.Spec.Envelope), pub)
		Expect(err).NotTo(HaveOccurred())
		Expect(evidence.CheckComplete(st)).To(BeEmpty())
		Expect(evidence.CompareSpec(cert.Spec, st)).To(BeEmpty())
		kinds := map[string]int{}
		for _, l := range st.Predicate.Locations {
			kinds[l.Kind]++
			Expect(l.Verification.Result).To(Equal(evidence.ResultVerified))
		}
		Expect(kinds).To(Equal(map[string]int{"database": 2, "namespace": 2, "secret": 4, "repository": 2}),
			"database and role, 2 namespaces, master + 2 credentials + repository-key Secrets, 2 repositories")
		Expect(st.Predicate.Tenant.UID).To(Equal(string(t.UID)))
		Expect(st.Predicate.Processor.Name).To(Equal("e-Health Hosting B.V."))
		Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx, keyOf(cert), cert)).To(Succeed())
			g.Expect(cert.Status.Conditions).To(ContainElement(And(HaveField("Type", custosv1alpha1.ConditionVerified), HaveField("Status", metav1.ConditionTrue))))
		}).Should(Succeed(), "the manager checks its own certificate with the published key")

		By("verifying the audit trail against the head the certificate commits to")
		var cms corev1.ConfigMapList
		Expect(k8s.List(ctx, &cms, client.InNamespace(managerNamespace), client.MatchingLabels{"custos.io/audit-tenant": t.Name})).To(Succeed())
		Expect(cms.Items).To(HaveLen(1))
		chain, err := evidence.ParseLines([]byte(cms.Items[0].Data["entries.jsonl"]))
		Expect(err).NotTo(HaveOccurred())
		Expect(evidence.VerifyChain(chain)).To(Succeed())
		found := false
		for _, e := range chain {
			if e.Hash == st.Predicate.Audit.Head {
				found = true
			}
		}
		Expect(found).To(BeTrue(), "the certificate's audit head is an entry of the trail")
		Expect(chain[len(chain)-1].Action).To(Equal(evidence.ActionCertificateIssued))
		actions := map[evidence.Action]bool{}
		for _, e := range chain {
			actions[e.Action] = true
		}
		for _, a := range []evidence.Action{evidence.ActionProvisioned, evidence.ActionSnapshot, evidence.ActionCopy, evidence.ActionSuspended,
			evidence.ActionLiveDataPurged, evidence.ActionShredded, evidence.ActionBackupsExpired} {
			Expect(actions).To(HaveKey(a), "the trail records %s", a)
		}
		Eventually(func(g Gomega) string {
			g.Expect(k8s.Get(ctx, keyOf(t), t)).To(Succeed())
			return t.Status.AuditHead
		}).Should(Equal("sha256:"+chain[len(chain)-1].Hash), "status shows the trail's head")
		return cert
	}

	It("None + Shred: suspends, purges, destroys both repositories and their keys, and signs a certificate that verifies", func(ctx SpecContext) {
		t := activeTenant(ctx, "exit-ns", shredPolicy, custosv1alpha1.TenantExit{DataReturn: custosv1alpha1.DataReturnNone, Backups: custosv1alpha1.BackupDisposalShred})
		oid := t.Status.Database.OID
		creds := credentials(ctx, t.Name)
		endContract(ctx, t)
		Eventually(phase(ctx, t)).WithTimeout(3 * time.Minute).WithPolling(time.Second).Should(Equal(custosv1alpha1.TenantDestroyed))
		_, err := connectWith(ctx, creds, t.DatabaseName())
		Expect(err).To(HaveOccurred())
		cert := expectDestroyed(ctx, t, oid)
		Expect(t.Status.Exit.TerminatedAt).NotTo(BeNil())
		Expect(t.Status.Exit.LiveDataPurgedAt).NotTo(BeNil())
		Expect(t.Status.Exit.DestroyedAt).NotTo(BeNil())
		Expect(condOf(t, custosv1alpha1.ConditionCertificateIssued)).To(haveStatus(metav1.ConditionTrue, "Signed"))

		By("letting the destroyed Tenant be deleted; the certificate and the audit trail stay")
		Expect(k8s.Delete(ctx, t)).To(Succeed())
		Eventually(func() bool { return apierrors.IsNotFound(k8s.Get(ctx, keyOf(t), t)) }).Should(BeTrue())
		Expect(k8s.Get(ctx, keyOf(cert), cert)).To(Succeed())
		By("refusing any change to the certificate")
		cert.Spec.ContractID = "forged"
		Expect(k8s.Update(ctx, cert)).To(MatchError(ContainSubstring("immutable")))
	})

	It("Export + Shred: a bag that verifies, nothing destroyed on a wrong receipt, everything destroyed after the right one; an ad-hoc export expires", func(ctx SpecContext) {
		t := activeTenant(ctx, "exit-ex", shredPolicy, custosv1alpha1.TenantExit{DataReturn: custosv1alpha1.DataReturnExport, Backups: custosv1alpha1.BackupDisposalShred})
		oid := t.Status.Database.OID

		By("an ad-hoc export while the contract runs: written, acknowledged, deleted after its lifetime")
		adhoc := &custosv1alpha1.DataExport{ObjectMeta: metav1.ObjectMeta{Name: t.Name + "-adhoc"}, Spec: custosv1alpha1.DataExportSpec{
			TenantRef: custosv1alpha1.ObjectReference{Name: t.Name}, Include: custosv1alpha1.ExportInclude{Database: true, KubernetesObjects: true},
			Delivery:            custosv1alpha1.ExportDelivery{Filesystem: custosv1alpha1.FilesystemDelivery{Path: exportDir}},
			ExpireAfterDelivery: ptr.To(custosv1alpha1.Duration("5s"))}}
		Expect(k8s.Create(ctx, adhoc)).To(Succeed())
		Eventually(exportPhase(ctx, adhoc)).WithTimeout(time.Minute).Should(Equal(custosv1alpha1.ExportReady))
		bag := adhoc.Status.Artefact.Location
		Expect(bag).To(BeARegularFile())
		updateSpec(ctx, adhoc, func() {
			adhoc.Spec.Receipt = &custosv1alpha1.ExportReceipt{SHA256: sha256File(bag), ReceivedBy: "dr. Jansen"}
		})
		Eventually(exportPhase(ctx, adhoc)).WithTimeout(30 * time.Second).Should(Equal(custosv1alpha1.ExportExpired))
		Expect(adhoc.Status.AcknowledgedAt).NotTo(BeNil())
		Expect(bag).NotTo(BeAnExistingFile())

		By("an ad-hoc export to a path that cannot be written: three attempts, counted in status, then Failed")
		notADir := filepath.Join(GinkgoT().TempDir(), "not-a-directory")
		Expect(os.WriteFile(notADir, []byte("a file where the export directory should be"), 0o600)).To(Succeed())
		stuck := &custosv1alpha1.DataExport{ObjectMeta: metav1.ObjectMeta{Name: t.Name + "-unwritable"}, Spec: custosv1alpha1.DataExportSpec{
			TenantRef: custosv1alpha1.ObjectReference{Name: t.Name}, Include: custosv1alpha1.ExportInclude{Database: true},
			Delivery: custosv1alpha1.ExportDelivery{Filesystem: custosv1alpha1.FilesystemDelivery{Path: notADir}}}}
		Expect(k8s.Create(ctx, stuck)).To(Succeed())
		Eventually(func(g Gomega) int32 {
			g.Expect(k8s.Get(ctx, keyOf(stuck), stuck)).To(Succeed())
			return stuck.Status.FailedAttempts
		}).WithTimeout(time.Minute).Should(BeNumerically(">=", 1))
		Eventually(exportPhase(ctx, stuck)).WithTimeout(2 * time.Minute).Should(Equal(custosv1alpha1.ExportFailed))
		Expect(stuck.Status.FailedAttempts).To(BeEquivalentTo(3))
		ready := meta.FindStatusCondition(stuck.Status.Conditions, custosv1alpha1.ConditionReady)
		Expect(ready).NotTo(BeNil())
		Expect(ready.Reason).To(Equal("ExportFailed"))
		Expect(ready.Message).To(And(HavePrefix("attempt 3 of 3: "), ContainSubstring(notADir)))
		Expect(stuck.Status.Artefact).To(BeNil())
		Consistently(exportPhase(ctx, stuck)).WithTimeout(5*time.Second).Should(Equal(custosv1alpha1.ExportFailed), "a failed export stays failed")
		Expect(k8s.Delete(ctx, stuck)).To(Succeed())

		By("running workloads in the tenant's namespace: a Deployment, a StatefulSet (replicas unset) and a CronJob")
		ns := t.Status.Namespaces[0].Name
		labels := map[string]string{"app": "emr"}
		pod := corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels},
			Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyAlways, Containers: []corev1.Container{{Name: "emr", Image: "registry.example.eu/emr:1"}}}}
		dep := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "emr"},
			Spec: appsv1.DeploymentSpec{Replicas: ptr.To[int32](3), Selector: &metav1.LabelSelector{MatchLabels: labels}, Template: pod}}
		sts := &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "emr-cache"},
			Spec: appsv1.StatefulSetSpec{Selector: &metav1.LabelSelector{MatchLabels: labels}, Template: pod}}
		jobPod := *pod.DeepCopy()
		jobPod.Spec.RestartPolicy = corev1.RestartPolicyOnFailure
		cj := &batchv1.CronJob{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "emr-report"},
			Spec: batchv1.CronJobSpec{Schedule: "0 6 * * *", JobTemplate: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{Template: jobPod}}}}
		for _, o := range []client.Object{dep, sts, cj} {
			Expect(k8s.Create(ctx, o)).To(Succeed())
		}

		By("ending the contract: suspended (workloads stopped), then the exit's export is written")
		endContract(ctx, t)
		Eventually(phase(ctx, t)).WithTimeout(time.Minute).Should(Equal(custosv1alpha1.TenantExporting))
		Expect(k8s.Get(ctx, keyOf(dep), dep)).To(Succeed())
		Expect(dep.Spec.Replicas).To(HaveValue(BeZero()))
		Expect(k8s.Get(ctx, keyOf(sts), sts)).To(Succeed())
		Expect(sts.Spec.Replicas).To(HaveValue(BeZero()))
		Expect(k8s.Get(ctx, keyOf(cj), cj)).To(Succeed())
		Expect(cj.Spec.Suspend).To(HaveValue(BeTrue()))
		de := exitExportOf(ctx, t)
		Eventually(exportPhase(ctx, de)).WithTimeout(time.Minute).Should(Equal(custosv1alpha1.ExportReady))
		f, err := os.Open(de.Status.Artefact.Location)
		Expect(err).NotTo(HaveOccurred())
		rep, err := export.Verify(f)
		Expect(f.Close()).To(Succeed())
		Expect(err).NotTo(HaveOccurred())
		Expect(rep.Problems).To(BeEmpty())
		Expect(rep.OK).To(BeTrue())
		Expect(rep.Tables).To(ContainElement(HaveField("Rows", int64(200))))
		Expect(sha256File(de.Status.Artefact.Location)).To(Equal(de.Status.Artefact.SHA256))

		By("a wrong receipt destroys nothing")
		updateSpec(ctx, de, func() { de.Spec.Receipt = &custosv1alpha1.ExportReceipt{SHA256: strings.Repeat("0", 64)} })
		Eventually(condition(ctx, t, custosv1alpha1.ConditionReady)).Should(haveStatus(metav1.ConditionFalse, "ReceiptMismatch"))
		Consistently(func(g Gomega) {
			g.Expect(k8s.Get(ctx, keyOf(t), t)).To(Succeed())
			g.Expect(t.Status.Phase).To(Equal(custosv1alpha1.TenantExporting))
			g.Expect(t.Status.Exit.Destroyed).To(BeEmpty())
		}).WithTimeout(8 * time.Second).Should(Succeed())
		conn, err := pgx.Connect(ctx, pg.URL(t.DatabaseName()))
		Expect(err).NotTo(HaveOccurred(), "the database is still there")
		Expect(conn.Close(ctx)).To(Succeed())

		By("the right receipt lets the exit finish")
		updateSpec(ctx, de, func() {
			de.Spec.Receipt = &custosv1alpha1.ExportReceipt{SHA256: sha256File(de.Status.Artefact.Location), ReceivedBy: "Clinic privacy officer"}
		})
		Eventually(phase(ctx, t)).WithTimeout(3 * time.Minute).WithPolling(time.Second).Should(Equal(custosv1alpha1.TenantDestroyed))
		Expect(t.Status.Exit.ExportAcknowledgeTimedOut).To(BeFalse())
		Expect(t.Status.Exit.ExportAcknowledgedAt).NotTo(BeNil())
		cert := expectDestroyed(ctx, t, oid)
		Expect(cert.Spec.Subjects).To(ContainElement(custosv1alpha1.CertificateSubject{Name: de.Name + ".tar", SHA256: de.Status.Artefact.SHA256}))
		Expect(de.Status.Artefact.Location).NotTo(BeAnExistingFile(), "the certificate is signed only once the returned bag is deleted")
		Expect(k8s.Get(ctx, keyOf(de), de)).To(Succeed())
		Expect(de.Status.Phase).To(Equal(custosv1alpha1.ExportExpired))
		Expect(cert.Spec.IssuedAt.Time).NotTo(BeTemporally("<", de.Status.ExpiredAt.Time.Truncate(time.Second)))
	})

	It("goes on without a receipt once acknowledgeTimeout has passed after delivery, and the certificate says so", func(ctx SpecContext) {
		t := activeTenant(ctx, "exit-ack", ackPolicy, custosv1alpha1.TenantExit{DataReturn: custosv1alpha1.DataReturnExport, Backups: custosv1alpha1.BackupDisposalShred})
		oid := t.Status.Database.OID
		endContract(ctx, t)
		de := exitExportOf(ctx, t)
		Eventually(exportPhase(ctx, de)).WithTimeout(time.Minute).Should(Equal(custosv1alpha1.ExportReady))
		Expect(k8s.Get(ctx, keyOf(t), t)).To(Succeed())
		Expect(t.Status.Exit.Destroyed).To(BeEmpty(), "nothing is destroyed before the timeout")
		Eventually(phase(ctx, t)).WithTimeout(3 * time.Minute).WithPolling(time.Second).Should(Equal(custosv1alpha1.TenantDestroyed))
		Expect(t.Status.Exit.ExportAcknowledgeTimedOut).To(BeTrue())
		Expect(t.Status.Exit.ExportAcknowledgedAt.Time).To(BeTemporally(">=", de.Status.DeliveredAt.Add(15*time.Second)))
		Expect(condOf(t, custosv1alpha1.ConditionExportAcknowledged)).To(haveStatus(metav1.ConditionFalse, "AcknowledgeTimeout"))
		cert := expectDestroyed(ctx, t, oid)
		st, err := evidence.UnmarshalPayload(mustDecode(cert.Spec.Envelope.Payload))
		Expect(err).NotTo(HaveOccurred())
		Expect(st.Predicate.Export).NotTo(BeNil())
		Expect(st.Predicate.Export.AcknowledgeTimedOut).To(BeTrue())
		Expect(st.Predicate.Notes).To(ContainElement(ContainSubstring("never acknowledged")))
	})

	It("resumes after the manager is stopped at every phase of the exit: nothing lost, no step twice", func(ctx SpecContext) {
		t := activeTenant(ctx, "exit-rs", shredPolicy, custosv1alpha1.TenantExit{DataReturn: custosv1alpha1.DataReturnExport, Backups: custosv1alpha1.BackupDisposalShred})
		oid := t.Status.Database.OID
		endContract(ctx, t)
		restarted := map[string]bool{}
		deadline := time.Now().Add(5 * time.Minute)
		for time.Now().Before(deadline) {
			Expect(k8s.Get(ctx, keyOf(t), t)).To(Succeed())
			if t.Status.Phase == custosv1alpha1.TenantDestroyed {
				break
			}
			// A restart at each new phase, at each state of the exit's export (mid-write, delivered, acknowledged,
			// expired) and at each new destroyed location (mid-purge, mid-disposal).
			mark := string(t.Status.Phase)
			if t.Status.Exit != nil {
				mark += fmt.Sprintf("/%d", len(t.Status.Exit.Destroyed))
				if ref := t.Status.Exit.ExportRef; ref != nil {
					de := &custosv1alpha1.DataExport{}
					if err := k8s.Get(ctx, client.ObjectKey{Name: ref.Name}, de); err == nil {
						mark += "/export-" + string(de.Status.Phase)
						if de.Status.Phase == custosv1alpha1.ExportReady && de.Spec.Receipt == nil {
							updateSpec(ctx, de, func() { de.Spec.Receipt = &custosv1alpha1.ExportReceipt{SHA256: de.Status.Artefact.SHA256} })
						}
					}
				}
			}
			if !restarted[mark] {
				restarted[mark] = true
				mgr.stop()
				mgr = startManager(func(o *controllers.Options) { o.ExportDir = exportDir })
			}
			time.Sleep(300 * time.Millisecond)
		}
		Expect(t.Status.Phase).To(Equal(custosv1alpha1.TenantDestroyed))
		Expect(len(restarted)).To(BeNumerically(">=", 5), "restarts: %v", restarted)
		Expect(restarted).To(HaveKey(HavePrefix(string(custosv1alpha1.TenantExporting))), "a restart while exporting")
		expectDestroyed(ctx, t, oid)

		By("finding each step once on the audit trail and one certificate")
		var cms corev1.ConfigMapList
		Expect(k8s.List(ctx, &cms, client.InNamespace(managerNamespace), client.MatchingLabels{"custos.io/audit-tenant": t.Name})).To(Succeed())
		chain, err := evidence.ParseLines([]byte(cms.Items[0].Data["entries.jsonl"]))
		Expect(err).NotTo(HaveOccurred())
		count := map[evidence.Action]int{}
		for _, e := range chain {
			count[e.Action]++
		}
		Expect(count[evidence.ActionSuspended]).To(Equal(1))
		Expect(count[evidence.ActionExportWritten]).To(BeNumerically(">=", 1))
		Expect(count[evidence.ActionExportAcknowledged]).To(Equal(1))
		Expect(count[evidence.ActionLiveDataPurged]).To(Equal(1))
		Expect(count[evidence.ActionShredded]).To(Equal(2))
		Expect(count[evidence.ActionCertificateIssued]).To(Equal(1))
		var certs custosv1alpha1.DestructionCertificateList
		Expect(k8s.List(ctx, &certs, client.MatchingLabels{custosv1alpha1.LabelTenant: t.Name})).To(Succeed())
		Expect(certs.Items).To(HaveLen(1))
	})

	It("a legal hold set mid-exit freezes it before anything is destroyed; lifting it lets the exit finish", func(ctx SpecContext) {
		t := activeTenant(ctx, "exit-hold", shredPolicy, custosv1alpha1.TenantExit{DataReturn: custosv1alpha1.DataReturnExport, Backups: custosv1alpha1.BackupDisposalShred})
		oid := t.Status.Database.OID
		endContract(ctx, t)
		de := exitExportOf(ctx, t)
		Eventually(exportPhase(ctx, de)).WithTimeout(time.Minute).Should(Equal(custosv1alpha1.ExportReady))
		By("setting the hold while the exit waits for the receipt, then giving the receipt")
		updateSpec(ctx, t, func() { t.Spec.LegalHold = &custosv1alpha1.LegalHold{Reason: "court order 2026/117"} })
		updateSpec(ctx, de, func() { de.Spec.Receipt = &custosv1alpha1.ExportReceipt{SHA256: de.Status.Artefact.SHA256} })
		Eventually(condition(ctx, t, custosv1alpha1.ConditionLegalHold)).Should(haveStatus(metav1.ConditionTrue, custosv1alpha1.ReasonLegalHoldActive))
		Eventually(phase(ctx, t)).Should(Equal(custosv1alpha1.TenantPurging))
		Consistently(func(g Gomega) {
			g.Expect(k8s.Get(ctx, keyOf(t), t)).To(Succeed())
			g.Expect(t.Status.Phase).To(Equal(custosv1alpha1.TenantPurging))
			g.Expect(t.Status.Exit.Destroyed).To(BeEmpty())
		}).WithTimeout(10 * time.Second).Should(Succeed())
		Expect(condOf(t, custosv1alpha1.ConditionReady).Message).To(ContainSubstring("court order 2026/117"))
		admin, err := pgx.Connect(ctx, pg.URL(t.DatabaseName()))
		Expect(err).NotTo(HaveOccurred(), "the database is still there under the hold")
		Expect(admin.Close(ctx)).To(Succeed())
		_, err = (restic.Repository{Binary: programs.Restic, URL: repoURL(t, primaryName), Password: "wrong"}).ID(ctx)
		Expect(err).To(MatchError(ContainSubstring("exit code 12")), "the repository is still there under the hold")

		updateSpec(ctx, t, func() { t.Spec.LegalHold = nil })
		Eventually(phase(ctx, t)).WithTimeout(3 * time.Minute).Should(Equal(custosv1alpha1.TenantDestroyed))
		expectDestroyed(ctx, t, oid)
	})

	It("Export + Expire: the backups stay until keepWithin after the newest snapshot, then go, with the deadline in status", func(ctx SpecContext) {
		t := activeTenant(ctx, "exit-exp", shortPolicy, custosv1alpha1.TenantExit{DataReturn: custosv1alpha1.DataReturnExport, Backups: custosv1alpha1.BackupDisposalExpire})
		oid := t.Status.Database.OID
		endContract(ctx, t)
		de := exitExportOf(ctx, t)
		Eventually(exportPhase(ctx, de)).WithTimeout(time.Minute).Should(Equal(custosv1alpha1.ExportReady))
		updateSpec(ctx, de, func() {
			de.Spec.Receipt = &custosv1alpha1.ExportReceipt{SHA256: sha256File(de.Status.Artefact.Location)}
		})
		Eventually(phase(ctx, t)).WithTimeout(time.Minute).Should(Equal(custosv1alpha1.TenantAwaitingBackupExpiry))
		Expect(t.Status.Exit.BackupsGoneBy).NotTo(BeNil())
		var newest time.Time
		for _, lb := range t.Status.Backups {
			if lb.Newest != nil && lb.Newest.After(newest) {
				newest = lb.Newest.Time
			}
		}
		Expect(t.Status.Exit.BackupsGoneBy.Time).To(BeTemporally("~", newest.Add(24*time.Hour), time.Second))
		Expect(t.Status.Exit.LiveDataPurgedAt).NotTo(BeNil())
		Expect(primaryDirOf(primaryDir, t)).To(BeADirectory(), "the repository waits for its deadline")
		By("a day passing on the manager's clock (keepWithin is at least 24h)")
		mgr.clock.Advance(24 * time.Hour)
		Eventually(phase(ctx, t)).WithTimeout(5 * time.Minute).WithPolling(2 * time.Second).Should(Equal(custosv1alpha1.TenantDestroyed))
		Expect(t.Status.Exit.DestroyedAt.Time).To(BeTemporally(">=", t.Status.Exit.BackupsGoneBy.Time))
		expectDestroyed(ctx, t, oid)
	})
})

func exportPhase(ctx context.Context, de *custosv1alpha1.DataExport) func(Gomega) custosv1alpha1.DataExportPhase {
	return func(g Gomega) custosv1alpha1.DataExportPhase {
		g.Expect(k8s.Get(ctx, keyOf(de), de)).To(Succeed())
		return de.Status.Phase
	}
}

func sha256File(path string) string {
	GinkgoHelper()
	f, err := os.Open(path)
	Expect(err).NotTo(HaveOccurred())
	defer f.Close()
	h := sha256.New()
	_, err = io.Copy(h, f)
	Expect(err).NotTo(HaveOccurred())
	return hex.EncodeToString(h.Sum(nil))
}

func mustDecode(b64 string) []byte {
	GinkgoHelper()
	b, err := base64.StdEncoding.DecodeString(b64)
	Expect(err).NotTo(HaveOccurred())
	return b
}

func primaryDirOf(base string, t *custosv1alpha1.Tenant) string {
	return filepath.Join(base, t.Name+"-"+string(t.UID)[:8])
}

// condOf returns a Tenant's condition (the Tenant as last read).
func condOf(t *custosv1alpha1.Tenant, typ string) *metav1.Condition {
	for i := range t.Status.Conditions {
		if t.Status.Conditions[i].Type == typ {
			return &t.Status.Conditions[i]
		}
	}
	return nil
}
