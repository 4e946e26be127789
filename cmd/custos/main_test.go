package main

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gexec"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	v1alpha1 "github.com/custos-io/custos/api/v1alpha1"
	"github.com/custos-io/custos/internal/evidence"
)

func at(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	Expect(err).NotTo(HaveOccurred())
	return t
}

func sum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

var bag = []byte("pretend this is a BagIt tar")

// trail is a short audit trail of a destroyed tenant.
func trail() []evidence.Entry {
	var out []evidence.Entry
	var prev *evidence.Entry
	for i, a := range []evidence.Action{evidence.ActionProvisioned, evidence.ActionSnapshot, evidence.ActionCopy,
		evidence.ActionSuspended, evidence.ActionExportWritten, evidence.ActionExportAcknowledged,
		evidence.ActionLiveDataPurged, evidence.ActionShredded} {
		e := evidence.Append(prev, evidence.Entry{Time: at("2026-03-01T00:00:00Z").Add(time.Duration(i) * time.Hour),
			Tenant: "clinic", Action: a, Actor: "custos-manager", Detail: map[string]string{"step": string(a)}})
		out = append(out, e)
		prev = &out[len(out)-1]
	}
	return out
}

func statement() evidence.Statement {
	head, n := evidence.Head(trail())
	exp := evidence.ExportEvidence{Name: "export/clinic.tar", SHA256: sum(bag), Bytes: int64(len(bag)),
		AcknowledgedAt: at("2026-03-31T09:00:00Z"), ReceivedBy: "j.jansen@clinic.example"}
	loc := func(kind, id, method, technique, tool string, start string) evidence.Location {
		return evidence.Location{Kind: kind, Identifier: id, Location: "ams", Jurisdiction: "EEA", Method: method,
			Technique: technique, Tool: evidence.Tool{Name: tool, Version: "1.0"}, StartedAt: at(start),
			CompletedAt:  at(start).Add(time.Minute),
			Verification: evidence.Verification{Method: "looked it up again", Result: evidence.ResultVerified}}
	}
	return evidence.Statement{
		Subject: []evidence.Subject{evidence.ExportSubject(exp), {Name: "inventory.json", Digest: map[string]string{"sha256": sum([]byte("inv"))}}},
		Predicate: evidence.Destruction{
			Tenant:         evidence.Tenant{Name: "clinic", UID: "0b6f3c2e-5d1a-4d8e-9b1f-2f6a7c8d9e01", DisplayName: "Clinic B.V."},
			Contract:       evidence.Contract{ID: "VO-2024-017", Start: at("2024-01-01T00:00:00Z"), End: at("2026-03-31T00:00:00Z")},
			DataController: evidence.DataController{Name: "Clinic B.V.", Contact: "J. Jansen", Email: "j.jansen@clinic.example"},
			Processor:      evidence.Processor{Name: "Hosting B.V."},
			Export:         &exp,
			Locations: []evidence.Location{
				loc(evidence.KindDatabase, "tenant_clinic (OID 16384)", evidence.MethodClear, "DROP DATABASE WITH (FORCE)", "PostgreSQL", "2026-04-01T10:00:00Z"),
				loc(evidence.KindNamespace, "clinic (UID 4c1d)", evidence.MethodClear, "namespace deletion", "kube-apiserver", "2026-04-01T10:02:00Z"),
				loc(evidence.KindRepository, "3f2a9c (rest:https://backup.example/clinic-0b6f3c2e)", evidence.MethodPurge,
					"restic forget+prune, delete every object, delete key (cryptographic erase)", "restic", "2026-04-01T10:04:00Z"),
			},
			Retained: []evidence.Retained{{What: "audit trail", Reason: "NEN 7513"}, {What: "this certificate", Reason: "proof"}},
			Audit:    evidence.AuditRef{Head: head, Length: n},
			IssuedAt: at("2026-04-01T10:10:00Z"),
		},
	}
}

// signAnyway signs a statement without Sign's completeness check, as a careless signer would.
func signAnyway(st evidence.Statement, key ed25519.PrivateKey) evidence.Envelope {
	payload, err := evidence.MarshalPayload(st)
	Expect(err).NotTo(HaveOccurred())
	env, err := evidence.SignPayload(evidence.PayloadType, payload, key)
	Expect(err).NotTo(HaveOccurred())
	return env
}

func certObject(st evidence.Statement, env evidence.Envelope) *v1alpha1.DestructionCertificate {
	return &v1alpha1.DestructionCertificate{
		TypeMeta:   metav1.TypeMeta{APIVersion: "custos.io/v1alpha1", Kind: "DestructionCertificate"},
		ObjectMeta: metav1.ObjectMeta{Name: "clinic-destruction", UID: "1234", ResourceVersion: "42"},
		Spec:       evidence.SpecFor(st, env),
	}
}

func toYAML(v any) []byte {
	b, err := yaml.Marshal(v)
	Expect(err).NotTo(HaveOccurred())
	return b
}

var _ = Describe("custos", func() {
	var (
		dir     string
		pub     ed25519.PublicKey
		priv    ed25519.PrivateKey
		keyFile string
	)
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		Expect(os.WriteFile(p, data, 0o600)).To(Succeed())
		return p
	}
	cli := func(args ...string) (int, string, string) {
		var out, errOut bytes.Buffer
		code := run(args, &out, &errOut)
		return code, out.String(), errOut.String()
	}

	BeforeEach(func() {
		dir = GinkgoT().TempDir()
		var err error
		pub, priv, err = evidence.GenerateKey()
		Expect(err).NotTo(HaveOccurred())
		pem, err := evidence.MarshalPublicKey(pub)
		Expect(err).NotTo(HaveOccurred())
		keyFile = write("pub.pem", pem)
	})

	Describe("verify", func() {
		var env evidence.Envelope
		BeforeEach(func() {
			var err error
			env, err = evidence.Sign(statement(), priv)
			Expect(err).NotTo(HaveOccurred())
		})

		It("verifies a DestructionCertificate as YAML and prints what it says", func() {
			cert := write("cert.yaml", toYAML(certObject(statement(), env)))
			code, out, errOut := cli("verify", cert, "--key", keyFile)
			Expect(errOut).To(BeEmpty())
			Expect(code).To(Equal(0), out)
			for _, s := range []string{
				"DestructionCertificate clinic-destruction",
				"signature       Ed25519, key " + evidence.KeyID(pub) + ": valid",
				"tenant          clinic (Clinic B.V.), uid 0b6f3c2e-5d1a-4d8e-9b1f-2f6a7c8d9e01",
				"contract        VO-2024-017, from 2024-01-01T00:00:00Z to 2026-03-31T00:00:00Z",
				"data controller Clinic B.V., contact J. Jansen <j.jansen@clinic.example>",
				"export          export/clinic.tar, 27 bytes, sha256 " + sum(bag),
				"acknowledged 2026-03-31T09:00:00Z by j.jansen@clinic.example",
				"1. database tenant_clinic (OID 16384) on ams (EEA)",
				"method        Clear: DROP DATABASE WITH (FORCE)",
				"tool          restic 1.0",
				"started       2026-04-01T10:04:00Z",
				"verification  looked it up again: Verified",
				"audit trail     head " + statement().Predicate.Audit.Head + ", 8 entries",
				"issued at       2026-04-01T10:10:00Z",
			} {
				Expect(out).To(ContainSubstring(s))
			}
			Expect(out).To(HaveSuffix("\nVERIFIED\n"))
		})

		It("verifies the same certificate as JSON, as a List, and as a bare envelope, also from stdin", func() {
			obj := certObject(statement(), env)
			js, _ := json.Marshal(obj)
			code, out, _ := cli("verify", "--key", keyFile, write("cert.json", js))
			Expect(code).To(Equal(0), out)

			list := map[string]any{"apiVersion": "v1", "kind": "List", "items": []any{obj, obj}}
			code, out, _ = cli("verify", write("list.yaml", toYAML(list)), "--key", keyFile)
			Expect(code).To(Equal(0), out)
			Expect(strings.Count(out, "\nVERIFIED\n")).To(Equal(2))

			envJSON, _ := json.Marshal(env)
			code, out, _ = cli("verify", write("env.json", envJSON), "--key", keyFile)
			Expect(code).To(Equal(0), out)
			Expect(out).To(HavePrefix("DSSE envelope "))

			stdin = bytes.NewReader(envJSON)
			DeferCleanup(func() { stdin = os.Stdin })
			code, out, _ = cli("verify", "-", "--key", keyFile)
			Expect(code).To(Equal(0), out)
		})

		It("fails a certificate with a location not Verified, and one without locations", func() {
			st := statement()
			st.Predicate.Locations[2].Verification.Result = "NotVerified"
			bad := signAnyway(st, priv)
			code, out, _ := cli("verify", write("bad.yaml", toYAML(certObject(st, bad))), "--key", keyFile)
			Expect(code).To(Equal(1))
			Expect(out).To(ContainSubstring(`incomplete: location 3 (repository 3f2a9c (rest:https://backup.example/clinic-0b6f3c2e)): verification result is "NotVerified", not "Verified"`))
			Expect(out).To(ContainSubstring("NOT VERIFIED: 1 failure(s)"))
			Expect(out).NotTo(ContainSubstring("\nVERIFIED"))

			st = statement()
			st.Predicate.Locations = nil
			envJSON, _ := json.Marshal(signAnyway(st, priv))
			code, out, _ = cli("verify", write("none.json", envJSON), "--key", keyFile)
			Expect(code).To(Equal(1))
			Expect(out).To(ContainSubstring("incomplete: no locations"))
		})

		It("fails when the spec disagrees with the signed payload, naming the field", func() {
			obj := certObject(statement(), env)
			obj.Spec.Tenant.UID = "ffffffff-0000-0000-0000-000000000000"
			obj.Spec.ContractID = "VO-1999-001"
			code, out, _ := cli("verify", write("edited.yaml", toYAML(obj)), "--key", keyFile)
			Expect(code).To(Equal(1))
			Expect(out).To(ContainSubstring(`spec.tenant.uid is "ffffffff-0000-0000-0000-000000000000" but the signed payload says "0b6f3c2e-5d1a-4d8e-9b1f-2f6a7c8d9e01"`))
			Expect(out).To(ContainSubstring(`spec.contractID is "VO-1999-001" but the signed payload says "VO-2024-017"`))
			Expect(out).To(ContainSubstring("NOT VERIFIED: 2 failure(s)"))
		})

		It("fails when the spec's methods or subjects disagree", func() {
			obj := certObject(statement(), env)
			obj.Spec.Methods = []v1alpha1.SanitizationMethod{"Purge"}
			obj.Spec.Subjects[0].SHA256 = sum([]byte("another bag"))
			code, out, _ := cli("verify", write("edited.yaml", toYAML(obj)), "--key", keyFile)
			Expect(code).To(Equal(1))
			Expect(out).To(ContainSubstring("spec.methods is [Purge]"))
			Expect(out).To(ContainSubstring(`spec.subjects[0] "export/clinic.tar" has sha256`))
		})

		It("fails a spec with a field it cannot check", func() {
			y := strings.Replace(string(toYAML(certObject(statement(), env))), "spec:\n", "spec:\n  destroyedEverything: true\n", 1)
			code, out, _ := cli("verify", write("extra.yaml", []byte(y)), "--key", keyFile)
			Expect(code).To(Equal(1))
			Expect(out).To(ContainSubstring(`unknown field "destroyedEverything"`))
		})

		It("fails with another key, without showing the untrusted payload", func() {
			other, _, _ := evidence.GenerateKey()
			pem, _ := evidence.MarshalPublicKey(other)
			code, out, _ := cli("verify", write("cert.yaml", toYAML(certObject(statement(), env))), "--key", write("other.pem", pem))
			Expect(code).To(Equal(1))
			Expect(out).To(ContainSubstring("signature: no signature by key " + evidence.KeyID(other)))
			Expect(out).NotTo(ContainSubstring("tenant "))
		})

		It("fails a tampered payload", func() {
			payload, _ := base64.StdEncoding.DecodeString(env.Payload)
			tampered := env
			tampered.Payload = base64.StdEncoding.EncodeToString(bytes.Replace(payload, []byte(`"Clear"`), []byte(`"Purge"`), 1))
			code, out, _ := cli("verify", write("t.yaml", toYAML(certObject(statement(), tampered))), "--key", keyFile)
			Expect(code).To(Equal(1))
			Expect(out).To(ContainSubstring("does not verify"))
		})

		It("fails a list when one certificate fails", func() {
			good := certObject(statement(), env)
			bad := certObject(statement(), env)
			bad.Spec.Tenant.Name = "other"
			list := map[string]any{"apiVersion": "v1", "kind": "List", "items": []any{good, bad}}
			code, out, _ := cli("verify", write("list.yaml", toYAML(list)), "--key", keyFile)
			Expect(code).To(Equal(1))
			Expect(out).To(ContainSubstring("\nVERIFIED\n"))
			Expect(out).To(ContainSubstring("spec.tenant.name"))
		})

		It("fails what is not a certificate", func() {
			code, out, _ := cli("verify", write("cm.yaml", []byte("apiVersion: v1\nkind: ConfigMap\n")), "--key", keyFile)
			Expect(code).To(Equal(1))
			Expect(out).To(ContainSubstring("is a ConfigMap"))
			code, _, _ = cli("verify", write("junk", []byte("{]")), "--key", keyFile)
			Expect(code).To(Equal(1))
		})

		It("checks the audit trail against the certificate's head", func() {
			cert := write("cert.yaml", toYAML(certObject(statement(), env)))
			code, out, _ := cli("verify", cert, "--key", keyFile, "--audit", write("audit.jsonl", evidence.MarshalLines(trail())))
			Expect(code).To(Equal(0), out)
			Expect(out).To(ContainSubstring("8 entries, chain intact"))

			longer := trail()
			longer = append(longer, evidence.Append(&longer[len(longer)-1], evidence.Entry{Time: at("2026-04-02T00:00:00Z"),
				Tenant: "clinic", Action: evidence.ActionCertificateIssued, Actor: "custos-manager"}))
			code, out, _ = cli("verify", cert, "--key", keyFile, "--audit", write("longer.jsonl", evidence.MarshalLines(longer)))
			Expect(code).To(Equal(0), "the trail goes on after the certificate: the entry at its length is its head")
			Expect(out).To(ContainSubstring("1 later entry: 9 CertificateIssued"))

			shorter := trail()[:7]
			code, out, _ = cli("verify", cert, "--key", keyFile, "--audit", write("shorter.jsonl", evidence.MarshalLines(shorter)))
			Expect(code).To(Equal(1))
			Expect(out).To(ContainSubstring("ends after 7 entries; the certificate commits to 8 entries"))

			other := trail()
			other[7] = evidence.Append(&other[6], evidence.Entry{Time: at("2026-04-03T00:00:00Z"), Tenant: "clinic", Action: evidence.ActionShredded, Actor: "custos-manager"})
			code, out, _ = cli("verify", cert, "--key", keyFile, "--audit", write("other.jsonl", evidence.MarshalLines(other)))
			Expect(code).To(Equal(1))
			Expect(out).To(ContainSubstring("entry 8 has hash"))

			broken := trail()
			broken[3].Actor = "intruder"
			code, out, _ = cli("verify", cert, "--key", keyFile, "--audit", write("broken.jsonl", evidence.MarshalLines(broken)))
			Expect(code).To(Equal(1))
			Expect(out).To(ContainSubstring("audit chain broken at seq 4: entry altered"))
		})

		It("checks that an artefact is a subject", func() {
			cert := write("cert.yaml", toYAML(certObject(statement(), env)))
			code, out, _ := cli("verify", cert, "--key", keyFile, "--artefact", write("clinic.tar", bag))
			Expect(code).To(Equal(0), out)
			Expect(out).To(ContainSubstring(`is subject "export/clinic.tar"`))
			code, out, _ = cli("verify", cert, "--key", keyFile, "--artefact", write("other.tar", []byte("x")))
			Expect(code).To(Equal(1))
			Expect(out).To(ContainSubstring("is not a subject of the certificate"))
		})

		It("exits 2 on usage errors", func() {
			cert := write("cert.yaml", toYAML(certObject(statement(), env)))
			for _, args := range [][]string{
				{},
				{"frobnicate"},
				{"verify"},
				{"verify", cert},
				{"verify", cert, "--key", filepath.Join(dir, "missing.pem")},
				{"verify", cert, "--key", cert},
				{"verify", filepath.Join(dir, "missing.yaml"), "--key", keyFile},
				{"verify", cert, cert, "--key", keyFile},
				{"verify", cert, "--key", keyFile, "--nope"},
				{"audit"},
				{"audit", "verify"},
				{"pubkey"},
			} {
				code, _, errOut := cli(args...)
				Expect(code).To(Equal(2), "%v", args)
				Expect(errOut).NotTo(BeEmpty())
			}
			code, _, errOut := cli("verify", "clinic-destruction", "--key", keyFile)
			Expect(code).To(Equal(2))
			Expect(errOut).To(ContainSubstring("kubectl get dcert clinic-destruction -o yaml"))
		})
	})

	Describe("audit", func() {
		It("verifies a chain and checks the expected head and length", func() {
			f := write("audit.jsonl", evidence.MarshalLines(trail()))
			head, _ := evidence.Head(trail())
			code, out, _ := cli("audit", "verify", f, "--head", head, "--length", "8")
			Expect(code).To(Equal(0), out)
			Expect(out).To(ContainSubstring("entries  8\nhead     " + head + "\nchain    intact"))

			code, out, _ = cli("audit", "verify", f, "--head", strings.Repeat("0", 64))
			Expect(code).To(Equal(1))
			Expect(out).To(ContainSubstring("head is " + head + ", not the expected"))
		})

		It("reads segments in order", func() {
			lines := evidence.MarshalLines(trail())
			cut := bytes.Index(lines, []byte(`{"seq":5,`))
			code, out, _ := cli("audit", "verify", write("a.jsonl", lines[:cut]), write("b.jsonl", lines[cut:]))
			Expect(code).To(Equal(0), out)
			code, out, _ = cli("audit", "verify", write("b.jsonl", lines[cut:]), write("a.jsonl", lines[:cut]))
			Expect(code).To(Equal(1))
			Expect(out).To(ContainSubstring("broken at seq 1"))
		})

		It("names the first broken seq of a chain with a deleted entry", func() {
			t := trail()
			t = append(t[:2:2], t[3:]...)
			code, out, _ := cli("audit", "verify", write("gap.jsonl", evidence.MarshalLines(t)))
			Expect(code).To(Equal(1))
			Expect(out).To(ContainSubstring("audit chain broken at seq 3: entry 3 is missing (found 4 after 2)"))
		})

		It("fails a file that is not JSON lines of entries", func() {
			code, out, _ := cli("audit", "verify", write("x.jsonl", []byte("{\"seq\":1}\nnot json\n")))
			Expect(code).To(Equal(1))
			Expect(out).To(ContainSubstring("line 2"))
		})

		It("shows a table", func() {
			code, out, _ := cli("audit", "show", write("audit.jsonl", evidence.MarshalLines(trail())))
			Expect(code).To(Equal(0), out)
			Expect(out).To(MatchRegexp(`SEQ\s+TIME\s+TENANT\s+ACTION\s+ACTOR\s+DETAIL`))
			Expect(out).To(MatchRegexp(`\n8\s+2026-03-01T07:00:00Z\s+clinic\s+Shredded\s+custos-manager\s+step=Shredded\n`))
			Expect(out).To(ContainSubstring("8 entries, chain intact"))

			t := trail()
			t[6], t[7] = t[7], t[6]
			code, out, _ = cli("audit", "show", write("swapped.jsonl", evidence.MarshalLines(t)))
			Expect(code).To(Equal(1))
			Expect(out).To(ContainSubstring("CHAIN BROKEN: audit chain broken at seq 7: entries out of order"))
		})
	})

	Describe("pubkey", func() {
		It("prints the public key PEM and the keyid of a private key", func() {
			privPEM, err := evidence.MarshalPrivateKey(priv)
			Expect(err).NotTo(HaveOccurred())
			f := write("priv.pem", privPEM)
			code, out, _ := cli("pubkey", f)
			Expect(code).To(Equal(0))
			back, err := evidence.ParsePublicKey([]byte(out))
			Expect(err).NotTo(HaveOccurred())
			Expect(back.Equal(pub)).To(BeTrue())
			code, out, _ = cli("pubkey", f, "--keyid")
			Expect(code).To(Equal(0))
			Expect(out).To(Equal(evidence.KeyID(pub) + "\n"))
			code, _, _ = cli("pubkey", keyFile)
			Expect(code).To(Equal(2))
		})
	})

	Describe("the built binary", Ordered, func() {
		var bin string
		BeforeAll(func() {
			var err error
			bin, err = gexec.Build("github.com/custos-io/custos/cmd/custos")
			Expect(err).NotTo(HaveOccurred())
		})
		exitCode := func(args ...string) (int, string) {
			cmd := exec.Command(bin, args...)
			out, err := cmd.CombinedOutput()
			if err != nil {
				var ee *exec.ExitError
				Expect(err).To(BeAssignableToTypeOf(ee))
			}
			return cmd.ProcessState.ExitCode(), string(out)
		}

		It("exits 0 on a good certificate, 1 on a bad one, 2 on a usage error", func() {
			env, err := evidence.Sign(statement(), priv)
			Expect(err).NotTo(HaveOccurred())
			code, out := exitCode("verify", write("good.yaml", toYAML(certObject(statement(), env))), "--key", keyFile)
			Expect(code).To(Equal(0), out)
			Expect(out).To(HaveSuffix("VERIFIED\n"))

			st := statement()
			st.Predicate.Locations[0].Verification.Result = "NotVerified"
			code, out = exitCode("verify", write("bad.yaml", toYAML(certObject(st, signAnyway(st, priv)))), "--key", keyFile)
			Expect(code).To(Equal(1), out)

			code, _ = exitCode("verify")
			Expect(code).To(Equal(2))
		})
	})
})
