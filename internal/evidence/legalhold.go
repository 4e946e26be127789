package evidence

import (
	"fmt"
	"time"
)

// LegalHolds reads the legal holds of a tenant from its audit trail: each LegalHoldSet entry opens a hold (its
// detail's reason and until), the next LegalHoldLifted closes it. A hold still open at the end of the trail has a
// zero LiftedAt, unless its until date is not after the trail's last entry (then it ended at until). A LegalHoldSet while a hold is open (a changed hold) closes nothing: the open hold keeps its
// start and takes the new reason.
func LegalHolds(entries []Entry) []LegalHold {
	var out []LegalHold
	open := -1
	for _, e := range entries {
		switch e.Action {
		case ActionLegalHoldSet:
			var until time.Time
			if u := e.Detail["until"]; u != "" {
				until, _ = time.Parse(time.RFC3339, u)
			}
			if open >= 0 {
				out[open].Reason, out[open].Until = e.Detail["reason"], until
				continue
			}
			out = append(out, LegalHold{Reason: e.Detail["reason"], SetAt: e.Time, Until: until})
			open = len(out) - 1
		case ActionLegalHoldLifted:
			if open >= 0 {
				out[open].LiftedAt = e.Time
				open = -1
			}
		}
	}
	// A hold with an until date that the trail has passed ended then, even when no LegalHoldLifted was written.
	if open >= 0 && !out[open].Until.IsZero() && len(entries) > 0 && !entries[len(entries)-1].Time.Before(out[open].Until) {
		out[open].LiftedAt = out[open].Until
	}
	return out
}

// HoldProblems lists every way the holds conflict with the destruction: a hold never lifted, or a location whose
// destruction ran while a hold was in place (between its SetAt and LiftedAt). A hold without SetAt counts from
// the beginning of time.
func HoldProblems(holds []LegalHold, locations []Location) []string {
	var p []string
	for _, h := range holds {
		if h.LiftedAt.IsZero() {
			p = append(p, fmt.Sprintf("legal hold %q was never lifted", h.Reason))
			continue
		}
		for i, l := range locations {
			if l.StartedAt.IsZero() {
				continue
			}
			end := l.CompletedAt
			if end.IsZero() {
				end = l.StartedAt
			}
			// The destruction [StartedAt, CompletedAt] overlaps the hold (SetAt, LiftedAt). Locations carry their
			// times in whole seconds (metav1.Time) and the trail in finer ones: a step that starts in the second
			// the hold was lifted (the manager starts none before the lifting is on the trail) is not after it.
			if h.LiftedAt.Truncate(time.Second).After(l.StartedAt.Truncate(time.Second)) && (h.SetAt.IsZero() || h.SetAt.Before(end)) {
				p = append(p, fmt.Sprintf("legal hold %q was lifted at %s, after the destruction of location %d (%s %s) started at %s",
					h.Reason, ts(h.LiftedAt), i+1, l.Kind, l.Identifier, ts(l.StartedAt)))
			}
		}
	}
	return p
}

// LastHold is the hold a certificate names (the latest), with a note for each earlier one.
func LastHold(holds []LegalHold) (*LegalHold, []string) {
	if len(holds) == 0 {
		return nil, nil
	}
	var notes []string
	for _, h := range holds[:len(holds)-1] {
		notes = append(notes, fmt.Sprintf("an earlier legal hold %q was set at %s and lifted at %s", h.Reason, ts(h.SetAt), fmtTime(h.LiftedAt)))
	}
	last := holds[len(holds)-1]
	return &last, notes
}
