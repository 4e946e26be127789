// Command backup measures custos' backups (make bench-backup): it starts the harness's PostgreSQL, fills a
// database with pgbench -i, and times custos' daily snapshot (backup.Snapshot: pg_dump run by restic through the
// row-count filter, with the objects and tables.json taken beside it) against the hand-run baseline `pg_dump | restic backup
// --stdin`, each into a fresh local repository, alternately for a number of rounds. In the same run it measures
// how much a second snapshot of unchanged data adds to the repository, and how long backup.Expire takes to forget
// and prune 90 back-dated daily snapshots in a local and in a rest-server repository. Every figure is printed with
// PASS/FAIL against its target; only an error makes the exit code non-zero.
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"syscall"
	"time"

	"github.com/custos-io/custos/internal/backup"
	"github.com/custos-io/custos/internal/pgdump"
	"github.com/custos-io/custos/internal/postgres"
	"github.com/custos-io/custos/internal/restic"
	"github.com/custos-io/custos/internal/testharness"
)

const (
	tenant      = "bench"
	dbName      = "bench"
	smallDBName = "bench_expiry"
	repoKey     = "bench-repository-key"
	keepWithin  = 90 * 24 * time.Hour

	targetRatio   = 1.10
	targetGrowth  = 5.0 // percent
	targetExpireS = 30.0
)

func main() {
	scale := flag.Int("scale", 70, "pgbench scale of the measured database (70 is about 1 GiB)")
	rounds := flag.Int("rounds", 2, "baseline/custos pairs, run alternately")
	expirySnapshots := flag.Int("expiry-snapshots", 90, "back-dated daily snapshots that expire (of a pgbench scale 1 database)")
	keep := flag.Bool("keep", false, "keep the temporary directory with the repositories and print its path (PostgreSQL's data directory is removed regardless)")
	flag.Parse()
	if *scale < 1 || *rounds < 1 || *expirySnapshots < 1 {
		fmt.Fprintln(os.Stderr, "bench-backup: -scale, -rounds and -expiry-snapshots must be at least 1")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *scale, *rounds, *expirySnapshots, *keep); err != nil {
		stop()
		fmt.Fprintln(os.Stderr, "bench-backup:", err)
		os.Exit(1)
	}
}

// report collects the lines of the final report.
type report struct{ lines []string }

func (r *report) add(format string, a ...any) { r.lines = append(r.lines, fmt.Sprintf(format, a...)) }

func passFail(ok bool) string {
	if ok {
		return "PASS"
	}
	return "FAIL"
}

// progress goes to stderr, so stdout holds only the report.
func progress(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "%s  "+format+"\n", append([]any{time.Now().Format("15:04:05")}, a...)...)
}

// usage is the CPU time (user + system) of the waited-for child processes and of this process.
type usage struct{ children, self time.Duration }

func cpuNow() usage {
	var c, s syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_CHILDREN, &c)
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &s)
	tv := func(r syscall.Rusage) time.Duration {
		return time.Duration(r.Utime.Nano() + r.Stime.Nano())
	}
	return usage{children: tv(c), self: tv(s)}
}

func (u usage) since(before usage) usage {
	return usage{children: u.children - before.children, self: u.self - before.self}
}

// measured is one timed run.
type measured struct {
	wall time.Duration
	cpu  usage
}

func timeIt(f func() error) (measured, error) {
	c0, t0 := cpuNow(), time.Now()
	err := f()
	return measured{wall: time.Since(t0), cpu: cpuNow().since(c0)}, err
}

func dirSize(dir string) (int64, error) {
	var n int64
	err := filepath.Walk(dir, func(_ string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if !info.IsDir() {
			n += info.Size()
		}
		return nil
	})
	return n, err
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

func median(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

type bench struct {
	resticBin, pgDump, psql, pgbench string
	pg                               *testharness.Postgres
	admin                            postgres.ConnConfig
	dir                              string
}

// pgEnv is the libpq environment for database db.
func (b *bench) pgEnv(db string) []string {
	return []string{"PGHOST=" + b.pg.Host, "PGPORT=" + strconv.Itoa(b.pg.Port), "PGUSER=" + b.pg.User,
		"PGPASSWORD=" + b.pg.Password, "PGDATABASE=" + db, "PGSSLMODE=disable"}
}

// resticEnv is the environment custos gives restic (restic.baseEnv) plus the repository.
func (b *bench) resticEnv(repo restic.Repository) []string {
	var env []string
	for _, k := range []string{"PATH", "HOME", "TMPDIR"} {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	return append(env, "RESTIC_REPOSITORY="+repo.URL, "RESTIC_PASSWORD="+repo.Password)
}

func (b *bench) exec(ctx context.Context, db string, sql ...string) error {
	conn, err := b.admin.ConnectDB(ctx, db)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	for _, s := range sql {
		if _, err := conn.Exec(ctx, s); err != nil {
			return fmt.Errorf("%s: %w", s, err)
		}
	}
	return nil
}

func (b *bench) dbSize(ctx context.Context, db string) (int64, error) {
	conn, err := b.admin.ConnectDB(ctx, "")
	if err != nil {
		return 0, err
	}
	defer conn.Close(ctx)
	var n int64
	err = conn.QueryRow(ctx, "SELECT pg_database_size($1)", db).Scan(&n)
	return n, err
}

// createDB creates db and fills it with pgbench -i -s scale.
func (b *bench) createDB(ctx context.Context, db string, scale int) (time.Duration, error) {
	if err := b.exec(ctx, "", "CREATE DATABASE "+db); err != nil {
		return 0, err
	}
	cmd := exec.CommandContext(ctx, b.pgbench, "-i", "-q", "-s", strconv.Itoa(scale), db)
	cmd.Env = append(os.Environ(), b.pgEnv(db)...)
	start := time.Now()
	if out, err := cmd.CombinedOutput(); err != nil {
		return 0, fmt.Errorf("pgbench -i -s %d: %w\n%s", scale, err, out)
	}
	return time.Since(start), nil
}

func (b *bench) repo(url string) restic.Repository {
	return restic.Repository{Binary: b.resticBin, URL: url, Password: repoKey}
}

func (b *bench) database(db string) backup.Database {
	return backup.Database{Conn: b.admin, Name: db, PgDump: b.pgDump, Psql: b.psql,
		RestrictKey: backup.DeriveRestrictKey(repoKey, tenant)}
}

// baseline runs the hand-run pipeline `pg_dump --format=plain db | restic backup --stdin --stdin-filename
// database.sql` into repo, the two programs connected by a pipe as a shell would.
func (b *bench) baseline(ctx context.Context, repo restic.Repository, db string) (restic.Summary, error) {
	pr, pw, err := os.Pipe()
	if err != nil {
		return restic.Summary{}, err
	}
	var dumpErr, resticErr, out bytes.Buffer
	dump := exec.CommandContext(ctx, b.pgDump, "--format=plain", "--no-password", db)
	dump.Env = b.pgEnv(db)
	dump.Stdout, dump.Stderr = pw, &dumpErr
	rc := exec.CommandContext(ctx, b.resticBin, "--no-cache", "--json", "backup", "--stdin", "--stdin-filename", backup.DumpFile,
		"--host", tenant, "--tag", "baseline")
	rc.Env = b.resticEnv(repo)
	rc.Stdin, rc.Stdout, rc.Stderr = pr, &out, &resticErr
	if err := rc.Start(); err != nil {
		pr.Close()
		pw.Close()
		return restic.Summary{}, err
	}
	if err := dump.Start(); err != nil {
		pr.Close()
		pw.Close()
		_ = rc.Wait()
		return restic.Summary{}, err
	}
	pr.Close()
	pw.Close()
	derr := dump.Wait()
	rerr := rc.Wait()
	if derr != nil {
		return restic.Summary{}, fmt.Errorf("baseline pg_dump: %w: %s", derr, dumpErr.String())
	}
	if rerr != nil {
		return restic.Summary{}, fmt.Errorf("baseline restic backup: %w: %s", rerr, resticErr.String())
	}
	return restic.ParseBackup(out.Bytes())
}

// countingWriter counts what is written to it and throws it away.
type countingWriter struct{ n int64 }

func (w *countingWriter) Write(p []byte) (int, error) { w.n += int64(len(p)); return len(p), nil }

// dumpOnly runs pg_dump with custos' flags into a byte counter, through pgdump.Filter (in this process) when
// filter is true. It returns the dump's size.
func (b *bench) dumpOnly(ctx context.Context, db string, filter bool) (int64, error) {
	args := []string{"--format=plain", "--no-password", "--quote-all-identifiers"}
	if backup.SupportsRestrictKey(ctx, b.pgDump) {
		args = append(args, "--restrict-key="+backup.DeriveRestrictKey(repoKey, tenant))
	}
	cmd := exec.CommandContext(ctx, b.pgDump, args...)
	cmd.Env = b.pgEnv(db)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	r, err := cmd.StdoutPipe()
	if err != nil {
		return 0, err
	}
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	var w countingWriter
	var cerr error
	if filter {
		_, cerr = pgdump.Filter(r, &w)
	} else {
		_, cerr = io.Copy(&w, r)
	}
	if err := cmd.Wait(); err != nil {
		return 0, fmt.Errorf("pg_dump: %w: %s", err, stderr.String())
	}
	return w.n, cerr
}

func run(ctx context.Context, scale, rounds, expirySnapshots int, keep bool) error {
	b := &bench{}
	var err error
	if b.resticBin, err = testharness.Tool("restic"); err != nil {
		return err
	}
	for name, p := range map[string]*string{"pg_dump": &b.pgDump, "psql": &b.psql, "pgbench": &b.pgbench} {
		if *p, err = testharness.PostgresBinary(name); err != nil {
			return err
		}
	}
	resticVersion, _ := exec.CommandContext(ctx, b.resticBin, "version").Output()
	pgDumpVersion, _ := exec.CommandContext(ctx, b.pgDump, "--version").Output()

	b.dir, err = os.MkdirTemp("", "custos-bench-backup-")
	if err != nil {
		return err
	}
	if keep {
		defer fmt.Fprintln(os.Stderr, "bench-backup: kept", b.dir)
	} else {
		defer os.RemoveAll(b.dir)
	}
	b.pg, err = testharness.StartPostgres(ctx)
	if err != nil {
		return err
	}
	defer func() {
		if err := b.pg.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "bench-backup: stopping PostgreSQL:", err)
		}
	}()
	rs, err := testharness.StartRestServer(ctx)
	if err != nil {
		return err
	}
	defer rs.Stop()
	b.admin = postgres.ConnConfig{Host: b.pg.Host, Port: b.pg.Port, User: b.pg.User, Password: b.pg.Password, Database: "postgres", SSLMode: "disable"}

	var rep report
	rep.add("| PostgreSQL (server and pg_dump) | %s, fsync off; %s |", b.pg.Version, bytes.TrimSpace(pgDumpVersion))
	rep.add("| restic | %s, local repositories with --no-cache, rest-server on loopback |", bytes.TrimSpace(resticVersion))
	rep.add("| pg_dump --restrict-key (stable key, used by custos) | %v |", backup.SupportsRestrictKey(ctx, b.pgDump))

	// 1. The database.
	progress("pgbench -i -s %d", scale)
	initTime, err := b.createDB(ctx, dbName, scale)
	if err != nil {
		return err
	}
	size, err := b.dbSize(ctx, dbName)
	if err != nil {
		return err
	}
	rep.add("| database: `pgbench -i -s %d` (took %.0f s) | %s (pg_database_size) |", scale, initTime.Seconds(), mib(size))

	// 2 + 3. Baseline and custos, alternately, each into a fresh repository; pg_dump alone and through the filter.
	db := b.database(dbName)
	var ratios, cpuRatios []float64
	var lastBaseline, lastCustos restic.Repository
	var lastBaselineDir, lastCustosDir string
	var dumpBytes int64
	var custosRes backup.SnapshotResult
	slot := time.Now().UTC().Truncate(24 * time.Hour)
	type pair struct{ base, cust, dump, filt, open measured }
	var pairs []pair
	for i := 0; i < rounds; i++ {
		if i > 0 { // free the disk of the previous round
			_ = os.RemoveAll(lastBaselineDir)
			_ = os.RemoveAll(lastCustosDir)
		}
		lastBaselineDir = filepath.Join(b.dir, fmt.Sprintf("baseline-%d", i))
		lastCustosDir = filepath.Join(b.dir, fmt.Sprintf("custos-%d", i))
		lastBaseline, lastCustos = b.repo(lastBaselineDir), b.repo(lastCustosDir)
		if _, err := lastBaseline.Init(ctx); err != nil {
			return err
		}
		if _, _, err := backup.Open(ctx, lastCustos, nil); err != nil {
			return err
		}
		var p pair
		runBaseline := func() error {
			progress("round %d: baseline pg_dump | restic backup --stdin", i+1)
			var err error
			p.base, err = timeIt(func() error { _, err := b.baseline(ctx, lastBaseline, dbName); return err })
			return err
		}
		runCustos := func() error {
			progress("round %d: custos backup.Snapshot", i+1)
			var err error
			p.cust, err = timeIt(func() error {
				var err error
				custosRes, err = backup.Snapshot(ctx, lastCustos, backup.SnapshotInput{Tenant: tenant, Slot: slot, Database: db,
					Objects: benchObjects(), TempDir: b.dir, FirstAttempt: true})
				return err
			})
			return err
		}
		steps := []func() error{runBaseline, runCustos}
		if i%2 == 1 { // alternate which goes first, so neither always gets the warmer caches
			steps[0], steps[1] = steps[1], steps[0]
		}
		for _, s := range steps {
			if err := s(); err != nil {
				return err
			}
		}
		progress("round %d: pg_dump alone, and through the row-count filter", i+1)
		if p.dump, err = timeIt(func() error { var err error; dumpBytes, err = b.dumpOnly(ctx, dbName, false); return err }); err != nil {
			return err
		}
		if p.filt, err = timeIt(func() error { _, err := b.dumpOnly(ctx, dbName, true); return err }); err != nil {
			return err
		}
		if p.open, err = timeIt(func() error { _, err := lastCustos.ID(ctx); return err }); err != nil {
			return err
		}
		pairs = append(pairs, p)
		ratios = append(ratios, p.cust.wall.Seconds()/p.base.wall.Seconds())
		cpuRatios = append(cpuRatios, p.cust.cpu.children.Seconds()/p.base.cpu.children.Seconds())
	}
	rep.add("| plain dump (custos' flags) | %s; custos counted %d tables, %d rows |", mib(dumpBytes), custosRes.Tables, custosRes.Rows)
	for i, p := range pairs {
		rep.add("| round %d: baseline `pg_dump \\| restic backup --stdin` | %.1f s wall, %.1f s CPU (pg_dump + restic) |", i+1, p.base.wall.Seconds(), p.base.cpu.children.Seconds())
		rep.add("| round %d: custos `backup.Snapshot` | %.1f s wall, %.1f s CPU (pg_dump + filter + restic ×2: the dump, and the objects beside it) |", i+1, p.cust.wall.Seconds(), p.cust.cpu.children.Seconds())
		rep.add("| round %d: ratio custos / baseline | %.2f× wall, %.2f× CPU |", i+1, ratios[i], cpuRatios[i])
		rep.add("| round %d: pg_dump alone into a byte counter | %.1f s wall, %.1f s CPU |", i+1, p.dump.wall.Seconds(), p.dump.cpu.children.Seconds())
		rep.add("| round %d: pg_dump through pgdump.Filter into a byte counter | %.1f s wall, %.1f s CPU of which the filter %.1f s |", i+1,
			p.filt.wall.Seconds(), (p.filt.cpu.children + p.filt.cpu.self).Seconds(), p.filt.cpu.self.Seconds())
		rep.add("| round %d: one restic command that only opens the repository (`restic cat config`; custos runs 2 per snapshot, side by side, the baseline 1) | %.1f s wall, %.1f s CPU |", i+1,
			p.open.wall.Seconds(), p.open.cpu.children.Seconds())
	}
	med := median(ratios)
	rep.add("| **median ratio custos / baseline (%d rounds)** | **%.2f×** wall (target ≤ %.2f×: %s); %.2f× CPU |", rounds, med, targetRatio,
		passFail(med <= targetRatio), median(cpuRatios))

	// 4. A second snapshot of unchanged data.
	before, err := dirSize(lastCustosDir)
	if err != nil {
		return err
	}
	progress("second custos snapshot of unchanged data")
	second, err := timeIt(func() error {
		_, err := backup.Snapshot(ctx, lastCustos, backup.SnapshotInput{Tenant: tenant, Slot: slot.Add(24 * time.Hour), Database: db,
			Objects: benchObjects(), TempDir: b.dir, FirstAttempt: true})
		return err
	})
	if err != nil {
		return err
	}
	after, err := dirSize(lastCustosDir)
	if err != nil {
		return err
	}
	growth := float64(after-before) / float64(before) * 100
	rep.add("| **second snapshot of unchanged data, custos** (took %.1f s) | **+%d bytes** (%s → %s) = **%.3f %%** (target < %.0f %%: %s) |",
		second.wall.Seconds(), after-before, mib(before), mib(after), growth, targetGrowth, passFail(growth < targetGrowth))
	bBefore, err := dirSize(lastBaselineDir)
	if err != nil {
		return err
	}
	progress("second baseline snapshot of unchanged data")
	bSecond, err := timeIt(func() error { _, err := b.baseline(ctx, lastBaseline, dbName); return err })
	if err != nil {
		return err
	}
	bAfter, err := dirSize(lastBaselineDir)
	if err != nil {
		return err
	}
	rep.add("| second snapshot of unchanged data, baseline (took %.1f s) | +%d bytes (%s → %s) = %.3f %% |",
		bSecond.wall.Seconds(), bAfter-bBefore, mib(bBefore), mib(bAfter), float64(bAfter-bBefore)/float64(bBefore)*100)
	_ = os.RemoveAll(lastBaselineDir)
	_ = os.RemoveAll(lastCustosDir)

	// 5. Expiry.
	if err := b.expiry(ctx, &rep, rs, expirySnapshots); err != nil {
		return err
	}

	fmt.Println("bench-backup report")
	for _, l := range rep.lines {
		fmt.Println(l)
	}
	return nil
}

// benchObjects stands in for a tenant's Kubernetes objects.
func benchObjects() map[string][]byte {
	return map[string][]byte{
		"namespaces/bench.yaml":       []byte("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: bench\n"),
		"configmaps/bench/app.yaml":   []byte("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: app\n  namespace: bench\ndata:\n  mode: production\n"),
		"resourcequotas/bench/q.yaml": []byte("apiVersion: v1\nkind: ResourceQuota\nmetadata:\n  name: q\n  namespace: bench\nspec:\n  hard:\n    pods: \"20\"\n"),
	}
}

// expiry fills a local repository with n back-dated daily snapshots of a small database (a few UPDATEs between
// them) and one current snapshot, copies them all to a rest-server repository, and times backup.Expire on both.
func (b *bench) expiry(ctx context.Context, rep *report, rs *testharness.RestServer, n int) error {
	progress("expiry: pgbench -i -s 1 and %d back-dated snapshots", n)
	if _, err := b.createDB(ctx, smallDBName, 1); err != nil {
		return err
	}
	db := b.database(smallDBName)
	localDir := filepath.Join(b.dir, "expiry")
	local := b.repo(localDir)
	if _, _, err := backup.Open(ctx, local, nil); err != nil {
		return err
	}
	now := time.Now().UTC()
	day := 24 * time.Hour
	fill, err := timeIt(func() error {
		for i := n - 1; i >= -1; i-- { // oldest first; i = -1 is today's snapshot, inside the window
			at := now.Add(-time.Duration(91+i) * day)
			if i < 0 {
				at = now.Add(-time.Hour)
			}
			if _, err := backup.Snapshot(ctx, local, backup.SnapshotInput{Tenant: tenant, Slot: at, At: at, Database: db,
				Objects: benchObjects(), TempDir: b.dir, FirstAttempt: true}); err != nil {
				return err
			}
			k := (n - 1 - i) % 100
			if err := b.exec(ctx, smallDBName,
				fmt.Sprintf("UPDATE public.pgbench_accounts SET abalance = abalance + %d WHERE aid BETWEEN %d AND %d", i+2, k*1000+1, k*1000+1000),
				fmt.Sprintf("INSERT INTO public.pgbench_history (tid, bid, aid, delta, mtime) SELECT 1, 1, g, %d, now() FROM generate_series(1, 200) g", i)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	rep.add("| expiry: %d back-dated daily snapshots + 1 current of a `pgbench -i -s 1` database, 1,000 rows updated and 200 inserted between them | filled in %.0f s (%.1f s per slot) |",
		n, fill.wall.Seconds(), fill.wall.Seconds()/float64(n+1))

	progress("expiry: copying the snapshots to rest-server")
	remote := b.repo(rs.URL + "expiry")
	if _, _, err := backup.Open(ctx, remote, &local); err != nil {
		return err
	}
	all, err := local.Snapshots(ctx)
	if err != nil {
		return err
	}
	ids := make([]string, 0, len(all))
	for _, s := range all {
		ids = append(ids, s.ID)
	}
	if err := remote.Copy(ctx, local, ids...); err != nil {
		return err
	}
	for _, loc := range []struct {
		name string
		repo restic.Repository
		dir  string
	}{
		{"local directory", local, localDir},
		{"rest-server on loopback", remote, filepath.Join(rs.Dir, "data", "expiry")},
	} {
		before, err := dirSize(loc.dir)
		if err != nil {
			return err
		}
		progress("expiry: backup.Expire on the %s", loc.name)
		var removed int
		m, err := timeIt(func() error {
			var err error
			removed, err = backup.Expire(ctx, loc.repo, tenant, backup.ExpireOptions{KeepWithin: keepWithin, Now: now})
			return err
		})
		if err != nil {
			return err
		}
		left, err := loc.repo.Snapshots(ctx)
		if err != nil {
			return err
		}
		after, err := dirSize(loc.dir)
		if err != nil {
			return err
		}
		if removed != 2*n || len(left) != 2 {
			return fmt.Errorf("expiry on the %s removed %d restic snapshots and left %d; want %d and 2", loc.name, removed, len(left), 2*n)
		}
		rep.add("| **expiry on the %s**: `backup.Expire` (forget %d restic snapshots + prune) | **%.1f s** (target < %.0f s: %s); repository %s → %s |",
			loc.name, removed, m.wall.Seconds(), targetExpireS, passFail(m.wall.Seconds() < targetExpireS), mib(before), mib(after))
	}
	return nil
}
