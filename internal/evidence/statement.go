// Package evidence holds what custos offers as proof: the certificate of destruction (an in-toto Statement in a
// DSSE envelope, signed with Ed25519) and the per-tenant audit trail (a hash chain). Everything here is pure: no
// clock, no cluster, no files. The controller builds a Statement, signs it and stores the envelope; `custos verify`
// checks it offline with the published public key.
package evidence

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"time"
)

const (
	// StatementType is the in-toto Statement layer's _type.
	StatementType = "https://in-toto.io/Statement/v1"
	// PredicateType identifies custos' destruction predicate, version 1.
	PredicateType = "https://custos.io/destruction/v1"
	// PayloadType is the DSSE payload type of an in-toto Statement.
	PayloadType = "application/vnd.in-toto+json"
)

// Location kinds.
const (
	KindDatabase   = "database"
	KindNamespace  = "namespace"
	KindSecret     = "secret"
	KindRepository = "repository"
)

// Sanitization methods (NIST SP 800-88 Rev. 1, section 2.5).
const (
	MethodClear = "Clear"
	MethodPurge = "Purge"
)

// Verification results. Only Verified makes a certificate complete; the others exist so that a draft statement
// can say what went wrong.
const (
	ResultVerified    = "Verified"
	ResultNotVerified = "NotVerified"
	ResultFailed      = "Failed"
)

// Statement is an in-toto Statement v1 whose predicate is a Destruction.
type Statement struct {
	Type          string      `json:"_type"`
	Subject       []Subject   `json:"subject"`
	PredicateType string      `json:"predicateType"`
	Predicate     Destruction `json:"predicate"`
}

// Subject is one artefact the statement commits to. Digest maps an algorithm to lowercase hex: {"sha256": "…"}.
type Subject struct {
	Name   string            `json:"name"`
	Digest map[string]string `json:"digest"`
}

// Destruction is the predicate: a certificate of sanitization after NIST SP 800-88 Rev. 1, Appendix G, for every
// storage location that held one tenant's data.
type Destruction struct {
	Tenant         Tenant          `json:"tenant"`
	Contract       Contract        `json:"contract"`
	DataController DataController  `json:"dataController"`
	Processor      Processor       `json:"processor"`
	Export         *ExportEvidence `json:"export,omitempty"`
	// Locations has one entry per storage location: the database, each namespace, each Secret holding a key, each
	// repository at each backup location.
	Locations []Location `json:"locations"`
	// Retained names what was deliberately kept and why (the audit trail, this certificate).
	Retained  []Retained `json:"retained,omitempty"`
	Audit     AuditRef   `json:"audit"`
	LegalHold *LegalHold `json:"legalHold,omitempty"`
	Notes     []string   `json:"notes,omitempty"`
	IssuedAt  time.Time  `json:"issuedAt"`
}

// Tenant identifies the destroyed tenant.
type Tenant struct {
	Name        string `json:"name"`
	UID         string `json:"uid"`
	DisplayName string `json:"displayName,omitempty"`
}

// Contract is the data-processing agreement that ended.
type Contract struct {
	ID    string    `json:"id"`
	Start time.Time `json:"start"`
	End   time.Time `json:"end,omitzero"`
}

// DataController is the customer (the controller in GDPR terms) the certificate is for.
type DataController struct {
	Name    string `json:"name"`
	Contact string `json:"contact"`
	Email   string `json:"email,omitempty"`
}

// Processor is the organisation that ran custos and destroyed the data.
type Processor struct {
	Name string `json:"name"`
}

// ExportEvidence records the data returned before destruction. Its digest must also be a subject of the statement
// (a subject with the same Name).
type ExportEvidence struct {
	Name                string    `json:"name"`
	SHA256              string    `json:"sha256"`
	Bytes               int64     `json:"bytes"`
	AcknowledgedAt      time.Time `json:"acknowledgedAt,omitzero"`
	AcknowledgeTimedOut bool      `json:"acknowledgeTimedOut,omitempty"`
	ReceivedBy          string    `json:"receivedBy,omitempty"`
}

// Location is one storage location and how its copy of the data was destroyed.
type Location struct {
	// Kind is database, namespace, secret or repository.
	Kind string `json:"kind"`
	// Identifier names exactly what was destroyed: database name and OID, namespace name and UID, Secret
	// namespace/name and UID, repository id and URL without credentials.
	Identifier string `json:"identifier"`
	// Location is the status.exit.destroyed entry's name: the BackupLocation for a repository, the database's or
	// role's name for a database or role, namespace/name for a Secret, the namespace's name for a namespace.
	Location     string `json:"location,omitempty"`
	Jurisdiction string `json:"jurisdiction,omitempty"`
	// Method is the NIST SP 800-88 category: Clear or Purge.
	Method string `json:"method"`
	// Technique says how, e.g. "DROP DATABASE WITH (FORCE)" or "restic forget+prune, delete every object,
	// delete key (cryptographic erase)".
	Technique    string       `json:"technique"`
	Tool         Tool         `json:"tool"`
	StartedAt    time.Time    `json:"startedAt"`
	CompletedAt  time.Time    `json:"completedAt"`
	Verification Verification `json:"verification"`
}

// Tool is the program that did the destruction.
type Tool struct {
	Name    string `json:"name"`
	Version string `json:"version,omitempty"`
}

// Verification is how the destruction was checked afterwards and what was found.
type Verification struct {
	Method string `json:"method"`
	Result string `json:"result"`
	Detail string `json:"detail,omitempty"`
}

// Retained is something deliberately kept after destruction.
type Retained struct {
	What   string `json:"what"`
	Reason string `json:"reason"`
}

// AuditRef commits the certificate to the tenant's audit trail: the hash of its last entry and its length.
type AuditRef struct {
	Head   string `json:"head"`
	Length int    `json:"length"`
}

// LegalHold is a hold that was in place during the tenant's exit and lifted before destruction.
type LegalHold struct {
	Reason   string    `json:"reason"`
	SetAt    time.Time `json:"setAt,omitzero"`
	Until    time.Time `json:"until,omitzero"`
	LiftedAt time.Time `json:"liftedAt"`
}

// canonicalTime is how every time in a statement is written: UTC, whole seconds (the precision of the
// DestructionCertificate's metav1.Time fields, so spec and payload can agree exactly).
func canonicalTime(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.UTC().Truncate(time.Second)
}

// Normalize returns a copy of st as it will be signed: _type and predicateType filled in when empty, every time in
// UTC truncated to whole seconds, empty subject digests and slices left as they are. Sign normalizes; build the
// DestructionCertificate's spec from the normalized statement (SpecFor does).
func Normalize(st Statement) Statement {
	out := st
	if out.Type == "" {
		out.Type = StatementType
	}
	if out.PredicateType == "" {
		out.PredicateType = PredicateType
	}
	if st.Subject != nil {
		out.Subject = make([]Subject, len(st.Subject))
		for i, s := range st.Subject {
			out.Subject[i] = Subject{Name: s.Name}
			if s.Digest != nil {
				out.Subject[i].Digest = make(map[string]string, len(s.Digest))
				for k, v := range s.Digest {
					out.Subject[i].Digest[k] = v
				}
			}
		}
	}
	p := &out.Predicate
	p.Contract.Start = canonicalTime(p.Contract.Start)
	p.Contract.End = canonicalTime(p.Contract.End)
	if p.Export != nil {
		e := *p.Export
		e.AcknowledgedAt = canonicalTime(e.AcknowledgedAt)
		p.Export = &e
	}
	if st.Predicate.Locations != nil {
		p.Locations = make([]Location, len(st.Predicate.Locations))
		for i, l := range st.Predicate.Locations {
			l.StartedAt = canonicalTime(l.StartedAt)
			l.CompletedAt = canonicalTime(l.CompletedAt)
			p.Locations[i] = l
		}
	}
	if st.Predicate.Retained != nil {
		p.Retained = append([]Retained(nil), st.Predicate.Retained...)
	}
	if p.LegalHold != nil {
		h := *p.LegalHold
		h.SetAt = canonicalTime(h.SetAt)
		h.Until = canonicalTime(h.Until)
		h.LiftedAt = canonicalTime(h.LiftedAt)
		p.LegalHold = &h
	}
	if st.Predicate.Notes != nil {
		p.Notes = append([]string(nil), st.Predicate.Notes...)
	}
	p.IssuedAt = canonicalTime(p.IssuedAt)
	return out
}

// MarshalPayload returns the canonical JSON of the normalized statement: fields in struct order, map keys sorted,
// no insignificant whitespace, no HTML escaping, times RFC 3339 in UTC. The same Statement always gives the same
// bytes.
func MarshalPayload(st Statement) ([]byte, error) {
	return canonicalJSON(Normalize(st))
}

func canonicalJSON(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// decodeStrict decodes exactly one JSON value into v, refusing unknown fields and trailing data.
func decodeStrict(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); err == nil {
		return fmt.Errorf("trailing data after the JSON value")
	}
	return nil
}

// UnmarshalPayload decodes a statement payload strictly (unknown fields, trailing data and a non-canonical
// encoding are errors) and checks _type and predicateType. It does not check a signature: use Verify.
func UnmarshalPayload(payload []byte) (Statement, error) {
	var st Statement
	if err := decodeStrict(payload, &st); err != nil {
		return Statement{}, fmt.Errorf("payload is not a destruction statement: %w", err)
	}
	if st.Type != StatementType {
		return Statement{}, fmt.Errorf("payload _type is %q, want %q", st.Type, StatementType)
	}
	if st.PredicateType != PredicateType {
		return Statement{}, fmt.Errorf("payload predicateType is %q, want %q", st.PredicateType, PredicateType)
	}
	canon, err := MarshalPayload(st)
	if err != nil {
		return Statement{}, err
	}
	if !bytes.Equal(canon, payload) {
		// Duplicate keys, reordered fields, non-UTC or fractional times: another JSON reader could see something
		// else than custos does, so such a payload is refused even when its signature is good.
		return Statement{}, fmt.Errorf("payload is not in canonical form (duplicate or reordered keys, whitespace, or times not in whole-second UTC)")
	}
	return st, nil
}

// Methods returns the distinct sanitization methods of the statement's locations: Clear, then Purge, then any
// other value in lexical order.
func Methods(st Statement) []string {
	rank := func(m string) int {
		switch m {
		case MethodClear:
			return 0
		case MethodPurge:
			return 1
		}
		return 2
	}
	var out []string
	for _, l := range st.Predicate.Locations {
		if !slices.Contains(out, l.Method) {
			out = append(out, l.Method)
		}
	}
	slices.SortFunc(out, func(a, b string) int {
		if c := cmp.Compare(rank(a), rank(b)); c != 0 {
			return c
		}
		return cmp.Compare(a, b)
	})
	return out
}

// Names of the subjects custos derives from the predicate itself. CheckComplete requires their digests to match.
const (
	InventorySubjectName = "inventory of destroyed locations (canonical JSON of predicate.locations)"
	AuditSubjectName     = "audit trail head"
)

// InventorySubject commits to the list of destroyed locations: the sha256 of their canonical JSON, which is
// byte for byte the value of predicate.locations in the payload (so an auditor can recompute it from the payload
// alone, e.g. jq -cj .predicate.locations payload.json | sha256sum).
func InventorySubject(locations []Location) Subject {
	n := Normalize(Statement{Predicate: Destruction{Locations: locations}})
	b, err := canonicalJSON(n.Predicate.Locations)
	if err != nil {
		panic(fmt.Sprintf("locations cannot be encoded: %v", err)) // only strings and in-range times
	}
	sum := sha256.Sum256(b)
	return Subject{Name: InventorySubjectName, Digest: map[string]string{"sha256": hex.EncodeToString(sum[:])}}
}

// AuditSubject names the audit trail's head as a subject (its digest is the head itself).
func AuditSubject(a AuditRef) Subject {
	return Subject{Name: AuditSubjectName, Digest: map[string]string{"sha256": a.Head}}
}

// ExportSubject is the subject that commits the statement to the export bag.
func ExportSubject(e ExportEvidence) Subject {
	return Subject{Name: e.Name, Digest: map[string]string{"sha256": e.SHA256}}
}
