package storage_test

import (
	"context"
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/custos-io/custos/internal/testharness"
)

var (
	resticBin  string
	restServer *testharness.RestServer
)

func TestStorage(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "storage (shredding repositories with real restic and rest-server)")
}

var _ = BeforeSuite(func(ctx context.Context) {
	var err error
	resticBin, err = testharness.Tool("restic")
	Expect(err).NotTo(HaveOccurred())
	restServer, err = testharness.StartRestServer(ctx)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(restServer.Stop)
}, NodeTimeout(60e9))
