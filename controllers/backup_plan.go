package controllers

import (
	"cmp"
	"fmt"
	"sort"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	custosv1alpha1 "github.com/custos-io/custos/api/v1alpha1"
	"github.com/custos-io/custos/internal/conditions"
	"github.com/custos-io/custos/internal/lifecycle"
	"github.com/custos-io/custos/internal/retention"
)

func timePtr(t time.Time) *metav1.Time {
	if t.IsZero() {
		return nil
	}
	m := metav1.NewTime(t.UTC())
	return &m
}

func timeOf(m *metav1.Time) *time.Time {
	if m == nil {
		return nil
	}
	t := m.Time
	return &t
}

// plan records the due tasks that are not recorded yet.
func (r *TenantBackupReconciler) plan(s *backupScope) {
	t := s.tenant
	busy := map[string]bool{}
	have := map[string]bool{}
	for _, task := range t.Status.Tasks {
		busy[string(task.Kind)] = true
		have[specOf(t, task).TaskKey()] = true
	}
	state := func(loc string, offsite bool) retention.LocationState {
		st := retention.LocationState{Name: loc, Offsite: offsite}
		if lb := t.LocationStatus(loc); lb != nil {
			st.Repository = lb.RepositoryID != ""
			st.Snapshots = int(lb.Snapshots)
			st.LastSnapshot, st.LastCopy = timeOf(lb.LastSnapshotSlot), timeOf(lb.LastCopySlot)
			st.LastExpiry, st.LastCheck = timeOf(lb.LastExpiry), timeOf(lb.LastCheck)
		}
		return st
	}
	hold := lifecycle.HoldActive(t.Spec.LegalHold, s.now)
	in := retention.PlanInput{Tenant: t.Name, Primary: state(s.primary, false), Busy: busy, Hold: hold || s.keepInvalid != "",
		TakeNew: t.Status.Phase == custosv1alpha1.TenantActive && t.Status.Database != nil}
	for _, loc := range s.retired() {
		in.Retired = append(in.Retired, state(loc, false))
	}
	if s.offsite != "" {
		o := state(s.offsite, true)
		in.Offsite = &o
	}
	if t.Status.LastDrill != nil {
		in.LastDrill = timeOf(t.Status.LastDrill.Slot)
	}
	due, next := retention.Plan(in, s.scheds, s.now) // a legal hold (Hold) plans no expiry: it resumes when lifted
	for _, d := range due {
		task := custosv1alpha1.BackupTask{Kind: custosv1alpha1.TaskKind(d.Kind), Location: d.Location, Slot: metav1.NewTime(d.Slot), Attempts: 1}
		sp := specOf(t, task)
		task.Key = sp.TaskKey()
		if have[task.Key] || len(t.Status.Tasks) >= 32 {
			continue
		}
		started := metav1.NewTime(s.now)
		task.StartedAt = &started
		t.Status.Tasks = append(t.Status.Tasks, task)
		s.submit = append(s.submit, sp)
	}
	sort.Slice(t.Status.Tasks, func(i, j int) bool { return t.Status.Tasks[i].Key < t.Status.Tasks[j].Key })
	if !next.IsZero() {
		s.requeueAfter(next.Sub(s.now))
	}
	snapNext := s.scheds.Snapshot.Next(retention.ScheduleKey(t.Name, retention.KindSnapshot, s.primary), s.now)
	if in.TakeNew {
		t.Status.NextBackup = timePtr(snapNext)
	} else {
		t.Status.NextBackup = nil
	}
	for _, lb := range append([]string{s.primary, s.offsite}, s.retired()...) {
		if lb == "" {
			continue
		}
		l := s.location(lb, roleOf(s, lb))
		kind := retention.KindSnapshot
		sched := s.scheds.Snapshot
		if lb == s.offsite {
			kind, sched = retention.KindCopy, s.scheds.Copy
		}
		if l.Role == roleRetired {
			l.NextRun = nil
			if l.Snapshots > 0 {
				l.NextRun = timePtr(s.scheds.Expiry.Next(retention.ScheduleKey(t.Name, retention.KindExpiry, lb), s.now))
			}
			continue
		}
		if in.TakeNew {
			l.NextRun = timePtr(sched.Next(retention.ScheduleKey(t.Name, kind, lb), s.now))
		} else {
			l.NextRun = timePtr(s.scheds.Expiry.Next(retention.ScheduleKey(t.Name, retention.KindExpiry, lb), s.now))
		}
	}
}

// health sets BackupsHealthy: False when a location's newest snapshot is older than maxSnapshotAge (or there is
// none and the tenant has been Active that long), or when the latest work at a location failed; it says which
// location and why.
func (r *TenantBackupReconciler) health(s *backupScope) {
	t := s.tenant
	if t.Status.Phase != custosv1alpha1.TenantActive {
		meta.SetStatusCondition(&t.Status.Conditions, metav1.Condition{Type: custosv1alpha1.ConditionBackupsHealthy, Status: metav1.ConditionUnknown,
			Reason: custosv1alpha1.ReasonBackupsNotActive, Message: fmt.Sprintf("the tenant is %s: no new snapshots are taken; expiry goes on", t.Status.Phase), ObservedGeneration: t.Generation})
		return
	}
	var problems []string
	reason := ""
	status := metav1.ConditionTrue
	pending := false
	for _, loc := range []string{s.primary, s.offsite} {
		if loc == "" {
			continue
		}
		lb := t.LocationStatus(loc)
		role := strings.ToLower(roleOf(s, loc))
		switch {
		case lb == nil || lb.Newest == nil:
			since := t.CreationTimestamp.Time
			if s.now.Sub(since) > s.maxAge {
				problems = append(problems, fmt.Sprintf("%s %s holds no snapshot", role, loc))
				reason = custosv1alpha1.ReasonSnapshotTooOld
			} else {
				pending = true
			}
		case s.now.Sub(lb.Newest.Time) > s.maxAge:
			problems = append(problems, fmt.Sprintf("the newest snapshot at %s %s is from %s, older than %s", role, loc, lb.Newest.UTC().Format(time.RFC3339), s.policy.Spec.MaxSnapshotAge))
			reason = custosv1alpha1.ReasonSnapshotTooOld
		}
		if lb != nil && lb.LastError != "" {
			problems = append(problems, fmt.Sprintf("%s %s: %s", role, loc, lb.LastError))
			if reason == "" {
				reason = cmp.Or(lb.LastErrorReason, custosv1alpha1.ReasonTaskFailed)
			}
		}
	}
	if s.keepInvalid != "" {
		problems, reason = append(problems, s.keepInvalid), cmp.Or(reason, custosv1alpha1.ReasonScheduleInvalid)
	}
	for _, loc := range s.retired() {
		if lb := t.LocationStatus(loc); lb != nil && lb.LastError != "" {
			problems = append(problems, fmt.Sprintf("retired %s (no longer in the policy, still expired): %s", loc, lb.LastError))
			if reason == "" {
				reason = cmp.Or(lb.LastErrorReason, custosv1alpha1.ReasonTaskFailed)
			}
		}
	}
	msg := fmt.Sprintf("snapshots younger than %s in every location", s.policy.Spec.MaxSnapshotAge)
	switch {
	case len(problems) > 0:
		status, msg = metav1.ConditionFalse, strings.Join(problems, "; ")
	case pending:
		status, reason, msg = metav1.ConditionUnknown, custosv1alpha1.ReasonNoSnapshotYet, "the first snapshot and copy are on their way"
	default:
		reason = custosv1alpha1.ReasonSnapshotsFresh
	}
	meta.SetStatusCondition(&t.Status.Conditions, metav1.Condition{Type: custosv1alpha1.ConditionBackupsHealthy, Status: status,
		Reason: reason, Message: conditions.Truncate(msg, 4000), ObservedGeneration: t.Generation})
}

// stopForLostDatabase holds back, while the tenant's recorded database is missing (see database_missing.go),
// every task this reconcile would start but the integrity check: no snapshot of an empty stand-in, no copy or
// drill, and no expiry, so the snapshots of the lost database stay until a person decides. A task already
// running finishes. BackupsHealthy says so.
func stopForLostDatabase(s *backupScope) {
	t := s.tenant
	if !t.DatabaseLost() {
		return
	}
	held := map[string]bool{}
	submit := s.submit[:0]
	for _, sp := range s.submit {
		if sp.Kind != custosv1alpha1.TaskCheck {
			held[sp.TaskKey()] = true
			continue
		}
		submit = append(submit, sp)
	}
	s.submit = submit
	kept := t.Status.Tasks[:0]
	for _, task := range t.Status.Tasks {
		if !held[specOf(t, task).TaskKey()] {
			kept = append(kept, task)
		}
	}
	t.Status.Tasks, t.Status.NextBackup = kept, nil
	meta.SetStatusCondition(&t.Status.Conditions, metav1.Condition{Type: custosv1alpha1.ConditionBackupsHealthy, Status: metav1.ConditionFalse,
		Reason: custosv1alpha1.ReasonDatabaseMissing, ObservedGeneration: t.Generation,
		Message: "the tenant's database is missing (see DatabaseReady): no snapshot is taken and none expires until a person accepts the loss"})
}
