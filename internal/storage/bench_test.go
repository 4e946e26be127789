package storage_test

import (
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/custos-io/custos/internal/restic"
	"github.com/custos-io/custos/internal/storage"
)

// The time to shred a tenant with 90 daily snapshots at two locations (a local primary and a rest-server offsite
// filled by restic copy, as the backup controller does). Building the repositories takes a few minutes, so the
// spec runs only with CUSTOS_BENCH_SHRED=1:
//
//	CUSTOS_BENCH_SHRED=1 go test ./internal/storage/ -ginkgo.label-filter=bench -ginkgo.v
var _ = Describe("Shred benchmark", Label("bench"), func() {
	It("shreds a tenant with 90 snapshots at two locations", func(ctx SpecContext) {
		if os.Getenv("CUSTOS_BENCH_SHRED") == "" {
			Skip("set CUSTOS_BENCH_SHRED=1 to run")
		}
		const snapshots = 90
		tmp := GinkgoT().TempDir()
		// Each day's dump: 4 MB that never change (they deduplicate) and 300 kB of new data.
		base := filepath.Join(tmp, "unchanged")
		Expect(os.WriteFile(base, randomBytes(4<<20), 0o600)).To(Succeed())
		name := tenantName("bench")
		primary := restic.Repository{Binary: resticBin, URL: filepath.Join(tmp, "primary", name), Password: "primary-key"}
		offsite := restic.Repository{Binary: resticBin, URL: restLocation(restServer).url(name), Password: "offsite-key"}
		_, err := primary.Init(ctx)
		Expect(err).NotTo(HaveOccurred())
		start := time.Now()
		now := time.Now().UTC()
		for i := range snapshots {
			_, err := primary.Backup(ctx, restic.BackupStdin{
				Filename: "database.sql", Host: name, Tags: []string{"kind=db"},
				Time:    now.Add(-time.Duration(snapshots-1-i) * day),
				Command: []string{"sh", "-c", fmt.Sprintf("cat %s; head -c 300000 /dev/urandom", base)},
			})
			Expect(err).NotTo(HaveOccurred())
		}
		_, err = offsite.InitCopyOf(ctx, primary)
		Expect(err).NotTo(HaveOccurred())
		snaps, err := primary.Snapshots(ctx)
		Expect(err).NotTo(HaveOccurred())
		var ids []string
		for _, s := range snaps {
			ids = append(ids, s.ID)
		}
		Expect(offsite.Copy(ctx, primary, ids...)).To(Succeed())
		GinkgoWriter.Printf("built %d snapshots at two locations in %s\n", snapshots, time.Since(start).Round(time.Millisecond))

		total := time.Now()
		for _, repo := range []restic.Repository{primary, offsite} {
			t := time.Now()
			rep, err := storage.Shred(ctx, repo, nil)
			Expect(err).NotTo(HaveOccurred())
			Expect(rep.SnapshotsBefore).To(Equal(snapshots))
			AddReportEntry(rep.Backend, fmt.Sprintf("%s: %d snapshots, %d objects, %.1f MB shredded in %s",
				rep.Backend, rep.SnapshotsBefore, rep.ObjectsDeleted, float64(rep.BytesDeleted)/1e6, time.Since(t).Round(time.Millisecond)))
		}
		elapsed := time.Since(total)
		AddReportEntry("tenant", fmt.Sprintf("one tenant, two locations: %s", elapsed.Round(time.Millisecond)))
		Expect(elapsed).To(BeNumerically("<", 30*time.Second))
	})
})

func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}
