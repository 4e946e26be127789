package controllers

import (
	"context"
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
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	custosv1alpha1 "github.com/custos-io/custos/api/v1alpha1"
	"github.com/custos-io/custos/internal/conditions"
	"github.com/custos-io/custos/internal/postgres"
)

// DatabaseServerReconciler checks that custos can administer a PostgreSQL server and reports its version.
type DatabaseServerReconciler struct {
	Client client.Client
	// APIReader reads Secrets the cache does not hold (admin credentials carry no custos label).
	APIReader client.Reader
	Recorder  events.EventRecorder
	Clock     clock.PassiveClock
	// Namespace is the manager's namespace, where the admin Secrets are.
	Namespace string
	// Recheck is how often a Ready server is checked again; a failing one is retried after RetryAfter.
	Recheck, RetryAfter time.Duration
	// Pools holds one administrative connection pool per DatabaseServer.
	Pools *postgres.Pools
	// PgDump is the pg_dump that backups and exports run (Programs.PgDump): its major version must be at least
	// each server's. Empty: custos runs no pg_dump, and only the server's version is checked.
	PgDump string
}

// +kubebuilder:rbac:groups=custos.io,resources=databaseservers,verbs=get;list;watch
// +kubebuilder:rbac:groups=custos.io,resources=databaseservers/status,verbs=get;update;patch

// Reconcile connects to the server with the admin Secret and records Ready, its reason and the server version. A
// server whose version custos is not tested against, or that the manager's pg_dump cannot dump, is not Ready
// (reason UnsupportedVersion); its version is recorded all the same.
func (r *DatabaseServerReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var s custosv1alpha1.DatabaseServer
	if err := r.Client.Get(ctx, req.NamespacedName, &s); err != nil {
		if apierrors.IsNotFound(err) {
			r.Pools.Forget(req.Name)
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	base := s.DeepCopy()
	logger := log.FromContext(ctx).WithValues("databaseServer", s.Name)

	ok, reason, msg, version := r.check(ctx, &s)
	if version != "" {
		// The server answered (an unsupported one too).
		now := metav1.NewTime(r.Clock.Now())
		s.Status.LastCheckedAt = &now
		s.Status.Version = version
	}
	s.Status.ObservedGeneration = s.Generation
	was := meta.FindStatusCondition(base.Status.Conditions, custosv1alpha1.ConditionReady)
	conditions.Set(&s.Status.Conditions, s.Generation, custosv1alpha1.ConditionReady, ok, reason, msg)
	if was == nil || (was.Status == metav1.ConditionTrue) != ok || was.Reason != reason {
		typ := corev1.EventTypeNormal
		if !ok {
			typ = corev1.EventTypeWarning
		}
		r.Recorder.Eventf(&s, nil, typ, reason, "Check", "%s", msg)
		logger.Info("Checked the database server", "ready", ok, "reason", reason)
	}
	if err := patchStatus(ctx, r.Client, r.APIReader, base, &s, func(fresh, mine *custosv1alpha1.DatabaseServer) { fresh.Status = mine.Status }); err != nil {
		return ctrl.Result{}, err
	}
	if !ok {
		return ctrl.Result{RequeueAfter: r.RetryAfter}, nil
	}
	return ctrl.Result{RequeueAfter: r.Recheck}, nil
}

// check connects and reads the server's version; version is empty when the server did not answer.
func (r *DatabaseServerReconciler) check(ctx context.Context, s *custosv1alpha1.DatabaseServer) (ok bool, reason, msg, version string) {
	cfg, err := adminConfig(ctx, r.APIReader, r.Namespace, s)
	var secErr *errSecret
	if errors.As(err, &secErr) {
		return false, custosv1alpha1.ReasonSecretMissing, secErr.Error(), ""
	}
	var notBound *errSecretNotBound
	if errors.As(err, &notBound) {
		return false, custosv1alpha1.ReasonSecretNotBound, notBound.Error(), ""
	}
	if err != nil {
		return false, custosv1alpha1.ReasonUnreachable, err.Error(), ""
	}
	cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	srv, err := r.Pools.Server(cctx, s.Name, cfg)
	if err != nil {
		reason := postgres.FailureReason(err)
		if reason == "" {
			reason = custosv1alpha1.ReasonUnreachable
		}
		return false, reason, fmt.Sprintf("cannot connect to %s:%d as %s: %s", cfg.Host, cfg.Port, cfg.User, err), ""
	}
	defer func() { _ = srv.Close(ctx) }()
	version, num, err := srv.ServerVersion(cctx)
	if err != nil {
		return false, custosv1alpha1.ReasonUnreachable, err.Error(), ""
	}
	if n, err := srv.CountTenantDatabases(cctx); err == nil {
		s.Status.Tenants = int32(n)
	}
	dumpMajor := 0
	if r.PgDump != "" {
		if dumpMajor, err = postgres.PgDumpMajor(cctx, r.PgDump); err != nil {
			return false, custosv1alpha1.ReasonUnsupportedVersion, fmt.Sprintf(
				"cannot tell whether the manager's pg_dump can dump PostgreSQL %s at %s:%d (pg_dump refuses a server newer than itself): %s; give the manager a working pg_dump (flag --pg-dump; chart: extraArgs)",
				postgres.FormatVersionNum(num), cfg.Host, cfg.Port, err), version
		}
	}
	if err := postgres.SupportedVersion(num, dumpMajor); err != nil {
		return false, custosv1alpha1.ReasonUnsupportedVersion, fmt.Sprintf("%s (server %s:%d)", err, cfg.Host, cfg.Port), version
	}
	return true, custosv1alpha1.ReasonReconciled, fmt.Sprintf("connected to PostgreSQL %s at %s:%d, within the range custos is tested against (%s)",
		version, cfg.Host, cfg.Port, postgres.TestedRange()), version
}

// SetupWithManager registers the reconciler.
func (r *DatabaseServerReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		// Status writes (lastCheckedAt) must not trigger the next check: it runs on RequeueAfter.
		For(&custosv1alpha1.DatabaseServer{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Named("databaseserver").
		Complete(r)
}
