package controllers

import (
	"context"
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	custosv1alpha1 "github.com/custos-io/custos/api/v1alpha1"
	"github.com/custos-io/custos/internal/conditions"
	"github.com/custos-io/custos/internal/retention"
)

// RetentionPolicyReconciler checks what the schema cannot (references, jurisdictions, schedules) and counts the
// Tenants that use a policy.
type RetentionPolicyReconciler struct {
	Client client.Client
}

// +kubebuilder:rbac:groups=custos.io,resources=retentionpolicies,verbs=get;list;watch
// +kubebuilder:rbac:groups=custos.io,resources=retentionpolicies/status,verbs=get;update;patch

// policyProblem is the first thing wrong with a policy, with its reason; ok when nothing is.
func policyProblem(p *custosv1alpha1.RetentionPolicy, locations map[string]*custosv1alpha1.BackupLocation) (ok bool, reason, msg string) {
	refs := []struct{ role, name string }{{"primary", p.Spec.Primary.Name}}
	if p.Spec.Offsite != nil {
		refs = append(refs, struct{ role, name string }{"offsite", p.Spec.Offsite.Name})
	}
	var places []string
	for _, ref := range refs {
		bl := locations[ref.name]
		if bl == nil {
			return false, custosv1alpha1.ReasonNotFound, fmt.Sprintf("the %s BackupLocation %q does not exist: nothing is backed up until it does", ref.role, ref.name)
		}
		if !custosv1alpha1.JurisdictionAdmitted(p.Spec.AllowedJurisdictions, bl.Spec.Jurisdiction) {
			return false, custosv1alpha1.ReasonJurisdictionNotAllowed, fmt.Sprintf("the %s BackupLocation %q is in %s, which allowedJurisdictions %v does not admit: nothing is stored there", ref.role, ref.name, bl.Spec.Jurisdiction, p.Spec.AllowedJurisdictions)
		}
		places = append(places, fmt.Sprintf("%s %s (%s)", ref.role, ref.name, bl.Spec.Jurisdiction))
	}
	for _, s := range []struct {
		name string
		s    custosv1alpha1.Schedule
	}{
		{"schedule", p.Spec.Schedule}, {"copySchedule", p.Spec.CopySchedule}, {"expirySchedule", p.Spec.ExpirySchedule},
		{"check.schedule", p.Spec.Check.Schedule}, {"restoreDrill.schedule", p.Spec.RestoreDrill.Schedule},
	} {
		if _, err := retention.ParseSchedule(s.s); err != nil {
			return false, custosv1alpha1.ReasonScheduleInvalid, fmt.Sprintf("%s: %v", s.name, err)
		}
	}
	for _, d := range []struct {
		name string
		d    custosv1alpha1.Duration
	}{{"keepWithin", p.Spec.KeepWithin}, {"maxSnapshotAge", p.Spec.MaxSnapshotAge}} {
		if d.d == "" {
			continue
		}
		if _, err := d.d.Parse(); err != nil {
			return false, "DurationInvalid", fmt.Sprintf("%s: %v", d.name, err)
		}
	}
	return true, custosv1alpha1.ReasonReconciled, fmt.Sprintf("snapshots kept %s in %s", p.Spec.KeepWithin, strings.Join(places, " and "))
}

// Reconcile records Ready and the number of Tenants.
func (r *RetentionPolicyReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var p custosv1alpha1.RetentionPolicy
	if err := r.Client.Get(ctx, req.NamespacedName, &p); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	base := p.DeepCopy()
	var bls custosv1alpha1.BackupLocationList
	if err := r.Client.List(ctx, &bls); err != nil {
		return ctrl.Result{}, err
	}
	locations := map[string]*custosv1alpha1.BackupLocation{}
	for i := range bls.Items {
		locations[bls.Items[i].Name] = &bls.Items[i]
	}
	ok, reason, msg := policyProblem(&p, locations)
	var tenants custosv1alpha1.TenantList
	if err := r.Client.List(ctx, &tenants); err != nil {
		return ctrl.Result{}, err
	}
	n := int32(0)
	for _, t := range tenants.Items {
		if t.Spec.RetentionPolicyRef.Name == p.Name {
			n++
		}
	}
	p.Status.Tenants = n
	p.Status.ObservedGeneration = p.Generation
	conditions.Set(&p.Status.Conditions, p.Generation, custosv1alpha1.ConditionReady, ok, reason, msg)
	if err := patchStatus(ctx, r.Client, r.Client, base, &p, func(fresh, mine *custosv1alpha1.RetentionPolicy) { fresh.Status = mine.Status }); err != nil {
		return ctrl.Result{}, err
	}
	return ctrl.Result{}, nil
}

// SetupWithManager registers the reconciler: a policy is looked at again when it changes, when a BackupLocation
// appears, changes or goes, and when a Tenant that names it comes or goes.
func (r *RetentionPolicyReconciler) SetupWithManager(mgr ctrl.Manager) error {
	allPolicies := handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, _ client.Object) []reconcile.Request {
		var ps custosv1alpha1.RetentionPolicyList
		if err := r.Client.List(ctx, &ps); err != nil {
			return nil
		}
		out := make([]reconcile.Request, 0, len(ps.Items))
		for _, p := range ps.Items {
			out = append(out, reconcile.Request{NamespacedName: types.NamespacedName{Name: p.Name}})
		}
		return out
	})
	tenantPolicy := handler.EnqueueRequestsFromMapFunc(func(_ context.Context, o client.Object) []reconcile.Request {
		t, ok := o.(*custosv1alpha1.Tenant)
		if !ok {
			return nil
		}
		return []reconcile.Request{{NamespacedName: types.NamespacedName{Name: t.Spec.RetentionPolicyRef.Name}}}
	})
	return ctrl.NewControllerManagedBy(mgr).
		For(&custosv1alpha1.RetentionPolicy{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&custosv1alpha1.BackupLocation{}, allPolicies, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&custosv1alpha1.Tenant{}, tenantPolicy, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Named("retentionpolicy").
		Complete(r)
}
