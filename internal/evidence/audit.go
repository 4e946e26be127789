package evidence

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"time"
)

// Action is what an audit entry records.
type Action string

// The lifecycle actions custos records on a tenant's audit trail.
const (
	ActionProvisioned        Action = "Provisioned"
	ActionSnapshot           Action = "Snapshot"
	ActionCopy               Action = "Copy"
	ActionExpiry             Action = "Expiry"
	ActionCheck              Action = "Check"
	ActionDrill              Action = "Drill"
	ActionSuspended          Action = "Suspended"
	ActionExportWritten      Action = "ExportWritten"
	ActionExportAcknowledged Action = "ExportAcknowledged"
	ActionExportExpired      Action = "ExportExpired"
	ActionLiveDataPurged     Action = "LiveDataPurged"
	ActionShredded           Action = "Shredded"
	ActionBackupsExpired     Action = "BackupsExpired"
	ActionCertificateIssued  Action = "CertificateIssued"
	ActionLegalHoldSet       Action = "LegalHoldSet"
	ActionLegalHoldLifted    Action = "LegalHoldLifted"
)

// Actions lists every known action in lifecycle order.
func Actions() []Action {
	return []Action{ActionProvisioned, ActionSnapshot, ActionCopy, ActionExpiry, ActionCheck, ActionDrill,
		ActionSuspended, ActionExportWritten, ActionExportAcknowledged, ActionExportExpired, ActionLiveDataPurged,
		ActionShredded, ActionBackupsExpired, ActionCertificateIssued, ActionLegalHoldSet, ActionLegalHoldLifted}
}

// Known reports whether a is one of Actions(). The chain does not require it (a newer custos may add actions).
func (a Action) Known() bool {
	for _, k := range Actions() {
		if a == k {
			return true
		}
	}
	return false
}

// Genesis is the Prev of a chain's first entry: 64 zeros. The chain is bound to its tenant by every entry's
// Tenant field and by the Provisioned entry's detail (uid), not by the genesis, so a chain can be checked without
// knowing anything outside it.
var Genesis = strings.Repeat("0", 64)

// Entry is one record of a tenant's audit trail. Seq counts from 1; Prev is the Hash of the entry before (Genesis
// for the first); Hash is the lowercase hex sha256 of the entry's canonical JSON without Hash.
type Entry struct {
	Seq    int64             `json:"seq"`
	Time   time.Time         `json:"time"`
	Tenant string            `json:"tenant"`
	Action Action            `json:"action"`
	Actor  string            `json:"actor"`
	Detail map[string]string `json:"detail,omitempty"`
	Prev   string            `json:"prev"`
	Hash   string            `json:"hash"`
}

// entryBody is what an entry's hash covers, in this order.
type entryBody struct {
	Seq    int64             `json:"seq"`
	Time   time.Time         `json:"time"`
	Tenant string            `json:"tenant"`
	Action Action            `json:"action"`
	Actor  string            `json:"actor"`
	Detail map[string]string `json:"detail,omitempty"`
	Prev   string            `json:"prev"`
}

// CanonicalEntry returns the bytes an entry's hash covers: one JSON object with the keys seq, time, tenant, action,
// actor, detail (omitted when empty; its keys sorted), prev, in that order; no whitespace; no HTML escaping; time
// in UTC as RFC 3339 with as many fractional-second digits as needed (none for whole seconds).
func CanonicalEntry(e Entry) []byte {
	b, err := canonicalJSON(entryBody{Seq: e.Seq, Time: e.Time.UTC(), Tenant: e.Tenant, Action: e.Action,
		Actor: e.Actor, Detail: e.Detail, Prev: e.Prev})
	if err != nil {
		// Only strings, an integer, a time and a string map: encoding cannot fail except for a year outside
		// 0–9999, which no clock produces.
		panic(fmt.Sprintf("audit entry cannot be encoded: %v", err))
	}
	return b
}

// EntryHash is hex(sha256(CanonicalEntry(e))).
func EntryHash(e Entry) string {
	sum := sha256.Sum256(CanonicalEntry(e))
	return hex.EncodeToString(sum[:])
}

// Append returns e as the entry after prev (nil for the first entry): Seq and Prev filled in, Time in UTC without
// a monotonic reading, Hash computed. Whatever e had in those fields is overwritten. It does not read the clock:
// set e.Time.
func Append(prev *Entry, e Entry) Entry {
	if prev == nil {
		e.Seq, e.Prev = 1, Genesis
	} else {
		e.Seq, e.Prev = prev.Seq+1, prev.Hash
	}
	e.Time = e.Time.UTC().Round(0)
	if len(e.Detail) == 0 {
		e.Detail = nil
	}
	e.Hash = EntryHash(e)
	return e
}

// ChainError says where and why a chain is broken.
type ChainError struct {
	// Seq is the first sequence number at which the chain does not hold: the altered entry, the first missing
	// one, the one found out of place, or the one whose Prev does not link.
	Seq int64
	// Index is the position in the slice where the break was found.
	Index  int
	Reason string
}

func (e *ChainError) Error() string {
	return fmt.Sprintf("audit chain broken at seq %d: %s", e.Seq, e.Reason)
}

// VerifyChain checks a whole chain from its first entry: every hash recomputes, Seq runs 1, 2, 3, … without gap,
// every Prev is the hash before (Genesis first), and all entries belong to one tenant. It returns a *ChainError
// naming the first broken Seq, or nil. An empty chain is valid.
func VerifyChain(entries []Entry) error {
	return VerifyChainFrom(Genesis, 1, entries)
}

// VerifyChainFrom checks a segment of a chain that continues after an entry with hash prevHash, its first entry
// having Seq firstSeq (VerifyChain is VerifyChainFrom(Genesis, 1, …)).
func VerifyChainFrom(prevHash string, firstSeq int64, entries []Entry) error {
	brk := func(seq int64, i int, format string, args ...any) error {
		return &ChainError{Seq: seq, Index: i, Reason: fmt.Sprintf(format, args...)}
	}
	prev := prevHash
	for i, e := range entries {
		want := firstSeq + int64(i)
		if h := EntryHash(e); h != e.Hash {
			if e.Seq != want {
				return brk(want, i, "entry altered (its seq now reads %d): its content hashes to %s, not the recorded %s",
					e.Seq, short(h), short(e.Hash))
			}
			return brk(want, i, "entry altered: its content hashes to %s, not the recorded %s", short(h), short(e.Hash))
		}
		if e.Seq != want {
			later := -1
			for j := i + 1; j < len(entries); j++ {
				if entries[j].Seq == want {
					later = j
					break
				}
			}
			switch {
			case e.Seq < want:
				return brk(want, i, "seq %d appears again at position %d, where %d belongs", e.Seq, i+1, want)
			case later >= 0:
				return brk(want, i, "entries out of order: seq %d found at position %d, where %d belongs (seq %d is at position %d)",
					e.Seq, i+1, want, want, later+1)
			case i == 0:
				return brk(want, i, "entry %d is missing (the entries start at %d)", want, e.Seq)
			case e.Seq == want+1:
				return brk(want, i, "entry %d is missing (found %d after %d)", want, e.Seq, want-1)
			default:
				return brk(want, i, "entries %d to %d are missing (found %d after %d)", want, e.Seq-1, e.Seq, want-1)
			}
		}
		if e.Prev != prev {
			what := fmt.Sprintf("the hash of seq %d", want-1)
			if i == 0 {
				what = "the chain's start " + short(prev)
				if want == 1 {
					what = "the genesis (64 zeros)"
				}
			}
			return brk(want, i, "prev %s is not %s: an entry before it was removed, replaced or altered and rehashed",
				short(e.Prev), what)
		}
		if i > 0 && e.Tenant != entries[0].Tenant {
			return brk(want, i, "entry is for tenant %q, the chain for %q", e.Tenant, entries[0].Tenant)
		}
		prev = e.Hash
	}
	return nil
}

func short(h string) string {
	if len(h) > 12 {
		return h[:12] + "…"
	}
	return h
}

// Head returns the hash of the last entry and the chain's length (the last Seq). An empty chain's head is Genesis
// with length 0.
func Head(entries []Entry) (hash string, length int) {
	if len(entries) == 0 {
		return Genesis, 0
	}
	last := entries[len(entries)-1]
	return last.Hash, int(last.Seq)
}

// MarshalLine encodes one entry as stored: its canonical JSON with "hash" as the last key, no newline.
func MarshalLine(e Entry) []byte {
	body := CanonicalEntry(e)
	var b bytes.Buffer
	b.Write(body[:len(body)-1])
	fmt.Fprintf(&b, `,"hash":%q}`, e.Hash)
	return b.Bytes()
}

// MarshalLines encodes entries as JSON lines, one entry per line, each ending in "\n".
func MarshalLines(entries []Entry) []byte {
	var b bytes.Buffer
	for _, e := range entries {
		b.Write(MarshalLine(e))
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// ParseLines decodes JSON lines of entries strictly (unknown fields are errors, naming the line); blank lines are
// skipped, so segments can be concatenated. It does not verify the chain.
func ParseLines(data []byte) ([]Entry, error) {
	var out []Entry
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64*1024), 16<<20)
	for n := 1; sc.Scan(); n++ {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		var e Entry
		if err := decodeStrict(line, &e); err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		e.Time = e.Time.UTC()
		out = append(out, e)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return out, nil
}
