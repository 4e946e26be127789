package main

import (
	"crypto/ed25519"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/custos-io/custos/internal/evidence"
)

func cmdPubkey(args []string, stdout, stderr io.Writer) int {
	flags := flag.NewFlagSet("custos pubkey", flag.ContinueOnError)
	keyID := flags.Bool("keyid", false, "print the keyid (sha256 of the raw public key) instead of the PEM")
	flags.Usage = func() {
		fmt.Fprintln(flags.Output(), "Usage: custos pubkey <private key PEM> [--keyid]")
		flags.PrintDefaults()
	}
	pos, code, ok := parseArgs(flags, args, stderr)
	if !ok {
		return code
	}
	if len(pos) != 1 {
		return usageError(stderr, "pubkey takes one private key file, got %d arguments", len(pos))
	}
	data, err := os.ReadFile(pos[0])
	if err != nil {
		return usageError(stderr, "reading the private key: %v", err)
	}
	key, err := evidence.ParsePrivateKey(data)
	if err != nil {
		return usageError(stderr, "%s is not an Ed25519 private key: %v", pos[0], err)
	}
	pub := key.Public().(ed25519.PublicKey)
	if *keyID {
		fmt.Fprintln(stdout, evidence.KeyID(pub))
		return exitOK
	}
	out, err := evidence.MarshalPublicKey(pub)
	if err != nil {
		return usageError(stderr, "%v", err)
	}
	_, _ = stdout.Write(out)
	return exitOK
}
