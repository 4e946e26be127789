// Command export measures custos' data export (make bench-export): it starts the harness's PostgreSQL, fills a
// database with pgbench -i (scale 70 is about 1 GiB), and times export.WriteFile (the whole bag: pg_dump
// --schema-only, every table through COPY into the tar with SHA-256 and SHA-512 per file, datapackage.json,
// manifests, fsync, SHA-256 of the whole tar) against the hand-run baseline: one psql running the same COPY
// statements to /dev/null. Baseline and export run alternately for a number of rounds; the ratio is the median
// baseline time over the median export time (throughput of the export relative to raw COPY). The export runs in
// a child process (this program re-executed) so that its peak RSS is its own. Every figure is printed with
// PASS/FAIL against its target; only an error makes the exit code non-zero.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/custos-io/custos/internal/export"
	"github.com/custos-io/custos/internal/postgres"
	"github.com/custos-io/custos/internal/testharness"
)

const (
	dbName      = "bench"
	targetRatio = 0.8
	// childEnv, when set, makes this program the export child: it reads a childInput (JSON) from the variable's
	// value, runs export.WriteFile and prints the Result as JSON.
	childEnv = "CUSTOS_BENCH_EXPORT_CHILD"
)

type childInput struct {
	Conn     postgres.ConnConfig
	Database string
	PgDump   string
	Dst      string
}

func main() {
	if v := os.Getenv(childEnv); v != "" {
		os.Exit(child(v))
	}
	scale := flag.Int("scale", 70, "pgbench scale of the measured database (70 is about 1 GiB)")
	rounds := flag.Int("rounds", 3, "baseline/export pairs, run alternately")
	keep := flag.Bool("keep", false, "keep the last bag and print its path")
	flag.Parse()
	if *scale < 1 || *rounds < 1 {
		fmt.Fprintln(os.Stderr, "bench-export: -scale and -rounds must be at least 1")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *scale, *rounds, *keep); err != nil {
		stop()
		fmt.Fprintln(os.Stderr, "bench-export:", err)
		os.Exit(1)
	}
}

func child(v string) int {
	var in childInput
	if err := json.Unmarshal([]byte(v), &in); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	res, err := export.WriteFile(context.Background(), in.Dst, export.Input{Conn: in.Conn, Database: in.Database, PgDump: in.PgDump,
		Info: export.BagInfo{SourceOrganization: "bench", ExternalIdentifier: "bench", Tenant: "bench"}, Now: time.Now()})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	b, _ := json.Marshal(res)
	fmt.Println(string(b))
	return 0
}

func progress(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "%s  "+format+"\n", append([]any{time.Now().Format("15:04:05")}, a...)...)
}

func passFail(ok bool) string {
	if ok {
		return "PASS"
	}
	return "FAIL"
}

func median(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

func run(ctx context.Context, scale, rounds int, keep bool) error {
	pgDump, err := testharness.PostgresBinary("pg_dump")
	if err != nil {
		return err
	}
	psql, err := testharness.PostgresBinary("psql")
	if err != nil {
		return err
	}
	pgbench, err := testharness.PostgresBinary("pgbench")
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "custos-bench-export-")
	if err != nil {
		return err
	}
	if !keep {
		defer func() { _ = os.RemoveAll(dir) }()
	}
	progress("starting PostgreSQL")
	pg, err := testharness.StartPostgres(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = pg.Stop() }()
	admin := postgres.ConnConfig{Host: pg.Host, Port: pg.Port, User: pg.User, Password: pg.Password, Database: "postgres", SSLMode: "disable"}
	pgEnv := []string{"PGHOST=" + pg.Host, "PGPORT=" + strconv.Itoa(pg.Port), "PGUSER=" + pg.User, "PGPASSWORD=" + pg.Password,
		"PGDATABASE=" + dbName, "PGSSLMODE=disable"}

	conn, err := admin.ConnectDB(ctx, "")
	if err != nil {
		return err
	}
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+dbName); err != nil {
		return err
	}
	_ = conn.Close(ctx)
	progress("pgbench -i -s %d", scale)
	cmd := exec.CommandContext(ctx, pgbench, "-i", "-q", "-s", strconv.Itoa(scale), dbName)
	cmd.Env = append(os.Environ(), pgEnv...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("pgbench -i: %w\n%s", err, out)
	}
	db, err := admin.ConnectDB(ctx, dbName)
	if err != nil {
		return err
	}
	var dbSize int64
	var tables []string
	rows, err := db.Query(ctx, `SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname) FROM pg_class c
		JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'r' AND n.nspname = 'public' ORDER BY 1`)
	if err != nil {
		return err
	}
	tables, err = pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return err
	}
	if err := db.QueryRow(ctx, "SELECT pg_database_size(current_database())").Scan(&dbSize); err != nil {
		return err
	}
	_ = db.Close(ctx)
	progress("database %s, tables %s; load average %s", mib(dbSize), strings.Join(tables, ", "), loadavg())

	var psqlCPU []float64
	// The baseline: the same COPY statements the export runs, by psql, to /dev/null.
	baseline := func(opts string) (time.Duration, error) {
		args := []string{"-X", "-q", "-v", "ON_ERROR_STOP=1", "--no-password"}
		for _, t := range tables {
			args = append(args, "-c", "COPY "+t+" TO STDOUT"+opts)
		}
		cmd := exec.CommandContext(ctx, psql, args...)
		cmd.Env = append(os.Environ(), pgEnv...)
		devnull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
		if err != nil {
			return 0, err
		}
		defer devnull.Close()
		cmd.Stdout = devnull
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		start := time.Now()
		if err := cmd.Run(); err != nil {
			return 0, fmt.Errorf("psql: %w\n%s", err, stderr.String())
		}
		ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
		if opts != "" {
			psqlCPU = append(psqlCPU, time.Duration(ru.Utime.Nano()+ru.Stime.Nano()).Seconds())
		}
		return time.Since(start), nil
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	var last export.Result
	var exportCPU []float64
	var lastDst string
	exportOnce := func(i int) (time.Duration, int64, error) {
		dst := filepath.Join(dir, fmt.Sprintf("bench-%d.tar", i))
		in, _ := json.Marshal(childInput{Conn: admin, Database: dbName, PgDump: pgDump, Dst: dst})
		cmd := exec.CommandContext(ctx, self)
		cmd.Env = append(os.Environ(), childEnv+"="+string(in))
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		start := time.Now()
		if err := cmd.Run(); err != nil {
			return 0, 0, fmt.Errorf("export: %w\n%s", err, stderr.String())
		}
		wall := time.Since(start)
		if err := json.Unmarshal(stdout.Bytes(), &last); err != nil {
			return 0, 0, err
		}
		ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
		rss := ru.Maxrss * 1024
		exportCPU = append(exportCPU, time.Duration(ru.Utime.Nano()+ru.Stime.Nano()).Seconds())
		if i < rounds-1 {
			_ = os.Remove(dst)
		}
		lastDst = dst
		return wall, rss, nil
	}

	csvOpts := ` WITH (FORMAT csv, HEADER true, NULL E'\\N', ENCODING 'UTF8')`
	var base, baseText, exp []float64
	var peak int64
	for i := 0; i < rounds; i++ {
		d, err := baseline(csvOpts)
		if err != nil {
			return err
		}
		base = append(base, d.Seconds())
		dt, err := baseline("")
		if err != nil {
			return err
		}
		baseText = append(baseText, dt.Seconds())
		e, rss, err := exportOnce(i)
		if err != nil {
			return err
		}
		exp = append(exp, e.Seconds())
		peak = max(peak, rss)
		progress("round %d: psql COPY csv %.2f s, psql COPY text %.2f s, export %.2f s (peak RSS %s)", i+1, d.Seconds(), dt.Seconds(), e.Seconds(), mib(rss))
	}
	progress("verifying the last bag")
	f, err := os.Open(lastDst)
	if err != nil {
		return err
	}
	vstart := time.Now()
	rep, err := export.Verify(f)
	vtime := time.Since(vstart)
	_ = f.Close()
	if err != nil {
		return err
	}
	if !keep {
		_ = os.Remove(lastDst)
	}
	var tableBytes int64
	for _, t := range last.Tables {
		tableBytes += t.Bytes
	}
	ratio := median(base) / median(exp)
	fmt.Printf("database: pgbench scale %d, %s on disk; CSV of all tables %s; bag %s (%d payload files)\n",
		scale, mib(dbSize), mib(tableBytes), mib(last.Bytes), last.Files)
	fmt.Printf("baseline psql COPY … (FORMAT csv) > /dev/null: median %.2f s (%.0f MiB/s); text format: median %.2f s\n",
		median(base), float64(tableBytes)/(1<<20)/median(base), median(baseText))
	fmt.Printf("export.WriteFile (whole bag, fsync, tar digest): median %.2f s (%.0f MiB/s of CSV)\n", median(exp), float64(tableBytes)/(1<<20)/median(exp))
	fmt.Printf("throughput ratio export/baseline: %.2f (target ≥ %.1f) %s\n", ratio, targetRatio, passFail(ratio >= targetRatio))
	fmt.Printf("peak RSS of the export process: %s; CPU time (user+sys, PostgreSQL's backend not included): export median %.2f s, psql median %.2f s\n",
		mib(peak), median(exportCPU), median(psqlCPU))
	fmt.Printf("export.Verify of the bag: %.2f s (%.0f MiB/s), ok=%v, %d problems\n", vtime.Seconds(),
		float64(last.Bytes)/(1<<20)/vtime.Seconds(), rep.OK, len(rep.Problems))
	fmt.Printf("load average at the end: %s\n", loadavg())
	ratios := make([]float64, len(base))
	for i := range base {
		ratios[i] = base[i] / exp[i]
	}
	fmt.Printf("rounds: baseline csv %v s, baseline text %v s, export %v s, ratio per round %v\n", fmtSecs(base), fmtSecs(baseText),
		fmtSecs(exp), fmtSecs(ratios))
	if keep {
		fmt.Printf("kept: %s\n", dir)
	}
	return nil
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	return strings.Join(strings.Fields(string(b))[:3], " ")
}

func fmtSecs(v []float64) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = fmt.Sprintf("%.2f", x)
	}
	return "[" + strings.Join(s, " ") + "]"
}
