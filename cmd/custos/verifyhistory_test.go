package main

import (
	"bytes"
	"os"
	"path/filepath"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/custos-io/custos/internal/evidence"
)

var _ = Describe("custos verify with the key history and the trail's legal holds", func() {
	var dir string
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		Expect(os.WriteFile(p, data, 0o600)).To(Succeed())
		return p
	}
	cli := func(args ...string) (int, string) {
		var out, errOut bytes.Buffer
		code := run(args, &out, &errOut)
		return code, out.String() + errOut.String()
	}
	BeforeEach(func() { dir = GinkgoT().TempDir() })

	It("picks the key by keyid from the history, and refuses a key used outside its validity", func() {
		pub1, priv1, err := evidence.GenerateKey()
		Expect(err).NotTo(HaveOccurred())
		pub2, priv2, err := evidence.GenerateKey()
		Expect(err).NotTo(HaveOccurred())
		h, err := evidence.KeyHistory(nil).With(pub1, at("2024-01-01T00:00:00Z"))
		Expect(err).NotTo(HaveOccurred())
		h, err = h.With(pub2, at("2026-05-01T00:00:00Z"))
		Expect(err).NotTo(HaveOccurred())
		keys := write("history.json", h.Marshal())

		old, err := evidence.Sign(statement(), priv1) // issued 2026-04-01, while key 1 was in use
		Expect(err).NotTo(HaveOccurred())
		code, out := cli("verify", write("old.yaml", toYAML(certObject(statement(), old))), "--keys", keys)
		Expect(code).To(Equal(0), out)
		Expect(out).To(ContainSubstring("key " + evidence.KeyID(pub1) + ": valid"))
		Expect(out).To(ContainSubstring("in use from 2024-01-01T00:00:00Z to 2026-05-01T00:00:00Z"))

		By("the same history as the ConfigMap the manager publishes")
		cm := map[string]any{"apiVersion": "v1", "kind": "ConfigMap", "data": map[string]string{"history.json": string(h.Marshal())}}
		code, out = cli("verify", write("old2.yaml", toYAML(certObject(statement(), old))), "--keys", write("cm.yaml", toYAML(cm)))
		Expect(code).To(Equal(0), out)

		By("a certificate signed with key 2 before it was in use")
		early, err := evidence.Sign(statement(), priv2)
		Expect(err).NotTo(HaveOccurred())
		code, out = cli("verify", write("early.yaml", toYAML(certObject(statement(), early))), "--keys", keys)
		Expect(code).To(Equal(1), out)
		Expect(out).To(ContainSubstring("before key " + evidence.KeyID(pub2) + " was in use"))

		By("a key not in the history")
		_, priv3, err := evidence.GenerateKey()
		Expect(err).NotTo(HaveOccurred())
		other, err := evidence.Sign(statement(), priv3)
		Expect(err).NotTo(HaveOccurred())
		code, out = cli("verify", write("other.yaml", toYAML(certObject(statement(), other))), "--keys", keys)
		Expect(code).To(Equal(1), out)
		Expect(out).To(ContainSubstring("not in the key history"))
	})

	It("checks the certificate's legal hold against the holds the trail records", func() {
		pub, priv, err := evidence.GenerateKey()
		Expect(err).NotTo(HaveOccurred())
		pem, err := evidence.MarshalPublicKey(pub)
		Expect(err).NotTo(HaveOccurred())
		key := write("pub.pem", pem)

		// A trail with a hold set and lifted before the destruction.
		var entries []evidence.Entry
		var prev *evidence.Entry
		for i, a := range []evidence.Action{evidence.ActionProvisioned, evidence.ActionLegalHoldSet, evidence.ActionLegalHoldLifted, evidence.ActionLiveDataPurged} {
			d := map[string]string{"step": string(a)}
			if a == evidence.ActionLegalHoldSet {
				d["reason"] = "case 2026/17"
			}
			e := evidence.Append(prev, evidence.Entry{Time: at("2026-03-01T00:00:00Z").Add(time.Duration(i) * time.Hour), Tenant: "clinic", Action: a, Actor: "custos-manager", Detail: d})
			entries = append(entries, e)
			prev = &entries[len(entries)-1]
		}
		audit := write("audit.jsonl", evidence.MarshalLines(entries))
		st := statement()
		head, n := evidence.Head(entries)
		st.Predicate.Audit = evidence.AuditRef{Head: head, Length: n}

		By("a certificate that names no hold, although the trail has one")
		env, err := evidence.Sign(st, priv)
		Expect(err).NotTo(HaveOccurred())
		code, out := cli("verify", write("nohold.yaml", toYAML(certObject(st, env))), "--key", key, "--audit", audit)
		Expect(code).To(Equal(1), out)
		Expect(out).To(ContainSubstring(`records legal hold "case 2026/17"`))

		By("a certificate that names it")
		holds := evidence.LegalHolds(entries)
		st.Predicate.LegalHold = &holds[0]
		env, err = evidence.Sign(st, priv)
		Expect(err).NotTo(HaveOccurred())
		code, out = cli("verify", write("hold.yaml", toYAML(certObject(st, env))), "--key", key, "--audit", audit)
		Expect(code).To(Equal(0), out)
		Expect(out).To(ContainSubstring(`legal hold      "case 2026/17", set 2026-03-01T01:00:00Z, lifted 2026-03-01T02:00:00Z`))
	})
})
