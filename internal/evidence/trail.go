package evidence

import (
	"fmt"
	"slices"
	"strings"
)

// A tenant's trail is stored in numbered segments (ConfigMaps in the manager's namespace). The hash chain alone
// proves that no entry was changed, but a reader that stops at the first missing segment sees a shorter, intact
// chain when a segment was deleted, and an appender would continue it: the trail forks. So the segments are also
// linked: each segment after the first names its predecessor and the seq and hash of the predecessor's last entry
// (SegmentLink), and the head of the whole trail (TrailHead: the last segment, the length, the last hash) is kept
// outside the segments (an index ConfigMap, the Tenant's status, a certificate). A trail is whole when its
// segments run 1..N without a gap, each link holds, the chain verifies across them, and it reaches the head.

// SegmentLink is what a segment says about its place in the trail.
type SegmentLink struct {
	// Number counts from 1.
	Number int
	// Name is the segment's own name (the ConfigMap's).
	Name string
	// PrevName, PrevSeq and PrevHash describe the segment before: its name and its last entry. Empty/zero for
	// segment 1 and for segments written before custos linked them (then only the chain links them).
	PrevName string
	PrevSeq  int64
	PrevHash string
}

// Linked reports whether the segment carries a link to its predecessor.
func (l SegmentLink) Linked() bool { return l.PrevHash != "" }

// Segment is one stored segment: its link and its entries.
type Segment struct {
	SegmentLink
	Entries []Entry
}

// TrailHead is where a trail ends: its last segment and the seq and hash of its last entry. The zero TrailHead is
// an empty trail.
type TrailHead struct {
	Segment     int
	SegmentName string
	Length      int64
	Hash        string
}

// Empty reports whether the head is that of an empty trail.
func (h TrailHead) Empty() bool { return h.Length == 0 }

func (h TrailHead) String() string {
	if h.Empty() {
		return "an empty trail"
	}
	if h.Segment == 0 {
		return fmt.Sprintf("entry %d (hash %s)", h.Length, short(h.Hash))
	}
	return fmt.Sprintf("entry %d (hash %s) in segment %d (%s)", h.Length, short(h.Hash), h.Segment, h.SegmentName)
}

// TrailError says why a trail is not whole. Missing lists the segment numbers known to be missing (empty when the
// break is of another kind).
type TrailError struct {
	Missing []int
	Reason  string
}

func (e *TrailError) Error() string { return "audit trail broken: " + e.Reason }

func trailErr(missing []int, format string, args ...any) *TrailError {
	return &TrailError{Missing: missing, Reason: fmt.Sprintf(format, args...)}
}

func span(from, to int) []int {
	var out []int
	for i := from; i <= to; i++ {
		out = append(out, i)
	}
	return out
}

func segmentsWord(from, to int) string {
	if from == to {
		return fmt.Sprintf("segment %d is", from)
	}
	return fmt.Sprintf("segments %d to %d are", from, to)
}

// VerifySegmentLink checks seg against the segment before it (nil for segment 1): the number follows, the link
// (when the segment carries one) names prev and its last entry, and the first entry continues prev's chain.
// Entries inside the segment are checked by VerifyChainFrom.
func VerifySegmentLink(prev *Segment, seg Segment) error {
	if prev == nil {
		if seg.Number != 1 {
			return trailErr(span(1, seg.Number-1), "%s missing (the first segment found is %d, %s)", segmentsWord(1, seg.Number-1), seg.Number, seg.Name)
		}
		if seg.Linked() {
			return trailErr(nil, "segment 1 (%s) names a predecessor %s", seg.Name, seg.PrevName)
		}
		return nil
	}
	if seg.Number != prev.Number+1 {
		return trailErr(span(prev.Number+1, seg.Number-1), "%s missing (found segment %d, %s, after segment %d, %s)",
			segmentsWord(prev.Number+1, seg.Number-1), seg.Number, seg.Name, prev.Number, prev.Name)
	}
	var last Entry
	if len(prev.Entries) > 0 {
		last = prev.Entries[len(prev.Entries)-1]
	}
	if seg.Linked() {
		if seg.PrevName != "" && seg.PrevName != prev.Name {
			return trailErr(nil, "segment %d (%s) names %s as its predecessor, but segment %d is %s", seg.Number, seg.Name, seg.PrevName, prev.Number, prev.Name)
		}
		if seg.PrevSeq != last.Seq || seg.PrevHash != last.Hash {
			return trailErr(nil, "segment %d (%s) continues after entry %d (hash %s), but segment %d (%s) ends at entry %d (hash %s): entries were removed from its end or it was replaced",
				seg.Number, seg.Name, seg.PrevSeq, short(seg.PrevHash), prev.Number, prev.Name, last.Seq, short(last.Hash))
		}
	}
	return nil
}

// VerifyTrail checks a whole trail: segments (in any order) numbered 1..N without a gap, each linked to the one
// before, one hash chain across them from the genesis, and — when head is not the zero TrailHead — reaching the
// head: no segment after the head's is missing, and the entry at the head's length has the head's hash. Entries
// after the head are allowed (the head is written after the segment, so it may lag by what the last writer
// appended). It returns the entries in order, or a *TrailError / *ChainError.
func VerifyTrail(segs []Segment, head TrailHead) ([]Entry, error) {
	segs = slices.Clone(segs)
	slices.SortStableFunc(segs, func(a, b Segment) int { return a.Number - b.Number })
	for i := 1; i < len(segs); i++ {
		if segs[i].Number == segs[i-1].Number {
			return nil, trailErr(nil, "segment %d is there twice (%s and %s)", segs[i].Number, segs[i-1].Name, segs[i].Name)
		}
	}
	var all []Entry
	for i := range segs {
		var prev *Segment
		if i > 0 {
			prev = &segs[i-1]
		}
		if err := VerifySegmentLink(prev, segs[i]); err != nil {
			return nil, err
		}
		all = append(all, segs[i].Entries...)
	}
	if err := VerifyChain(all); err != nil {
		return nil, err
	}
	if err := ReachesHead(segs, head); err != nil {
		return nil, err
	}
	return all, nil
}

// ReachesHead checks that ordered, linked segments reach head (see VerifyTrail).
func ReachesHead(segs []Segment, head TrailHead) error {
	if head.Empty() {
		return nil
	}
	if len(segs) == 0 {
		return trailErr(span(1, head.Segment), "no segment is there, but the trail's head is %s: the whole trail was deleted", head)
	}
	last := segs[len(segs)-1]
	if last.Number < head.Segment {
		return trailErr(span(last.Number+1, head.Segment), "%s missing: the trail's head is %s, but the last segment found is %d (%s)",
			segmentsWord(last.Number+1, head.Segment), head, last.Number, last.Name)
	}
	var at *Entry
	var n int64
	for _, s := range segs {
		for i := range s.Entries {
			if s.Entries[i].Seq == head.Length {
				at = &s.Entries[i]
			}
			n = s.Entries[i].Seq
		}
	}
	switch {
	case at == nil:
		return trailErr(nil, "the trail ends at entry %d, but its head is %s: entries were removed from its end", n, head)
	case at.Hash != head.Hash:
		return trailErr(nil, "entry %d has hash %s, but the trail's head is %s: the trail was replaced", head.Length, short(at.Hash), head)
	}
	return nil
}

// VerifyHeadSegment checks the segment the head names, without reading the others: its entries chain from its
// link (or the genesis for segment 1), and it holds the head's entry with the head's hash. It returns the
// segment's last entry (nil when the trail is empty), which may be after the head.
func VerifyHeadSegment(seg Segment, head TrailHead) (*Entry, error) {
	if seg.Number != head.Segment {
		return nil, trailErr(nil, "segment %s is number %d, but the trail's head is in segment %d", seg.Name, seg.Number, head.Segment)
	}
	prevHash, firstSeq := Genesis, int64(1)
	if seg.Number > 1 {
		if !seg.Linked() {
			if len(seg.Entries) == 0 {
				return nil, trailErr(nil, "segment %d (%s) has no entries and no link to its predecessor", seg.Number, seg.Name)
			}
			prevHash, firstSeq = seg.Entries[0].Prev, seg.Entries[0].Seq
		} else {
			prevHash, firstSeq = seg.PrevHash, seg.PrevSeq+1
		}
	}
	if err := VerifyChainFrom(prevHash, firstSeq, seg.Entries); err != nil {
		return nil, err
	}
	if err := ReachesHead([]Segment{seg}, head); err != nil {
		return nil, err
	}
	if len(seg.Entries) == 0 {
		return nil, nil
	}
	return &seg.Entries[len(seg.Entries)-1], nil
}

// CheckAgainst compares a trail's head with a head recorded elsewhere (the Tenant's status, a certificate) that
// may lag behind it but never be ahead: the recorded head must be an entry of the trail. entries is the whole
// trail, or nil when only the trail's head is known (then only a recorded length beyond it is caught).
func CheckAgainst(trail TrailHead, entries []Entry, recorded TrailHead, where string) error {
	if recorded.Empty() {
		return nil
	}
	if recorded.Length > trail.Length {
		return trailErr(nil, "%s records entry %d (hash %s), but the trail ends at entry %d: entries or segments were removed from its end",
			where, recorded.Length, short(recorded.Hash), trail.Length)
	}
	if recorded.Length == trail.Length && recorded.Hash != "" && recorded.Hash != trail.Hash {
		return trailErr(nil, "%s records head %s at entry %d, but the trail's entry %d is %s: the trail was replaced", where,
			short(recorded.Hash), recorded.Length, trail.Length, short(trail.Hash))
	}
	if entries != nil && recorded.Length >= 1 && int(recorded.Length) <= len(entries) && recorded.Hash != "" &&
		entries[recorded.Length-1].Hash != recorded.Hash {
		return trailErr(nil, "%s records head %s at entry %d, but the trail's entry %d is %s: the trail was replaced", where,
			short(recorded.Hash), recorded.Length, recorded.Length, short(entries[recorded.Length-1].Hash))
	}
	return nil
}

// MissingList renders TrailError.Missing for a condition message.
func MissingList(missing []int) string {
	var s []string
	for _, m := range missing {
		s = append(s, fmt.Sprint(m))
	}
	return strings.Join(s, ", ")
}
