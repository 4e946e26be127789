package evidence

import (
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// KeyHistory is every key that ever signed certificates, oldest first, as the manager publishes it (ConfigMap
// custos-signing-key, key history.json) so that a certificate signed with an earlier key still verifies: a
// verifier picks the key by the keyid in the envelope's signature and checks that the certificate was issued while
// that key was in use. The last entry without ValidUntil is the key in use.
type KeyHistory []PublishedKey

// PublishedKey is one public key and when it signed.
type PublishedKey struct {
	KeyID string `json:"keyid"`
	// PublicKey is the PKIX PEM of the Ed25519 public key.
	PublicKey string `json:"publicKey"`
	// ValidFrom is when custos started signing with it (zero: before the history was kept).
	ValidFrom time.Time `json:"validFrom,omitzero"`
	// ValidUntil is when the next key replaced it (zero: the key in use).
	ValidUntil time.Time `json:"validUntil,omitzero"`
}

// ParseKeyHistory decodes a history strictly and checks each entry: its PEM is an Ed25519 public key whose keyid
// is the one named, and validity periods are in order.
func ParseKeyHistory(data []byte) (KeyHistory, error) {
	var h KeyHistory
	if err := decodeStrict(data, &h); err != nil {
		return nil, fmt.Errorf("key history: %w", err)
	}
	for i, k := range h {
		pub, err := ParsePublicKey([]byte(k.PublicKey))
		if err != nil {
			return nil, fmt.Errorf("key history entry %d: %w", i+1, err)
		}
		if id := KeyID(pub); id != k.KeyID {
			return nil, fmt.Errorf("key history entry %d names keyid %s, but its key's keyid is %s", i+1, k.KeyID, id)
		}
		if !k.ValidUntil.IsZero() && k.ValidUntil.Before(k.ValidFrom) {
			return nil, fmt.Errorf("key history entry %d (%s): validUntil is before validFrom", i+1, k.KeyID)
		}
	}
	return h, nil
}

// Marshal encodes the history as published (indented JSON, times in UTC).
func (h KeyHistory) Marshal() []byte {
	for i := range h {
		h[i].ValidFrom, h[i].ValidUntil = canonicalTime(h[i].ValidFrom), canonicalTime(h[i].ValidUntil)
	}
	b, err := json.MarshalIndent(h, "", "  ")
	if err != nil {
		panic(err) // strings and in-range times only
	}
	return append(b, '\n')
}

// Current is the key in use: the last entry, when it has no ValidUntil.
func (h KeyHistory) Current() (PublishedKey, bool) {
	if len(h) == 0 || !h[len(h)-1].ValidUntil.IsZero() {
		return PublishedKey{}, false
	}
	return h[len(h)-1], true
}

// Find returns the entry with keyid and its public key.
func (h KeyHistory) Find(keyid string) (PublishedKey, ed25519.PublicKey, bool) {
	for _, k := range h {
		if k.KeyID == keyid {
			pub, err := ParsePublicKey([]byte(k.PublicKey))
			if err != nil {
				return PublishedKey{}, nil, false
			}
			return k, pub, true
		}
	}
	return PublishedKey{}, nil, false
}

// With returns the history with pub as the key in use from now: the current key (if another) gets ValidUntil now.
// A key already in use is left as it is.
func (h KeyHistory) With(pub ed25519.PublicKey, now time.Time) (KeyHistory, error) {
	id := KeyID(pub)
	if cur, ok := h.Current(); ok && cur.KeyID == id {
		return h, nil
	}
	pem, err := MarshalPublicKey(pub)
	if err != nil {
		return nil, err
	}
	out := append(KeyHistory(nil), h...)
	if len(out) > 0 && out[len(out)-1].ValidUntil.IsZero() {
		out[len(out)-1].ValidUntil = canonicalTime(now)
	}
	return append(out, PublishedKey{KeyID: id, PublicKey: string(pem), ValidFrom: canonicalTime(now)}), nil
}

// KeyFor picks the key that verifies env: the first signature whose keyid is in the history. It returns an error
// naming the envelope's keyids when none is known.
func (h KeyHistory) KeyFor(env Envelope) (PublishedKey, ed25519.PublicKey, error) {
	var ids []string
	for _, s := range env.Signatures {
		if k, pub, ok := h.Find(s.KeyID); ok {
			return k, pub, nil
		}
		ids = append(ids, s.KeyID)
	}
	if len(ids) == 0 {
		return PublishedKey{}, nil, errors.New("envelope has no signatures")
	}
	return PublishedKey{}, nil, fmt.Errorf("signed by key %s, which is not in the key history (%d key(s): %s)",
		strings.Join(ids, ", "), len(h), strings.Join(h.ids(), ", "))
}

func (h KeyHistory) ids() []string {
	var out []string
	for _, k := range h {
		out = append(out, k.KeyID)
	}
	return out
}

// ValidAt reports a problem when a certificate issued at t could not have been signed with k: before the key was
// in use, or after it was replaced.
func (k PublishedKey) ValidAt(t time.Time) error {
	t = canonicalTime(t)
	switch {
	case !k.ValidFrom.IsZero() && t.Before(k.ValidFrom):
		return fmt.Errorf("issued at %s, before key %s was in use (from %s)", ts(t), k.KeyID, ts(k.ValidFrom))
	case !k.ValidUntil.IsZero() && t.After(k.ValidUntil):
		return fmt.Errorf("issued at %s, after key %s was replaced (at %s)", ts(t), k.KeyID, ts(k.ValidUntil))
	}
	return nil
}
