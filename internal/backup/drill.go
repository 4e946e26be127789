package backup

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/custos-io/custos/internal/pgdump"
	"github.com/custos-io/custos/internal/postgres"
	"github.com/custos-io/custos/internal/restic"
)

// DrillInput is a restore drill of a tenant.
type DrillInput struct {
	Tenant string
	// UID of the tenant: the scratch database and role are marked with it (postgres.DrillMarker).
	UID string
	// Role is the tenant's database role. The scratch role is made a member of it, so that the dump's OWNER TO
	// and GRANT statements replay, and gets no other right.
	Role string
	// Database reaches the server as its administrator; the dump is restored into a scratch database there
	// (postgres.DrillName), by a scratch role, and both are dropped afterwards.
	Database Database
	TempDir  string
}

// DrillResult is what a drill found.
type DrillResult struct {
	Snapshot string    `json:"snapshot"`
	Taken    time.Time `json:"taken"`
	Tables   int       `json:"tables"`
	Rows     int64     `json:"rows"`
	// Duration of the restore (download + load): the measured recovery time.
	Duration time.Duration `json:"duration"`
	// Differences between what was recorded at backup time and what the restored database holds; none when the
	// drill succeeded.
	Differences []string `json:"differences,omitempty"`
}

// Drill restores the tenant's newest complete snapshot into a scratch database, compares each table's row count
// (counted in the restored database) and checksum (of the restored stream) with what was recorded at backup
// time, and drops the scratch database whatever happened.
func Drill(ctx context.Context, repo restic.Repository, in DrillInput) (DrillResult, error) {
	snaps, err := repo.Snapshots(ctx, tag(TagTenant, in.Tenant))
	if err != nil {
		return DrillResult{}, err
	}
	var db, objects *restic.Snapshot
	for i := range snaps {
		s := &snaps[i]
		if s.Tag(TagKind) != KindDB || (db != nil && !s.Time.After(db.Time)) {
			continue
		}
		for j := range snaps {
			if snaps[j].Tag(TagKind) == KindObjects && snaps[j].Tag(TagSlot) == s.Tag(TagSlot) {
				db, objects = s, &snaps[j]
			}
		}
	}
	if db == nil {
		return DrillResult{}, ErrNoSnapshot
	}
	var metaJSON bytes.Buffer
	if err := repo.Dump(ctx, objects.ID, "/"+MetaDir+"/tables.json", &metaJSON); err != nil {
		return DrillResult{}, fmt.Errorf("reading the recorded row counts: %w", err)
	}
	var meta Meta
	if err := json.Unmarshal(metaJSON.Bytes(), &meta); err != nil {
		return DrillResult{}, fmt.Errorf("reading the recorded row counts: %w", err)
	}

	admin, err := postgres.Connect(ctx, in.Database.Conn)
	if err != nil {
		return DrillResult{}, err
	}
	defer func() { _ = admin.Close(context.WithoutCancel(ctx)) }()
	name, marker := postgres.DrillName(in.Tenant), postgres.DrillMarker(in.Tenant, in.UID)
	scratch, err := admin.CreateScratch(ctx, name, marker, in.Role)
	if err != nil {
		return DrillResult{}, fmt.Errorf("preparing the scratch database: %w", err)
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		_ = admin.DropScratch(dctx, name, marker, scratch.OID)
	}()

	var alg pgdump.Algorithm
	if meta.Stats != nil {
		alg, err = pgdump.AlgorithmOf(*meta.Stats)
	} else {
		alg, err = pgdump.ParseAlgorithm(string(meta.Checksums))
	}
	if err != nil {
		return DrillResult{}, fmt.Errorf("reading the recorded checksums: %w", err)
	}
	start := time.Now()
	restored, last, err := restore(ctx, repo, db.ID, alg, in, scratch)
	if err != nil {
		return DrillResult{}, err
	}
	recorded := meta.Stats
	if recorded == nil {
		trailer, ok, err := pgdump.ParseTrailer(last)
		if err != nil {
			return DrillResult{}, err
		}
		if !ok {
			return DrillResult{}, fmt.Errorf("the dump in snapshot %s does not end with the figures recorded at backup time (%q…): it is not the whole dump", db.ID, pgdump.TrailerPrefix)
		}
		recorded = &trailer
	}
	res := DrillResult{Snapshot: db.ID, Taken: db.Time, Tables: len(recorded.Tables)}
	res.Differences = pgdump.Compare(*recorded, restored)

	// Counted as the scratch role too: a row-level security policy calling the tenant's function runs with its
	// rights, not the administrator's.
	conn, err := scratch.Conn.ConnectDB(ctx, scratch.Name)
	if err != nil {
		return res, err
	}
	defer func() { _ = conn.Close(context.WithoutCancel(ctx)) }()
	for _, t := range recorded.Tables {
		var n int64
		// t.Table is the qualified name as pg_dump wrote it (quoted where needed), so it is valid SQL as is.
		if err := conn.QueryRow(ctx, "SELECT count(*) FROM "+t.Table).Scan(&n); err != nil {
			res.Differences = append(res.Differences, fmt.Sprintf("%s: cannot count the restored rows: %v", t.Table, err))
			continue
		}
		res.Rows += n
		if n != t.Rows {
			res.Differences = append(res.Differences, fmt.Sprintf("%s: %d rows recorded, %d in the restored database", t.Table, t.Rows, n))
		}
	}
	res.Duration = time.Since(start)
	return res, nil
}

// restore streams the dump out of the repository, through the filter (hashing rows with alg), into psql, which
// connects as the scratch role (never as the administrator) with search_path pinned to the catalog. It returns
// the restored stream's figures and its last line (the trailer, in snapshots that have one).
func restore(ctx context.Context, repo restic.Repository, id string, alg pgdump.Algorithm, in DrillInput, scratch postgres.Scratch) (pgdump.Stats, []byte, error) {
	dir, err := os.MkdirTemp(in.TempDir, "drill-")
	if err != nil {
		return pgdump.Stats{}, nil, err
	}
	defer func() { _ = os.RemoveAll(dir) }()
	env, err := scratch.Conn.LibpqEnv(scratch.Name, "custos-drill", dir)
	if err != nil {
		return pgdump.Stats{}, nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	psql := exec.CommandContext(ctx, in.Database.Psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "--no-password", "-f", "-")
	psql.Env = append(environWithoutPG(), env...)
	var psqlErr bytes.Buffer
	psql.Stderr = &psqlErr
	psql.Stdout = io.Discard
	stdin, err := psql.StdinPipe()
	if err != nil {
		return pgdump.Stats{}, nil, err
	}
	if err := psql.Start(); err != nil {
		return pgdump.Stats{}, nil, err
	}
	pr, pw := io.Pipe()
	dumpErr := make(chan error, 1)
	go func() {
		err := repo.Dump(ctx, id, "/"+DumpFile, pw)
		pw.CloseWithError(err)
		dumpErr <- err
	}()
	// Hashed as at backup time, so a snapshot recorded with an older algorithm still compares.
	var last pgdump.LastLine
	stats, ferr := pgdump.FilterWith(pr, io.MultiWriter(stdin, &last), alg)
	_ = stdin.Close()
	if ferr != nil {
		cancel()
	}
	_ = pr.Close()
	derr := <-dumpErr
	werr := psql.Wait()
	switch {
	case derr != nil && ferr == nil:
		return stats, nil, fmt.Errorf("reading the dump from the repository: %w", derr)
	case werr != nil:
		// psql stopping makes the filter fail to write and the dump be cancelled: its own error says why.
		msg := strings.TrimSpace(lastLines(psqlErr.String(), 5))
		if strings.Contains(msg, "must be member of role") {
			msg += " (the drill restores with the tenant's rights only: every object in the tenant's database must be owned by the tenant's role, e.g. ALTER TABLE … OWNER TO " + in.Role + ")"
		}
		return stats, nil, fmt.Errorf("restoring the dump: psql: %v: %s", werr, msg)
	case ferr != nil:
		return stats, nil, fmt.Errorf("restoring the dump: %w", ferr)
	case derr != nil:
		return stats, nil, fmt.Errorf("reading the dump from the repository: %w", derr)
	}
	return stats, last.Line(), nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// environWithoutPG is the process environment without libpq's variables, so that nothing but LibpqEnv decides
// where psql connects, as whom and with which options.
func environWithoutPG() []string {
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PG") {
			out = append(out, kv)
		}
	}
	return out
}
