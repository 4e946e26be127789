package postgres

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/custos-io/custos/internal/testharness"
)

func TestSupportedVersion(t *testing.T) {
	for _, tc := range []struct {
		name       string
		num, dump  int
		wantOK     bool
		wantSubstr []string
	}{
		{name: "tested server, same pg_dump", num: 150018, dump: 15, wantOK: true},
		{name: "tested server, first minor", num: 150000, dump: 15, wantOK: true},
		{name: "tested server, newer pg_dump reads an older server", num: 150018, dump: 17, wantOK: true},
		{name: "tested server, no pg_dump configured", num: 150018, dump: 0, wantOK: true},
		{name: "newer server", num: 160002, dump: 16,
			wantSubstr: []string{"PostgreSQL 16.2 is newer than the range custos is tested against (15)", "PostgreSQL 15 server"}},
		{name: "older server", num: 130004, dump: 15,
			wantSubstr: []string{"PostgreSQL 13.4 is older than the range custos is tested against (15)", "upgrade the server"}},
		{name: "pre-10 server", num: 90624, dump: 15, wantSubstr: []string{"PostgreSQL 9.6.24 is older"}},
		{name: "pg_dump older than a tested server", num: 150018, dump: 14,
			wantSubstr: []string{"pg_dump is version 14, older than the server (PostgreSQL 15.18)", "version 15 or newer", "--pg-dump"}},
		{name: "newer server and a pg_dump that cannot dump it: both said", num: 160002, dump: 15,
			wantSubstr: []string{"PostgreSQL 16.2 is newer", "; also, the manager's pg_dump is version 15", "version 16 or newer"}},
		{name: "newer server, no pg_dump configured", num: 160002, dump: 0, wantSubstr: []string{"PostgreSQL 16.2 is newer"}},
		{name: "no version", num: 0, dump: 15, wantSubstr: []string{"server_version_num 0", "not a PostgreSQL version"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := SupportedVersion(tc.num, tc.dump)
			if tc.wantOK {
				if err != nil {
					t.Fatalf("SupportedVersion(%d, %d) = %v, want nil", tc.num, tc.dump, err)
				}
				return
			}
			var uv *UnsupportedVersionError
			if !errors.As(err, &uv) {
				t.Fatalf("SupportedVersion(%d, %d) = %v, want an *UnsupportedVersionError", tc.num, tc.dump, err)
			}
			for _, s := range tc.wantSubstr {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("SupportedVersion(%d, %d) = %q, want it to contain %q", tc.num, tc.dump, err, s)
				}
			}
			if tc.dump == 0 && strings.Contains(err.Error(), "pg_dump") {
				t.Errorf("SupportedVersion(%d, 0) = %q: pg_dump is not checked when none is configured", tc.num, err)
			}
		})
	}
}

func TestTestedRangeIsWhatCITests(t *testing.T) {
	// Debian bookworm's postgresql-15 is what the harness runs and the image ships: the range is that, exactly.
	if MinServerMajor != 15 || MaxServerMajor != 15 || TestedRange() != "15" {
		t.Fatalf("tested range %d to %d (%q): widen it only with CI running the new version", MinServerMajor, MaxServerMajor, TestedRange())
	}
}

func TestFormatVersionNum(t *testing.T) {
	for num, want := range map[int]string{150018: "15.18", 160000: "16.0", 100023: "10.23", 90624: "9.6.24", 90500: "9.5.0"} {
		if got := FormatVersionNum(num); got != want {
			t.Errorf("FormatVersionNum(%d) = %q, want %q", num, got, want)
		}
	}
}

func TestParsePgDumpVersion(t *testing.T) {
	for _, tc := range []struct {
		out     string
		want    int
		wantErr bool
	}{
		{out: "pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)\n", want: 15},
		{out: "pg_dump (PostgreSQL) 16.2\n", want: 16},
		{out: "pg_dump (PostgreSQL) 9.6.24\n", want: 9},
		{out: "pg_dump (PostgreSQL) 17devel\n", want: 17},
		{out: "Error: no pg_dump for version 15", wantErr: true},
		{out: "", wantErr: true},
	} {
		got, err := ParsePgDumpVersion(tc.out)
		if tc.wantErr {
			if err == nil {
				t.Errorf("ParsePgDumpVersion(%q) = %d, want an error", tc.out, got)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParsePgDumpVersion(%q) = %d, %v, want %d", tc.out, got, err, tc.want)
		}
	}
}

func TestPgDumpMajorCachesSuccessOnly(t *testing.T) {
	dir := t.TempDir()
	prog := filepath.Join(dir, "pg_dump")
	write := func(script string) {
		t.Helper()
		if err := os.WriteFile(prog, []byte("#!/bin/sh\n"+script+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	ctx := context.Background()
	write("exit 1")
	if _, err := PgDumpMajor(ctx, prog); err == nil {
		t.Fatal("a pg_dump that fails: want an error")
	}
	write("echo 'pg_dump (PostgreSQL) 15.18'")
	if got, err := PgDumpMajor(ctx, prog); err != nil || got != 15 {
		t.Fatalf("after the failure (not cached): got %d, %v, want 15", got, err)
	}
	write("echo 'pg_dump (PostgreSQL) 16.1'")
	if got, err := PgDumpMajor(ctx, prog); err != nil || got != 15 {
		t.Fatalf("second call: got %d, %v, want the cached 15 (pg_dump runs once per process)", got, err)
	}
}

var _ = Describe("The version of a real PostgreSQL and pg_dump", func() {
	It("is within the tested range, and the harness's pg_dump can dump it", func(ctx SpecContext) {
		s, err := Connect(ctx, adminConfig())
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(func(ctx SpecContext) { Expect(s.Close(ctx)).To(Succeed()) })
		version, num, err := s.ServerVersion(ctx)
		Expect(err).NotTo(HaveOccurred())
		Expect(ServerMajor(num)).To(BeNumerically(">=", MinServerMajor))
		Expect(ServerMajor(num)).To(BeNumerically("<=", MaxServerMajor))
		Expect(version).To(HavePrefix(FormatVersionNum(num)))

		pgDump, err := testharness.PostgresBinary("pg_dump")
		Expect(err).NotTo(HaveOccurred())
		dumpMajor, err := PgDumpMajor(ctx, pgDump)
		Expect(err).NotTo(HaveOccurred())
		Expect(dumpMajor).To(Equal(ServerMajor(num)))
		Expect(SupportedVersion(num, dumpMajor)).To(Succeed())
	})
})
