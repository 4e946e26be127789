package main

import (
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/custos-io/custos/internal/evidence"
)

func cmdAudit(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		return usageError(stderr, "audit needs a subcommand (verify or show, for files) or a tenant name (read from the cluster)")
	}
	switch args[0] {
	case "verify":
		return cmdAuditVerify(args[1:], stdout, stderr)
	case "show":
		return cmdAuditShow(args[1:], stdout, stderr)
	default:
		return cmdAuditTenant(args, stdout, stderr)
	}
}

// readEntries concatenates the files (segments in order) and parses them as JSON lines. A file that cannot be
// read is a usage error; one that does not parse is a failure.
func readEntries(paths []string, stdout, stderr io.Writer) ([]evidence.Entry, int, bool) {
	if len(paths) == 0 {
		return nil, usageError(stderr, "name the audit trail: one or more files of JSON lines, in order"), false
	}
	var all []byte
	for _, p := range paths {
		b, err := readInput(p)
		if err != nil {
			return nil, usageError(stderr, "reading the audit trail: %v", err), false
		}
		all = append(all, b...)
		all = append(all, '\n')
	}
	entries, err := evidence.ParseLines(all)
	if err != nil {
		fmt.Fprintf(stdout, "audit trail: %v\n\nNOT VERIFIED\n", err)
		return nil, exitFailed, false
	}
	return entries, 0, true
}

func cmdAuditVerify(args []string, stdout, stderr io.Writer) int {
	flags := flag.NewFlagSet("custos audit verify", flag.ContinueOnError)
	wantHead := flags.String("head", "", "the head the chain must end in (audit.head on a certificate)")
	wantLength := flags.Int("length", 0, "the length the chain must have (audit.length on a certificate)")
	flags.Usage = func() {
		fmt.Fprintln(flags.Output(), "Usage: custos audit verify <JSON lines file>... [--head <hex>] [--length <n>]")
		flags.PrintDefaults()
	}
	pos, code, ok := parseArgs(flags, args, stderr)
	if !ok {
		return code
	}
	entries, code, ok := readEntries(pos, stdout, stderr)
	if !ok {
		return code
	}
	head, n := evidence.Head(entries)
	tenant := ""
	if len(entries) > 0 {
		tenant = entries[0].Tenant
	}
	fmt.Fprintf(stdout, "tenant   %s\nentries  %d\nhead     %s\n", tenant, n, head)
	var failures []string
	if err := evidence.VerifyChain(entries); err != nil {
		failures = append(failures, err.Error())
	} else {
		fmt.Fprintln(stdout, "chain    intact")
	}
	if *wantHead != "" && !strings.EqualFold(*wantHead, head) {
		failures = append(failures, fmt.Sprintf("head is %s, not the expected %s", head, *wantHead))
	}
	if *wantLength != 0 && *wantLength != n {
		failures = append(failures, fmt.Sprintf("the chain has %d entries, not the expected %d", n, *wantLength))
	}
	if len(failures) > 0 {
		fmt.Fprintf(stdout, "\nNOT VERIFIED\n")
		for _, f := range failures {
			fmt.Fprintf(stdout, "  - %s\n", f)
		}
		return exitFailed
	}
	fmt.Fprintln(stdout, "\nVERIFIED")
	return exitOK
}

func cmdAuditShow(args []string, stdout, stderr io.Writer) int {
	flags := flag.NewFlagSet("custos audit show", flag.ContinueOnError)
	flags.Usage = func() { fmt.Fprintln(flags.Output(), "Usage: custos audit show <JSON lines file>...") }
	pos, code, ok := parseArgs(flags, args, stderr)
	if !ok {
		return code
	}
	entries, code, ok := readEntries(pos, stdout, stderr)
	if !ok {
		return code
	}
	printEntries(stdout, entries)
	head, n := evidence.Head(entries)
	if err := evidence.VerifyChain(entries); err != nil {
		fmt.Fprintf(stdout, "\nCHAIN BROKEN: %v\n", err)
		return exitFailed
	}
	fmt.Fprintf(stdout, "\n%d entries, chain intact, head %s\n", n, head)
	return exitOK
}

// printEntries prints the entries as a table.
func printEntries(stdout io.Writer, entries []evidence.Entry) {
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SEQ\tTIME\tTENANT\tACTION\tACTOR\tDETAIL")
	for _, e := range entries {
		keys := make([]string, 0, len(e.Detail))
		for k := range e.Detail {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		var detail []string
		for _, k := range keys {
			detail = append(detail, k+"="+e.Detail[k])
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", e.Seq, e.Time.UTC().Format(time.RFC3339), e.Tenant, e.Action, e.Actor,
			strings.Join(detail, " "))
	}
	tw.Flush()
}
