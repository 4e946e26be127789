package controllers

import (
	"context"
	"fmt"
	"strings"
	"time"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	custosv1alpha1 "github.com/custos-io/custos/api/v1alpha1"
	"github.com/custos-io/custos/internal/conditions"
	"github.com/custos-io/custos/internal/evidence"
	"github.com/custos-io/custos/internal/signing"
)

// DestructionCertificateReconciler checks every certificate with the published key, as an auditor would, and
// records the outcome in the Verified condition: a certificate edited around its immutability rule, or signed
// by a key that is no longer the published one, shows up here.
type DestructionCertificateReconciler struct {
	Client client.Client
	Keys   *signing.Keys
}

// +kubebuilder:rbac:groups=custos.io,resources=destructioncertificates/status,verbs=get;update;patch

// Reconcile verifies one certificate.
func (r *DestructionCertificateReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var c custosv1alpha1.DestructionCertificate
	if err := r.Client.Get(ctx, req.NamespacedName, &c); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	// The key is picked by the keyid of the envelope's signature from the published history, so certificates
	// signed with an earlier key still verify.
	history, _, err := r.Keys.History(ctx)
	if err != nil {
		return ctrl.Result{}, err
	}
	if len(history) == 0 {
		return ctrl.Result{RequeueAfter: 10 * time.Second}, nil // the manager has not published its key yet
	}
	base := c.DeepCopy()
	pk, pub, kerr := history.KeyFor(evidence.EnvelopeFromAPI(c.Spec.Envelope))
	var problems []string
	if kerr == nil {
		var st evidence.Statement
		st, problems, err = evidence.VerifyCertificate(c.Spec, pub)
		if err == nil {
			if verr := pk.ValidAt(st.Predicate.IssuedAt); verr != nil {
				problems = append(problems, verr.Error())
			}
		}
	}
	switch {
	case kerr != nil:
		conditions.Set(&c.Status.Conditions, c.Generation, custosv1alpha1.ConditionVerified, false, custosv1alpha1.ReasonSignatureInvalid,
			fmt.Sprintf("not signed by a key published in ConfigMap %s/%s: %v", r.Keys.Namespace, signing.DefaultName, kerr))
	case err != nil:
		conditions.Set(&c.Status.Conditions, c.Generation, custosv1alpha1.ConditionVerified, false, custosv1alpha1.ReasonSignatureInvalid,
			fmt.Sprintf("the envelope does not verify with the published key %s: %v", pk.KeyID, err))
	case len(problems) > 0:
		conditions.Set(&c.Status.Conditions, c.Generation, custosv1alpha1.ConditionVerified, false, custosv1alpha1.ReasonInconsistent, conditions.Truncate(strings.Join(problems, "; "), 4000))
	default:
		conditions.Set(&c.Status.Conditions, c.Generation, custosv1alpha1.ConditionVerified, true, custosv1alpha1.ReasonSignatureValid,
			fmt.Sprintf("signed by key %s (ConfigMap %s/%s), complete, and the fields shown agree with the signed payload", pk.KeyID, r.Keys.Namespace, signing.DefaultName))
	}
	c.Status.ObservedGeneration = c.Generation
	return ctrl.Result{}, patchStatus(ctx, r.Client, r.Client, base, &c, func(fresh, mine *custosv1alpha1.DestructionCertificate) { fresh.Status = mine.Status })
}

// SetupWithManager registers the reconciler.
func (r *DestructionCertificateReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).For(&custosv1alpha1.DestructionCertificate{}).Named("destructioncertificate").Complete(r)
}
