package controllers

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/source"

	custosv1alpha1 "github.com/custos-io/custos/api/v1alpha1"
	"github.com/custos-io/custos/internal/conditions"
	"github.com/custos-io/custos/internal/evidence"
	"github.com/custos-io/custos/internal/lifecycle"
	"github.com/custos-io/custos/internal/metrics"
	"github.com/custos-io/custos/internal/restic"
	"github.com/custos-io/custos/internal/retention"
	"github.com/custos-io/custos/internal/runner"
)

const (
	// maxAttempts of one slot before it is given up (and reported); the next slot starts afresh.
	maxAttempts = 3
)

// TenantBackupReconciler schedules a tenant's backup work and records its results. It never runs the work
// itself: each due task is written to status first, then handed to the Runner; the result comes back as an
// event and is written to status by the next reconcile.
type TenantBackupReconciler struct {
	Client    client.Client
	APIReader client.Reader
	Recorder  events.EventRecorder
	Clock     clock.PassiveClock
	Namespace string
	Runner    runner.Runner
	// Done receives the tenants whose task finished.
	Done <-chan event.GenericEvent
	// RetryAfter is the first wait after a failed attempt (doubled for each further attempt).
	RetryAfter time.Duration
	// Audit records each finished task on the tenant's audit trail.
	Audit *AuditLog
}

// +kubebuilder:rbac:groups=custos.io,resources=backuplocations,verbs=get;list;watch

// backupScope is one reconcile's view.
type backupScope struct {
	tenant *custosv1alpha1.Tenant
	policy *custosv1alpha1.RetentionPolicy
	scheds retention.Schedules
	keep   time.Duration
	// keepInvalid says why keepWithin cannot be used ("" when it can): no expiry is planned.
	keepInvalid string
	maxAge      time.Duration
	primary     string
	offsite     string
	now         time.Time
	submit      []runner.Spec
	requeue     time.Duration
	// recorded are the runner results this reconcile wrote to status; they are forgotten once the write succeeds.
	recorded []string
}

func (s *backupScope) requeueAfter(d time.Duration) {
	if d < time.Second {
		d = time.Second
	}
	if s.requeue == 0 || d < s.requeue {
		s.requeue = d
	}
}

// Reconcile takes finished results, plans what is due, records it, and submits it.
func (r *TenantBackupReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var t custosv1alpha1.Tenant
	if err := r.Client.Get(ctx, req.NamespacedName, &t); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if t.Status.Database == nil && len(t.Status.Backups) == 0 {
		return ctrl.Result{}, nil // nothing to back up until the database exists; the tenant's status change brings us back
	}
	base := t.DeepCopy()
	s := &backupScope{tenant: &t, now: r.Clock.Now().UTC()}
	logger := log.FromContext(ctx).WithValues("tenant", t.Name)
	ctx = log.IntoContext(ctx, logger)
	if t.Disposing() {
		return ctrl.Result{}, r.drain(ctx, base, &t)
	}

	if !t.Status.Phase.ExitStarted() {
		r.legalHold(ctx, s) // from the exit on, the exit controller shows the hold
	}
	err := r.loadPolicy(ctx, s)
	if err == nil {
		err = r.ensureRepoKeys(ctx, s)
	}
	if err != nil {
		var pe *policyError
		if !errors.As(err, &pe) {
			return ctrl.Result{}, err
		}
		meta.SetStatusCondition(&t.Status.Conditions, metav1.Condition{Type: custosv1alpha1.ConditionBackupsHealthy,
			Status: metav1.ConditionFalse, Reason: pe.reason, Message: pe.msg, ObservedGeneration: t.Generation})
		return ctrl.Result{RequeueAfter: r.RetryAfter}, r.patch(ctx, base, &t)
	}
	r.collect(ctx, s)
	r.plan(s)
	r.health(s)
	stopForLostDatabase(s)
	metrics.FromStatus(&t)
	if err := r.patch(ctx, base, &t); err != nil {
		return ctrl.Result{}, err // nothing submitted or forgotten: the next reconcile records and submits again
	}
	for _, key := range s.recorded {
		r.Runner.Forget(key)
	}
	for _, sp := range s.submit {
		if r.Runner.Submit(sp) {
			logger.V(1).Info("Submitted a backup task", "kind", sp.Kind, "location", sp.Location, "slot", sp.Slot)
		}
	}
	return ctrl.Result{RequeueAfter: s.requeue}, nil
}

// legalHold shows a legal hold on a tenant whose contract runs (the LegalHold condition, with its reason) and
// records it on the audit trail when it is set and when it is lifted: the hold stops every expiry, and that must
// be visible and on the record, not only in the exit.
func (r *TenantBackupReconciler) legalHold(ctx context.Context, s *backupScope) {
	t := s.tenant
	c := meta.FindStatusCondition(t.Status.Conditions, custosv1alpha1.ConditionLegalHold)
	if h := t.Spec.LegalHold; lifecycle.HoldActive(h, s.now) {
		msg := "a legal hold stops every expiry and every destructive step; new snapshots go on: " + h.Reason
		if h.Until != nil {
			msg += "; until " + h.Until.UTC().Format(time.RFC3339)
			s.requeueAfter(h.Until.Sub(s.now))
		}
		if c == nil || c.Status != metav1.ConditionTrue {
			// Shown once it is on the trail; a failed append (AuditTrail says why) is tried again next time. The
			// hold itself stops expiry from spec, whatever the condition says.
			if err := r.Audit.Record(ctx, t, evidence.ActionLegalHoldSet, map[string]string{"reason": h.Reason,
				auditStepKey: fmt.Sprintf("%s/generation-%d", evidence.ActionLegalHoldSet, t.Generation)}); err != nil {
				return
			}
			r.Recorder.Eventf(t, nil, corev1.EventTypeNormal, custosv1alpha1.ReasonLegalHoldActive, "LegalHold", "%s", msg)
		}
		conditions.Set(&t.Status.Conditions, t.Generation, custosv1alpha1.ConditionLegalHold, true, custosv1alpha1.ReasonLegalHoldActive, msg)
		return
	}
	if c != nil && c.Status == metav1.ConditionTrue {
		if err := r.Audit.Record(ctx, t, evidence.ActionLegalHoldLifted, map[string]string{auditStepKey: fmt.Sprintf("%s/generation-%d", evidence.ActionLegalHoldLifted, t.Generation)}); err != nil {
			return
		}
		conditions.Set(&t.Status.Conditions, t.Generation, custosv1alpha1.ConditionLegalHold, false, custosv1alpha1.ReasonLegalHoldExpired,
			"the legal hold is lifted or has passed its until date; expiry resumes")
	}
}

func (r *TenantBackupReconciler) patch(ctx context.Context, base, t *custosv1alpha1.Tenant) error {
	err := r.Client.Status().Patch(ctx, t, client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{}))
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

type policyError struct{ reason, msg string }

func (e *policyError) Error() string { return e.msg }

// loadPolicy reads the policy and its locations and checks the jurisdictions: nothing is stored where the
// policy does not allow it.
func (r *TenantBackupReconciler) loadPolicy(ctx context.Context, s *backupScope) error {
	var p custosv1alpha1.RetentionPolicy
	if err := r.Client.Get(ctx, client.ObjectKey{Name: s.tenant.Spec.RetentionPolicyRef.Name}, &p); err != nil {
		if apierrors.IsNotFound(err) {
			return &policyError{custosv1alpha1.ReasonNotFound, fmt.Sprintf("RetentionPolicy %q does not exist: no backups are taken", s.tenant.Spec.RetentionPolicyRef.Name)}
		}
		return err
	}
	var bls custosv1alpha1.BackupLocationList
	if err := r.Client.List(ctx, &bls); err != nil {
		return err
	}
	locations := map[string]*custosv1alpha1.BackupLocation{}
	for i := range bls.Items {
		locations[bls.Items[i].Name] = &bls.Items[i]
	}
	if ok, reason, msg := policyProblem(&p, locations); !ok {
		return &policyError{reason, fmt.Sprintf("RetentionPolicy %s: %s", p.Name, msg)}
	}
	sc, err := parseSchedules(&p)
	if err != nil {
		return &policyError{custosv1alpha1.ReasonScheduleInvalid, err.Error()}
	}
	s.policy, s.scheds = &p, sc
	if s.keep, err = p.Spec.KeepWithin.Parse(); err != nil {
		// Never a window of 0 (everything expired) because a duration did not parse or overflowed: snapshots go
		// on, expiry waits until the policy is fixed, and BackupsHealthy says why.
		s.keepInvalid = fmt.Sprintf("RetentionPolicy %s: keepWithin %q is not usable, no expiry runs until it is fixed: %v", p.Name, p.Spec.KeepWithin, err)
	}
	s.maxAge = 26 * time.Hour
	if p.Spec.MaxSnapshotAge != "" {
		s.maxAge, _ = p.Spec.MaxSnapshotAge.Parse()
	}
	s.primary = p.Spec.Primary.Name
	if p.Spec.Offsite != nil {
		s.offsite = p.Spec.Offsite.Name
	}
	return nil
}

func parseSchedules(p *custosv1alpha1.RetentionPolicy) (retention.Schedules, error) {
	var out retention.Schedules
	var err error
	for _, x := range []struct {
		dst *retention.Schedule
		src custosv1alpha1.Schedule
	}{
		{&out.Snapshot, p.Spec.Schedule}, {&out.Copy, p.Spec.CopySchedule}, {&out.Expiry, p.Spec.ExpirySchedule},
		{&out.Check, p.Spec.Check.Schedule}, {&out.Drill, p.Spec.RestoreDrill.Schedule},
	} {
		if *x.dst, err = retention.ParseSchedule(x.src); err != nil {
			return out, err
		}
	}
	out.DrillEnabled = p.Spec.RestoreDrill.Enabled == nil || *p.Spec.RestoreDrill.Enabled
	return out, nil
}

// ensureRepoKeys makes sure each location of the policy has a repository key in the tenant's key Secret. A key
// is made once and never replaced: a location whose repository exists (its id is in status) but whose key is
// gone is reported, not given a new key, which could not open the repository anyway.
func (r *TenantBackupReconciler) ensureRepoKeys(ctx context.Context, s *backupScope) error {
	t := s.tenant
	key := client.ObjectKey{Namespace: r.Namespace, Name: t.RepoKeySecretName()}
	sec := &corev1.Secret{}
	err := r.APIReader.Get(ctx, key, sec)
	if err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	exists := err == nil
	if exists && sec.Labels[custosv1alpha1.LabelTenant] != t.Name {
		return &policyError{custosv1alpha1.ReasonRepositoryKeyMissing, (&errForeignSecret{key: key}).Error()}
	}
	if !exists {
		sec = &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: key.Name, Namespace: key.Namespace,
			Labels: mergeLabels(map[string]string{custosv1alpha1.LabelPurpose: custosv1alpha1.PurposeRepositoryKeys}, t.ManagedLabels())}, Type: corev1.SecretTypeOpaque}
	}
	changed := false
	for _, loc := range []string{s.primary, s.offsite} {
		if loc == "" || len(sec.Data[loc]) > 0 {
			continue
		}
		if lb := t.LocationStatus(loc); lb != nil && lb.RepositoryID != "" {
			return &policyError{custosv1alpha1.ReasonRepositoryKeyMissing, fmt.Sprintf("the key of repository %s at %s is missing from Secret %s: custos does not make a new key for an existing repository; restore the Secret from your key escrow", lb.RepositoryID, loc, key)}
		}
		if sec.Data == nil {
			sec.Data = map[string][]byte{}
		}
		pw := make([]byte, 32)
		if _, err := rand.Read(pw); err != nil {
			return err
		}
		sec.Data[loc] = []byte(base64.RawURLEncoding.EncodeToString(pw))
		changed = true
	}
	if !changed {
		return nil
	}
	if exists {
		return r.Client.Update(ctx, sec) // optimistic: a concurrent writer makes this fail and the reconcile retry
	}
	return r.Client.Create(ctx, sec)
}

func (s *backupScope) location(loc, role string) *custosv1alpha1.LocationBackupStatus {
	if lb := s.tenant.LocationStatus(loc); lb != nil {
		lb.Role = role
		return lb
	}
	s.tenant.Status.Backups = append(s.tenant.Status.Backups, custosv1alpha1.LocationBackupStatus{Location: loc, Role: role})
	return &s.tenant.Status.Backups[len(s.tenant.Status.Backups)-1]
}

func specOf(t *custosv1alpha1.Tenant, task custosv1alpha1.BackupTask) runner.Spec {
	return runner.Spec{Tenant: t.Name, Kind: task.Kind, Location: task.Location, Slot: task.Slot.UTC(), Attempt: int(task.Attempts)}
}

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

// Roles of a location in status.backups.
const (
	rolePrimary = "Primary"
	roleOffsite = "Offsite"
	roleRetired = "Retired"
)

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
		if st.Succeeded {
			r.Recorder.Eventf(t, nil, corev1.EventTypeNormal, custosv1alpha1.ReasonRestoreDrillSucceeded, "Drill",
				"snapshot %s restored in %s: %d tables, row counts and checksums match", short(st.Snapshot), d.Duration.Round(time.Millisecond), d.Tables)
		} else {
			r.Recorder.Eventf(t, nil, corev1.EventTypeWarning, custosv1alpha1.ReasonRestoreDrillFailed, "Drill", "snapshot %s: %s", short(st.Snapshot), st.Message)
		}
	}
	metrics.TaskResult(task.Kind, true, duration)
	detail := map[string]string{"location": task.Location, "slot": task.Slot.UTC().Format(time.RFC3339), "duration": duration.Round(time.Millisecond).String(),
		auditStepKey: task.Key}
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

// drain lets running tasks finish and drops the rest: the exit controller destroys the repositories once no
// task of the tenant is left in status.
func (r *TenantBackupReconciler) drain(ctx context.Context, base, t *custosv1alpha1.Tenant) error {
	var recorded []string
	kept := t.Status.Tasks[:0]
	for _, task := range t.Status.Tasks {
		sp := specOf(t, task)
		if _, ok := r.Runner.Result(sp.Key()); ok {
			recorded = append(recorded, sp.Key())
			continue
		}
		if r.Runner.Active(sp.Key()) {
			kept = append(kept, task)
		}
	}
	t.Status.Tasks, t.Status.NextBackup = kept, nil
	for i := range t.Status.Backups {
		t.Status.Backups[i].NextRun = nil
	}
	meta.SetStatusCondition(&t.Status.Conditions, metav1.Condition{Type: custosv1alpha1.ConditionBackupsHealthy, Status: metav1.ConditionUnknown,
		Reason: custosv1alpha1.ReasonBackupsDisposed, Message: "the exit destroys the tenant's backup repositories: no backup task runs any more", ObservedGeneration: t.Generation})
	if err := r.patch(ctx, base, t); err != nil {
		return err
	}
	for _, key := range recorded {
		r.Runner.Forget(key)
	}
	return nil
}

// SetupWithManager registers the reconciler. It runs as its own controller on Tenants: results of the runner
// arrive through Done; a tenant's status changes (database provisioned, phase) wake it too.
func (r *TenantBackupReconciler) SetupWithManager(mgr ctrl.Manager, concurrency int) error {
	return ctrl.NewControllerManagedBy(mgr).
		For(&custosv1alpha1.Tenant{}, builder.WithPredicates(predicate.Funcs{
			UpdateFunc: func(e event.UpdateEvent) bool {
				o, n := e.ObjectOld.(*custosv1alpha1.Tenant), e.ObjectNew.(*custosv1alpha1.Tenant)
				return o.Generation != n.Generation || o.Status.Phase != n.Status.Phase || (o.Status.Database == nil) != (n.Status.Database == nil) ||
					o.Disposing() != n.Disposing() || o.DatabaseLost() != n.DatabaseLost()
			},
		})).
		WatchesRawSource(source.Channel(r.Done, &handler.EnqueueRequestForObject{})).
		Watches(&custosv1alpha1.RetentionPolicy{}, handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []ctrl.Request {
			var list custosv1alpha1.TenantList
			if err := mgr.GetClient().List(ctx, &list); err != nil {
				return nil
			}
			var out []ctrl.Request
			for _, t := range list.Items {
				if t.Spec.RetentionPolicyRef.Name == o.GetName() {
					out = append(out, ctrl.Request{NamespacedName: client.ObjectKey{Name: t.Name}})
				}
			}
			return out
		}), builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		WithOptions(controller.Options{MaxConcurrentReconciles: concurrency}).
		Named("tenant-backup").
		Complete(r)
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
