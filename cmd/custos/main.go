// Command custos checks custos' evidence: a certificate of destruction against the published public key, a
// tenant's audit trail, an export bag. These checks need no cluster and no network. A few subcommands read the
// cluster for the data controller, auditor or on-call engineer who has access to it (export fetch, audit <tenant>,
// pubkey --cluster, status <tenant>); their API calls are in cluster.go, and nothing else in the command talks to
// an API server.
//
// Exit status: 0 when everything checked passes, 1 when something was checked and failed, 2 on a usage error or
// an input that cannot be read.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
)

const (
	exitOK      = 0
	exitFailed  = 1
	exitUsage   = 2
	usageHeader = `custos — check custos' evidence

Offline (files only, no cluster, no network):
  custos verify <certificate file> (--key <public key PEM> | --keys <key history>) [--audit <audit JSON lines>] [--artefact <file>]...
  custos verify-export <bag.tar> [--json]
  custos audit verify <audit JSON lines>... [--head <hex>] [--length <n>]
  custos audit show <audit JSON lines>...
  custos pubkey <private key PEM> [--keyid]

Reading the cluster (KUBECONFIG or --kubeconfig):
  custos status <tenant> [-o json] [--events N]
  custos export fetch <DataExport> [--to DIR] [--received-by WHO] [--from DIR] [--no-receipt]
  custos audit <tenant> [--namespace custos-system] [--uid UID] [--export FILE]
  custos pubkey --cluster [--namespace custos-system] [--keyid | --history]

A certificate file is a DestructionCertificate as YAML or JSON (kubectl get dcert NAME -o yaml), a list of them,
or a bare DSSE envelope (JSON). "-" reads standard input. export fetch reads the bag from the path in the
DataExport's status: run it where the export volume is mounted. status prints where a tenant stands (phase,
conditions, backups per location, drill, tasks, legal hold, exit, certificate, its latest Events).
"custos help <command>" or "custos <command> --help" says more.

Exit status: 0 all checks passed, 1 a check failed, 2 usage error or unreadable input (export fetch: 1 on any
failure, and then it writes no receipt; status: 0 when the tenant was read, whatever its state).
`
)

// stdin is where "-" reads from (a variable so tests can replace it).
var stdin io.Reader = os.Stdin

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run is the whole command line; main only exits with its result.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usageHeader)
		return exitUsage
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "verify":
		return cmdVerify(rest, stdout, stderr)
	case "verify-export":
		return cmdVerifyExport(rest, stdout, stderr)
	case "audit":
		return cmdAudit(rest, stdout, stderr)
	case "export":
		return cmdExport(rest, stdout, stderr)
	case "pubkey":
		return cmdPubkey(rest, stdout, stderr)
	case "status":
		return cmdStatus(rest, stdout, stderr)
	case "help", "-h", "-help", "--help":
		if len(rest) > 0 && cmd == "help" {
			return helpFor(rest, stdout, stderr)
		}
		fmt.Fprint(stdout, usageHeader)
		return exitOK
	default:
		fmt.Fprintf(stderr, "custos: unknown command %q\n\n%s", cmd, usageHeader)
		return exitUsage
	}
}

// helpFor is "custos help <command> [<subcommand>]": the command's own --help, on standard output.
func helpFor(args []string, stdout, stderr io.Writer) int {
	switch args[0] {
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usageHeader)
		return exitOK
	case "export":
		args = []string{"export", "fetch"} // its only subcommand
	}
	if len(args) > 2 {
		args = args[:2]
	}
	if args[0] == "audit" && len(args) > 1 && args[1] != "verify" && args[1] != "show" {
		args = args[:1]
	}
	if args[0] != "audit" && args[0] != "export" {
		args = args[:1]
	}
	return run(append(slices.Clone(args), "--help"), stdout, stdout)
}

// usageError is printed to stderr and exits 2.
func usageError(stderr io.Writer, format string, args ...any) int {
	fmt.Fprintf(stderr, "custos: "+format+"\n", args...)
	return exitUsage
}

// parseArgs parses flags wherever they stand among the positional arguments (the flag package alone stops at the
// first positional one, so "verify cert.yaml --key k.pem" would not see --key). It returns the positional
// arguments, or an exit code when parsing ended the command (help or a bad flag).
func parseArgs(fs *flag.FlagSet, args []string, stderr io.Writer) ([]string, int, bool) {
	fs.SetOutput(stderr)
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, exitOK, false
			}
			return nil, exitUsage, false
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, 0, true
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// readInput reads a file, or standard input for "-".
func readInput(path string) ([]byte, error) {
	if path == "-" {
		return io.ReadAll(stdin)
	}
	return os.ReadFile(path)
}

// stringList is a repeatable string flag.
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }
