package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/custos-io/custos/internal/evidence"
)

const auditTenantUsage = `Usage: custos audit <tenant> [--namespace custos-system] [--kubeconfig PATH] [--uid UID] [--export FILE]
       custos audit verify <JSON lines file>... [--head <hex>] [--length <n>]   (offline)
       custos audit show <JSON lines file>...                                  (offline)

Reads the tenant's audit trail from the cluster: the ConfigMaps labelled custos.io/audit-tenant=<tenant> in the
custos manager's namespace, in the order of their custos.io/audit-segment label. Prints the segments and the
entries, checks the hash chain and prints its head (compare it with audit.head on the certificate of
destruction). --export writes the segments' JSON lines, in order and exactly as stored, to FILE, for
"custos audit verify FILE" offline; the file is written even when the chain does not verify.

Exit status: 0 the chain is intact, 1 it is not (or a segment is missing), 2 usage error or the trail cannot be
read (no cluster, no permission, no such trail).`

// trailSegment is one ConfigMap of a trail.
type trailSegment struct {
	n  int
	cm corev1.ConfigMap
}

func cmdAuditTenant(args []string, stdout, stderr io.Writer) int {
	flags := flag.NewFlagSet("custos audit <tenant>", flag.ContinueOnError)
	namespace := flags.String("namespace", defaultNamespace, "namespace of the custos manager, which holds the audit trail ConfigMaps")
	kubeconfig := flags.String("kubeconfig", "", "kubeconfig file (default $KUBECONFIG, then ~/.kube/config)")
	exportFile := flags.String("export", "", "write the trail as JSON lines to `FILE`, for custos audit verify")
	uid := flags.String("uid", "", "the tenant's UID (or its first 8 characters), when a tenant of this name existed more than once")
	flags.Usage = func() {
		fmt.Fprintln(flags.Output(), auditTenantUsage)
		flags.PrintDefaults()
	}
	pos, code, ok := parseArgs(flags, args, stderr)
	if !ok {
		return code
	}
	if len(pos) != 1 {
		return usageError(stderr, "audit takes verify or show (files) or one tenant name (the cluster), got %q", pos)
	}
	tenant := pos[0]
	cl, err := connect(*kubeconfig)
	if err != nil {
		return usageError(stderr, "%v", err)
	}
	cms, err := cl.auditSegments(context.Background(), *namespace, tenant)
	if err != nil {
		return usageError(stderr, "%v", err)
	}
	if len(cms) == 0 {
		return usageError(stderr, "no audit trail of tenant %q in namespace %s (no ConfigMap labelled %s=%s)",
			tenant, *namespace, labelAuditTenant, tenant)
	}

	// A tenant deleted and created again under the same name has a trail of its own (another UID).
	trails := map[string][]corev1.ConfigMap{}
	fullUID := map[string]string{}
	for _, cm := range cms {
		id := trailID(cm, tenant)
		trails[id] = append(trails[id], cm)
		if u := cm.Annotations[annotationUID]; u != "" {
			fullUID[id] = u
		}
	}
	ids := make([]string, 0, len(trails))
	for id := range trails {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	chosen := ""
	switch {
	case *uid != "":
		for _, id := range ids {
			if id != "" && (strings.HasPrefix(*uid, id) || strings.HasPrefix(fullUID[id], *uid)) {
				chosen = id
			}
		}
		if chosen == "" {
			return usageError(stderr, "tenant %q has no audit trail for uid %s (trails: %s)", tenant, *uid, describeTrails(ids, fullUID))
		}
	case len(ids) > 1:
		return usageError(stderr, "tenant %q existed %d times, each with its own audit trail: choose one with --uid (trails: %s)",
			tenant, len(ids), describeTrails(ids, fullUID))
	default:
		chosen = ids[0]
	}

	var problems []string
	segs := make([]trailSegment, 0, len(trails[chosen]))
	for _, cm := range trails[chosen] {
		n, err := strconv.Atoi(cm.Labels[labelAuditSegment])
		if err != nil || n < 1 {
			problems = append(problems, fmt.Sprintf("ConfigMap %s: label %s is %q, not a segment number", cm.Name, labelAuditSegment, cm.Labels[labelAuditSegment]))
			n = 1 << 30 // after the numbered ones, still shown and read
		}
		segs = append(segs, trailSegment{n: n, cm: cm})
	}
	slices.SortStableFunc(segs, func(a, b trailSegment) int {
		if a.n != b.n {
			return a.n - b.n
		}
		return strings.Compare(a.cm.Name, b.cm.Name)
	})
	for i, s := range segs {
		switch {
		case s.n == 1<<30:
		case i > 0 && s.n == segs[i-1].n:
			problems = append(problems, fmt.Sprintf("segment %d is there twice (%s and %s)", s.n, segs[i-1].cm.Name, s.cm.Name))
		case s.n != i+1 && (i == 0 || s.n != segs[i-1].n+1):
			prev := 0
			if i > 0 {
				prev = segs[i-1].n
			}
			missing := fmt.Sprintf("segment %d is missing", prev+1)
			if s.n-1 > prev+1 {
				missing = fmt.Sprintf("segments %d to %d are missing", prev+1, s.n-1)
			}
			problems = append(problems, fmt.Sprintf("%s (found segment %d after %d)", missing, s.n, prev))
		}
	}

	title := fmt.Sprintf("audit trail of tenant %s in namespace %s", tenant, *namespace)
	if u := fullUID[chosen]; u != "" {
		title += ", tenant uid " + u
	}
	fmt.Fprintln(stdout, title)
	var all []byte
	var entries []evidence.Entry
	parsed := true
	for _, s := range segs {
		data := s.cm.Data[auditDataKey]
		all = append(all, data...)
		if len(data) > 0 && !strings.HasSuffix(data, "\n") {
			all = append(all, '\n')
		}
		es, err := evidence.ParseLines([]byte(data))
		if err != nil {
			problems = append(problems, fmt.Sprintf("ConfigMap %s, key %s: %v", s.cm.Name, auditDataKey, err))
			parsed = false
			fmt.Fprintf(stdout, "  segment %-3s ConfigMap %s: unreadable\n", segLabel(s), s.cm.Name)
			continue
		}
		entries = append(entries, es...)
		fmt.Fprintf(stdout, "  segment %-3s ConfigMap %s: %s\n", segLabel(s), s.cm.Name, plural(len(es), "entry", "entries"))
	}
	if *exportFile != "" {
		if err := os.WriteFile(*exportFile, all, 0o644); err != nil {
			return usageError(stderr, "writing the trail: %v", err)
		}
		fmt.Fprintf(stdout, "  written to %s (%d bytes); check it offline with: custos audit verify %s\n", *exportFile, len(all), *exportFile)
	}
	fmt.Fprintln(stdout)
	if parsed {
		if *exportFile == "" {
			printEntries(stdout, entries)
			fmt.Fprintln(stdout)
		}
		head, n := evidence.Head(entries)
		fmt.Fprintf(stdout, "entries  %d\nhead     %s\n", n, head)
		if err := evidence.VerifyChain(entries); err != nil {
			fmt.Fprintf(stdout, "chain    BROKEN\n")
			problems = append(problems, err.Error())
		} else {
			fmt.Fprintln(stdout, "chain    intact")
		}
		if len(entries) > 0 && entries[0].Tenant != tenant {
			problems = append(problems, fmt.Sprintf("the entries are for tenant %q, not %q", entries[0].Tenant, tenant))
		}
		problems = append(problems, checkLinks(context.Background(), cl, *namespace, tenant, chosen, segs)...)
	}
	if len(problems) > 0 {
		fmt.Fprintln(stdout, "\nNOT VERIFIED")
		for _, p := range problems {
			fmt.Fprintf(stdout, "  - %s\n", p)
		}
		return exitFailed
	}
	fmt.Fprintln(stdout, "\nVERIFIED")
	return exitOK
}

// trailID is the first 8 characters of the tenant UID a segment belongs to: from its annotation, else from its
// name custos-audit-<tenant>-<uid8>-<segment>.
func trailID(cm corev1.ConfigMap, tenant string) string {
	if u := cm.Annotations[annotationUID]; u != "" {
		return u[:min(8, len(u))]
	}
	rest := strings.TrimPrefix(cm.Name, "custos-audit-"+tenant+"-")
	if i := strings.LastIndexByte(rest, '-'); i > 0 && rest != cm.Name {
		return rest[:i]
	}
	return ""
}

func describeTrails(ids []string, full map[string]string) string {
	var out []string
	for _, id := range ids {
		switch {
		case full[id] != "":
			out = append(out, full[id])
		case id != "":
			out = append(out, id)
		default:
			out = append(out, "(unknown uid)")
		}
	}
	return strings.Join(out, ", ")
}

func segLabel(s trailSegment) string {
	if s.n == 1<<30 {
		return "?"
	}
	return strconv.Itoa(s.n)
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

// checkLinks checks the segments' links to each other and the trail's end against the head the manager keeps in
// the index ConfigMap custos-audit-<tenant>-<uid8>-head: deleted last segments leave an intact, shorter chain that
// only the head shows to be cut.
func checkLinks(ctx context.Context, cl *cluster, namespace, tenant, uid8 string, segs []trailSegment) []string {
	var linked []evidence.Segment
	for _, s := range segs {
		if s.n == 1<<30 {
			return nil // reported already
		}
		es, err := evidence.ParseLines([]byte(s.cm.Data[auditDataKey]))
		if err != nil {
			return nil
		}
		seg := evidence.Segment{SegmentLink: evidence.SegmentLink{Number: s.n, Name: s.cm.Name,
			PrevName: s.cm.Annotations["custos.io/audit-prev-segment"], PrevHash: s.cm.Annotations["custos.io/audit-prev-hash"]}, Entries: es}
		seg.PrevSeq, _ = strconv.ParseInt(s.cm.Annotations["custos.io/audit-prev-seq"], 10, 64)
		linked = append(linked, seg)
	}
	var head evidence.TrailHead
	var problems []string
	if uid8 != "" {
		name := fmt.Sprintf("custos-audit-%s-%s-head", tenant, uid8)
		cm, err := cl.configMap(ctx, namespace, name)
		switch {
		case err != nil:
			problems = append(problems, err.Error())
		case cm == nil:
			// A trail written before custos kept an index has none.
		default:
			head.SegmentName, head.Hash = cm.Data["segmentName"], cm.Data["hash"]
			head.Segment, _ = strconv.Atoi(cm.Data["segment"])
			head.Length, _ = strconv.ParseInt(cm.Data["length"], 10, 64)
		}
	}
	if _, err := evidence.VerifyTrail(linked, head); err != nil {
		var ce *evidence.ChainError
		var te *evidence.TrailError
		gapReported := errors.As(err, &te) && len(te.Missing) > 0 && len(linked) > 0 && te.Missing[len(te.Missing)-1] < linked[len(linked)-1].Number
		if !errors.As(err, &ce) && !gapReported { // chain errors and gaps between segments are reported above
			problems = append(problems, err.Error())
		}
	}
	return problems
}
