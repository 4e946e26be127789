package evidence

import (
	"time"

	g "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

var _ = g.Describe("legal holds from the audit trail", func() {
	trail := func(actions ...Entry) []Entry {
		var out []Entry
		var prev *Entry
		for _, e := range actions {
			e.Tenant, e.Actor = "clinic", "custos-manager"
			out = append(out, Append(prev, e))
			prev = &out[len(out)-1]
		}
		return out
	}
	set := func(t, reason string) Entry {
		return Entry{Time: at(t), Action: ActionLegalHoldSet, Detail: map[string]string{"reason": reason, "until": "2026-06-01T00:00:00Z"}}
	}
	lifted := func(t string) Entry { return Entry{Time: at(t), Action: ActionLegalHoldLifted} }

	g.It("pairs each LegalHoldSet with the next LegalHoldLifted, keeping reason and until", func() {
		holds := LegalHolds(trail(Entry{Time: at("2026-01-01T00:00:00Z"), Action: ActionProvisioned},
			set("2026-03-01T00:00:00Z", "case 1"), lifted("2026-03-10T00:00:00Z"),
			set("2026-03-20T00:00:00Z", "case 2"), set("2026-03-21T00:00:00Z", "case 2, extended"), lifted("2026-03-31T00:00:00Z")))
		Expect(holds).To(Equal([]LegalHold{
			{Reason: "case 1", SetAt: at("2026-03-01T00:00:00Z"), Until: at("2026-06-01T00:00:00Z"), LiftedAt: at("2026-03-10T00:00:00Z")},
			{Reason: "case 2, extended", SetAt: at("2026-03-20T00:00:00Z"), Until: at("2026-06-01T00:00:00Z"), LiftedAt: at("2026-03-31T00:00:00Z")},
		}))
		last, notes := LastHold(holds)
		Expect(last.Reason).To(Equal("case 2, extended"))
		Expect(notes).To(ConsistOf(ContainSubstring(`"case 1"`)))
	})

	g.It("ends an open hold at its until date once the trail has passed it", func() {
		holds := LegalHolds(trail(set("2026-03-01T00:00:00Z", "case 3"), Entry{Time: at("2026-07-01T00:00:00Z"), Action: ActionSuspended}))
		Expect(holds).To(HaveLen(1))
		Expect(holds[0].LiftedAt).To(Equal(at("2026-06-01T00:00:00Z")))
		Expect(LegalHolds(trail(set("2026-03-01T00:00:00Z", "case 3")))[0].LiftedAt).To(BeZero())
	})

	g.It("finds a hold never lifted and a destruction during a hold, but not a hold between two steps", func() {
		locs := Normalize(complete()).Predicate.Locations // destroyed from 2026-04-01T10:00:00Z on
		Expect(HoldProblems(LegalHolds(trail(set("2026-04-01T10:00:00Z", "open"))), locs)).To(ConsistOf(ContainSubstring("never lifted")))
		during := []LegalHold{{Reason: "during", SetAt: at("2026-03-01T00:00:00Z"), LiftedAt: at("2026-04-01T10:00:30Z")}}
		Expect(HoldProblems(during, locs)).NotTo(BeEmpty())
		before := []LegalHold{{Reason: "before", SetAt: at("2026-03-01T00:00:00Z"), LiftedAt: at("2026-03-31T00:00:00Z")}}
		Expect(HoldProblems(before, locs)).To(BeEmpty())
		last := locs[0]
		for _, l := range locs {
			if l.CompletedAt.After(last.CompletedAt) {
				last = l
			}
		}
		after := []LegalHold{{Reason: "after", SetAt: last.CompletedAt.Add(time.Second), LiftedAt: last.CompletedAt.Add(time.Hour)}}
		Expect(HoldProblems(after, locs)).To(BeEmpty(), "a hold after every destruction holds nothing back")
	})

	g.It("orders a lifting and a destruction in the same second by the second locations are recorded in", func() {
		locs := Normalize(complete()).Predicate.Locations // destroyed from 2026-04-01T10:00:00Z on
		first := locs[0].StartedAt
		for _, l := range locs {
			if l.StartedAt.Before(first) {
				first = l.StartedAt
			}
		}
		sameSecond := []LegalHold{{Reason: "same second", SetAt: at("2026-03-01T00:00:00Z"), LiftedAt: first.Add(700 * time.Millisecond)}}
		Expect(HoldProblems(sameSecond, locs)).To(BeEmpty(), "the step started after the lifting, in the same whole second")
		nextSecond := []LegalHold{{Reason: "next second", SetAt: at("2026-03-01T00:00:00Z"), LiftedAt: first.Add(time.Second)}}
		Expect(HoldProblems(nextSecond, locs)).NotTo(BeEmpty(), "lifted a second after a destruction started")
	})
})
