package restic

import (
	"errors"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

// Recorded from restic 0.18.1 (bin/restic) backing up to a rest-server that was killed mid-backup and, in the
// second recording, started again three seconds later.
const (
	recordedSaveRetry  = `Save(<data/75a2551384>) returned error, retrying after 805.111612ms: Post "http://:***@127.0.0.1:18123/r/data/75a25513847a04f8f434e87f7662964f246cc79886340028ebd61d3989d839fe": dial tcp 127.0.0.1:18123: connect: connection refused`
	recordedSaveRetry2 = `Save(<data/e6f24e620f>) returned error, retrying after 1.368133382s: Post "http://:***@127.0.0.1:18123/r/data/e6f24e620fca56734698f0037006dbd150cea3df2b069406218f3e6bb9e97009": dial tcp 127.0.0.1:18123: connect: connection refused`
	recordedStatRetry  = `Stat(<config/>) returned error, retrying after 997.079231ms: Head "http://:***@127.0.0.1:18123/r/config": dial tcp 127.0.0.1:18123: connect: connection refused`
	recordedSuccess    = `Save(<data/75a2551384>) operation successful after 2 retries`
)

var _ = Describe("restic's retry lines", func() {
	It("are recognised, with the operation and the error", func() {
		ev, ok := ParseRetryLine(recordedSaveRetry)
		Expect(ok).To(BeTrue())
		Expect(ev).To(Equal(RetryEvent{Op: "Save(<data/75a2551384>)", Failed: true,
			Err: `Post "http://:***@127.0.0.1:18123/r/data/75a25513847a04f8f434e87f7662964f246cc79886340028ebd61d3989d839fe": dial tcp 127.0.0.1:18123: connect: connection refused`}))
		ev, ok = ParseRetryLine(recordedStatRetry)
		Expect(ok).To(BeTrue())
		Expect(ev.Op).To(Equal("Stat(<config/>)"))
		ev, ok = ParseRetryLine(recordedSuccess)
		Expect(ok).To(BeTrue())
		Expect(ev).To(Equal(RetryEvent{Op: "Save(<data/75a2551384>)"}))
		for _, other := range []string{"", `{"message_type":"exit_error","code":1,"message":"Fatal: …"}`,
			"repo already locked, waiting up to 10m0s for the lock", "pg_dump: error: connection to server failed"} {
			_, ok := ParseRetryLine(other)
			Expect(ok).To(BeFalse(), other)
		}
	})
})

var _ = Describe("Watching restic for a backend that keeps failing", func() {
	var (
		now     time.Time
		stopped []error
		w       *stallWatch
	)
	at := func(d time.Duration) { now = time.Date(2026, 11, 23, 3, 0, 0, 0, time.UTC).Add(d) }
	write := func(lines ...string) {
		_, err := w.Write([]byte(strings.Join(lines, "\n") + "\n"))
		Expect(err).NotTo(HaveOccurred())
	}
	BeforeEach(func() {
		at(0)
		stopped = nil
		w = newStallWatch(2*time.Minute, func() time.Time { return now }, func(err error) { stopped = append(stopped, err) })
	})

	It("stops the command once one operation has failed for the limit, naming it", func() {
		write(recordedSaveRetry, recordedSaveRetry2)
		at(time.Minute)
		write(recordedSaveRetry2)
		w.check()
		Expect(stopped).To(BeEmpty())
		at(2*time.Minute - time.Millisecond)
		w.check()
		Expect(stopped).To(BeEmpty(), "just under the limit")
		at(2 * time.Minute)
		w.check()
		Expect(stopped).To(HaveLen(1))
		var st *BackendStalled
		Expect(errors.As(stopped[0], &st)).To(BeTrue())
		Expect(st.Op).To(Equal("Save(<data/75a2551384>)"), "the first of the two, by name, as both failed as long")
		Expect(st.For).To(Equal(2 * time.Minute))
		Expect(st.Error()).To(And(ContainSubstring("kept failing for 2m0s"), ContainSubstring("connection refused")))
		Expect(w.Stalled()).To(Equal(st))

		By("stopping once")
		at(5 * time.Minute)
		write(recordedSaveRetry)
		w.check()
		Expect(stopped).To(HaveLen(1))
	})

	It("forgets an operation that succeeded after retries: a short outage stops nothing", func() {
		write(recordedSaveRetry)
		at(90 * time.Second)
		write(recordedSuccess)
		at(3 * time.Minute)
		w.check()
		Expect(stopped).To(BeEmpty())
		Expect(w.Stalled()).To(BeNil())

		By("counting a new failure of the same operation from its own start")
		write(recordedSaveRetry)
		at(4*time.Minute + 59*time.Second)
		w.check()
		Expect(stopped).To(BeEmpty())
		at(5 * time.Minute)
		write(recordedSaveRetry)
		Expect(stopped).To(HaveLen(1), "a retry line past the limit stops it without waiting for the ticker")
	})

	It("sees a line split across writes as one", func() {
		half := len(recordedStatRetry) / 2
		_, _ = w.Write([]byte("open repository\n" + recordedStatRetry[:half]))
		_, _ = w.Write([]byte(recordedStatRetry[half:] + "\n"))
		at(2 * time.Minute)
		w.check()
		Expect(stopped).To(HaveLen(1), "the split line was seen as one")
		Expect(w.Stalled().Op).To(Equal("Stat(<config/>)"))
	})

	It("gives a restic error the Unreachable reason and the stall behind it", func() {
		st := &BackendStalled{Op: "Stat(<config/>)", For: 3 * time.Minute, Limit: 3 * time.Minute, Err: "connection refused"}
		var err error = &Error{Command: "snapshots", Code: 130, Message: st.Error(), Stalled: st}
		var re *Error
		Expect(errors.As(err, &re)).To(BeTrue())
		Expect(re.Reason()).To(Equal("Unreachable"))
		var got *BackendStalled
		Expect(errors.As(err, &got)).To(BeTrue())
		Expect(got).To(BeIdenticalTo(st))
	})
})
