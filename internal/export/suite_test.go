package export_test

import (
	"context"
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/custos-io/custos/internal/postgres"
	"github.com/custos-io/custos/internal/testharness"
)

var (
	pg     *testharness.Postgres
	pgDump string
)

func TestExport(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "export (BagIt + Frictionless, real PostgreSQL and pg_dump)")
}

var _ = BeforeSuite(func(ctx context.Context) {
	var err error
	pgDump, err = testharness.PostgresBinary("pg_dump")
	Expect(err).NotTo(HaveOccurred())
	pg, err = testharness.StartPostgres(ctx)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(pg.Stop)
}, NodeTimeout(120e9))

func admin() postgres.ConnConfig {
	return postgres.ConnConfig{Host: pg.Host, Port: pg.Port, User: pg.User, Password: pg.Password, Database: "postgres", SSLMode: "disable"}
}
