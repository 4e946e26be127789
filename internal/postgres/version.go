package postgres

import (
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
)

// The PostgreSQL server major versions custos supports: exactly the ones CI tests, no more. CI runs every suite
// against the harness's PostgreSQL (internal/testharness: Debian bookworm's postgresql-15) and ships pg_dump and
// psql 15 in the image. Widen the range only together with a CI run on the new version, and say so where people
// read it (DatabaseServerStatus.conditions in api/v1alpha1, docs/guide/platform-engineers.md, docs/api.md). A
// DatabaseServer outside it is not Ready (reason UnsupportedVersion).
const (
	MinServerMajor = 15
	MaxServerMajor = 15
)

// TestedRange is the supported range for people: "15", or "14 to 16".
func TestedRange() string {
	if MinServerMajor == MaxServerMajor {
		return strconv.Itoa(MinServerMajor)
	}
	return fmt.Sprintf("%d to %d", MinServerMajor, MaxServerMajor)
}

// ServerMajor is the major version in a server_version_num: 150018 is 15. Before PostgreSQL 10 the major had two
// parts (90624 is 9.6.24); those are reported as their first part (9).
func ServerMajor(num int) int { return num / 10000 }

// FormatVersionNum writes a server_version_num as people write versions: 150018 is "15.18", 90624 "9.6.24".
func FormatVersionNum(num int) string {
	if num >= 100000 {
		return fmt.Sprintf("%d.%d", num/10000, num%10000)
	}
	return fmt.Sprintf("%d.%d.%d", num/10000, num/100%100, num%100)
}

// UnsupportedVersionError says why custos does not administer a server, and what to do about it.
type UnsupportedVersionError struct {
	// Problems, each a sentence a person can act on.
	Problems []string
}

func (e *UnsupportedVersionError) Error() string { return strings.Join(e.Problems, "; also, ") }

// SupportedVersion decides whether custos supports a server whose server_version_num is serverVersionNum, given
// the major version of the pg_dump custos runs against it. The server's major must be within [MinServerMajor,
// MaxServerMajor]; pg_dump's major must be at least the server's (pg_dump refuses to dump a newer server, so every
// backup and export would fail; a newer pg_dump reads an older server). pgDumpMajor 0 means custos runs no pg_dump
// (none configured), and pg_dump is not checked. The error is an *UnsupportedVersionError.
func SupportedVersion(serverVersionNum, pgDumpMajor int) error {
	if serverVersionNum <= 0 {
		return &UnsupportedVersionError{Problems: []string{fmt.Sprintf(
			"the server reported server_version_num %d, which is not a PostgreSQL version: custos cannot tell whether it is within the range custos is tested against (%s)",
			serverVersionNum, TestedRange())}}
	}
	major, version := ServerMajor(serverVersionNum), FormatVersionNum(serverVersionNum)
	var problems []string
	switch {
	case major > MaxServerMajor:
		problems = append(problems, fmt.Sprintf(
			"PostgreSQL %s is newer than the range custos is tested against (%s): point this DatabaseServer at a PostgreSQL %s server, or run a custos release whose tested range includes %d",
			version, TestedRange(), TestedRange(), major))
	case major < MinServerMajor:
		problems = append(problems, fmt.Sprintf(
			"PostgreSQL %s is older than the range custos is tested against (%s): upgrade the server to PostgreSQL %s (pg_upgrade), or point this DatabaseServer at one that is",
			version, TestedRange(), TestedRange()))
	}
	if pgDumpMajor > 0 && pgDumpMajor < major {
		problems = append(problems, fmt.Sprintf(
			"the manager's pg_dump is version %d, older than the server (PostgreSQL %s), and pg_dump refuses to dump a newer server, so every backup and export of it would fail: give the manager a pg_dump of version %d or newer (flag --pg-dump; chart: extraArgs)",
			pgDumpMajor, version, major))
	}
	if len(problems) > 0 {
		return &UnsupportedVersionError{Problems: problems}
	}
	return nil
}

var pgDumpVersionRE = regexp.MustCompile(`\(PostgreSQL\)\s+(\d+)`)

// ParsePgDumpVersion reads the major version from `pg_dump --version`: "pg_dump (PostgreSQL) 15.18 (Debian
// 15.18-0+deb12u1)" is 15, "pg_dump (PostgreSQL) 9.6.24" is 9, "pg_dump (PostgreSQL) 17devel" is 17.
func ParsePgDumpVersion(out string) (int, error) {
	m := pgDumpVersionRE.FindStringSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("pg_dump --version printed %q, not \"pg_dump (PostgreSQL) <version>\"", strings.TrimSpace(out))
	}
	major, err := strconv.Atoi(m[1])
	if err != nil || major <= 0 {
		return 0, fmt.Errorf("pg_dump --version printed %q: no major version", strings.TrimSpace(out))
	}
	return major, nil
}

// pgDumpMajors caches PgDumpMajor per program path: a program's version does not change while the process runs.
var pgDumpMajors sync.Map

// PgDumpMajor runs `path --version` once per process and path and returns the major version. Failures are not
// cached: the next call runs it again.
func PgDumpMajor(ctx context.Context, path string) (int, error) {
	if v, ok := pgDumpMajors.Load(path); ok {
		return v.(int), nil
	}
	out, err := exec.CommandContext(ctx, path, "--version").Output()
	if err != nil {
		return 0, fmt.Errorf("running %s --version: %w", path, err)
	}
	major, err := ParsePgDumpVersion(string(out))
	if err != nil {
		return 0, err
	}
	pgDumpMajors.Store(path, major)
	return major, nil
}

// ServerVersion is the server's server_version (for people: "15.18 (Debian 15.18-0+deb12u1)") and
// server_version_num (for comparing: 150018).
func (s *Server) ServerVersion(ctx context.Context) (version string, num int, err error) {
	err = s.conn.QueryRow(ctx, "SELECT current_setting('server_version'), current_setting('server_version_num')::int").Scan(&version, &num)
	return version, num, err
}
