package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"k8s.io/apimachinery/pkg/api/meta"

	v1alpha1 "github.com/custos-io/custos/api/v1alpha1"
)

func cmdExport(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		return usageError(stderr, "export needs a subcommand: fetch")
	}
	switch args[0] {
	case "fetch":
		return cmdExportFetch(args[1:], stdout, stderr)
	default:
		return usageError(stderr, "unknown export subcommand %q (fetch)", args[0])
	}
}

const fetchUsage = `Usage: custos export fetch <DataExport name> [--to DIR] [--received-by WHO] [--kubeconfig PATH] [--from DIR] [--no-receipt]

Reads the DataExport from the cluster (KUBECONFIG, or --kubeconfig), which must be Ready or Acknowledged, copies
its bag to DIR/<name>.tar, verifies the copy as verify-export does and checks that its sha256 is the one custos
recorded (status.artefact.sha256). Only when both pass does it acknowledge the export: it writes
spec.receipt = {sha256: <the digest it computed>, receivedBy: WHO}, and custos marks the export Acknowledged.

The bag is read from status.artefact.location, a path on the volume the custos manager writes exports to: this
must run where that path can be read (a pod or machine with the export volume mounted at the same path, or at
another path given with --from). Elsewhere, copy the file by hand and acknowledge it with sha256sum and
kubectl patch (see docs/guide/data-controllers.md).

Exit status: 0 fetched, verified and (unless --no-receipt) acknowledged; 1 any failure: no receipt is written
and DIR/<name>.tar is not written (the copy is made next to it and moved into place only when it passed);
2 usage error.`

func cmdExportFetch(args []string, stdout, stderr io.Writer) int {
	flags := flag.NewFlagSet("custos export fetch", flag.ContinueOnError)
	to := flags.String("to", ".", "directory to copy the bag to, as <name>.tar (created if missing)")
	from := flags.String("from", "", "directory holding the bag here, if the export volume is not mounted at the path in status.artefact.location")
	receivedBy := flags.String("received-by", "", "who received the bag (name or e-mail), recorded in the receipt and on the certificate of destruction")
	kubeconfig := flags.String("kubeconfig", "", "kubeconfig file (default $KUBECONFIG, then ~/.kube/config)")
	noReceipt := flags.Bool("no-receipt", false, "fetch and verify only; do not acknowledge")
	flags.Usage = func() {
		fmt.Fprintln(flags.Output(), fetchUsage)
		flags.PrintDefaults()
	}
	pos, code, ok := parseArgs(flags, args, stderr)
	if !ok {
		return code
	}
	if len(pos) != 1 {
		return usageError(stderr, "export fetch takes the name of one DataExport, got %d arguments", len(pos))
	}
	if len(*receivedBy) > 256 {
		return usageError(stderr, "--received-by is longer than 256 bytes")
	}
	if *noReceipt && *receivedBy != "" {
		return usageError(stderr, "--received-by is for the receipt, which --no-receipt does not write")
	}
	name := pos[0]
	fail := func(format string, args ...any) int {
		fmt.Fprintf(stdout, "\nFAILED: %s\nNo receipt was written.\n", fmt.Sprintf(format, args...))
		return exitFailed
	}

	ctx := context.Background()
	cl, err := connect(*kubeconfig)
	if err != nil {
		return fail("%v", err)
	}
	de, _, err := cl.dataExport(ctx, name)
	if err != nil {
		return fail("%v", err)
	}
	fmt.Fprintf(stdout, "DataExport %s of tenant %s: %s\n", name, de.Spec.TenantRef.Name, phaseOf(de))
	switch de.Status.Phase {
	case v1alpha1.ExportReady, v1alpha1.ExportAcknowledged:
	default:
		return fail("the export is %s; a bag can be fetched when it is Ready or Acknowledged", phaseOf(de))
	}
	art := de.Status.Artefact
	if art == nil || art.Location == "" || art.SHA256 == "" {
		return fail("status.artefact does not say where the bag is or what its sha256 is")
	}
	src := art.Location
	if *from != "" {
		src = filepath.Join(*from, filepath.Base(art.Location))
	}
	dst := filepath.Join(*to, name+".tar")
	fmt.Fprintf(stdout, "copying %s to %s\n\n", src, dst)
	c, err := fetchBag(src, dst, art.SHA256)
	if c.File != "" {
		printBagCheck(stdout, c)
	}
	if err != nil {
		return fail("%v", err)
	}
	fmt.Fprintf(stdout, "sha256 %s is the one custos recorded\n", c.SHA256)
	if *noReceipt {
		fmt.Fprintf(stdout, "\nFetched %s; no receipt written (--no-receipt).\n", dst)
		return exitOK
	}
	changed, err := cl.setReceipt(ctx, name, c.SHA256, *receivedBy)
	if err != nil {
		return fail("%v", err)
	}
	if !changed {
		fmt.Fprintf(stdout, "\nFetched %s. The export already has this receipt; it was left as it is.\n", dst)
		return exitOK
	}
	by := *receivedBy
	if by == "" {
		by = "(not named)"
	}
	fmt.Fprintf(stdout, "\nFetched %s. Receipt written: spec.receipt.sha256 %s, receivedBy %s.\n", dst, c.SHA256, by)
	fmt.Fprintf(stdout, "custos marks the export Acknowledged when it sees the receipt: kubectl get dataexport %s\n", name)
	return exitOK
}

func phaseOf(de *v1alpha1.DataExport) string {
	p := string(de.Status.Phase)
	if p == "" {
		p = "not started"
	}
	if c := meta.FindStatusCondition(de.Status.Conditions, v1alpha1.ConditionReady); c != nil && c.Message != "" {
		p += " (" + c.Message + ")"
	}
	return p
}

// fetchBag copies src to dst, verifying the bytes on the way (one read: through sha256 and export.Verify into a
// temporary file next to dst). dst appears, atomically, only when the bag verifies and its sha256 is want; on
// any failure the temporary file is removed. The check is returned whenever the bag was read, also on failure.
func fetchBag(src, dst, want string) (c bagCheck, err error) {
	in, err := os.Open(src)
	if err != nil {
		return c, fmt.Errorf("reading the bag: %w (this must run where the export volume is mounted; see --from)", err)
	}
	defer in.Close()
	dir := filepath.Dir(dst)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return c, err
	}
	if si, err1 := in.Stat(); err1 == nil {
		if di, err2 := os.Stat(dst); err2 == nil && os.SameFile(si, di) {
			return c, fmt.Errorf("%s is the bag itself: choose another --to", dst)
		}
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(dst)+".partial-*")
	if err != nil {
		return c, err
	}
	defer func() {
		if err != nil {
			_ = tmp.Close()
			_ = os.Remove(tmp.Name())
		}
	}()
	w := &writeErr{w: tmp}
	c, err = checkBag(src, io.TeeReader(in, w))
	if w.err != nil {
		return bagCheck{}, fmt.Errorf("writing %s: %w", tmp.Name(), w.err)
	}
	if err != nil {
		return bagCheck{}, fmt.Errorf("reading %s: %w", src, err)
	}
	var problems []string
	if !c.OK {
		problems = append(problems, fmt.Sprintf("the bag does not verify (%d problem(s) above)", len(c.Problems)))
	}
	if !strings.EqualFold(c.SHA256, want) {
		problems = append(problems, fmt.Sprintf("its sha256 is %s, but custos recorded %s (status.artefact.sha256): the bag was changed or damaged after it was written", c.SHA256, want))
	}
	if len(problems) > 0 {
		return c, errors.New(strings.Join(problems, "; ") + "; the copy was removed")
	}
	if err = tmp.Sync(); err != nil {
		return c, err
	}
	if err = tmp.Close(); err != nil {
		return c, err
	}
	if err = os.Rename(tmp.Name(), dst); err != nil {
		return c, err
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	return c, nil
}

// writeErr remembers a write error, which io.TeeReader would otherwise report as a read error.
type writeErr struct {
	w   io.Writer
	err error
}

func (e *writeErr) Write(p []byte) (int, error) {
	n, err := e.w.Write(p)
	if err != nil && e.err == nil {
		e.err = err
	}
	return n, err
}
