package controllers

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"
	"sigs.k8s.io/yaml"

	custosv1alpha1 "github.com/custos-io/custos/api/v1alpha1"
	"github.com/custos-io/custos/internal/conditions"
	"github.com/custos-io/custos/internal/tenantns"
)

// What the suspension reads, changes and deletes in a tenant namespace (besides what scaleDown patches).
// +kubebuilder:rbac:groups="",resources=pods,verbs=get;list;delete
// +kubebuilder:rbac:groups="",resources=replicationcontrollers,verbs=get;list;patch
// +kubebuilder:rbac:groups=apps,resources=replicasets;daemonsets,verbs=get;list;patch
// +kubebuilder:rbac:groups=batch,resources=jobs,verbs=get;list;patch
// +kubebuilder:rbac:groups=rbac.authorization.k8s.io,resources=rolebindings,verbs=get;list;delete
// +kubebuilder:rbac:groups=networking.k8s.io,resources=networkpolicies,verbs=get;list;create;update;delete

const (
	// suspensionConfigMap, in each tenant namespace, keeps the manifest of every object the suspension deleted
	// (RoleBindings, NetworkPolicies, Pods no controller re-creates): it is in the exit's export and goes with the
	// namespace.
	suspensionConfigMap = "custos-suspension"
	// annotationSuspendedFrom, on a workload the suspension stopped, holds the fields it changed as they were
	// (JSON), e.g. {"replicas":3}.
	annotationSuspendedFrom = "custos.io/suspended-from"
	// nodeSelectorSuspended is the node selector the suspension puts on DaemonSets: no node carries it.
	nodeSelectorSuspended = "custos.io/suspended"
	// defaultNamespaceStuckAfter is how long a namespace may take to go before the exit reports it stuck.
	defaultNamespaceStuckAfter = 2 * time.Minute
)

// exitNamespaces reads, live, every namespace the tenant recorded (status.namespaces) or names (spec) and sorts
// them (internal/tenantns): the exit acts only on the owned ones; the live objects are returned by name.
func (r *TenantExitReconciler) exitNamespaces(ctx context.Context, t *custosv1alpha1.Tenant) (tenantns.Result, map[string]*corev1.Namespace, error) {
	recorded := make([]tenantns.Recorded, 0, len(t.Status.Namespaces))
	names := t.NamespaceNames()
	for _, n := range t.Status.Namespaces {
		recorded = append(recorded, tenantns.Recorded{Name: n.Name, UID: n.UID})
		names = append(names, n.Name)
	}
	observed := map[string]*tenantns.Live{}
	live := map[string]*corev1.Namespace{}
	for _, name := range names {
		if _, done := live[name]; done {
			continue
		}
		var ns corev1.Namespace
		err := r.APIReader.Get(ctx, client.ObjectKey{Name: name}, &ns)
		if apierrors.IsNotFound(err) {
			live[name] = nil
			continue
		}
		if err != nil {
			return tenantns.Result{}, nil, fmt.Errorf("reading namespace %s: %w", name, err)
		}
		live[name] = &ns
		observed[name] = &tenantns.Live{UID: string(ns.UID), TenantLabel: ns.Labels[custosv1alpha1.LabelTenant],
			TenantUIDAnnotation: ns.Annotations[custosv1alpha1.AnnotationTenantUID], Deleting: ns.DeletionTimestamp != nil}
	}
	res := tenantns.Classify(tenantns.Tenant{Name: t.Name, UID: string(t.UID)}, recorded, t.NamespaceNames(), observed)
	return res, live, nil
}

// reportNotOwned shows the namespaces the exit leaves alone: NamespacesReady False (NamespaceNotOwned) naming them,
// and a Warning Event when that is new.
func (r *TenantExitReconciler) reportNotOwned(t *custosv1alpha1.Tenant, res tenantns.Result) {
	c := meta.FindStatusCondition(t.Status.Conditions, custosv1alpha1.ConditionNamespacesReady)
	msg := res.Message()
	if msg == "" {
		if c != nil && c.Reason == custosv1alpha1.ReasonNamespaceNotOwned {
			conditions.Set(&t.Status.Conditions, t.Generation, custosv1alpha1.ConditionNamespacesReady, true, custosv1alpha1.ReasonReconciled,
				"every namespace the tenant names or recorded is proven the tenant's")
		}
		return
	}
	msg = conditions.Truncate(msg, 4000)
	if c == nil || c.Reason != custosv1alpha1.ReasonNamespaceNotOwned || c.Message != msg {
		r.Recorder.Eventf(t, nil, corev1.EventTypeWarning, custosv1alpha1.ReasonNamespaceNotOwned, "Exit", "%s", conditions.Truncate(msg, 1000))
	}
	conditions.Set(&t.Status.Conditions, t.Generation, custosv1alpha1.ConditionNamespacesReady, false, custosv1alpha1.ReasonNamespaceNotOwned, msg)
}

// suspendNamespace stops everything of the tenant in one namespace it owns, keeping what it deletes or changes:
//   - every RoleBinding (the owners' custos-owners and any the owners made) is deleted, so nobody the tenant
//     named can change anything any more, e.g. scale a workload back up;
//   - custos-default-deny is put back as custos wrote it, and every other NetworkPolicy is deleted (policies add
//     up: one allow policy of the owners would reopen traffic);
//   - Deployments, StatefulSets, ReplicaSets and ReplicationControllers go to zero replicas, Jobs and CronJobs are
//     suspended, DaemonSets get a node selector no node has (scaleDown);
//   - every Pod is deleted.
//
// What is deleted is saved first, as manifests in the ConfigMap custos-suspension of the namespace; a stopped
// workload keeps the changed fields' old values in its annotation custos.io/suspended-from. Both are in the exit's
// export (which is taken after the suspension) and are destroyed with the namespace. It ends by checking that
// nothing of it came back.
func (r *TenantExitReconciler) suspendNamespace(ctx context.Context, t *custosv1alpha1.Tenant, ns string) error {
	var rbs rbacv1.RoleBindingList
	if err := r.APIReader.List(ctx, &rbs, client.InNamespace(ns)); err != nil {
		return err
	}
	if err := r.deleteSaved(ctx, t, ns, items(rbs.Items)); err != nil {
		return fmt.Errorf("removing the RoleBindings of namespace %s: %w", ns, err)
	}

	deny := &networkingv1.NetworkPolicy{}
	err := r.APIReader.Get(ctx, client.ObjectKey{Namespace: ns, Name: custosv1alpha1.PolicyDefaultDeny}, deny)
	want := denyAll()
	switch {
	case apierrors.IsNotFound(err):
		deny = &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: custosv1alpha1.PolicyDefaultDeny, Namespace: ns, Labels: t.ManagedLabels()}, Spec: want}
		if err := r.Client.Create(ctx, deny); err != nil {
			return fmt.Errorf("creating NetworkPolicy %s/%s: %w", ns, custosv1alpha1.PolicyDefaultDeny, err)
		}
	case err != nil:
		return err
	case !equality.Semantic.DeepEqual(deny.Spec, want):
		if err := r.save(ctx, t, ns, deny); err != nil {
			return err
		}
		deny.Spec = want
		if err := r.Client.Update(ctx, deny); err != nil {
			return fmt.Errorf("restoring NetworkPolicy %s/%s to deny everything: %w", ns, custosv1alpha1.PolicyDefaultDeny, err)
		}
	}
	var nps networkingv1.NetworkPolicyList
	if err := r.APIReader.List(ctx, &nps, client.InNamespace(ns)); err != nil {
		return err
	}
	var others []client.Object
	for i := range nps.Items {
		if nps.Items[i].Name != custosv1alpha1.PolicyDefaultDeny {
			others = append(others, &nps.Items[i])
		}
	}
	if err := r.deleteSaved(ctx, t, ns, others); err != nil {
		return fmt.Errorf("removing the NetworkPolicies of namespace %s: %w", ns, err)
	}

	if err := r.scaleDown(ctx, ns); err != nil {
		return err
	}

	var pods corev1.PodList
	if err := r.APIReader.List(ctx, &pods, client.InNamespace(ns)); err != nil {
		return err
	}
	var keep, plain []client.Object
	for i := range pods.Items {
		p := &pods.Items[i]
		if p.DeletionTimestamp != nil {
			continue
		}
		if stoppedController(p) {
			plain = append(plain, p) // its controller, stopped, would not make it again: its template is its manifest
		} else {
			keep = append(keep, p)
		}
	}
	if err := r.deleteSaved(ctx, t, ns, keep); err != nil {
		return fmt.Errorf("deleting the Pods of namespace %s: %w", ns, err)
	}
	for _, p := range plain {
		if err := r.deleteExact(ctx, p); err != nil {
			return fmt.Errorf("deleting Pod %s/%s: %w", ns, p.GetName(), err)
		}
	}
	if left, err := r.namespaceRunning(ctx, ns, true); err != nil || left != "" {
		if err == nil {
			err = fmt.Errorf("namespace %s is not stopped after the suspension: %s (it came back, or something re-creates it); retried", ns, left)
		}
		return err
	}
	return nil
}

// namespaceRunning says what of the suspension does not hold in namespace ns (empty: it holds): a RoleBinding,
// a NetworkPolicy but custos' deny-all, and with workloads a running workload or a Pod not being deleted.
func (r *TenantExitReconciler) namespaceRunning(ctx context.Context, ns string, workloads bool) (string, error) {
	var left []string
	var rbs rbacv1.RoleBindingList
	if err := r.APIReader.List(ctx, &rbs, client.InNamespace(ns)); err != nil {
		return "", err
	}
	for _, rb := range rbs.Items {
		left = append(left, "RoleBinding "+rb.Name)
	}
	var nps networkingv1.NetworkPolicyList
	if err := r.APIReader.List(ctx, &nps, client.InNamespace(ns)); err != nil {
		return "", err
	}
	deny := false
	for _, np := range nps.Items {
		if np.Name == custosv1alpha1.PolicyDefaultDeny && equality.Semantic.DeepEqual(np.Spec, denyAll()) {
			deny = true
			continue
		}
		left = append(left, "NetworkPolicy "+np.Name)
	}
	if !deny {
		left = append(left, "no deny-all NetworkPolicy "+custosv1alpha1.PolicyDefaultDeny)
	}
	if workloads {
		for _, k := range stoppables {
			list := k.list()
			if err := r.APIReader.List(ctx, list, client.InNamespace(ns)); err != nil {
				return "", err
			}
			objs, err := meta.ExtractList(list)
			if err != nil {
				return "", err
			}
			for _, o := range objs {
				if o := o.(client.Object); k.running(o) {
					left = append(left, k.kind+" "+o.GetName()+" running")
				}
			}
		}
		var pods corev1.PodList
		if err := r.APIReader.List(ctx, &pods, client.InNamespace(ns)); err != nil {
			return "", err
		}
		for _, p := range pods.Items {
			if p.DeletionTimestamp == nil {
				left = append(left, "Pod "+p.Name)
			}
		}
	}
	return strings.Join(left, ", "), nil
}

func denyAll() networkingv1.NetworkPolicySpec {
	return networkingv1.NetworkPolicySpec{PodSelector: metav1.LabelSelector{},
		PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress}}
}

// stoppedController reports whether p is controlled by a kind scaleDown stops (which would not make it again).
func stoppedController(p *corev1.Pod) bool {
	c := metav1.GetControllerOf(p)
	if c == nil {
		return false
	}
	switch c.APIVersion + "/" + c.Kind {
	case "apps/v1/ReplicaSet", "apps/v1/StatefulSet", "apps/v1/DaemonSet", "batch/v1/Job", "v1/ReplicationController":
		return true
	}
	return false
}

func items[T any, PT interface {
	*T
	client.Object
}](list []T) []client.Object {
	out := make([]client.Object, 0, len(list))
	for i := range list {
		out = append(out, PT(&list[i]))
	}
	return out
}

// deleteSaved saves the objects' manifests in the namespace's custos-suspension ConfigMap, then deletes each
// (exactly that object: UID precondition).
func (r *TenantExitReconciler) deleteSaved(ctx context.Context, t *custosv1alpha1.Tenant, ns string, objs []client.Object) error {
	if len(objs) == 0 {
		return nil
	}
	if err := r.save(ctx, t, ns, objs...); err != nil {
		return err
	}
	for _, o := range objs {
		if err := r.deleteExact(ctx, o); err != nil {
			return fmt.Errorf("deleting %s %s: %w", kindOf(r, o), o.GetName(), err)
		}
	}
	return nil
}

// deleteExact deletes o if it is still the object read (same UID); gone already is fine.
func (r *TenantExitReconciler) deleteExact(ctx context.Context, o client.Object) error {
	uid := o.GetUID()
	err := r.Client.Delete(ctx, o, client.Preconditions{UID: &uid})
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return nil // gone, or replaced by another object (seen by the check at the end of the suspension)
	}
	return err
}

func kindOf(r *TenantExitReconciler, o client.Object) string {
	gvk, err := apiutil.GVKForObject(o, r.Client.Scheme())
	if err != nil {
		return fmt.Sprintf("%T", o)
	}
	return gvk.Kind
}

// save adds the objects' manifests to the namespace's custos-suspension ConfigMap, keyed <kind>.<name>.yaml. A key
// already there is kept: the first save holds the object as the tenant had it.
func (r *TenantExitReconciler) save(ctx context.Context, t *custosv1alpha1.Tenant, ns string, objs ...client.Object) error {
	cm := &corev1.ConfigMap{}
	err := r.APIReader.Get(ctx, client.ObjectKey{Namespace: ns, Name: suspensionConfigMap}, cm)
	create := apierrors.IsNotFound(err)
	if err != nil && !create {
		return err
	}
	if create {
		cm = &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: suspensionConfigMap, Namespace: ns, Labels: t.ManagedLabels(),
			Annotations: map[string]string{"custos.io/description": "What custos deleted when it suspended the tenant at the contract's end (contract " +
				t.Spec.Contract.ID + "), as manifests; stopped workloads keep their changed fields' old values in the annotation " + annotationSuspendedFrom}}}
	}
	if cm.Data == nil {
		cm.Data = map[string]string{}
	}
	changed := false
	for _, o := range objs {
		gvk, err := apiutil.GVKForObject(o, r.Client.Scheme())
		if err != nil {
			return err
		}
		key := strings.ToLower(gvk.Kind) + "." + o.GetName() + ".yaml"
		if len(key) > 253 {
			sum := sha256.Sum256([]byte(o.GetName()))
			key = strings.ToLower(gvk.Kind) + "." + hex.EncodeToString(sum[:16]) + ".yaml"
		}
		if _, ok := cm.Data[key]; ok {
			continue
		}
		c := o.DeepCopyObject().(client.Object)
		c.GetObjectKind().SetGroupVersionKind(gvk)
		c.SetManagedFields(nil)
		b, err := yaml.Marshal(c)
		if err != nil {
			return err
		}
		cm.Data[key] = string(b)
		changed = true
	}
	switch {
	case create:
		err = r.Client.Create(ctx, cm)
	case changed:
		err = r.Client.Update(ctx, cm)
	}
	if err != nil {
		return fmt.Errorf("saving what the suspension removes in ConfigMap %s/%s (nothing was removed): %w", ns, suspensionConfigMap, err)
	}
	return nil
}

// suspendedFrom is the annotation a stopped workload gets: the fields stop changes, as they were.
func suspendedFrom(fields map[string]any) string {
	b, _ := json.Marshal(fields)
	return string(b)
}

// nsConditionTypes are the namespace controller's conditions on a namespace that does not go away.
var nsConditionTypes = []corev1.NamespaceConditionType{corev1.NamespaceFinalizersRemaining, corev1.NamespaceContentRemaining,
	corev1.NamespaceDeletionContentFailure, corev1.NamespaceDeletionDiscoveryFailure, corev1.NamespaceDeletionGVParsingFailure}

// remainingKinds are the kinds looked at for objects held by finalizers in a namespace that does not go away (the
// kinds the objects snapshot saves, and those the suspension stops); the namespace controller's own conditions,
// quoted as well, cover every other kind.
var remainingKinds = append(append([]schema.GroupVersionKind(nil), objectKinds...),
	schema.GroupVersionKind{Version: "v1", Kind: "Pod"}, schema.GroupVersionKind{Group: "apps", Version: "v1", Kind: "ReplicaSet"},
	schema.GroupVersionKind{Version: "v1", Kind: "ReplicationController"})

// namespaceStuck reports, once namespace ns (being deleted) has not gone for NamespaceStuckAfter, what holds it:
// LiveDataPurged False (NamespaceStuck) naming the namespace, the objects and finalizers left and since when, and
// a Warning Event when that is new.
func (r *TenantExitReconciler) namespaceStuck(ctx context.Context, t *custosv1alpha1.Tenant, name string, uid types.UID) error {
	var ns corev1.Namespace
	if err := r.APIReader.Get(ctx, client.ObjectKey{Name: name}, &ns); err != nil || ns.UID != uid || ns.DeletionTimestamp == nil {
		return client.IgnoreNotFound(err)
	}
	after := r.NamespaceStuckAfter
	if after <= 0 {
		after = defaultNamespaceStuckAfter
	}
	now := r.Clock.Now()
	if now.Sub(ns.DeletionTimestamp.Time) < after {
		return nil
	}
	var remaining []tenantns.Remaining
	for _, gvk := range remainingKinds {
		list := &metav1.PartialObjectMetadataList{}
		list.SetGroupVersionKind(gvk.GroupVersion().WithKind(gvk.Kind + "List"))
		if err := r.APIReader.List(ctx, list, client.InNamespace(name)); err != nil {
			return fmt.Errorf("listing %s in namespace %s: %w", gvk.Kind, name, err)
		}
		for _, o := range list.Items {
			remaining = append(remaining, tenantns.Remaining{Kind: gvk.Kind, Name: o.Name, Finalizers: o.Finalizers, Deleting: o.DeletionTimestamp != nil})
		}
	}
	var conds []string
	for _, typ := range nsConditionTypes {
		for _, c := range ns.Status.Conditions {
			if c.Type == typ && c.Status == corev1.ConditionTrue {
				conds = append(conds, fmt.Sprintf("%s: %s", c.Type, c.Message))
			}
		}
	}
	msg := conditions.Truncate(tenantns.StuckMessage(name, ns.DeletionTimestamp.Time, remaining, conds), 4000)
	if c := meta.FindStatusCondition(t.Status.Conditions, custosv1alpha1.ConditionLiveDataPurged); c == nil || c.Reason != custosv1alpha1.ReasonNamespaceStuck || c.Message != msg {
		r.Recorder.Eventf(t, nil, corev1.EventTypeWarning, custosv1alpha1.ReasonNamespaceStuck, "Exit", "%s", conditions.Truncate(msg, 1000))
	}
	conditions.Set(&t.Status.Conditions, t.Generation, custosv1alpha1.ConditionLiveDataPurged, false, custosv1alpha1.ReasonNamespaceStuck, msg)
	return nil
}
