package pgdump

import (
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

// The test binary imports this package, so its init function makes the binary the dump helper when StatsFileEnv
// is set: the helper specs re-execute the test binary itself (Command), as restic re-executes the manager.
func TestPgdump(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "pgdump (filter on hand-written dumps; real pg_dump, psql and PostgreSQL)")
}
