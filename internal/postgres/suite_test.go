package postgres

import (
	"context"
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/custos-io/custos/internal/testharness"
)

var pg *testharness.Postgres

func TestPostgres(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "postgres (real PostgreSQL)")
}

var _ = BeforeSuite(func(ctx context.Context) {
	var err error
	pg, err = testharness.StartPostgres(ctx)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(pg.Stop)
}, NodeTimeout(120e9))

func adminConfig() ConnConfig {
	return ConnConfig{Host: pg.Host, Port: pg.Port, User: pg.User, Password: pg.Password, Database: "postgres", SSLMode: "disable"}
}
