package main

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "github.com/custos-io/custos/api/v1alpha1"
)

// custos status against a real kube-apiserver and etcd with custos' CRDs: a Tenant in the middle of its exit, with
// the status the manager would have written, its DataExport, its certificate and events.k8s.io/v1 Events as the
// manager's recorder (client-go tools/events) writes them: in namespace default, about a cluster-scoped object.
var _ = Describe("custos status", Ordered, Label("cluster"), func() {
	var (
		k8s        client.Client
		kubeconfig string
		ctx        = context.Background()
		tenant     *v1alpha1.Tenant
	)
	readAt := at("2026-03-31T09:00:00Z")
	mt := func(s string) *metav1.Time { t := metav1.NewTime(at(s)); return &t }
	yes, no := true, false

	BeforeAll(func(SpecContext) {
		k8s, kubeconfig = startControlPlane("on-call", GinkgoT().TempDir())

		saved := now
		now = func() time.Time { return readAt }
		DeferCleanup(func() { now = saved })

		By("a Tenant whose contract ended: export acknowledged, live data purged, backups expiring under a legal hold")
		tenant = &v1alpha1.Tenant{ObjectMeta: metav1.ObjectMeta{Name: "kliniek-noord"}, Spec: v1alpha1.TenantSpec{
			DisplayName:        "Kliniek Noord",
			DataController:     v1alpha1.DataController{Name: "Kliniek Noord B.V.", Contact: "J. Jansen", Email: "j.jansen@clinic.example"},
			Contract:           v1alpha1.Contract{ID: "VO-2024-017", Start: *mt("2024-01-01T00:00:00Z"), End: mt("2026-03-30T00:00:00Z")},
			RetentionPolicyRef: v1alpha1.ObjectReference{Name: "daily-90d"},
			Namespaces:         v1alpha1.TenantNamespaces{Names: []string{"kliniek-noord"}},
			Database:           v1alpha1.TenantDatabase{ServerRef: v1alpha1.ObjectReference{Name: "pg-ams-1"}},
			Exit:               v1alpha1.TenantExit{DataReturn: v1alpha1.DataReturnExport, Backups: v1alpha1.BackupDisposalExpire},
			LegalHold:          &v1alpha1.LegalHold{Reason: "case 2026/114 of the Amsterdam court", Until: mt("2026-06-01T00:00:00Z")},
		}}
		Expect(k8s.Create(ctx, tenant)).To(Succeed())

		de := &v1alpha1.DataExport{ObjectMeta: metav1.ObjectMeta{Name: "kliniek-noord-exit-20260330-000012"}, Spec: v1alpha1.DataExportSpec{
			TenantRef: v1alpha1.ObjectReference{Name: "kliniek-noord"},
			Include:   v1alpha1.ExportInclude{Database: true, KubernetesObjects: true},
			Delivery:  v1alpha1.ExportDelivery{Filesystem: v1alpha1.FilesystemDelivery{Path: "/exports"}},
		}}
		Expect(k8s.Create(ctx, de)).To(Succeed())
		de.Status = v1alpha1.DataExportStatus{Phase: v1alpha1.ExportAcknowledged,
			Artefact: &v1alpha1.ExportArtefact{Location: "/exports/kliniek-noord-exit-20260330-000012.tar", SHA256: sum(bag), Bytes: 27}}
		Expect(k8s.Status().Update(ctx, de)).To(Succeed())

		cond := func(typ string, status metav1.ConditionStatus, reason, msg, since string) metav1.Condition {
			return metav1.Condition{Type: typ, Status: status, Reason: reason, Message: msg, LastTransitionTime: *mt(since), ObservedGeneration: 1}
		}
		destroyed := func(kind v1alpha1.DestroyedLocationKind, name string) v1alpha1.DestroyedLocation {
			return v1alpha1.DestroyedLocation{Kind: kind, Name: name, Method: "Purge", Technique: "dropped", StartedAt: *mt("2026-03-31T06:00:00Z"),
				CompletedAt: *mt("2026-03-31T06:00:05Z"), Verification: "gone"}
		}
		tenant.Status = v1alpha1.TenantStatus{
			Phase: v1alpha1.TenantAwaitingBackupExpiry, ObservedGeneration: 1,
			Conditions: []metav1.Condition{
				cond("Ready", metav1.ConditionFalse, "AwaitingBackupExpiry", "waiting for the backups to expire by 2026-06-29", "2026-03-31T06:00:05Z"),
				cond("BackupsHealthy", metav1.ConditionFalse, "Unreachable", "offsite-fra: dial tcp 10.0.0.9:443: connection refused", "2026-03-31T04:00:00Z"),
				cond("LegalHold", metav1.ConditionTrue, "LegalHoldActive", "case 2026/114 of the Amsterdam court", "2026-03-30T12:00:00Z"),
				cond("LiveDataPurged", metav1.ConditionTrue, "Purged", "database, role, Secrets and namespaces verified gone", "2026-03-31T06:00:05Z"),
			},
			Database: &v1alpha1.DatabaseStatus{Server: "pg-ams-1", Name: "tenant_kliniek_noord", Role: "tenant_kliniek_noord", OID: 16411},
			Backups: []v1alpha1.LocationBackupStatus{
				{Location: "primary-ams", Role: "Primary", RepositoryID: "b5bb221c", Snapshots: 180,
					Newest: mt("2026-03-30T02:13:00Z"), Oldest: mt("2026-01-01T02:13:00Z"), GoneBy: mt("2026-04-01T03:00:00Z"),
					NextRun: mt("2026-03-31T10:00:00Z"), LastCheck: mt("2026-03-29T03:00:00Z"), LastCheckSucceeded: &yes},
				{Location: "offsite-fra", Role: "Offsite", RepositoryID: "9e1f0a77", Snapshots: 178,
					Newest: mt("2026-03-29T05:00:00Z"), Oldest: mt("2026-01-02T05:00:00Z"), GoneBy: mt("2026-04-02T05:00:00Z"),
					NextRun: mt("2026-03-31T11:30:00Z"), LastCopy: mt("2026-03-29T05:00:00Z"), LastCheck: mt("2026-03-28T03:00:00Z"),
					LastCheckSucceeded: &no, LastError: "dial tcp 10.0.0.9:443: connection refused", LastErrorReason: "Unreachable"},
			},
			NextBackup: mt("2026-04-01T02:13:00Z"),
			LastDrill: &v1alpha1.RestoreDrillStatus{Time: *mt("2026-03-15T04:00:00Z"), Tables: 42, Snapshot: "4f0c9a1e", Succeeded: true,
				Duration: &metav1.Duration{Duration: 83 * time.Second}},
			Tasks: []v1alpha1.BackupTask{{Key: "Expiry/offsite-fra/2026-03-31T08:00:00Z", Kind: v1alpha1.TaskExpiry, Location: "offsite-fra",
				Slot: *mt("2026-03-31T08:00:00Z"), StartedAt: mt("2026-03-31T08:40:00Z"), Attempts: 2,
				LastError: "dial tcp 10.0.0.9:443: connection refused"}},
			Exit: &v1alpha1.TenantExitStatus{
				EndObservedAt: mt("2026-03-30T00:00:12Z"), DestructionNotBefore: mt("2026-03-31T00:00:12Z"),
				TerminatedAt:         mt("2026-03-30T00:00:12Z"),
				ExportRef:            &v1alpha1.ExitExportReference{Name: de.Name, UID: string(de.UID), Bag: "/exports/kliniek-noord-exit-20260330-000012.tar"},
				ExportAcknowledgedAt: mt("2026-03-30T15:00:00Z"), LiveDataPurgedAt: mt("2026-03-31T06:00:05Z"),
				BackupsGoneBy: mt("2026-04-02T05:00:00Z"),
				Step:          &v1alpha1.ExitStep{Action: "DisposeBackups", StartedAt: *mt("2026-03-31T06:00:06Z"), Attempts: 1},
				Destroyed: []v1alpha1.DestroyedLocation{destroyed("Database", "tenant_kliniek_noord"), destroyed("Role", "tenant_kliniek_noord"),
					destroyed("Secret", "custos-system/custos-db-kliniek-noord"), destroyed("Namespace", "kliniek-noord")},
			},
		}
		Expect(k8s.Status().Update(ctx, tenant)).To(Succeed())

		By("its DestructionCertificate, under the name the manager gives it, checked by custos")
		cert := &v1alpha1.DestructionCertificate{ObjectMeta: metav1.ObjectMeta{Name: tenant.CertificateName(),
			Labels: map[string]string{v1alpha1.LabelTenant: tenant.Name}}, Spec: v1alpha1.DestructionCertificateSpec{
			Tenant:     v1alpha1.CertifiedTenant{Name: tenant.Name, UID: string(tenant.UID), DisplayName: "Kliniek Noord"},
			ContractID: "VO-2024-017", DataController: tenant.Spec.DataController, IssuedAt: *mt("2026-03-31T07:00:00Z"),
			Methods:  []v1alpha1.SanitizationMethod{"Purge"},
			Subjects: []v1alpha1.CertificateSubject{{Name: "export/kliniek-noord.tar", SHA256: sum(bag)}},
			Envelope: v1alpha1.DSSEEnvelope{PayloadType: "application/vnd.in-toto+json", Payload: "e30=",
				Signatures: []v1alpha1.DSSESignature{{KeyID: strings.Repeat("a", 64), Sig: "c2ln"}}},
		}}
		Expect(k8s.Create(ctx, cert)).To(Succeed())
		cert.Status.Conditions = []metav1.Condition{{Type: "Verified", Status: metav1.ConditionTrue, Reason: "SignatureValid",
			Message: "signature checks with keyid aaaa…", LastTransitionTime: *mt("2026-03-31T07:00:01Z")}}
		Expect(k8s.Status().Update(ctx, cert)).To(Succeed())

		By("12 events.k8s.io/v1 Events about it, one about an earlier tenant of the same name, one about another tenant")
		event := func(name string, regarding corev1.ObjectReference, eventTime time.Time, reason, note string) {
			Expect(k8s.Create(ctx, &eventsv1.Event{ObjectMeta: metav1.ObjectMeta{Namespace: metav1.NamespaceDefault, Name: name},
				EventTime: metav1.NewMicroTime(eventTime), ReportingController: "custos-exit", ReportingInstance: "custos-7d9f",
				Action: "Expiry", Reason: reason, Note: note, Type: corev1.EventTypeNormal, Regarding: regarding})).To(Succeed())
		}
		ref := corev1.ObjectReference{APIVersion: v1alpha1.GroupVersion.String(), Kind: "Tenant", Name: tenant.Name, UID: tenant.UID}
		for i := 1; i <= 12; i++ {
			event(fmt.Sprintf("kliniek-noord.%02d", i), ref, readAt.Add(time.Duration(i-13)*time.Minute), "PhaseChanged",
				fmt.Sprintf("step %02d of the exit", i))
		}
		earlier := ref
		earlier.UID = "00000000-0000-4000-8000-000000000000"
		event("kliniek-noord.earlier", earlier, readAt.Add(-time.Minute), "Provisioned", "a tenant of the same name before")
		other := ref
		other.Name, other.UID = "kliniek-zuid", "11111111-0000-4000-8000-000000000000"
		event("kliniek-zuid.01", other, readAt.Add(-time.Minute), "Provisioned", "another tenant")
	}, NodeTimeout(120*time.Second))

	cli := func(args ...string) (int, string, string) {
		return runCLI(append(args, "--kubeconfig", kubeconfig)...)
	}

	It("prints phase, conditions, backups per location, drill, tasks, legal hold, exit, certificate and Events", func() {
		code, out, errOut := cli("status", "kliniek-noord")
		Expect(errOut).To(BeEmpty())
		Expect(code).To(Equal(0), out)
		Expect(out).To(HavePrefix("Tenant kliniek-noord (Kliniek Noord)\n"))
		Expect(out).To(MatchRegexp(`\n  phase +AwaitingBackupExpiry\n`))
		Expect(out).To(MatchRegexp(`\n  contract end +2026-03-30T00:00:00Z \(33h ago\)\n`))
		Expect(out).To(MatchRegexp(`\n  retention policy +daily-90d\n`))
		Expect(out).To(MatchRegexp(`\n  legal hold +case 2026/114 of the Amsterdam court, until 2026-06-01T00:00:00Z \(in 61d\)\n`))

		By("every condition with its status, reason, since and message")
		Expect(out).To(MatchRegexp(`\n  TYPE +STATUS +REASON +SINCE +MESSAGE\n`))
		Expect(out).To(MatchRegexp(`\n  Ready +False +AwaitingBackupExpiry +2026-03-31T06:00:05Z \(179m ago\) +waiting for the backups`))
		Expect(out).To(MatchRegexp(`\n  BackupsHealthy +False +Unreachable +2026-03-31T04:00:00Z \(5h ago\) +offsite-fra: dial tcp`))
		Expect(out).To(MatchRegexp(`\n  LegalHold +True +LegalHoldActive +`))
		Expect(out).To(MatchRegexp(`\n  LiveDataPurged +True +Purged +`))

		By("each location: role, snapshots, newest and oldest with ages, goneBy, next run, check, error")
		Expect(out).To(MatchRegexp(`\n  primary-ams +\(Primary\)\n    snapshots +180\n    newest +2026-03-30T02:13:00Z \(30h ago\)\n    oldest +2026-01-01T02:13:00Z \(89d ago\)\n    gone by +2026-04-01T03:00:00Z \(in 18h\)\n    next run +2026-03-31T10:00:00Z \(in 60m\)\n`))
		Expect(out).To(MatchRegexp(`\n    last check +2026-03-29T03:00:00Z \(2d6h ago\), succeeded\n`))
		Expect(out).To(MatchRegexp(`\n  offsite-fra +\(Offsite\)\n    snapshots +178\n    newest +2026-03-29T05:00:00Z \(2d4h ago\)\n`))
		Expect(out).To(MatchRegexp(`\n    last check +2026-03-28T03:00:00Z \(3d6h ago\), FAILED\n    last error +Unreachable: dial tcp 10.0.0.9:443: connection refused\n`))
		Expect(out).To(MatchRegexp(`\n  next backup +2026-04-01T02:13:00Z \(in 17h\)\n`))
		Expect(out).To(MatchRegexp(`\n  last drill +2026-03-15T04:00:00Z \(16d ago\), succeeded, 42 tables, restored in 1m23s, snapshot 4f0c9a1e\n`))
		Expect(out).To(MatchRegexp(`\n  Expiry +offsite-fra +2026-03-31T08:00:00Z \(60m ago\) +2 +dial tcp 10.0.0.9:443: connection refused\n`))

		By("the exit, its export's phase, the certificate's Verified condition")
		Expect(out).To(MatchRegexp(`\n  step +DisposeBackups, started 2026-03-31T06:00:06Z \(.+ ago\), attempt 1\n`))
		Expect(out).To(MatchRegexp(`\n  destruction not before +2026-03-31T00:00:12Z \(.+ ago\)\n`))
		Expect(out).To(MatchRegexp(`\n  export +DataExport kliniek-noord-exit-20260330-000012: Acknowledged\n`))
		Expect(out).To(MatchRegexp(`\n  backups gone by +2026-04-02T05:00:00Z \(in 44h\)\n`))
		Expect(out).To(MatchRegexp(`\n  destroyed +4 location\(s\) verified gone\n`))
		Expect(out).To(MatchRegexp(`\n  name +DestructionCertificate ` + tenant.CertificateName() + `\n`))
		Expect(out).To(MatchRegexp(`\n  Verified +True, SignatureValid: signature checks with keyid aaaa…\n`))

		By("the last 10 of its 12 Events, newest last; none of the earlier tenant's or another's")
		Expect(out).To(ContainSubstring("\nEvents (the last 10 of 12, newest last)\n"))
		Expect(out).NotTo(ContainSubstring("step 02 of the exit"))
		Expect(out).To(MatchRegexp(`\n  2026-03-31T08:50:00Z \(10m ago\) +Normal +PhaseChanged +Expiry +step 03 of the exit\n`))
		Expect(out).To(MatchRegexp(`step 11 of the exit\n  2026-03-31T08:59:00Z \(60s ago\) +Normal +PhaseChanged +Expiry +step 12 of the exit\n$`))
		Expect(out).NotTo(ContainSubstring("a tenant of the same name before"))
		Expect(out).NotTo(ContainSubstring("another tenant"))

		code, out, _ = cli("status", "kliniek-noord", "--events", "2")
		Expect(code).To(Equal(0), out)
		Expect(out).To(ContainSubstring("\nEvents (the last 2 of 12, newest last)\n"))
		Expect(out).NotTo(ContainSubstring("step 10 of the exit"))
		Expect(out).To(ContainSubstring("step 11 of the exit"))
	})

	It("prints the same as one JSON document with -o json", func() {
		code, out, errOut := cli("status", "kliniek-noord", "-o", "json")
		Expect(errOut).To(BeEmpty())
		Expect(code).To(Equal(0), out)

		var doc map[string]any // as a script reads it: by field name
		Expect(json.Unmarshal([]byte(out), &doc)).To(Succeed(), out)
		Expect(doc).To(HaveKeyWithValue("tenant", "kliniek-noord"))
		Expect(doc).To(HaveKeyWithValue("uid", string(tenant.UID)))
		Expect(doc).To(HaveKeyWithValue("phase", "AwaitingBackupExpiry"))
		Expect(doc).To(HaveKeyWithValue("contractEnd", "2026-03-30T00:00:00Z"))
		Expect(doc).To(HaveKeyWithValue("retentionPolicy", "daily-90d"))
		Expect(doc).To(HaveKeyWithValue("readAt", "2026-03-31T09:00:00Z"))
		Expect(doc).To(HaveKeyWithValue("nextBackup", "2026-04-01T02:13:00Z"))
		Expect(doc).To(HaveKeyWithValue("legalHold", HaveKeyWithValue("reason", "case 2026/114 of the Amsterdam court")))
		Expect(doc).To(HaveKeyWithValue("readErrors", BeEmpty()))

		var rep statusReport
		Expect(json.Unmarshal([]byte(out), &rep)).To(Succeed())
		reasons := map[string]string{}
		for _, c := range rep.Conditions {
			reasons[c.Type] = c.Status + "/" + c.Reason
		}
		Expect(reasons).To(Equal(map[string]string{"Ready": "False/AwaitingBackupExpiry", "BackupsHealthy": "False/Unreachable",
			"LegalHold": "True/LegalHoldActive", "LiveDataPurged": "True/Purged"}))
		Expect(rep.Backups).To(HaveLen(2))
		Expect(rep.Backups[0].Location).To(Equal("primary-ams"))
		Expect(*rep.Backups[0].Newest).To(Equal(at("2026-03-30T02:13:00Z")))
		Expect(*rep.Backups[0].LastCheckSucceeded).To(BeTrue())
		Expect(rep.Backups[1].Location).To(Equal("offsite-fra"))
		Expect(*rep.Backups[1].Newest).To(Equal(at("2026-03-29T05:00:00Z")))
		Expect(rep.Backups[1].LastErrorReason).To(Equal("Unreachable"))
		Expect(*rep.Backups[1].LastCheckSucceeded).To(BeFalse())
		Expect(rep.LastDrill).To(HaveField("Tables", int32(42)))
		Expect(rep.LastDrill).To(HaveField("DurationSeconds", 83.0))
		Expect(rep.Tasks).To(ConsistOf(HaveField("Attempts", int32(2))))
		Expect(rep.Exit).NotTo(BeNil())
		Expect(rep.Exit.Step).To(HaveField("Action", "DisposeBackups"))
		Expect(rep.Exit.Export).To(Equal(&statusExitExport{Name: "kliniek-noord-exit-20260330-000012",
			UID: rep.Exit.Export.UID, Bag: "/exports/kliniek-noord-exit-20260330-000012.tar", Found: true,
			Phase: "Acknowledged", UIDMatches: true}))
		Expect(rep.Exit.Export.UID).NotTo(BeEmpty())
		Expect(rep.Exit.Destroyed).To(Equal(4))
		Expect(*rep.Exit.BackupsGoneBy).To(Equal(at("2026-04-02T05:00:00Z")))
		Expect(rep.Certificate).To(Equal(&statusCert{Name: tenant.CertificateName(), IssuedAt: rep.Certificate.IssuedAt,
			Verified: "True", VerifiedReason: "SignatureValid", VerifiedMessage: "signature checks with keyid aaaa…"}))
		Expect(rep.EventsTotal).To(Equal(12))
		Expect(rep.Events).To(HaveLen(10))
		Expect(rep.Events[0].Message).To(Equal("step 03 of the exit"))
		Expect(rep.Events[9].Message).To(Equal("step 12 of the exit"))
		Expect(rep.Events[9].ReportingController).To(Equal("custos-exit"))
		Expect(rep.Events[9].Namespace).To(Equal("default"))
	})

	It("finds a certificate by its label, and says when the exit's DataExport is gone", func() {
		t := &v1alpha1.Tenant{ObjectMeta: metav1.ObjectMeta{Name: "tandarts"}, Spec: tenant.Spec}
		t.Spec.DisplayName, t.Spec.LegalHold = "Tandarts Zuid", nil
		t.Spec.Namespaces = v1alpha1.TenantNamespaces{Names: []string{"tandarts"}}
		Expect(k8s.Create(ctx, t)).To(Succeed())
		t.Status = v1alpha1.TenantStatus{Phase: v1alpha1.TenantDestroyed, Exit: &v1alpha1.TenantExitStatus{
			ExportRef: &v1alpha1.ExitExportReference{Name: "tandarts-exit-20260330-000000", UID: "22222222-0000-4000-8000-000000000000"}}}
		Expect(k8s.Status().Update(ctx, t)).To(Succeed())
		cert := &v1alpha1.DestructionCertificate{ObjectMeta: metav1.ObjectMeta{Name: "tandarts-by-label",
			Labels: map[string]string{v1alpha1.LabelTenant: "tandarts"}}, Spec: v1alpha1.DestructionCertificateSpec{
			Tenant: v1alpha1.CertifiedTenant{Name: "tandarts", UID: string(t.UID)}, ContractID: "VO-1", DataController: t.Spec.DataController,
			IssuedAt: *mt("2026-03-31T07:00:00Z"), Methods: []v1alpha1.SanitizationMethod{"Purge"},
			Subjects: []v1alpha1.CertificateSubject{{Name: "x", SHA256: sum(bag)}},
			Envelope: v1alpha1.DSSEEnvelope{PayloadType: "application/vnd.in-toto+json", Payload: "e30=",
				Signatures: []v1alpha1.DSSESignature{{KeyID: strings.Repeat("b", 64), Sig: "c2ln"}}}}}
		Expect(k8s.Create(ctx, cert)).To(Succeed())

		code, out, _ := cli("status", "tandarts")
		Expect(code).To(Equal(0), out)
		Expect(out).To(MatchRegexp(`\n  phase +Destroyed\n`))
		Expect(out).To(MatchRegexp(`\n  export +DataExport tandarts-exit-20260330-000000: does not exist\n`))
		Expect(out).To(MatchRegexp(`\n  name +DestructionCertificate tandarts-by-label\n`))
		Expect(out).To(MatchRegexp(`\n  Verified +Unknown\n`))
		Expect(out).To(ContainSubstring("\nEvents (newest last)\n  none"))
		Expect(out).To(ContainSubstring("\nTasks running\n  none\n"))
	})

	It("exits 2 naming a tenant that does not exist, and on usage errors", func() {
		code, out, errOut := cli("status", "nobody")
		Expect(code).To(Equal(2))
		Expect(out).To(BeEmpty())
		Expect(errOut).To(ContainSubstring(`no Tenant "nobody" in this cluster`))

		code, out, errOut = cli("status", "nobody", "-o", "json")
		Expect(code).To(Equal(2))
		Expect(out).To(BeEmpty())
		Expect(errOut).To(ContainSubstring(`"nobody"`))

		code, _, errOut = runCLI("status", "kliniek-noord", "--kubeconfig", filepath.Join(GinkgoT().TempDir(), "missing"))
		Expect(code).To(Equal(2))
		Expect(errOut).To(ContainSubstring("no cluster to talk to"))

		for _, args := range [][]string{{"status"}, {"status", "a", "b"}, {"status", "a", "-o", "yaml"}, {"status", "a", "--events", "-1"}} {
			code, _, errOut := runCLI(args...)
			Expect(code).To(Equal(2), "%v", args)
			Expect(errOut).NotTo(BeEmpty(), "%v", args)
		}
	})
})

var _ = Describe("custos help status", func() {
	It("prints the verb's usage, and the top-level help lists it", func() {
		code, out, _ := runCLI("help", "status")
		Expect(code).To(Equal(0))
		Expect(out).To(HavePrefix("Usage: custos status <tenant> [-o json]"))
		Expect(out).To(ContainSubstring("-o json prints one JSON document"))
		Expect(out).To(ContainSubstring("readErrors"))

		code, _, errOut := runCLI("status", "--help")
		Expect(code).To(Equal(0))
		Expect(errOut).To(HavePrefix("Usage: custos status <tenant>"))

		code, out, _ = runCLI("help")
		Expect(code).To(Equal(0))
		Expect(out).To(ContainSubstring("\n  custos status <tenant> [-o json] [--events N]\n"))

		code, out, _ = runCLI("help", "audit")
		Expect(code).To(Equal(0))
		Expect(out).To(HavePrefix("Usage: custos audit <tenant>"))
	})
})
