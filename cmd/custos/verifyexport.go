package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"text/tabwriter"

	"github.com/custos-io/custos/internal/export"
)

// bagCheck is what checking a bag file found: export.Verify's report, and the sha256 and size of the file as it
// was read (the digest custos records in status.artefact.sha256 and the receiver sends back as the receipt).
type bagCheck struct {
	File   string `json:"file"`
	SHA256 string `json:"sha256"`
	Bytes  int64  `json:"bytes"`
	export.Report
}

type countWriter struct{ n int64 }

func (c *countWriter) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }

// checkBag reads a bag once: every byte goes through sha256 on its way into export.Verify, and whatever follows
// the end of the tar (padding) is read and hashed as well, so the digest is the whole file's. err is only for a
// reader that fails; a damaged bag is a problem in the report.
func checkBag(label string, r io.Reader) (bagCheck, error) {
	h := sha256.New()
	var n countWriter
	tee := io.TeeReader(r, io.MultiWriter(h, &n))
	rep, err := export.Verify(tee)
	if err != nil {
		return bagCheck{}, err
	}
	if _, err := io.Copy(io.Discard, tee); err != nil {
		return bagCheck{}, err
	}
	return bagCheck{File: label, SHA256: hex.EncodeToString(h.Sum(nil)), Bytes: n.n, Report: rep}, nil
}

// printBagCheck prints what the bag is and VERIFIED, or NOT VERIFIED with every problem.
func printBagCheck(w io.Writer, c bagCheck) {
	row := func(label, format string, args ...any) {
		fmt.Fprintf(w, "%-14s %s\n", label, fmt.Sprintf(format, args...))
	}
	name := c.BagName
	if name == "" {
		name = "(none)"
	}
	row("bag", "%s", name)
	row("file", "%s, %d bytes", c.File, c.Bytes)
	row("sha256", "%s", c.SHA256)
	row("payload files", "%d", c.Files)
	row("Payload-Oxum", "%s", c.PayloadOxum)
	if len(c.Tables) == 0 {
		row("tables", "none")
	} else {
		row("tables", "%d", len(c.Tables))
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		for _, t := range c.Tables {
			fmt.Fprintf(tw, "  %s\t%s\t%d rows\n", t.Name, t.Path, t.Rows)
		}
		tw.Flush()
	}
	if c.OK {
		fmt.Fprintln(w, "\nVERIFIED")
		return
	}
	fmt.Fprintf(w, "\nNOT VERIFIED: %d problem(s)\n", len(c.Problems))
	for _, p := range c.Problems {
		fmt.Fprintf(w, "  - %s\n", p)
	}
}

func cmdVerifyExport(args []string, stdout, stderr io.Writer) int {
	flags := flag.NewFlagSet("custos verify-export", flag.ContinueOnError)
	asJSON := flags.Bool("json", false, "print the report as JSON (file, sha256, bytes, ok, problems, bagName, files, payloadOxum, tables)")
	flags.Usage = func() {
		fmt.Fprintln(flags.Output(), `Usage: custos verify-export <bag.tar> [--json]

Checks an export bag offline, reading it once: bagit.txt, every entry of manifest-sha256.txt and
manifest-sha512.txt, that every payload file is in both, the tag manifests, Payload-Oxum, and the size and hash
of every resource in data/datapackage.json. Prints the bag, its tables and the sha256 of the whole file (compare
it with status.artefact.sha256 of the DataExport; it is the receipt). "-" reads standard input.
Exit status: 0 verified, 1 a problem was found (a damaged or truncated tar is a problem), 2 usage error or a
file that cannot be read.`)
		flags.PrintDefaults()
	}
	pos, code, ok := parseArgs(flags, args, stderr)
	if !ok {
		return code
	}
	if len(pos) != 1 {
		return usageError(stderr, "verify-export takes one bag file (.tar), got %d arguments", len(pos))
	}
	var r io.Reader = stdin
	label := "standard input"
	if pos[0] != "-" {
		f, err := os.Open(pos[0])
		if err != nil {
			return usageError(stderr, "reading the bag: %v", err)
		}
		defer f.Close()
		r, label = f, pos[0]
	}
	c, err := checkBag(label, r)
	if err != nil {
		return usageError(stderr, "reading the bag %s: %v", label, err)
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(c); err != nil {
			return usageError(stderr, "%v", err)
		}
	} else {
		printBagCheck(stdout, c)
	}
	if !c.OK {
		return exitFailed
	}
	return exitOK
}
