package controllers

import (
	"context"
	"fmt"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	custosv1alpha1 "github.com/custos-io/custos/api/v1alpha1"
	"github.com/custos-io/custos/internal/audittrail"
	"github.com/custos-io/custos/internal/conditions"
	"github.com/custos-io/custos/internal/evidence"
	"github.com/custos-io/custos/internal/postgres"
)

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
	detail[audittrail.StepKey] = fmt.Sprintf("%s/%d", actionExitCancelled, observed.Unix())
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
