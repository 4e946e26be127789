package backup_test

import (
	"context"
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/custos-io/custos/internal/postgres"
	"github.com/custos-io/custos/internal/testharness"
)

var (
	pg           *testharness.Postgres
	restServer   *testharness.RestServer
	resticBin    string
	pgDump, psql string
)

func TestBackup(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "backup (real PostgreSQL, pg_dump, restic, rest-server)")
}

var _ = BeforeSuite(func(ctx context.Context) {
	var err error
	resticBin, err = testharness.Tool("restic")
	Expect(err).NotTo(HaveOccurred())
	pgDump, err = testharness.PostgresBinary("pg_dump")
	Expect(err).NotTo(HaveOccurred())
	psql, err = testharness.PostgresBinary("psql")
	Expect(err).NotTo(HaveOccurred())
	pg, err = testharness.StartPostgres(ctx)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(pg.Stop)
	restServer, err = testharness.StartRestServer(ctx)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(restServer.Stop)
}, NodeTimeout(120e9))

func admin() postgres.ConnConfig {
	return postgres.ConnConfig{Host: pg.Host, Port: pg.Port, User: pg.User, Password: pg.Password, Database: "postgres", SSLMode: "disable"}
}
