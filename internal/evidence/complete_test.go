package evidence

import (
	"crypto/ed25519"
	"strings"
	"time"

	g "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1alpha1 "github.com/custos-io/custos/api/v1alpha1"
)

var _ = g.Describe("CheckComplete", func() {
	g.It("accepts the complete fixture (after Normalize fills in the types)", func() {
		Expect(CheckComplete(Normalize(complete()))).To(BeEmpty())
	})

	g.DescribeTable("names what is missing or wrong",
		func(mutate func(st *Statement), want string) {
			st := Normalize(complete())
			mutate(&st)
			Expect(CheckComplete(st)).To(ContainElement(ContainSubstring(want)))
		},
		g.Entry("no locations", func(st *Statement) { st.Predicate.Locations = nil }, "no locations"),
		g.Entry("a location not verified", func(st *Statement) {
			st.Predicate.Locations[2].Verification.Result = ResultFailed
		}, `location 3 (repository 3f2a9c (rest:https://backup-ams.example/clinic-0b6f3c2e)): verification result is "Failed", not "Verified"`),
		g.Entry("a location without verification result", func(st *Statement) {
			st.Predicate.Locations[0].Verification.Result = ""
		}, `verification result is "", not "Verified"`),
		g.Entry("empty method", func(st *Statement) { st.Predicate.Locations[1].Method = "" }, "location 2 (namespace clinic (UID 4c1d…)): method is empty"),
		g.Entry("unknown method", func(st *Statement) { st.Predicate.Locations[1].Method = "Destroy" }, `method "Destroy" is not Clear or Purge`),
		g.Entry("unknown kind", func(st *Statement) { st.Predicate.Locations[1].Kind = "volume" }, `kind "volume" is not`),
		g.Entry("missing start", func(st *Statement) { st.Predicate.Locations[0].StartedAt = time.Time{} }, "startedAt is missing"),
		g.Entry("missing completion", func(st *Statement) { st.Predicate.Locations[0].CompletedAt = time.Time{} }, "completedAt is missing"),
		g.Entry("completion before start", func(st *Statement) {
			st.Predicate.Locations[0].CompletedAt = st.Predicate.Locations[0].StartedAt.Add(-time.Second)
		}, "is before startedAt"),
		g.Entry("completion after issue", func(st *Statement) {
			st.Predicate.Locations[0].CompletedAt = st.Predicate.IssuedAt.Add(time.Hour)
		}, "is after issuedAt"),
		g.Entry("no technique", func(st *Statement) { st.Predicate.Locations[0].Technique = "" }, "technique is empty"),
		g.Entry("no tool", func(st *Statement) { st.Predicate.Locations[0].Tool.Name = "" }, "tool.name is empty"),
		g.Entry("no verification method", func(st *Statement) { st.Predicate.Locations[0].Verification.Method = "" }, "verification.method is empty"),
		g.Entry("credentials in a repository URL", func(st *Statement) {
			st.Predicate.Locations[2].Identifier = "3f2a9c (s3:https://AKIA:secret@s3.example/bucket)"
		}, "location 3 (repository): identifier contains credentials"),
		g.Entry("export digest differs from its subject", func(st *Statement) {
			st.Predicate.Export.SHA256 = digest("another bag")
		}, "subject digest sha256:"+digest("bag")+" differs from export.sha256 "+digest("another bag")),
		g.Entry("export not a subject", func(st *Statement) { st.Subject = st.Subject[1:] }, "is not among the subjects"),
		g.Entry("export neither acknowledged nor timed out", func(st *Statement) {
			st.Predicate.Export.AcknowledgedAt = time.Time{}
		}, "neither acknowledged nor timed out"),
		g.Entry("no subjects", func(st *Statement) { st.Subject = nil }, "no subjects"),
		g.Entry("subject digest not hex", func(st *Statement) { st.Subject[1].Digest["sha256"] = "ABC" }, "is not 64 lowercase hex"),
		g.Entry("no tenant uid", func(st *Statement) { st.Predicate.Tenant.UID = "" }, "tenant.uid is empty"),
		g.Entry("no contract id", func(st *Statement) { st.Predicate.Contract.ID = "" }, "contract.id is empty"),
		g.Entry("no controller", func(st *Statement) { st.Predicate.DataController.Name = "" }, "dataController.name is empty"),
		g.Entry("no processor", func(st *Statement) { st.Predicate.Processor.Name = "" }, "processor.name is empty"),
		g.Entry("no issue time", func(st *Statement) { st.Predicate.IssuedAt = time.Time{} }, "issuedAt is missing"),
		g.Entry("no audit head", func(st *Statement) { st.Predicate.Audit = AuditRef{} }, "audit.head"),
		g.Entry("empty audit trail", func(st *Statement) { st.Predicate.Audit.Length = 0 }, "audit trail is empty"),
		g.Entry("legal hold never lifted", func(st *Statement) {
			st.Predicate.LegalHold = &LegalHold{Reason: "case 2026/17", SetAt: at("2026-03-01T00:00:00Z")}
		}, `legal hold "case 2026/17" was never lifted`),
		g.Entry("legal hold lifted after destruction began", func(st *Statement) {
			st.Predicate.LegalHold = &LegalHold{Reason: "case 2026/17", LiftedAt: at("2026-04-01T10:00:30Z")}
		}, "started at 2026-04-01T10:00:00Z"),
		g.Entry("retained item without reason", func(st *Statement) {
			st.Predicate.Retained = append(st.Predicate.Retained, Retained{What: "logs"})
		}, "retained item 3 needs both"),
		g.Entry("wrong predicateType", func(st *Statement) { st.PredicateType = "x" }, "predicateType"),
	)

	g.It("accepts a legal hold lifted before destruction and an export that timed out", func() {
		st := Normalize(complete())
		st.Predicate.LegalHold = &LegalHold{Reason: "case 2026/17", SetAt: at("2026-03-01T00:00:00Z"), LiftedAt: at("2026-03-31T12:00:00Z")}
		st.Predicate.Export.AcknowledgedAt = time.Time{}
		st.Predicate.Export.AcknowledgeTimedOut = true
		Expect(CheckComplete(st)).To(BeEmpty())
	})

	g.It("checks the inventory and audit-head subjects against the predicate", func() {
		st := Normalize(complete())
		st.Subject = append(st.Subject, InventorySubject(st.Predicate.Locations), AuditSubject(st.Predicate.Audit))
		Expect(CheckComplete(st)).To(BeEmpty())

		payload, err := MarshalPayload(st)
		Expect(err).NotTo(HaveOccurred())
		start := strings.Index(string(payload), `"locations":`) + len(`"locations":`)
		end := strings.Index(string(payload), `,"retained":`)
		Expect(InventorySubject(st.Predicate.Locations).Digest["sha256"]).To(Equal(digest(string(payload[start:end]))),
			"the inventory digest is the sha256 of predicate.locations exactly as in the payload")
		// Times in another zone give the same inventory.
		moved := append([]Location(nil), st.Predicate.Locations...)
		moved[0].StartedAt = moved[0].StartedAt.In(time.FixedZone("CEST", 7200))
		Expect(InventorySubject(moved)).To(Equal(InventorySubject(st.Predicate.Locations)))

		st.Predicate.Locations[1].Technique = "rm -rf"
		Expect(CheckComplete(st)).To(ConsistOf(ContainSubstring("is not the digest of predicate.locations")))
		st = Normalize(complete())
		st.Subject = append(st.Subject, AuditSubject(AuditRef{Head: digest("other")}))
		Expect(CheckComplete(st)).To(ConsistOf(ContainSubstring("is not audit.head")))
	})

	g.It("lists the methods in a fixed order", func() {
		Expect(Methods(complete())).To(Equal([]string{MethodClear, MethodPurge}))
	})
})

var _ = g.Describe("certificate spec", func() {
	g.It("agrees with the statement it was built from", func() {
		_, priv, _ := GenerateKey()
		st := complete()
		st.Predicate.IssuedAt = st.Predicate.IssuedAt.Add(700 * time.Millisecond) // truncated like the payload
		env, err := Sign(st, priv)
		Expect(err).NotTo(HaveOccurred())
		spec := SpecFor(st, env)
		Expect(spec.Methods).To(Equal([]v1alpha1.SanitizationMethod{"Clear", "Purge"}))
		Expect(spec.Subjects).To(HaveLen(2))
		Expect(spec.Envelope.Payload).To(Equal(env.Payload))
		signed, err := Verify(EnvelopeFromAPI(spec.Envelope), priv.Public().(ed25519.PublicKey))
		Expect(err).NotTo(HaveOccurred())
		Expect(CompareSpec(spec, signed)).To(BeEmpty())

		checked, problems, err := VerifyCertificate(spec, priv.Public().(ed25519.PublicKey))
		Expect(err).NotTo(HaveOccurred())
		Expect(problems).To(BeEmpty())
		Expect(checked).To(Equal(signed))

		spec.ContractID = "VO-1"
		_, problems, err = VerifyCertificate(spec, priv.Public().(ed25519.PublicKey))
		Expect(err).NotTo(HaveOccurred())
		Expect(problems).To(ConsistOf(ContainSubstring("spec.contractID")))

		other, _, _ := GenerateKey()
		_, _, err = VerifyCertificate(spec, other)
		Expect(err).To(MatchError(ContainSubstring("no signature by key")))
	})

	g.It("reports an incomplete signed statement as problems, not as an error", func() {
		_, priv, _ := GenerateKey()
		st := Normalize(complete())
		st.Predicate.Locations[0].Verification.Result = ResultFailed
		payload, err := MarshalPayload(st)
		Expect(err).NotTo(HaveOccurred())
		env, err := SignPayload(PayloadType, payload, priv)
		Expect(err).NotTo(HaveOccurred())
		_, problems, err := VerifyCertificate(SpecFor(st, env), priv.Public().(ed25519.PublicKey))
		Expect(err).NotTo(HaveOccurred())
		Expect(problems).To(ConsistOf(HavePrefix("incomplete: location 1 (database")))
	})

	g.DescribeTable("names each field that disagrees with the payload",
		func(mutate func(s *v1alpha1.DestructionCertificateSpec), want string) {
			st := Normalize(complete())
			spec := SpecFor(st, Envelope{})
			mutate(&spec)
			Expect(CompareSpec(spec, st)).To(ConsistOf(ContainSubstring(want)))
		},
		g.Entry("tenant name", func(s *v1alpha1.DestructionCertificateSpec) { s.Tenant.Name = "other" },
			`spec.tenant.name is "other" but the signed payload says "clinic"`),
		g.Entry("tenant uid", func(s *v1alpha1.DestructionCertificateSpec) { s.Tenant.UID = "x" }, "spec.tenant.uid"),
		g.Entry("display name", func(s *v1alpha1.DestructionCertificateSpec) { s.Tenant.DisplayName = "x" }, "spec.tenant.displayName"),
		g.Entry("contract", func(s *v1alpha1.DestructionCertificateSpec) { s.ContractID = "VO-1" }, "spec.contractID"),
		g.Entry("controller", func(s *v1alpha1.DestructionCertificateSpec) { s.DataController.Contact = "x" }, "spec.dataController.contact"),
		g.Entry("issuedAt", func(s *v1alpha1.DestructionCertificateSpec) {
			s.IssuedAt = metav1.NewTime(s.IssuedAt.Add(time.Second))
		}, "spec.issuedAt is 2026-04-01T10:06:01Z but the signed payload says 2026-04-01T10:06:00Z"),
		g.Entry("methods", func(s *v1alpha1.DestructionCertificateSpec) { s.Methods = []v1alpha1.SanitizationMethod{"Purge"} },
			"spec.methods is [Purge] but the signed payload's locations use [Clear, Purge]"),
		g.Entry("subject digest", func(s *v1alpha1.DestructionCertificateSpec) { s.Subjects[1].SHA256 = digest("x") },
			`spec.subjects[1] "inventory.json" has sha256`),
		g.Entry("extra subject", func(s *v1alpha1.DestructionCertificateSpec) {
			s.Subjects = append(s.Subjects, v1alpha1.CertificateSubject{Name: "more", SHA256: digest("more")})
		}, `spec.subjects[2] "more" is not a subject of the signed payload`),
		g.Entry("missing subject", func(s *v1alpha1.DestructionCertificateSpec) { s.Subjects = s.Subjects[:1] },
			`spec.subjects lacks "inventory.json"`),
	)
})
