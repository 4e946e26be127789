package evidence

import (
	"testing"

	// ginkgo is not dot-imported here: its table Entry would clash with the audit Entry type.
	g "github.com/onsi/ginkgo/v2"
	"github.com/onsi/gomega"
)

func TestEvidence(t *testing.T) {
	gomega.RegisterFailHandler(g.Fail)
	g.RunSpecs(t, "evidence: certificate statement, DSSE, audit chain")
}
