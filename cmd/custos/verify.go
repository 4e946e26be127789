package main

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"time"

	"sigs.k8s.io/yaml"

	v1alpha1 "github.com/custos-io/custos/api/v1alpha1"
	"github.com/custos-io/custos/internal/evidence"
)

// certificate is one thing to verify: the DestructionCertificate's spec (which holds the envelope), or a bare
// envelope.
type certificate struct {
	label string
	env   evidence.Envelope
	spec  *v1alpha1.DestructionCertificateSpec
	// validAt and validity come from the key history: the key must have been in use at the issue time.
	validAt  func(time.Time) error
	validity string
}

func cmdVerify(args []string, stdout, stderr io.Writer) int {
	flags := flag.NewFlagSet("custos verify", flag.ContinueOnError)
	keyFile := flags.String("key", "", "the signer's Ed25519 public key, PEM (this or --keys is required)")
	keysFile := flags.String("keys", "", "the processor's key history (history.json of ConfigMap custos-signing-key, or that ConfigMap as YAML/JSON): the key is picked by the certificate's keyid and must have been in use when it was issued")
	auditFile := flags.String("audit", "", "the tenant's audit trail as JSON lines: check it and that its head is the certificate's")
	var artefacts stringList
	flags.Var(&artefacts, "artefact", "a file the certificate should commit to (e.g. the export bag): its sha256 must be a subject (repeatable)")
	flags.Usage = func() {
		fmt.Fprintln(flags.Output(), "Usage: custos verify <certificate file> (--key <public key PEM> | --keys <key history>) [--audit <file>] [--artefact <file>]...")
		flags.PrintDefaults()
	}
	pos, code, ok := parseArgs(flags, args, stderr)
	if !ok {
		return code
	}
	if len(pos) != 1 {
		return usageError(stderr, "verify takes one certificate file, got %d arguments", len(pos))
	}
	if *keyFile == "" && *keysFile == "" {
		return usageError(stderr, "verify needs --key <public key PEM> or --keys <key history> (what the processor published)")
	}
	var pub ed25519.PublicKey
	var history evidence.KeyHistory
	if *keyFile != "" {
		keyPEM, err := os.ReadFile(*keyFile)
		if err != nil {
			return usageError(stderr, "reading the public key: %v", err)
		}
		if pub, err = evidence.ParsePublicKey(keyPEM); err != nil {
			return usageError(stderr, "%s is not an Ed25519 public key: %v", *keyFile, err)
		}
	}
	if *keysFile != "" {
		raw, err := readInput(*keysFile)
		if err != nil {
			return usageError(stderr, "reading the key history: %v", err)
		}
		if history, err = readKeyHistory(raw); err != nil {
			return usageError(stderr, "%s: %v", *keysFile, err)
		}
	}
	data, err := readInput(pos[0])
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) && !strings.ContainsAny(pos[0], "./") {
			return usageError(stderr, "no file %q (reading a certificate from the cluster is not supported: "+
				"kubectl get dcert %s -o yaml > cert.yaml, then verify cert.yaml)", pos[0], pos[0])
		}
		return usageError(stderr, "reading the certificate: %v", err)
	}
	var audit []evidence.Entry
	if *auditFile != "" {
		raw, err := readInput(*auditFile)
		if err != nil {
			return usageError(stderr, "reading the audit trail: %v", err)
		}
		if audit, err = evidence.ParseLines(raw); err != nil {
			fmt.Fprintf(stdout, "audit trail %s: %v\n\nNOT VERIFIED\n", *auditFile, err)
			return exitFailed
		}
	}
	digests := map[string]string{}
	for _, a := range artefacts {
		sum, err := sha256File(a)
		if err != nil {
			return usageError(stderr, "reading artefact: %v", err)
		}
		digests[a] = sum
	}

	certs, err := decodeCertificates(data)
	if err != nil {
		fmt.Fprintf(stdout, "%s: %v\n\nNOT VERIFIED\n", pos[0], err)
		return exitFailed
	}
	result := exitOK
	for i, c := range certs {
		if i > 0 {
			fmt.Fprintln(stdout, strings.Repeat("─", 72))
		}
		if c.label == "" {
			c.label = "DSSE envelope " + pos[0]
		}
		key, validity := pub, ""
		if history != nil {
			k, hpub, err := history.KeyFor(c.env)
			if err != nil {
				fmt.Fprintf(stdout, "%s\n  signature       NOT VALID: %v\n\nNOT VERIFIED: 1 failure(s)\n  - signature: %v\n", c.label, err, err)
				result = exitFailed
				continue
			}
			if pub != nil && !pub.Equal(hpub) {
				fmt.Fprintf(stdout, "%s\n  note            --key is not the key that signed; the history's key %s is used\n", c.label, k.KeyID)
			}
			key = hpub
			validity = fmt.Sprintf("in use from %s to %s", when(k.ValidFrom), untilText(k.ValidUntil))
			c.validAt = k.ValidAt
		}
		c.validity = validity
		failures := verifyOne(stdout, c, key, audit, *auditFile, artefacts, digests)
		if len(failures) == 0 {
			fmt.Fprintln(stdout, "\nVERIFIED")
			continue
		}
		result = exitFailed
		fmt.Fprintf(stdout, "\nNOT VERIFIED: %d failure(s)\n", len(failures))
		for _, f := range failures {
			fmt.Fprintf(stdout, "  - %s\n", f)
		}
	}
	return result
}

// verifyOne prints what the signed payload says and returns every failure. Nothing of a payload whose signature
// does not verify is printed: it cannot be trusted.
func verifyOne(w io.Writer, c certificate, pub ed25519.PublicKey, audit []evidence.Entry, auditFile string,
	artefacts []string, digests map[string]string) []string {
	fmt.Fprintln(w, c.label)
	var (
		st       evidence.Statement
		failures []string
		err      error
	)
	if c.spec != nil {
		st, failures, err = evidence.VerifyCertificate(*c.spec, pub)
	} else if st, err = evidence.Verify(c.env, pub); err == nil {
		for _, p := range evidence.CheckComplete(st) {
			failures = append(failures, "incomplete: "+p)
		}
	}
	if err != nil {
		fmt.Fprintf(w, "  signature       key %s: NOT VALID\n", evidence.KeyID(pub))
		fmt.Fprintln(w, "  (the payload is not trusted, so nothing of it is shown)")
		return []string{"signature: " + err.Error()}
	}
	fmt.Fprintf(w, "  signature       Ed25519, key %s: valid\n", evidence.KeyID(pub))
	if c.validity != "" {
		fmt.Fprintf(w, "  key history     key %s\n", c.validity)
	}
	if c.validAt != nil {
		if err := c.validAt(st.Predicate.IssuedAt); err != nil {
			failures = append(failures, "key history: "+err.Error())
		}
	}
	printStatement(w, st)

	if auditFile != "" {
		if err := evidence.VerifyChain(audit); err != nil {
			failures = append(failures, fmt.Sprintf("audit trail %s: %v", auditFile, err))
		} else {
			head, n := evidence.Head(audit)
			fmt.Fprintf(w, "  audit file      %s: %d entries, chain intact, head %s\n", auditFile, n, head)
			// The trail goes on after the certificate (the entry recording its signing, at least): what must hold
			// is that the entry at the certificate's length is the certificate's head.
			want := st.Predicate.Audit.Length
			switch {
			case n < want:
				failures = append(failures, fmt.Sprintf("audit trail %s ends after %d entries; the certificate commits to %d entries with head %s",
					auditFile, n, want, st.Predicate.Audit.Head))
			case want < 1 || audit[want-1].Hash != st.Predicate.Audit.Head:
				got := ""
				if want >= 1 {
					got = audit[want-1].Hash
				}
				failures = append(failures, fmt.Sprintf("audit trail %s: entry %d has hash %s; the certificate commits to %s",
					auditFile, want, got, st.Predicate.Audit.Head))
			case n > want:
				fmt.Fprintf(w, "  audit file      the certificate's head is entry %d; %d later entr%s:", want, n-want, map[bool]string{true: "y", false: "ies"}[n-want == 1])
				for _, e := range audit[want:] {
					fmt.Fprintf(w, " %d %s", e.Seq, e.Action)
				}
				fmt.Fprintln(w)
			}
			if want >= 1 && n >= want {
				failures = append(failures, checkHolds(st, audit[:want], auditFile)...)
			}
		}
	}
	for _, a := range artefacts {
		matched := ""
		for _, s := range st.Subject {
			if s.Digest["sha256"] == digests[a] {
				matched = s.Name
			}
		}
		if matched == "" {
			failures = append(failures, fmt.Sprintf("artefact %s (sha256 %s) is not a subject of the certificate", a, digests[a]))
		} else {
			fmt.Fprintf(w, "  artefact        %s is subject %q (sha256 %s)\n", a, matched, digests[a])
		}
	}
	return failures
}

func printStatement(w io.Writer, st evidence.Statement) {
	d := st.Predicate
	row := func(label, format string, args ...any) {
		fmt.Fprintf(w, "  %-15s %s\n", label, fmt.Sprintf(format, args...))
	}
	tenant := d.Tenant.Name
	if d.Tenant.DisplayName != "" {
		tenant += fmt.Sprintf(" (%s)", d.Tenant.DisplayName)
	}
	row("tenant", "%s, uid %s", tenant, d.Tenant.UID)
	term := "from " + when(d.Contract.Start)
	if !d.Contract.End.IsZero() {
		term += " to " + when(d.Contract.End)
	}
	row("contract", "%s, %s", d.Contract.ID, term)
	contact := d.DataController.Contact
	if d.DataController.Email != "" {
		contact += " <" + d.DataController.Email + ">"
	}
	row("data controller", "%s, contact %s", d.DataController.Name, contact)
	row("processor", "%s", d.Processor.Name)
	if e := d.Export; e != nil {
		row("export", "%s, %d bytes, sha256 %s", e.Name, e.Bytes, e.SHA256)
		switch {
		case e.AcknowledgeTimedOut:
			row("", "not acknowledged: the acknowledgement timed out")
		case e.ReceivedBy != "":
			row("", "acknowledged %s by %s", when(e.AcknowledgedAt), e.ReceivedBy)
		default:
			row("", "acknowledged %s", when(e.AcknowledgedAt))
		}
	} else {
		row("export", "none")
	}
	row("locations", "%d", len(d.Locations))
	for i, l := range d.Locations {
		where := ""
		if l.Location != "" {
			where = " on " + l.Location
		}
		if l.Jurisdiction != "" {
			where += " (" + l.Jurisdiction + ")"
		}
		fmt.Fprintf(w, "    %d. %s %s%s\n", i+1, l.Kind, l.Identifier, where)
		sub := func(label, format string, args ...any) {
			fmt.Fprintf(w, "         %-13s %s\n", label, fmt.Sprintf(format, args...))
		}
		sub("method", "%s: %s", l.Method, l.Technique)
		sub("tool", "%s", strings.TrimSpace(l.Tool.Name+" "+l.Tool.Version))
		sub("started", "%s", when(l.StartedAt))
		sub("completed", "%s", when(l.CompletedAt))
		v := fmt.Sprintf("%s: %s", l.Verification.Method, l.Verification.Result)
		if l.Verification.Detail != "" {
			v += " (" + l.Verification.Detail + ")"
		}
		sub("verification", "%s", v)
	}
	for i, r := range d.Retained {
		label := ""
		if i == 0 {
			label = "retained"
		}
		row(label, "%s: %s", r.What, r.Reason)
	}
	if h := d.LegalHold; h != nil {
		s := fmt.Sprintf("%q", h.Reason)
		if !h.SetAt.IsZero() {
			s += ", set " + when(h.SetAt)
		}
		if !h.Until.IsZero() {
			s += ", until " + when(h.Until)
		}
		row("legal hold", "%s, lifted %s", s, when(h.LiftedAt))
	}
	row("audit trail", "head %s, %d entries", d.Audit.Head, d.Audit.Length)
	for i, n := range d.Notes {
		label := ""
		if i == 0 {
			label = "notes"
		}
		row(label, "%s", n)
	}
	row("issued at", "%s", when(d.IssuedAt))
	for i, s := range st.Subject {
		label := ""
		if i == 0 {
			label = "subjects"
		}
		row(label, "%s sha256:%s", s.Name, s.Digest["sha256"])
	}
}

func when(t time.Time) string {
	if t.IsZero() {
		return "(missing)"
	}
	return t.UTC().Format(time.RFC3339)
}

// decodeCertificates reads a DestructionCertificate (YAML or JSON), a List or DestructionCertificateList of them,
// or a bare DSSE envelope (JSON). Objects are decoded strictly: a field custos does not know could not be checked
// against the signed payload.
func decodeCertificates(data []byte) ([]certificate, error) {
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		return nil, fmt.Errorf("neither YAML nor JSON: %w", err)
	}
	var probe struct {
		APIVersion  string            `json:"apiVersion"`
		Kind        string            `json:"kind"`
		PayloadType *string           `json:"payloadType"`
		Items       []json.RawMessage `json:"items"`
	}
	if err := json.Unmarshal(js, &probe); err != nil {
		return nil, fmt.Errorf("not a JSON or YAML object: %w", err)
	}
	switch {
	case probe.Kind == "DestructionCertificate":
		c, err := decodeObject(js)
		if err != nil {
			return nil, err
		}
		return []certificate{c}, nil
	case probe.Kind == "List" || probe.Kind == "DestructionCertificateList":
		if len(probe.Items) == 0 {
			return nil, errors.New("the list holds no certificates")
		}
		var out []certificate
		for i, item := range probe.Items {
			c, err := decodeObject(item)
			if err != nil {
				return nil, fmt.Errorf("item %d: %w", i, err)
			}
			out = append(out, c)
		}
		return out, nil
	case probe.Kind == "" && probe.PayloadType != nil:
		var env evidence.Envelope
		if err := strictJSON(js, &env); err != nil {
			return nil, fmt.Errorf("not a DSSE envelope: %w", err)
		}
		return []certificate{{env: env}}, nil
	case probe.Kind != "":
		return nil, fmt.Errorf("is a %s, not a DestructionCertificate", probe.Kind)
	default:
		return nil, errors.New("neither a DestructionCertificate nor a DSSE envelope (no kind, no payloadType)")
	}
}

func decodeObject(js []byte) (certificate, error) {
	var obj v1alpha1.DestructionCertificate
	if err := strictJSON(js, &obj); err != nil {
		return certificate{}, fmt.Errorf("not a DestructionCertificate: %w", err)
	}
	if obj.Kind != "DestructionCertificate" {
		return certificate{}, fmt.Errorf("is a %q, not a DestructionCertificate", obj.Kind)
	}
	if want := v1alpha1.GroupVersion.String(); obj.APIVersion != want {
		return certificate{}, fmt.Errorf("apiVersion is %q, want %q", obj.APIVersion, want)
	}
	spec := obj.Spec
	return certificate{
		label: "DestructionCertificate " + obj.Name,
		env:   evidence.EnvelopeFromAPI(spec.Envelope),
		spec:  &spec,
	}, nil
}

func strictJSON(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("trailing data")
	}
	return nil
}

func sha256File(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// checkHolds compares the certificate's legal hold with the holds the trail records up to the certificate's head:
// the certificate names the latest, and no location was destroyed while any was in place.
func checkHolds(st evidence.Statement, trail []evidence.Entry, auditFile string) []string {
	var out []string
	holds := evidence.LegalHolds(trail)
	last, _ := evidence.LastHold(holds)
	got := st.Predicate.LegalHold
	switch {
	case last == nil && got != nil:
		out = append(out, fmt.Sprintf("the certificate names legal hold %q, but the audit trail %s records none", got.Reason, auditFile))
	case last != nil && got == nil:
		out = append(out, fmt.Sprintf("the audit trail %s records legal hold %q (set %s), but the certificate names none", auditFile, last.Reason, when(last.SetAt)))
	case last != nil && (got.Reason != last.Reason || !got.SetAt.Equal(last.SetAt.UTC().Truncate(time.Second)) || !got.LiftedAt.Equal(last.LiftedAt.UTC().Truncate(time.Second))):
		out = append(out, fmt.Sprintf("the certificate's legal hold (%q, set %s, lifted %s) is not the trail's latest (%q, set %s, lifted %s)",
			got.Reason, when(got.SetAt), when(got.LiftedAt), last.Reason, when(last.SetAt), when(last.LiftedAt)))
	}
	for _, p := range evidence.HoldProblems(holds, st.Predicate.Locations) {
		out = append(out, "audit trail "+auditFile+": "+p)
	}
	return out
}

func untilText(t time.Time) string {
	if t.IsZero() {
		return "now (the key in use)"
	}
	return when(t)
}

// readKeyHistory reads history.json, or the ConfigMap custos-signing-key (YAML or JSON) that holds it.
func readKeyHistory(raw []byte) (evidence.KeyHistory, error) {
	if h, err := evidence.ParseKeyHistory(bytes.TrimSpace(raw)); err == nil {
		return h, nil
	} else if bytes.HasPrefix(bytes.TrimSpace(raw), []byte("[")) {
		return nil, err
	}
	js, err := yaml.YAMLToJSON(raw)
	if err != nil {
		return nil, fmt.Errorf("neither a key history (JSON) nor a ConfigMap: %w", err)
	}
	var cm struct {
		Kind string            `json:"kind"`
		Data map[string]string `json:"data"`
	}
	if err := json.Unmarshal(js, &cm); err != nil || cm.Kind != "ConfigMap" {
		return nil, errors.New("neither a key history (JSON list) nor a ConfigMap")
	}
	if h, ok := cm.Data["history.json"]; ok {
		return evidence.ParseKeyHistory([]byte(h))
	}
	pub, err := evidence.ParsePublicKey([]byte(cm.Data["public.pem"]))
	if err != nil {
		return nil, fmt.Errorf("the ConfigMap has no history.json and no usable public.pem: %w", err)
	}
	return evidence.KeyHistory{{KeyID: evidence.KeyID(pub), PublicKey: cm.Data["public.pem"]}}, nil
}
