package local

import (
	"fmt"
	"path/filepath"
	"strings"
	"sync/atomic"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/custos-io/custos/internal/testharness"
)

// loadSamples reads every object in config/samples, keyed by kind (a file may hold several documents).
func loadSamples() map[string][]*unstructured.Unstructured {
	root, err := testharness.RepoRoot()
	Expect(err).NotTo(HaveOccurred())
	files, err := filepath.Glob(filepath.Join(root, "config", "samples", "custos_*.yaml"))
	Expect(err).NotTo(HaveOccurred())
	Expect(files).NotTo(BeEmpty())
	out := map[string][]*unstructured.Unstructured{}
	for _, f := range files {
		objs, err := testharness.ReadManifests(f)
		Expect(err).NotTo(HaveOccurred(), f)
		for _, u := range objs {
			out[u.GetKind()] = append(out[u.GetKind()], u)
		}
	}
	return out
}

var nameSeq atomic.Int64

// sample returns a fresh copy of the first sample of kind with a unique name.
func sample(kind string) *unstructured.Unstructured {
	s := loadSamples()[kind]
	Expect(s).NotTo(BeEmpty(), "no sample of kind %s in config/samples", kind)
	u := s[0].DeepCopy()
	u.SetName(fmt.Sprintf("%s-v%d", strings.ToLower(kind)[:4], nameSeq.Add(1)))
	return u
}

func set(value any, path ...string) func(*unstructured.Unstructured) {
	return func(u *unstructured.Unstructured) {
		Expect(unstructured.SetNestedField(u.Object, value, path...)).To(Succeed())
	}
}

func del(path ...string) func(*unstructured.Unstructured) {
	return func(u *unstructured.Unstructured) { unstructured.RemoveNestedField(u.Object, path...) }
}

func setName(name string) func(*unstructured.Unstructured) {
	return func(u *unstructured.Unstructured) { u.SetName(name) }
}

func all(fs ...func(*unstructured.Unstructured)) func(*unstructured.Unstructured) {
	return func(u *unstructured.Unstructured) {
		for _, f := range fs {
			f(u)
		}
	}
}

// invalid is one manifest the API server must refuse: the sample of kind, changed by mutate at creation, or
// created valid and then changed by update. want is part of the message a person reads.
type invalid struct {
	kind   string
	mutate func(*unstructured.Unstructured)
	update func(*unstructured.Unstructured)
	want   string
}

func expectRejected(err error, want string) {
	Expect(err).To(HaveOccurred(), "the API server accepted a manifest it must refuse (want %q)", want)
	Expect(apierrors.IsInvalid(err)).To(BeTrue(), "want an Invalid error, got: %v", err)
	Expect(err.Error()).To(ContainSubstring(want))
}

var _ = Describe("CRD validation by the real API server", Label("integration", "validation"), func() {
	It("accepts every sample in config/samples", func(ctx SpecContext) {
		samples := loadSamples()
		Expect(samples).To(HaveKey("Tenant"))
		Expect(samples).To(HaveKey("RetentionPolicy"))
		Expect(samples).To(HaveKey("DataExport"))
		Expect(samples).To(HaveKey("BackupLocation"))
		Expect(samples).To(HaveKey("DatabaseServer"))
		Expect(samples).To(HaveKey("DestructionCertificate"))
		n := 0
		for _, objs := range samples {
			for _, o := range objs {
				u := o.DeepCopy()
				Expect(k8s.Create(ctx, u)).To(Succeed(), "sample %s %s", u.GetKind(), u.GetName())
				got := &unstructured.Unstructured{}
				got.SetGroupVersionKind(u.GroupVersionKind())
				Expect(k8s.Get(ctx, keyOf(u), got)).To(Succeed())
				Expect(got.Object["spec"]).NotTo(BeNil())
				n++
			}
		}
		Expect(n).To(BeNumerically(">=", 8))
	})

	It("fills in the documented defaults", func(ctx SpecContext) {
		t := sample("Tenant")
		unstructured.RemoveNestedField(t.Object, "spec", "namespaces")
		unstructured.RemoveNestedField(t.Object, "spec", "exit")
		unstructured.RemoveNestedField(t.Object, "spec", "database", "connectionLimit")
		Expect(k8s.Create(ctx, t)).To(Succeed())
		count, _, _ := unstructured.NestedInt64(t.Object, "spec", "namespaces", "count")
		Expect(count).To(Equal(int64(1)))
		dataReturn, _, _ := unstructured.NestedString(t.Object, "spec", "exit", "dataReturn")
		Expect(dataReturn).To(Equal("Export"))
		backups, _, _ := unstructured.NestedString(t.Object, "spec", "exit", "backups")
		Expect(backups).To(Equal("Expire"))
		limit, _, _ := unstructured.NestedInt64(t.Object, "spec", "database", "connectionLimit")
		Expect(limit).To(Equal(int64(20)))

		p := sample("RetentionPolicy")
		p.Object["spec"] = map[string]any{
			"primary": map[string]any{"name": "a"}, "keepWithin": "30d", "allowedJurisdictions": []any{"EEA"},
		}
		Expect(k8s.Create(ctx, p)).To(Succeed())
		cron, _, _ := unstructured.NestedString(p.Object, "spec", "schedule", "cron")
		Expect(cron).To(Equal("@daily"))
		subset, _, _ := unstructured.NestedString(p.Object, "spec", "check", "readDataSubset")
		Expect(subset).To(Equal("5%"))
		expire, _, _ := unstructured.NestedString(p.Object, "spec", "export", "expireAfterDelivery")
		Expect(expire).To(Equal("10d"))
		drill, _, _ := unstructured.NestedBool(p.Object, "spec", "restoreDrill", "enabled")
		Expect(drill).To(BeTrue())

		d := sample("DatabaseServer")
		unstructured.RemoveNestedField(d.Object, "spec", "sslMode")
		unstructured.RemoveNestedField(d.Object, "spec", "caSecretRef")
		Expect(k8s.Create(ctx, d)).To(Succeed())
		mode, _, _ := unstructured.NestedString(d.Object, "spec", "sslMode")
		Expect(mode).To(Equal("verify-full"))
	})

	DescribeTable("refuses an invalid manifest with a message a person can act on",
		func(ctx SpecContext, c invalid) {
			u := sample(c.kind)
			if c.mutate != nil {
				c.mutate(u)
			}
			if c.update == nil {
				expectRejected(k8s.Create(ctx, u), c.want)
				return
			}
			Expect(k8s.Create(ctx, u)).To(Succeed())
			c.update(u)
			expectRejected(k8s.Update(ctx, u), c.want)
		},
		invalidManifests(),
	)
})

// invalidManifests is one entry per validation rule.
func invalidManifests() []TableEntry {
	long := strings.Repeat("a", 49)
	e := func(desc string, c invalid) TableEntry { return Entry(desc, c) }
	return []TableEntry{
		// Tenant
		e("Tenant: name longer than 48 characters", invalid{kind: "Tenant", mutate: setName(long),
			want: "a Tenant name must be at most 48 characters"}),
		e("Tenant: name starting with a digit", invalid{kind: "Tenant", mutate: setName("1clinic"),
			want: "a Tenant name must start with a letter"}),
		e("Tenant: name with a dot", invalid{kind: "Tenant", mutate: setName("clinic.zuid"),
			want: "a Tenant name must start with a letter"}),
		e("Tenant: displayName missing", invalid{kind: "Tenant", mutate: del("spec", "displayName"),
			want: "spec.displayName: Required value"}),
		e("Tenant: displayName empty", invalid{kind: "Tenant", mutate: set("", "spec", "displayName"),
			want: "spec.displayName in body should be at least 1 chars long"}),
		e("Tenant: contract end before start", invalid{kind: "Tenant", mutate: set("2025-12-31T00:00:00Z", "spec", "contract", "end"),
			want: "contract.end must be after contract.start"}),
		e("Tenant: contract end equal to start", invalid{kind: "Tenant", mutate: set("2026-01-01T00:00:00Z", "spec", "contract", "end"),
			want: "contract.end must be after contract.start"}),
		e("Tenant: contract start missing", invalid{kind: "Tenant", mutate: del("spec", "contract", "start"),
			want: "spec.contract.start: Required value"}),
		e("Tenant: contract id with spaces", invalid{kind: "Tenant", mutate: set("DPA 42", "spec", "contract", "id"),
			want: "spec.contract.id in body should match"}),
		e("Tenant: data controller without contact", invalid{kind: "Tenant", mutate: del("spec", "dataController", "contact"),
			want: "spec.dataController.contact: Required value"}),
		e("Tenant: data controller email malformed", invalid{kind: "Tenant", mutate: set("privacy-at-example", "spec", "dataController", "email"),
			want: "spec.dataController.email in body should match"}),
		e("Tenant: retentionPolicyRef missing", invalid{kind: "Tenant", mutate: del("spec", "retentionPolicyRef"),
			want: "spec.retentionPolicyRef: Required value"}),
		e("Tenant: namespaces names and count", invalid{kind: "Tenant", mutate: set(int64(2), "spec", "namespaces", "count"),
			want: "set either namespaces.names or namespaces.count, not both"}),
		e("Tenant: namespaces empty", invalid{kind: "Tenant", mutate: set(map[string]any{}, "spec", "namespaces"),
			want: "set namespaces.names or namespaces.count"}),
		e("Tenant: namespace count zero", invalid{kind: "Tenant", mutate: set(map[string]any{"count": int64(0)}, "spec", "namespaces"),
			want: "spec.namespaces.count in body should be greater than or equal to 1"}),
		e("Tenant: namespace count 17", invalid{kind: "Tenant", mutate: set(map[string]any{"count": int64(17)}, "spec", "namespaces"),
			want: "spec.namespaces.count in body should be less than or equal to 16"}),
		e("Tenant: namespace name not a DNS label", invalid{kind: "Tenant", mutate: set([]any{"Clinic_Zuid"}, "spec", "namespaces", "names"),
			want: "spec.namespaces.names[0] in body should match"}),
		e("Tenant: namespace listed twice", invalid{kind: "Tenant", mutate: set([]any{"zuid-a", "zuid-a"}, "spec", "namespaces", "names"),
			want: "Duplicate value"}),
		e("Tenant: ServiceAccount owner without namespace", invalid{kind: "Tenant",
			mutate: set([]any{map[string]any{"kind": "ServiceAccount", "name": "deployer"}}, "spec", "owners"),
			want:   "namespace is required for a ServiceAccount owner"}),
		e("Tenant: User owner with namespace", invalid{kind: "Tenant",
			mutate: set([]any{map[string]any{"kind": "User", "name": "alice", "namespace": "x"}}, "spec", "owners"),
			want:   "namespace is required for a ServiceAccount owner and not allowed for a User or Group"}),
		e("Tenant: owner of unknown kind", invalid{kind: "Tenant",
			mutate: set([]any{map[string]any{"kind": "Robot", "name": "r2"}}, "spec", "owners"),
			want:   `Unsupported value: "Robot"`}),
		e("Tenant: database name starting with pg_", invalid{kind: "Tenant", mutate: set("pg_clinic", "spec", "database", "name"),
			want: "database.name must not start with pg_"}),
		e("Tenant: database name of a system database", invalid{kind: "Tenant", mutate: set("template1", "spec", "database", "name"),
			want: "database.name must not be a PostgreSQL system database"}),
		e("Tenant: database name longer than 63 bytes", invalid{kind: "Tenant", mutate: set(strings.Repeat("d", 64), "spec", "database", "name"),
			want: "spec.database.name: Too long"}),
		e("Tenant: database name with a dash", invalid{kind: "Tenant", mutate: set("clinic-zuid", "spec", "database", "name"),
			want: "spec.database.name in body should match"}),
		e("Tenant: database serverRef missing", invalid{kind: "Tenant", mutate: del("spec", "database", "serverRef"),
			want: "spec.database.serverRef: Required value"}),
		e("Tenant: extension name with a space", invalid{kind: "Tenant", mutate: set([]any{"post gis"}, "spec", "database", "extensions"),
			want: "spec.database.extensions[0] in body should match"}),
		e("Tenant: connection limit zero", invalid{kind: "Tenant", mutate: set(int64(0), "spec", "database", "connectionLimit"),
			want: "spec.database.connectionLimit in body should be greater than or equal to 1"}),
		e("Tenant: unknown dataReturn", invalid{kind: "Tenant", mutate: set("Email", "spec", "exit", "dataReturn"),
			want: `spec.exit.dataReturn: Unsupported value: "Email"`}),
		e("Tenant: unknown backup disposal", invalid{kind: "Tenant", mutate: set("Burn", "spec", "exit", "backups"),
			want: `spec.exit.backups: Unsupported value: "Burn"`}),
		e("Tenant: legal hold without reason", invalid{kind: "Tenant", mutate: set(map[string]any{"until": "2027-01-01T00:00:00Z"}, "spec", "legalHold"),
			want: "spec.legalHold.reason: Required value"}),
		e("Tenant: empty quota", invalid{kind: "Tenant", mutate: set(map[string]any{}, "spec", "quota", "hard"),
			want: "spec.quota.hard in body should have at least 1 properties"}),
		e("Tenant: empty limits", invalid{kind: "Tenant", mutate: set(map[string]any{}, "spec", "limits"),
			want: "spec.limits in body should have at least 1 properties"}),
		e("Tenant: database name changed", invalid{kind: "Tenant", update: set("tenant_other", "spec", "database", "name"),
			want: "database.name is immutable"}),
		e("Tenant: database server changed", invalid{kind: "Tenant", update: set("pg-fra-1", "spec", "database", "serverRef", "name"),
			want: "database.serverRef is immutable"}),

		e("Tenant: a namespace removed", invalid{kind: "Tenant", update: set([]any{"clinic-zuid"}, "spec", "namespaces", "names"),
			want: "namespaces cannot be removed from a Tenant"}),

		// RetentionPolicy
		e("RetentionPolicy: offsite equals primary", invalid{kind: "RetentionPolicy", mutate: set("primary-ams", "spec", "offsite", "name"),
			want: "offsite must name a different BackupLocation than primary"}),
		e("RetentionPolicy: keepWithin zero", invalid{kind: "RetentionPolicy", mutate: set("0d", "spec", "keepWithin"),
			want: `spec.keepWithin: Invalid value: "0d": must be longer than zero`}),
		e("RetentionPolicy: keepWithin in months", invalid{kind: "RetentionPolicy", mutate: set("3mo", "spec", "keepWithin"),
			want: "must be a duration in days, hours, minutes and seconds"}),
		e("RetentionPolicy: keepWithin negative", invalid{kind: "RetentionPolicy", mutate: set("-90d", "spec", "keepWithin"),
			want: "must be a duration in days, hours, minutes and seconds"}),
		e("RetentionPolicy: keepWithin missing", invalid{kind: "RetentionPolicy", mutate: del("spec", "keepWithin"),
			want: "spec.keepWithin: Required value"}),
		e("RetentionPolicy: cron in words", invalid{kind: "RetentionPolicy", mutate: set("every day at one", "spec", "schedule", "cron"),
			want: "must be a five-field cron expression"}),
		e("RetentionPolicy: cron with four fields", invalid{kind: "RetentionPolicy", mutate: set("0 1 * *", "spec", "schedule", "cron"),
			want: "must be a five-field cron expression"}),
		e("RetentionPolicy: cron macro unknown", invalid{kind: "RetentionPolicy", mutate: set("@fortnightly", "spec", "expirySchedule", "cron"),
			want: "must be a five-field cron expression"}),
		e("RetentionPolicy: time zone with a space", invalid{kind: "RetentionPolicy", mutate: set("Mars/Olympus Mons", "spec", "schedule", "timeZone"),
			want: "spec.schedule.timeZone in body should match"}),
		e("RetentionPolicy: hourly with a jitter of hours", invalid{kind: "RetentionPolicy",
			mutate: set(map[string]any{"cron": "@hourly", "jitter": "2h"}, "spec", "copySchedule"),
			want:   "jitter must be shorter than an hour for an @hourly schedule"}),
		e("RetentionPolicy: no allowed jurisdiction", invalid{kind: "RetentionPolicy", mutate: set([]any{}, "spec", "allowedJurisdictions"),
			want: "spec.allowedJurisdictions in body should have at least 1 items"}),
		e("RetentionPolicy: unknown jurisdiction", invalid{kind: "RetentionPolicy", mutate: set([]any{"XX"}, "spec", "allowedJurisdictions"),
			want: `Unsupported value: "XX"`}),
		e("RetentionPolicy: jurisdiction by name", invalid{kind: "RetentionPolicy", mutate: set([]any{"Netherlands"}, "spec", "allowedJurisdictions"),
			want: `Unsupported value: "Netherlands"`}),
		e("RetentionPolicy: read-data subset over 100%", invalid{kind: "RetentionPolicy", mutate: set("150%", "spec", "check", "readDataSubset"),
			want: "readDataSubset must be a percentage between 1% and 100%"}),
		e("RetentionPolicy: export lifetime in words", invalid{kind: "RetentionPolicy", mutate: set("10 days", "spec", "export", "expireAfterDelivery"),
			want: "must be a duration in days, hours, minutes and seconds"}),
		e("RetentionPolicy: snapshot age in years", invalid{kind: "RetentionPolicy", mutate: set("1y", "spec", "maxSnapshotAge"),
			want: "must be a duration in days, hours, minutes and seconds"}),
		e("RetentionPolicy: primary missing", invalid{kind: "RetentionPolicy", mutate: del("spec", "primary"),
			want: "spec.primary: Required value"}),

		// BackupLocation
		e("BackupLocation: relative path", invalid{kind: "BackupLocation", mutate: set("backups/custos", "spec", "url"),
			want: "url must be an absolute path (/…), a rest-server URL"}),
		e("BackupLocation: unsupported scheme", invalid{kind: "BackupLocation", mutate: set("ftp://backup.example.eu/", "spec", "url"),
			want: "url must be an absolute path (/…), a rest-server URL"}),
		e("BackupLocation: dot-dot segment", invalid{kind: "BackupLocation", mutate: set("/var/lib/custos/../../etc", "spec", "url"),
			want: "url must not contain '..' path segments"}),
		e("BackupLocation: credentials in the URL", invalid{kind: "BackupLocation", mutate: set("rest:https://user:secret@backup.example.eu/", "spec", "url"),
			want: "url must not contain credentials"}),
		e("BackupLocation: jurisdiction missing", invalid{kind: "BackupLocation", mutate: del("spec", "jurisdiction"),
			want: "spec.jurisdiction: Required value"}),
		e("BackupLocation: jurisdiction in lowercase", invalid{kind: "BackupLocation", mutate: set("nl", "spec", "jurisdiction"),
			want: `spec.jurisdiction: Unsupported value: "nl"`}),
		e("BackupLocation: Secret name not a DNS name", invalid{kind: "BackupLocation", mutate: set(map[string]any{"name": "Bad_Name"}, "spec", "credentialsSecretRef"),
			want: "spec.credentialsSecretRef.name in body should match"}),
		e("BackupLocation: url changed", invalid{kind: "BackupLocation", update: set("/srv/elsewhere", "spec", "url"),
			want: "url is immutable"}),

		// DatabaseServer
		e("DatabaseServer: port out of range", invalid{kind: "DatabaseServer", mutate: set(int64(70000), "spec", "port"),
			want: "spec.port in body should be less than or equal to 65535"}),
		e("DatabaseServer: unknown sslMode", invalid{kind: "DatabaseServer", mutate: set("prefer", "spec", "sslMode"),
			want: `spec.sslMode: Unsupported value: "prefer"`}),
		e("DatabaseServer: CA without verification", invalid{kind: "DatabaseServer", mutate: set("disable", "spec", "sslMode"),
			want: "caSecretRef is only used with sslMode verify-ca or verify-full"}),
		e("DatabaseServer: admin Secret missing", invalid{kind: "DatabaseServer", mutate: del("spec", "adminCredentialsSecretRef"),
			want: "spec.adminCredentialsSecretRef: Required value"}),
		e("DatabaseServer: host with a space", invalid{kind: "DatabaseServer", mutate: set("db server", "spec", "host"),
			want: "spec.host in body should match"}),
		e("DatabaseServer: jurisdiction missing", invalid{kind: "DatabaseServer", mutate: del("spec", "jurisdiction"),
			want: "spec.jurisdiction: Required value"}),

		// DataExport
		e("DataExport: relative delivery path", invalid{kind: "DataExport", mutate: set("exports", "spec", "delivery", "filesystem", "path"),
			want: "delivery.filesystem.path must be an absolute path"}),
		e("DataExport: delivery path escaping with ..", invalid{kind: "DataExport", mutate: set("/var/lib/custos/exports/../../..", "spec", "delivery", "filesystem", "path"),
			want: "delivery.filesystem.path must not contain '..' segments"}),
		e("DataExport: receipt not a sha256", invalid{kind: "DataExport", mutate: set(map[string]any{"sha256": "ABC123"}, "spec", "receipt"),
			want: "spec.receipt.sha256 in body should match"}),
		e("DataExport: nothing included", invalid{kind: "DataExport",
			mutate: set(map[string]any{"database": false, "kubernetesObjects": false}, "spec", "include"),
			want:   "include at least one of database and kubernetesObjects"}),
		e("DataExport: zero lifetime", invalid{kind: "DataExport", mutate: set("0h", "spec", "expireAfterDelivery"),
			want: "must be longer than zero"}),
		e("DataExport: tenant changed", invalid{kind: "DataExport", update: set("clinic-noord", "spec", "tenantRef", "name"),
			want: "tenantRef is immutable"}),
		e("DataExport: delivery changed", invalid{kind: "DataExport", update: set("/srv/other", "spec", "delivery", "filesystem", "path"),
			want: "include and delivery are immutable once the export is requested"}),
		e("DataExport: receipt removed", invalid{kind: "DataExport",
			mutate: set(map[string]any{"sha256": strings.Repeat("a", 64)}, "spec", "receipt"),
			update: del("spec", "receipt"),
			want:   "receipt cannot be removed once given"}),

		// DestructionCertificate
		e("DestructionCertificate: edited after issue", invalid{kind: "DestructionCertificate", update: set("Somebody else", "spec", "dataController", "name"),
			want: "a DestructionCertificate is immutable"}),
		e("DestructionCertificate: unknown method", invalid{kind: "DestructionCertificate", mutate: set([]any{"Shredder"}, "spec", "methods"),
			want: `Unsupported value: "Shredder"`}),
		e("DestructionCertificate: no method", invalid{kind: "DestructionCertificate", mutate: set([]any{}, "spec", "methods"),
			want: "spec.methods in body should have at least 1 items"}),
		e("DestructionCertificate: subject digest malformed", invalid{kind: "DestructionCertificate",
			mutate: set([]any{map[string]any{"name": "inventory.json", "sha256": "xyz"}}, "spec", "subjects"),
			want:   "spec.subjects[0].sha256 in body should match"}),
		e("DestructionCertificate: wrong payload type", invalid{kind: "DestructionCertificate", mutate: set("text/plain", "spec", "envelope", "payloadType"),
			want: `spec.envelope.payloadType: Unsupported value: "text/plain"`}),
		e("DestructionCertificate: unsigned", invalid{kind: "DestructionCertificate", mutate: set([]any{}, "spec", "envelope", "signatures"),
			want: "spec.envelope.signatures in body should have at least 1 items"}),
	}
}
