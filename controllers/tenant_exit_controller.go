package controllers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
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
	"github.com/custos-io/custos/internal/postgres"
	"github.com/custos-io/custos/internal/runner"
	"github.com/custos-io/custos/internal/storage"
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
	Audit     *AuditLog
	Keys      *SigningKeys
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
	// custosv1alpha1.AnnotationTenantUID (tenant_controller.go) and annotationExitTerminatedAt bind the exit's DataExport to the
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
	if equality.Semantic.DeepEqual(base.Status, t.Status) {
		return nil
	}
	err := retry.RetryOnConflict(retry.DefaultBackoff, func() error {
		err := r.Client.Status().Patch(ctx, t, client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{}))
		if !apierrors.IsConflict(err) {
			return err
		}
		var fresh custosv1alpha1.Tenant
		if gerr := r.APIReader.Get(ctx, client.ObjectKeyFromObject(t), &fresh); gerr != nil {
			return gerr
		}
		mine := t.Status
		base = fresh.DeepCopy()
		fresh.Status.Phase, fresh.Status.Exit, fresh.Status.AuditHead = mine.Phase, mine.Exit, mine.AuditHead
		fresh.Status.AuditLength, fresh.Status.AuditSegment = mine.AuditLength, mine.AuditSegment
		for _, typ := range exitConditions {
			if c := meta.FindStatusCondition(mine.Conditions, typ); c != nil {
				meta.SetStatusCondition(&fresh.Status.Conditions, *c)
			}
		}
		*t = fresh
		return err
	})
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
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

// exitExportName is the name of this exit's DataExport: the tenant's name and the moment it was suspended, so an
// export of an earlier tenant of the same name, or of an earlier (cancelled) exit, is never at that name.
func exitExportName(t *custosv1alpha1.Tenant) string {
	return fmt.Sprintf("%s%s-%s", t.Name, exitExportSuffix, t.Status.Exit.TerminatedAt.UTC().Format("20060102-150405"))
}

// gatherExport reads the exit's DataExport. Only the object the exit created counts (status.exit.exportRef, by
// UID); an object found at the exit's name that is not bound to this tenant and this exit is refused: the facts
// say so, and nothing is destroyed on its strength.
func (r *TenantExitReconciler) gatherExport(ctx context.Context, s *exitScope) error {
	t := s.tenant
	ex := t.Status.Exit
	if ex.ExportRef == nil {
		if ex.TerminatedAt == nil || t.Spec.Exit.DataReturn != custosv1alpha1.DataReturnExport {
			return nil
		}
		var de custosv1alpha1.DataExport
		err := r.Client.Get(ctx, client.ObjectKey{Name: exitExportName(t)}, &de)
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return err
		}
		if why := exitExportProblem(&de, t); why != "" {
			s.facts.Export = lifecycle.ExportFacts{Exists: true, Refused: refusedExport(&de, why)}
		}
		return nil // a bound one (made before a restart) is adopted by RequestExport
	}
	var de custosv1alpha1.DataExport
	err := r.Client.Get(ctx, client.ObjectKey{Name: ex.ExportRef.Name}, &de)
	if err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	if apierrors.IsNotFound(err) {
		// The DataExport is gone. Its bag counts as gone only when the file is verified absent.
		if ex.ExportRef.Bag != "" {
			gone, err := fileGone(ex.ExportRef.Bag)
			if err != nil {
				return err
			}
			s.facts.Export.BagGone = gone
		}
		return nil
	}
	switch {
	case ex.ExportRef.UID != "" && string(de.UID) != ex.ExportRef.UID:
		s.facts.Export = lifecycle.ExportFacts{Exists: true, Refused: refusedExport(&de,
			fmt.Sprintf("its uid is %s, the exit created uid %s (it was deleted and made again)", de.UID, ex.ExportRef.UID))}
		return nil
	case ex.ExportRef.UID == "":
		if why := exitExportProblem(&de, t); why != "" {
			s.facts.Export = lifecycle.ExportFacts{Exists: true, Refused: refusedExport(&de, why)}
			return nil
		}
	}
	s.export = &de
	s.facts.Export = exportFacts(&de)
	if de.Status.ExpiresAt != nil {
		s.facts.Export.ExpiresAt = de.Status.ExpiresAt.Time
	}
	if de.Status.Phase == custosv1alpha1.ExportExpired {
		gone, err := fileGone(de.ArtefactPath())
		if err != nil {
			return err
		}
		s.facts.Export.BagGone = gone
	}
	return nil
}

// fileGone reports whether path is verifiably absent.
func fileGone(path string) (bool, error) {
	_, err := os.Stat(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return true, nil
	case err != nil:
		return false, fmt.Errorf("checking that the exit's bag %s is gone: %w", path, err)
	}
	return false, nil
}

// exitExportProblem says why de is not this exit's export ("" when it is): made for this tenant (by UID) and this
// exit (by terminatedAt), after the exit began, with the database and the Kubernetes objects.
func exitExportProblem(de *custosv1alpha1.DataExport, t *custosv1alpha1.Tenant) string {
	var why []string
	if de.Spec.TenantRef.Name != t.Name {
		why = append(why, fmt.Sprintf("it exports tenant %s", de.Spec.TenantRef.Name))
	}
	switch uid := de.Annotations[custosv1alpha1.AnnotationTenantUID]; uid {
	case string(t.UID):
	case "":
		why = append(why, "it carries no "+custosv1alpha1.AnnotationTenantUID+" annotation (it was made by hand or by an earlier version of custos)")
	default:
		why = append(why, fmt.Sprintf("it was made for tenant uid %s, not this tenant's %s (an earlier tenant of the same name)", uid, t.UID))
	}
	terminated := t.Status.Exit.TerminatedAt.UTC()
	if at := de.Annotations[annotationExitTerminatedAt]; at != "" && at != terminated.Format(time.RFC3339) {
		why = append(why, fmt.Sprintf("it was made for an exit that began at %s, not this one (%s)", at, terminated.Format(time.RFC3339)))
	}
	if de.CreationTimestamp.Time.Before(terminated.Truncate(time.Second)) {
		why = append(why, fmt.Sprintf("it was created at %s, before this exit began at %s", de.CreationTimestamp.UTC().Format(time.RFC3339), terminated.Format(time.RFC3339)))
	}
	if !de.Spec.Include.Database {
		why = append(why, "include.database is false: it holds no copy of the database")
	}
	if !de.Spec.Include.KubernetesObjects {
		why = append(why, "include.kubernetesObjects is false")
	}
	return strings.Join(why, "; ")
}

func refusedExport(de *custosv1alpha1.DataExport, why string) string {
	return fmt.Sprintf("DataExport %s is not this exit's export: %s. Nothing is destroyed on its strength, and custos neither adopts nor deletes it: delete it (or have whoever made it do so), and the exit writes its own export",
		de.Name, why)
}

func exportFacts(de *custosv1alpha1.DataExport) lifecycle.ExportFacts {
	f := lifecycle.ExportFacts{Exists: true, Phase: de.Status.Phase}
	if de.Status.DeliveredAt != nil {
		f.DeliveredAt = de.Status.DeliveredAt.Time
	}
	if c := meta.FindStatusCondition(de.Status.Conditions, custosv1alpha1.ConditionExportAcknowledged); c != nil && c.Status == metav1.ConditionFalse && c.Reason == custosv1alpha1.ReasonReceiptMismatch {
		f.ReceiptMismatch = true
	}
	if c := meta.FindStatusCondition(de.Status.Conditions, custosv1alpha1.ConditionReady); c != nil && c.Status == metav1.ConditionFalse {
		f.Message = c.Message
	}
	return f
}

func hasDestroyed(t *custosv1alpha1.Tenant, kind custosv1alpha1.DestroyedLocationKind, name string) bool {
	if t.Status.Exit == nil {
		return false
	}
	for _, d := range t.Status.Exit.Destroyed {
		if d.Kind == kind && d.Name == name {
			return true
		}
	}
	return false
}

func (r *TenantExitReconciler) addDestroyed(t *custosv1alpha1.Tenant, d custosv1alpha1.DestroyedLocation) {
	if hasDestroyed(t, d.Kind, d.Name) {
		return
	}
	t.Status.Exit.Destroyed = append(t.Status.Exit.Destroyed, d)
	metrics.Destruction("verified")
}

// record writes the decision into status: phase, Ready and LegalHold conditions, deadlines, acknowledgement, and
// the step about to be carried out.
func (r *TenantExitReconciler) record(ctx context.Context, s *exitScope, d lifecycle.Decision) {
	t := s.tenant
	if t.Status.Exit == nil {
		t.Status.Exit = &custosv1alpha1.TenantExitStatus{}
	}
	ex := t.Status.Exit
	if ex.EndObservedAt == nil {
		ex.EndObservedAt = ptr.To(metav1.NewTime(s.now))
	}
	if !d.DestructionNotBefore.IsZero() && (ex.DestructionNotBefore == nil || !ex.DestructionNotBefore.Time.Equal(d.DestructionNotBefore)) {
		first := ex.DestructionNotBefore == nil
		ex.DestructionNotBefore = ptr.To(metav1.NewTime(d.DestructionNotBefore))
		if first && s.now.Before(d.DestructionNotBefore) {
			r.Recorder.Eventf(t, nil, corev1.EventTypeNormal, custosv1alpha1.ReasonGracePeriod, "Exit",
				"contract %s ended: nothing is destroyed before %s; removing spec.contract.end (or moving it into the future) before then cancels the exit",
				t.Spec.Contract.ID, d.DestructionNotBefore.UTC().Format(time.RFC3339))
		}
	}
	if ex.ExportRef != nil && ex.ExportRef.Bag == "" && s.export != nil && s.export.Status.Artefact != nil {
		ex.ExportRef.Bag = s.export.ArtefactPath()
	}
	if d.Reason == custosv1alpha1.ReasonExportNotBound {
		if c := meta.FindStatusCondition(t.Status.Conditions, custosv1alpha1.ConditionReady); c == nil || c.Reason != d.Reason || c.Message != d.Message {
			r.Recorder.Eventf(t, nil, corev1.EventTypeWarning, custosv1alpha1.ReasonExportNotBound, "Exit", "%s", conditions.Truncate(d.Message, 1000))
		}
	}
	if d.Phase != t.Status.Phase {
		r.Recorder.Eventf(t, nil, corev1.EventTypeNormal, string(d.Phase), "Exit", "%s → %s: %s", t.Status.Phase, d.Phase, d.Message)
		t.Status.Phase = d.Phase
	}
	if !d.BackupsGoneBy.IsZero() && (ex.BackupsGoneBy == nil || !ex.BackupsGoneBy.Time.Equal(d.BackupsGoneBy)) {
		ex.BackupsGoneBy = ptr.To(metav1.NewTime(d.BackupsGoneBy))
	}
	if ex.BackupsGoneBy != nil && d.Phase != custosv1alpha1.TenantDestroyed {
		metrics.ExpiryDeadline(t.Name, ex.BackupsGoneBy.Time)
	}
	if d.Phase == custosv1alpha1.TenantDestroyed {
		metrics.ForgetTenant(t.Name)
		// Two controllers append to the trail and write the head into status; once the tenant is destroyed
		// nothing appends any more, and the head shown is the trail's own.
		if r.Audit != nil {
			if entries, err := r.Audit.Entries(ctx, t); err == nil && len(entries) > 0 {
				t.Status.AuditHead, t.Status.AuditLength = "sha256:"+entries[len(entries)-1].Hash, entries[len(entries)-1].Seq
			}
		}
	}
	if ex.ExportAcknowledgedAt == nil && (d.AcknowledgeTimedOut || s.facts.Export.Phase == custosv1alpha1.ExportAcknowledged) && ex.ExportRef != nil {
		at := metav1.NewTime(s.now)
		if !d.AcknowledgeTimedOut && s.export != nil && s.export.Status.AcknowledgedAt != nil {
			at = *s.export.Status.AcknowledgedAt
		}
		ex.ExportAcknowledgedAt, ex.ExportAcknowledgeTimedOut = &at, d.AcknowledgeTimedOut
		msg := "the receiver's sha256 matched the bag"
		action := evidence.ActionExportAcknowledged
		if d.AcknowledgeTimedOut {
			msg = "no receipt came within acknowledgeTimeout after delivery; the exit goes on and the certificate says so"
		}
		if err := r.audit(ctx, t, action, map[string]string{"export": ex.ExportRef.Name, "timedOut": fmt.Sprint(d.AcknowledgeTimedOut),
			auditStepKey: string(action) + "/" + ex.ExportRef.Name}); err != nil {
			ex.ExportAcknowledgedAt, ex.ExportAcknowledgeTimedOut, s.auditErr = nil, false, err // recorded again next time
		} else {
			conditions.Set(&t.Status.Conditions, t.Generation, custosv1alpha1.ConditionExportAcknowledged, !d.AcknowledgeTimedOut, ackReason(d.AcknowledgeTimedOut), msg)
		}
	}
	hold := lifecycle.HoldActive(t.Spec.LegalHold, s.now)
	if hold {
		msg := "a legal hold freezes every destructive step: " + t.Spec.LegalHold.Reason
		if t.Spec.LegalHold.Until != nil {
			msg += "; until " + t.Spec.LegalHold.Until.UTC().Format(time.RFC3339)
		}
		var err error
		if c := meta.FindStatusCondition(t.Status.Conditions, custosv1alpha1.ConditionLegalHold); c == nil || c.Status != metav1.ConditionTrue {
			err = r.audit(ctx, t, evidence.ActionLegalHoldSet, legalHoldDetail(t.Spec.LegalHold, map[string]string{"reason": t.Spec.LegalHold.Reason,
				auditStepKey: fmt.Sprintf("%s/generation-%d", evidence.ActionLegalHoldSet, t.Generation)}))
		}
		if err != nil {
			s.auditErr = err // the hold is shown once it is recorded; nothing is destroyed meanwhile (carryOut refuses)
		} else {
			conditions.Set(&t.Status.Conditions, t.Generation, custosv1alpha1.ConditionLegalHold, true, custosv1alpha1.ReasonLegalHoldActive, msg)
		}
	} else if c := meta.FindStatusCondition(t.Status.Conditions, custosv1alpha1.ConditionLegalHold); c != nil && c.Status == metav1.ConditionTrue {
		if err := r.audit(ctx, t, evidence.ActionLegalHoldLifted, map[string]string{auditStepKey: fmt.Sprintf("%s/generation-%d", evidence.ActionLegalHoldLifted, t.Generation)}); err != nil {
			s.auditErr = err // the hold stays shown, and nothing is destroyed, until the lifting is recorded
		} else {
			conditions.Set(&t.Status.Conditions, t.Generation, custosv1alpha1.ConditionLegalHold, false, custosv1alpha1.ReasonLegalHoldExpired, "the legal hold is lifted or has passed its until date")
			// A step that starts now starts after the lifting as recorded (the certificate checks that order).
			s.now = r.Clock.Now().UTC()
		}
	}
	ready := d.Phase == custosv1alpha1.TenantDestroyed
	if c := meta.FindStatusCondition(t.Status.Conditions, custosv1alpha1.ConditionReady); c == nil || c.Reason != custosv1alpha1.ReasonExitStepFailed || d.Action == lifecycle.Wait || ex.Step == nil || ex.Step.Action != string(d.Action) {
		conditions.Set(&t.Status.Conditions, t.Generation, custosv1alpha1.ConditionReady, ready, d.Reason, d.Message)
	}
	if d.Action == lifecycle.Wait {
		ex.Step = nil
		return
	}
	if ex.Step == nil || ex.Step.Action != string(d.Action) {
		ex.Step = &custosv1alpha1.ExitStep{Action: string(d.Action), StartedAt: metav1.NewTime(s.now)}
	}
	if d.Action == lifecycle.DisposeBackups && ex.DisposalStartedAt == nil {
		ex.DisposalStartedAt = ptr.To(metav1.NewTime(s.now))
	}
}

func ackReason(timedOut bool) string {
	if timedOut {
		return custosv1alpha1.ReasonAcknowledgeTimeout
	}
	return custosv1alpha1.ReasonExportAcknowledged
}

// audit records an exit action on the tenant's trail (AuditLog.Record), once per step. An error means the entry
// is not written: the step must not count as done.
func (r *TenantExitReconciler) audit(ctx context.Context, t *custosv1alpha1.Tenant, action evidence.Action, detail map[string]string) error {
	if r.Audit == nil {
		return nil
	}
	if detail == nil {
		detail = map[string]string{}
	}
	if _, ok := detail[auditStepKey]; !ok {
		// The exit's steps are recorded once: the step's start (in status before it runs) identifies it.
		step := string(action)
		if st := t.Status.Exit.Step; st != nil {
			step = fmt.Sprintf("%s/%d", st.Action, st.StartedAt.Unix())
		}
		if loc := detail["location"]; loc != "" {
			step += "/" + loc
		}
		detail[auditStepKey] = step
	}
	return r.Audit.Record(ctx, t, action, detail)
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

// server connects to the tenant's DatabaseServer as its administrator.
func (r *TenantExitReconciler) server(ctx context.Context, t *custosv1alpha1.Tenant) (*postgres.Server, *custosv1alpha1.DatabaseServer, error) {
	name := t.Spec.Database.ServerRef.Name
	if t.Status.Database != nil && t.Status.Database.Server != "" {
		name = t.Status.Database.Server
	}
	var srv custosv1alpha1.DatabaseServer
	if err := r.Client.Get(ctx, client.ObjectKey{Name: name}, &srv); err != nil {
		return nil, nil, fmt.Errorf("DatabaseServer %s: %w", name, err)
	}
	cfg, err := adminConfig(ctx, r.APIReader, r.Namespace, &srv)
	if err != nil {
		return nil, nil, err
	}
	db, err := r.Pools.Server(ctx, srv.Name, cfg)
	if err != nil {
		return nil, nil, err
	}
	return db, &srv, nil
}

// owner is the tenant as ownership is decided on the server: by the OIDs recorded at provisioning, which the
// tenant cannot change (see postgres.Owner).
func owner(t *custosv1alpha1.Tenant) postgres.Owner { return recordedOwner(t) }

func (r *TenantExitReconciler) stillSuspended(ctx context.Context, t *custosv1alpha1.Tenant) (bool, error) {
	// The namespaces first: a provisioning step that raced the contract's end could have put the owners'
	// RoleBinding or an allow policy back.
	res, _, err := r.exitNamespaces(ctx, t)
	if err != nil {
		return false, err
	}
	for _, ns := range res.OwnedNames() {
		left, err := r.namespaceRunning(ctx, ns, false)
		if err != nil || left != "" {
			return false, err
		}
	}
	if t.Status.Database == nil {
		return true, nil
	}
	db, _, err := r.server(ctx, t)
	if err != nil {
		return false, err
	}
	defer db.Close(ctx)
	return db.Suspended(ctx, t.DatabaseName())
}

// suspend cuts the tenant off without destroying anything: database LOGIN revoked and sessions ended, and in
// every namespace provisioning proved the tenant's (status.namespaces, verified live) the owners' access removed,
// every NetworkPolicy but the default deny removed, every workload stopped and every Pod deleted
// (suspendNamespace, which keeps what it removes). A namespace the spec names but that is not proven the
// tenant's is left entirely alone and reported. Each is verified.
func (r *TenantExitReconciler) suspend(ctx context.Context, s *exitScope) (bool, error) {
	t := s.tenant
	detail := map[string]string{}
	if t.Status.Database != nil {
		db, _, err := r.server(ctx, t)
		if err != nil {
			return false, err
		}
		defer db.Close(ctx)
		res, err := db.Suspend(ctx, t.DatabaseName(), owner(t))
		if err != nil {
			return false, err
		}
		detail["database"] = t.DatabaseName()
		detail["sessionsEnded"] = fmt.Sprint(res.Terminated)
	}
	res, _, err := r.exitNamespaces(ctx, t)
	if err != nil {
		return false, err
	}
	r.reportNotOwned(t, res)
	for _, ns := range res.OwnedNames() {
		if err := r.suspendNamespace(ctx, t, ns); err != nil {
			return false, err
		}
	}
	detail["namespaces"] = strings.Join(res.OwnedNames(), ",")
	if len(res.Refused) > 0 {
		var left []string
		for _, f := range res.Refused {
			left = append(left, f.Name)
		}
		detail["namespacesLeftAlone"] = strings.Join(left, ",")
	}
	if err := r.audit(ctx, t, evidence.ActionSuspended, detail); err != nil {
		return false, err // suspended, but not counted as done until it is on the trail
	}
	at := metav1.NewTime(s.now)
	t.Status.Exit.TerminatedAt = &at
	r.Recorder.Eventf(t, nil, corev1.EventTypeNormal, "Suspended", "Exit",
		"contract %s ended: database LOGIN revoked; in namespace(s) %s the owners' access removed, network cut, workloads stopped, pods deleted (what was removed is kept in ConfigMap %s)",
		t.Spec.Contract.ID, strings.Join(res.OwnedNames(), ","), suspensionConfigMap)
	return true, nil
}

// stoppable is a kind of workload the suspension stops: running says whether one still runs, stop changes its
// spec so that it does not, and from returns the fields stop changes as they are (kept in the annotation
// custos.io/suspended-from).
type stoppable struct {
	kind    string
	list    func() client.ObjectList
	running func(client.Object) bool
	stop    func(client.Object)
	from    func(client.Object) map[string]any
	what    string // "scaling Deployment %s/%s to zero"
}

func replicasRunning(r *int32) bool { return r == nil || *r != 0 }

var stoppables = []stoppable{
	{
		kind:    "Deployment",
		list:    func() client.ObjectList { return &appsv1.DeploymentList{} },
		running: func(o client.Object) bool { return replicasRunning(o.(*appsv1.Deployment).Spec.Replicas) },
		stop:    func(o client.Object) { o.(*appsv1.Deployment).Spec.Replicas = ptr.To[int32](0) },
		from: func(o client.Object) map[string]any {
			return map[string]any{"replicas": o.(*appsv1.Deployment).Spec.Replicas}
		},
		what: "scaling Deployment %s/%s to zero",
	},
	{
		kind:    "StatefulSet",
		list:    func() client.ObjectList { return &appsv1.StatefulSetList{} },
		running: func(o client.Object) bool { return replicasRunning(o.(*appsv1.StatefulSet).Spec.Replicas) },
		stop:    func(o client.Object) { o.(*appsv1.StatefulSet).Spec.Replicas = ptr.To[int32](0) },
		from: func(o client.Object) map[string]any {
			return map[string]any{"replicas": o.(*appsv1.StatefulSet).Spec.Replicas}
		},
		what: "scaling StatefulSet %s/%s to zero",
	},
	{
		kind:    "ReplicaSet",
		list:    func() client.ObjectList { return &appsv1.ReplicaSetList{} },
		running: func(o client.Object) bool { return replicasRunning(o.(*appsv1.ReplicaSet).Spec.Replicas) },
		stop:    func(o client.Object) { o.(*appsv1.ReplicaSet).Spec.Replicas = ptr.To[int32](0) },
		from: func(o client.Object) map[string]any {
			return map[string]any{"replicas": o.(*appsv1.ReplicaSet).Spec.Replicas}
		},
		what: "scaling ReplicaSet %s/%s to zero",
	},
	{
		kind:    "ReplicationController",
		list:    func() client.ObjectList { return &corev1.ReplicationControllerList{} },
		running: func(o client.Object) bool { return replicasRunning(o.(*corev1.ReplicationController).Spec.Replicas) },
		stop:    func(o client.Object) { o.(*corev1.ReplicationController).Spec.Replicas = ptr.To[int32](0) },
		from: func(o client.Object) map[string]any {
			return map[string]any{"replicas": o.(*corev1.ReplicationController).Spec.Replicas}
		},
		what: "scaling ReplicationController %s/%s to zero",
	},
	{
		kind:    "CronJob",
		list:    func() client.ObjectList { return &batchv1.CronJobList{} },
		running: func(o client.Object) bool { s := o.(*batchv1.CronJob).Spec.Suspend; return s == nil || !*s },
		stop:    func(o client.Object) { o.(*batchv1.CronJob).Spec.Suspend = ptr.To(true) },
		from: func(o client.Object) map[string]any {
			return map[string]any{"suspend": o.(*batchv1.CronJob).Spec.Suspend}
		},
		what: "suspending CronJob %s/%s",
	},
	{
		kind: "Job",
		list: func() client.ObjectList { return &batchv1.JobList{} },
		running: func(o client.Object) bool {
			j := o.(*batchv1.Job)
			return (j.Spec.Suspend == nil || !*j.Spec.Suspend) && !jobFinished(j)
		},
		stop: func(o client.Object) { o.(*batchv1.Job).Spec.Suspend = ptr.To(true) },
		from: func(o client.Object) map[string]any { return map[string]any{"suspend": o.(*batchv1.Job).Spec.Suspend} },
		what: "suspending Job %s/%s",
	},
	{
		kind: "DaemonSet",
		list: func() client.ObjectList { return &appsv1.DaemonSetList{} },
		running: func(o client.Object) bool {
			return o.(*appsv1.DaemonSet).Spec.Template.Spec.NodeSelector[nodeSelectorSuspended] != "true"
		},
		stop: func(o client.Object) {
			ds := o.(*appsv1.DaemonSet)
			if ds.Spec.Template.Spec.NodeSelector == nil {
				ds.Spec.Template.Spec.NodeSelector = map[string]string{}
			}
			ds.Spec.Template.Spec.NodeSelector[nodeSelectorSuspended] = "true"
		},
		from: func(o client.Object) map[string]any {
			return map[string]any{"nodeSelector": o.(*appsv1.DaemonSet).Spec.Template.Spec.NodeSelector}
		},
		what: "stopping DaemonSet %s/%s (node selector " + nodeSelectorSuspended + "=true, which no node has)",
	},
}

func jobFinished(j *batchv1.Job) bool {
	for _, c := range j.Status.Conditions {
		if (c.Type == batchv1.JobComplete || c.Type == batchv1.JobFailed) && c.Status == corev1.ConditionTrue {
			return true
		}
	}
	return false
}

// scaleDown stops every workload of the namespace (stoppables): replicas to zero, Jobs and CronJobs suspended,
// DaemonSets on no node. Each stopped one keeps what was changed in its annotation custos.io/suspended-from.
func (r *TenantExitReconciler) scaleDown(ctx context.Context, ns string) error {
	for _, k := range stoppables {
		list := k.list()
		if err := r.APIReader.List(ctx, list, client.InNamespace(ns)); err != nil {
			return err
		}
		items, err := meta.ExtractList(list)
		if err != nil {
			return err
		}
		for _, item := range items {
			o := item.(client.Object)
			if !k.running(o) {
				continue
			}
			p := client.MergeFrom(o.DeepCopyObject().(client.Object))
			if _, ok := o.GetAnnotations()[annotationSuspendedFrom]; !ok {
				a := o.GetAnnotations()
				if a == nil {
					a = map[string]string{}
				}
				a[annotationSuspendedFrom] = suspendedFrom(k.from(o))
				o.SetAnnotations(a)
			}
			k.stop(o)
			if err := r.Client.Patch(ctx, o, p); err != nil && !apierrors.IsNotFound(err) {
				return fmt.Errorf(k.what+": %w", ns, o.GetName(), err)
			}
		}
	}
	return nil
}

// requestExport creates the exit's DataExport, bound to the tenant's UID and to this exit, or adopts the one an
// earlier attempt created (recognised by the same binding). Anything else at that name is refused.
func (r *TenantExitReconciler) requestExport(ctx context.Context, s *exitScope) (bool, error) {
	t := s.tenant
	name := exitExportName(t)
	var de custosv1alpha1.DataExport
	err := r.Client.Get(ctx, client.ObjectKey{Name: name}, &de)
	if apierrors.IsNotFound(err) {
		path := r.ExportDir
		if s.policy != nil && s.policy.Spec.Export.Delivery != nil {
			path = s.policy.Spec.Export.Delivery.Filesystem.Path
		}
		if path == "" {
			return false, errors.New("no delivery for the exit's export: set the RetentionPolicy's export.delivery.filesystem.path or the manager's --export-dir")
		}
		de = custosv1alpha1.DataExport{
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: t.ManagedLabels(), Annotations: map[string]string{
				custosv1alpha1.AnnotationTenantUID: string(t.UID), annotationExitTerminatedAt: t.Status.Exit.TerminatedAt.UTC().Format(time.RFC3339)}},
			Spec: custosv1alpha1.DataExportSpec{TenantRef: custosv1alpha1.ObjectReference{Name: t.Name},
				Include:  custosv1alpha1.ExportInclude{Database: true, KubernetesObjects: true},
				Delivery: custosv1alpha1.ExportDelivery{Filesystem: custosv1alpha1.FilesystemDelivery{Path: path}}},
		}
		if err := r.Client.Create(ctx, &de); err != nil {
			return false, fmt.Errorf("creating DataExport %s: %w", name, err)
		}
		r.Recorder.Eventf(t, nil, corev1.EventTypeNormal, "ExportRequested", "Exit", "DataExport %s requested for the data controller (exit.dataReturn: Export), delivered to %s", name, path)
	} else if err != nil {
		return false, err
	} else if why := exitExportProblem(&de, t); why != "" {
		return false, errors.New(refusedExport(&de, why))
	}
	t.Status.Exit.ExportRef = &custosv1alpha1.ExitExportReference{Name: name, UID: string(de.UID)}
	return true, nil
}

// cancelExit ends an exit that destroyed nothing, because contract.end was removed or moved into the future: the
// exit's status and conditions are cleared and the tenant goes back to Provisioning, where the tenant controller
// gives LOGIN, the network policies and the bindings back. An export the exit asked for stays an ordinary
// DataExport and expires as any other.
func (r *TenantExitReconciler) cancelExit(ctx context.Context, s *exitScope) (bool, error) {
	t := s.tenant
	ex := t.Status.Exit
	detail := map[string]string{"contractEnd": "none"}
	if t.Spec.Contract.End != nil {
		detail["contractEnd"] = t.Spec.Contract.End.UTC().Format(time.RFC3339)
	}
	observed := s.now
	if ex.EndObservedAt != nil {
		observed = ex.EndObservedAt.Time
		detail["endObservedAt"] = observed.UTC().Format(time.RFC3339)
	}
	if ex.ExportRef != nil {
		detail["export"] = ex.ExportRef.Name
	}
	detail[auditStepKey] = fmt.Sprintf("%s/%d", actionExitCancelled, observed.Unix())
	if err := r.audit(ctx, t, actionExitCancelled, detail); err != nil {
		return false, err // nothing is given back until the cancellation is on the trail
	}
	r.Recorder.Eventf(t, nil, corev1.EventTypeNormal, custosv1alpha1.ReasonExitCancelled, "Exit",
		"contract.end is now %s: the exit is cancelled before anything was destroyed, the tenant is provisioned again", detail["contractEnd"])
	t.Status.Exit = nil
	t.Status.Phase = custosv1alpha1.TenantProvisioning
	for _, typ := range []string{custosv1alpha1.ConditionExportAcknowledged, custosv1alpha1.ConditionLiveDataPurged,
		custosv1alpha1.ConditionBackupsExpired, custosv1alpha1.ConditionCertificateIssued} {
		meta.RemoveStatusCondition(&t.Status.Conditions, typ)
	}
	conditions.Set(&t.Status.Conditions, t.Generation, custosv1alpha1.ConditionReady, false, custosv1alpha1.ReasonExitCancelled,
		"the exit was cancelled (spec.contract.end removed or moved into the future before anything was destroyed); provisioning gives LOGIN, network policies and bindings back")
	return true, nil
}

// purge destroys the live data in the order DESIGN §4 gives: the database and role, then the Secrets, then the
// namespaces; each verified gone and recorded for the certificate.
func (r *TenantExitReconciler) purge(ctx context.Context, s *exitScope) (bool, error) {
	t := s.tenant
	started := t.Status.Exit.Step.StartedAt
	if t.Status.Database != nil && !hasDestroyed(t, custosv1alpha1.DestroyedDatabase, t.DatabaseName()) {
		db, srv, err := r.server(ctx, t)
		if err != nil {
			return false, err
		}
		defer db.Close(ctx)
		version, _ := db.Version(ctx)
		res, err := db.DropTenant(ctx, t.DatabaseName(), owner(t), uint32(t.Status.Database.OID))
		if err != nil {
			return false, err
		}
		oid := res.OID
		done := metav1.NewTime(r.Clock.Now())
		tool := "PostgreSQL " + version
		r.addDestroyed(t, custosv1alpha1.DestroyedLocation{Kind: custosv1alpha1.DestroyedDatabase, Name: t.DatabaseName(),
			Identifier:   fmt.Sprintf("database %s OID %d on DatabaseServer %s (%s)", t.DatabaseName(), oid, srv.Name, srv.Spec.Host),
			Jurisdiction: string(srv.Spec.Jurisdiction), Method: "Clear", Technique: "sessions ended; DROP DATABASE … WITH (FORCE)",
			Tool: tool, StartedAt: started, CompletedAt: done, Verification: res.Verification})
		r.addDestroyed(t, custosv1alpha1.DestroyedLocation{Kind: custosv1alpha1.DestroyedRole, Name: t.DatabaseName(),
			Identifier: fmt.Sprintf("role %s on DatabaseServer %s", t.DatabaseName(), srv.Name), Jurisdiction: string(srv.Spec.Jurisdiction),
			Method: "Clear", Technique: "DROP ROLE", Tool: tool, StartedAt: started, CompletedAt: done,
			Verification: fmt.Sprintf("pg_roles has no role %s", t.DatabaseName())})
	}
	// Secrets and namespaces: only in the namespaces provisioning proved the tenant's (status.namespaces, UID and
	// annotation verified live); any other namespace the spec names is left alone and reported.
	nss, live, err := r.exitNamespaces(ctx, t)
	if err != nil {
		return false, err
	}
	r.reportNotOwned(t, nss)
	// The credentials in each tenant namespace and the master password in the manager's namespace (if it is the
	// tenant's: provisioning refuses to use one without the tenant's label, and so must the purge).
	var secrets []client.ObjectKey
	master := client.ObjectKey{Namespace: r.Namespace, Name: t.MasterSecretName()}
	if foreign, err := r.foreignSecret(ctx, t, master); err != nil {
		return false, err
	} else if !foreign {
		secrets = append(secrets, master)
	}
	for _, ns := range nss.OwnedNames() {
		secrets = append(secrets, client.ObjectKey{Namespace: ns, Name: custosv1alpha1.CredentialsSecretName})
	}
	for _, key := range secrets {
		if hasDestroyed(t, custosv1alpha1.DestroyedSecret, key.String()) {
			continue
		}
		gone, uid, err := r.deleteAndVerify(ctx, &corev1.Secret{}, key)
		if err != nil {
			return false, err
		}
		if !gone {
			return false, nil
		}
		r.addDestroyed(t, custosv1alpha1.DestroyedLocation{Kind: custosv1alpha1.DestroyedSecret, Name: key.String(), Identifier: secretIdentifier(key, uid),
			Method: "Clear", Technique: "Kubernetes DELETE (the database password it held no longer opens anything: the role is dropped)",
			Tool: "kube-apiserver", StartedAt: started, CompletedAt: metav1.NewTime(r.Clock.Now()), Verification: "GET returns 404 Not Found"})
	}
	// A recorded namespace already gone (deleted by someone, or by an earlier attempt) is verified gone by its UID.
	for _, n := range nss.Gone {
		if hasDestroyed(t, custosv1alpha1.DestroyedNamespace, n.Name) {
			continue
		}
		verification := "GET returns 404 Not Found"
		if other := live[n.Name]; other != nil {
			verification = fmt.Sprintf("GET returns another namespace of that name (uid %s, not the tenant's: left alone), not uid %s", other.UID, n.UID)
		}
		r.addDestroyed(t, custosv1alpha1.DestroyedLocation{Kind: custosv1alpha1.DestroyedNamespace, Name: n.Name, Identifier: fmt.Sprintf("namespace %s uid %s", n.Name, n.UID),
			Method: "Clear", Technique: "Kubernetes DELETE of the namespace and, by the namespace controller, every object in it",
			Tool: "kube-apiserver", StartedAt: started, CompletedAt: metav1.NewTime(r.Clock.Now()), Verification: verification})
	}
	for _, n := range nss.Owned {
		if hasDestroyed(t, custosv1alpha1.DestroyedNamespace, n.Name) {
			continue
		}
		gone, _, err := r.deleteVerified(ctx, &corev1.Namespace{}, client.ObjectKey{Name: n.Name}, types.UID(n.UID))
		if err != nil {
			return false, err
		}
		if !gone {
			// The namespace controller is deleting its content; come back. If that takes long, say what holds it.
			return false, r.namespaceStuck(ctx, t, n.Name, types.UID(n.UID))
		}
		r.addDestroyed(t, custosv1alpha1.DestroyedLocation{Kind: custosv1alpha1.DestroyedNamespace, Name: n.Name, Identifier: fmt.Sprintf("namespace %s uid %s", n.Name, n.UID),
			Method: "Clear", Technique: "Kubernetes DELETE of the namespace and, by the namespace controller, every object in it",
			Tool: "kube-apiserver", StartedAt: started, CompletedAt: metav1.NewTime(r.Clock.Now()), Verification: "GET returns 404 Not Found"})
	}
	var purgedNS []string
	nSecrets := 0
	for _, d := range t.Status.Exit.Destroyed {
		switch d.Kind {
		case custosv1alpha1.DestroyedNamespace:
			purgedNS = append(purgedNS, d.Name)
		case custosv1alpha1.DestroyedSecret:
			nSecrets++
		}
	}
	if err := r.audit(ctx, t, evidence.ActionLiveDataPurged, map[string]string{"database": t.DatabaseName(), "namespaces": strings.Join(purgedNS, ",")}); err != nil {
		return false, err // purged (and recorded in status), but not counted as done until it is on the trail
	}
	at := metav1.NewTime(r.Clock.Now())
	t.Status.Exit.LiveDataPurgedAt = &at
	conditions.Set(&t.Status.Conditions, t.Generation, custosv1alpha1.ConditionLiveDataPurged, true, custosv1alpha1.ReasonPurged,
		fmt.Sprintf("database %s and its role, %d Secret(s) and %d namespace(s) verified gone", t.DatabaseName(), nSecrets, len(purgedNS)))
	r.Recorder.Eventf(t, nil, corev1.EventTypeNormal, "LiveDataPurged", "Exit", "database %s, its role, the Secrets and the namespaces are verified gone", t.DatabaseName())
	return true, nil
}

func secretIdentifier(key client.ObjectKey, uid string) string {
	if uid == "" {
		return "Secret " + key.String()
	}
	return fmt.Sprintf("Secret %s uid %s", key, uid)
}

// deleteAndVerify deletes obj (if there) and reports whether a live read returns 404, with the UID it had.
func (r *TenantExitReconciler) deleteAndVerify(ctx context.Context, obj client.Object, key client.ObjectKey) (bool, string, error) {
	return r.deleteVerified(ctx, obj, key, "")
}

// deleteVerified deletes the object at key, exactly the one read (UID precondition), and reports whether it is
// gone, with the UID it had. With want set, only the object of that UID is deleted: another object of that name
// (the one recorded was deleted, and someone made a new one) is left alone, and the recorded one counts as gone.
func (r *TenantExitReconciler) deleteVerified(ctx context.Context, obj client.Object, key client.ObjectKey, want types.UID) (bool, string, error) {
	err := r.APIReader.Get(ctx, key, obj)
	if apierrors.IsNotFound(err) {
		return true, "", nil
	}
	if err != nil {
		return false, "", err
	}
	uid := obj.GetUID()
	if want != "" && uid != want {
		return true, "", nil
	}
	if obj.GetDeletionTimestamp() == nil {
		err := r.Client.Delete(ctx, obj, client.Preconditions{UID: &uid})
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			return false, string(uid), fmt.Errorf("deleting %T %s: %w", obj, key, err)
		}
	}
	err = r.APIReader.Get(ctx, key, obj)
	if apierrors.IsNotFound(err) || (err == nil && obj.GetUID() != uid) {
		return true, string(uid), nil
	}
	return false, string(uid), err
}

// foreignSecret reports whether the Secret at key exists without the tenant's label: custos did not make it for
// this tenant, and the exit leaves it alone (with a Warning Event).
func (r *TenantExitReconciler) foreignSecret(ctx context.Context, t *custosv1alpha1.Tenant, key client.ObjectKey) (bool, error) {
	var sec corev1.Secret
	err := r.APIReader.Get(ctx, key, &sec)
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if sec.Labels[custosv1alpha1.LabelTenant] == t.Name {
		return false, nil
	}
	r.Recorder.Eventf(t, nil, corev1.EventTypeWarning, "SecretNotOwned", "Exit",
		"Secret %s does not carry the label %s=%s: custos did not make it for this tenant and leaves it alone", key, custosv1alpha1.LabelTenant, t.Name)
	return true, nil
}

// disposeLocations are the BackupLocations that may hold a repository of the tenant.
func (r *TenantExitReconciler) disposeLocations(s *exitScope) []string {
	var locs []string
	if s.policy != nil {
		locs = append(locs, s.policy.Spec.Primary.Name)
		if s.policy.Spec.Offsite != nil {
			locs = append(locs, s.policy.Spec.Offsite.Name)
		}
	}
	for _, b := range s.tenant.Status.Backups {
		if !slices.Contains(locs, b.Location) {
			locs = append(locs, b.Location)
		}
	}
	return locs
}

// dispose destroys every repository of the tenant (a Shred task per location in the Runner), then the Secret of
// repository keys: with every copy of the keys gone, whatever a backend might still hold is unreadable.
func (r *TenantExitReconciler) dispose(ctx context.Context, s *exitScope) (bool, error) {
	t := s.tenant
	if len(t.Status.Tasks) > 0 {
		return false, nil // the backup controller is draining; a running task must not write into a repository being destroyed
	}
	ex := t.Status.Exit
	slot := ex.DisposalStartedAt.Time.UTC()
	pending := false
	for _, loc := range r.disposeLocations(s) {
		if hasDestroyed(t, custosv1alpha1.DestroyedRepository, loc) {
			// Recorded on the trail once; an append that failed after the outcome was in status is retried here.
			if err := r.auditShredded(ctx, t, loc); err != nil {
				return false, err
			}
			continue
		}
		if shredIntentOf(t, loc) == nil {
			// What is about to be destroyed goes into status before the Shred starts (the next reconcile submits
			// it), so that a restart that loses the task's outcome still knows which repository it destroyed.
			recordShredIntent(t, loc, r.Clock.Now())
			pending = true
			continue
		}
		sp := runner.Spec{Tenant: t.Name, Kind: custosv1alpha1.TaskShred, Location: loc, Slot: slot, Attempt: int(ex.Step.Attempts) + 1}
		if res, ok := r.Runner.Result(sp.Key()); ok {
			// The location's jurisdiction goes on the certificate: read it before the result is forgotten, so a
			// failed read is retried with the result still there (a deleted BackupLocation leaves it empty).
			var bl custosv1alpha1.BackupLocation
			if err := r.Client.Get(ctx, client.ObjectKey{Name: loc}, &bl); err != nil && !apierrors.IsNotFound(err) {
				return false, fmt.Errorf("reading BackupLocation %s for the destruction record: %w", loc, err)
			}
			r.Runner.Forget(sp.Key())
			if res.Err != nil {
				return false, fmt.Errorf("destroying the repository at %s: %w", loc, res.Err)
			}
			var rep storage.Report
			if err := json.Unmarshal(res.Output, &rep); err != nil {
				return false, err
			}
			id := shredRepositoryID(shredIntentOf(t, loc), rep)
			technique := "restic forget of every snapshot and prune --max-unused 0, then DELETE of every object of the repository (data, index, snapshots, locks, keys, config) at the backend"
			method := custosv1alpha1.SanitizationMethod("Purge")
			if t.Spec.Exit.Backups == custosv1alpha1.BackupDisposalExpire {
				technique = "retention expiry (every snapshot older than keepWithin forgotten and pruned), then " + technique
			}
			r.addDestroyed(t, custosv1alpha1.DestroyedLocation{Kind: custosv1alpha1.DestroyedRepository, Name: loc,
				Identifier:   fmt.Sprintf("restic repository %s at %s (%d snapshot(s), %d object(s), %d bytes deleted)", id, rep.Repository, rep.SnapshotsBefore, rep.ObjectsDeleted, rep.BytesDeleted),
				Jurisdiction: string(bl.Spec.Jurisdiction), Method: method, Technique: technique,
				Tool: strings.TrimSpace(rep.Tool + " " + rep.ToolVersion), StartedAt: metav1.NewTime(rep.StartedAt), CompletedAt: metav1.NewTime(rep.CompletedAt),
				Verification: rep.Verification})
			r.Recorder.Eventf(t, nil, corev1.EventTypeNormal, "RepositoryDestroyed", "Exit", "repository %s at %s destroyed and verified gone", id, loc)
			if err := r.auditShredded(ctx, t, loc); err != nil {
				return false, err // the outcome is in status; the entry is retried before the step counts as done
			}
			continue
		}
		pending = true
		r.Runner.Submit(sp)
	}
	if pending {
		return false, nil
	}
	key := client.ObjectKey{Namespace: r.Namespace, Name: t.RepoKeySecretName()}
	// Every repository is verified gone: that is on the trail before the keys go (a failed append stops here,
	// with the keys still there, and is retried).
	if err := r.audit(ctx, t, evidence.ActionBackupsExpired, map[string]string{"locations": strings.Join(r.disposeLocations(s), ",")}); err != nil {
		return false, err
	}
	gone, uid, err := r.deleteAndVerify(ctx, &corev1.Secret{}, key)
	if err != nil || !gone {
		return false, err
	}
	r.addDestroyed(t, custosv1alpha1.DestroyedLocation{Kind: custosv1alpha1.DestroyedSecret, Name: key.String(), Identifier: secretIdentifier(key, uid),
		Method: "Purge", Technique: "cryptographic erase: the only copy of the repositories' keys (restic data is AES-256 encrypted) deleted",
		Tool: "kube-apiserver", StartedAt: ex.Step.StartedAt, CompletedAt: metav1.NewTime(r.Clock.Now()), Verification: "GET returns 404 Not Found"})
	conditions.Set(&t.Status.Conditions, t.Generation, custosv1alpha1.ConditionBackupsExpired, true, custosv1alpha1.ReasonRepositoriesDestroyed,
		"every backup repository of the tenant is verified gone and its keys are deleted")
	return true, nil
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

// legalHoldDetail adds the hold's until date (when it has one) to a LegalHoldSet entry's detail, so the
// certificate can say what the hold was.
func legalHoldDetail(h *custosv1alpha1.LegalHold, detail map[string]string) map[string]string {
	if h != nil && h.Until != nil {
		detail["until"] = h.Until.UTC().Format(time.RFC3339)
	}
	return detail
}

// shredIntentOf is the intent recorded for loc, or nil.
func shredIntentOf(t *custosv1alpha1.Tenant, loc string) *custosv1alpha1.ShredIntent {
	for i := range t.Status.Exit.ShredIntents {
		if t.Status.Exit.ShredIntents[i].Location == loc {
			return &t.Status.Exit.ShredIntents[i]
		}
	}
	return nil
}

// recordShredIntent writes into status which repository the Shred at loc is about to destroy, as the backups
// last saw it.
func recordShredIntent(t *custosv1alpha1.Tenant, loc string, now time.Time) {
	in := custosv1alpha1.ShredIntent{Location: loc, RecordedAt: metav1.NewTime(now)}
	for _, b := range t.Status.Backups {
		if b.Location == loc {
			in.RepositoryID, in.Snapshots = b.RepositoryID, b.Snapshots
		}
	}
	t.Status.Exit.ShredIntents = append(t.Status.Exit.ShredIntents, in)
}

// shredRepositoryID names the destroyed repository for the certificate: the one the Shred opened, else the one
// recorded before it ran (an earlier run destroyed it and its outcome was lost), else none.
func shredRepositoryID(intent *custosv1alpha1.ShredIntent, rep storage.Report) string {
	switch {
	case rep.RepositoryID != "":
		return rep.RepositoryID
	case intent != nil && intent.RepositoryID != "":
		return fmt.Sprintf("%s (recorded before the Shred at %s with %d snapshot(s); already gone when this run of the Shred looked: an earlier run destroyed it and its outcome was lost)",
			intent.RepositoryID, intent.RecordedAt.UTC().Format(time.RFC3339), intent.Snapshots)
	}
	return "none (no repository existed)"
}

// auditShredded records the destruction of the repository at loc (from status) on the trail, once per step.
func (r *TenantExitReconciler) auditShredded(ctx context.Context, t *custosv1alpha1.Tenant, loc string) error {
	detail := map[string]string{"location": loc}
	for _, d := range t.Status.Exit.Destroyed {
		if d.Kind == custosv1alpha1.DestroyedRepository && d.Name == loc {
			detail["repository"] = d.Identifier
		}
	}
	if in := shredIntentOf(t, loc); in != nil && in.RepositoryID != "" {
		detail["repositoryID"] = in.RepositoryID
	}
	return r.audit(ctx, t, evidence.ActionShredded, detail)
}
