package testharness

import (
	"fmt"
	"path/filepath"

	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	custosv1alpha1 "github.com/custos-io/custos/api/v1alpha1"
)

// ControlPlane is a kube-apiserver and etcd from bin/ with custos' generated CRDs installed.
type ControlPlane struct {
	Env    *envtest.Environment
	Config *rest.Config
	Scheme *runtime.Scheme
	// Client talks to the API server directly (no cache), so assertions see what the server holds.
	Client client.Client
}

// Scheme returns a scheme with the Kubernetes and custos types.
func Scheme() (*runtime.Scheme, error) {
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		return nil, err
	}
	if err := custosv1alpha1.AddToScheme(s); err != nil {
		return nil, err
	}
	return s, nil
}

// StartControlPlane starts envtest with the CRDs in config/crd/bases. It fails when a binary or the CRDs are missing.
func StartControlPlane() (*ControlPlane, error) {
	bin, err := BinDir()
	if err != nil {
		return nil, err
	}
	for _, t := range []string{"kube-apiserver", "etcd"} {
		if _, err := Tool(t); err != nil {
			return nil, err
		}
	}
	root, err := RepoRoot()
	if err != nil {
		return nil, err
	}
	env := &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join(root, "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
		BinaryAssetsDirectory: bin,
	}
	cfg, err := env.Start()
	if err != nil {
		return nil, fmt.Errorf("starting kube-apiserver and etcd from %s: %w", bin, err)
	}
	s, err := Scheme()
	if err != nil {
		_ = env.Stop()
		return nil, err
	}
	c, err := client.New(cfg, client.Options{Scheme: s})
	if err != nil {
		_ = env.Stop()
		return nil, err
	}
	return &ControlPlane{Env: env, Config: cfg, Scheme: s, Client: c}, nil
}

// Stop stops the API server and etcd.
func (c *ControlPlane) Stop() error {
	if c == nil {
		return nil
	}
	return c.Env.Stop()
}
