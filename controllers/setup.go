// Package controllers holds one reconciler per custos kind. Each reconciler gathers facts, asks a pure decision
// function in internal/ what to do, and carries out one step per reconcile.
package controllers

import (
	ctrl "sigs.k8s.io/controller-runtime"
)

// Options configure the controllers.
type Options struct {
	// Namespace the manager runs in; it holds repository passwords, the signing key and referenced Secrets.
	Namespace string
}

// Permissions the manager needs whatever controllers run: leader election and Events.
// +kubebuilder:rbac:groups=coordination.k8s.io,resources=leases,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Setup registers every reconciler with the manager. The reconcilers arrive with the provisioning, backup and exit
// issues; until then the manager serves health, readiness and metrics only.
func Setup(mgr ctrl.Manager, opts Options) error {
	_ = mgr
	_ = opts
	return nil
}
