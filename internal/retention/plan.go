package retention

import (
	"time"

	custosv1alpha1 "github.com/custos-io/custos/api/v1alpha1"
)

// Task kinds a plan produces: the API's TaskKind values, as the runner carries them.
const (
	KindSnapshot = string(custosv1alpha1.TaskSnapshot)
	KindCopy     = string(custosv1alpha1.TaskCopy)
	KindExpiry   = string(custosv1alpha1.TaskExpiry)
	KindCheck    = string(custosv1alpha1.TaskCheck)
	KindDrill    = string(custosv1alpha1.TaskDrill)
)

// Schedules are a policy's parsed schedules.
type Schedules struct {
	Snapshot, Copy, Expiry, Check, Drill Schedule
	DrillEnabled                         bool
}

// LocationState is what the plan needs to know of a tenant's repository at one location.
type LocationState struct {
	Name string
	// Offsite is true for the location snapshots are copied to.
	Offsite bool
	// Repository is true once the repository exists there.
	Repository bool
	// Snapshots held there.
	Snapshots int
	// The last slot of each kind answered there (successfully or given up).
	LastSnapshot, LastCopy, LastExpiry, LastCheck *time.Time
}

// PlanInput is a tenant's backup state.
type PlanInput struct {
	Tenant string
	// TakeNew is true while new snapshots, copies and drills are wanted (an Active tenant). Expiry and checks
	// go on after it is false, until the repositories are empty.
	TakeNew bool
	// Primary and Offsite (nil when the policy has none).
	Primary LocationState
	Offsite *LocationState
	// Retired are the locations the tenant's repositories were in that the policy names no longer (a location
	// replaced to change its URL, an offsite dropped): they are still expired, on the expiry schedule, until
	// they are empty, so that no copy outlives the retention window because a policy changed.
	Retired []LocationState
	// Hold is true while a legal hold applies: no expiry is planned (nothing is destroyed).
	Hold      bool
	LastDrill *time.Time
	// Busy holds the kinds with a task in flight: a copy or a drill waits for a running snapshot.
	Busy map[string]bool
}

// Due is a task the plan wants started for a slot.
type Due struct {
	Kind     string
	Location string
	Slot     time.Time
}

// ScheduleKey is the jitter key of a tenant's schedule for a kind at a location.
func ScheduleKey(tenant, kind, location string) string { return tenant + "/" + kind + "/" + location }

// Plan decides which tasks are due at now and when to look again. It is a pure function: the same input and now
// give the same answer, so the controller can be tested with a fake clock.
//
//   - Snapshot into the primary on its schedule while TakeNew.
//   - Copy to the offsite on its schedule while TakeNew, once the primary holds a snapshot and no snapshot is in
//     flight (so the day's copy carries the day's snapshot).
//   - Expiry in every location that has a repository, on its own schedule, whatever the phase and whether or not
//     backups succeed: the retention window counts from the wall clock.
//   - Check of every repository on its schedule.
//   - Drill from the primary on its schedule while TakeNew, once there is a snapshot and none is in flight.
//   - Expiry of every retired location that still holds snapshots, on the expiry schedule.
//   - No expiry anywhere while Hold.
func Plan(in PlanInput, s Schedules, now time.Time) (due []Due, next time.Time) {
	consider := func(kind, loc string, sched Schedule, last *time.Time, allowed bool) {
		key := ScheduleKey(in.Tenant, kind, loc)
		if n := sched.Next(key, now); next.IsZero() || n.Before(next) {
			next = n
		}
		if !allowed {
			return
		}
		if ok, slot := sched.Due(key, last, now); ok {
			due = append(due, Due{Kind: kind, Location: loc, Slot: slot})
		}
	}
	p := in.Primary
	snapshotBusy := in.Busy[KindSnapshot]
	consider(KindSnapshot, p.Name, s.Snapshot, p.LastSnapshot, in.TakeNew)
	if o := in.Offsite; o != nil {
		consider(KindCopy, o.Name, s.Copy, o.LastCopy, in.TakeNew && p.Snapshots > 0 && !snapshotBusy)
	}
	for _, l := range append([]*LocationState{&p}, in.Offsite) {
		if l == nil {
			continue
		}
		consider(KindExpiry, l.Name, s.Expiry, l.LastExpiry, l.Repository && !in.Hold)
		consider(KindCheck, l.Name, s.Check, l.LastCheck, l.Repository && l.Snapshots > 0)
	}
	for i := range in.Retired {
		l := &in.Retired[i]
		consider(KindExpiry, l.Name, s.Expiry, l.LastExpiry, l.Repository && l.Snapshots > 0 && !in.Hold)
	}
	if s.DrillEnabled {
		consider(KindDrill, p.Name, s.Drill, in.LastDrill, in.TakeNew && p.Snapshots > 0 && !snapshotBusy)
	}
	return due, next
}

// KeepNewest says whether an expiry keeps the newest good snapshot (retention.Protected) whatever its age. An
// active tenant keeps it in each location of its policy; in a retired location only while the policy's primary
// holds no snapshot yet (the retired one may hold the tenant's only good copy). A tenant in its exit keeps
// nothing past the window: that is the contract.
func KeepNewest(active, retired, primaryHoldsSnapshots bool) bool {
	return active && (!retired || !primaryHoldsSnapshots)
}
