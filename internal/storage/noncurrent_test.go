package storage_test

import (
	"context"
	"fmt"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/custos-io/custos/internal/restic"
	"github.com/custos-io/custos/internal/storage"
	"github.com/custos-io/custos/internal/testharness"
)

var _ = Describe("Deleted versions after an expiry's prune", func() {
	BeforeEach(func(ctx SpecContext) {
		if s3 != nil {
			return
		}
		var err error
		if s3, err = testharness.StartS3Server(ctx); err != nil {
			Skip(fmt.Sprintf("no S3 server: %v", err))
		}
	})

	// expire forgets the oldest snapshot and prunes, as an expiry does.
	expire := func(ctx context.Context, repo restic.Repository) {
		GinkgoHelper()
		snaps, err := repo.Snapshots(ctx)
		Expect(err).NotTo(HaveOccurred())
		Expect(repo.Forget(ctx, []string{snaps[0].ID})).To(Succeed())
	}

	It("deletes the noncurrent versions of what the prune deleted from a versioned bucket, and nothing the repository still uses", func(ctx SpecContext) {
		loc := s3Location(ctx, s3, true)
		name := tenantName("expired")
		repo := newRepo(ctx, loc.repo(name, "key-of-expired"), 3)
		other := newRepo(ctx, loc.repo(tenantName("neighbour"), "key-of-neighbour"), 1)
		neighbourVersions, err := storage.S3Versions(ctx, other)
		Expect(err).NotTo(HaveOccurred())
		live := files(loc.dir(name))
		expire(ctx, repo)
		before, err := storage.S3Versions(ctx, repo)
		Expect(err).NotTo(HaveOccurred())
		Expect(before).To(BeNumerically(">", files(loc.dir(name))), "the prune left the forgotten snapshot's data behind as noncurrent versions")

		got, err := storage.PurgeDeletedVersions(ctx, repo)
		Expect(err).NotTo(HaveOccurred())
		Expect(got.Objects).To(BeNumerically(">", 0))
		Expect(got.Bytes).To(BeNumerically(">=", 900_000), "the 1 MB of the forgotten snapshot")
		Expect(got.Versions).To(BeNumerically(">", got.Objects), "each deleted object's data and its marker")
		n, err := storage.S3Versions(ctx, repo)
		Expect(err).NotTo(HaveOccurred())
		Expect(n).To(Equal(files(loc.dir(name))), "only current versions are left: no old version of the repository is on the server")
		Expect(before - n).To(Equal(got.Versions))
		Expect(files(loc.dir(name))).To(BeNumerically("<", live))

		By("leaving the repository whole: the two snapshots left pass a full check")
		Expect(repo.Check(ctx, "100%")).To(Succeed())
		Expect(snapshotCount(ctx, repo)).To(Equal(2))
		Expect(storage.S3Versions(ctx, other)).To(Equal(neighbourVersions), "another repository in the bucket is untouched")

		By("removing, the next time, only the lock files the check wrote and deleted")
		again, err := storage.PurgeDeletedVersions(ctx, repo)
		Expect(err).NotTo(HaveOccurred())
		Expect(again.Bytes).To(BeNumerically("<", 4096))
		n, err = storage.S3Versions(ctx, repo)
		Expect(err).NotTo(HaveOccurred())
		Expect(n).To(Equal(files(loc.dir(name))))
		Expect(snapshotCount(ctx, repo)).To(Equal(2))
	})

	It("has nothing to do in a bucket without versioning, or at a local repository", func(ctx SpecContext) {
		loc := s3Location(ctx, s3, false)
		repo := newRepo(ctx, loc.repo(tenantName("plain"), "key-of-plain"), 2)
		expire(ctx, repo)
		got, err := storage.PurgeDeletedVersions(ctx, repo)
		Expect(err).NotTo(HaveOccurred())
		Expect(got).To(Equal(storage.DeletedVersions{}))

		l := localLocation()
		local := newRepo(ctx, l.repo("local", "key-of-local"), 2)
		expire(ctx, local)
		got, err = storage.PurgeDeletedVersions(ctx, local)
		Expect(err).NotTo(HaveOccurred())
		Expect(got).To(Equal(storage.DeletedVersions{}))
	})
})
