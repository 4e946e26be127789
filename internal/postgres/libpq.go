package postgres

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
)

// LibpqEnv is the libpq environment (PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE, PGSSLMODE,
// PGCONNECT_TIMEOUT, PGAPPNAME, and PGOPTIONS pinning search_path to the catalog as ConnConfig.URL does) with which a client program such as pg_dump or psql reaches database db as c's
// user. appName is the application_name the server shows. When c has a CA bundle it is written to dir/ca.crt
// (mode 0600) and named by PGSSLROOTCERT; dir must then exist and should be private to the caller.
//
// The variables are meant to be appended after the caller's environment: exec uses the last value of a
// duplicated key.
func (c ConnConfig) LibpqEnv(db, appName, dir string) ([]string, error) {
	port := c.Port
	if port == 0 {
		port = 5432
	}
	env := []string{
		"PGHOST=" + c.Host, "PGPORT=" + strconv.Itoa(port), "PGUSER=" + c.User, "PGPASSWORD=" + c.Password,
		"PGDATABASE=" + db, "PGSSLMODE=" + c.SSLMode, "PGCONNECT_TIMEOUT=10", "PGAPPNAME=" + appName,
		"PGOPTIONS=-c search_path=" + strings.ReplaceAll(AdminSearchPath, " ", ""),
	}
	if len(c.CAPEM) > 0 {
		ca := filepath.Join(dir, "ca.crt")
		if err := os.WriteFile(ca, c.CAPEM, 0o600); err != nil {
			return nil, err
		}
		env = append(env, "PGSSLROOTCERT="+ca)
	}
	return env, nil
}

// PgxConfig is the pgx configuration for database db (the maintenance database when empty) with c's credentials
// and CA bundle, for a caller that tunes the connection before pgx.ConnectConfig (the export, for one, reads COPY
// output through a larger buffer). Errors never carry the password.
func (c ConnConfig) PgxConfig(db string) (*pgx.ConnConfig, error) {
	pc, err := pgx.ParseConfig(c.URL(db))
	if err != nil {
		return nil, redact(err, c.Password)
	}
	if err := c.trustCA(pc); err != nil {
		return nil, err
	}
	return pc, nil
}
