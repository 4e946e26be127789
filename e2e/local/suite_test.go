// Package local holds the integration suites that run on one machine against real components: a kube-apiserver
// and etcd (envtest, built by hack/tools.sh), PostgreSQL from the system's packages, restic and rest-server.
package local

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/custos-io/custos/controllers"
	"github.com/custos-io/custos/internal/testharness"
)

var (
	controlPlane *testharness.ControlPlane
	k8s          client.Client
	pg           *testharness.Postgres
	restServer   *testharness.RestServer
	programs     controllers.Programs
	workDir      string
)

func TestLocal(t *testing.T) {
	RegisterFailHandler(Fail)
	// The suite runs the manager, kube-apiserver, etcd, PostgreSQL and restic on two cores beside other suites:
	// Gomega's defaults (1 s, polling every 10 ms) read too early under that load and poll the API server hard.
	// A spec that needs a tighter bound or a faster poll says so.
	SetDefaultEventuallyTimeout(20 * time.Second)
	SetDefaultEventuallyPollingInterval(100 * time.Millisecond)
	// The managers the specs start run in this process: their log goes with the spec that was running, and is
	// printed when it fails.
	ctrl.SetLogger(zap.New(zap.WriteTo(GinkgoWriter), zap.UseDevMode(false)))
	RunSpecs(t, "Local integration suite (envtest + PostgreSQL + restic)")
}

var _ = BeforeSuite(func(ctx context.Context) {
	var err error
	By("starting kube-apiserver and etcd with the generated CRDs")
	controlPlane, err = testharness.StartControlPlane()
	Expect(err).NotTo(HaveOccurred())
	k8s = controlPlane.Client
	DeferCleanup(controlPlane.Stop)

	By("installing the admission policy shipped in config/admission")
	root, err := testharness.RepoRoot()
	Expect(err).NotTo(HaveOccurred())
	Expect(testharness.ApplyManifests(ctx, k8s, filepath.Join(root, "config", "admission", "tenant-deletion-guard.yaml"))).To(Succeed())

	By("starting PostgreSQL")
	pg, err = testharness.StartPostgres(ctx)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(pg.Stop)

	By("finding restic, pg_dump and psql")
	programs.Restic, err = testharness.Tool("restic")
	Expect(err).NotTo(HaveOccurred())
	programs.PgDump, err = testharness.PostgresBinary("pg_dump")
	Expect(err).NotTo(HaveOccurred())
	// A location that dies under a running restic stops it after this (the manager's default is 3 minutes).
	programs.BackendRetryLimit = 30 * time.Second
	programs.Psql, err = testharness.PostgresBinary("psql")
	Expect(err).NotTo(HaveOccurred())
	workDir = GinkgoT().TempDir()

	By("starting rest-server")
	restServer, err = testharness.StartRestServer(ctx)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(restServer.Stop)
}, NodeTimeout(300e9))
