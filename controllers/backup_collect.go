package controllers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/log"

	custosv1alpha1 "github.com/custos-io/custos/api/v1alpha1"
	"github.com/custos-io/custos/internal/audittrail"
	"github.com/custos-io/custos/internal/conditions"
	"github.com/custos-io/custos/internal/evidence"
	"github.com/custos-io/custos/internal/lifecycle"
	"github.com/custos-io/custos/internal/metrics"
	"github.com/custos-io/custos/internal/restic"
	"github.com/custos-io/custos/internal/retention"
	"github.com/custos-io/custos/internal/runner"
)

// collect applies finished results and decides what happens to tasks the runner does not know (a restart).
func (r *TenantBackupReconciler) collect(ctx context.Context, s *backupScope) {
	t := s.tenant
	kept := t.Status.Tasks[:0]
	for _, task := range t.Status.Tasks {
		sp := specOf(t, task)
		if res, ok := r.Runner.Result(sp.Key()); ok {
			s.recorded = append(s.recorded, sp.Key())
			var held *errHeld
			if errors.As(res.Err, &held) {
				// Stopped by a legal hold before it forgot anything: the slot is not answered, so the plan asks
				// for the expiry again once the hold is lifted.
				r.Recorder.Eventf(t, nil, corev1.EventTypeNormal, custosv1alpha1.ReasonLegalHoldActive, "Expiry", "expiry at %s stopped: %s", task.Location, res.Err)
				continue
			}
			if errors.Is(res.Err, errLostHeld) {
				// Held back because the database went missing after it was submitted: not answered either, so it
				// is asked for again once a person accepts the loss (stopForLostDatabase says why meanwhile).
				continue
			}
			if res.Err == nil {
				if err := r.succeeded(ctx, s, task, res); err != nil {
					// The task is done only once its audit entry is written: keep it and its result, and record
					// it again (once: its key is the entry's step key) on the next reconcile.
					s.recorded = s.recorded[:len(s.recorded)-1]
					kept = append(kept, task)
					s.requeueAfter(r.RetryAfter)
				}
				continue
			}
			task.LastError = conditions.Truncate(res.Err.Error(), 4000)
			if task.Attempts >= maxAttempts {
				r.givenUp(s, task, res.Err)
				continue
			}
			nb := metav1.NewTime(s.now.Add(r.RetryAfter << (task.Attempts - 1)))
			task.NotBefore = &nb
			lb := s.location(task.Location, roleOf(s, task.Location))
			lb.LastError = fmt.Sprintf("%s: %s (attempt %d of %d)", task.Kind, task.LastError, task.Attempts, maxAttempts)
			lb.LastErrorReason = errorReason(res.Err)
			kept = append(kept, task)
			continue
		}
		if r.Runner.Active(sp.Key()) {
			kept = append(kept, task)
			continue
		}
		// Recorded but not running: a retry that is due, or a task a previous manager was running when it stopped.
		if task.Kind == custosv1alpha1.TaskExpiry && lifecycle.HoldActive(t.Spec.LegalHold, s.now) {
			// A legal hold stops all destruction, also of an expiry recorded before it: the task is dropped
			// unstarted, and the plan asks for the slot again once the hold is lifted.
			r.Recorder.Eventf(t, nil, corev1.EventTypeNormal, custosv1alpha1.ReasonLegalHoldActive, "Expiry",
				"the expiry recorded for %s at %s is not started: a legal hold (%s) applies", task.Slot.UTC().Format(time.RFC3339), task.Location, t.Spec.LegalHold.Reason)
			continue
		}
		if task.NotBefore != nil && task.NotBefore.After(s.now) {
			s.requeueAfter(task.NotBefore.Sub(s.now))
			kept = append(kept, task)
			continue
		}
		if task.Attempts >= maxAttempts {
			r.givenUp(s, task, fmt.Errorf("%d attempts did not finish", task.Attempts))
			continue
		}
		task.Attempts++
		started := metav1.NewTime(s.now)
		task.StartedAt, task.NotBefore = &started, nil
		s.submit = append(s.submit, specOf(t, task))
		kept = append(kept, task)
	}
	t.Status.Tasks = kept
}

func roleOf(s *backupScope, loc string) string {
	switch {
	case loc != "" && loc == s.offsite:
		return roleOffsite
	case loc == s.primary || s.primary == "":
		return rolePrimary
	}
	return roleRetired
}

// retired are the locations in status.backups with a repository that the policy names no longer.
func (s *backupScope) retired() []string {
	var out []string
	for _, lb := range s.tenant.Status.Backups {
		if lb.Location != s.primary && lb.Location != s.offsite && lb.RepositoryID != "" {
			out = append(out, lb.Location)
		}
	}
	return out
}

// answered marks the task's slot as done at its location, so the plan moves on to the next slot.
func answered(s *backupScope, task custosv1alpha1.BackupTask) *custosv1alpha1.LocationBackupStatus {
	lb := s.location(task.Location, roleOf(s, task.Location))
	slot := task.Slot.DeepCopy()
	switch task.Kind {
	case custosv1alpha1.TaskSnapshot:
		lb.LastSnapshotSlot = slot
	case custosv1alpha1.TaskCopy:
		lb.LastCopySlot = slot
	case custosv1alpha1.TaskExpiry:
		lb.LastExpiry = slot
	case custosv1alpha1.TaskCheck:
		lb.LastCheck = slot
	case custosv1alpha1.TaskDrill:
		if s.tenant.Status.LastDrill == nil {
			s.tenant.Status.LastDrill = &custosv1alpha1.RestoreDrillStatus{Time: metav1.NewTime(s.now)}
		}
		s.tenant.Status.LastDrill.Slot = slot
	}
	return lb
}

func (r *TenantBackupReconciler) givenUp(s *backupScope, task custosv1alpha1.BackupTask, err error) {
	lb := answered(s, task)
	lb.LastError = conditions.Truncate(fmt.Sprintf("%s of %s gave up after %d attempts: %v", task.Kind, task.Slot.UTC().Format(time.RFC3339), task.Attempts, err), 4000)
	lb.LastErrorReason = errorReason(err)
	if task.Kind == custosv1alpha1.TaskDrill {
		s.tenant.Status.LastDrill = &custosv1alpha1.RestoreDrillStatus{Time: metav1.NewTime(s.now), Slot: task.Slot.DeepCopy(), Succeeded: false, Message: conditions.Truncate(err.Error(), 4000)}
	}
	r.Recorder.Eventf(s.tenant, nil, corev1.EventTypeWarning, errorReason(err), string(task.Kind), "%s", lb.LastError)
	metrics.TaskResult(task.Kind, false, 0)
}

// errorReason is a condition reason for a task failure.
func errorReason(err error) string {
	var tooLarge *errObjectsTooLarge
	if errors.As(err, &tooLarge) {
		return custosv1alpha1.ReasonObjectsTooLarge
	}
	var held *errHeld
	if errors.As(err, &held) {
		return custosv1alpha1.ReasonLegalHoldActive
	}
	if errors.Is(err, errLostHeld) {
		return custosv1alpha1.ReasonDatabaseMissing
	}
	var re *restic.Error
	if errors.As(err, &re) {
		return re.Reason()
	}
	var pe *probeError
	var se *errSecret
	var nb *errSecretNotBound
	if errors.As(err, &pe) || errors.As(err, &se) || errors.As(err, &nb) {
		return probeReason(err)
	}
	return custosv1alpha1.ReasonTaskFailed
}

// applySummaries records what a task read from each repository it touched. Figures listed before the ones already
// recorded are stale (the task overlapped one at that location that changed it) and are skipped.
func applySummaries(s *backupScope, sums map[string]locationSummary) {
	for loc, sum := range sums {
		l := s.location(loc, roleOf(s, loc))
		if l.ListedAt != nil && !sum.ListedAt.IsZero() && sum.ListedAt.Before(l.ListedAt.Time) {
			continue
		}
		l.RepositoryID = sum.RepositoryID
		l.Snapshots = int32(sum.Snapshots)
		l.Oldest, l.Newest = timePtr(sum.Oldest), timePtr(sum.Newest)
		l.ListedAt = nil
		if !sum.ListedAt.IsZero() {
			at := metav1.NewMicroTime(sum.ListedAt)
			l.ListedAt = &at
		}
		l.GoneBy = nil
		if sum.Snapshots > 0 {
			gone := retention.GoneBy(sum.Oldest, s.keep, s.scheds.Expiry, retention.ScheduleKey(s.tenant.Name, retention.KindExpiry, loc))
			l.GoneBy = timePtr(gone)
		}
	}
}

func (r *TenantBackupReconciler) succeeded(ctx context.Context, s *backupScope, task custosv1alpha1.BackupTask, res runner.Result) error {
	t := s.tenant
	var out taskOutput
	if err := json.Unmarshal(res.Output, &out); err != nil {
		log.FromContext(ctx).Error(err, "Unreadable task output", "kind", task.Kind)
	}
	lb := answered(s, task)
	lb.LastError, lb.LastErrorReason = "", ""
	applySummaries(s, out.Locations)
	duration := res.Finished.Sub(res.Started)
	passed := true
	switch task.Kind {
	case custosv1alpha1.TaskSnapshot:
		sn := out.Snapshot
		if sn != nil && !sn.Reused {
			r.Recorder.Eventf(t, nil, corev1.EventTypeNormal, "SnapshotTaken", "Snapshot",
				"snapshot %s at %s: %d tables, %d rows, %d bytes dumped, %d bytes added", short(sn.DBSnapshot), task.Location, sn.Tables, sn.Rows, sn.DumpBytes, sn.DataAdded)
		}
	case custosv1alpha1.TaskCopy:
		now := metav1.NewTime(res.Finished)
		lb.LastCopy = &now
		r.Recorder.Eventf(t, nil, corev1.EventTypeNormal, "SnapshotsCopied", "Copy", "offsite %s holds %d snapshots", task.Location, lb.Snapshots)
	case custosv1alpha1.TaskExpiry:
		lb.ExpiredSnapshots = int32(out.Expired)
		if out.Expired > 0 || out.DeletedVersions > 0 {
			r.Recorder.Eventf(t, nil, corev1.EventTypeNormal, "SnapshotsExpired", "Expiry",
				"%d snapshots older than %s forgotten and pruned at %s (%d noncurrent object versions deleted)", out.Expired, s.policy.Spec.KeepWithin, task.Location, out.DeletedVersions)
		}
	case custosv1alpha1.TaskCheck:
		ok := out.CheckError == ""
		lb.LastCheckSucceeded = &ok
		passed = ok
		if !ok {
			lb.LastError, lb.LastErrorReason = "integrity check: "+out.CheckError, custosv1alpha1.ReasonIntegrityCheckFailed
			r.Recorder.Eventf(t, nil, corev1.EventTypeWarning, custosv1alpha1.ReasonIntegrityCheckFailed, "Check", "%s: %s", task.Location, out.CheckError)
		}
	case custosv1alpha1.TaskDrill:
		d := out.Drill
		st := &custosv1alpha1.RestoreDrillStatus{Time: metav1.NewTime(res.Started), Slot: task.Slot.DeepCopy()}
		if d != nil {
			st.Snapshot, st.Tables = d.Snapshot, int32(d.Tables)
			st.Duration = &metav1.Duration{Duration: d.Duration}
			st.Succeeded = len(d.Differences) == 0
			st.Message = conditions.Truncate(strings.Join(d.Differences, "; "), 4000)
		}
		t.Status.LastDrill = st
		passed = st.Succeeded
		if st.Succeeded {
			r.Recorder.Eventf(t, nil, corev1.EventTypeNormal, custosv1alpha1.ReasonRestoreDrillSucceeded, "Drill",
				"snapshot %s restored in %s: %d tables, row counts and checksums match", short(st.Snapshot), d.Duration.Round(time.Millisecond), d.Tables)
		} else {
			r.Recorder.Eventf(t, nil, corev1.EventTypeWarning, custosv1alpha1.ReasonRestoreDrillFailed, "Drill", "snapshot %s: %s", short(st.Snapshot), st.Message)
		}
	}
	// A check that found damage, or a drill whose data differs, ran to the end and failed what it tests: a failure.
	metrics.TaskResult(task.Kind, passed, duration)
	detail := map[string]string{"location": task.Location, "slot": task.Slot.UTC().Format(time.RFC3339), "duration": duration.Round(time.Millisecond).String(),
		audittrail.StepKey: task.Key}
	action := evidence.Action(task.Kind)
	switch {
	case task.Kind == custosv1alpha1.TaskSnapshot && out.Snapshot != nil:
		detail["snapshot"], detail["objectsSnapshot"] = out.Snapshot.DBSnapshot, out.Snapshot.ObjectsSnapshot
	case task.Kind == custosv1alpha1.TaskExpiry:
		detail["expired"] = fmt.Sprint(out.Expired)
		detail["deletedVersions"] = fmt.Sprint(out.DeletedVersions)
	case task.Kind == custosv1alpha1.TaskCheck:
		detail["succeeded"] = fmt.Sprint(out.CheckError == "")
	case task.Kind == custosv1alpha1.TaskDrill && t.Status.LastDrill != nil:
		detail["snapshot"], detail["succeeded"] = t.Status.LastDrill.Snapshot, fmt.Sprint(t.Status.LastDrill.Succeeded)
	}
	return r.Audit.Record(ctx, t, action, detail)
}

func short(id string) string {
	if len(id) > 8 {
		return id[:8]
	}
	return id
}
