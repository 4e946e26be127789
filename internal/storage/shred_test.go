package storage_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/custos-io/custos/internal/restic"
	"github.com/custos-io/custos/internal/storage"
	"github.com/custos-io/custos/internal/testharness"
)

// location is where the repositories of a spec live: the base URL restic gets and the directory on disk that
// holds a repository (a local path is its own directory; a rest-server keeps it under <data dir>/<path>).
type location struct {
	base string
	dir  func(name string) string
}

func (l location) url(name string) string { return l.base + "/" + name }

func localLocation() location {
	base := filepath.Join(GinkgoT().TempDir(), "backups")
	return location{base: base, dir: func(name string) string { return filepath.Join(base, name) }}
}

func restLocation(s *testharness.RestServer) location {
	return location{
		base: strings.TrimSuffix(s.URL, "/"),
		dir:  func(name string) string { return filepath.Join(s.Dir, "data", name) },
	}
}

// tenantName is unique within the run: specs share one rest-server.
func tenantName(prefix string) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return prefix + "-" + hex.EncodeToString(b)
}

var (
	day   = 24 * time.Hour
	epoch = time.Date(2031, 5, 17, 9, 30, 0, 0, time.UTC)
)

func fixedClock() time.Time { return epoch }

// newRepo creates a repository with n snapshots of 2 MB of random data each, one a day, the oldest n-1 days
// back.
func newRepo(ctx context.Context, url, password string, n int) restic.Repository {
	repo := restic.Repository{Binary: resticBin, URL: url, Password: password}
	_, err := repo.Init(ctx)
	Expect(err).NotTo(HaveOccurred())
	addSnapshots(ctx, repo, n, 2_000_000)
	return repo
}

func addSnapshots(ctx context.Context, repo restic.Repository, n, size int) {
	now := time.Now().UTC()
	for i := range n {
		_, err := repo.Backup(ctx, restic.BackupStdin{
			Filename: "database.sql", Host: "tenant", Tags: []string{"kind=db"},
			Time:    now.Add(-time.Duration(n-1-i) * day),
			Command: []string{"head", "-c", fmt.Sprint(size), "/dev/urandom"},
		})
		Expect(err).NotTo(HaveOccurred())
	}
}

// files counts the regular files under dir (none when it does not exist).
func files(dir string) int {
	n := 0
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			n++
		}
		return nil
	})
	return n
}

func snapshotCount(ctx context.Context, repo restic.Repository) int {
	s, err := repo.Snapshots(ctx)
	Expect(err).NotTo(HaveOccurred())
	return len(s)
}

func expectNoRepository(ctx context.Context, repo restic.Repository) {
	_, err := repo.ID(ctx)
	Expect(restic.IsCode(err, restic.ExitNoRepository)).To(BeTrue(), "restic must answer exit code 10, got %v", err)
}

// shredSpecs are the specs every backend passes.
func shredSpecs(kind string, newLocation func() location) {
	var loc location
	BeforeEach(func() { loc = newLocation() })

	It("destroys the tenant's repository, verified, and nothing of another tenant's", func(ctx SpecContext) {
		a := newRepo(ctx, loc.url(tenantName("clinic-a")), "key-of-clinic-a", 3)
		a.CacheDir = GinkgoT().TempDir()
		bName := tenantName("clinic-b")
		b := newRepo(ctx, loc.url(bName), "key-of-clinic-b", 2)
		aID, err := a.ID(ctx)
		Expect(err).NotTo(HaveOccurred())
		Expect(snapshotCount(ctx, a)).To(Equal(3)) // fills the cache
		Expect(filepath.Join(a.CacheDir, aID)).To(BeADirectory())
		bID, err := b.ID(ctx)
		Expect(err).NotTo(HaveOccurred())
		bFiles := files(loc.dir(bName))
		aDir := loc.dir(strings.TrimPrefix(a.URL, loc.base+"/"))
		Expect(files(aDir)).To(BeNumerically(">", 5))

		var steps []string
		rep, err := storage.ShredWith(ctx, a, storage.Options{Now: fixedClock, Progress: func(e storage.Event) {
			steps = append(steps, string(e.Step)+e.Type)
		}})
		Expect(err).NotTo(HaveOccurred())
		GinkgoWriter.Printf("report: %+v\n", rep)
		Expect(rep.Backend).To(Equal(kind))
		Expect(rep.Repository).To(Equal(a.URL))
		Expect(rep.RepositoryID).To(Equal(aID))
		Expect(rep.SnapshotsBefore).To(Equal(3))
		Expect(rep.ObjectsDeleted).To(BeNumerically(">", 5))
		Expect(rep.BytesDeleted).To(BeNumerically(">", 6_000_000), "three snapshots of 2 MB of random data")
		Expect(rep.Tool).To(Equal("restic"))
		Expect(rep.ToolVersion).To(MatchRegexp(`^0\.\d+\.\d+`))
		Expect(rep.StartedAt).To(Equal(epoch))
		Expect(rep.CompletedAt).To(Equal(epoch))
		Expect(rep.Method).To(ContainSubstring("forget --prune --max-unused 0 of all 3 snapshots"))
		Expect(rep.Method).To(ContainSubstring("cache removed"))
		Expect(rep.Method).To(HaveSuffix("verified"))
		Expect(rep.Verification).To(ContainSubstring("exits with code 10"))
		Expect(steps).To(Equal([]string{"Inventoried", "Opened", "Pruned", "Deletedconfig", "Deletedkeys", "Verified"}),
			"prune deleted the data packs, the index and the snapshots; the sweep found config and key")

		expectNoRepository(ctx, a)
		Expect(files(aDir)).To(BeZero())
		if kind == "local" {
			Expect(aDir).NotTo(BeAnExistingFile(), "the directory is gone")
		}
		Expect(filepath.Join(a.CacheDir, aID)).NotTo(BeAnExistingFile())
		v, err := storage.VerifyGone(ctx, a)
		Expect(err).NotTo(HaveOccurred())
		Expect(v).To(Equal(rep.Verification))

		again, err := storage.Shred(ctx, a, fixedClock)
		Expect(err).NotTo(HaveOccurred(), "a second shred is a no-op")
		Expect(again.RepositoryID).To(BeEmpty())
		Expect(again.SnapshotsBefore).To(BeZero())
		Expect(again.ObjectsDeleted).To(BeZero())
		Expect(again.Method).To(ContainSubstring("no repository to open (exit code 10)"))

		id, err := b.ID(ctx)
		Expect(err).NotTo(HaveOccurred())
		Expect(id).To(Equal(bID))
		Expect(snapshotCount(ctx, b)).To(Equal(2))
		Expect(files(loc.dir(bName))).To(Equal(bFiles))
		Expect(b.Check(ctx, "100%")).To(Succeed())
	})

	It("verifies a repository that was never created as absent", func(ctx SpecContext) {
		repo := restic.Repository{Binary: resticBin, URL: loc.url(tenantName("never")), Password: "whatever-key"}
		rep, err := storage.Shred(ctx, repo, fixedClock)
		Expect(err).NotTo(HaveOccurred())
		Expect(rep.RepositoryID).To(BeEmpty())
		Expect(rep.ObjectsDeleted).To(BeZero())
		Expect(rep.Verification).To(ContainSubstring("exits with code 10"))
	})

	It("reports an error when stopped after the prune, and the next shred completes", func(ctx SpecContext) {
		repo := newRepo(ctx, loc.url(tenantName("stopped")), "key-of-stopped", 2)
		id, _ := repo.ID(ctx)
		sctx, cancel := context.WithCancel(ctx)
		defer cancel()
		_, err := storage.ShredWith(sctx, repo, storage.Options{Progress: func(e storage.Event) {
			if e.Step == storage.StepPruned {
				cancel()
			}
		}})
		Expect(err).To(MatchError(context.Canceled))
		Expect(snapshotCount(ctx, repo)).To(BeZero(), "the prune ran")

		rep, err := storage.Shred(ctx, repo, fixedClock)
		Expect(err).NotTo(HaveOccurred())
		Expect(rep.RepositoryID).To(Equal(id), "the config was still there")
		expectNoRepository(ctx, repo)
	})

	It("finds no repository after a shred stopped between config and keys, and sweeps the keys", func(ctx SpecContext) {
		name := tenantName("half")
		repo := newRepo(ctx, loc.url(name), "key-of-half", 2)
		sctx, cancel := context.WithCancel(ctx)
		defer cancel()
		_, err := storage.ShredWith(sctx, repo, storage.Options{Progress: func(e storage.Event) {
			if e.Step == storage.StepDeleted && e.Type == "config" {
				cancel()
			}
		}})
		Expect(err).To(HaveOccurred())
		expectNoRepository(ctx, repo)
		Expect(files(filepath.Join(loc.dir(name), "keys"))).To(Equal(1), "the key is left")
		_, err = storage.VerifyGone(ctx, repo)
		var remains *storage.RemainsError
		Expect(errors.As(err, &remains)).To(BeTrue(), "VerifyGone sees the key: %v", err)
		Expect(remains.Objects).To(ConsistOf(HavePrefix("keys/")))

		rep, err := storage.Shred(ctx, repo, fixedClock)
		Expect(err).NotTo(HaveOccurred())
		Expect(rep.RepositoryID).To(BeEmpty())
		Expect(rep.ObjectsDeleted).To(Equal(1))
		Expect(files(loc.dir(name))).To(BeZero())
	})

	It("refuses a repository its password does not open, unless asked, and then verifies", func(ctx SpecContext) {
		name := tenantName("lostkey")
		good := newRepo(ctx, loc.url(name), "the-real-key", 2)
		before := files(loc.dir(name))
		wrong := good
		wrong.Password = "a-wrong-key-0123456789"
		_, err := storage.Shred(ctx, wrong, fixedClock)
		Expect(err).To(MatchError(storage.ErrUnopenable))
		Expect(restic.IsCode(err, restic.ExitWrongPassword)).To(BeTrue())
		Expect(err.Error()).NotTo(ContainSubstring(wrong.Password))
		Expect(files(loc.dir(name))).To(Equal(before), "nothing deleted")
		Expect(snapshotCount(ctx, good)).To(Equal(2))

		rep, err := storage.ShredWith(ctx, wrong, storage.Options{DeleteUnopenable: true})
		Expect(err).NotTo(HaveOccurred())
		Expect(rep.RepositoryID).To(BeEmpty())
		Expect(rep.SnapshotsBefore).To(BeZero(), "unknown: they could not be read")
		Expect(rep.ObjectsDeleted).To(Equal(before))
		Expect(rep.Method).To(ContainSubstring("deleted unread"))
		expectNoRepository(ctx, good)
		Expect(files(loc.dir(name))).To(BeZero())
	})

	It("treats a missing password like a wrong one", func(ctx SpecContext) {
		name := tenantName("nokey")
		good := newRepo(ctx, loc.url(name), "the-real-key", 1)
		before := files(loc.dir(name))
		none := good
		none.Password = ""
		_, err := storage.Shred(ctx, none, nil)
		Expect(err).To(MatchError(storage.ErrUnopenable))
		Expect(files(loc.dir(name))).To(Equal(before), "nothing deleted")

		rep, err := storage.ShredWith(ctx, none, storage.Options{DeleteUnopenable: true})
		Expect(err).NotTo(HaveOccurred())
		Expect(rep.Method).To(ContainSubstring("no password"))
		expectNoRepository(ctx, good)

		again, err := storage.Shred(ctx, none, nil)
		Expect(err).NotTo(HaveOccurred(), "nothing left: verified absent even without a password")
		Expect(again.ObjectsDeleted).To(BeZero())
	})

	It("fails, deleting nothing, while another command holds the repository", func(ctx SpecContext) {
		name := tenantName("busy")
		repo := newRepo(ctx, loc.url(name), "key-of-busy", 1)
		// A backup that takes its time holds a lock of a live process, which restic never takes for stale.
		bctx, stopBackup := context.WithCancel(ctx)
		backup := exec.CommandContext(bctx, resticBin, "--no-cache", "backup", "--stdin-from-command", "--stdin-filename", "slow", "--", "sleep", "120")
		backup.Env = []string{"RESTIC_REPOSITORY=" + repo.URL, "RESTIC_PASSWORD=" + repo.Password, "PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
		backup.Cancel = func() error { return backup.Process.Signal(os.Interrupt) }
		Expect(backup.Start()).To(Succeed())
		defer func() { stopBackup(); _ = backup.Wait() }()
		Eventually(func() int { return files(filepath.Join(loc.dir(name), "locks")) }).WithTimeout(30 * time.Second).Should(Equal(1))
		before := files(loc.dir(name))

		_, err := storage.Shred(ctx, repo, nil)
		Expect(restic.IsCode(err, restic.ExitLocked)).To(BeTrue(), "got %v", err)
		Expect(snapshotCount(ctx, repo)).To(Equal(1))
		Expect(files(loc.dir(name))).To(Equal(before), "nothing deleted")

		stopBackup()
		_ = backup.Wait()
		_, err = storage.Shred(ctx, repo, nil)
		Expect(err).NotTo(HaveOccurred())
		expectNoRepository(ctx, repo)
	})
}

var _ = Describe("Shred of a local repository", func() {
	shredSpecs("local", localLocation)

	It("refuses paths that cannot be a tenant's repository", func(ctx SpecContext) {
		for _, u := range []string{"/", "/srv", "/srv/", "relative/repo", "local:/etc"} {
			_, err := storage.Shred(ctx, restic.Repository{Binary: resticBin, URL: u, Password: "k"}, nil)
			Expect(err).To(HaveOccurred(), u)
			Expect(err.Error()).To(Or(ContainSubstring("top-level"), ContainSubstring("not an absolute path"), ContainSubstring("not supported")), u)
		}
	})

	It("leaves files restic did not write, and says so", func(ctx SpecContext) {
		loc := localLocation()
		name := tenantName("foreign")
		repo := newRepo(ctx, loc.url(name), "key-of-foreign", 1)
		Expect(os.WriteFile(filepath.Join(loc.dir(name), "README"), []byte("not restic's"), 0o600)).To(Succeed())
		rep, err := storage.Shred(ctx, repo, nil)
		Expect(err).NotTo(HaveOccurred())
		Expect(rep.Method).To(ContainSubstring("kept: it holds 1 entries restic does not write (README)"))
		Expect(filepath.Join(loc.dir(name), "README")).To(BeARegularFile())
		Expect(files(loc.dir(name))).To(Equal(1))
	})
})

var _ = Describe("Shred of a repository on a rest-server", func() {
	shredSpecs("rest", func() location { return restLocation(restServer) })

	It("refuses the server's root repository and s3 for now", func(ctx SpecContext) {
		for _, u := range []string{restServer.URL, strings.TrimSuffix(restServer.URL, "/")} {
			_, err := storage.Shred(ctx, restic.Repository{Binary: resticBin, URL: u, Password: "k"}, nil)
			Expect(err).To(MatchError(ContainSubstring("root repository")), u)
		}
		_, err := storage.Shred(ctx, restic.Repository{Binary: resticBin, URL: "s3:https://s3.example/bucket/t", Password: "k"}, nil)
		Expect(err).To(MatchError(storage.ErrUnsupported))
	})

	It("keeps credentials out of reports and errors", func(ctx SpecContext) {
		name := tenantName("creds")
		secret := "pa55-w0rd-in-the-url"
		u := strings.Replace(restLocation(restServer).url(name), "http://", "http://backup-user:"+secret+"@", 1)
		repo := newRepo(ctx, u, "key-of-creds", 1)
		wrong := repo
		wrong.Password = "another-wrong-key"
		_, err := storage.Shred(ctx, wrong, nil)
		Expect(err).To(HaveOccurred())
		Expect(err.Error()).NotTo(ContainSubstring(secret))
		rep, err := storage.Shred(ctx, repo, nil)
		Expect(err).NotTo(HaveOccurred())
		Expect(fmt.Sprintf("%+v", rep)).NotTo(ContainSubstring(secret))
		Expect(fmt.Sprintf("%+v", rep)).NotTo(ContainSubstring("backup-user"))
		Expect(rep.Repository).To(Equal(restLocation(restServer).url(name)))
		expectNoRepository(ctx, repo)
	})

	It("reports an error when the server dies midway, and completes once it is back", func(ctx SpecContext) {
		dir := GinkgoT().TempDir()
		srv := startRestServer(ctx, dir, "")
		defer func() { srv.stop() }()
		name := tenantName("flaky")
		repo := newRepo(ctx, "rest:http://"+srv.addr+"/"+name, "key-of-flaky", 2)
		other := newRepo(ctx, "rest:http://"+srv.addr+"/"+tenantName("steady"), "key-of-steady", 1)

		_, err := storage.ShredWith(ctx, repo, storage.Options{Progress: func(e storage.Event) {
			if e.Step == storage.StepPruned {
				srv.stop()
			}
		}})
		Expect(err).To(MatchError(ContainSubstring("connection refused")))

		srv = startRestServer(ctx, dir, srv.addr)
		rep, err := storage.Shred(ctx, repo, fixedClock)
		Expect(err).NotTo(HaveOccurred())
		Expect(rep.RepositoryID).NotTo(BeEmpty(), "the config survived the first attempt")
		Expect(files(filepath.Join(dir, name))).To(BeZero())
		Expect(rep.Method).To(ContainSubstring("HTTP 405"), "rest-server keeps the empty directories")
		Expect(snapshotCount(ctx, other)).To(Equal(1))
	})
})

// ownRestServer is a rest-server a spec can kill and start again on the same directory and port.
type ownRestServer struct {
	addr string
	cmd  *exec.Cmd
}

func startRestServer(ctx context.Context, dir, addr string) *ownRestServer {
	bin, err := testharness.Tool("rest-server")
	Expect(err).NotTo(HaveOccurred())
	if addr == "" {
		port, err := testharness.FreePort()
		Expect(err).NotTo(HaveOccurred())
		addr = fmt.Sprintf("127.0.0.1:%d", port)
	}
	cmd := exec.Command(bin, "--path", dir, "--listen", addr, "--no-auth")
	cmd.Stdout, cmd.Stderr = GinkgoWriter, GinkgoWriter
	Expect(cmd.Start()).To(Succeed())
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	Expect(testharness.WaitForPort(wctx, addr)).To(Succeed())
	return &ownRestServer{addr: addr, cmd: cmd}
}

func (s *ownRestServer) stop() {
	if s.cmd.ProcessState == nil {
		_ = s.cmd.Process.Kill()
		_ = s.cmd.Wait()
	}
}
