package controllers

import (
	"context"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
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
	"github.com/custos-io/custos/internal/postgres"
	"github.com/custos-io/custos/internal/runner"
	"github.com/custos-io/custos/internal/signing"
)

// TenantExitReconciler carries out a tenant's exit: internal/lifecycle decides the step from (spec, status, facts,
// now); this controller gathers the facts, records the step in status before it starts and its outcome after, and
// carries it out. Destroying repositories runs in the Runner, never inside Reconcile.
type TenantExitReconciler struct {
	Client    client.Client
	APIReader client.Reader
	Recorder  events.EventRecorder
	Clock     clock.PassiveClock
	Namespace string
	Pools     *postgres.Pools
	Runner    runner.Runner
	// Done receives the tenants whose Shred task finished.
	Done <-chan event.GenericEvent
	// RetryAfter is the wait after a failed step.
	RetryAfter time.Duration
	// ExportDir is where an exit's export goes when the RetentionPolicy names no delivery.
	ExportDir string
	// Processor is the processor's name on certificates.
	Processor string
	Audit     *audittrail.Store
	Keys      *signing.Keys
	// NamespaceStuckAfter is how long a namespace being deleted may take before the exit reports what holds it
	// (default 2 minutes).
	NamespaceStuckAfter time.Duration
}

// +kubebuilder:rbac:groups=custos.io,resources=dataexports,verbs=get;list;watch;create
// +kubebuilder:rbac:groups=custos.io,resources=destructioncertificates,verbs=get;list;watch;create
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=delete
// +kubebuilder:rbac:groups="",resources=configmaps,verbs=get;list;watch;create;update
// +kubebuilder:rbac:groups=apps,resources=deployments;statefulsets,verbs=get;list;patch
// +kubebuilder:rbac:groups=batch,resources=cronjobs,verbs=get;list;patch
// +kubebuilder:rbac:groups="",resources=configmaps;secrets;services;serviceaccounts;persistentvolumeclaims;pods;replicationcontrollers,verbs=list
// +kubebuilder:rbac:groups="",resources=resourcequotas;limitranges,verbs=list
// +kubebuilder:rbac:groups=apps,resources=daemonsets;replicasets,verbs=list
// +kubebuilder:rbac:groups=batch,resources=jobs,verbs=list
// +kubebuilder:rbac:groups=networking.k8s.io,resources=ingresses,verbs=list
// +kubebuilder:rbac:groups=rbac.authorization.k8s.io,resources=roles,verbs=list

const (
	exitExportSuffix = "-exit"
	// custosv1alpha1.AnnotationTenantUID (api/v1alpha1/names.go) and annotationExitTerminatedAt bind the exit's DataExport to the
	// tenant (by UID) and to this exit (by its terminatedAt): a DataExport without them is never the exit's export.
	annotationExitTerminatedAt = "custos.io/exit-terminated-at"
	// defaultExitGracePeriod applies when the policy is missing or its exitGracePeriod cannot be read.
	defaultExitGracePeriod = 72 * time.Hour
	// actionExitCancelled is the audit action of an exit cancelled before anything was destroyed.
	actionExitCancelled evidence.Action = "ExitCancelled"
)

// errPolicyInvalid is a RetentionPolicy value the exit cannot use; it stops the exit with a condition.
type errPolicyInvalid struct{ msg string }

func (e *errPolicyInvalid) Error() string { return e.msg }

// exitScope is one reconcile's view.
type exitScope struct {
	tenant *custosv1alpha1.Tenant
	policy *custosv1alpha1.RetentionPolicy
	export *custosv1alpha1.DataExport
	facts  lifecycle.Facts
	now    time.Time
	// auditErr is an entry record could not write: no step is carried out until it is (carryOut refuses).
	auditErr error
}

// Reconcile gathers facts, decides, records, and carries out one step.
func (r *TenantExitReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var t custosv1alpha1.Tenant
	if err := r.Client.Get(ctx, req.NamespacedName, &t); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	now := r.Clock.Now().UTC()
	if t.Status.Phase.ExitStarted() || lifecycle.Ended(t.Spec, now) {
		// Once the exit runs, decide on a live read: the cache can lag behind this controller's own last status
		// write, and patch() resolves a conflict by writing its status.exit onto fresh data — from a stale read
		// that would undo what the last step recorded (seen: a purge recorded, overwritten, then run again, so
		// the certificate missed the Secret of a namespace the first run had already deleted).
		if err := r.APIReader.Get(ctx, req.NamespacedName, &t); err != nil {
			return ctrl.Result{}, client.IgnoreNotFound(err)
		}
	}
	if !t.Status.Phase.ExitStarted() && !lifecycle.Ended(t.Spec, now) {
		d := lifecycle.Next(t.Spec, t.Status, lifecycle.Facts{}, now)
		return ctrl.Result{RequeueAfter: d.RequeueAfter}, nil
	}
	logger := log.FromContext(ctx).WithValues("tenant", t.Name)
	ctx = log.IntoContext(ctx, logger)
	s := &exitScope{tenant: &t, now: now}
	if err := r.gather(ctx, s); err != nil {
		var pe *errPolicyInvalid
		if !errors.As(err, &pe) {
			return ctrl.Result{}, err
		}
		base := t.DeepCopy()
		msg := pe.msg + ": no exit step runs until the policy is fixed"
		conditions.Set(&t.Status.Conditions, t.Generation, custosv1alpha1.ConditionReady, false, custosv1alpha1.ReasonPolicyInvalid, msg)
		r.Recorder.Eventf(&t, nil, corev1.EventTypeWarning, custosv1alpha1.ReasonPolicyInvalid, "Exit", "%s", msg)
		if perr := r.patch(ctx, base, &t); perr != nil {
			return ctrl.Result{}, perr
		}
		return ctrl.Result{RequeueAfter: r.RetryAfter}, nil
	}
	d := lifecycle.Next(t.Spec, t.Status, s.facts, now)
	decidedOn := t.Generation

	// Record the decision (phase, conditions, the step about to run) before carrying it out.
	base := t.DeepCopy()
	r.record(ctx, s, d)
	if err := r.patch(ctx, base, &t); err != nil {
		return ctrl.Result{}, err
	}
	if d.Action == lifecycle.Wait {
		return ctrl.Result{RequeueAfter: d.RequeueAfter}, nil
	}
	if changed, err := r.specChanged(ctx, req.NamespacedName, decidedOn); err != nil || changed {
		// The facts were gathered after the Tenant was read: a legal hold or a new contract.end written in
		// between (with the export acknowledged meanwhile, say) must be decided on before anything is destroyed.
		return ctrl.Result{Requeue: true}, err
	}

	base = t.DeepCopy()
	done, err := r.carryOut(ctx, s, d.Action)
	var st *custosv1alpha1.ExitStep
	if t.Status.Exit != nil { // nil once a cancelled exit is cleared
		st = t.Status.Exit.Step
	}
	switch {
	case err != nil:
		st.Attempts++
		st.LastError = conditions.Truncate(err.Error(), 4000)
		conditions.Set(&t.Status.Conditions, t.Generation, custosv1alpha1.ConditionReady, false, custosv1alpha1.ReasonExitStepFailed,
			conditions.Truncate(fmt.Sprintf("%s failed (attempt %d), retried in %s: %s", d.Action, st.Attempts, r.RetryAfter, err), 4000))
		r.Recorder.Eventf(&t, nil, corev1.EventTypeWarning, custosv1alpha1.ReasonExitStepFailed, string(d.Action), "%s", conditions.Truncate(err.Error(), 1000))
		metrics.Destruction("failed")
		logger.Error(err, "Exit step failed", "action", d.Action)
	case done && st != nil:
		t.Status.Exit.Step = nil
	}
	if perr := r.patch(ctx, base, &t); perr != nil {
		return ctrl.Result{}, perr
	}
	switch {
	case err != nil:
		return ctrl.Result{RequeueAfter: r.RetryAfter}, nil
	case done:
		return ctrl.Result{Requeue: true}, nil
	default:
		return ctrl.Result{RequeueAfter: 2 * time.Second}, nil // waiting on something asynchronous (namespace deletion, a task)
	}
}

// specChanged reads the Tenant live and reports whether its spec moved past generation gen.
func (r *TenantExitReconciler) specChanged(ctx context.Context, key client.ObjectKey, gen int64) (bool, error) {
	var live custosv1alpha1.Tenant
	if err := r.APIReader.Get(ctx, key, &live); err != nil {
		return false, err
	}
	return live.Generation != gen, nil
}

// exitConditions are the Tenant conditions this controller owns once the exit started.
var exitConditions = []string{custosv1alpha1.ConditionReady, custosv1alpha1.ConditionNamespacesReady, custosv1alpha1.ConditionLegalHold, custosv1alpha1.ConditionExportAcknowledged,
	custosv1alpha1.ConditionLiveDataPurged, custosv1alpha1.ConditionBackupsExpired, custosv1alpha1.ConditionCertificateIssued,
	custosv1alpha1.ConditionAuditTrail}

// patch writes what this controller owns in status (phase, exit, audit head, its conditions). The backup
// controller writes the same status; on a conflict the write is applied again to fresh data instead of being
// dropped, because it may record a destruction that already happened and cannot be observed again.
func (r *TenantExitReconciler) patch(ctx context.Context, base, t *custosv1alpha1.Tenant) error {
	return patchStatus(ctx, r.Client, r.APIReader, base, t, func(fresh, mine *custosv1alpha1.Tenant) {
		fresh.Status.Phase, fresh.Status.Exit, fresh.Status.AuditHead = mine.Status.Phase, mine.Status.Exit, mine.Status.AuditHead
		fresh.Status.AuditLength, fresh.Status.AuditSegment = mine.Status.AuditLength, mine.Status.AuditSegment
		for _, typ := range exitConditions {
			if c := meta.FindStatusCondition(mine.Status.Conditions, typ); c != nil {
				meta.SetStatusCondition(&fresh.Status.Conditions, *c)
			}
		}
	})
}

// gather reads the facts lifecycle.Next needs. Facts about work already done come from status, where each step
// records its verified outcome; the suspension is checked live while it matters.
func (r *TenantExitReconciler) gather(ctx context.Context, s *exitScope) error {
	t := s.tenant
	ex := t.Status.Exit
	var p custosv1alpha1.RetentionPolicy
	if err := r.Client.Get(ctx, client.ObjectKey{Name: t.Spec.RetentionPolicyRef.Name}, &p); err == nil {
		s.policy = &p
		// An unreadable window must stop the exit, not count as 0 (which would make the backups due at once).
		var err error
		if s.facts.KeepWithin, err = p.Spec.KeepWithin.Parse(); err != nil {
			return &errPolicyInvalid{fmt.Sprintf("RetentionPolicy %s: keepWithin: %v", p.Name, err)}
		}
		if p.Spec.Export.AcknowledgeTimeout != "" {
			if s.facts.AcknowledgeTimeout, err = p.Spec.Export.AcknowledgeTimeout.Parse(); err != nil {
				return &errPolicyInvalid{fmt.Sprintf("RetentionPolicy %s: export.acknowledgeTimeout: %v", p.Name, err)}
			}
		}
	} else if !apierrors.IsNotFound(err) {
		return err
	}
	s.facts.GracePeriod = exitGracePeriod(s.policy)
	for _, b := range t.Status.Backups {
		if b.Newest != nil && b.Newest.After(s.facts.NewestSnapshot) {
			s.facts.NewestSnapshot = b.Newest.Time
		}
	}
	if ex == nil {
		return nil
	}
	s.facts.Suspended = ex.TerminatedAt != nil
	if s.facts.Suspended && ex.LiveDataPurgedAt == nil && t.Status.Phase != custosv1alpha1.TenantPurging {
		// Until the data is gone, the suspension must hold: a provisioning step that raced the contract's end
		// could have given LOGIN back. Checked live; suspending again is the same step.
		ok, err := r.stillSuspended(ctx, t)
		if err != nil {
			return err
		}
		s.facts.Suspended = ok
	}
	if err := r.gatherExport(ctx, s); err != nil {
		return err
	}
	s.facts.LiveDataGone = ex.LiveDataPurgedAt != nil
	s.facts.RepositoriesGone = ex.DisposalStartedAt != nil && hasDestroyed(t, custosv1alpha1.DestroyedSecret, r.Namespace+"/"+t.RepoKeySecretName())
	s.facts.CertificateIssued = ex.CertificateRef != nil
	return nil
}

// exitGracePeriod is the policy's exitGracePeriod; the default (72h) when there is no policy or it cannot be read,
// so that a missing or broken setting never shortens the grace period.
func exitGracePeriod(p *custosv1alpha1.RetentionPolicy) time.Duration {
	if p == nil || p.Spec.ExitGracePeriod == "" {
		return defaultExitGracePeriod
	}
	d, err := p.Spec.ExitGracePeriod.Parse()
	if err != nil {
		return defaultExitGracePeriod
	}
	return d
}

// carryOut runs one step; done reports that the step is complete (verified).
func (r *TenantExitReconciler) carryOut(ctx context.Context, s *exitScope, a lifecycle.Action) (bool, error) {
	if s.auditErr != nil {
		return false, fmt.Errorf("not carried out until the audit trail records what happened before it: %w", s.auditErr)
	}
	switch a {
	case lifecycle.Suspend:
		return r.suspend(ctx, s)
	case lifecycle.RequestExport:
		return r.requestExport(ctx, s)
	case lifecycle.Purge:
		return r.purge(ctx, s)
	case lifecycle.DisposeBackups:
		return r.dispose(ctx, s)
	case lifecycle.IssueCertificate:
		return r.certify(ctx, s)
	case lifecycle.CancelExit:
		return r.cancelExit(ctx, s)
	}
	return false, fmt.Errorf("unknown exit action %q", a)
}

// SetupWithManager registers the exit controller: Tenants, the exit's DataExports, and finished Shred tasks.
func (r *TenantExitReconciler) SetupWithManager(mgr ctrl.Manager, concurrency int) error {
	return ctrl.NewControllerManagedBy(mgr).
		For(&custosv1alpha1.Tenant{}, builder.WithPredicates(predicate.Funcs{
			UpdateFunc: func(e event.UpdateEvent) bool {
				o, n := e.ObjectOld.(*custosv1alpha1.Tenant), e.ObjectNew.(*custosv1alpha1.Tenant)
				return o.Generation != n.Generation || o.Status.Phase != n.Status.Phase || len(o.Status.Tasks) != len(n.Status.Tasks)
			},
		})).
		Watches(&custosv1alpha1.DataExport{}, handler.EnqueueRequestsFromMapFunc(func(_ context.Context, o client.Object) []ctrl.Request {
			de := o.(*custosv1alpha1.DataExport)
			return []ctrl.Request{{NamespacedName: client.ObjectKey{Name: de.Spec.TenantRef.Name}}}
		})).
		WatchesRawSource(source.Channel(r.Done, &handler.EnqueueRequestForObject{})).
		WithOptions(controller.Options{MaxConcurrentReconciles: concurrency}).
		Named("tenant-exit").
		Complete(r)
}
