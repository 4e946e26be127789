// Package retention holds custos' time decisions as pure functions of (spec, status, now): when a tenant's
// scheduled job is due (cron in a time zone, spread by a jitter that is stable per tenant), which snapshots have
// outlived the retention window, and by when the last copy of a tenant's data is gone. Nothing here reads a
// clock; callers pass now, and tests move it.
package retention

import (
	"fmt"
	"hash/fnv"
	"time"

	"github.com/robfig/cron/v3"

	custosv1alpha1 "github.com/custos-io/custos/api/v1alpha1"
)

// Schedule is a parsed custosv1alpha1.Schedule.
type Schedule struct {
	cron     cron.Schedule
	jitter   time.Duration
	location *time.Location
}

var parser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// ParseSchedule checks what the CRD schema cannot: field ranges, the time zone's existence, the jitter.
func ParseSchedule(s custosv1alpha1.Schedule) (Schedule, error) {
	expr := s.Cron
	if expr == "" {
		expr = "@daily"
	}
	tz := s.TimeZone
	if tz == "" {
		tz = "UTC"
	}
	loc, err := time.LoadLocation(tz)
	if err != nil {
		return Schedule{}, fmt.Errorf("time zone %q is unknown: %w", tz, err)
	}
	c, err := parser.Parse(expr)
	if err != nil {
		return Schedule{}, fmt.Errorf("cron %q: %w", expr, err)
	}
	var jitter time.Duration
	if s.Jitter != "" {
		if jitter, err = s.Jitter.Parse(); err != nil {
			return Schedule{}, fmt.Errorf("jitter: %w", err)
		}
	}
	return Schedule{cron: c, jitter: jitter, location: loc}, nil
}

// Offset is key's deterministic place in the jitter window: the same tenant always runs at the same offset after
// the cron time (stable across restarts), different tenants spread over the window.
func (s Schedule) Offset(key string) time.Duration {
	if s.jitter <= 0 {
		return 0
	}
	h := fnv.New64a()
	_, _ = h.Write([]byte(key))
	return time.Duration(h.Sum64() % uint64(s.jitter))
}

// Next is the first run for key strictly after t.
func (s Schedule) Next(key string, t time.Time) time.Time {
	off := s.Offset(key)
	return s.next(t.Add(-off)).Add(off).UTC()
}

// next is the cron's next occurrence after t in the schedule's zone, except that a wall-clock time that happens
// twice (when clocks go back) runs once: the second occurrence is skipped, so a daily job runs once per day.
func (s Schedule) next(t time.Time) time.Time {
	n := s.cron.Next(t.In(s.location))
	for !n.IsZero() && repeatedWallClock(n) {
		n = s.cron.Next(n)
	}
	return n
}

// repeatedWallClock reports whether the local date and time of t already happened earlier (the hour after
// clocks go back).
func repeatedWallClock(t time.Time) bool {
	const layout = "2006-01-02 15:04"
	for _, d := range []time.Duration{30 * time.Minute, time.Hour, 2 * time.Hour} {
		if t.Add(-d).Format(layout) == t.Format(layout) {
			return true
		}
	}
	return false
}

// Latest is the last run for key at or before now; ok is false when there was none in the past 366 days.
func (s Schedule) Latest(key string, now time.Time) (time.Time, bool) {
	off := s.Offset(key)
	limit := now.Add(-off)
	// Look back over growing windows, so that an every-minute schedule costs a few steps and a yearly one too.
	for _, back := range []time.Duration{time.Hour, 25 * time.Hour, 8 * 24 * time.Hour, 32 * 24 * time.Hour, 367 * 24 * time.Hour} {
		var last time.Time
		for t := s.next(limit.Add(-back)); !t.IsZero() && !t.After(limit); t = s.next(t) {
			last = t
		}
		if !last.IsZero() {
			return last.Add(off).UTC(), true
		}
	}
	return time.Time{}, false
}

// Due says whether key's job should run now: it is due when a slot has come since the last run started (or never
// ran). However many slots were missed while the manager was down, there is one catch-up run: the latest slot.
func (s Schedule) Due(key string, lastRun *time.Time, now time.Time) (due bool, slot time.Time) {
	slot, ok := s.Latest(key, now)
	if !ok {
		return false, time.Time{}
	}
	if lastRun == nil || lastRun.Before(slot) {
		return true, slot
	}
	return false, slot
}
