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
		Expect(Expired(snaps, keep, now)).To(Equal([]string{"ancient", "just-over"}))
	})

	It("forgets every snapshot of a tenant whose newest snapshot is itself past the window", func() {
		snaps := []Snapshot{{ID: "a", Time: now.Add(-100 * 24 * time.Hour)}, {ID: "b", Time: now.Add(-95 * 24 * time.Hour)}}
		Expect(Expired(snaps, keep, now)).To(ConsistOf("a", "b"))
	})

	It("states by when the last copy is gone: the first expiry run after newest + keepWithin", func() {
		expiry := mustSchedule("30 12 * * *", "", "UTC")
		snaps := []Snapshot{{ID: "a", Time: at("2026-11-01T03:00:00Z")}, {ID: "b", Time: at("2026-11-20T03:00:00Z")}}
		Expect(AllGoneBy(snaps, keep, expiry, "clinic")).To(Equal(at("2027-02-18T12:30:00Z")))
		Expect(AllGoneBy(nil, keep, expiry, "clinic").IsZero()).To(BeTrue())
	})
})
