package retention

import (
	"fmt"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	clocktesting "k8s.io/utils/clock/testing"

	custosv1alpha1 "github.com/custos-io/custos/api/v1alpha1"
)

func mustSchedule(cron, jitter, tz string) Schedule {
	s, err := ParseSchedule(custosv1alpha1.Schedule{Cron: cron, Jitter: custosv1alpha1.Duration(jitter), TimeZone: tz})
	Expect(err).NotTo(HaveOccurred())
	return s
}

func at(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	Expect(err).NotTo(HaveOccurred())
	return t
}

var _ = Describe("Schedules", func() {
	It("refuses what the schema cannot check", func() {
		_, err := ParseSchedule(custosv1alpha1.Schedule{Cron: "61 1 * * *"})
		Expect(err).To(MatchError(ContainSubstring("cron")))
		_, err = ParseSchedule(custosv1alpha1.Schedule{Cron: "@daily", TimeZone: "Europe/Atlantis"})
		Expect(err).To(MatchError(ContainSubstring(`time zone "Europe/Atlantis" is unknown`)))
	})

	It("gives each tenant a stable offset inside the jitter window, and different tenants different ones", func() {
		s := mustSchedule("@daily", "6h", "UTC")
		offsets := map[time.Duration]bool{}
		for i := 0; i < 50; i++ {
			key := fmt.Sprintf("tenant-%d", i)
			o := s.Offset(key)
			Expect(o).To(BeNumerically(">=", 0))
			Expect(o).To(BeNumerically("<", 6*time.Hour))
			Expect(s.Offset(key)).To(Equal(o), "stable: the same on every call (and after a restart)")
			offsets[o] = true
		}
		Expect(len(offsets)).To(BeNumerically(">", 45), "spread over the window")
		Expect(mustSchedule("@daily", "", "UTC").Offset("x")).To(BeZero())
	})

	It("runs a daily schedule once a day at cron time plus the tenant's offset", func() {
		s := mustSchedule("30 1 * * *", "4h", "UTC")
		off := s.Offset("clinic")
		first := s.Next("clinic", at("2026-11-23T00:00:00Z"))
		Expect(first).To(Equal(at("2026-11-23T01:30:00Z").Add(off)))
		Expect(s.Next("clinic", first)).To(Equal(first.Add(24 * time.Hour)))
		latest, ok := s.Latest("clinic", first)
		Expect(ok).To(BeTrue())
		Expect(latest).To(Equal(first), "a slot at exactly now is the latest")
	})

	It("is due once per slot, and once only after missing several days", func() {
		s := mustSchedule("@daily", "2h", "UTC")
		clk := clocktesting.NewFakePassiveClock(at("2026-11-20T12:00:00Z"))
		due, slot := s.Due("clinic", nil, clk.Now())
		Expect(due).To(BeTrue(), "never ran")
		ran := clk.Now()
		due, _ = s.Due("clinic", &ran, clk.Now())
		Expect(due).To(BeFalse(), "just ran")

		By("the manager being down for three days")
		clk.SetTime(clk.Now().Add(3*24*time.Hour + time.Hour))
		due, slot = s.Due("clinic", &ran, clk.Now())
		Expect(due).To(BeTrue())
		ran = clk.Now()
		due, _ = s.Due("clinic", &ran, clk.Now())
		Expect(due).To(BeFalse(), "one catch-up run, not one per missed day")
		Expect(slot).To(BeTemporally("<=", clk.Now()))
		Expect(clk.Now().Sub(slot)).To(BeNumerically("<", 24*time.Hour), "the catch-up is for the latest slot")
	})

	DescribeTable("runs a daily schedule exactly once per calendar day across daylight-saving changes",
		func(tz, from string) {
			s := mustSchedule("30 2 * * *", "", tz)
			loc, _ := time.LoadLocation(tz)
			t := at(from)
			days := map[string]int{}
			for i := 0; i < 6; i++ {
				t = s.Next("clinic", t)
				days[t.In(loc).Format("2006-01-02")]++
			}
			Expect(days).To(HaveLen(6))
			for d, n := range days {
				Expect(n).To(Equal(1), d)
			}
		},
		Entry("spring forward in Amsterdam (02:30 does not exist on 2026-03-29)", "Europe/Amsterdam", "2026-03-26T12:00:00Z"),
		Entry("fall back in Amsterdam (02:30 happens twice on 2026-10-25)", "Europe/Amsterdam", "2026-10-22T12:00:00Z"),
	)
})

var _ = Describe("Expiry", func() {
	now := at("2026-11-23T12:00:00Z")
	keep := 90 * 24 * time.Hour

	It("forgets what is older than the window, counted from now, at the window's edge exactly", func() {
		snaps := []Snapshot{
			{ID: "edge", Time: now.Add(-keep)},
			{ID: "just-over", Time: now.Add(-keep - time.Second)},
			{ID: "fresh", Time: now.Add(-time.Hour)},
			{ID: "ancient", Time: now.Add(-400 * 24 * time.Hour)},
		}
		Expect(Expired(snaps, keep, now, false)).To(Equal([]string{"ancient", "just-over"}))
	})

	It("forgets every snapshot of a tenant whose newest snapshot is itself past the window", func() {
		snaps := []Snapshot{{ID: "a", Time: now.Add(-100 * 24 * time.Hour)}, {ID: "b", Time: now.Add(-95 * 24 * time.Hour)}}
		Expect(Expired(snaps, keep, now, false)).To(ConsistOf("a", "b"), "the exit: nothing is kept past the window")
	})

	// slot builds the two snapshots of a complete slot taken age before the clock's now.
	slot := func(name string, taken time.Time) []Snapshot {
		return []Snapshot{{ID: name + "-db", Time: taken, Slot: name, Kind: SnapshotKindDB},
			{ID: name + "-objects", Time: taken.Add(time.Second), Slot: name, Kind: SnapshotKindObjects}}
	}
	join := func(parts ...[]Snapshot) []Snapshot {
		var out []Snapshot
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}
	DescribeTable("an active tenant keeps the newest complete slot whatever keepWithin and the clock say",
		func(snaps func(now time.Time) []Snapshot, keepWithin time.Duration, advance time.Duration, want []string) {
			clock := clocktesting.NewFakePassiveClock(now)
			taken := snaps(clock.Now())
			clock.SetTime(clock.Now().Add(advance))
			kept := map[string]bool{}
			for _, s := range taken {
				kept[s.ID] = true
			}
			for _, id := range Expired(taken, keepWithin, clock.Now(), true) {
				delete(kept, id)
			}
			var left []string
			for id := range kept {
				left = append(left, id)
			}
			Expect(left).To(ConsistOf(want))
		},
		Entry("a typo: keepWithin 1s keeps the newest slot only",
			func(n time.Time) []Snapshot {
				return join(slot("d1", n.Add(-48*time.Hour)), slot("d2", n.Add(-24*time.Hour)), slot("d3", n.Add(-time.Hour)))
			}, time.Second, time.Duration(0), []string{"d3-db", "d3-objects"}),
		Entry("a clock that jumps ten years forward keeps the newest slot",
			func(n time.Time) []Snapshot {
				return join(slot("d1", n.Add(-24*time.Hour)), slot("d2", n.Add(-time.Hour)))
			}, keep, 10*365*24*time.Hour, []string{"d2-db", "d2-objects"}),
		Entry("backups failing for longer than the window: the last good slot stays, older ones go",
			func(n time.Time) []Snapshot {
				return join(slot("d1", n.Add(-200*24*time.Hour)), slot("d2", n.Add(-120*24*time.Hour)))
			}, keep, time.Duration(0), []string{"d2-db", "d2-objects"}),
		Entry("a newer half slot (the dump failed) does not displace the last complete one, and expires itself",
			func(n time.Time) []Snapshot {
				return join(slot("d1", n.Add(-120*24*time.Hour)),
					[]Snapshot{{ID: "d2-objects", Time: n.Add(-100 * 24 * time.Hour), Slot: "d2", Kind: SnapshotKindObjects}})
			}, keep, time.Duration(0), []string{"d1-db", "d1-objects"}),
		Entry("no complete slot at all: the newest of each kind stays",
			func(n time.Time) []Snapshot {
				return []Snapshot{{ID: "old-db", Time: n.Add(-200 * 24 * time.Hour), Slot: "a", Kind: SnapshotKindDB},
					{ID: "new-db", Time: n.Add(-100 * 24 * time.Hour), Slot: "b", Kind: SnapshotKindDB},
					{ID: "objects", Time: n.Add(-150 * 24 * time.Hour), Slot: "c", Kind: SnapshotKindObjects}}
			}, keep, time.Duration(0), []string{"new-db", "objects"}),
		Entry("inside the window nothing goes, as before",
			func(n time.Time) []Snapshot {
				return join(slot("d1", n.Add(-48*time.Hour)), slot("d2", n.Add(-24*time.Hour)))
			}, keep, time.Duration(0), []string{"d1-db", "d1-objects", "d2-db", "d2-objects"}),
		Entry("a clock that jumps backwards (snapshots from the future) expires nothing",
			func(n time.Time) []Snapshot { return join(slot("d1", n.Add(-time.Hour)), slot("d2", n)) },
			keep, -30*24*time.Hour, []string{"d1-db", "d1-objects", "d2-db", "d2-objects"}),
	)

	It("keeps nothing for the exit (keepNewest false) once the window has passed", func() {
		snaps := append(slot("d1", now.Add(-100*24*time.Hour)), slot("d2", now.Add(-95*24*time.Hour))...)
		Expect(Expired(snaps, keep, now, false)).To(HaveLen(4))
		Expect(Expired(snaps, keep, now, true)).To(ConsistOf("d1-db", "d1-objects"))
	})

	It("states by when the last copy is gone: the first expiry run after newest + keepWithin", func() {
		expiry := mustSchedule("30 12 * * *", "", "UTC")
		snaps := []Snapshot{{ID: "a", Time: at("2026-11-01T03:00:00Z")}, {ID: "b", Time: at("2026-11-20T03:00:00Z")}}
		Expect(AllGoneBy(snaps, keep, expiry, "clinic")).To(Equal(at("2027-02-18T12:30:00Z")))
		Expect(AllGoneBy(nil, keep, expiry, "clinic").IsZero()).To(BeTrue())
	})
})
