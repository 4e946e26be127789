package restic

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/custos-io/custos/internal/testharness"
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

var _ = Describe("A real restic repository", func() {
	DescribeTable("init, back up a command's output, list, forget by id and prune",
		func(ctx SpecContext, where string) {
			dir := GinkgoT().TempDir()
			url := filepath.Join(dir, "repo")
			if where == "rest" {
				url = restServer.URL + strings.ReplaceAll(CurrentSpecReport().LeafNodeText, " ", "-")
			}
			repo := Repository{Binary: resticBin, URL: url, Password: "tenant-key"}
			id, err := repo.Init(ctx)
			Expect(err).NotTo(HaveOccurred())
			again, err := repo.ID(ctx)
			Expect(err).NotTo(HaveOccurred())
			Expect(again).To(Equal(id))

			By("recording a back-dated snapshot and a current one, each of a command's output")
			old := time.Date(2026, 5, 1, 2, 0, 0, 0, time.UTC)
			// 2 MiB of data that does not deduplicate against the second snapshot, so that pruning frees space.
			sumOld, err := repo.Backup(ctx, BackupStdin{Filename: "db.sql", Host: "clinic", Tags: []string{"tenant=clinic", "kind=db"}, Time: old,
				Command: []string{"sh", "-c", "head -c 2097152 /dev/urandom"}})
			Expect(err).NotTo(HaveOccurred())
			Expect(sumOld.TotalBytesProcessed).To(Equal(int64(2097152)))
			_, err = repo.Backup(ctx, BackupStdin{Filename: "db.sql", Host: "clinic", Tags: []string{"tenant=clinic", "kind=db"},
				Command: []string{"sh", "-c", "echo current"}})
			Expect(err).NotTo(HaveOccurred())
			snaps, err := repo.Snapshots(ctx, "tenant=clinic")
			Expect(err).NotTo(HaveOccurred())
			Expect(snaps).To(HaveLen(2))
			Expect(snaps[0].Time.Equal(old)).To(BeTrue())
			Expect(snaps[0].ID).To(Equal(sumOld.SnapshotID))

			By("failing the backup, and recording no snapshot, when the command fails")
			_, err = repo.Backup(ctx, BackupStdin{Filename: "db.sql", Host: "clinic", Tags: []string{"tenant=clinic"},
				Command: []string{"sh", "-c", "echo partial; exit 3"}})
			Expect(err).To(HaveOccurred())
			after, err := repo.Snapshots(ctx)
			Expect(err).NotTo(HaveOccurred())
			Expect(after).To(HaveLen(2), "a failed dump is never a snapshot")

			By("forgetting the old one by id and pruning its data")
			var before int64
			if where == "local" {
				before = dirSize(url)
			}
			Expect(repo.Forget(ctx, []string{sumOld.SnapshotID})).To(Succeed())
			left, err := repo.Snapshots(ctx)
			Expect(err).NotTo(HaveOccurred())
			Expect(left).To(HaveLen(1))
			Expect(left[0].ID).NotTo(Equal(sumOld.SnapshotID))
			if where == "local" {
				Expect(dirSize(url)).To(BeNumerically("<", before-1<<20), "the 2 MiB of the forgotten snapshot are pruned")
			}
		},
		Entry("in a local directory", "local"),
		Entry("on rest-server", "rest"),
	)

	It("maps a wrong password and a missing repository to their exit codes", func(ctx SpecContext) {
		url := filepath.Join(GinkgoT().TempDir(), "repo")
		_, err := Repository{Binary: resticBin, URL: url, Password: "right"}.Init(ctx)
		Expect(err).NotTo(HaveOccurred())

		_, err = Repository{Binary: resticBin, URL: url, Password: "wrong"}.Snapshots(ctx)
		Expect(IsCode(err, ExitWrongPassword)).To(BeTrue(), "%v", err)
		Expect(err.(*Error).Reason()).To(Equal("WrongRepositoryPassword"))
		Expect(err.Error()).NotTo(ContainSubstring("wrong\""), "the password is not in the message")

		_, err = Repository{Binary: resticBin, URL: url + "-missing", Password: "right"}.Snapshots(ctx)
		Expect(IsCode(err, ExitNoRepository)).To(BeTrue(), "%v", err)
		Expect(err.Error()).To(ContainSubstring("repository does not exist"))
	})

	It("clears a stale lock left by a killed restic, and the next command succeeds", func(ctx SpecContext) {
		url := filepath.Join(GinkgoT().TempDir(), "repo")
		repo := Repository{Binary: resticBin, URL: url, Password: "pw"}
		_, err := repo.Init(ctx)
		Expect(err).NotTo(HaveOccurred())
		// A cancelled context stops restic with SIGINT: it removes its own lock and records no snapshot.
		cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		_, err = repo.Backup(cctx, BackupStdin{Filename: "a", Host: "h", Command: []string{"sleep", "30"}})
		Expect(err).To(HaveOccurred(), "the backup was cancelled")
		locks, _ := os.ReadDir(filepath.Join(url, "locks"))
		Expect(locks).To(BeEmpty(), "an interrupted restic removes its lock")
		snaps, err := repo.Snapshots(ctx)
		Expect(err).NotTo(HaveOccurred())
		Expect(snaps).To(BeEmpty())

		// SIGKILL (an OOM kill, a node lost) while it waits on its command leaves the lock behind.
		cmd := exec.Command(resticBin, "--no-cache", "backup", "--stdin-from-command", "--stdin-filename", "a", "--", "sleep", "30")
		cmd.Env = append(os.Environ(), "RESTIC_REPOSITORY="+url, "RESTIC_PASSWORD=pw")
		Expect(cmd.Start()).To(Succeed())
		// Wait for a complete lock file: restic writes "<id>-tmp-<n>" and renames it, and a kill between the two
		// leaves only the temporary file (no lock at all).
		Eventually(func() []string {
			var done []string
			l, _ := os.ReadDir(filepath.Join(url, "locks"))
			for _, e := range l {
				if !strings.Contains(e.Name(), "-tmp-") {
					done = append(done, e.Name())
				}
			}
			return done
		}, 10*time.Second).ShouldNot(BeEmpty())
		Expect(cmd.Process.Kill()).To(Succeed())
		_ = cmd.Wait()
		locks, _ = os.ReadDir(filepath.Join(url, "locks"))
		Expect(locks).NotTo(BeEmpty(), "the killed restic left its lock")
		Expect(repo.Unlock(ctx)).To(Succeed())
		locks, _ = os.ReadDir(filepath.Join(url, "locks"))
		Expect(locks).To(BeEmpty())
		_, err = repo.Backup(ctx, BackupStdin{Filename: "a", Host: "h", Command: []string{"echo", "ok"}})
		Expect(err).NotTo(HaveOccurred())
	})
})

// A backend that goes away under a running command: restic itself retries for 15 minutes; with
// BackendRetryLimit custos stops it after the limit, and lets a shorter outage pass.
var _ = Describe("A backend that stops answering under a running restic", func() {
	var srv *testharness.RestServer
	BeforeEach(func(ctx SpecContext) {
		var err error
		srv, err = testharness.StartRestServer(ctx)
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(srv.Stop)
	})
	// backupWithOutage starts a backup whose command prints 4 MiB, pauses a second, then prints 64 MiB (restic
	// saves packs as they fill); the server goes down once the backup holds its lock, for outage (forever when 0).
	backupWithOutage := func(ctx SpecContext, repo Repository, outage time.Duration) error {
		GinkgoHelper()
		name := strings.TrimPrefix(repo.URL, srv.URL)
		errc := make(chan error, 1)
		go func() {
			defer GinkgoRecover()
			_, err := repo.Backup(ctx, BackupStdin{Filename: "db.sql", Host: "clinic",
				Command: []string{"sh", "-c", "head -c 4194304 /dev/urandom; sleep 1; head -c 67108864 /dev/urandom"}})
			errc <- err
		}()
		Eventually(func() []os.DirEntry {
			l, _ := os.ReadDir(filepath.Join(srv.Dir, "data", name, "locks"))
			return l
		}).WithTimeout(30 * time.Second).WithPolling(20 * time.Millisecond).ShouldNot(BeEmpty())
		srv.Down()
		if outage > 0 {
			time.Sleep(outage)
			Expect(srv.Up(ctx)).To(Succeed())
		}
		var err error
		Eventually(errc).WithTimeout(3 * time.Minute).Should(Receive(&err))
		return err
	}

	It("is stopped once an operation has failed for the limit, with the reason Unreachable, and records nothing", func(ctx SpecContext) {
		repo := Repository{Binary: resticBin, URL: srv.URL + "gone", Password: "pw", BackendRetryLimit: 3 * time.Second}
		_, err := repo.Init(ctx)
		Expect(err).NotTo(HaveOccurred())

		err = backupWithOutage(ctx, repo, 0)
		var st *BackendStalled
		Expect(errors.As(err, &st)).To(BeTrue(), "%v", err)
		Expect(st.For).To(BeNumerically(">=", 3*time.Second))
		Expect(st.Err).To(ContainSubstring("connection refused"))
		var re *Error
		Expect(errors.As(err, &re)).To(BeTrue())
		Expect(re.Reason()).To(Equal("Unreachable"))
		Expect(err.Error()).To(And(ContainSubstring("restic backup"), ContainSubstring("kept failing"), ContainSubstring(st.Op)))
		Expect(err.Error()).NotTo(ContainSubstring("pw"), "no password in the message")

		By("finding the repository unreachable at open as well, stopped the same way")
		_, err = repo.Snapshots(ctx)
		Expect(errors.As(err, &st)).To(BeTrue(), "%v", err)
		Expect(st.Op).To(HavePrefix("Stat("))

		By("recording no snapshot, and clearing the stopped command's lock once the server is back")
		Expect(srv.Up(ctx)).To(Succeed())
		Expect(repo.Unlock(ctx)).To(Succeed())
		snaps, err := repo.Snapshots(ctx)
		Expect(err).NotTo(HaveOccurred())
		Expect(snaps).To(BeEmpty())
	}, NodeTimeout(5*time.Minute))

	It("lets an outage shorter than the limit pass, and the backup completes", func(ctx SpecContext) {
		repo := Repository{Binary: resticBin, URL: srv.URL + "blip", Password: "pw", BackendRetryLimit: time.Minute}
		_, err := repo.Init(ctx)
		Expect(err).NotTo(HaveOccurred())
		Expect(backupWithOutage(ctx, repo, 4*time.Second)).To(Succeed())
		snaps, err := repo.Snapshots(ctx)
		Expect(err).NotTo(HaveOccurred())
		Expect(snaps).To(HaveLen(1))
	}, NodeTimeout(5*time.Minute))
})
