package testharness

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// load reads path back the way kubectl and ctrl.GetConfig do: the current context's rest.Config.
func load(t *testing.T, path string) *rest.Config {
	t.Helper()
	got, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		t.Fatalf("loading %s: %v", path, err)
	}
	return got
}

// wantMode0600 fails t unless only the owner may read and write path: it holds credentials.
func wantMode0600(t *testing.T, path string) {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", st.Mode().Perm())
	}
}

func TestWriteKubeconfigCertData(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sub", "kubeconfig") // the directory does not exist yet
	cfg := &rest.Config{Host: "https://127.0.0.1:6443", TLSClientConfig: rest.TLSClientConfig{
		CAData: []byte("ca-pem"), CertData: []byte("cert-pem"), KeyData: []byte("key-pem")}}
	if err := WriteKubeconfig(path, "custos-test", cfg); err != nil {
		t.Fatal(err)
	}
	got := load(t, path)
	if got.Host != cfg.Host {
		t.Errorf("host %q, want %q", got.Host, cfg.Host)
	}
	for what, pair := range map[string][2][]byte{
		"CA": {got.CAData, cfg.CAData}, "client cert": {got.CertData, cfg.CertData}, "client key": {got.KeyData, cfg.KeyData},
	} {
		if !bytes.Equal(pair[0], pair[1]) {
			t.Errorf("%s %q, want %q", what, pair[0], pair[1])
		}
	}
	if got.BearerToken != "" {
		t.Errorf("token %q, want none", got.BearerToken)
	}

	raw, err := clientcmd.LoadFromFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if raw.CurrentContext != "custos-test" || raw.Contexts["custos-test"] == nil ||
		raw.Contexts["custos-test"].Cluster != "custos-test" || raw.Contexts["custos-test"].AuthInfo != "admin" {
		t.Errorf("current context %q, contexts %v: want custos-test on cluster custos-test as admin", raw.CurrentContext, raw.Contexts)
	}
	wantMode0600(t, path)
}

func TestWriteKubeconfigTokenAndFiles(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(path, []byte("old"), 0o644); err != nil { // a file already there, readable by all
		t.Fatal(err)
	}
	ca := filepath.Join(dir, "ca.crt") // loading checks that the file is there, not what it holds
	if err := os.WriteFile(ca, []byte("ca-pem"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := &rest.Config{Host: "https://127.0.0.1:6443", BearerToken: "s3cret",
		TLSClientConfig: rest.TLSClientConfig{CAFile: ca}}
	if err := WriteKubeconfig(path, "envtest", cfg); err != nil {
		t.Fatal(err)
	}
	got := load(t, path)
	if got.Host != cfg.Host || got.BearerToken != "s3cret" || got.CAFile != ca {
		t.Errorf("host %q token %q CA file %q, want %q %q %q", got.Host, got.BearerToken, got.CAFile, cfg.Host, "s3cret", ca)
	}
	if len(got.CertData) != 0 || got.CertFile != "" {
		t.Errorf("client cert %q / %q, want none", got.CertData, got.CertFile)
	}
	wantMode0600(t, path)
}
