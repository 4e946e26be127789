package local

import (
	"context"
	"os"
	"path/filepath"
	"time"

	"github.com/jackc/pgx/v5"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	custosv1alpha1 "github.com/custos-io/custos/api/v1alpha1"
	"github.com/custos-io/custos/controllers"
	"github.com/custos-io/custos/internal/evidence"
)

// The exit's flow under attack or carelessness: the export it relies on must be its own, one edit of
// contract.end must not destroy anything at once, and the certificate must only claim what is true.
var _ = Describe("Exit flow safeguards", Ordered, ContinueOnFailure, Label("integration", "exit", "security"), func() {
	const (
		locName    = "sef-primary"
		policyNow  = "sef-no-grace" // exitGracePeriod 0s: the safeguard off, to reach the export checks quickly
		policyHour = "sef-grace"    // exitGracePeriod 1h
		serverName = "sef-pg"
	)
	var (
		mgr       *runningManager
		exportDir string
	)

	BeforeAll(func(ctx SpecContext) {
		exportDir = filepath.Join(GinkgoT().TempDir(), "exports")
		// Made before the manager starts, so that it is removed after the manager has stopped (cleanups run last
		// first): a restic still writing into it would make the removal fail.
		primaryDir := filepath.Join(GinkgoT().TempDir(), "primary")
		Expect(os.MkdirAll(exportDir, 0o700)).To(Succeed())
		nsCtx, stopNS := context.WithCancel(context.Background())
		go finalizeNamespaces(nsCtx)
		DeferCleanup(stopNS)
		mgr = startManager(func(o *controllers.Options) { o.ExportDir = exportDir })
		DeferCleanup(func() { mgr.stop() })
		ensureObject(ctx, &custosv1alpha1.BackupLocation{ObjectMeta: metav1.ObjectMeta{Name: locName},
			Spec: custosv1alpha1.BackupLocationSpec{URL: primaryDir, Jurisdiction: "NL"}})
		for name, grace := range map[string]string{policyNow: "0s", policyHour: "1h"} {
			p := &custosv1alpha1.RetentionPolicy{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: custosv1alpha1.RetentionPolicySpec{
				Primary: custosv1alpha1.ObjectReference{Name: locName}, KeepWithin: "30d", MaxSnapshotAge: "26h",
				Export:               custosv1alpha1.ExportPolicy{ExpireAfterDelivery: "20s", AcknowledgeTimeout: "30d"},
				AllowedJurisdictions: []custosv1alpha1.JurisdictionSelector{"EEA"},
			}}
			ensureObject(ctx, p)
			// Set as a merge patch, so that these specs also compile and run against a custos without the field
			// (where it is pruned): that is how they were shown to fail before the fix.
			Expect(k8s.Patch(ctx, p, client.RawPatch(types.MergePatchType, []byte(`{"spec":{"exitGracePeriod":"`+grace+`"}}`)))).To(Succeed())
		}
		databaseServerFor(ctx, serverName, pg, "NL")
	})

	tenant := func(ctx context.Context, name, policy string, exit custosv1alpha1.TenantExit) *custosv1alpha1.Tenant {
		GinkgoHelper()
		t := newTenant("x")
		t.Name = name
		t.Spec.DisplayName, t.Spec.DataController.Name, t.Spec.Contract.ID = "Clinic "+name, "Clinic "+name+" B.V.", "DPA-"+name
		t.Spec.Namespaces.Names = []string{name, name + "-jobs"}
		t.Spec.Owners[0].Name = name + "-admins"
		t.Spec.RetentionPolicyRef.Name = policy
		t.Spec.Database.ServerRef.Name = serverName
		t.Spec.Exit = exit
		Expect(k8s.Create(ctx, t)).To(Succeed())
		// Registered before the wait for Ready, so that a tenant that never gets there is reported too.
		DeferCleanup(func() {
			if CurrentSpecReport().Failed() {
				var now custosv1alpha1.Tenant
				if k8s.Get(context.Background(), keyOf(t), &now) == nil {
					b, _ := yaml.Marshal(now.Status)
					AddReportEntry("tenant "+name+" status", string(b))
				}
			}
		})
		expectReady(ctx, t)
		return t
	}
	withPatients := func(ctx context.Context, t *custosv1alpha1.Tenant) {
		GinkgoHelper()
		conn, err := pgx.Connect(ctx, pg.URL(t.DatabaseName()))
		Expect(err).NotTo(HaveOccurred())
		defer conn.Close(ctx)
		_, err = conn.Exec(ctx, `CREATE TABLE patients (id int PRIMARY KEY, name text);
			INSERT INTO patients SELECT g, 'patiënt ' || g FROM generate_series(1, 50) g`)
		Expect(err).NotTo(HaveOccurred())
	}
	patients := func(ctx context.Context, t *custosv1alpha1.Tenant) func(Gomega) int {
		return func(g Gomega) int {
			conn, err := pgx.Connect(ctx, pg.URL(t.DatabaseName()))
			g.Expect(err).NotTo(HaveOccurred(), "the tenant's database is still there")
			defer conn.Close(ctx)
			var n int
			g.Expect(conn.QueryRow(ctx, "SELECT count(*) FROM patients").Scan(&n)).To(Succeed())
			return n
		}
	}
	endContract := func(ctx context.Context, t *custosv1alpha1.Tenant, at time.Time) {
		GinkgoHelper()
		updateSpec(ctx, t, func() { t.Spec.Contract.End = &metav1.Time{Time: at.Truncate(time.Second)} })
	}
	phaseOf := func(ctx context.Context, t *custosv1alpha1.Tenant) func(Gomega) custosv1alpha1.TenantPhase {
		return func(g Gomega) custosv1alpha1.TenantPhase {
			g.Expect(k8s.Get(ctx, keyOf(t), t)).To(Succeed())
			return t.Status.Phase
		}
	}
	// handMadeExport is a DataExport made by a person (or left by an earlier tenant), acknowledged by a receipt.
	handMadeExport := func(ctx context.Context, name, tenantName string, include custosv1alpha1.ExportInclude) *custosv1alpha1.DataExport {
		GinkgoHelper()
		de := &custosv1alpha1.DataExport{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{custosv1alpha1.LabelTenant: tenantName}},
			Spec: custosv1alpha1.DataExportSpec{TenantRef: custosv1alpha1.ObjectReference{Name: tenantName}, Include: include,
				Delivery: custosv1alpha1.ExportDelivery{Filesystem: custosv1alpha1.FilesystemDelivery{Path: exportDir}},
				// It stays Acknowledged through the spec (an exit bag's lifetime comes from the policy: 20s).
				ExpireAfterDelivery: ptr.To(custosv1alpha1.Duration("30d"))}}
		Expect(k8s.Create(ctx, de)).To(Succeed())
		Eventually(exportPhase(ctx, de)).WithTimeout(time.Minute).Should(Equal(custosv1alpha1.ExportReady))
		updateSpec(ctx, de, func() {
			de.Spec.Receipt = &custosv1alpha1.ExportReceipt{SHA256: de.Status.Artefact.SHA256, ReceivedBy: "someone"}
		})
		Eventually(exportPhase(ctx, de)).Should(Equal(custosv1alpha1.ExportAcknowledged))
		return de
	}
	// expectNothingDestroyedFor checks for a while that the exit waits in Exporting with the database intact.
	expectNothingDestroyedFor := func(ctx context.Context, t *custosv1alpha1.Tenant, d time.Duration) {
		GinkgoHelper()
		Eventually(phaseOf(ctx, t)).WithTimeout(time.Minute).ShouldNot(Or(Equal(custosv1alpha1.TenantActive), Equal(custosv1alpha1.TenantTerminating)))
		Consistently(func(g Gomega) {
			g.Expect(k8s.Get(ctx, keyOf(t), t)).To(Succeed())
			g.Expect(t.Status.Phase).To(Equal(custosv1alpha1.TenantExporting), "the exit waits for its own export")
			g.Expect(t.Status.Exit.Destroyed).To(BeEmpty())
			g.Expect(t.Status.Exit.LiveDataPurgedAt).To(BeNil())
			g.Expect(patients(ctx, t)(g)).To(Equal(50))
		}).WithTimeout(d).WithPolling(time.Second).Should(Succeed())
	}
	// expectOwnExport checks that the exit's export is a new one, bound to this tenant and this exit.
	expectOwnExport := func(ctx context.Context, t *custosv1alpha1.Tenant, notName string) *custosv1alpha1.DataExport {
		GinkgoHelper()
		Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx, keyOf(t), t)).To(Succeed())
			g.Expect(t.Status.Exit.ExportRef).NotTo(BeNil())
		}).Should(Succeed())
		Expect(t.Status.Exit.ExportRef.Name).NotTo(Equal(notName))
		de := &custosv1alpha1.DataExport{ObjectMeta: metav1.ObjectMeta{Name: t.Status.Exit.ExportRef.Name}}
		Expect(k8s.Get(ctx, keyOf(de), de)).To(Succeed())
		Expect(de.Annotations).To(HaveKeyWithValue("custos.io/tenant-uid", string(t.UID)))
		Expect(de.Spec.Include).To(Equal(custosv1alpha1.ExportInclude{Database: true, KubernetesObjects: true}))
		Expect(de.CreationTimestamp.Time).NotTo(BeTemporally("<", t.Status.Exit.TerminatedAt.Time.Truncate(time.Second)))
		return de
	}

	It("does not purge on the strength of a stale Acknowledged <tenant>-exit of an earlier tenant of the same name; the certificate waits for the exit's own bag to be deleted", func(ctx SpecContext) {
		const name = "sef-stale"
		By("an earlier tenant of the same name: its <tenant>-exit export acknowledged, then destroyed and deleted")
		earlier := tenant(ctx, name, policyNow, custosv1alpha1.TenantExit{DataReturn: custosv1alpha1.DataReturnNone, Backups: custosv1alpha1.BackupDisposalShred})
		stale := handMadeExport(ctx, name+"-exit", name, custosv1alpha1.ExportInclude{Database: true, KubernetesObjects: true})
		endContract(ctx, earlier, time.Now().Add(-time.Second))
		Eventually(phaseOf(ctx, earlier)).WithTimeout(2 * time.Minute).Should(Equal(custosv1alpha1.TenantDestroyed))
		Expect(k8s.Delete(ctx, earlier)).To(Succeed())
		Eventually(func() bool { return apierrors.IsNotFound(k8s.Get(ctx, keyOf(earlier), &custosv1alpha1.Tenant{})) }).Should(BeTrue())
		Expect(k8s.Get(ctx, keyOf(stale), stale)).To(Succeed())
		Expect(stale.Status.Phase).To(Equal(custosv1alpha1.ExportAcknowledged))
		staleDelivered := stale.Status.DeliveredAt.Time

		By("a new tenant of the same name, with data, whose contract ends with dataReturn Export")
		t := tenant(ctx, name, policyNow, custosv1alpha1.TenantExit{DataReturn: custosv1alpha1.DataReturnExport, Backups: custosv1alpha1.BackupDisposalShred})
		Expect(t.UID).NotTo(Equal(earlier.UID))
		withPatients(ctx, t)
		endContract(ctx, t, time.Now().Add(-time.Second))

		By("finding the database intact while the exit waits for an export of today's data")
		expectNothingDestroyedFor(ctx, t, 10*time.Second)
		de := expectOwnExport(ctx, t, stale.Name)
		Expect(k8s.Get(ctx, keyOf(stale), stale)).To(Succeed())
		Expect(stale.Status.Phase).To(Equal(custosv1alpha1.ExportAcknowledged), "the stale export is left alone")
		Expect(stale.Status.DeliveredAt.Time).To(Equal(staleDelivered))

		By("acknowledging the exit's own export: the exit goes on, and the certificate waits until its bag is deleted")
		Eventually(exportPhase(ctx, de)).WithTimeout(time.Minute).Should(Equal(custosv1alpha1.ExportReady))
		bag := de.Status.Artefact.Location
		updateSpec(ctx, de, func() {
			de.Spec.Receipt = &custosv1alpha1.ExportReceipt{SHA256: sha256File(bag), ReceivedBy: "Clinic privacy officer"}
		})
		// AwaitingExportExpiry can be too short to observe (the repositories' destruction may outlast the bag's
		// 20 s under load); what must hold is the order, checked below from the certificate and the export.
		Eventually(phaseOf(ctx, t)).WithTimeout(2 * time.Minute).Should(Equal(custosv1alpha1.TenantDestroyed))
		Expect(t.Status.Exit.LiveDataPurgedAt).NotTo(BeNil())
		Expect(bag).NotTo(BeAnExistingFile())
		Expect(k8s.Get(ctx, keyOf(de), de)).To(Succeed())
		Expect(de.Status.Phase).To(Equal(custosv1alpha1.ExportExpired))
		cert := &custosv1alpha1.DestructionCertificate{}
		Expect(k8s.Get(ctx, client.ObjectKey{Name: t.Status.Exit.CertificateRef.Name}, cert)).To(Succeed())
		Expect(cert.Spec.IssuedAt.Time).NotTo(BeTemporally("<", de.Status.ExpiredAt.Time.Truncate(time.Second)))
		st, err := evidence.UnmarshalPayload(mustDecode(cert.Spec.Envelope.Payload))
		Expect(err).NotTo(HaveOccurred())
		Expect(st.Predicate.Export).NotTo(BeNil())
		Expect(st.Predicate.Export.SHA256).To(Equal(de.Status.Artefact.SHA256), "the certificate names the exit's own bag, not the stale one")
		Expect(st.Predicate.Notes).To(ContainElement(And(ContainSubstring(de.Name+".tar"), ContainSubstring("verified absent"))))
	})

	It("does not purge on the strength of a hand-made <tenant>-exit with include.database false, and refuses one put in the place of the exit's own", func(ctx SpecContext) {
		const name = "sef-handmade"
		t := tenant(ctx, name, policyNow, custosv1alpha1.TenantExit{DataReturn: custosv1alpha1.DataReturnExport, Backups: custosv1alpha1.BackupDisposalShred})
		withPatients(ctx, t)
		hand := handMadeExport(ctx, name+"-exit", name, custosv1alpha1.ExportInclude{Database: false, KubernetesObjects: true})
		endContract(ctx, t, time.Now().Add(-time.Second))
		expectNothingDestroyedFor(ctx, t, 10*time.Second)
		own := expectOwnExport(ctx, t, hand.Name)

		By("replacing the exit's own export, while the manager is down, by one made by hand without the database")
		Eventually(exportPhase(ctx, own)).WithTimeout(time.Minute).Should(Equal(custosv1alpha1.ExportReady))
		mgr.stop()
		Expect(k8s.Delete(ctx, own)).To(Succeed())
		Eventually(func() bool { return apierrors.IsNotFound(k8s.Get(ctx, keyOf(own), &custosv1alpha1.DataExport{})) }).Should(BeTrue())
		fake := &custosv1alpha1.DataExport{ObjectMeta: metav1.ObjectMeta{Name: own.Name, Labels: own.Labels, Annotations: own.Annotations},
			Spec: custosv1alpha1.DataExportSpec{TenantRef: own.Spec.TenantRef, Include: custosv1alpha1.ExportInclude{Database: false, KubernetesObjects: true},
				Delivery: own.Spec.Delivery}}
		Expect(k8s.Create(ctx, fake)).To(Succeed())
		mgr = startManager(func(o *controllers.Options) { o.ExportDir = exportDir })
		Eventually(condition(ctx, t, custosv1alpha1.ConditionReady)).WithTimeout(time.Minute).Should(And(
			HaveField("Reason", "ExportNotBound"), HaveField("Message", ContainSubstring("DataExport "+own.Name+" is not this exit's export"))))
		Eventually(func(g Gomega) []string {
			var evs eventsv1.EventList
			g.Expect(k8s.List(ctx, &evs)).To(Succeed())
			var msgs []string
			for _, e := range evs.Items {
				if e.Regarding.Name == t.Name && e.Type == corev1.EventTypeWarning && e.Reason == "ExportNotBound" {
					msgs = append(msgs, e.Note)
				}
			}
			return msgs
		}).Should(ContainElement(ContainSubstring("delete it")))
		By("even written and acknowledged, the impostor destroys nothing")
		Eventually(exportPhase(ctx, fake)).WithTimeout(time.Minute).Should(Equal(custosv1alpha1.ExportReady))
		updateSpec(ctx, fake, func() { fake.Spec.Receipt = &custosv1alpha1.ExportReceipt{SHA256: fake.Status.Artefact.SHA256} })
		Eventually(exportPhase(ctx, fake)).Should(Equal(custosv1alpha1.ExportAcknowledged))
		expectNothingDestroyedFor(ctx, t, 8*time.Second)
	})

	It("a contract.end in the past starts a grace period from when it is observed; removing contract.end during it returns the tenant to Active with LOGIN back", func(ctx SpecContext) {
		const name = "sef-careless"
		t := tenant(ctx, name, policyHour, custosv1alpha1.TenantExit{DataReturn: custosv1alpha1.DataReturnNone, Backups: custosv1alpha1.BackupDisposalShred})
		withPatients(ctx, t)
		creds := credentials(ctx, t.Spec.Namespaces.Names[0])

		By("one careless edit: contract.end ten days in the past, dataReturn None, backups Shred")
		observed := time.Now()
		endContract(ctx, t, observed.Add(-10*24*time.Hour))
		Eventually(condition(ctx, t, custosv1alpha1.ConditionReady)).WithTimeout(time.Minute).Should(HaveField("Reason", "GracePeriod"))
		Expect(t.Status.Phase).To(Equal(custosv1alpha1.TenantTerminating))
		Expect(t.Status.Exit.TerminatedAt).NotTo(BeNil(), "suspended at once")
		Expect(t.Status.Exit.EndObservedAt.Time).To(BeTemporally("~", observed, 30*time.Second), "counted from when the end was observed")
		Expect(t.Status.Exit.DestructionNotBefore.Time).To(Equal(t.Status.Exit.EndObservedAt.Add(time.Hour)))
		_, err := connectWith(ctx, creds, t.DatabaseName())
		Expect(err).To(HaveOccurred(), "LOGIN is revoked while suspended")
		Consistently(func(g Gomega) {
			g.Expect(k8s.Get(ctx, keyOf(t), t)).To(Succeed())
			g.Expect(t.Status.Phase).To(Equal(custosv1alpha1.TenantTerminating))
			g.Expect(t.Status.Exit.Destroyed).To(BeEmpty())
			g.Expect(patients(ctx, t)(g)).To(Equal(50))
		}).WithTimeout(8 * time.Second).WithPolling(time.Second).Should(Succeed())

		By("removing contract.end within the grace period: the exit is cancelled, provisioning gives LOGIN and the network back")
		updateSpec(ctx, t, func() { t.Spec.Contract.End = nil })
		expectReady(ctx, t)
		Expect(t.Status.Exit).To(BeNil())
		Eventually(func() error {
			conn, err := connectWith(ctx, creds, t.DatabaseName())
			if err == nil {
				conn.Close(ctx)
			}
			return err
		}).WithTimeout(30*time.Second).Should(Succeed(), "the tenant logs in again")
		Expect(patients(ctx, t)(Default)).To(Equal(50))
		var nps networkingv1.NetworkPolicyList
		Expect(k8s.List(ctx, &nps, client.InNamespace(t.Spec.Namespaces.Names[0]))).To(Succeed())
		Expect(len(nps.Items)).To(BeNumerically(">", 1), "the allow policies are back beside the default deny")
		var cms corev1.ConfigMapList
		Expect(k8s.List(ctx, &cms, client.InNamespace(managerNamespace), client.MatchingLabels{"custos.io/audit-tenant": t.Name})).To(Succeed())
		Expect(cms.Items).NotTo(BeEmpty())
		chain, err := evidence.ParseLines([]byte(cms.Items[0].Data["entries.jsonl"]))
		Expect(err).NotTo(HaveOccurred())
		var actions []evidence.Action
		for _, e := range chain {
			actions = append(actions, e.Action)
		}
		Expect(actions).To(ContainElements(evidence.ActionSuspended, evidence.Action("ExitCancelled")))
	})

	It("does not count the certificate as issued until CertificateIssued is on the audit trail", func(ctx SpecContext) {
		const name = "sef-lastentry"
		t := tenant(ctx, name, policyNow, custosv1alpha1.TenantExit{DataReturn: custosv1alpha1.DataReturnNone, Backups: custosv1alpha1.BackupDisposalShred})

		By("refusing, in the API server, any write of this tenant's CertificateIssued entry (a crash or an outage at that moment)")
		line := `"tenant":"` + name + `","action":"CertificateIssued"`
		vap := &admissionregistrationv1.ValidatingAdmissionPolicy{ObjectMeta: metav1.ObjectMeta{Name: "sef-block-certificate-entry"},
			Spec: admissionregistrationv1.ValidatingAdmissionPolicySpec{
				FailurePolicy: ptr.To(admissionregistrationv1.Fail),
				MatchConstraints: &admissionregistrationv1.MatchResources{ResourceRules: []admissionregistrationv1.NamedRuleWithOperations{{
					RuleWithOperations: admissionregistrationv1.RuleWithOperations{
						Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update},
						Rule:       admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"configmaps"}}}}}},
				Validations: []admissionregistrationv1.Validation{{
					Expression: `!has(object.data) || !object.data.exists(k, object.data[k].contains('` + line + `'))`,
					Message:    "spec: the audit trail is unavailable for this entry"}},
			}}
		binding := &admissionregistrationv1.ValidatingAdmissionPolicyBinding{ObjectMeta: metav1.ObjectMeta{Name: vap.Name},
			Spec: admissionregistrationv1.ValidatingAdmissionPolicyBindingSpec{PolicyName: vap.Name,
				ValidationActions: []admissionregistrationv1.ValidationAction{admissionregistrationv1.Deny}}}
		Expect(k8s.Create(ctx, vap)).To(Succeed())
		Expect(k8s.Create(ctx, binding)).To(Succeed())
		unblock := func() {
			_ = client.IgnoreNotFound(k8s.Delete(context.Background(), binding))
			_ = client.IgnoreNotFound(k8s.Delete(context.Background(), vap))
		}
		DeferCleanup(unblock)
		probe := func() error {
			cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{GenerateName: "sef-probe-", Namespace: managerNamespace},
				Data: map[string]string{"x": line}}
			err := k8s.Create(ctx, cm)
			if err == nil {
				_ = k8s.Delete(ctx, cm)
			}
			return err
		}
		// The API server loads a new admission policy asynchronously: seconds on a loaded machine.
		Eventually(probe).WithTimeout(time.Minute).WithPolling(200*time.Millisecond).Should(HaveOccurred(), "the policy is in force")

		By("ending the contract: the certificate is written, its entry cannot be")
		endContract(ctx, t, time.Now().Add(-time.Second))
		var certs custosv1alpha1.DestructionCertificateList
		Eventually(func(g Gomega) {
			g.Expect(k8s.List(ctx, &certs, client.MatchingLabels{custosv1alpha1.LabelTenant: name})).To(Succeed())
			g.Expect(certs.Items).To(HaveLen(1))
		}).WithTimeout(2 * time.Minute).Should(Succeed())
		Consistently(phaseOf(ctx, t)).WithTimeout(6*time.Second).ShouldNot(Equal(custosv1alpha1.TenantDestroyed),
			"the tenant is not Destroyed while the certificate's entry is missing from the trail")
		Expect(condOf(t, custosv1alpha1.ConditionReady)).To(And(HaveField("Reason", "ExitStepFailed"), HaveField("Message", ContainSubstring("audit trail"))))

		By("the trail is writable again: the entry is written once, and only then is the tenant Destroyed")
		unblock()
		Eventually(probe).WithTimeout(time.Minute).WithPolling(200 * time.Millisecond).Should(Succeed())
		Eventually(phaseOf(ctx, t)).WithTimeout(time.Minute).Should(Equal(custosv1alpha1.TenantDestroyed))
		var cms corev1.ConfigMapList
		Expect(k8s.List(ctx, &cms, client.InNamespace(managerNamespace), client.MatchingLabels{"custos.io/audit-tenant": name})).To(Succeed())
		var chain []evidence.Entry
		for _, cm := range cms.Items {
			es, err := evidence.ParseLines([]byte(cm.Data["entries.jsonl"]))
			Expect(err).NotTo(HaveOccurred())
			chain = append(chain, es...)
		}
		Expect(chain).NotTo(BeEmpty())
		Expect(chain[len(chain)-1].Action).To(Equal(evidence.ActionCertificateIssued))
		n := 0
		for _, e := range chain {
			if e.Action == evidence.ActionCertificateIssued {
				n++
				Expect(e.Detail).To(HaveKeyWithValue("certificate", certs.Items[0].Name))
			}
		}
		Expect(n).To(Equal(1))
	})
})

// exitExportOf waits until the tenant's exit has recorded its DataExport and returns it.
func exitExportOf(ctx context.Context, t *custosv1alpha1.Tenant) *custosv1alpha1.DataExport {
	GinkgoHelper()
	Eventually(func(g Gomega) {
		g.Expect(k8s.Get(ctx, keyOf(t), t)).To(Succeed())
		g.Expect(t.Status.Exit).NotTo(BeNil())
		g.Expect(t.Status.Exit.ExportRef).NotTo(BeNil())
	}).WithTimeout(time.Minute).Should(Succeed(), "the exit records its DataExport")
	return &custosv1alpha1.DataExport{ObjectMeta: metav1.ObjectMeta{Name: t.Status.Exit.ExportRef.Name}}
}
