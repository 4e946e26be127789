package controllers

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sort"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	custosv1alpha1 "github.com/custos-io/custos/api/v1alpha1"
	"github.com/custos-io/custos/internal/audittrail"
	"github.com/custos-io/custos/internal/conditions"
	"github.com/custos-io/custos/internal/evidence"
	"github.com/custos-io/custos/internal/lifecycle"
	"github.com/custos-io/custos/internal/metrics"
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
		if !equality.Semantic.DeepEqual(base.Status, t.Status) {
			// Optimistic lock: a status written meanwhile (by another controller, or seen late through the cache)
			// makes this patch fail and the reconcile run again on fresh data, instead of being overwritten.
			if err := r.Client.Status().Patch(ctx, &t, client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{})); err != nil && !apierrors.IsNotFound(err) {
				retErr = errors.Join(retErr, err)
			}
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

// ensureNamespaces creates the tenant's namespaces, refusing any existing namespace without the tenant's label,
// then puts quota, limits, network policies and owner bindings in each.
func (r *TenantReconciler) ensureNamespaces(ctx context.Context, s *tenantScope) error {
	t := s.tenant
	names := t.NamespaceNames()
	existing := map[string]*corev1.Namespace{}
	// Check every namespace before creating any: a refusal must leave nothing half-made.
	for _, name := range names {
		var ns corev1.Namespace
		err := r.APIReader.Get(ctx, client.ObjectKey{Name: name}, &ns)
		switch {
		case apierrors.IsNotFound(err):
			continue
		case err != nil:
			return err
		}
		if !createdFor(&ns, t) {
			msg := fmt.Sprintf("namespace %q exists and was not created by custos for this tenant: custos never adopts a namespace it did not create; choose another name in spec.namespaces or delete that namespace",
				name)
			return r.stop(s, custosv1alpha1.ConditionNamespacesReady, custosv1alpha1.ReasonNamespaceNotOwned, msg)
		}
		existing[name] = &ns
	}
	ips, err := r.serverIPs(ctx, s.server.Spec.Host)
	keepDBPolicy := false
	if err != nil || len(ips) == 0 {
		// A failed lookup must not cut the tenant off its database: keep whatever policy exists and retry.
		log.FromContext(ctx).Info("Could not resolve the database host for the egress policy; keeping the current one", "host", s.server.Spec.Host, "error", fmt.Sprint(err))
		keepDBPolicy = true
		s.requeueAfter(r.RetryAfter)
	}
	for _, name := range names {
		ns := existing[name]
		if ns == nil {
			ns = &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: t.ManagedLabels(),
				Annotations: map[string]string{custosv1alpha1.AnnotationTenantUID: string(t.UID)}}}
			if err := r.Client.Create(ctx, ns); err != nil {
				return fmt.Errorf("creating namespace %s: %w", name, err)
			}
			r.Recorder.Eventf(t, nil, corev1.EventTypeNormal, "NamespaceCreated", "Provision", "Created namespace %s", name)
		}
		// Recorded at once (status is written even when a later step fails): the exit acts only on recorded
		// namespaces, so one custos created must never go unrecorded.
		recordNamespace(t, name, ns.UID)
		if ns.DeletionTimestamp != nil {
			conditions.Set(&t.Status.Conditions, t.Generation, custosv1alpha1.ConditionNamespacesReady, false, custosv1alpha1.ReasonProgressing,
				fmt.Sprintf("namespace %s is being deleted; it is created again once it is gone", name))
			s.requeueAfter(5 * time.Second)
			return errStop
		}
		if err := r.ensureInNamespace(ctx, s, name, ips, keepDBPolicy); err != nil {
			return fmt.Errorf("namespace %s: %w", name, err)
		}
	}
	conditions.Set(&t.Status.Conditions, t.Generation, custosv1alpha1.ConditionNamespacesReady, true, custosv1alpha1.ReasonReconciled,
		fmt.Sprintf("%d namespace(s) with quota, limits, default-deny network policies and owner bindings", len(names)))
	return nil
}

// recordNamespace records namespace name (uid) in status.namespaces, replacing an earlier record of that name (a
// namespace deleted and created again). Records are never dropped: a namespace recorded once holds the tenant's
// data, and the exit must find it even if the spec no longer names it.
func recordNamespace(t *custosv1alpha1.Tenant, name string, uid types.UID) {
	for i := range t.Status.Namespaces {
		if t.Status.Namespaces[i].Name == name {
			t.Status.Namespaces[i].UID = string(uid)
			return
		}
	}
	t.Status.Namespaces = append(t.Status.Namespaces, custosv1alpha1.NamespaceStatus{Name: name, UID: string(uid)})
}

// createdFor reports whether custos created namespace ns for tenant t: its UID is recorded in t's status, or it
// carries t's label and t's UID annotation (created, but the reconcile that recorded it did not finish).
func createdFor(ns *corev1.Namespace, t *custosv1alpha1.Tenant) bool {
	if ns.Labels[custosv1alpha1.LabelTenant] != t.Name {
		return false
	}
	for _, st := range t.Status.Namespaces {
		if st.Name == ns.Name && st.UID == string(ns.UID) {
			return true
		}
	}
	return ns.Annotations[custosv1alpha1.AnnotationTenantUID] == string(t.UID)
}

func (r *TenantReconciler) serverIPs(ctx context.Context, host string) ([]net.IP, error) {
	if ip := net.ParseIP(host); ip != nil {
		return []net.IP{ip}, nil
	}
	lookup := r.LookupHost
	if lookup == nil {
		lookup = net.DefaultResolver.LookupHost
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	addrs, err := lookup(cctx, host)
	if err != nil {
		return nil, err
	}
	// Sorted and without duplicates: round-robin DNS must not rewrite the NetworkPolicy on every reconcile.
	sort.Strings(addrs)
	var ips []net.IP
	for i, a := range addrs {
		if i > 0 && addrs[i-1] == a {
			continue
		}
		if ip := net.ParseIP(a); ip != nil {
			ips = append(ips, ip)
		}
	}
	return ips, nil
}

// ensureInNamespace writes quota, limits, network policies and the owners' RoleBinding into one namespace.
func (r *TenantReconciler) ensureInNamespace(ctx context.Context, s *tenantScope, ns string, serverIPs []net.IP, keepDBPolicy bool) error {
	t := s.tenant
	labels := t.ManagedLabels()
	if lifecycle.Ended(t.Spec, r.Clock.Now()) {
		// The contract ended while this reconcile ran (reaching the database can take seconds): the exit's
		// suspension removes the owners' binding and the allow policies, and they must not be put back.
		return errStop
	}

	quota := &corev1.ResourceQuota{ObjectMeta: metav1.ObjectMeta{Name: quotaName, Namespace: ns}}
	if t.Spec.Quota != nil {
		if err := r.apply(ctx, quota, func() {
			quota.Labels = mergeLabels(quota.Labels, labels)
			quota.Spec = corev1.ResourceQuotaSpec{Hard: t.Spec.Quota.Hard}
		}); err != nil {
			return err
		}
	} else if err := r.deleteOwned(ctx, quota, t); err != nil {
		return err
	}

	limits := &corev1.LimitRange{ObjectMeta: metav1.ObjectMeta{Name: limitRangeName, Namespace: ns}}
	if t.Spec.Limits != nil {
		if err := r.apply(ctx, limits, func() {
			limits.Labels = mergeLabels(limits.Labels, labels)
			limits.Spec = corev1.LimitRangeSpec{Limits: []corev1.LimitRangeItem{limitRangeItem(t.Spec.Limits)}}
		}); err != nil {
			return err
		}
	} else if err := r.deleteOwned(ctx, limits, t); err != nil {
		return err
	}

	specs := networkPolicies(t, s.server, serverIPs)
	for _, name := range []string{custosv1alpha1.PolicyDefaultDeny, policyAllowTenant, policyAllowDNS, policyAllowDatabase} {
		np := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}}
		spec, ok := specs[name]
		if !ok && name == policyAllowDatabase && keepDBPolicy {
			continue
		}
		if !ok {
			if err := r.deleteOwned(ctx, np, t); err != nil {
				return err
			}
			continue
		}
		if err := r.apply(ctx, np, func() {
			np.Labels = mergeLabels(np.Labels, labels)
			np.Spec = spec
		}); err != nil {
			return err
		}
	}

	rb := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: ownersBindingName, Namespace: ns}}
	if len(t.Spec.Owners) > 0 {
		if err := r.apply(ctx, rb, func() {
			rb.Labels = mergeLabels(rb.Labels, labels)
			rb.RoleRef = rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "admin"}
			rb.Subjects = ownerSubjects(t)
		}); err != nil {
			if apierrors.IsInvalid(err) {
				// roleRef is immutable; a changed one means delete and create.
				if derr := r.Client.Delete(ctx, rb); derr != nil && !apierrors.IsNotFound(derr) {
					return derr
				}
			}
			return err
		}
	} else if err := r.deleteOwned(ctx, rb, t); err != nil {
		return err
	}
	return nil
}

// apply creates obj or updates it to what mutate sets (drift is overwritten). Objects are only ever applied in
// namespaces custos created for the tenant, under names custos reserves (custos-*), so one that exists without
// custos' label (invisible to the label-filtered cache, e.g. after someone removed the label) is read live and
// taken back.
func (r *TenantReconciler) apply(ctx context.Context, obj client.Object, mutate func()) error {
	_, err := controllerutil.CreateOrUpdate(ctx, r.Client, obj, func() error { mutate(); return nil })
	if !apierrors.IsAlreadyExists(err) {
		return err
	}
	if err := r.APIReader.Get(ctx, client.ObjectKeyFromObject(obj), obj); err != nil {
		return err
	}
	mutate()
	return r.Client.Update(ctx, obj)
}

// deleteOwned deletes obj if it exists and carries the tenant's label; anything else is left alone.
func (r *TenantReconciler) deleteOwned(ctx context.Context, obj client.Object, t *custosv1alpha1.Tenant) error {
	if err := r.Client.Get(ctx, client.ObjectKeyFromObject(obj), obj); err != nil {
		return client.IgnoreNotFound(err)
	}
	if obj.GetLabels()[custosv1alpha1.LabelTenant] != t.Name {
		return nil
	}
	return client.IgnoreNotFound(r.Client.Delete(ctx, obj))
}

// dbFail stops the database steps; DatabaseReady says why.
func (r *TenantReconciler) dbFail(s *tenantScope, reason, msg string) error {
	return r.stop(s, custosv1alpha1.ConditionDatabaseReady, reason, msg)
}

// checkDatabaseOwnership connects to the tenant's server and checks, without changing anything, that no role or
// database of the tenant's name belongs to someone else. It runs before anything is created, so that a refused
// name leaves nothing half-made (and the Tenant deletable).
func (r *TenantReconciler) checkDatabaseOwnership(ctx context.Context, s *tenantScope) error {
	t := s.tenant
	if s.serverWait != "" {
		return nil // ensureDatabase reports the wait, after the namespaces are reconciled
	}
	cfg, err := adminConfig(ctx, r.APIReader, r.Namespace, s.server)
	var secErr *errSecret
	if errors.As(err, &secErr) {
		return r.dbFail(s, custosv1alpha1.ReasonSecretMissing, fmt.Sprintf("DatabaseServer %q: %s", s.server.Name, secErr.Error()))
	}
	var notBound *errSecretNotBound
	if errors.As(err, &notBound) {
		return r.dbFail(s, custosv1alpha1.ReasonSecretNotBound, fmt.Sprintf("DatabaseServer %q: %s", s.server.Name, notBound.Error()))
	}
	if err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	srv, err := r.Pools.Server(cctx, s.server.Name, cfg)
	if err != nil {
		reason := postgres.FailureReason(err)
		if reason == "" {
			reason = custosv1alpha1.ReasonUnreachable
		}
		return r.dbFail(s, reason, fmt.Sprintf("cannot reach DatabaseServer %q (%s:%d): %s", s.server.Name, cfg.Host, cfg.Port, err))
	}
	name := t.DatabaseName()
	if t.Status.Database == nil && strings.HasPrefix(name, postgres.ReservedPrefix) {
		return r.dbFail(s, custosv1alpha1.ReasonDatabaseNameReserved, fmt.Sprintf(
			"database name %s starts with %s, which custos keeps for its own databases and roles (restore-drill scratch databases): nothing was created — set spec.database.name to another name in a new Tenant", name, postgres.ReservedPrefix))
	}
	owner := recordedOwner(t)
	missing, err := findMissing(cctx, srv, t, s.server.Name)
	if err != nil {
		return r.dbFail(s, custosv1alpha1.ReasonProvisioningFailed, err.Error())
	}
	if missing != "" && lossAccepted(t) {
		// The person decided: the lost database is forgotten, and a new one is made (and adopted by its comment).
		missing, owner.DatabaseOID = "", 0
	}
	if err := srv.CheckOwnership(cctx, name, owner); err != nil && missing == "" {
		if errors.Is(err, postgres.ErrNotOwned) {
			return r.dbFail(s, custosv1alpha1.ReasonDatabaseNotOwned, fmt.Sprintf(
				"%s on DatabaseServer %q: custos never adopts a database or role it did not create for this tenant; nothing was created — set spec.database.name to another name in a new Tenant", err, s.server.Name))
		}
		return r.dbFail(s, custosv1alpha1.ReasonProvisioningFailed, err.Error())
	}
	s.db, s.dbConfig, s.missing, s.owner = srv, cfg, missing, owner
	return nil
}

// ensureDatabase creates or corrects the tenant's role and database, keeps the master copy of the password in the
// manager's namespace, rotates it when asked, and writes the credentials Secret into each tenant namespace.
func (r *TenantReconciler) ensureDatabase(ctx context.Context, s *tenantScope) error {
	t := s.tenant
	if s.serverWait != "" {
		return r.wait(s, custosv1alpha1.ConditionDatabaseReady, s.serverWait, s.serverWaitMsg)
	}
	if s.missing != "" {
		return r.reportMissing(ctx, s, s.missing)
	}
	now := r.Clock.Now()
	if at := t.Spec.Database.RotatePasswordAt; at != nil && at.After(now) {
		s.requeueAfter(at.Sub(now))
	}
	master, err := r.masterPassword(ctx, t, now)
	var foreign *errForeignSecret
	if errors.As(err, &foreign) {
		return r.dbFail(s, custosv1alpha1.ReasonSecretMissing, foreign.Error())
	}
	if err != nil {
		return err
	}

	accepting := lossAccepted(t) && s.owner.DatabaseOID == 0

	cctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	name := t.DatabaseName()
	last, seen := r.inDatabaseChecked.Load(t.UID)
	inDB := !seen || last.(inDatabaseCheck).generation != t.Generation || now.Sub(last.(inDatabaseCheck).at) >= r.Resync
	if accepting {
		if err := r.acceptLoss(ctx, s); err != nil {
			return err
		}
	}
	res, err := s.db.EnsureTenant(cctx, postgres.TenantDatabase{
		Owner: s.owner, Name: name,
		ConnectionLimit: int(t.Spec.Database.ConnectionLimit), Extensions: t.Spec.Database.Extensions,
		Password: master.password, ResetPassword: !master.applied, InDatabase: inDB,
	})
	if errors.Is(err, postgres.ErrDatabaseMissing) {
		// Gone between the check and now: the same loss.
		msg, ferr := findMissing(cctx, s.db, t, s.server.Name)
		if ferr != nil || msg == "" {
			msg = err.Error()
		}
		return r.reportMissing(ctx, s, msg)
	}
	if errors.Is(err, postgres.ErrNotOwned) {
		return r.dbFail(s, custosv1alpha1.ReasonDatabaseNotOwned, fmt.Sprintf(
			"%s on DatabaseServer %q: custos never adopts a database or role it did not create for this tenant", err, s.server.Name))
	}
	if err != nil {
		reason := postgres.FailureReason(err)
		if reason == "" {
			reason = custosv1alpha1.ReasonProvisioningFailed
		}
		return r.dbFail(s, reason, err.Error())
	}
	if !master.applied {
		// Only now, with the role changed, may the Secrets hand the new password out.
		if err := r.markApplied(ctx, master.secret); err != nil {
			return err
		}
	}
	if inDB || res.CreatedDB {
		r.inDatabaseChecked.Store(t.UID, inDatabaseCheck{generation: t.Generation, at: now})
	}
	if res.CreatedDB {
		r.Recorder.Eventf(t, nil, corev1.EventTypeNormal, "DatabaseCreated", "Provision", "Created database and role %s on %s (OID %d)", name, s.server.Name, res.OID)
	}
	if res.CreatedDB || t.Status.AuditHead == "" {
		// Until the Provisioned entry is written (status shows a head), provisioning is not done: a failed
		// append is retried on the next reconcile, recorded once (its step key).
		if err := r.Audit.Record(ctx, t, evidence.ActionProvisioned, map[string]string{"uid": string(t.UID), "database": name,
			"oid": fmt.Sprint(res.OID), "server": s.server.Name, "namespaces": strings.Join(t.NamespaceNames(), ","), "contract": t.Spec.Contract.ID,
			audittrail.StepKey: string(evidence.ActionProvisioned) + "/" + string(t.UID)}); err != nil {
			return err
		}
	}
	for _, ns := range t.NamespaceNames() {
		sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: custosv1alpha1.CredentialsSecretName, Namespace: ns}}
		if err := r.apply(ctx, sec, func() {
			sec.Labels = mergeLabels(sec.Labels, t.ManagedLabels())
			sec.Type = corev1.SecretTypeOpaque
			sec.Data = credentialsData(s.server.Spec.Host, s.server.Spec.Port, s.dbConfig.SSLMode, name, name, master.password)
		}); err != nil {
			return fmt.Errorf("writing credentials into namespace %s: %w", ns, err)
		}
	}
	if t.Status.Database == nil {
		t.Status.Database = &custosv1alpha1.DatabaseStatus{}
	}
	t.Status.Database.Server, t.Status.Database.Name, t.Status.Database.Role, t.Status.Database.OID = s.server.Name, name, name, int64(res.OID)
	t.Status.Database.RoleOID = int64(res.RoleOID)
	metrics.DatabaseMissing(t.Name, false)
	if res.PasswordSet || t.Status.Database.PasswordRotatedAt == nil {
		at := metav1.NewTime(now)
		t.Status.Database.PasswordRotatedAt = &at
		if master.rotated {
			r.Recorder.Eventf(t, nil, corev1.EventTypeNormal, "PasswordRotated", "Provision", "Rotated the password of role %s", name)
		}
	}
	if req := t.Spec.Database.RotatePasswordAt; req != nil && !req.After(now) {
		t.Status.Database.RotationHonoured = req.DeepCopy()
	}
	conditions.Set(&t.Status.Conditions, t.Generation, custosv1alpha1.ConditionDatabaseReady, true, custosv1alpha1.ReasonReconciled,
		fmt.Sprintf("database %s (OID %d) on %s, closed to PUBLIC and owned by the tenant's role; credentials in Secret %s of each tenant namespace", name, res.OID, s.server.Name, custosv1alpha1.CredentialsSecretName))
	return nil
}

// Annotations on the master password Secret. They live on the Secret, written together with the password and
// read live, so that a stale cache can never rotate twice for one request, and a rotation interrupted before the
// role was changed is finished (never handed out half-done).
const (
	// annotationRotationHonoured is the spec.database.rotatePasswordAt value the current password answers.
	annotationRotationHonoured = "custos.io/rotation-honoured"
	// annotationPasswordApplied is "true" once the role has the current password.
	annotationPasswordApplied = "custos.io/password-applied"
)

type masterSecret struct {
	secret   *corev1.Secret
	password string
	// applied is false until the role has been given password.
	applied bool
	// rotated is true when password replaced an earlier one at the user's request.
	rotated bool
}

type errForeignSecret struct{ key client.ObjectKey }

func (e *errForeignSecret) Error() string {
	return fmt.Sprintf("Secret %s exists and was not made by custos for this tenant; custos does not overwrite it: delete or rename it", e.key)
}

// masterPassword returns the tenant's database password from its master Secret in the manager's namespace,
// making a new one when the Secret is missing or when spec.database.rotatePasswordAt asks for a rotation that has
// come and is not yet honoured. A new password is written here first (applied=false); the role is changed after,
// and only then marked applied, so a crash anywhere in between is repaired by the next reconcile.
func (r *TenantReconciler) masterPassword(ctx context.Context, t *custosv1alpha1.Tenant, now time.Time) (masterSecret, error) {
	key := client.ObjectKey{Namespace: r.Namespace, Name: t.MasterSecretName()}
	request := ""
	if at := t.Spec.Database.RotatePasswordAt; at != nil && !at.After(now) {
		request = at.UTC().Format(time.RFC3339)
	}
	sec := &corev1.Secret{}
	err := r.APIReader.Get(ctx, key, sec)
	if err != nil && !apierrors.IsNotFound(err) {
		return masterSecret{}, err
	}
	exists := err == nil
	if exists && sec.Labels[custosv1alpha1.LabelTenant] != t.Name {
		return masterSecret{}, &errForeignSecret{key: key}
	}
	have := exists && len(sec.Data[masterPasswordKey]) > 0
	if have && (request == "" || sec.Annotations[annotationRotationHonoured] == request) {
		return masterSecret{secret: sec, password: string(sec.Data[masterPasswordKey]), applied: sec.Annotations[annotationPasswordApplied] == "true"}, nil
	}
	pw, err := postgres.NewPassword()
	if err != nil {
		return masterSecret{}, err
	}
	sec.ObjectMeta = metav1.ObjectMeta{Name: key.Name, Namespace: key.Namespace, ResourceVersion: sec.ResourceVersion,
		Labels:      mergeLabels(map[string]string{custosv1alpha1.LabelPurpose: custosv1alpha1.PurposeDatabaseCredentials}, t.ManagedLabels()),
		Annotations: map[string]string{annotationRotationHonoured: request, annotationPasswordApplied: "false"}}
	sec.Type = corev1.SecretTypeOpaque
	sec.Data = map[string][]byte{masterPasswordKey: []byte(pw)}
	if exists {
		err = r.Client.Update(ctx, sec) // optimistic: a concurrent writer makes this fail and the reconcile retry
	} else {
		err = r.Client.Create(ctx, sec)
	}
	if err != nil {
		return masterSecret{}, fmt.Errorf("writing the master password Secret %s: %w", key, err)
	}
	return masterSecret{secret: sec, password: pw, applied: false, rotated: have}, nil
}

// markApplied records on the master Secret that the role now has its password.
func (r *TenantReconciler) markApplied(ctx context.Context, sec *corev1.Secret) error {
	base := sec.DeepCopy()
	if sec.Annotations == nil {
		sec.Annotations = map[string]string{}
	}
	sec.Annotations[annotationPasswordApplied] = "true"
	return r.Client.Patch(ctx, sec, client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{}))
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
