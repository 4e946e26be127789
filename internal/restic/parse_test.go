package restic

import (
	"os"
	"path/filepath"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

func testdata(name string) []byte {
	b, err := os.ReadFile(filepath.Join("testdata", name))
	Expect(err).NotTo(HaveOccurred())
	return b
}

// The files in testdata were recorded from restic 0.18.1 (see testdata/README.md).
var _ = Describe("Parsing restic's recorded output", func() {
	It("reads snapshots with their times, hosts and tags", func() {
		s, err := ParseSnapshots(testdata("snapshots.json"))
		Expect(err).NotTo(HaveOccurred())
		Expect(s).To(HaveLen(2))
		Expect(s[0].Time).To(Equal(time.Date(2026, 8, 1, 1, 30, 0, 0, time.UTC)))
		Expect(s[0].Hostname).To(Equal("t1"))
		Expect(s[0].Tag("tenant")).To(Equal("t1"))
		Expect(s[0].Tag("kind")).To(Equal("db"))
		Expect(s[0].Tag("absent")).To(BeEmpty())
		Expect(s[0].ID).To(HaveLen(64))
		Expect(s[1].Time.After(s[0].Time)).To(BeTrue())
	})
	It("finds the backup summary after the status lines", func() {
		sum, err := ParseBackup(testdata("backup.jsonl"))
		Expect(err).NotTo(HaveOccurred())
		Expect(sum.SnapshotID).To(HaveLen(64))
		Expect(sum.TotalBytesProcessed).To(Equal(int64(4)))
		Expect(sum.FilesNew).To(Equal(1))
	})
	It("refuses backup output without a summary", func() {
		_, err := ParseBackup([]byte(`{"message_type":"status","percent_done":0}` + "\n"))
		Expect(err).To(MatchError(ContainSubstring("no summary")))
	})
	It("reads the repository id from init and from the config", func() {
		a, err := ParseInit(testdata("init.json"))
		Expect(err).NotTo(HaveOccurred())
		b, err := ParseConfigID(testdata("config.json"))
		Expect(err).NotTo(HaveOccurred())
		Expect(a).To(Equal(b))
		Expect(a).To(MatchRegexp(`^[0-9a-f]{64}$`))
	})
	It("reads restic's message from its JSON exit error", func() {
		Expect(ParseExitError(testdata("wrong-password.stderr"))).To(Equal("Fatal: wrong password or no key found"))
		Expect(ParseExitError(testdata("no-repo.stderr"))).To(HavePrefix("Fatal: repository does not exist"))
		Expect(ParseExitError([]byte("some text\nlast line\n"))).To(Equal("last line"))
	})
	It("maps exit codes to reasons a person understands", func() {
		Expect((&Error{Code: ExitNoRepository}).Reason()).To(Equal("RepositoryNotFound"))
		Expect((&Error{Code: ExitLocked}).Reason()).To(Equal("RepositoryLocked"))
		Expect((&Error{Code: ExitWrongPassword}).Reason()).To(Equal("WrongRepositoryPassword"))
		Expect((&Error{Code: ExitPartial}).Reason()).To(Equal("PartialBackup"))
		Expect((&Error{Code: ExitFatal}).Reason()).To(Equal("ResticFailed"))
	})
	It("shows that restic's own --keep-within counts from the newest snapshot, not from now", func() {
		// With a fresh snapshot present, the months-old one is removed (window measured from the newest = now)...
		fresh, err := ParseForgetDryRun(testdata("forget-keep-within.json"))
		Expect(err).NotTo(HaveOccurred())
		Expect(fresh.Keep).To(HaveLen(1))
		Expect(fresh.Remove).To(HaveLen(1))
		// ...but when every snapshot is old (a former tenant: no new backups), restic keeps them all, however old.
		// custos therefore chooses what to forget itself, from the wall clock, and forgets those by id.
		stale, err := ParseForgetDryRun(testdata("forget-keep-within-stale.json"))
		Expect(err).NotTo(HaveOccurred())
		Expect(stale.Keep).To(HaveLen(2))
		Expect(stale.Remove).To(BeEmpty())
	})
})
