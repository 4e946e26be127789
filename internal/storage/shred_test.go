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
	env  []string
	// versionsDir, for a versioned S3 bucket, is where the server keeps the repository's old versions.
	versionsDir func(name string) string
}

func (l location) url(name string) string { return l.base + "/" + name }

// repo is the repository name at the location, opened with password.
func (l location) repo(name, password string) restic.Repository {
	return restic.Repository{Binary: resticBin, URL: l.url(name), Password: password, Env: l.env}
}

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

// newRepo creates the repository with n snapshots of 1 MB of random data each, one a day, the oldest n-1 days
// back.
func newRepo(ctx context.Context, repo restic.Repository, n int) restic.Repository {
	_, err := repo.Init(ctx)
	Expect(err).NotTo(HaveOccurred())
	addSnapshots(ctx, repo, n, 1_000_000)
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

// deletedSteps are the steps after the prune: what the sweep deletes, then the verification. After a prune of
// every snapshot only config and keys are left, except where deleted objects leave versions behind.
func deletedSteps(kind string) []any {
	if kind == "s3 versioned" {
		return []any{"Deleteddata", "Deletedindex", "Deletedsnapshots", "Deletedconfig", "Deletedkeys", "Deletedlocks", "Verified"}
	}
	return []any{"Deletedconfig", "Deletedkeys", "Verified"}
}

func expectNoRepository(ctx context.Context, repo restic.Repository) {
	_, err := repo.ID(ctx)
	Expect(restic.IsCode(err, restic.ExitNoRepository)).To(BeTrue(), "restic must answer exit code 10, got %v", err)
}

// shredSpecs are the specs every backend passes.
func shredSpecs(kind string, newLocation func(ctx context.Context) location) {
	var loc location
	BeforeEach(func(ctx SpecContext) { loc = newLocation(ctx) })

	It("destroys the tenant's repository, verified, and nothing of another tenant's", func(ctx SpecContext) {
		aName := tenantName("clinic-a")
		a := newRepo(ctx, loc.repo(aName, "key-of-clinic-a"), 3)
		a.CacheDir = GinkgoT().TempDir()
		bName := tenantName("clinic-b")
		b := newRepo(ctx, loc.repo(bName, "key-of-clinic-b"), 2)
		aID, err := a.ID(ctx)
		Expect(err).NotTo(HaveOccurred())
		Expect(snapshotCount(ctx, a)).To(Equal(3)) // fills the cache
		Expect(filepath.Join(a.CacheDir, aID)).To(BeADirectory())
		bID, err := b.ID(ctx)
		Expect(err).NotTo(HaveOccurred())
		bFiles := files(loc.dir(bName))
		aDir := loc.dir(aName)
		Expect(files(aDir)).To(BeNumerically(">=", 5))

		var steps []string
		rep, err := storage.ShredWith(ctx, a, storage.Options{Now: fixedClock, Progress: func(e storage.Event) {
			steps = append(steps, string(e.Step)+e.Type)
		}})
		Expect(err).NotTo(HaveOccurred())
		GinkgoWriter.Printf("report: %+v\n", rep)
		Expect(kind).To(HavePrefix(rep.Backend))
		Expect(rep.Repository).To(Equal(a.URL))
		Expect(rep.RepositoryID).To(Equal(aID))
		Expect(rep.SnapshotsBefore).To(Equal(3))
		Expect(rep.ObjectsDeleted).To(BeNumerically(">=", 5))
		Expect(rep.BytesDeleted).To(BeNumerically(">", 3_000_000), "three snapshots of 1 MB of random data")
		Expect(rep.Tool).To(Equal("restic"))
		Expect(rep.ToolVersion).To(MatchRegexp(`^0\.\d+\.\d+`))
		Expect(rep.StartedAt).To(Equal(epoch))
		Expect(rep.CompletedAt).To(Equal(epoch))
		Expect(rep.Method).To(ContainSubstring("forget --prune --max-unused 0 of all 3 snapshots"))
		Expect(rep.Method).To(ContainSubstring("cache removed"))
		Expect(rep.Method).To(HaveSuffix("verified"))
		Expect(rep.Verification).To(ContainSubstring("exits with code 10"))
		Expect(steps).To(HaveExactElements(append([]any{"Inventoried", "Opened", "Pruned"}, deletedSteps(kind)...)...),
			"prune deleted the data packs, the index and the snapshots; the sweep deleted what was left, config before keys")

		expectNoRepository(ctx, a)
		Expect(files(aDir)).To(BeZero())
		if kind == "local" {
			Expect(aDir).NotTo(BeAnExistingFile(), "the directory is gone")
		}
		Expect(filepath.Join(a.CacheDir, aID)).NotTo(BeAnExistingFile())
		if loc.versionsDir != nil {
			Expect(files(loc.versionsDir(aName))).To(BeZero(), "no noncurrent version is left")
		}
		v, err := storage.VerifyGone(ctx, a)
		Expect(err).NotTo(HaveOccurred())
		Expect(v).To(Equal(rep.Verification))

		again, err := storage.Shred(ctx, a, fixedClock)
		Expect(err).NotTo(HaveOccurred(), "a second shred is a no-op")
		Expect(again.RepositoryID).To(BeEmpty())
		Expect(again.SnapshotsBefore).To(BeZero())
		Expect(again.ObjectsDeleted).To(BeZero())
		Expect(again.Method).To(ContainSubstring("no repository to open (exit code 10)"))

		Expect(files(loc.dir(bName))).To(Equal(bFiles), "not a file of the other tenant touched")
		id, err := b.ID(ctx)
		Expect(err).NotTo(HaveOccurred())
		Expect(id).To(Equal(bID))
		Expect(snapshotCount(ctx, b)).To(Equal(2))
		Expect(b.Check(ctx, "100%")).To(Succeed())
	})

	It("verifies a repository that was never created as absent", func(ctx SpecContext) {
		repo := loc.repo(tenantName("never"), "whatever-key")
		rep, err := storage.Shred(ctx, repo, fixedClock)
		Expect(err).NotTo(HaveOccurred())
		Expect(rep.RepositoryID).To(BeEmpty())
		Expect(rep.ObjectsDeleted).To(BeZero())
		Expect(rep.Verification).To(ContainSubstring("exits with code 10"))
	})

	It("reports an error when stopped after the prune, and the next shred completes", func(ctx SpecContext) {
		repo := newRepo(ctx, loc.repo(tenantName("stopped"), "key-of-stopped"), 2)
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
		repo := newRepo(ctx, loc.repo(name, "key-of-half"), 2)
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
		Expect(remains.Objects).To(ContainElement(HavePrefix("keys/")))
		Expect(remains.Objects).NotTo(ContainElement(HavePrefix("config")))

		rep, err := storage.Shred(ctx, repo, fixedClock)
		Expect(err).NotTo(HaveOccurred())
		Expect(rep.RepositoryID).To(BeEmpty())
		Expect(rep.ObjectsDeleted).To(BeNumerically(">=", 1))
		Expect(files(loc.dir(name))).To(BeZero())
	})

	It("refuses a repository its password does not open, unless asked, and then verifies", func(ctx SpecContext) {
		name := tenantName("lostkey")
		good := newRepo(ctx, loc.repo(name, "the-real-key"), 2)
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
		Expect(rep.ObjectsDeleted).To(BeNumerically(">=", before))
		Expect(rep.Method).To(ContainSubstring("deleted unread"))
		expectNoRepository(ctx, good)
		Expect(files(loc.dir(name))).To(BeZero())
	})

	It("treats a missing password like a wrong one", func(ctx SpecContext) {
		name := tenantName("nokey")
		good := newRepo(ctx, loc.repo(name, "the-real-key"), 1)
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
		repo := newRepo(ctx, loc.repo(name, "key-of-busy"), 1)
		// A backup that takes its time holds a lock of a live process, which restic never takes for stale.
		locks := func() int { return files(filepath.Join(loc.dir(name), "locks")) }
		locksBefore := locks()
		bctx, stopBackup := context.WithCancel(ctx)
		backup := exec.CommandContext(bctx, resticBin, "--no-cache", "backup", "--stdin-from-command", "--stdin-filename", "slow", "--", "sleep", "120")
		backup.Env = append([]string{"RESTIC_REPOSITORY=" + repo.URL, "RESTIC_PASSWORD=" + repo.Password, "PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}, repo.Env...)
		backup.Cancel = func() error { return backup.Process.Signal(os.Interrupt) }
		Expect(backup.Start()).To(Succeed())
		defer func() { stopBackup(); _ = backup.Wait() }()
		Eventually(locks).WithTimeout(30 * time.Second).Should(BeNumerically(">", locksBefore))
		// The failed attempt writes and removes a lock of its own (in a versioned bucket the removal leaves a
		// version behind): the rest is what must stay.
		before := files(loc.dir(name)) - files(filepath.Join(loc.dir(name), "locks"))

		_, err := storage.Shred(ctx, repo, nil)
		Expect(restic.IsCode(err, restic.ExitLocked)).To(BeTrue(), "got %v", err)
		Expect(snapshotCount(ctx, repo)).To(Equal(1))
		Expect(files(loc.dir(name))-files(filepath.Join(loc.dir(name), "locks"))).To(Equal(before), "nothing deleted")

		stopBackup()
		_ = backup.Wait()
		_, err = storage.Shred(ctx, repo, nil)
		Expect(err).NotTo(HaveOccurred())
		expectNoRepository(ctx, repo)
	})
}

var _ = Describe("Shred of a local repository", func() {
	shredSpecs("local", func(context.Context) location { return localLocation() })

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
		repo := newRepo(ctx, loc.repo(name, "key-of-foreign"), 1)
		Expect(os.WriteFile(filepath.Join(loc.dir(name), "README"), []byte("not restic's"), 0o600)).To(Succeed())
		rep, err := storage.Shred(ctx, repo, nil)
		Expect(err).NotTo(HaveOccurred())
		Expect(rep.Method).To(ContainSubstring("kept: it holds 1 entries restic does not write (README)"))
		Expect(filepath.Join(loc.dir(name), "README")).To(BeARegularFile())
		Expect(files(loc.dir(name))).To(Equal(1))
	})
})

var _ = Describe("Shred of a repository on a rest-server", func() {
	shredSpecs("rest", func(context.Context) location { return restLocation(restServer) })

	It("refuses the server's root repository, and backends it cannot delete from", func(ctx SpecContext) {
		for _, u := range []string{restServer.URL, strings.TrimSuffix(restServer.URL, "/")} {
			_, err := storage.Shred(ctx, restic.Repository{Binary: resticBin, URL: u, Password: "k"}, nil)
			Expect(err).To(MatchError(ContainSubstring("root repository")), u)
		}
		_, err := storage.Shred(ctx, restic.Repository{Binary: resticBin, URL: "sftp:backup@host:/srv/t", Password: "k"}, nil)
		Expect(err).To(MatchError(storage.ErrUnsupported))
	})

	It("keeps credentials out of reports and errors", func(ctx SpecContext) {
		name := tenantName("creds")
		secret := "pa55-w0rd-in-the-url"
		u := strings.Replace(restLocation(restServer).url(name), "http://", "http://backup-user:"+secret+"@", 1)
		repo := newRepo(ctx, restic.Repository{Binary: resticBin, URL: u, Password: "key-of-creds"}, 1)
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
		flaky := location{base: "rest:http://" + srv.addr}
		repo := newRepo(ctx, flaky.repo(name, "key-of-flaky"), 2)
		other := newRepo(ctx, flaky.repo(tenantName("steady"), "key-of-steady"), 1)

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

// location is a new bucket on the server.
func s3Location(ctx context.Context, s *testharness.S3Server, versioned bool) location {
	bucket := tenantName("bucket")
	loc := location{
		base: s.Endpoint + "/" + bucket,
		dir:  func(name string) string { return filepath.Join(s.Root, bucket, name) },
		env:  s.Env(),
	}
	Expect(storage.CreateS3Bucket(ctx, loc.base, loc.env, versioned)).To(Succeed())
	if versioned {
		loc.versionsDir = func(name string) string { return filepath.Join(s.Versions, bucket, name) }
	}
	return loc
}

var s3 *testharness.S3Server

var _ = Describe("Shred of a repository in S3", func() {
	BeforeEach(func(ctx SpecContext) {
		if s3 != nil {
			return
		}
		var err error
		if s3, err = testharness.StartS3Server(ctx); err != nil {
			Skip(fmt.Sprintf("no S3 server: %v", err))
		}
	})

	Context("in a bucket without versioning", func() {
		shredSpecs("s3", func(ctx context.Context) location { return s3Location(ctx, s3, false) })
	})

	Context("in a bucket with versioning", func() {
		shredSpecs("s3 versioned", func(ctx context.Context) location { return s3Location(ctx, s3, true) })

		It("deletes every noncurrent version and delete marker", func(ctx SpecContext) {
			loc := s3Location(ctx, s3, true)
			name := tenantName("versions")
			repo := newRepo(ctx, loc.repo(name, "key-of-versions"), 3)
			// Expiry before the exit: forget and prune, which leave old versions behind in a versioned bucket.
			snaps, err := repo.Snapshots(ctx)
			Expect(err).NotTo(HaveOccurred())
			Expect(repo.Forget(ctx, []string{snaps[0].ID})).To(Succeed())
			n, err := storage.S3Versions(ctx, repo)
			Expect(err).NotTo(HaveOccurred())
			Expect(n).To(BeNumerically(">", files(loc.dir(name))), "deleted objects left versions behind")

			rep, err := storage.Shred(ctx, repo, nil)
			Expect(err).NotTo(HaveOccurred())
			Expect(rep.Method).To(ContainSubstring("bucket versioning Enabled: every version and delete marker deleted"))
			Expect(rep.Verification).To(ContainSubstring("no version and no delete marker"))
			Expect(storage.S3Versions(ctx, repo)).To(BeZero())
			Expect(files(loc.versionsDir(name))).To(BeZero())
		})
	})

	It("refuses a whole bucket", func(ctx SpecContext) {
		for _, u := range []string{s3.Endpoint + "/bucket", s3.Endpoint + "/bucket/", "s3:s3.example.com/bucket"} {
			_, err := storage.Shred(ctx, restic.Repository{Binary: resticBin, URL: u, Password: "k", Env: s3.Env()}, nil)
			Expect(err).To(MatchError(ContainSubstring("whole bucket")), u)
		}
	})

	It("probes a location's bucket with the keys: accepted, refused, a bucket that does not exist", func(ctx SpecContext) {
		loc := s3Location(ctx, s3, false)
		Expect(storage.ProbeS3(ctx, loc.base, s3.Env())).To(Succeed())
		Expect(storage.ProbeS3(ctx, loc.base+"/some/prefix", s3.Env())).To(Succeed())
		err := storage.ProbeS3(ctx, s3.Endpoint+"/"+tenantName("not-yet"), s3.Env())
		var ae *storage.S3AccessError
		Expect(errors.As(err, &ae)).To(BeTrue(), "%v", err)
		Expect(ae.MissingBucket()).To(BeTrue())
		Expect(ae.Credentials()).To(BeFalse())

		err = storage.ProbeS3(ctx, loc.base, []string{"AWS_ACCESS_KEY_ID=" + s3.AccessKey, "AWS_SECRET_ACCESS_KEY=not-the-secret-987654"})
		Expect(errors.As(err, &ae)).To(BeTrue(), "%v", err)
		Expect(ae.Credentials()).To(BeTrue())
		Expect(err.Error()).To(ContainSubstring("SignatureDoesNotMatch"))
		Expect(err.Error()).NotTo(ContainSubstring("not-the-secret-987654"))
		err = storage.ProbeS3(ctx, loc.base, []string{"AWS_ACCESS_KEY_ID=nobody", "AWS_SECRET_ACCESS_KEY=x"})
		Expect(errors.As(err, &ae)).To(BeTrue(), "%v", err)
		Expect(ae.Credentials()).To(BeTrue(), "%v", err)

		Expect(storage.ProbeS3(ctx, loc.base+"/../elsewhere", s3.Env())).To(MatchError(ContainSubstring("leaves the bucket")))
		port, err := testharness.FreePort()
		Expect(err).NotTo(HaveOccurred())
		err = storage.ProbeS3(ctx, fmt.Sprintf("s3:http://127.0.0.1:%d/bucket", port), s3.Env())
		Expect(err).To(HaveOccurred())
		Expect(errors.As(err, &ae)).To(BeFalse())
	})

	It("keeps the secret key out of errors", func(ctx SpecContext) {
		loc := s3Location(ctx, s3, false)
		repo := loc.repo(tenantName("badkey"), "k")
		repo.Env = []string{"AWS_ACCESS_KEY_ID=custos-test-key", "AWS_SECRET_ACCESS_KEY=not-the-secret-987654"}
		_, err := storage.Shred(ctx, repo, nil)
		Expect(err).To(MatchError(ContainSubstring("SignatureDoesNotMatch")))
		Expect(err.Error()).NotTo(ContainSubstring("not-the-secret-987654"))
	})
})

var _ = AfterSuite(func() {
	s3.Stop()
})
