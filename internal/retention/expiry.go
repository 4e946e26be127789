package retention

import (
	"sort"
	"time"
)

// Snapshot is what the expiry decision needs of a snapshot.
type Snapshot struct {
	ID   string
	Time time.Time
}

// Expired returns the ids of the snapshots taken more than keepWithin before now, oldest first. The window counts
// from the wall clock, not from the newest snapshot (restic's own --keep-within does the latter, so a tenant that
// stopped producing snapshots would keep them forever): a snapshot is gone keepWithin after it was taken, whether
// or not newer ones exist. A snapshot exactly keepWithin old is still kept.
func Expired(snaps []Snapshot, keepWithin time.Duration, now time.Time) []string {
	sorted := append([]Snapshot(nil), snaps...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Time.Before(sorted[j].Time) })
	var out []string
	for _, s := range sorted {
		if now.Sub(s.Time) > keepWithin {
			out = append(out, s.ID)
		}
	}
	return out
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
