package evidence

import (
	"crypto/ed25519"

	g "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

var _ = g.Describe("signing key history", func() {
	g.It("keeps every key with its validity, picks the signer by keyid and checks the issue time", func() {
		pub1, priv1, err := GenerateKey()
		Expect(err).NotTo(HaveOccurred())
		pub2, priv2, err := GenerateKey()
		Expect(err).NotTo(HaveOccurred())
		h, err := KeyHistory(nil).With(pub1, at("2026-01-01T00:00:00Z"))
		Expect(err).NotTo(HaveOccurred())
		same, err := h.With(pub1, at("2026-02-01T00:00:00Z"))
		Expect(err).NotTo(HaveOccurred())
		Expect(same).To(Equal(h), "the key in use is not added again")
		h, err = h.With(pub2, at("2026-05-01T00:00:00Z"))
		Expect(err).NotTo(HaveOccurred())
		Expect(h).To(HaveLen(2))
		Expect(h[0].ValidUntil).To(Equal(at("2026-05-01T00:00:00Z")))
		cur, ok := h.Current()
		Expect(ok).To(BeTrue())
		Expect(cur.KeyID).To(Equal(KeyID(pub2)))

		parsed, err := ParseKeyHistory(h.Marshal())
		Expect(err).NotTo(HaveOccurred())
		Expect(parsed).To(Equal(h))

		old := Normalize(complete())
		env, err := Sign(old, priv1)
		Expect(err).NotTo(HaveOccurred())
		k, pub, err := parsed.KeyFor(env)
		Expect(err).NotTo(HaveOccurred())
		Expect(pub.Equal(pub1)).To(BeTrue())
		Expect(k.ValidAt(old.Predicate.IssuedAt)).To(Succeed())
		_, err = Verify(env, pub)
		Expect(err).NotTo(HaveOccurred())

		g.By("a certificate issued by the old key after it was replaced is refused")
		late := old
		late.Predicate.IssuedAt = at("2026-06-01T12:00:00Z")
		env, err = Sign(late, priv1)
		Expect(err).NotTo(HaveOccurred())
		k, _, err = parsed.KeyFor(env)
		Expect(err).NotTo(HaveOccurred())
		Expect(k.ValidAt(late.Predicate.IssuedAt)).To(MatchError(ContainSubstring("after key " + KeyID(pub1) + " was replaced")))

		g.By("a key that is not in the history is named")
		_, priv3, err := GenerateKey()
		Expect(err).NotTo(HaveOccurred())
		env, err = Sign(old, priv3)
		Expect(err).NotTo(HaveOccurred())
		_, _, err = parsed.KeyFor(env)
		Expect(err).To(MatchError(ContainSubstring("not in the key history")))
		_ = priv2
	})

	g.It("refuses a history whose keyid does not match its key", func() {
		pub, _, err := GenerateKey()
		Expect(err).NotTo(HaveOccurred())
		h, err := KeyHistory(nil).With(pub, at("2026-01-01T00:00:00Z"))
		Expect(err).NotTo(HaveOccurred())
		h[0].KeyID = KeyID(ed25519.PublicKey(make([]byte, 32)))
		_, err = ParseKeyHistory(h.Marshal())
		Expect(err).To(MatchError(ContainSubstring("but its key's keyid is")))
	})
})
