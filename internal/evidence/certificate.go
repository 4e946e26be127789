package evidence

import (
	"crypto/ed25519"
	"fmt"
	"slices"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1alpha1 "github.com/custos-io/custos/api/v1alpha1"
)

// SpecFor builds a DestructionCertificate's spec from the statement and its envelope: the fields kubectl shows
// repeat what the signed payload says, so CompareSpec finds no disagreement. Pass the statement that was signed
// (it is normalized again here, so times match the payload to the second).
func SpecFor(st Statement, env Envelope) v1alpha1.DestructionCertificateSpec {
	st = Normalize(st)
	d := st.Predicate
	spec := v1alpha1.DestructionCertificateSpec{
		Tenant:     v1alpha1.CertifiedTenant{Name: d.Tenant.Name, UID: d.Tenant.UID, DisplayName: d.Tenant.DisplayName},
		ContractID: d.Contract.ID,
		DataController: v1alpha1.DataController{
			Name: d.DataController.Name, Contact: d.DataController.Contact, Email: d.DataController.Email,
		},
		IssuedAt: metav1.NewTime(d.IssuedAt),
		Envelope: env.ToAPI(),
	}
	for _, m := range Methods(st) {
		spec.Methods = append(spec.Methods, v1alpha1.SanitizationMethod(m))
	}
	for _, s := range st.Subject {
		spec.Subjects = append(spec.Subjects, v1alpha1.CertificateSubject{Name: s.Name, SHA256: s.Digest["sha256"]})
	}
	return spec
}

// CompareSpec lists every field of a DestructionCertificate's spec that disagrees with the signed statement, each
// naming the field ("spec.tenant.uid: …"). Only the signed payload is trusted; a disagreement means the object was
// built wrongly or edited to mislead, and the certificate must not be accepted. The envelope itself is not
// compared (it is what was verified).
func CompareSpec(spec v1alpha1.DestructionCertificateSpec, st Statement) []string {
	var p []string
	d := st.Predicate
	diff := func(field, got, signed string) {
		if got != signed {
			p = append(p, fmt.Sprintf("%s is %q but the signed payload says %q", field, got, signed))
		}
	}
	diff("spec.tenant.name", spec.Tenant.Name, d.Tenant.Name)
	diff("spec.tenant.uid", spec.Tenant.UID, d.Tenant.UID)
	diff("spec.tenant.displayName", spec.Tenant.DisplayName, d.Tenant.DisplayName)
	diff("spec.contractID", spec.ContractID, d.Contract.ID)
	diff("spec.dataController.name", spec.DataController.Name, d.DataController.Name)
	diff("spec.dataController.contact", spec.DataController.Contact, d.DataController.Contact)
	diff("spec.dataController.email", spec.DataController.Email, d.DataController.Email)
	if !canonicalTime(spec.IssuedAt.Time).Equal(canonicalTime(d.IssuedAt)) {
		p = append(p, fmt.Sprintf("spec.issuedAt is %s but the signed payload says %s",
			fmtTime(spec.IssuedAt.Time), fmtTime(d.IssuedAt)))
	}

	var methods []string
	for _, m := range spec.Methods {
		methods = append(methods, string(m))
	}
	slices.Sort(methods)
	methods = slices.Compact(methods)
	signed := slices.Clone(Methods(st))
	slices.Sort(signed)
	if !slices.Equal(methods, signed) {
		p = append(p, fmt.Sprintf("spec.methods is [%s] but the signed payload's locations use [%s]",
			strings.Join(methods, ", "), strings.Join(signed, ", ")))
	}

	signedSubjects := map[string]string{}
	for _, s := range st.Subject {
		signedSubjects[s.Name] = s.Digest["sha256"]
	}
	specSubjects := map[string]bool{}
	for i, s := range spec.Subjects {
		specSubjects[s.Name] = true
		sd, ok := signedSubjects[s.Name]
		switch {
		case !ok:
			p = append(p, fmt.Sprintf("spec.subjects[%d] %q is not a subject of the signed payload", i, s.Name))
		case sd != s.SHA256:
			p = append(p, fmt.Sprintf("spec.subjects[%d] %q has sha256 %s but the signed payload says %s", i, s.Name, s.SHA256, sd))
		}
	}
	for _, s := range st.Subject {
		if !specSubjects[s.Name] {
			p = append(p, fmt.Sprintf("spec.subjects lacks %q, a subject of the signed payload", s.Name))
		}
	}
	return p
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "(none)"
	}
	return ts(t)
}

// VerifyCertificate is the whole check of a DestructionCertificate's spec, as `custos verify` does it and as the
// Verified condition should: the envelope with pub (see Verify; a failure there is err, and no statement is
// returned because nothing in it can be trusted), then completeness (problems prefixed "incomplete: ") and the
// agreement of the spec's other fields with the signed payload (CompareSpec). The certificate is good when err is
// nil and problems is empty.
func VerifyCertificate(spec v1alpha1.DestructionCertificateSpec, pub ed25519.PublicKey) (Statement, []string, error) {
	st, err := Verify(EnvelopeFromAPI(spec.Envelope), pub)
	if err != nil {
		return Statement{}, nil, err
	}
	var problems []string
	for _, p := range CheckComplete(st) {
		problems = append(problems, "incomplete: "+p)
	}
	return st, append(problems, CompareSpec(spec, st)...), nil
}
