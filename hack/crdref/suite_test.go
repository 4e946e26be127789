package main

import (
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

func TestCRDRef(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "crdref (API reference from the CRDs)")
}
