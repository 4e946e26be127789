package main

import (
	"context"
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
	fromCluster := flags.Bool("cluster", false, "read the published public key from the cluster (ConfigMap "+signingKeyName+") instead of a private key file")
	namespace := flags.String("namespace", defaultNamespace, "with --cluster: namespace of the custos manager")
	kubeconfig := flags.String("kubeconfig", "", "with --cluster: kubeconfig file (default $KUBECONFIG, then ~/.kube/config)")
	history := flags.Bool("history", false, "with --cluster: print the key history (every key that signed, with its validity), for custos verify --keys")
	flags.Usage = func() {
		fmt.Fprintln(flags.Output(), `Usage: custos pubkey <private key PEM> [--keyid]
       custos pubkey --cluster [--namespace custos-system] [--kubeconfig PATH] [--keyid]

Prints the Ed25519 public key (PEM) that verifies certificates of destruction: of a private key file, or as the
custos manager publishes it in ConfigMap `+signingKeyName+` (key `+signingKeyPublic+`). A key read from the cluster
is only as trustworthy as the cluster: compare its keyid with one obtained over another channel.`)
		flags.PrintDefaults()
	}
	pos, code, ok := parseArgs(flags, args, stderr)
	if !ok {
		return code
	}
	if *fromCluster {
		if len(pos) != 0 {
			return usageError(stderr, "pubkey --cluster takes no file, got %q", pos)
		}
		if *history {
			return historyFromCluster(*namespace, *kubeconfig, stdout, stderr)
		}
		return pubkeyFromCluster(*namespace, *kubeconfig, *keyID, stdout, stderr)
	}
	clusterOnly := ""
	flags.Visit(func(f *flag.Flag) {
		if f.Name == "namespace" || f.Name == "kubeconfig" || f.Name == "history" {
			clusterOnly = f.Name
		}
	})
	if clusterOnly != "" {
		return usageError(stderr, "--%s is for --cluster", clusterOnly)
	}
	if len(pos) != 1 {
		return usageError(stderr, "pubkey takes one private key file (or --cluster), got %d arguments", len(pos))
	}
	data, err := os.ReadFile(pos[0])
	if err != nil {
		return usageError(stderr, "reading the private key: %v", err)
	}
	key, err := evidence.ParsePrivateKey(data)
	if err != nil {
		return usageError(stderr, "%s is not an Ed25519 private key: %v", pos[0], err)
	}
	return printPublicKey(key.Public().(ed25519.PublicKey), *keyID, stdout, stderr)
}

func printPublicKey(pub ed25519.PublicKey, keyID bool, stdout, stderr io.Writer) int {
	if keyID {
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

// pubkeyFromCluster prints the key the manager published. Exit 2 when it cannot be read, 1 when what is
// published is not a usable key or its keyid disagrees.
func pubkeyFromCluster(namespace, kubeconfig string, keyID bool, stdout, stderr io.Writer) int {
	cl, err := connect(kubeconfig)
	if err != nil {
		return usageError(stderr, "%v", err)
	}
	cm, err := cl.publishedKey(context.Background(), namespace)
	if err != nil {
		return usageError(stderr, "%v", err)
	}
	where := fmt.Sprintf("ConfigMap %s/%s", namespace, signingKeyName)
	pemData, ok := cm.Data[signingKeyPublic]
	if !ok {
		fmt.Fprintf(stderr, "custos: %s has no key %s\n", where, signingKeyPublic)
		return exitFailed
	}
	pub, err := evidence.ParsePublicKey([]byte(pemData))
	if err != nil {
		fmt.Fprintf(stderr, "custos: %s: %s is not an Ed25519 public key: %v\n", where, signingKeyPublic, err)
		return exitFailed
	}
	if id, ok := cm.Data["keyid"]; ok && id != evidence.KeyID(pub) {
		fmt.Fprintf(stderr, "custos: %s says keyid %s, but its key's keyid is %s\n", where, id, evidence.KeyID(pub))
		return exitFailed
	}
	fmt.Fprintf(stderr, "custos: public key published in %s, keyid %s; compare the keyid with one obtained over another channel\n",
		where, evidence.KeyID(pub))
	return printPublicKey(pub, keyID, stdout, stderr)
}

// historyFromCluster prints the published key history (history.json), checked.
func historyFromCluster(namespace, kubeconfig string, stdout, stderr io.Writer) int {
	cl, err := connect(kubeconfig)
	if err != nil {
		return usageError(stderr, "%v", err)
	}
	cm, err := cl.publishedKey(context.Background(), namespace)
	if err != nil {
		return usageError(stderr, "%v", err)
	}
	raw, ok := cm.Data["history.json"]
	if !ok {
		fmt.Fprintf(stderr, "custos: ConfigMap %s/%s has no history.json (a manager before key histories): use --key with its %s\n", namespace, signingKeyName, signingKeyPublic)
		return exitFailed
	}
	h, err := evidence.ParseKeyHistory([]byte(raw))
	if err != nil {
		fmt.Fprintf(stderr, "custos: ConfigMap %s/%s: %v\n", namespace, signingKeyName, err)
		return exitFailed
	}
	fmt.Fprintf(stderr, "custos: %d key(s) published in ConfigMap %s/%s; compare their keyids with ones obtained over another channel\n", len(h), namespace, signingKeyName)
	_, _ = stdout.Write(h.Marshal())
	return exitOK
}
