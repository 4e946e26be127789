package retention

import (
	"sort"
	"time"
)

// Snapshot is what the expiry decision needs of a snapshot.
type Snapshot struct {
	ID   string
	Time time.Time
	// Slot and Kind are the snapshot's slot and kind tags (internal/backup): a slot is complete, a good
	// snapshot to restore from, when it holds both a KindDB and a KindObjects snapshot.
	Slot, Kind string
}

// Snapshot kinds as internal/backup tags them.
const (
	SnapshotKindDB      = "db"
	SnapshotKindObjects = "objects"
)

// Expired returns the ids of the snapshots taken more than keepWithin before now, oldest first. The window counts
// from the wall clock, not from the newest snapshot (restic's own --keep-within does the latter, so a tenant that
// stopped producing snapshots would keep them forever): a snapshot is gone keepWithin after it was taken, whether
// or not newer ones exist. A snapshot exactly keepWithin old is still kept.
//
// With keepNewest (an active tenant's repository) the newest good snapshot is kept whatever its age and whatever
// keepWithin says, so that a typo in keepWithin, a clock that jumps forward or backups that fail for longer than
// the window never leave an active tenant with nothing to restore: see Protected. Only the contract's exit (and
// Shred) brings a repository to zero.
func Expired(snaps []Snapshot, keepWithin time.Duration, now time.Time, keepNewest bool) []string {
	sorted := append([]Snapshot(nil), snaps...)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].Time.Before(sorted[j].Time) })
	keep := map[string]bool{}
	if keepNewest {
		for _, id := range Protected(snaps) {
			keep[id] = true
		}
	}
	var out []string
	for _, s := range sorted {
		if now.Sub(s.Time) > keepWithin && !keep[s.ID] {
			out = append(out, s.ID)
		}
	}
	return out
}

// Protected returns the ids of the snapshots an active tenant keeps whatever their age: every snapshot of the
// newest complete slot (the one whose database snapshot is newest among the slots holding both a database and an
// objects snapshot). When no slot is complete, nothing is known to be good, and what loses the least is kept: the
// newest snapshot of each kind. A snapshot's age plays no part, so a clock that jumps backwards (snapshots "from
// the future") changes nothing either.
func Protected(snaps []Snapshot) []string {
	type slot struct {
		ids     []string
		db      *Snapshot
		objects bool
	}
	slots := map[string]*slot{}
	newestOfKind := map[string]*Snapshot{}
	for i := range snaps {
		s := &snaps[i]
		if n := newestOfKind[s.Kind]; n == nil || newer(s, n) {
			newestOfKind[s.Kind] = s
		}
		if s.Slot == "" {
			continue
		}
		sl := slots[s.Slot]
		if sl == nil {
			sl = &slot{}
			slots[s.Slot] = sl
		}
		sl.ids = append(sl.ids, s.ID)
		switch s.Kind {
		case SnapshotKindDB:
			if sl.db == nil || newer(s, sl.db) {
				sl.db = s
			}
		case SnapshotKindObjects:
			sl.objects = true
		}
	}
	var best *slot
	for _, sl := range slots {
		if sl.db != nil && sl.objects && (best == nil || newer(sl.db, best.db)) {
			best = sl
		}
	}
	var out []string
	if best != nil {
		out = append(out, best.ids...)
	} else {
		for _, s := range newestOfKind {
			out = append(out, s.ID)
		}
	}
	sort.Strings(out)
	return out
}

// newer orders snapshots by time, then by id, so the choice is the same on every run.
func newer(a, b *Snapshot) bool {
	if !a.Time.Equal(b.Time) {
		return a.Time.After(b.Time)
	}
	return a.ID > b.ID
}

// GoneBy is the latest time a snapshot taken at taken is gone from a location whose expiry runs on expiry for
// key: the first expiry run after the snapshot has outlived keepWithin.
func GoneBy(taken time.Time, keepWithin time.Duration, expiry Schedule, key string) time.Time {
	return expiry.Next(key, taken.Add(keepWithin))
}

// AllGoneBy is when the last of the snapshots is gone (zero when there are none): the deadline a former tenant's
// backups are held to.
func AllGoneBy(snaps []Snapshot, keepWithin time.Duration, expiry Schedule, key string) time.Time {
	var newest time.Time
	for _, s := range snaps {
		if s.Time.After(newest) {
			newest = s.Time
		}
	}
	if newest.IsZero() {
		return time.Time{}
	}
	return GoneBy(newest, keepWithin, expiry, key)
}
