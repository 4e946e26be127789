package export_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/custos-io/custos/internal/export"
)

func dirEntries(dir string) []string {
	entries, err := os.ReadDir(dir)
	Expect(err).NotTo(HaveOccurred())
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

var _ = Describe("WriteFile", func() {
	It("cancelled in the middle of a table leaves nothing behind, neither at the path nor beside it", func(ctx context.Context) {
		createDatabase(ctx, "tenant_cancel", `CREATE TABLE big AS SELECT g AS id, repeat('x', 100) AS pad FROM generate_series(1, 100000) g;`)
		dir := GinkgoT().TempDir()
		dst := filepath.Join(dir, "cancel.tar")
		cctx, cancel := context.WithCancel(ctx)
		defer cancel()
		var once sync.Once
		defer export.SetChunkHook(func(name string) {
			if strings.HasSuffix(name, "/data/tables/public.big.csv") {
				once.Do(cancel)
			}
		})()
		_, err := export.WriteFile(cctx, dst, export.Input{Conn: admin(), Database: "tenant_cancel", PgDump: pgDump, Now: now})
		Expect(err).To(MatchError(context.Canceled))
		Expect(dirEntries(dir)).To(BeEmpty())
	})

	It("with a context cancelled before it starts, or a failing pg_dump, writes no file", func(ctx context.Context) {
		createDatabase(ctx, "tenant_fail", `CREATE TABLE t (id int); INSERT INTO t VALUES (1);`)
		dir := GinkgoT().TempDir()
		dst := filepath.Join(dir, "fail.tar")
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		_, err := export.WriteFile(cctx, dst, export.Input{Conn: admin(), Database: "tenant_fail", PgDump: pgDump, Now: now})
		Expect(err).To(HaveOccurred())
		Expect(dirEntries(dir)).To(BeEmpty())

		_, err = export.WriteFile(ctx, dst, export.Input{Conn: admin(), Database: "tenant_fail", PgDump: "/bin/false", Now: now})
		Expect(err).To(MatchError(ContainSubstring("pg_dump")))
		Expect(dirEntries(dir)).To(BeEmpty())

		bad := admin()
		bad.Password = "wrong-password-123"
		_, err = export.WriteFile(ctx, dst, export.Input{Conn: bad, Database: "tenant_fail", PgDump: pgDump, Now: now})
		Expect(err).To(HaveOccurred())
		Expect(err.Error()).NotTo(ContainSubstring("wrong-password-123"))
		Expect(dirEntries(dir)).To(BeEmpty())
	})

	It("refuses object paths that would escape data/objects or break a manifest, and a missing Now", func(ctx context.Context) {
		dir := GinkgoT().TempDir()
		for _, p := range []string{"", "/abs.yaml", "../up.yaml", "a/../../b", "a//b", "a\nb", `a\b`, "./a"} {
			_, err := export.WriteFile(ctx, filepath.Join(dir, "x.tar"), export.Input{Objects: []export.Object{{Path: p}}, Now: now})
			Expect(err).To(MatchError(ContainSubstring("object path")), "%q", p)
		}
		_, err := export.WriteFile(ctx, filepath.Join(dir, "x.tar"), export.Input{Objects: []export.Object{{Path: "a"}, {Path: "a"}}, Now: now})
		Expect(err).To(HaveOccurred())
		_, err = export.WriteFile(ctx, filepath.Join(dir, "x.tar"), export.Input{})
		Expect(err).To(MatchError(ContainSubstring("Now")))
		Expect(dirEntries(dir)).To(BeEmpty())
	})

	It("without a database writes a valid bag of the objects alone", func(ctx context.Context) {
		dir := GinkgoT().TempDir()
		dst := filepath.Join(dir, "objects-only.tar")
		res, err := export.WriteFile(ctx, dst, export.Input{Objects: []export.Object{{Path: "ns/a.yaml", Data: []byte("a: 1\n")}},
			Info: export.BagInfo{Tenant: "t"}, Now: now})
		Expect(err).NotTo(HaveOccurred())
		Expect(res.Tables).To(BeEmpty())
		Expect(res.Files).To(Equal(3)) // the object, datapackage.json, README.md
		data, err := os.ReadFile(dst)
		Expect(err).NotTo(HaveOccurred())
		rep, err := export.Verify(bytes.NewReader(data))
		Expect(err).NotTo(HaveOccurred())
		Expect(rep.Problems).To(BeEmpty())
		files, _ := untar(data)
		var dp struct{ Resources []map[string]any }
		Expect(json.Unmarshal(files["objects-only/data/datapackage.json"], &dp)).To(Succeed())
		Expect(dp.Resources).To(HaveLen(1), "a Data Package needs at least one resource")
	})

	It("removes a temporary file an earlier, crashed WriteFile to the same path left behind", func(ctx context.Context) {
		dir := GinkgoT().TempDir()
		stale := filepath.Join(dir, ".crash.tar.partial-123456")
		Expect(os.WriteFile(stale, []byte("half a bag"), 0o600)).To(Succeed())
		other := filepath.Join(dir, ".other.tar.partial-1")
		Expect(os.WriteFile(other, nil, 0o600)).To(Succeed())
		_, err := export.WriteFile(ctx, filepath.Join(dir, "crash.tar"), export.Input{Objects: []export.Object{{Path: "a.yaml"}}, Now: now})
		Expect(err).NotTo(HaveOccurred())
		Expect(dirEntries(dir)).To(ConsistOf(".other.tar.partial-1", "crash.tar"))
	})

	It("exports a table without columns", func(ctx context.Context) {
		createDatabase(ctx, "tenant_nocols", `CREATE TABLE nocols (); INSERT INTO nocols DEFAULT VALUES; INSERT INTO nocols DEFAULT VALUES;`)
		dst := filepath.Join(GinkgoT().TempDir(), "nocols.tar")
		res, err := export.WriteFile(ctx, dst, export.Input{Conn: admin(), Database: "tenant_nocols", PgDump: pgDump, Now: now})
		Expect(err).NotTo(HaveOccurred())
		Expect(res.Tables).To(HaveLen(1))
		Expect(res.Tables[0].Rows).To(Equal(int64(2)))
		data, err := os.ReadFile(dst)
		Expect(err).NotTo(HaveOccurred())
		files, _ := untar(data)
		Expect(string(files["nocols/data/tables/public.nocols.csv"])).To(Equal("\n\n\n"))
	})

	It("reads every table from one snapshot: rows committed while it runs are not in the bag", func(ctx context.Context) {
		createDatabase(ctx, "tenant_snapshot", `
CREATE TABLE a_big AS SELECT g AS id, repeat('x', 100) AS pad FROM generate_series(1, 50000) g;
CREATE TABLE b_small (id int PRIMARY KEY); INSERT INTO b_small VALUES (1), (2);`)
		other, err := admin().ConnectDB(ctx, "tenant_snapshot")
		Expect(err).NotTo(HaveOccurred())
		defer other.Close(ctx)
		var once sync.Once
		var hookErr error
		defer export.SetChunkHook(func(name string) {
			if strings.HasSuffix(name, "/public.a_big.csv") {
				once.Do(func() {
					_, hookErr = other.Exec(ctx, "INSERT INTO public.b_small VALUES (3); DELETE FROM public.b_small WHERE id = 1; CREATE TABLE public.c_late (x int)")
				})
			}
		})()
		dst := filepath.Join(GinkgoT().TempDir(), "snap.tar")
		res, err := export.WriteFile(ctx, dst, export.Input{Conn: admin(), Database: "tenant_snapshot", PgDump: pgDump, Now: now})
		Expect(err).NotTo(HaveOccurred())
		Expect(hookErr).NotTo(HaveOccurred())
		data, err := os.ReadFile(dst)
		Expect(err).NotTo(HaveOccurred())
		files, _ := untar(data)
		Expect(string(files["snap/data/tables/public.b_small.csv"])).To(Equal("id\n1\n2\n"))
		Expect(string(files["snap/data/schema/schema.sql"])).NotTo(ContainSubstring("c_late"))
		Expect(res.Tables).To(HaveLen(2))
	})

	It("keeps memory flat: the peak heap does not grow with the table", func(ctx context.Context) {
		peak := func(db string, rows int) (uint64, int64) {
			createDatabase(ctx, db, fmt.Sprintf(`CREATE TABLE big AS SELECT g AS id, repeat(md5(g::text), 4) AS pad FROM generate_series(1, %d) g;`, rows))
			runtime.GC()
			var max uint64
			var ms runtime.MemStats
			restore := export.SetChunkHook(func(string) {
				runtime.ReadMemStats(&ms)
				if ms.HeapAlloc > max {
					max = ms.HeapAlloc
				}
			})
			defer restore()
			dst := filepath.Join(GinkgoT().TempDir(), db+".tar")
			res, err := export.WriteFile(ctx, dst, export.Input{Conn: admin(), Database: db, PgDump: pgDump, Now: now})
			Expect(err).NotTo(HaveOccurred())
			return max, res.Tables[0].Bytes
		}
		smallPeak, smallBytes := peak("tenant_mem_small", 50000)
		bigPeak, bigBytes := peak("tenant_mem_big", 500000)
		AddReportEntry("peak heap", fmt.Sprintf("%d MB table: %.1f MiB; %d MB table: %.1f MiB",
			smallBytes>>20, float64(smallPeak)/(1<<20), bigBytes>>20, float64(bigPeak)/(1<<20)))
		Expect(bigBytes).To(BeNumerically(">", 8*smallBytes))
		Expect(bigPeak).To(BeNumerically("<", smallPeak+16<<20), "ten times the data, no more memory")
		Expect(bigPeak).To(BeNumerically("<", 64<<20))
	})
})
