package evidence

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"strings"
	"time"

	g "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	v1alpha1 "github.com/custos-io/custos/api/v1alpha1"
)

var _ = g.Describe("DSSE signing and verification", func() {
	var (
		pub  ed25519.PublicKey
		priv ed25519.PrivateKey
	)
	g.BeforeEach(func() {
		var err error
		pub, priv, err = GenerateKey()
		Expect(err).NotTo(HaveOccurred())
	})

	g.It("encodes PAE as the DSSE spec's example", func() {
		Expect(string(PAE("http://example.com/HelloWorld", []byte("hello world")))).
			To(Equal("DSSEv1 29 http://example.com/HelloWorld 11 hello world"))
		Expect(string(PAE("", nil))).To(Equal("DSSEv1 0  0 "))
	})

	g.It("round-trips a statement and fills in _type and predicateType", func() {
		env, err := Sign(complete(), priv)
		Expect(err).NotTo(HaveOccurred())
		Expect(env.PayloadType).To(Equal(PayloadType))
		Expect(env.Signatures).To(HaveLen(1))
		Expect(env.Signatures[0].KeyID).To(Equal(KeyID(pub)))
		st, err := Verify(env, pub)
		Expect(err).NotTo(HaveOccurred())
		Expect(st.Type).To(Equal(StatementType))
		Expect(st.PredicateType).To(Equal(PredicateType))
		Expect(st).To(Equal(Normalize(complete())))
		Expect(CheckComplete(st)).To(BeEmpty())
	})

	g.It("signs the same statement to the same bytes, whatever the time zones and sub-second parts", func() {
		a, err := Sign(complete(), priv)
		Expect(err).NotTo(HaveOccurred())
		st := complete()
		ams := time.FixedZone("CEST", 2*3600)
		st.Predicate.IssuedAt = st.Predicate.IssuedAt.In(ams).Add(400 * time.Millisecond)
		st.Predicate.Locations[0].StartedAt = st.Predicate.Locations[0].StartedAt.In(ams)
		b, err := Sign(st, priv)
		Expect(err).NotTo(HaveOccurred())
		Expect(b).To(Equal(a))
		aj, _ := json.Marshal(a)
		bj, _ := json.Marshal(b)
		Expect(aj).To(Equal(bj))

		payload, _ := base64.StdEncoding.DecodeString(a.Payload)
		Expect(string(payload)).To(HavePrefix(`{"_type":"https://in-toto.io/Statement/v1","subject":[{"name":"export/clinic-2026-03-31.tar","digest":{"sha256":"`))
		Expect(string(payload)).To(ContainSubstring(`"issuedAt":"2026-04-01T10:06:00Z"`))
		Expect(string(payload)).To(ContainSubstring(`"displayName":"Clinic <B.V.> & Co"`), "no HTML escaping")
		Expect(string(payload)).NotTo(ContainSubstring("\n"))
	})

	g.It("produces an envelope with the JSON of api/v1alpha1.DSSEEnvelope", func() {
		env, err := Sign(complete(), priv)
		Expect(err).NotTo(HaveOccurred())
		ours, _ := json.Marshal(env)
		theirs, _ := json.Marshal(env.ToAPI())
		Expect(ours).To(MatchJSON(theirs))
		var back v1alpha1.DSSEEnvelope
		Expect(json.Unmarshal(ours, &back)).To(Succeed())
		Expect(EnvelopeFromAPI(back)).To(Equal(env))
	})

	g.It("fails when any bit of the payload is flipped, at every byte position", func() {
		env, err := Sign(complete(), priv)
		Expect(err).NotTo(HaveOccurred())
		payload, err := base64.StdEncoding.DecodeString(env.Payload)
		Expect(err).NotTo(HaveOccurred())
		Expect(len(payload)).To(BeNumerically(">", 1000))
		for i := range payload {
			bad := []byte(string(payload))
			bad[i] ^= 1 << (i % 8)
			tampered := env
			tampered.Payload = base64.StdEncoding.EncodeToString(bad)
			_, err := Verify(tampered, pub)
			Expect(err).To(MatchError(ContainSubstring("does not verify")), "byte %d", i)
		}
	})

	g.It("fails when any bit of the signature is flipped, at every byte position", func() {
		env, err := Sign(complete(), priv)
		Expect(err).NotTo(HaveOccurred())
		sig, err := base64.StdEncoding.DecodeString(env.Signatures[0].Sig)
		Expect(err).NotTo(HaveOccurred())
		Expect(sig).To(HaveLen(ed25519.SignatureSize))
		for i := range sig {
			for bit := range 8 {
				bad := []byte(string(sig))
				bad[i] ^= 1 << bit
				tampered := env
				tampered.Signatures = []Signature{{KeyID: env.Signatures[0].KeyID, Sig: base64.StdEncoding.EncodeToString(bad)}}
				_, err := Verify(tampered, pub)
				Expect(err).To(HaveOccurred(), "byte %d bit %d", i, bit)
			}
		}
	})

	g.It("refuses base64 with non-zero padding bits (one encoding per payload)", func() {
		env, err := SignPayload(PayloadType, []byte("ab"), priv) // "YWI=": last char carries 2 padding bits
		Expect(err).NotTo(HaveOccurred())
		Expect(env.Payload).To(Equal("YWI="))
		env.Payload = "YWJ="
		_, err = VerifyPayload(env, pub)
		Expect(err).To(MatchError(ContainSubstring("base64")))
	})

	g.It("fails with the wrong key, naming both keyids", func() {
		env, err := Sign(complete(), priv)
		Expect(err).NotTo(HaveOccurred())
		other, _, err := GenerateKey()
		Expect(err).NotTo(HaveOccurred())
		_, err = Verify(env, other)
		Expect(err).To(MatchError(And(ContainSubstring("no signature by key "+KeyID(other)), ContainSubstring(KeyID(pub)))))
	})

	g.It("fails when the keyid does not name the key that signed", func() {
		env, err := Sign(complete(), priv)
		Expect(err).NotTo(HaveOccurred())
		env.Signatures[0].KeyID = strings.Repeat("a", 64)
		_, err = Verify(env, pub)
		Expect(err).To(MatchError(ContainSubstring("names keyid " + strings.Repeat("a", 64))))
	})

	g.It("accepts an envelope with a second signature by another key", func() {
		env, err := Sign(complete(), priv)
		Expect(err).NotTo(HaveOccurred())
		_, other, _ := GenerateKey()
		payload, _ := base64.StdEncoding.DecodeString(env.Payload)
		second, err := SignPayload(PayloadType, payload, other)
		Expect(err).NotTo(HaveOccurred())
		env.Signatures = append(second.Signatures, env.Signatures...)
		_, err = Verify(env, pub)
		Expect(err).NotTo(HaveOccurred())
	})

	g.It("fails with the wrong payloadType, even when the signature covers it", func() {
		env, err := Sign(complete(), priv)
		Expect(err).NotTo(HaveOccurred())
		wrong := env
		wrong.PayloadType = "application/json"
		_, err = Verify(wrong, pub)
		Expect(err).To(MatchError(ContainSubstring(`payloadType is "application/json"`)))

		payload, _ := base64.StdEncoding.DecodeString(env.Payload)
		resigned, err := SignPayload("application/json", payload, priv)
		Expect(err).NotTo(HaveOccurred())
		_, err = Verify(resigned, pub)
		Expect(err).To(MatchError(ContainSubstring("payloadType")))
	})

	g.It("fails without signatures", func() {
		env, err := Sign(complete(), priv)
		Expect(err).NotTo(HaveOccurred())
		env.Signatures = nil
		_, err = Verify(env, pub)
		Expect(err).To(MatchError(ContainSubstring("no signatures")))
	})

	g.Describe("a validly signed payload that is not a canonical destruction statement", func() {
		signRaw := func(payload string) Envelope {
			env, err := SignPayload(PayloadType, []byte(payload), priv)
			Expect(err).NotTo(HaveOccurred())
			return env
		}
		canonical := func(mutate func(m map[string]any)) string {
			b, err := MarshalPayload(complete())
			Expect(err).NotTo(HaveOccurred())
			var m map[string]any
			Expect(json.Unmarshal(b, &m)).To(Succeed())
			mutate(m)
			out, err := json.Marshal(m)
			Expect(err).NotTo(HaveOccurred())
			return string(out)
		}

		g.It("is refused with an unknown field", func() {
			_, err := Verify(signRaw(canonical(func(m map[string]any) {
				m["predicate"].(map[string]any)["destroyedEverything"] = true
			})), pub)
			Expect(err).To(MatchError(ContainSubstring(`unknown field "destroyedEverything"`)))
		})
		g.It("is refused with another predicateType", func() {
			_, err := Verify(signRaw(canonical(func(m map[string]any) { m["predicateType"] = "https://slsa.dev/provenance/v1" })), pub)
			Expect(err).To(MatchError(ContainSubstring("predicateType")))
		})
		g.It("is refused with another _type", func() {
			_, err := Verify(signRaw(canonical(func(m map[string]any) { m["_type"] = "https://in-toto.io/Statement/v0.1" })), pub)
			Expect(err).To(MatchError(ContainSubstring("_type")))
		})
		g.It("is refused when not in canonical form (keys reordered by another encoder)", func() {
			_, err := Verify(signRaw(canonical(func(map[string]any) {})), pub)
			Expect(err).To(MatchError(ContainSubstring("canonical")))
		})
		g.It("is refused with a duplicate key", func() {
			b, _ := MarshalPayload(complete())
			dup := strings.Replace(string(b), `"predicateType":`, `"predicateType":"x","predicateType":`, 1)
			_, err := Verify(signRaw(dup), pub)
			Expect(err).To(MatchError(ContainSubstring("canonical")))
		})
		g.It("is refused with trailing data", func() {
			b, _ := MarshalPayload(complete())
			_, err := Verify(signRaw(string(b)+"{}"), pub)
			Expect(err).To(MatchError(ContainSubstring("trailing")))
		})
		g.It("is refused when it is not JSON", func() {
			_, err := Verify(signRaw("hello world"), pub)
			Expect(err).To(MatchError(ContainSubstring("not a destruction statement")))
		})
	})

	g.It("refuses to sign an incomplete statement", func() {
		st := complete()
		st.Predicate.Locations = nil
		_, err := Sign(st, priv)
		var inc *IncompleteError
		Expect(err).To(BeAssignableToTypeOf(inc))
		Expect(err).To(MatchError(ContainSubstring("no locations")))
	})

	g.Describe("keys", func() {
		g.It("derives the keyid as sha256 of the raw public key", func() {
			sum := sha256.Sum256(pub)
			Expect(KeyID(pub)).To(Equal(hex.EncodeToString(sum[:])))
		})
		g.It("round-trips PEM", func() {
			privPEM, err := MarshalPrivateKey(priv)
			Expect(err).NotTo(HaveOccurred())
			Expect(string(privPEM)).To(HavePrefix("-----BEGIN PRIVATE KEY-----"))
			back, err := ParsePrivateKey(privPEM)
			Expect(err).NotTo(HaveOccurred())
			Expect(back.Equal(priv)).To(BeTrue())

			pubPEM, err := MarshalPublicKey(pub)
			Expect(err).NotTo(HaveOccurred())
			Expect(string(pubPEM)).To(HavePrefix("-----BEGIN PUBLIC KEY-----"))
			backPub, err := ParsePublicKey(pubPEM)
			Expect(err).NotTo(HaveOccurred())
			Expect(backPub.Equal(pub)).To(BeTrue())
		})
		g.It("parses a key made by openssl", func() {
			// openssl genpkey -algorithm ed25519 / openssl pkey -pubout (RFC 8410 section 10.3 example key).
			privPEM := "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEINTuctv5E1hK1bbY8fdp+K06/nwoy/HU++CXqI9EdVhC\n-----END PRIVATE KEY-----\n"
			pubPEM := "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=\n-----END PUBLIC KEY-----\n"
			k, err := ParsePrivateKey([]byte(privPEM))
			Expect(err).NotTo(HaveOccurred())
			p, err := ParsePublicKey([]byte(pubPEM))
			Expect(err).NotTo(HaveOccurred())
			Expect(k.Public().(ed25519.PublicKey).Equal(p)).To(BeTrue())
		})
		g.It("refuses other PEM blocks and key types", func() {
			_, err := ParsePublicKey([]byte("not pem"))
			Expect(err).To(MatchError(ContainSubstring("no PEM block")))
			privPEM, _ := MarshalPrivateKey(priv)
			_, err = ParsePublicKey(privPEM)
			Expect(err).To(MatchError(ContainSubstring(`want "PUBLIC KEY"`)))
			// An ECDSA P-256 public key.
			ec := "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEEVs/o5+uQbTjL3chynL4wXgUg2R9\nq9UU8I5mEovUf86QZ7kOBIjJwqnzD1omageEHWwHdBO6B+dFabmdT9POxg==\n-----END PUBLIC KEY-----\n"
			_, err = ParsePublicKey([]byte(ec))
			Expect(err).To(MatchError(ContainSubstring("want Ed25519")))
		})
	})
})
