package controllers

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
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
	"github.com/custos-io/custos/internal/audittrail"
	"github.com/custos-io/custos/internal/conditions"
	"github.com/custos-io/custos/internal/evidence"
	"github.com/custos-io/custos/internal/lifecycle"
	"github.com/custos-io/custos/internal/metrics"
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
	Audit *audittrail.Store
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
				audittrail.StepKey: fmt.Sprintf("%s/generation-%d", evidence.ActionLegalHoldSet, t.Generation)}); err != nil {
				return
			}
			r.Recorder.Eventf(t, nil, corev1.EventTypeNormal, custosv1alpha1.ReasonLegalHoldActive, "LegalHold", "%s", msg)
		}
		conditions.Set(&t.Status.Conditions, t.Generation, custosv1alpha1.ConditionLegalHold, true, custosv1alpha1.ReasonLegalHoldActive, msg)
		return
	}
	if c != nil && c.Status == metav1.ConditionTrue {
		if err := r.Audit.Record(ctx, t, evidence.ActionLegalHoldLifted, map[string]string{audittrail.StepKey: fmt.Sprintf("%s/generation-%d", evidence.ActionLegalHoldLifted, t.Generation)}); err != nil {
			return
		}
		conditions.Set(&t.Status.Conditions, t.Generation, custosv1alpha1.ConditionLegalHold, false, custosv1alpha1.ReasonLegalHoldExpired,
			"the legal hold is lifted or has passed its until date; expiry resumes")
	}
}

func (r *TenantBackupReconciler) patch(ctx context.Context, base, t *custosv1alpha1.Tenant) error {
	return patchStatus(ctx, r.Client, r.Client, base, t, nil)
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

// Roles of a location in status.backups.
const (
	rolePrimary = "Primary"
	roleOffsite = "Offsite"
	roleRetired = "Retired"
)

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
