package evidence

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"

	v1alpha1 "github.com/custos-io/custos/api/v1alpha1"
)

// MaxPayloadLength bounds the base64 payload of an envelope, as the DestructionCertificate's CRD does.
const MaxPayloadLength = 1 << 20

// Envelope is a DSSE v1 envelope (https://github.com/secure-systems-lab/dsse/blob/master/envelope.md). Its JSON
// is the same as api/v1alpha1.DSSEEnvelope's.
type Envelope struct {
	PayloadType string      `json:"payloadType"`
	Payload     string      `json:"payload"` // standard base64 with padding
	Signatures  []Signature `json:"signatures"`
}

// Signature is one signature of an envelope.
type Signature struct {
	KeyID string `json:"keyid"`
	Sig   string `json:"sig"` // standard base64 of the 64-byte Ed25519 signature
}

// b64 is standard base64 that refuses non-zero padding bits, so each byte string has exactly one encoding.
var b64 = base64.StdEncoding.Strict()

// PAE is DSSE's pre-authentication encoding: "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body, lengths as
// ASCII decimal. The signature is over these bytes, never over the payload alone.
func PAE(payloadType string, payload []byte) []byte {
	var b strings.Builder
	b.WriteString("DSSEv1 ")
	b.WriteString(strconv.Itoa(len(payloadType)))
	b.WriteByte(' ')
	b.WriteString(payloadType)
	b.WriteByte(' ')
	b.WriteString(strconv.Itoa(len(payload)))
	b.WriteByte(' ')
	b.Write(payload)
	return []byte(b.String())
}

// KeyID is the lowercase hex sha256 of the raw 32-byte Ed25519 public key.
func KeyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return hex.EncodeToString(sum[:])
}

// SignPayload wraps payload in a DSSE envelope signed with key. It checks nothing about the payload: use Sign for
// a destruction statement.
func SignPayload(payloadType string, payload []byte, key ed25519.PrivateKey) (Envelope, error) {
	if len(key) != ed25519.PrivateKeySize {
		return Envelope{}, fmt.Errorf("signing key is %d bytes, want an Ed25519 private key (%d)", len(key), ed25519.PrivateKeySize)
	}
	sig := ed25519.Sign(key, PAE(payloadType, payload))
	return Envelope{
		PayloadType: payloadType,
		Payload:     b64.EncodeToString(payload),
		Signatures:  []Signature{{KeyID: KeyID(key.Public().(ed25519.PublicKey)), Sig: b64.EncodeToString(sig)}},
	}, nil
}

// Sign normalizes st (see Normalize), refuses it when CheckComplete finds a problem — custos never signs a
// certificate that `custos verify` would reject — and returns it signed in a DSSE envelope. Ed25519 is
// deterministic, so the same statement and key always give the same envelope.
func Sign(st Statement, key ed25519.PrivateKey) (Envelope, error) {
	st = Normalize(st)
	if problems := CheckComplete(st); len(problems) > 0 {
		return Envelope{}, &IncompleteError{Problems: problems}
	}
	payload, err := MarshalPayload(st)
	if err != nil {
		return Envelope{}, err
	}
	return SignPayload(PayloadType, payload, key)
}

// IncompleteError is Sign's refusal of a statement that is not a complete certificate.
type IncompleteError struct{ Problems []string }

func (e *IncompleteError) Error() string {
	return "statement is not a complete certificate of destruction: " + strings.Join(e.Problems, "; ")
}

// VerifyPayload checks the envelope's payloadType and that a signature carrying pub's keyid verifies with pub, and
// returns the decoded payload bytes.
func VerifyPayload(env Envelope, pub ed25519.PublicKey) ([]byte, error) {
	if len(pub) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("public key is %d bytes, want an Ed25519 public key (%d)", len(pub), ed25519.PublicKeySize)
	}
	if env.PayloadType != PayloadType {
		return nil, fmt.Errorf("payloadType is %q, want %q", env.PayloadType, PayloadType)
	}
	if len(env.Payload) > MaxPayloadLength {
		return nil, fmt.Errorf("payload is longer than %d base64 characters", MaxPayloadLength)
	}
	payload, err := b64.DecodeString(env.Payload)
	if err != nil {
		return nil, fmt.Errorf("payload is not standard base64: %w", err)
	}
	if len(env.Signatures) == 0 {
		return nil, errors.New("envelope has no signatures")
	}
	keyID := KeyID(pub)
	pae := PAE(env.PayloadType, payload)
	var ids []string
	var sigErr error
	for i, s := range env.Signatures {
		ids = append(ids, s.KeyID)
		raw, err := b64.DecodeString(s.Sig)
		if err != nil || len(raw) != ed25519.SignatureSize {
			if s.KeyID == keyID {
				sigErr = fmt.Errorf("signature %d (keyid %s) is not a base64 Ed25519 signature", i, s.KeyID)
			}
			continue
		}
		ok := ed25519.Verify(pub, pae, raw)
		switch {
		case s.KeyID == keyID && ok:
			return payload, nil
		case s.KeyID == keyID:
			sigErr = fmt.Errorf("signature by key %s does not verify: the payload or the signature was altered", keyID)
		case ok:
			sigErr = fmt.Errorf("signature %d verifies with key %s but names keyid %s", i, keyID, s.KeyID)
		}
	}
	if sigErr != nil {
		return nil, sigErr
	}
	return nil, fmt.Errorf("no signature by key %s (the envelope's keyids: %s)", keyID, strings.Join(ids, ", "))
}

// Verify checks the envelope with pub (payloadType, keyid, Ed25519 signature over the PAE) and decodes the payload
// strictly as a destruction statement (_type, predicateType, no unknown fields, canonical encoding). It does not
// judge completeness: call CheckComplete on the result.
func Verify(env Envelope, pub ed25519.PublicKey) (Statement, error) {
	payload, err := VerifyPayload(env, pub)
	if err != nil {
		return Statement{}, err
	}
	return UnmarshalPayload(payload)
}

// ToAPI converts the envelope to the DestructionCertificate's field type.
func (e Envelope) ToAPI() v1alpha1.DSSEEnvelope {
	out := v1alpha1.DSSEEnvelope{PayloadType: e.PayloadType, Payload: e.Payload}
	for _, s := range e.Signatures {
		out.Signatures = append(out.Signatures, v1alpha1.DSSESignature{KeyID: s.KeyID, Sig: s.Sig})
	}
	return out
}

// EnvelopeFromAPI converts a DestructionCertificate's envelope.
func EnvelopeFromAPI(in v1alpha1.DSSEEnvelope) Envelope {
	out := Envelope{PayloadType: in.PayloadType, Payload: in.Payload}
	for _, s := range in.Signatures {
		out.Signatures = append(out.Signatures, Signature{KeyID: s.KeyID, Sig: s.Sig})
	}
	return out
}
