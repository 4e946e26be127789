// Package backup carries out a tenant's backup work on restic repositories and PostgreSQL: repositories opened
// or created, the daily snapshot (the database dump and the tenant's Kubernetes objects, with per-table row
// counts and checksums), the offsite copy, expiry by the wall clock, the integrity check and the restore drill.
// It knows nothing of Kubernetes: callers hand in repositories, connection settings and the objects as YAML.
// Every function is safe to run again after a crash: a slot that already produced its snapshot is not taken
// twice, a copy skips what is there, an expiry forgets what is still expired.
package backup

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/custos-io/custos/internal/pgdump"
	"github.com/custos-io/custos/internal/postgres"
	"github.com/custos-io/custos/internal/restic"
	"github.com/custos-io/custos/internal/retention"
)

// Tags and names in the repository.
const (
	TagTenant   = "tenant"
	TagKind     = "kind"
	TagSlot     = "slot"
	KindDB      = "db"
	KindObjects = "objects"
	// DumpFile is the file name of the database dump inside a db snapshot.
	DumpFile = "database.sql"
	// MetaDir is the directory of an objects snapshot: tables.json and objects/….
	MetaDir = "custos-backup"
)

func tag(k, v string) string { return k + "=" + v }

// SlotTag is the tag value of a scheduled slot.
func SlotTag(slot time.Time) string { return strconv.FormatInt(slot.Unix(), 10) }

// Database is how to reach the tenant's database with pg_dump and psql.
type Database struct {
	// Conn is the administrative connection (its Database is ignored: Name is dumped).
	Conn postgres.ConnConfig
	// Name of the tenant's database.
	Name string
	// PgDump and Psql are the client programs.
	PgDump, Psql string
	// RestrictKey, when pg_dump supports --restrict-key (15.14, 16.10, 17.6 and later), replaces the random key
	// pg_dump puts in its \restrict line with this one, which stays the same from one day to the next. A random
	// key changes the first and the last chunk of every dump, which costs a repository two chunks a day of
	// unchanged data. The key is a secret derived from the repository key (see DeriveRestrictKey): it protects a
	// restore from psql meta-commands smuggled into the data as well as a random one does.
	RestrictKey string
}

// DeriveRestrictKey is a stable, secret \restrict key for a tenant's dumps: an HMAC of the tenant's name under
// the repository key, in the letters and digits pg_dump accepts.
func DeriveRestrictKey(repositoryKey, tenant string) string {
	m := hmac.New(sha256.New, []byte(repositoryKey))
	m.Write([]byte("custos restrict key " + tenant))
	return hex.EncodeToString(m.Sum(nil))[:32]
}

var restrictSupport sync.Map // pg_dump path → bool

// SupportsRestrictKey reports whether the pg_dump at path knows --restrict-key.
func SupportsRestrictKey(ctx context.Context, path string) bool {
	if v, ok := restrictSupport.Load(path); ok {
		return v.(bool)
	}
	out, err := exec.CommandContext(ctx, path, "--help").Output()
	ok := err == nil && bytes.Contains(out, []byte("--restrict-key"))
	if err == nil {
		restrictSupport.Store(path, ok)
	}
	return ok
}

// env is the libpq environment for database db; a CA bundle is written into dir.
func (d Database) env(db, dir string) ([]string, error) {
	return d.Conn.LibpqEnv(db, "custos-backup", dir)
}

// Open returns the repository's id, creating it when it does not exist. from, when not nil, is the primary an
// offsite repository copies from: a new offsite repository gets its chunker parameters (so copied data
// deduplicates) and a key of its own.
func Open(ctx context.Context, repo restic.Repository, from *restic.Repository) (id string, created bool, err error) {
	id, err = repo.ID(ctx)
	if err == nil {
		return id, false, nil
	}
	if !restic.IsCode(err, restic.ExitNoRepository) {
		return "", false, err
	}
	if from != nil {
		id, err = repo.InitCopyOf(ctx, *from)
	} else {
		id, err = repo.Init(ctx)
	}
	return id, err == nil, err
}

// SnapshotInput is one scheduled snapshot of a tenant.
type SnapshotInput struct {
	Tenant string
	Slot   time.Time
	// At is the snapshot's time; zero means now. Benchmarks and tests back-date with it.
	At       time.Time
	Database Database
	// Objects are the tenant's Kubernetes objects: path under objects/ → YAML.
	Objects map[string][]byte
	// WriteObjects, when set, writes the objects itself into dir (the objects/ directory), so that a caller can
	// stream them page by page instead of holding them all in memory; an error fails the slot before the dump
	// starts.
	WriteObjects func(ctx context.Context, dir string) error
	// TempDir holds the stats file and the objects while they are backed up; it is removed afterwards.
	TempDir string
	// FirstAttempt is true when no earlier attempt at this slot ever started (the caller recorded the attempt
	// before starting it): there is nothing of the slot in the repository to look for, which saves a restic run.
	FirstAttempt bool
}

// SnapshotResult is what a snapshot produced.
type SnapshotResult struct {
	DBSnapshot      string    `json:"dbSnapshot"`
	ObjectsSnapshot string    `json:"objectsSnapshot"`
	Time            time.Time `json:"time"`
	Tables          int       `json:"tables"`
	Rows            int64     `json:"rows"`
	DumpBytes       int64     `json:"dumpBytes"`
	DataAdded       int64     `json:"dataAdded"`
	// Reused is true when the slot had already produced its snapshot (a retry after a crash).
	Reused bool `json:"reused"`
}

// Meta is tables.json in an objects snapshot.
type Meta struct {
	Tenant string    `json:"tenant"`
	Slot   time.Time `json:"slot"`
	// DBSnapshot is the database snapshot of the slot; only snapshots of older versions have it (the slot tag is
	// what pairs the two).
	DBSnapshot string `json:"dbSnapshot,omitempty"`
	Database   string `json:"database"`
	// Checksums is the algorithm the database snapshot's rows were hashed with. Its figures are the last line of
	// the dump (pgdump.TrailerPrefix), because the objects snapshot is taken while the dump runs.
	Checksums pgdump.Algorithm `json:"checksums,omitempty"`
	// Stats are the figures, in snapshots of older versions, which took the objects snapshot after the dump.
	Stats *pgdump.Stats `json:"stats,omitempty"`
}

// Snapshot takes the slot's snapshot: the database through pg_dump (plain format, which restic deduplicates and
// compresses) run by restic itself, so a failing pg_dump records no snapshot, with row counts and checksums
// computed from the same stream and appended to it as its last line; and, while the dump runs, the objects as a
// second snapshot with the same slot tag (its restic start, key derivation and repository open then cost no
// time). A slot that already has both is not taken again; one of the two left alone by a crash or a failed dump
// is forgotten and the slot taken again.
func Snapshot(ctx context.Context, repo restic.Repository, in SnapshotInput) (SnapshotResult, error) {
	slotTags := []string{tag(TagTenant, in.Tenant), tag(TagSlot, SlotTag(in.Slot))}
	var existing []restic.Snapshot
	if !in.FirstAttempt {
		var err error
		if existing, err = repo.Snapshots(ctx, slotTags...); err != nil {
			return SnapshotResult{}, err
		}
	}
	var db, objects *restic.Snapshot
	var partial []string
	for i := range existing {
		switch existing[i].Tag(TagKind) {
		case KindDB:
			db = &existing[i]
		case KindObjects:
			objects = &existing[i]
		}
		partial = append(partial, existing[i].ID)
	}
	if db != nil && objects != nil {
		return SnapshotResult{DBSnapshot: db.ID, ObjectsSnapshot: objects.ID, Time: db.Time, Reused: true}, nil
	}
	if len(partial) > 0 {
		if err := repo.Forget(ctx, partial); err != nil {
			return SnapshotResult{}, fmt.Errorf("forgetting the half of the slot a crash left: %w", err)
		}
	}

	dir, err := os.MkdirTemp(in.TempDir, "snapshot-")
	if err != nil {
		return SnapshotResult{}, err
	}
	defer func() { _ = os.RemoveAll(dir) }()
	env, err := in.Database.env(in.Database.Name, dir)
	if err != nil {
		return SnapshotResult{}, err
	}
	statsFile := filepath.Join(dir, "stats.json")
	dump := []string{in.Database.PgDump, "--format=plain", "--no-password", "--quote-all-identifiers"}
	if in.Database.RestrictKey != "" && SupportsRestrictKey(ctx, in.Database.PgDump) {
		dump = append(dump, "--restrict-key="+in.Database.RestrictKey)
	}
	cmd, err := pgdump.Command(dump)
	if err != nil {
		return SnapshotResult{}, err
	}
	meta := Meta{Tenant: in.Tenant, Slot: in.Slot.UTC(), Database: in.Database.Name, Checksums: pgdump.XXH3}
	if err := writeMeta(filepath.Join(dir, "meta"), meta, in.Objects); err != nil {
		return SnapshotResult{}, err
	}
	if in.WriteObjects != nil {
		if err := in.WriteObjects(ctx, filepath.Join(dir, "meta", MetaDir, "objects")); err != nil {
			return SnapshotResult{}, err
		}
	}

	// The objects snapshot runs beside the dump; a dump that fails cancels it, or forgets it when it was done.
	octx, cancelObjects := context.WithCancel(ctx)
	defer cancelObjects()
	type objectsResult struct {
		sum restic.Summary
		err error
	}
	objectsDone := make(chan objectsResult, 1)
	go func() {
		metaRepo := repo
		metaRepo.Dir = filepath.Join(dir, "meta")
		sum, err := metaRepo.BackupDir(octx, in.Tenant, append([]string{tag(TagKind, KindObjects)}, slotTags...), in.At, MetaDir)
		objectsDone <- objectsResult{sum, err}
	}()

	dumpRepo := repo
	dumpRepo.Env = append(append(append([]string(nil), repo.Env...), env...), pgdump.StatsFileEnv+"="+statsFile)
	sum, err := dumpRepo.Backup(ctx, restic.BackupStdin{
		Filename: DumpFile, Host: in.Tenant, Time: in.At, Command: cmd,
		Tags: append([]string{tag(TagKind, KindDB)}, slotTags...),
	})
	var stats pgdump.Stats
	if err != nil {
		err = fmt.Errorf("database dump: %w", err)
	} else if stats, err = pgdump.ReadStatsFile(statsFile); err != nil {
		err = fmt.Errorf("row counts of the dump: %w", err)
	}
	if err != nil {
		cancelObjects()
		if o := <-objectsDone; o.err == nil && o.sum.SnapshotID != "" {
			// Best effort: a retry of the slot forgets it too.
			_ = repo.Forget(context.WithoutCancel(ctx), []string{o.sum.SnapshotID})
		}
		return SnapshotResult{}, err
	}
	o := <-objectsDone
	if o.err != nil {
		return SnapshotResult{}, fmt.Errorf("objects: %w", o.err)
	}
	res := SnapshotResult{
		DBSnapshot: sum.SnapshotID, ObjectsSnapshot: o.sum.SnapshotID, Time: sum.BackupStart,
		Tables: len(stats.Tables), DumpBytes: stats.Bytes, DataAdded: sum.DataAddedPacked + o.sum.DataAddedPacked,
	}
	if !in.At.IsZero() {
		res.Time = in.At
	}
	for _, t := range stats.Tables {
		res.Rows += t.Rows
	}
	return res, nil
}

func writeMeta(root string, meta Meta, objects map[string][]byte) error {
	base := filepath.Join(root, MetaDir)
	if err := os.MkdirAll(filepath.Join(base, "objects"), 0o700); err != nil {
		return err
	}
	b, err := json.MarshalIndent(meta, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(base, "tables.json"), b, 0o600); err != nil {
		return err
	}
	for name, data := range objects {
		p := filepath.Join(base, "objects", filepath.Clean("/"+name))
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			return err
		}
		if err := os.WriteFile(p, data, 0o600); err != nil {
			return err
		}
	}
	return nil
}

// Summary is a tenant's snapshots in one repository: one per slot, counted by their database snapshots.
type Summary struct {
	Count          int
	Oldest, Newest time.Time
}

// Summarize lists the tenant's snapshots.
func Summarize(ctx context.Context, repo restic.Repository, tenant string) (Summary, []restic.Snapshot, error) {
	snaps, err := repo.Snapshots(ctx, tag(TagTenant, tenant))
	if err != nil {
		return Summary{}, nil, err
	}
	var s Summary
	for _, sn := range snaps {
		if sn.Tag(TagKind) != KindDB {
			continue
		}
		s.Count++
		if s.Oldest.IsZero() || sn.Time.Before(s.Oldest) {
			s.Oldest = sn.Time
		}
		if sn.Time.After(s.Newest) {
			s.Newest = sn.Time
		}
	}
	return s, snaps, nil
}

func toRetention(snaps []restic.Snapshot) []retention.Snapshot {
	out := make([]retention.Snapshot, 0, len(snaps))
	for _, s := range snaps {
		out = append(out, retention.Snapshot{ID: s.ID, Time: s.Time, Slot: s.Tag(TagSlot), Kind: s.Tag(TagKind)})
	}
	return out
}

// ExpireOptions say what an expiry keeps.
type ExpireOptions struct {
	KeepWithin time.Duration
	Now        time.Time
	// KeepNewest keeps the newest complete slot whatever its age (an active tenant: retention.KeepNewest).
	KeepNewest bool
	// Guard, when set, is asked right before anything is forgotten (after the snapshots were listed); an error
	// stops the expiry with nothing forgotten. The controller uses it to honour a legal hold set while the task
	// was queued or listing.
	Guard func(ctx context.Context) error
}

// Expire forgets every snapshot of the tenant taken more than KeepWithin before Now (except what KeepNewest
// keeps) and prunes what only they referenced, so the data is gone from the repository, not just unlisted. It
// does not depend on newer snapshots existing. It returns how many snapshots it removed.
func Expire(ctx context.Context, repo restic.Repository, tenant string, o ExpireOptions) (int, error) {
	snaps, err := repo.Snapshots(ctx, tag(TagTenant, tenant))
	if err != nil {
		return 0, err
	}
	ids := retention.Expired(toRetention(snaps), o.KeepWithin, o.Now, o.KeepNewest)
	if len(ids) == 0 {
		return 0, nil
	}
	if o.Guard != nil {
		if err := o.Guard(ctx); err != nil {
			return 0, err
		}
	}
	if err := repo.Forget(ctx, ids); err != nil {
		return 0, err
	}
	return len(ids), nil
}

// Copy copies to offsite the tenant's snapshots in primary that are inside the retention window (or kept by
// keepNewest, as the primary's expiry keeps them) and not there yet. Expired snapshots are never copied, so a
// copy that runs between the two locations' expiry runs does not bring back what the offsite expiry removed. It
// returns how many snapshots the primary offered.
func Copy(ctx context.Context, primary, offsite restic.Repository, tenant string, keepWithin time.Duration, now time.Time, keepNewest bool) (int, error) {
	snaps, err := primary.Snapshots(ctx, tag(TagTenant, tenant))
	if err != nil {
		return 0, fmt.Errorf("listing the primary: %w", err)
	}
	expired := map[string]bool{}
	for _, id := range retention.Expired(toRetention(snaps), keepWithin, now, keepNewest) {
		expired[id] = true
	}
	var ids []string
	for _, s := range snaps {
		if !expired[s.ID] {
			ids = append(ids, s.ID)
		}
	}
	sort.Strings(ids)
	return len(ids), offsite.Copy(ctx, primary, ids...)
}

// ErrNoSnapshot is returned by a drill when there is nothing to restore.
var ErrNoSnapshot = errors.New("no complete snapshot to restore")
