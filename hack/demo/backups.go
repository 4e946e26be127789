package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"sigs.k8s.io/controller-runtime/pkg/client"

	custosv1alpha1 "github.com/custos-io/custos/api/v1alpha1"
	"github.com/custos-io/custos/internal/backup"
	"github.com/custos-io/custos/internal/restic"
)

// repoDir is the tenant's repository name at a location: <tenant>-<first 8 characters of its UID>.
func repoDir(t *custosv1alpha1.Tenant) string { return t.Name + "-" + string(t.UID)[:8] }

// repo opens the tenant's repository at a location with the key custos keeps for it in the Secret
// custos-repo-<tenant> of its own namespace.
func (d *demo) repo(ctx context.Context, t *custosv1alpha1.Tenant, loc string) (restic.Repository, error) {
	var keys corev1.Secret
	if err := d.c.Get(ctx, client.ObjectKey{Namespace: managerNamespace, Name: "custos-repo-" + t.Name}, &keys); err != nil {
		return restic.Repository{}, fmt.Errorf("reading the repository keys: %w", err)
	}
	url := filepath.Join(d.primaryDir, repoDir(t))
	if loc == offsiteName {
		url = d.offsite.URL + repoDir(t)
	}
	return restic.Repository{Binary: d.resticBin, URL: url, Password: string(keys.Data[loc]), RetryLock: time.Minute}, nil
}

func locationStatus(t *custosv1alpha1.Tenant, loc string) custosv1alpha1.LocationBackupStatus {
	for _, lb := range t.Status.Backups {
		if lb.Location == loc {
			return lb
		}
	}
	return custosv1alpha1.LocationBackupStatus{}
}

// clock is a time of today as hh:mm:ss (UTC), or "-".
func clock(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format("15:04:05")
}

// printBackups prints the tenant's backups per location, as its status says.
func (d *demo) printBackups(t *custosv1alpha1.Tenant) {
	lines := []string{fmt.Sprintf("%-12s %-8s %-9s %-9s %-9s %-9s %-10s %s", "LOCATION", "ROLE", "REPO ID", "SNAPSHOTS", "NEWEST", "LAST COPY", "OLDEST", "GONE BY")}
	for _, lb := range t.Status.Backups {
		var newest, lastCopy time.Time
		oldest, goneBy := "-", "-"
		if lb.Newest != nil {
			newest = lb.Newest.Time
		}
		if lb.LastCopy != nil {
			lastCopy = lb.LastCopy.Time
		}
		if lb.Oldest != nil {
			oldest = lb.Oldest.UTC().Format("2006-01-02")
		}
		if lb.GoneBy != nil {
			goneBy = lb.GoneBy.UTC().Format("2006-01-02")
		}
		lines = append(lines, fmt.Sprintf("%-12s %-8s %-9s %-9d %-9s %-9s %-10s %s", lb.Location, lb.Role, short(lb.RepositoryID, 8), lb.Snapshots,
			clock(newest), clock(lastCopy), oldest, goneBy))
	}
	d.block(strings.Join(lines, "\n"))
}

func short(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	if s == "" {
		return "-"
	}
	return s
}

// backups waits for the first snapshot and its offsite copy, then adds back-dated snapshots and shows that the
// next expiry run removes them.
func (d *demo) backups(ctx context.Context) error {
	d.say("custos takes the first snapshot as soon as the database exists (pg_dump run by restic, plus the tenant's")
	d.say("Kubernetes objects), then copies it offsite on the copy schedule, with a key of its own per repository.")
	t0 := time.Now()
	var t *custosv1alpha1.Tenant
	err := waitFor(ctx, "first snapshot and its offsite copy", 4*time.Minute, time.Second, func(ctx context.Context) (bool, string, error) {
		var err error
		if t, err = d.getTenant(ctx); err != nil {
			return false, "", err
		}
		p, o := locationStatus(t, primaryName), locationStatus(t, offsiteName)
		detail := fmt.Sprintf("primary %d snapshots %s, offsite %d snapshots %s", p.Snapshots, p.LastError, o.Snapshots, o.LastError)
		return p.Snapshots > 0 && p.RepositoryID != "" && o.Snapshots > 0 && o.RepositoryID != "" && o.LastCopy != nil, detail, nil
	})
	if err != nil {
		return err
	}
	d.say("First snapshot in %s and copied to %s (%s after the tenant was Active):", primaryName, offsiteName, time.Since(t0).Round(time.Second))
	d.printBackups(t)
	if c := meta.FindStatusCondition(t.Status.Conditions, custosv1alpha1.ConditionBackupsHealthy); c != nil {
		d.say("Condition BackupsHealthy=%s (%s): %s", c.Status, c.Reason, c.Message)
	}
	if dr := t.Status.LastDrill; dr != nil {
		d.say("Restore drill: snapshot %s restored into a scratch database, %d tables compared, succeeded=%t", short(dr.Snapshot, 8), dr.Tables, dr.Succeeded)
	}
	d.say("Repository keys live only in Secret %s/custos-repo-%s (one per location), never in the tenant's namespaces.", managerNamespace, tenantName)

	// Back-dated snapshots: what a repository holds after months of daily backups.
	ages := []int{120, 200, 400}
	d.say("")
	d.say("Now the demo adds %d snapshots dated %d, %d and %d days ago to both repositories (restic backup --time,", len(ages), ages[0], ages[1], ages[2])
	d.say("with the key from that Secret), as if the clinic had been backed up for over a year. keepWithin is 90d:")
	d.say("the next expiry run (every minute here, daily in production) must remove them, in both locations.")
	tmp, err := os.MkdirTemp(d.dir, "old-")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(tmp, "old.sql"), []byte("-- appointments of a long-gone winter\n"), 0o600); err != nil {
		return err
	}
	// What each repository holds, as restic lists it: the database snapshots (each slot also has one of the
	// Kubernetes objects), and which of ids are still there.
	type listing struct {
		db   int
		left int
	}
	list := func(ctx context.Context, ids map[string][]string) (map[string]listing, error) {
		out := map[string]listing{}
		for _, loc := range []string{primaryName, offsiteName} {
			r, err := d.repo(ctx, t, loc)
			if err != nil {
				return nil, err
			}
			snaps, err := r.Snapshots(ctx, "tenant="+t.Name)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", loc, err)
			}
			var l listing
			for _, s := range snaps {
				if s.Tag("kind") == "db" {
					l.db++
				}
				for _, id := range ids[loc] {
					if id != "" && (strings.HasPrefix(s.ID, id) || strings.HasPrefix(id, s.ID)) {
						l.left++
					}
				}
			}
			out[loc] = l
		}
		return out, nil
	}
	before, err := list(ctx, nil)
	if err != nil {
		return err
	}
	type added struct {
		loc string
		ids []string
		err error
	}
	results := make(chan added, 2)
	for _, loc := range []string{primaryName, offsiteName} {
		r, err := d.repo(ctx, t, loc)
		if err != nil {
			return err
		}
		r.Dir = tmp
		go func() { // both locations at once
			a := added{loc: loc}
			for _, age := range ages {
				at := time.Now().Add(-time.Duration(age) * 24 * time.Hour).UTC().Truncate(time.Second)
				res, err := r.BackupDir(ctx, t.Name, []string{"tenant=" + t.Name, "kind=db", "slot=" + backup.SlotTag(at)}, at, ".")
				if err != nil {
					a.err = fmt.Errorf("back-dated snapshot at %s: %w", loc, err)
					break
				}
				a.ids = append(a.ids, res.SnapshotID)
			}
			results <- a
		}()
	}
	ids := map[string][]string{}
	for range 2 {
		a := <-results
		if a.err != nil {
			return a.err
		}
		ids[a.loc] = a.ids
	}
	addedAt := time.Now()
	for _, loc := range []string{primaryName, offsiteName} {
		d.say("  %s: %d database snapshot(s) of today, plus the %d back-dated ones (%s)", loc, before[loc].db, len(ids[loc]), shortIDs(ids[loc]))
	}
	d.say("Waiting for the next expiry run (restic forget, by id, of the snapshots taken more than 90d ago, then prune) in both locations ...")

	// The run that removes them records how many it expired in the status (until the next run overwrites it).
	type run struct {
		slot time.Time
		n    int32
	}
	removedBy := map[string]run{}
	record := func(ctx context.Context) error {
		var err error
		if t, err = d.getTenant(ctx); err != nil {
			return err
		}
		for _, loc := range []string{primaryName, offsiteName} {
			if lb := locationStatus(t, loc); lb.LastExpiry != nil && !lb.LastExpiry.Add(time.Minute).Before(addedAt) && lb.ExpiredSnapshots > 0 {
				removedBy[loc] = run{slot: lb.LastExpiry.Time, n: lb.ExpiredSnapshots}
			}
		}
		return nil
	}
	var after map[string]listing
	err = waitFor(ctx, "expiry of the back-dated snapshots", 4*time.Minute, 2*time.Second, func(ctx context.Context) (bool, string, error) {
		if err := record(ctx); err != nil {
			return false, "", err
		}
		var err error
		if after, err = list(ctx, ids); err != nil {
			return false, "", err
		}
		return after[primaryName].left == 0 && after[offsiteName].left == 0,
			fmt.Sprintf("back-dated snapshots left: %s %d, %s %d", primaryName, after[primaryName].left, offsiteName, after[offsiteName].left), nil
	})
	if err != nil {
		return err
	}
	_ = waitFor(ctx, "the expiry in status", 10*time.Second, time.Second, func(ctx context.Context) (bool, string, error) {
		return len(removedBy) == 2, "", record(ctx)
	})
	for _, loc := range []string{primaryName, offsiteName} {
		ran := ""
		if r, ok := removedBy[loc]; ok {
			ran = fmt.Sprintf("; the expiry run of %s removed %d (status.backups[].expiredSnapshots)", clock(r.slot), r.n)
		}
		d.say("  %s: none of the %d back-dated snapshots left, %d database snapshot(s) of today%s", loc, len(ids[loc]), after[loc].db, ran)
	}
	d.say("  (a new snapshot arrives every minute, so today's count grows)")
	d.say("Every location's oldest snapshot and the date by which it is gone at the latest (oldest + keepWithin + one expiry run):")
	d.printBackups(t)
	return nil
}

func shortIDs(ids []string) string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = short(id, 8)
	}
	return strings.Join(out, ", ")
}
