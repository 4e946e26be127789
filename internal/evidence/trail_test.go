package evidence

import (
	"errors"
	"fmt"

	g "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

// segmented splits chain(n) into segments of size entries each, linked as the manager links them.
func segmented(n, size int) ([]Segment, TrailHead) {
	c := chain(n)
	var segs []Segment
	for i := 0; i*size < n; i++ {
		s := Segment{SegmentLink: SegmentLink{Number: i + 1, Name: fmt.Sprintf("custos-audit-clinic-0b6f3c2e-%d", i+1)},
			Entries: c[i*size : min((i+1)*size, n)]}
		if i > 0 {
			p := segs[i-1]
			last := p.Entries[len(p.Entries)-1]
			s.PrevName, s.PrevSeq, s.PrevHash = p.Name, last.Seq, last.Hash
		}
		segs = append(segs, s)
	}
	last := segs[len(segs)-1]
	return segs, TrailHead{Segment: last.Number, SegmentName: last.Name, Length: int64(n), Hash: c[n-1].Hash}
}

func trailError(err error) *TrailError {
	var te *TrailError
	ExpectWithOffset(1, errors.As(err, &te)).To(BeTrue(), "want a *TrailError, got %v", err)
	return te
}

var _ = g.Describe("audit trail in linked segments", func() {
	g.It("verifies a whole trail, in any order of its segments, up to its head", func() {
		segs, head := segmented(10, 3)
		segs[0], segs[2] = segs[2], segs[0]
		all, err := VerifyTrail(segs, head)
		Expect(err).NotTo(HaveOccurred())
		Expect(all).To(HaveLen(10))
		Expect(all[9].Hash).To(Equal(head.Hash))
	})

	g.It("reports a deleted middle segment by number, even though the rest of the chain is intact", func() {
		segs, head := segmented(10, 3)
		gone := append(segs[:1:1], segs[2:]...)
		_, err := VerifyTrail(gone, head)
		te := trailError(err)
		Expect(te.Missing).To(Equal([]int{2}))
		Expect(te.Error()).To(ContainSubstring("segment 2 is missing"))

		g.By("and without the head, too: the numbers do not run on")
		_, err = VerifyTrail(gone, TrailHead{})
		Expect(trailError(err).Missing).To(Equal([]int{2}))
	})

	g.It("reports deleted last segments against the head: a shorter intact chain is not the trail", func() {
		segs, head := segmented(10, 3)
		_, err := VerifyTrail(segs[:2], head)
		te := trailError(err)
		Expect(te.Missing).To(Equal([]int{3, 4}))
		Expect(te.Error()).To(ContainSubstring("segments 3 to 4 are missing"))

		g.By("a whole trail deleted, with a head recorded elsewhere")
		_, err = VerifyTrail(nil, head)
		Expect(trailError(err).Missing).To(Equal([]int{1, 2, 3, 4}))
	})

	g.It("reports entries cut from the end of a segment that a later segment links to", func() {
		segs, head := segmented(10, 3)
		segs[1].Entries = segs[1].Entries[:2]
		_, err := VerifyTrail(segs, head)
		Expect(err).To(HaveOccurred())
		Expect(err.Error()).To(ContainSubstring("segment 3"))
		Expect(err.Error()).To(ContainSubstring("entries were removed from its end"))
	})

	g.It("reports entries cut from the end of the last segment against the head", func() {
		segs, head := segmented(10, 3)
		segs[3].Entries = nil
		_, err := VerifyTrail(segs, head)
		Expect(trailError(err).Error()).To(ContainSubstring("ends at entry 9"))
	})

	g.It("accepts entries after the head (the head is written after the segment) but not a head of another trail", func() {
		segs, head := segmented(10, 3)
		behind := head
		behind.Length, behind.Hash = 9, segs[3].Entries[0].Prev
		behind.Segment = 3
		_, err := VerifyTrail(segs, behind)
		Expect(err).NotTo(HaveOccurred())

		forged := head
		forged.Hash = digest("another trail")
		_, err = VerifyTrail(segs, forged)
		Expect(trailError(err).Error()).To(ContainSubstring("replaced"))
	})

	g.It("checks the head's segment alone, as an append does, without reading the others", func() {
		segs, head := segmented(10, 3)
		last, err := VerifyHeadSegment(segs[3], head)
		Expect(err).NotTo(HaveOccurred())
		Expect(last.Seq).To(BeEquivalentTo(10))

		g.By("a head segment whose link does not match its first entry")
		bad := segs[3]
		bad.PrevHash = digest("x")
		_, err = VerifyHeadSegment(bad, head)
		Expect(err).To(HaveOccurred())

		g.By("a head segment that lost the head's entry")
		cut := segs[2]
		cut.Entries = cut.Entries[:2]
		h := head
		h.Segment, h.Length, h.Hash = 3, 9, segs[2].Entries[2].Hash
		_, err = VerifyHeadSegment(cut, h)
		Expect(trailError(err).Error()).To(ContainSubstring("ends at entry 8"))
	})

	g.It("compares the trail with a head recorded in status or a certificate, which may lag but not lead", func() {
		segs, head := segmented(10, 3)
		all, err := VerifyTrail(segs, head)
		Expect(err).NotTo(HaveOccurred())
		Expect(CheckAgainst(head, all, TrailHead{Length: 7, Hash: all[6].Hash}, "status")).To(Succeed())
		Expect(CheckAgainst(head, all, TrailHead{}, "status")).To(Succeed())
		err = CheckAgainst(TrailHead{Length: 6, Hash: all[5].Hash}, all[:6], TrailHead{Length: 7, Hash: all[6].Hash}, "the Tenant's status")
		Expect(trailError(err).Error()).To(And(ContainSubstring("the Tenant's status records entry 7"), ContainSubstring("ends at entry 6")))
		err = CheckAgainst(head, all, TrailHead{Length: 7, Hash: digest("x")}, "status")
		Expect(trailError(err).Error()).To(ContainSubstring("replaced"))
	})
})
