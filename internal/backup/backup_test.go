package backup_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/custos-io/custos/internal/backup"
	"github.com/custos-io/custos/internal/pgdump"
	"github.com/custos-io/custos/internal/restic"
)

func dirSize(dir string) int64 {
	var n int64
	_ = filepath.Walk(dir, func(_ string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() {
			n += info.Size()
		}
		return nil
	})
	return n
}

// clinicDB creates database name, owned by a role of the same name as a tenant's is, with two tables of data,
// one of them with awkward values and a name that needs quoting, and an empty one.
func clinicDB(ctx context.Context, name string) backup.Database {
	conn, err := admin().ConnectDB(ctx, "")
	Expect(err).NotTo(HaveOccurred())
	defer conn.Close(ctx)
	for _, stmt := range []string{
		fmt.Sprintf("DROP DATABASE IF EXISTS %s WITH (FORCE)", name), "DROP ROLE IF EXISTS " + name,
		"CREATE ROLE " + name + " NOLOGIN", "CREATE DATABASE " + name + " OWNER " + name,
	} {
		_, err = conn.Exec(ctx, stmt)
		Expect(err).NotTo(HaveOccurred(), stmt)
	}
	db, err := admin().ConnectDB(ctx, name)
	Expect(err).NotTo(HaveOccurred())
	defer db.Close(ctx)
	for _, stmt := range []string{
		"SET ROLE " + name,
		"SET search_path = public", // the administrator's sessions start with only pg_catalog on the path
		`CREATE TABLE patients (id int PRIMARY KEY, name text, born date, notes text)`,
		`INSERT INTO patients SELECT g, 'patient ' || g, date '1950-01-01' + g, repeat('x', g % 200) FROM generate_series(1, 20000) g`,
		`CREATE TABLE "Visit log" (id serial, "when" timestamptz, memo text, payload bytea)`,
		`INSERT INTO "Visit log" ("when", memo, payload) VALUES (now(), E'tab\there\nnew line \\ back', '\x00ff'), (now(), NULL, NULL), (now(), '', ''), (now(), 'Ünïcødé ✓', '\x')`,
		`CREATE TABLE empty_table (a int)`,
	} {
		_, err = db.Exec(ctx, stmt)
		Expect(err).NotTo(HaveOccurred(), stmt)
	}
	return backup.Database{Conn: admin(), Name: name, PgDump: pgDump, Psql: psql, RestrictKey: backup.DeriveRestrictKey("primary-key", name)}
}

func countSlot(ctx context.Context, repo restic.Repository, tenant string, slot time.Time) map[string]int {
	snaps, err := repo.Snapshots(ctx, "tenant="+tenant, "slot="+backup.SlotTag(slot))
	Expect(err).NotTo(HaveOccurred())
	out := map[string]int{}
	for _, s := range snaps {
		out[s.Tag("kind")]++
	}
	return out
}

var _ = Describe("Backups of a tenant", Ordered, func() {
	var (
		db        backup.Database
		primary   restic.Repository
		offsite   restic.Repository
		primDir   string
		tmp       string
		day       = 24 * time.Hour
		now       = time.Now().UTC().Truncate(time.Second)
		keep      = 30 * day
		tenant    = "clinic-a"
		todaySlot = now.Truncate(day)
	)

	BeforeAll(func(ctx SpecContext) {
		db = clinicDB(ctx, "tenant_clinic_a")
		tmp = GinkgoT().TempDir()
		primDir = filepath.Join(tmp, "primary", "clinic-a-12345678")
		primary = restic.Repository{Binary: resticBin, URL: primDir, Password: "primary-key"}
		offsite = restic.Repository{Binary: resticBin, URL: restServer.URL + "clinic-a-12345678", Password: "offsite-key"}
	})

	It("creates the primary, and the offsite with a key of its own and the primary's chunker parameters", func(ctx SpecContext) {
		id, created, err := backup.Open(ctx, primary, nil)
		Expect(err).NotTo(HaveOccurred())
		Expect(created).To(BeTrue())
		again, created, err := backup.Open(ctx, primary, nil)
		Expect(err).NotTo(HaveOccurred())
		Expect(created).To(BeFalse())
		Expect(again).To(Equal(id))
		oid, created, err := backup.Open(ctx, offsite, &primary)
		Expect(err).NotTo(HaveOccurred())
		Expect(created).To(BeTrue())
		Expect(oid).NotTo(Equal(id))
		_, err = restic.Repository{Binary: resticBin, URL: offsite.URL, Password: primary.Password}.ID(ctx)
		Expect(restic.IsCode(err, restic.ExitWrongPassword)).To(BeTrue(), "the offsite does not open with the primary's key: %v", err)
	})

	It("takes a slot's snapshot once: the dump with its row counts, and the objects", func(ctx SpecContext) {
		in := backup.SnapshotInput{Tenant: tenant, Slot: todaySlot, Database: db, TempDir: tmp,
			Objects: map[string][]byte{"clinic-a/configmaps/settings.yaml": []byte("kind: ConfigMap\n")}}
		res, err := backup.Snapshot(ctx, primary, in)
		Expect(err).NotTo(HaveOccurred())
		Expect(res.Reused).To(BeFalse())
		Expect(res.Tables).To(Equal(3))
		Expect(res.Rows).To(Equal(int64(20004)))
		Expect(countSlot(ctx, primary, tenant, todaySlot)).To(Equal(map[string]int{"db": 1, "objects": 1}))

		again, err := backup.Snapshot(ctx, primary, in)
		Expect(err).NotTo(HaveOccurred())
		Expect(again.Reused).To(BeTrue())
		Expect(again.DBSnapshot).To(Equal(res.DBSnapshot))
		Expect(countSlot(ctx, primary, tenant, todaySlot)).To(Equal(map[string]int{"db": 1, "objects": 1}))
	})

	It("grows the repository by little when the data did not change", func(ctx SpecContext) {
		before := dirSize(primDir)
		res, err := backup.Snapshot(ctx, primary, backup.SnapshotInput{Tenant: tenant, Slot: todaySlot.Add(time.Hour), Database: db, TempDir: tmp})
		Expect(err).NotTo(HaveOccurred())
		grown := dirSize(primDir) - before
		Expect(float64(grown)).To(BeNumerically("<", 0.05*float64(before)), "grew by %d of %d bytes (dump %d bytes)", grown, before, res.DumpBytes)
	})

	It("records no snapshot when pg_dump fails", func(ctx SpecContext) {
		broken := db
		broken.Name = "no_such_database"
		slot := todaySlot.Add(2 * time.Hour)
		_, err := backup.Snapshot(ctx, primary, backup.SnapshotInput{Tenant: tenant, Slot: slot, Database: broken, TempDir: tmp})
		Expect(err).To(MatchError(ContainSubstring("database dump")))
		// pg_dump's own message usually reaches the error through restic's stderr; under heavy load restic has been
		// seen to report only "unable to save snapshot: no result" (a follow-up: read the helper's stderr itself).
		Expect(err.Error()).To(Or(ContainSubstring("no_such_database"), ContainSubstring("unable to save snapshot")))
		Expect(countSlot(ctx, primary, tenant, slot)).To(BeEmpty())
	})

	It("completes a slot once when the first attempt was killed mid-backup", func(ctx SpecContext) {
		slot := todaySlot.Add(3 * time.Hour)
		kctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		defer cancel()
		_, err := backup.Snapshot(kctx, primary, backup.SnapshotInput{Tenant: tenant, Slot: slot, Database: db, TempDir: tmp})
		Expect(err).To(HaveOccurred())
		Expect(primary.Unlock(ctx)).To(Succeed())
		_, err = backup.Snapshot(ctx, primary, backup.SnapshotInput{Tenant: tenant, Slot: slot, Database: db, TempDir: tmp})
		Expect(err).NotTo(HaveOccurred())
		Expect(countSlot(ctx, primary, tenant, slot)).To(Equal(map[string]int{"db": 1, "objects": 1}))
	})

	It("restores the newest snapshot into a scratch database with the recorded rows, and drops it", func(ctx SpecContext) {
		res, err := backup.Drill(ctx, primary, backup.DrillInput{Tenant: tenant, UID: "uid-a", Role: db.Name, Database: db, TempDir: tmp})
		Expect(err).NotTo(HaveOccurred())
		Expect(res.Differences).To(BeEmpty())
		Expect(res.Tables).To(Equal(3))
		Expect(res.Rows).To(Equal(int64(20004)))
		Expect(res.Duration).To(BeNumerically(">", 0))
		conn, err := admin().ConnectDB(ctx, "")
		Expect(err).NotTo(HaveOccurred())
		defer conn.Close(ctx)
		var n int
		Expect(conn.QueryRow(ctx, "SELECT count(*) FROM pg_database WHERE datname = 'custos_drill_clinic_a'").Scan(&n)).To(Succeed())
		Expect(n).To(BeZero(), "the scratch database is dropped")
	})

	Context("a snapshot taken by hand", func() {
		var (
			repo restic.Repository
			dump []byte
		)
		BeforeAll(func(ctx SpecContext) {
			repo = restic.Repository{Binary: resticBin, URL: filepath.Join(tmp, "by-hand"), Password: "by-hand-key"}
			_, _, err := backup.Open(ctx, repo, nil)
			Expect(err).NotTo(HaveOccurred())
			env, err := db.Conn.LibpqEnv(db.Name, "test", tmp)
			Expect(err).NotTo(HaveOccurred())
			cmd := exec.CommandContext(ctx, pgDump, "--format=plain", "--no-password", "--quote-all-identifiers")
			cmd.Env = append(os.Environ(), env...)
			dump, err = cmd.Output()
			Expect(err).NotTo(HaveOccurred())
		})
		// slot stores stream as the slot's database snapshot and meta as its tables.json, as a version of custos
		// (or a fault) would have left them.
		slot := func(ctx context.Context, tenant string, stream []byte, meta backup.Meta) {
			at := todaySlot
			tags := []string{"tenant=" + tenant, "slot=" + backup.SlotTag(at)}
			file := filepath.Join(tmp, tenant+".sql")
			Expect(os.WriteFile(file, stream, 0o600)).To(Succeed())
			_, err := repo.Backup(ctx, restic.BackupStdin{Filename: backup.DumpFile, Host: tenant, Command: []string{"cat", file},
				Tags: append([]string{"kind=db"}, tags...)})
			Expect(err).NotTo(HaveOccurred())
			metaDir := filepath.Join(tmp, tenant+"-meta")
			Expect(os.MkdirAll(filepath.Join(metaDir, backup.MetaDir), 0o700)).To(Succeed())
			b, err := json.Marshal(meta)
			Expect(err).NotTo(HaveOccurred())
			Expect(os.WriteFile(filepath.Join(metaDir, backup.MetaDir, "tables.json"), b, 0o600)).To(Succeed())
			withDir := repo
			withDir.Dir = metaDir
			_, err = withDir.BackupDir(ctx, tenant, append([]string{"kind=objects"}, tags...), time.Time{}, backup.MetaDir)
			Expect(err).NotTo(HaveOccurred())
		}
		drill := func(ctx context.Context, tenant string) (backup.DrillResult, error) {
			return backup.Drill(ctx, repo, backup.DrillInput{Tenant: tenant, UID: "uid-" + tenant, Role: db.Name, Database: db, TempDir: tmp})
		}

		It("drills a snapshot of the older layout: figures in tables.json, rows hashed with SHA-256, no trailer", func(ctx SpecContext) {
			stats, err := pgdump.FilterWith(bytes.NewReader(dump), io.Discard, pgdump.SHA256)
			Expect(err).NotTo(HaveOccurred())
			slot(ctx, "legacy", dump, backup.Meta{Tenant: "legacy", Slot: todaySlot, DBSnapshot: "unused", Database: db.Name, Stats: &stats})
			res, err := drill(ctx, "legacy")
			Expect(err).NotTo(HaveOccurred())
			Expect(res.Differences).To(BeEmpty())
			Expect(res.Tables).To(Equal(3))
			Expect(res.Rows).To(Equal(int64(20004)))
		})

		It("fails a drill whose dump holds other rows than its figures say", func(ctx SpecContext) {
			stats, err := pgdump.Filter(bytes.NewReader(dump), io.Discard)
			Expect(err).NotTo(HaveOccurred())
			for i := range stats.Tables {
				if stats.Tables[i].Table == `"public"."patients"` { // as pg_dump --quote-all-identifiers names it
					stats.Tables[i].Rows++
				}
			}
			trailer, err := pgdump.Trailer(stats)
			Expect(err).NotTo(HaveOccurred())
			slot(ctx, "forged", append(append([]byte(nil), dump...), trailer...),
				backup.Meta{Tenant: "forged", Slot: todaySlot, Database: db.Name, Checksums: pgdump.XXH3})
			res, err := drill(ctx, "forged")
			Expect(err).NotTo(HaveOccurred())
			Expect(res.Differences).To(ConsistOf(
				`"public"."patients": 20001 rows recorded, 20000 restored`,
				`"public"."patients": 20001 rows recorded, 20000 in the restored database`))
		})

		It("fails a drill whose dump has lost its figures", func(ctx SpecContext) {
			slot(ctx, "cut", dump, backup.Meta{Tenant: "cut", Slot: todaySlot, Database: db.Name, Checksums: pgdump.XXH3})
			_, err := drill(ctx, "cut")
			Expect(err).To(MatchError(ContainSubstring("does not end with the figures recorded at backup time")))
		})
	})

	It("copies the snapshots inside the window offsite, and a second copy adds nothing", func(ctx SpecContext) {
		offered, err := backup.Copy(ctx, primary, offsite, tenant, keep, now, false)
		Expect(err).NotTo(HaveOccurred())
		Expect(offered).To(Equal(6))
		s, _, err := backup.Summarize(ctx, offsite, tenant)
		Expect(err).NotTo(HaveOccurred())
		Expect(s.Count).To(Equal(3))
		_, err = backup.Copy(ctx, primary, offsite, tenant, keep, now, false)
		Expect(err).NotTo(HaveOccurred())
		s2, _, _ := backup.Summarize(ctx, offsite, tenant)
		Expect(s2.Count).To(Equal(3))
	})

	It("expires by the wall clock: back-dated snapshots go, data shrinks, even when the newest itself is old", func(ctx SpecContext) {
		// A former tenant: 12 daily snapshots, the newest 35 days old, all outside a 30-day window.
		old := "former"
		for i := range 12 {
			at := now.Add(-time.Duration(35+i) * day)
			_, err := backup.Snapshot(ctx, primary, backup.SnapshotInput{Tenant: old, Slot: at, At: at, Database: db, TempDir: tmp})
			Expect(err).NotTo(HaveOccurred())
			if i == 0 {
				// Different data each day would be realistic; a changed row is enough to give the prune work.
				conn, err := admin().ConnectDB(ctx, db.Name)
				Expect(err).NotTo(HaveOccurred())
				_, err = conn.Exec(ctx, "UPDATE public.patients SET notes = md5(random()::text) WHERE id % 3 = 0")
				Expect(err).NotTo(HaveOccurred())
				conn.Close(ctx)
			}
		}
		By("an active tenant keeps its newest complete slot, however old, and nothing is forgotten past a guard that refuses")
		refused := errors.New("a legal hold")
		removed, err := backup.Expire(ctx, primary, old, backup.ExpireOptions{KeepWithin: keep, Now: now, KeepNewest: true,
			Guard: func(context.Context) error { return refused }})
		Expect(err).To(MatchError(refused))
		Expect(removed).To(BeZero())
		s, _, err := backup.Summarize(ctx, primary, old)
		Expect(err).NotTo(HaveOccurred())
		Expect(s.Count).To(Equal(12))
		removed, err = backup.Expire(ctx, primary, old, backup.ExpireOptions{KeepWithin: keep, Now: now, KeepNewest: true})
		Expect(err).NotTo(HaveOccurred())
		Expect(removed).To(Equal(22), "11 database and 11 objects snapshots")
		s, _, err = backup.Summarize(ctx, primary, old)
		Expect(err).NotTo(HaveOccurred())
		Expect(s.Count).To(Equal(1))
		Expect(s.Newest).To(BeTemporally("~", now.Add(-35*day), time.Second))

		By("the exit keeps nothing past the window")
		before := dirSize(primDir)
		removed, err = backup.Expire(ctx, primary, old, backup.ExpireOptions{KeepWithin: keep, Now: now})
		Expect(err).NotTo(HaveOccurred())
		Expect(removed).To(Equal(2), "the slot the active tenant kept")
		s, _, err = backup.Summarize(ctx, primary, old)
		Expect(err).NotTo(HaveOccurred())
		Expect(s.Count).To(BeZero())
		Expect(dirSize(primDir)).To(BeNumerically("<", before), "prune removed the data, not just the listing")

		// The current tenant's snapshots are inside the window and stay.
		s, _, _ = backup.Summarize(ctx, primary, tenant)
		Expect(s.Count).To(Equal(3))
	})

	It("never copies a snapshot the window has expired", func(ctx SpecContext) {
		at := now.Add(-40 * day)
		_, err := backup.Snapshot(ctx, primary, backup.SnapshotInput{Tenant: tenant, Slot: at, At: at, Database: db, TempDir: tmp})
		Expect(err).NotTo(HaveOccurred())
		_, err = backup.Copy(ctx, primary, offsite, tenant, keep, now, false)
		Expect(err).NotTo(HaveOccurred())
		Expect(countSlot(ctx, offsite, tenant, at)).To(BeEmpty())
	})
})
