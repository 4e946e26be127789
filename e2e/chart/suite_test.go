// Package chart checks the Helm chart in charts/custos: helm lint, helm template with the default values and with
// testdata/production-values.yaml, assertions on what is rendered, and every rendered object applied to a real
// kube-apiserver (envtest) to prove that it is a valid object. Also checks that every flag the chart and the
// Dockerfile pass to the manager is one the manager defines.
package chart

import (
	"path/filepath"
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/custos-io/custos/internal/testharness"
)

var (
	helm         string
	root         string
	chartDir     string
	helmHome     string
	controlPlane *testharness.ControlPlane
	k8s          client.Client
)

func TestChart(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Helm chart suite (helm lint, helm template, kube-apiserver)")
}

var _ = BeforeSuite(func(_ SpecContext) {
	var err error
	helm, err = testharness.Tool("helm")
	Expect(err).NotTo(HaveOccurred())
	root, err = testharness.RepoRoot()
	Expect(err).NotTo(HaveOccurred())
	chartDir = filepath.Join(root, "charts", "custos")
	// helm keeps its cache, configuration and data here rather than in the user's home.
	helmHome = GinkgoT().TempDir()

	By("starting kube-apiserver and etcd with the generated CRDs")
	controlPlane, err = testharness.StartControlPlane()
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(controlPlane.Stop)
	k8s = controlPlane.Client
}, NodeTimeout(300e9))
