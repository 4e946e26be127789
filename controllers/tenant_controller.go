package controllers

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
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
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	custosv1alpha1 "github.com/custos-io/custos/api/v1alpha1"
	"github.com/custos-io/custos/internal/audittrail"
	"github.com/custos-io/custos/internal/conditions"
	"github.com/custos-io/custos/internal/lifecycle"
	"github.com/custos-io/custos/internal/postgres"
)

// TenantReconciler provisions a tenant: namespaces with quota, limits, network isolation and owner bindings; a
// PostgreSQL database and role of its own; credentials Secrets. Every step is idempotent and corrects drift.
type TenantReconciler struct {
	Client client.Client
	// APIReader reads what the cache does not hold: namespaces that may lack custos' label, admin Secrets.
	APIReader client.Reader
	Recorder  events.EventRecorder
	Clock     clock.PassiveClock
	// Namespace is the manager's namespace: admin Secrets and the master copy of each tenant's password.
	Namespace string
	// Resync is how often a provisioned tenant is checked again for drift outside Kubernetes (its database).
	Resync time.Duration
	// RetryAfter is the wait before retrying a step that failed on something outside Kubernetes.
	RetryAfter time.Duration
	// LookupHost resolves a database server's host for the egress NetworkPolicy; net.DefaultResolver when nil.
	LookupHost func(ctx context.Context, host string) ([]string, error)
	// Pools holds one administrative connection pool per DatabaseServer.
	Pools *postgres.Pools
	// Audit records the provisioning on the tenant's audit trail.
	Audit *audittrail.Store

	// inDatabaseChecked remembers, per tenant UID, the generation and time of the last check inside the tenant
	// database (schema ownership, extensions), which costs a connection: it is repeated on a spec change and
	// every Resync. Only an optimisation: after a restart every tenant is checked once more.
	inDatabaseChecked sync.Map
}

type inDatabaseCheck struct {
	generation int64
	at         time.Time
}

// +kubebuilder:rbac:groups=custos.io,resources=tenants,verbs=get;list;watch
// +kubebuilder:rbac:groups=custos.io,resources=tenants/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=custos.io,resources=retentionpolicies,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get;list;watch;create;update;patch
// Secrets everywhere: credentials Secrets are written into tenant namespaces, which custos creates at run time.
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups="",resources=resourcequotas;limitranges,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=networking.k8s.io,resources=networkpolicies,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=rbac.authorization.k8s.io,resources=rolebindings,verbs=get;list;watch;create;update;patch;delete
// Binding owners to "admin" needs bind on that ClusterRole only, not admin's permissions themselves.
// +kubebuilder:rbac:groups=rbac.authorization.k8s.io,resources=clusterroles,verbs=bind,resourceNames=admin

// tenantScope is what one reconcile reads and decides.
type tenantScope struct {
	tenant *custosv1alpha1.Tenant
	policy *custosv1alpha1.RetentionPolicy
	server *custosv1alpha1.DatabaseServer
	// db is an administrative session on server, and dbConfig how it was reached.
	db       *postgres.Server
	dbConfig postgres.ConnConfig
	// missing says why the tenant's recorded database is not there (see database_missing.go); "" when it is.
	missing string
	// owner is the tenant as ownership is decided on the server (recorded OIDs, see postgres.Owner).
	owner postgres.Owner
	// requeue is the earliest requested requeue (0: none).
	requeue time.Duration
	// serverWait, when set, is why the database steps of a provisioned tenant wait for its DatabaseServer (see
	// serverBlocks): nothing is read or changed on the server, and DatabaseReady says so.
	serverWait, serverWaitMsg string
}

func (s *tenantScope) requeueAfter(d time.Duration) {
	if d > 0 && (s.requeue == 0 || d < s.requeue) {
		s.requeue = d
	}
}

// errStop ends the reconcile's steps without an error: a condition already says what a person must do.
var errStop = errors.New("stopped: see conditions")

// Reconcile runs the provisioning steps in order and writes status once.
func (r *TenantReconciler) Reconcile(ctx context.Context, req ctrl.Request) (res ctrl.Result, retErr error) {
	var t custosv1alpha1.Tenant
	if err := r.Client.Get(ctx, req.NamespacedName, &t); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	logger := log.FromContext(ctx).WithValues("tenant", t.Name)
	ctx = log.IntoContext(ctx, logger)
	if t.Status.Phase.ExitStarted() || t.Status.Phase == custosv1alpha1.TenantFailed {
		// The exit phases belong to the exit controller; provisioning must never recreate what an exit removed.
		return ctrl.Result{}, nil
	}
	if lifecycle.Ended(t.Spec, r.Clock.Now()) {
		// The contract ended: the exit controller suspends the tenant; provisioning would give LOGIN back.
		return ctrl.Result{}, nil
	}
	base := t.DeepCopy()
	scope := &tenantScope{tenant: &t}

	defer func() {
		r.summarise(scope, retErr)
		// No reapply: a status written meanwhile (by another controller, or seen late through the cache) makes
		// the reconcile run again on fresh data, since provisioning decides from fields the others write.
		if err := patchStatus(ctx, r.Client, r.Client, base, &t, nil); err != nil {
			retErr = errors.Join(retErr, err)
		}
		if retErr == nil {
			res = ctrl.Result{RequeueAfter: scope.requeue}
		}
	}()

	for _, step := range []func(context.Context, *tenantScope) error{r.resolve, r.checkDatabaseOwnership, r.ensureNamespaces, r.ensureDatabase} {
		if err := step(ctx, scope); err != nil {
			if errors.Is(err, errStop) {
				return ctrl.Result{}, nil
			}
			return ctrl.Result{}, err
		}
	}
	scope.requeueAfter(r.Resync)
	return ctrl.Result{}, nil
}

// summarise sets Ready, phase and observedGeneration from the step conditions.
func (r *TenantReconciler) summarise(s *tenantScope, err error) {
	t := s.tenant
	if s.server == nil {
		// resolve refused (refuse set Ready) or could not read; nothing was touched.
		if t.Status.Phase != custosv1alpha1.TenantActive {
			t.Status.Phase = custosv1alpha1.TenantPending
		}
		return
	}
	if err == nil && meta.IsStatusConditionTrue(t.Status.Conditions, custosv1alpha1.ConditionNamespacesReady) &&
		meta.IsStatusConditionTrue(t.Status.Conditions, custosv1alpha1.ConditionDatabaseReady) {
		conditions.Set(&t.Status.Conditions, t.Generation, custosv1alpha1.ConditionReady, true, custosv1alpha1.ReasonReconciled,
			fmt.Sprintf("%d namespace(s) and database %s are provisioned and isolated", len(t.Status.Namespaces), t.DatabaseName()))
		t.Status.Phase = custosv1alpha1.TenantActive
		t.Status.ObservedGeneration = t.Generation
		return
	}
	reason, msg := custosv1alpha1.ReasonProgressing, "provisioning"
	for _, typ := range []string{custosv1alpha1.ConditionDatabaseReady, custosv1alpha1.ConditionNamespacesReady} {
		if c := meta.FindStatusCondition(t.Status.Conditions, typ); c != nil && c.Status != metav1.ConditionTrue {
			reason, msg = c.Reason, c.Message
		}
	}
	if err != nil {
		reason, msg = custosv1alpha1.ReasonProvisioningFailed, err.Error()
	}
	conditions.Set(&t.Status.Conditions, t.Generation, custosv1alpha1.ConditionReady, false, reason, msg)
	if t.Status.Phase != custosv1alpha1.TenantActive {
		t.Status.Phase = custosv1alpha1.TenantProvisioning
	}
}

// stop records on condition condType why provisioning cannot go on (an Event when the reason or message is new),
// asks for a retry later, and ends the steps: a person must act, nothing more is touched.
func (r *TenantReconciler) stop(s *tenantScope, condType, reason, msg string) error {
	t := s.tenant
	if c := meta.FindStatusCondition(t.Status.Conditions, condType); c == nil || c.Reason != reason || c.Message != msg {
		r.Recorder.Eventf(t, nil, corev1.EventTypeWarning, reason, "Provision", "%s", msg)
	}
	conditions.Set(&t.Status.Conditions, t.Generation, condType, false, reason, msg)
	s.requeueAfter(r.RetryAfter)
	return errStop
}

// wait records on condition condType that provisioning waits for the tenant's DatabaseServer (see serverBlocks)
// and ends the steps. The DatabaseServer watch resumes the tenant when the server's Ready changes, so the retry
// asked for is only a safety net: Resync for an unsupported server (a person must act), RetryAfter for a server
// not checked yet (a matter of seconds). Only a person's problem gets a Warning Event.
func (r *TenantReconciler) wait(s *tenantScope, condType, reason, msg string) error {
	t := s.tenant
	if reason == custosv1alpha1.ReasonProgressing {
		conditions.Set(&t.Status.Conditions, t.Generation, condType, false, reason, msg)
		s.requeueAfter(r.RetryAfter)
		return errStop
	}
	if c := meta.FindStatusCondition(t.Status.Conditions, condType); c == nil || c.Reason != reason || c.Message != msg {
		r.Recorder.Eventf(t, nil, corev1.EventTypeWarning, reason, "Provision", "%s", msg)
	}
	conditions.Set(&t.Status.Conditions, t.Generation, condType, false, reason, msg)
	s.requeueAfter(r.Resync)
	return errStop
}

// serverBlocks decides from the DatabaseServer's Ready condition whether tenant t's provisioning waits for it,
// and returns the reason and message for the tenant's condition.
//
// A server that is Ready=False with reason UnsupportedVersion blocks every tenant: one not yet provisioned
// (status.database unset) gets nothing on it, no database and no role; a provisioned one keeps its database, role
// and Secrets exactly as they are (nothing is dropped, revoked or rotated), but custos neither checks nor changes
// them on that server until it is supported again (custos is not tested against it). Any other failure
// (Unreachable, AuthenticationFailed, …) does not block: the steps reach the server themselves and report what
// they find, and a brief outage must not stop a provisioned tenant's reconciles. A server not checked yet (no
// Ready condition, or one older than its spec) makes only a tenant not yet provisioned wait, so that a Tenant
// applied together with its DatabaseServer is not provisioned before the version check has run.
func serverBlocks(t *custosv1alpha1.Tenant, ds *custosv1alpha1.DatabaseServer) (reason, msg string, blocked bool) {
	c := meta.FindStatusCondition(ds.Status.Conditions, custosv1alpha1.ConditionReady)
	provisioned := t.Status.Database != nil
	if c != nil && c.Status == metav1.ConditionFalse && c.Reason == custosv1alpha1.ReasonUnsupportedVersion {
		if provisioned {
			return custosv1alpha1.ReasonDatabaseServerUnsupported, fmt.Sprintf(
				"DatabaseServer %q is not Ready (reason %s: %q): database %s and its role are kept as they are, but custos neither checks nor changes them on that server (no drift correction, no password rotation) until the DatabaseServer is Ready again; the namespaces are still reconciled",
				ds.Name, c.Reason, c.Message, t.Status.Database.Name), true
		}
		return custosv1alpha1.ReasonDatabaseServerUnsupported, fmt.Sprintf(
			"DatabaseServer %q is not Ready (reason %s: %q): nothing is provisioned, no database or role is created on it, until the DatabaseServer is Ready; its message says what to do",
			ds.Name, c.Reason, c.Message), true
	}
	if !provisioned && (c == nil || c.ObservedGeneration < ds.Generation) {
		return custosv1alpha1.ReasonProgressing, fmt.Sprintf(
			"waiting for custos to check DatabaseServer %q (connection and version) before creating anything on it", ds.Name), true
	}
	return "", "", false
}

// serverReadyChanged reports whether a DatabaseServer's Ready condition changed in a way that can change what
// serverBlocks decides or says: its status, reason or observed generation, or the message of an UnsupportedVersion
// (which the tenant's condition quotes). Other message changes (an Unreachable server's errors) are not passed:
// they would reconcile every tenant of the server on every retry for nothing.
func serverReadyChanged(old, cur *custosv1alpha1.DatabaseServer) bool {
	a := meta.FindStatusCondition(old.Status.Conditions, custosv1alpha1.ConditionReady)
	b := meta.FindStatusCondition(cur.Status.Conditions, custosv1alpha1.ConditionReady)
	if a == nil || b == nil {
		return (a == nil) != (b == nil)
	}
	if a.Status != b.Status || a.Reason != b.Reason || a.ObservedGeneration != b.ObservedGeneration {
		return true
	}
	return b.Reason == custosv1alpha1.ReasonUnsupportedVersion && a.Message != b.Message
}

// refuse stops before anything is touched (a reference or a jurisdiction is wrong); Ready says why.
func (r *TenantReconciler) refuse(s *tenantScope, reason, msg string) error {
	return r.stop(s, custosv1alpha1.ConditionReady, reason, msg)
}

// resolve finds the RetentionPolicy and DatabaseServer and checks the server's jurisdiction against the policy.
func (r *TenantReconciler) resolve(ctx context.Context, s *tenantScope) error {
	t := s.tenant
	var policy custosv1alpha1.RetentionPolicy
	if err := r.Client.Get(ctx, client.ObjectKey{Name: t.Spec.RetentionPolicyRef.Name}, &policy); err != nil {
		if apierrors.IsNotFound(err) {
			return r.refuse(s, custosv1alpha1.ReasonNotFound, fmt.Sprintf(
				"RetentionPolicy %q not found: create it or correct spec.retentionPolicyRef; nothing is provisioned until it exists", t.Spec.RetentionPolicyRef.Name))
		}
		return err
	}
	var server custosv1alpha1.DatabaseServer
	if err := r.Client.Get(ctx, client.ObjectKey{Name: t.Spec.Database.ServerRef.Name}, &server); err != nil {
		if apierrors.IsNotFound(err) {
			return r.refuse(s, custosv1alpha1.ReasonNotFound, fmt.Sprintf(
				"DatabaseServer %q not found: create it or correct spec.database.serverRef; nothing is provisioned until it exists", t.Spec.Database.ServerRef.Name))
		}
		return err
	}
	if !custosv1alpha1.JurisdictionAdmitted(policy.Spec.AllowedJurisdictions, server.Spec.Jurisdiction) {
		return r.refuse(s, custosv1alpha1.ReasonJurisdictionNotAllowed, fmt.Sprintf(
			"DatabaseServer %q is in %s, which RetentionPolicy %q does not allow (allowedJurisdictions: %v): use a server in an allowed jurisdiction; nothing is provisioned",
			server.Name, server.Spec.Jurisdiction, policy.Name, policy.Spec.AllowedJurisdictions))
	}
	if reason, msg, blocked := serverBlocks(t, &server); blocked {
		if t.Status.Database == nil {
			// Not provisioned: nothing at all is made (as for a missing server) until the server is checked and
			// supported.
			return r.wait(s, custosv1alpha1.ConditionReady, reason, msg)
		}
		// Provisioned: the namespaces (isolation, quota, owners) are still kept; the database steps wait.
		s.serverWait, s.serverWaitMsg = reason, msg
	}
	s.policy, s.server = &policy, &server
	return nil
}

func (e *errForeignSecret) Error() string {
	return fmt.Sprintf("Secret %s exists and was not made by custos for this tenant; custos does not overwrite it: delete or rename it", e.key)
}

// exitCancelled passes the update in which the exit controller hands a tenant back (a cancelled exit: its phase
// leaves the exit's phases), so provisioning gives back what the suspension took.
var exitCancelled = predicate.Funcs{UpdateFunc: func(e event.UpdateEvent) bool {
	o, n := e.ObjectOld.(*custosv1alpha1.Tenant), e.ObjectNew.(*custosv1alpha1.Tenant)
	return o.Status.Phase.ExitStarted() && !n.Status.Phase.ExitStarted()
}}

// databaseServerReadyChanged passes the updates of a DatabaseServer whose Ready condition changed (see
// serverReadyChanged); creations and spec changes are passed by GenerationChangedPredicate.
var databaseServerReadyChanged = predicate.Funcs{
	CreateFunc:  func(event.CreateEvent) bool { return false },
	DeleteFunc:  func(event.DeleteEvent) bool { return false },
	GenericFunc: func(event.GenericEvent) bool { return false },
	UpdateFunc: func(e event.UpdateEvent) bool {
		o, ok1 := e.ObjectOld.(*custosv1alpha1.DatabaseServer)
		n, ok2 := e.ObjectNew.(*custosv1alpha1.DatabaseServer)
		return ok1 && ok2 && serverReadyChanged(o, n)
	},
}

// SetupWithManager registers the reconciler with watches on everything it makes, mapped back by label.
func (r *TenantReconciler) SetupWithManager(mgr ctrl.Manager, concurrency int) error {
	byLabel := handler.EnqueueRequestsFromMapFunc(func(_ context.Context, o client.Object) []reconcile.Request {
		if name := o.GetLabels()[custosv1alpha1.LabelTenant]; name != "" {
			return []reconcile.Request{{NamespacedName: client.ObjectKey{Name: name}}}
		}
		return nil
	})
	byRef := func(match func(*custosv1alpha1.Tenant, string) bool) handler.EventHandler {
		return handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []reconcile.Request {
			var list custosv1alpha1.TenantList
			if err := mgr.GetClient().List(ctx, &list); err != nil {
				return nil
			}
			var out []reconcile.Request
			for i := range list.Items {
				if match(&list.Items[i], o.GetName()) {
					out = append(out, reconcile.Request{NamespacedName: client.ObjectKey{Name: list.Items[i].Name}})
				}
			}
			return out
		})
	}
	// Drift is an update or a delete of what custos made; the creations it sees are its own, and reacting to
	// them would reconcile each new tenant a dozen times for nothing.
	drift := builder.WithPredicates(predicate.Funcs{CreateFunc: func(event.CreateEvent) bool { return false }})
	return ctrl.NewControllerManagedBy(mgr).
		For(&custosv1alpha1.Tenant{}, builder.WithPredicates(predicate.Or(predicate.GenerationChangedPredicate{}, predicate.LabelChangedPredicate{},
			predicate.AnnotationChangedPredicate{}, exitCancelled))).
		Watches(&corev1.Namespace{}, byLabel, drift).
		Watches(&corev1.ResourceQuota{}, byLabel, drift).
		Watches(&corev1.LimitRange{}, byLabel, drift).
		Watches(&networkingv1.NetworkPolicy{}, byLabel, drift).
		Watches(&rbacv1.RoleBinding{}, byLabel, drift).
		Watches(&corev1.Secret{}, byLabel, drift).
		Watches(&custosv1alpha1.RetentionPolicy{}, byRef(func(t *custosv1alpha1.Tenant, n string) bool { return t.Spec.RetentionPolicyRef.Name == n }),
			builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		// A DatabaseServer's spec, and its Ready condition (serverReadyChanged): a tenant waiting for its server
		// (serverBlocks) resumes as soon as the server is checked and supported, and a provisioned one reports at
		// once that its server became unsupported.
		Watches(&custosv1alpha1.DatabaseServer{}, byRef(func(t *custosv1alpha1.Tenant, n string) bool { return t.Spec.Database.ServerRef.Name == n }),
			builder.WithPredicates(predicate.Or(predicate.GenerationChangedPredicate{}, databaseServerReadyChanged))).
		WithOptions(controller.Options{MaxConcurrentReconciles: concurrency}).
		Named("tenant").
		Complete(r)
}
