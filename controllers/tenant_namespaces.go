package controllers

import (
	"context"
	"fmt"
	"net"
	"sort"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/log"

	custosv1alpha1 "github.com/custos-io/custos/api/v1alpha1"
	"github.com/custos-io/custos/internal/conditions"
	"github.com/custos-io/custos/internal/lifecycle"
)

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
