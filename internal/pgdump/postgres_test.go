package pgdump

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"time"

	"github.com/jackc/pgx/v5"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/custos-io/custos/internal/testharness"
)

// The source database: every kind of value COPY's text format escapes, a bytea row far longer than the filter's
// chunks, more rows than fit in one chunk, duplicate rows, an empty table, a table without columns, partitions,
// and a table whose schema and name need quoting.
const sourceSchema = `
CREATE TABLE public.accounts (id int PRIMARY KEY, name text, note text, balance numeric, tags text[], doc jsonb);
INSERT INTO public.accounts VALUES
  (1, 'alice', NULL, 10.5, '{a,b}', '{"k": "v"}'),
  (2, '', '', 0, '{}', 'null'),
  (3, E'tab\there', E'new\nline\r\nwindows', NULL, NULL, NULL),
  (4, E'back\\slash', E'\\.', -1, '{"x\"y"}', '{"s": "a\\nb"}'),
  (5, 'ünïcødé 日本語 🎉', E'\\N', 1e20, '{NULL,""}', '[]'),
  (6, E'\\', E'\x01\x7f', NULL, NULL, NULL);
CREATE TABLE public.dups (v text);
INSERT INTO public.dups VALUES ('same'), ('same'), ('same'), (NULL), (NULL), ('');
CREATE TABLE public.blobs (id int PRIMARY KEY, data bytea);
INSERT INTO public.blobs VALUES (1, NULL), (2, ''::bytea), (3, '\x00ff5c0a0d092e'::bytea),
  (4, (SELECT string_agg(sha256(i::text::bytea), ''::bytea) FROM generate_series(1, 65536) i));
CREATE TABLE public.empty (id int);
CREATE TABLE public.nocols ();
INSERT INTO public.nocols DEFAULT VALUES;
INSERT INTO public.nocols DEFAULT VALUES;
CREATE SCHEMA "Odd Schema";
CREATE TABLE "Odd Schema"."Weird (name) ""q""" ("a b" text, "c)" int);
INSERT INTO "Odd Schema"."Weird (name) ""q""" VALUES ('x y', 1), (NULL, 2), ('(', NULL);
CREATE TABLE public.many AS SELECT i AS id, md5(i::text) AS h, repeat('x', i % 50) AS pad FROM generate_series(1, 50000) i;
CREATE TABLE public.parted (id int, k int) PARTITION BY RANGE (k);
CREATE TABLE public.parted_a PARTITION OF public.parted FOR VALUES FROM (0) TO (100);
CREATE TABLE public.parted_b PARTITION OF public.parted FOR VALUES FROM (100) TO (200);
INSERT INTO public.parted SELECT i, i FROM generate_series(0, 199) i;
`

// restrictKey matches the random key of the \restrict and \unrestrict lines of pg_dump 15.14 and later.
var restrictKey = regexp.MustCompile(`(?m)^(\\(?:un)?restrict) \S+$`)

var expectedTables = []string{
	`"Odd Schema"."Weird (name) ""q"""`, "public.accounts", "public.blobs", "public.dups", "public.empty",
	"public.many", "public.nocols", "public.parted_a", "public.parted_b",
}

var _ = Describe("Filter on real pg_dump output (real PostgreSQL)", Ordered, func() {
	var (
		pg       *testharness.Postgres
		pgDump   string
		psql     string
		dir      string
		recorded Stats
		dumped   []byte
	)

	exec1 := func(ctx context.Context, db, sql string) {
		conn, err := pgx.Connect(ctx, pg.URL(db))
		ExpectWithOffset(1, err).NotTo(HaveOccurred())
		defer conn.Close(ctx)
		_, err = conn.Exec(ctx, sql)
		ExpectWithOffset(1, err).NotTo(HaveOccurred())
	}

	// dump runs pg_dump --format=plain on db through Filter.
	dump := func(ctx context.Context, db string) ([]byte, Stats) {
		cmd := exec.CommandContext(ctx, pgDump, "--format=plain", "--no-password", "--dbname="+pg.URL(db))
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		stdout, err := cmd.StdoutPipe()
		ExpectWithOffset(1, err).NotTo(HaveOccurred())
		ExpectWithOffset(1, cmd.Start()).To(Succeed())
		var out bytes.Buffer
		st, ferr := Filter(stdout, &out)
		ExpectWithOffset(1, cmd.Wait()).To(Succeed(), stderr.String())
		ExpectWithOffset(1, ferr).NotTo(HaveOccurred())
		ExpectWithOffset(1, st.Bytes).To(BeEquivalentTo(out.Len()))
		return out.Bytes(), st
	}

	BeforeAll(func(ctx context.Context) {
		var err error
		pgDump, err = testharness.PostgresBinary("pg_dump")
		Expect(err).NotTo(HaveOccurred())
		psql, err = testharness.PostgresBinary("psql")
		Expect(err).NotTo(HaveOccurred())
		pg, err = testharness.StartPostgres(ctx)
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(pg.Stop)
		dir = GinkgoT().TempDir()
		exec1(ctx, "postgres", "CREATE DATABASE source")
		exec1(ctx, "postgres", "CREATE DATABASE restored")
		exec1(ctx, "source", sourceSchema)
	}, NodeTimeout(180*time.Second))

	It("counts as many rows per table as SELECT count(*), and lists every table", func(ctx context.Context) {
		dumped, recorded = dump(ctx, "source")
		Expect(dumped).To(ContainSubstring(`COPY "Odd Schema"."Weird (name) ""q""" ("a b", "c)") FROM stdin;`))
		Expect(dumped).To(ContainSubstring("COPY public.nocols  FROM stdin;"))
		names := make([]string, len(recorded.Tables))
		for i, t := range recorded.Tables {
			names[i] = t.Table
		}
		Expect(names).To(Equal(expectedTables))

		conn, err := pgx.Connect(ctx, pg.URL("source"))
		Expect(err).NotTo(HaveOccurred())
		defer conn.Close(ctx)
		for _, t := range recorded.Tables {
			var n int64
			Expect(conn.QueryRow(ctx, "SELECT count(*) FROM "+t.Table).Scan(&n)).To(Succeed())
			Expect(t.Rows).To(Equal(n), t.Table)
		}
		empty, _ := recorded.Table("public.empty")
		Expect(empty).To(Equal(TableStats{Table: "public.empty", Rows: 0, Checksum: zeroChecksum}))
		many, _ := recorded.Table("public.many")
		Expect(many.Rows).To(BeEquivalentTo(50000))
		// The same stats as the obvious, whole-line computation.
		Expect(recorded.Tables).To(Equal(reference(string(dumped))))
	}, NodeTimeout(120*time.Second))

	It("finds the same stats in a dump of the database restored from the dump", func(ctx context.Context) {
		file := filepath.Join(dir, "source.sql")
		Expect(os.WriteFile(file, dumped, 0o600)).To(Succeed())
		out, err := exec.CommandContext(ctx, psql, "--no-psqlrc", "--quiet", "-v", "ON_ERROR_STOP=1", "--dbname="+pg.URL("restored"),
			"--file="+file).CombinedOutput()
		Expect(err).NotTo(HaveOccurred(), string(out))
		_, again := dump(ctx, "restored")
		Expect(Compare(recorded, again)).To(BeEmpty())
	}, NodeTimeout(120*time.Second))

	It("reports a changed row in the restored database, for that table only", func(ctx context.Context) {
		exec1(ctx, "restored", "UPDATE public.accounts SET note = 'changed' WHERE id = 1")
		_, changed := dump(ctx, "restored")
		diffs := Compare(recorded, changed)
		Expect(diffs).To(HaveLen(1))
		Expect(diffs[0]).To(HavePrefix("public.accounts: same number of rows (6) but different contents: checksum "))

		exec1(ctx, "restored", "DELETE FROM public.many WHERE id <= 3; DROP TABLE public.empty")
		_, changed = dump(ctx, "restored")
		diffs = Compare(recorded, changed)
		Expect(diffs).To(HaveLen(3))
		Expect(diffs[0]).To(HavePrefix("public.accounts: same number of rows (6) but different contents"))
		Expect(diffs[1:]).To(Equal([]string{
			"public.empty: missing from the restored database (0 rows recorded)",
			"public.many: 50000 rows recorded, 49997 restored",
		}))
	}, NodeTimeout(120*time.Second))

	It("as the re-executed helper, passes pg_dump's output through unchanged, appends the figures and writes the same stats", func(ctx context.Context) {
		statsFile := filepath.Join(dir, "stats.json")
		out, errOut, code := runHelperCommand(ctx, statsFile, pgDump, "--format=plain", "--no-password", "--dbname="+pg.URL("source"))
		Expect(code).To(BeZero(), string(errOut))
		st, err := ReadStatsFile(statsFile)
		Expect(err).NotTo(HaveOccurred())
		Expect(st).To(Equal(recorded))
		trailer, err := Trailer(st)
		Expect(err).NotTo(HaveOccurred())
		Expect(out).To(HaveSuffix(string(trailer)), "the figures are the dump's last line")
		// Each run of pg_dump (15.14 and later) draws a random \restrict key; everything else is the same.
		key := []byte("$1 KEY")
		out = out[:len(out)-len(trailer)]
		Expect(bytes.Equal(restrictKey.ReplaceAll(out, key), restrictKey.ReplaceAll(dumped, key))).To(BeTrue(),
			"the helper's output before the figures differs from pg_dump's")
	}, NodeTimeout(120*time.Second))

	It("as the re-executed helper, exits non-zero and writes no stats when pg_dump fails", func(ctx context.Context) {
		statsFile := filepath.Join(dir, "failed.json")
		_, errOut, code := runHelperCommand(ctx, statsFile, pgDump, "--format=plain", "--no-password", "--dbname="+pg.URL("no_such_db"))
		Expect(code).NotTo(BeZero())
		Expect(string(errOut)).To(ContainSubstring(`database "no_such_db" does not exist`))
		Expect(statsFile).NotTo(BeAnExistingFile())
		Expect(statsFile + ".tmp").NotTo(BeAnExistingFile())
	}, NodeTimeout(60*time.Second))
})
