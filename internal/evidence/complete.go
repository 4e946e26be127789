package evidence

import (
	"encoding/hex"
	"fmt"
	"regexp"
	"strings"
	"time"
)

// credentialsInURL matches userinfo with a password in a URL ("s3:https://key:secret@host", "rest:https://u:p@h").
var credentialsInURL = regexp.MustCompile(`://[^/@\s]*:[^/@\s]*@`)

func isSHA256Hex(s string) bool {
	if len(s) != 64 {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil && s == strings.ToLower(s)
}

func ts(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// CheckComplete lists what keeps st from being a complete certificate of destruction, in a person's words; nil
// means complete. It checks the statement's own consistency only — never a signature (Verify does that) and never
// the world (the controller verified each location before it signed).
//
// A complete certificate has: the in-toto _type and custos predicateType; at least one subject, each with a
// lowercase hex sha256; tenant name and UID, contract id and start, data controller name and contact, processor
// name; at least one location, each with a known kind, an identifier free of credentials, method Clear or Purge,
// a technique, a tool, start and completion times in order and not after issuedAt, a verification method and the
// result Verified; the inventory and audit-head subjects, when present, matching the predicate; an export (when there is one) whose digest is also a subject and which was acknowledged or
// timed out; retained items with a reason; an audit head (64 hex) and length ≥ 1; a legal hold (when there was
// one) lifted, and no location destroyed while it was in place; and issuedAt.
func CheckComplete(st Statement) []string {
	var p []string
	add := func(format string, args ...any) { p = append(p, fmt.Sprintf(format, args...)) }

	if st.Type != StatementType {
		add("_type is %q, want %q", st.Type, StatementType)
	}
	if st.PredicateType != PredicateType {
		add("predicateType is %q, want %q", st.PredicateType, PredicateType)
	}
	if len(st.Subject) == 0 {
		add("no subjects: the statement commits to no artefact")
	}
	subjects := map[string]string{}
	for i, s := range st.Subject {
		if s.Name == "" {
			add("subject %d has no name", i+1)
		}
		d, ok := s.Digest["sha256"]
		switch {
		case !ok:
			add("subject %q has no sha256 digest", s.Name)
		case !isSHA256Hex(d):
			add("subject %q: sha256 %q is not 64 lowercase hex digits", s.Name, d)
		}
		if _, dup := subjects[s.Name]; dup {
			add("subject %q appears twice", s.Name)
		}
		subjects[s.Name] = d
	}

	d := st.Predicate
	if d.Tenant.Name == "" {
		add("tenant.name is empty")
	}
	if d.Tenant.UID == "" {
		add("tenant.uid is empty")
	}
	if d.Contract.ID == "" {
		add("contract.id is empty")
	}
	if d.Contract.Start.IsZero() {
		add("contract.start is missing")
	}
	if !d.Contract.End.IsZero() && !d.Contract.End.After(d.Contract.Start) {
		add("contract.end %s is not after contract.start %s", ts(d.Contract.End), ts(d.Contract.Start))
	}
	if d.DataController.Name == "" {
		add("dataController.name is empty")
	}
	if d.DataController.Contact == "" {
		add("dataController.contact is empty")
	}
	if d.Processor.Name == "" {
		add("processor.name is empty")
	}
	if d.IssuedAt.IsZero() {
		add("issuedAt is missing")
	}

	if sd, ok := subjects[InventorySubjectName]; ok {
		if want := InventorySubject(d.Locations).Digest["sha256"]; sd != want {
			add("subject %q: sha256 %s is not the digest of predicate.locations (%s)", InventorySubjectName, sd, want)
		}
	}
	if sd, ok := subjects[AuditSubjectName]; ok && sd != d.Audit.Head {
		add("subject %q: sha256 %s is not audit.head %s", AuditSubjectName, sd, d.Audit.Head)
	}

	if e := d.Export; e != nil {
		switch {
		case e.Name == "":
			add("export.name is empty")
		case !isSHA256Hex(e.SHA256):
			add("export.sha256 %q is not 64 lowercase hex digits", e.SHA256)
		default:
			sd, ok := subjects[e.Name]
			switch {
			case !ok:
				add("export %q is not among the subjects: the statement does not commit to its digest", e.Name)
			case sd != e.SHA256:
				add("export %q: subject digest sha256:%s differs from export.sha256 %s", e.Name, sd, e.SHA256)
			}
		}
		if e.Bytes <= 0 {
			add("export %q: bytes is %d", e.Name, e.Bytes)
		}
		switch {
		case e.AcknowledgedAt.IsZero() && !e.AcknowledgeTimedOut:
			add("export %q was neither acknowledged nor timed out", e.Name)
		case !e.AcknowledgedAt.IsZero() && e.AcknowledgeTimedOut:
			add("export %q is both acknowledged and timed out", e.Name)
		}
	}

	if len(d.Locations) == 0 {
		add("no locations: the certificate names nothing that was destroyed")
	}
	var firstStart time.Time
	for i, l := range d.Locations {
		name := fmt.Sprintf("location %d (%s %s)", i+1, l.Kind, l.Identifier)
		switch l.Kind {
		case KindDatabase, KindNamespace, KindSecret, KindRepository:
		case "":
			add("%s: kind is empty", name)
		default:
			add("%s: kind %q is not database, namespace, secret or repository", name, l.Kind)
		}
		if l.Identifier == "" {
			add("%s: identifier is empty", name)
		} else if credentialsInURL.MatchString(l.Identifier) {
			add("location %d (%s): identifier contains credentials", i+1, l.Kind)
		}
		switch l.Method {
		case MethodClear, MethodPurge:
		case "":
			add("%s: method is empty", name)
		default:
			add("%s: method %q is not Clear or Purge", name, l.Method)
		}
		if l.Technique == "" {
			add("%s: technique is empty", name)
		}
		if l.Tool.Name == "" {
			add("%s: tool.name is empty", name)
		}
		switch {
		case l.StartedAt.IsZero():
			add("%s: startedAt is missing", name)
		case firstStart.IsZero() || l.StartedAt.Before(firstStart):
			firstStart = l.StartedAt
		}
		switch {
		case l.CompletedAt.IsZero():
			add("%s: completedAt is missing", name)
		case !l.StartedAt.IsZero() && l.CompletedAt.Before(l.StartedAt):
			add("%s: completedAt %s is before startedAt %s", name, ts(l.CompletedAt), ts(l.StartedAt))
		case !d.IssuedAt.IsZero() && l.CompletedAt.After(d.IssuedAt):
			add("%s: completedAt %s is after issuedAt %s", name, ts(l.CompletedAt), ts(d.IssuedAt))
		}
		if l.Verification.Method == "" {
			add("%s: verification.method is empty", name)
		}
		if l.Verification.Result != ResultVerified {
			add("%s: verification result is %q, not %q", name, l.Verification.Result, ResultVerified)
		}
	}

	for i, r := range d.Retained {
		if r.What == "" || r.Reason == "" {
			add("retained item %d needs both what and reason", i+1)
		}
	}

	if !isSHA256Hex(d.Audit.Head) {
		add("audit.head %q is not 64 lowercase hex digits", d.Audit.Head)
	}
	if d.Audit.Length < 1 {
		add("audit.length is %d: the audit trail is empty", d.Audit.Length)
	}

	if h := d.LegalHold; h != nil {
		// No location may have been destroyed while the hold was in place (from setAt, or from the beginning when
		// setAt is not known, to liftedAt): a hold set and lifted between two steps of the exit is fine.
		p = append(p, HoldProblems([]LegalHold{*h}, d.Locations)...)
		if !h.SetAt.IsZero() && !h.LiftedAt.IsZero() && h.LiftedAt.Before(h.SetAt) {
			add("legal hold %q was lifted at %s, before it was set at %s", h.Reason, ts(h.LiftedAt), ts(h.SetAt))
		}
		if h.Reason == "" {
			add("legalHold.reason is empty")
		}
	}
	return p
}
