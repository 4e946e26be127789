package controllers

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	custosv1alpha1 "github.com/custos-io/custos/api/v1alpha1"
	"github.com/custos-io/custos/internal/conditions"
)

// BackupLocationReconciler checks that a location's base answers and can be written, and counts the tenant
// repositories kept there.
type BackupLocationReconciler struct {
	Client    client.Client
	APIReader client.Reader
	Recorder  events.EventRecorder
	Clock     clock.PassiveClock
	Namespace string
	// Recheck is how often a Ready location is checked again; a failing one is retried after RetryAfter.
	Recheck, RetryAfter time.Duration
}

// +kubebuilder:rbac:groups=custos.io,resources=backuplocations,verbs=get;list;watch
// +kubebuilder:rbac:groups=custos.io,resources=backuplocations/status,verbs=get;update;patch

// Reconcile probes the location and records Ready with a reason.
func (r *BackupLocationReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var bl custosv1alpha1.BackupLocation
	if err := r.Client.Get(ctx, req.NamespacedName, &bl); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	base := bl.DeepCopy()
	b, err := resolveBackend(ctx, r.APIReader, r.Namespace, &bl, "")
	if err == nil {
		err = b.probe(ctx)
	}
	ok, reason, msg := err == nil, custosv1alpha1.ReasonReachable, ""
	if ok {
		msg = fmt.Sprintf("%s answers and is writable (%s, jurisdiction %s)", b.display, b.kind, bl.Spec.Jurisdiction)
		if b.kind == "s3" {
			msg = fmt.Sprintf("%s answers and its bucket accepts the credentials (jurisdiction %s)", b.display, bl.Spec.Jurisdiction)
			if !b.hasS3Keys() {
				msg = fmt.Sprintf("%s answers (jurisdiction %s); the Secret holds no S3 access keys, so the bucket was not checked", b.display, bl.Spec.Jurisdiction)
			}
		}
		now := metav1.NewTime(r.Clock.Now())
		bl.Status.LastCheckedAt = &now
	} else {
		reason, msg = probeReason(err), err.Error()
	}
	var tenants custosv1alpha1.TenantList
	if err := r.Client.List(ctx, &tenants); err == nil {
		n := int32(0)
		for _, t := range tenants.Items {
			for _, lb := range t.Status.Backups {
				if lb.Location == bl.Name && lb.RepositoryID != "" {
					n++
				}
			}
		}
		bl.Status.Repositories = n
	}
	bl.Status.ObservedGeneration = bl.Generation
	was := meta.FindStatusCondition(base.Status.Conditions, custosv1alpha1.ConditionReady)
	conditions.Set(&bl.Status.Conditions, bl.Generation, custosv1alpha1.ConditionReady, ok, reason, msg)
	if was == nil || (was.Status == metav1.ConditionTrue) != ok || was.Reason != reason {
		typ := corev1.EventTypeNormal
		if !ok {
			typ = corev1.EventTypeWarning
		}
		r.Recorder.Eventf(&bl, nil, typ, reason, "Check", "%s", msg)
		log.FromContext(ctx).Info("Checked the backup location", "backupLocation", bl.Name, "ready", ok, "reason", reason)
	}
	if err := patchStatus(ctx, r.Client, r.APIReader, base, &bl, func(fresh, mine *custosv1alpha1.BackupLocation) { fresh.Status = mine.Status }); err != nil {
		return ctrl.Result{}, err
	}
	if !ok {
		return ctrl.Result{RequeueAfter: r.RetryAfter}, nil
	}
	return ctrl.Result{RequeueAfter: r.Recheck}, nil
}

// SetupWithManager registers the reconciler.
func (r *BackupLocationReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		For(&custosv1alpha1.BackupLocation{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Named("backuplocation").
		Complete(r)
}
