package main

import (
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gexec"
)

func TestCustosCLI(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "custos CLI (offline checks, and the commands that read a cluster)")
}

var _ = AfterSuite(func() {
	gexec.CleanupBuildArtifacts()
})
