package retention

import (
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

var _ = Describe("Plan", func() {
	daily := func() Schedules {
		return Schedules{
			Snapshot: mustSchedule("0 2 * * *", "", "UTC"), Copy: mustSchedule("0 4 * * *", "", "UTC"),
			Expiry: mustSchedule("0 6 * * *", "", "UTC"), Check: mustSchedule("@weekly", "", "UTC"),
			Drill: mustSchedule("@monthly", "", "UTC"), DrillEnabled: true,
		}
	}
	ptr := func(s string) *time.Time { t := at(s); return &t }
	kinds := func(due []Due) []string {
		var out []string
		for _, d := range due {
			out = append(out, d.Kind+"@"+d.Location)
		}
		return out
	}
	fresh := func() PlanInput {
		return PlanInput{Tenant: "clinic", TakeNew: true,
			Primary: LocationState{Name: "p", Repository: true, Snapshots: 3,
				LastSnapshot: ptr("2026-03-10T02:00:00Z"), LastExpiry: ptr("2026-03-10T06:00:00Z"), LastCheck: ptr("2026-03-08T00:00:00Z")},
			Offsite: &LocationState{Name: "o", Offsite: true, Repository: true, Snapshots: 3,
				LastCopy: ptr("2026-03-10T04:00:00Z"), LastExpiry: ptr("2026-03-10T06:00:00Z"), LastCheck: ptr("2026-03-08T00:00:00Z")},
			LastDrill: ptr("2026-03-01T00:00:00Z"),
		}
	}

	It("runs nothing between slots and wakes at the next one", func() {
		due, next := Plan(fresh(), daily(), at("2026-03-10T12:00:00Z"))
		Expect(due).To(BeEmpty())
		Expect(next).To(Equal(at("2026-03-11T02:00:00Z")))
	})

	It("runs each kind once its slot comes, at its own location", func() {
		due, _ := Plan(fresh(), daily(), at("2026-03-11T07:00:00Z"))
		Expect(kinds(due)).To(ConsistOf("Snapshot@p", "Copy@o", "Expiry@p", "Expiry@o"))
		for _, d := range due {
			Expect(d.Slot.Day()).To(Equal(11))
		}
	})

	It("after days of downtime runs one catch-up per kind, for the latest slot", func() {
		due, _ := Plan(fresh(), daily(), at("2026-03-20T07:00:00Z"))
		Expect(kinds(due)).To(ConsistOf("Snapshot@p", "Copy@o", "Expiry@p", "Expiry@o", "Check@p", "Check@o"))
		for _, d := range due {
			if d.Kind == KindSnapshot {
				Expect(d.Slot).To(Equal(at("2026-03-20T02:00:00Z")))
			}
		}
	})

	It("expires and checks a former tenant's repositories but takes, copies and drills nothing new", func() {
		in := fresh()
		in.TakeNew = false
		due, _ := Plan(in, daily(), at("2026-04-20T07:00:00Z"))
		Expect(kinds(due)).To(ConsistOf("Expiry@p", "Expiry@o", "Check@p", "Check@o"))
	})

	It("keeps expiring when every backup fails: expiry does not wait for a successful snapshot", func() {
		in := fresh()
		in.Primary.LastSnapshot = ptr("2026-01-01T02:00:00Z") // backups stopped long ago
		in.Busy = map[string]bool{KindSnapshot: true}
		due, _ := Plan(in, daily(), at("2026-03-11T07:00:00Z"))
		Expect(kinds(due)).To(ContainElements("Expiry@p", "Expiry@o"))
		Expect(kinds(due)).NotTo(ContainElement("Copy@o"), "the copy waits for the snapshot in flight")
	})

	It("starts a new tenant at once: snapshot first, then copy, check and drill once there is a snapshot", func() {
		in := PlanInput{Tenant: "new", TakeNew: true, Primary: LocationState{Name: "p"}, Offsite: &LocationState{Name: "o", Offsite: true}}
		due, _ := Plan(in, daily(), at("2026-03-11T12:00:00Z"))
		Expect(kinds(due)).To(ConsistOf("Snapshot@p"))
		in.Primary = LocationState{Name: "p", Repository: true, Snapshots: 1, LastSnapshot: ptr("2026-03-11T02:00:00Z")}
		due, _ = Plan(in, daily(), at("2026-03-11T12:01:00Z"))
		Expect(kinds(due)).To(ConsistOf("Copy@o", "Expiry@p", "Check@p", "Drill@p"))
	})

	It("does not drill when drills are off", func() {
		s := daily()
		s.DrillEnabled = false
		in := fresh()
		in.LastDrill = nil
		due, _ := Plan(in, s, at("2026-03-10T12:00:00Z"))
		Expect(kinds(due)).NotTo(ContainElement("Drill@p"))
	})

	It("keeps expiring a location taken out of the policy until it is empty, and checks and copies nothing there", func() {
		in := fresh()
		in.Retired = []LocationState{{Name: "old", Repository: true, Snapshots: 2, LastExpiry: ptr("2026-03-10T06:00:00Z")},
			{Name: "emptied", Repository: true, Snapshots: 0, LastExpiry: ptr("2026-03-10T06:00:00Z")}}
		due, _ := Plan(in, daily(), at("2026-03-20T07:00:00Z"))
		Expect(kinds(due)).To(ContainElement("Expiry@old"))
		Expect(kinds(due)).NotTo(ContainElements("Check@old", "Expiry@emptied"))
		in.TakeNew = false
		due, _ = Plan(in, daily(), at("2026-03-20T07:00:00Z"))
		Expect(kinds(due)).To(ContainElement("Expiry@old"), "in the exit too")
	})

	It("plans no expiry anywhere under a legal hold, and everything else as usual", func() {
		in := fresh()
		in.Hold = true
		in.Retired = []LocationState{{Name: "old", Repository: true, Snapshots: 2}}
		due, _ := Plan(in, daily(), at("2026-03-20T07:00:00Z"))
		Expect(kinds(due)).To(ConsistOf("Snapshot@p", "Copy@o", "Check@p", "Check@o"))
	})

	DescribeTable("keeps the newest good snapshot while the tenant is active",
		func(active, retired, primaryHolds, want bool) {
			Expect(KeepNewest(active, retired, primaryHolds)).To(Equal(want))
		},
		Entry("active, a location of the policy", true, false, true, true),
		Entry("active, a location of the policy with no snapshot in the primary", true, false, false, true),
		Entry("active, a retired location, the primary holds snapshots", true, true, true, false),
		Entry("active, a retired location that holds the only copies", true, true, false, true),
		Entry("in the exit", false, false, true, false),
		Entry("in the exit, a retired location", false, true, false, false),
	)

	It("is a pure function of its input and now", func() {
		a, na := Plan(fresh(), daily(), at("2026-03-11T07:00:00Z"))
		b, nb := Plan(fresh(), daily(), at("2026-03-11T07:00:00Z"))
		Expect(a).To(Equal(b))
		Expect(na).To(Equal(nb))
	})
})
