package controllers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/source"

	custosv1alpha1 "github.com/custos-io/custos/api/v1alpha1"
	"github.com/custos-io/custos/internal/audittrail"
	"github.com/custos-io/custos/internal/conditions"
	"github.com/custos-io/custos/internal/evidence"
	"github.com/custos-io/custos/internal/export"
	"github.com/custos-io/custos/internal/lifecycle"
	"github.com/custos-io/custos/internal/runner"
)

const (
	exportMaxAttempts  = 3
	defaultExpireAfter = 10 * 24 * time.Hour
)

// DataExportReconciler writes a tenant's export (a BagIt bag with a Frictionless Data Package) through the
// Runner, checks the receiver's receipt against the bag's digest, and deletes the bag expireAfterDelivery after
// it was delivered (or acknowledged).
type DataExportReconciler struct {
	Client    client.Client
	Recorder  events.EventRecorder
	Clock     clock.PassiveClock
	Runner    runner.Runner
	Done      <-chan event.GenericEvent
	Audit     *audittrail.Store
	RetryWait time.Duration
}

// +kubebuilder:rbac:groups=custos.io,resources=dataexports,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=custos.io,resources=dataexports/status,verbs=get;update;patch

func exportSpec(de *custosv1alpha1.DataExport) runner.Spec {
	return runner.Spec{Tenant: de.Spec.TenantRef.Name, Kind: custosv1alpha1.TaskExport, Export: de.Name, Slot: de.CreationTimestamp.UTC()}
}

// Reconcile moves a DataExport through Pending → Running → Ready → Acknowledged → Expired (or Failed).
func (r *DataExportReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var de custosv1alpha1.DataExport
	if err := r.Client.Get(ctx, req.NamespacedName, &de); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	ctx = log.IntoContext(ctx, log.FromContext(ctx).WithValues("dataexport", de.Name))
	base := de.DeepCopy()
	now := r.Clock.Now().UTC()
	var t custosv1alpha1.Tenant
	tenantErr := r.Client.Get(ctx, client.ObjectKey{Name: de.Spec.TenantRef.Name}, &t)
	if tenantErr != nil && !apierrors.IsNotFound(tenantErr) {
		return ctrl.Result{}, tenantErr
	}
	tenant := &t
	if tenantErr != nil {
		tenant = nil
	}
	res, err := r.step(ctx, &de, tenant, now)
	de.Status.ObservedGeneration = de.Generation
	// No reapply: the export's steps depend on its own status, so a conflict reconciles again on fresh data.
	if perr := patchStatus(ctx, r.Client, r.Client, base, &de, nil); perr != nil {
		return ctrl.Result{}, perr
	}
	// A result is forgotten only once its outcome is in status.
	if sp := exportSpec(&de); de.Status.Phase != custosv1alpha1.ExportRunning {
		r.Runner.Forget(sp.Key())
	}
	return res, err
}

func (r *DataExportReconciler) step(ctx context.Context, de *custosv1alpha1.DataExport, t *custosv1alpha1.Tenant, now time.Time) (ctrl.Result, error) {
	st := &de.Status
	switch st.Phase {
	case "", custosv1alpha1.ExportPending:
		if t == nil {
			st.Phase = custosv1alpha1.ExportPending
			conditions.Set(&st.Conditions, de.Generation, custosv1alpha1.ConditionReady, false, custosv1alpha1.ReasonTenantNotFound,
				fmt.Sprintf("Tenant %q not found: correct spec.tenantRef (it cannot be changed: create another DataExport)", de.Spec.TenantRef.Name))
			return ctrl.Result{RequeueAfter: r.RetryWait}, nil
		}
		if de.Spec.Include.Database && t.Status.Database == nil {
			st.Phase = custosv1alpha1.ExportPending
			conditions.Set(&st.Conditions, de.Generation, custosv1alpha1.ConditionReady, false, custosv1alpha1.ReasonDatabaseNotReady,
				fmt.Sprintf("Tenant %s has no database yet; the export starts once it is provisioned", t.Name))
			return ctrl.Result{RequeueAfter: r.RetryWait}, nil
		}
		if lp := t.Status.Exit; lp != nil && lp.LiveDataPurgedAt != nil {
			st.Phase = custosv1alpha1.ExportFailed
			conditions.Set(&st.Conditions, de.Generation, custosv1alpha1.ConditionReady, false, custosv1alpha1.ReasonExportFailed,
				fmt.Sprintf("Tenant %s's live data was purged at %s: there is nothing left to export", t.Name, lp.LiveDataPurgedAt.UTC().Format(time.RFC3339)))
			return ctrl.Result{}, nil
		}
		st.Phase, st.StartedAt = custosv1alpha1.ExportRunning, ptr.To(metav1.NewTime(now))
		conditions.Set(&st.Conditions, de.Generation, custosv1alpha1.ConditionReady, false, custosv1alpha1.ReasonExportWriting,
			fmt.Sprintf("writing the bag to %s", de.BagPath()))
		r.Runner.Submit(exportSpec(de))
		return ctrl.Result{}, nil
	case custosv1alpha1.ExportRunning:
		return r.collect(ctx, de, t, now)
	case custosv1alpha1.ExportReady:
		if res, done := r.receipt(ctx, de, t, now); done {
			return res, nil
		}
		return r.expire(ctx, de, t, now)
	case custosv1alpha1.ExportAcknowledged:
		return r.expire(ctx, de, t, now)
	}
	return ctrl.Result{}, nil
}

// collect records a finished export task, or submits it again after a manager restart.
func (r *DataExportReconciler) collect(ctx context.Context, de *custosv1alpha1.DataExport, t *custosv1alpha1.Tenant, now time.Time) (ctrl.Result, error) {
	st := &de.Status
	sp := exportSpec(de)
	res, ok := r.Runner.Result(sp.Key())
	if !ok {
		if !r.Runner.Active(sp.Key()) {
			r.Runner.Submit(sp) // a manager restarted while writing: the bag is written again (atomically)
		}
		return ctrl.Result{}, nil
	}
	if res.Err != nil {
		st.FailedAttempts++
		attempts := int(st.FailedAttempts)
		msg := fmt.Sprintf("attempt %d of %d: %v", attempts, exportMaxAttempts, res.Err)
		if attempts >= exportMaxAttempts {
			st.Phase = custosv1alpha1.ExportFailed
			conditions.Set(&st.Conditions, de.Generation, custosv1alpha1.ConditionReady, false, custosv1alpha1.ReasonExportFailed, conditions.Truncate(msg, 4000))
			r.Recorder.Eventf(de, nil, corev1.EventTypeWarning, custosv1alpha1.ReasonExportFailed, "Export", "%s", conditions.Truncate(msg, 1000))
			return ctrl.Result{}, nil
		}
		conditions.Set(&st.Conditions, de.Generation, custosv1alpha1.ConditionReady, false, custosv1alpha1.ReasonExportWriting, conditions.Truncate(msg, 4000))
		r.Runner.Forget(sp.Key())
		st.Phase = custosv1alpha1.ExportPending
		return ctrl.Result{RequeueAfter: r.RetryWait << (attempts - 1)}, nil
	}
	var out export.Result
	if err := json.Unmarshal(res.Output, &out); err != nil {
		return ctrl.Result{}, err
	}
	if t != nil {
		// Written before the phase moves on: until its entry is on the trail the export stays Running and its
		// result is kept, so a failed append is retried (recorded once, by its step key).
		if err := r.audit(ctx, t, evidence.ActionExportWritten, map[string]string{"export": de.Name, "sha256": out.SHA256, "bytes": fmt.Sprint(out.Bytes)}); err != nil {
			return ctrl.Result{RequeueAfter: r.RetryWait}, err
		}
	}
	st.Phase = custosv1alpha1.ExportReady
	st.Artefact = &custosv1alpha1.ExportArtefact{Location: out.Path, SHA256: out.SHA256, Bytes: out.Bytes, PayloadOxum: out.PayloadOxum, Files: int32(out.Files)}
	st.DeliveredAt = ptr.To(metav1.NewTime(res.Finished.UTC()))
	st.ExpiresAt = ptr.To(metav1.NewTime(res.Finished.UTC().Add(r.expireAfter(ctx, de, t))))
	conditions.Set(&st.Conditions, de.Generation, custosv1alpha1.ConditionReady, true, custosv1alpha1.ReasonExportDelivered,
		fmt.Sprintf("bag %s (%d bytes, %d payload files, sha256 %s) delivered; it is deleted at %s", out.Path, out.Bytes, out.Files, out.SHA256, st.ExpiresAt.UTC().Format(time.RFC3339)))
	conditions.Set(&st.Conditions, de.Generation, custosv1alpha1.ConditionExportAcknowledged, false, custosv1alpha1.ReasonAwaitingReceipt,
		"waiting for the receiver's receipt: set spec.receipt.sha256 to the sha256 of the bag as received (`custos export fetch` does it)")
	r.Recorder.Eventf(de, nil, corev1.EventTypeNormal, custosv1alpha1.ReasonExportDelivered, "Export", "bag %s written, sha256 %s", out.Path, out.SHA256)
	return ctrl.Result{RequeueAfter: st.ExpiresAt.Sub(now)}, nil
}

func (r *DataExportReconciler) expireAfter(ctx context.Context, de *custosv1alpha1.DataExport, t *custosv1alpha1.Tenant) time.Duration {
	if de.Spec.ExpireAfterDelivery != nil {
		if d, err := de.Spec.ExpireAfterDelivery.Parse(); err == nil {
			return d
		}
	}
	if t != nil {
		var p custosv1alpha1.RetentionPolicy
		if err := r.Client.Get(ctx, client.ObjectKey{Name: t.Spec.RetentionPolicyRef.Name}, &p); err == nil && p.Spec.Export.ExpireAfterDelivery != "" {
			if d, err := p.Spec.Export.ExpireAfterDelivery.Parse(); err == nil {
				return d
			}
		}
	}
	return defaultExpireAfter
}

// receipt compares the receiver's digest with the bag's. A match acknowledges the export (and the bag then
// lives expireAfterDelivery from that moment: "deleted 10 days after download"); a mismatch is reported and
// changes nothing else.
func (r *DataExportReconciler) receipt(ctx context.Context, de *custosv1alpha1.DataExport, t *custosv1alpha1.Tenant, now time.Time) (ctrl.Result, bool) {
	st := &de.Status
	if de.Spec.Receipt == nil || st.Artefact == nil {
		return ctrl.Result{}, false
	}
	if !strings.EqualFold(de.Spec.Receipt.SHA256, st.Artefact.SHA256) {
		if c := meta.FindStatusCondition(st.Conditions, custosv1alpha1.ConditionExportAcknowledged); c == nil || c.Reason != custosv1alpha1.ReasonReceiptMismatch {
			r.Recorder.Eventf(de, nil, corev1.EventTypeWarning, custosv1alpha1.ReasonReceiptMismatch, "Acknowledge", "receipt %s does not match the bag %s", de.Spec.Receipt.SHA256, st.Artefact.SHA256)
		}
		conditions.Set(&st.Conditions, de.Generation, custosv1alpha1.ConditionExportAcknowledged, false, custosv1alpha1.ReasonReceiptMismatch,
			fmt.Sprintf("the receipt's sha256 %s is not the bag's %s: the bag was damaged or another file was checked. Nothing is destroyed; fetch the bag again and correct spec.receipt",
				de.Spec.Receipt.SHA256, st.Artefact.SHA256))
		return ctrl.Result{}, false
	}
	if t != nil {
		if err := r.audit(ctx, t, evidence.ActionExportAcknowledged, map[string]string{"export": de.Name, "sha256": st.Artefact.SHA256, "receivedBy": de.Spec.Receipt.ReceivedBy}); err != nil {
			log.FromContext(ctx).Error(err, "The acknowledgement is not recorded yet; retried")
			return ctrl.Result{RequeueAfter: r.RetryWait}, true
		}
	}
	st.Phase = custosv1alpha1.ExportAcknowledged
	st.AcknowledgedAt = ptr.To(metav1.NewTime(now))
	st.ExpiresAt = ptr.To(metav1.NewTime(now.Add(r.expireAfter(ctx, de, t))))
	by := de.Spec.Receipt.ReceivedBy
	if by == "" {
		by = "the receiver"
	}
	conditions.Set(&st.Conditions, de.Generation, custosv1alpha1.ConditionExportAcknowledged, true, custosv1alpha1.ReasonReceiptMatched,
		fmt.Sprintf("%s confirmed sha256 %s; the bag is deleted at %s", by, st.Artefact.SHA256, st.ExpiresAt.UTC().Format(time.RFC3339)))
	r.Recorder.Eventf(de, nil, corev1.EventTypeNormal, custosv1alpha1.ReasonReceiptMatched, "Acknowledge", "receipt matches the bag (sha256 %s)", st.Artefact.SHA256)
	return ctrl.Result{RequeueAfter: st.ExpiresAt.Sub(now)}, true
}

// expire deletes the bag at expiresAt (unless a legal hold on the tenant freezes it) and verifies it is gone.
func (r *DataExportReconciler) expire(ctx context.Context, de *custosv1alpha1.DataExport, t *custosv1alpha1.Tenant, now time.Time) (ctrl.Result, error) {
	st := &de.Status
	if st.ExpiresAt == nil || now.Before(st.ExpiresAt.Time) {
		if st.ExpiresAt != nil {
			return ctrl.Result{RequeueAfter: min(st.ExpiresAt.Sub(now), 24*time.Hour)}, nil
		}
		return ctrl.Result{}, nil
	}
	if t != nil && lifecycle.HoldActive(t.Spec.LegalHold, now) {
		conditions.Set(&st.Conditions, de.Generation, custosv1alpha1.ConditionReady, true, custosv1alpha1.ReasonLegalHoldActive,
			"the bag is past its expiry but the tenant's legal hold keeps it: "+t.Spec.LegalHold.Reason)
		return ctrl.Result{RequeueAfter: time.Hour}, nil
	}
	path := de.ArtefactPath()
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return ctrl.Result{}, fmt.Errorf("deleting the expired bag %s: %w", path, err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		return ctrl.Result{}, fmt.Errorf("the expired bag %s is still there after deletion: %v", path, err)
	}
	if t != nil {
		// The bag is gone; the export is Expired only once that is on the trail (a retry finds the bag gone and
		// records it once).
		if err := r.audit(ctx, t, evidence.ActionExportExpired, map[string]string{"export": de.Name, "path": path}); err != nil {
			return ctrl.Result{RequeueAfter: r.RetryWait}, err
		}
	}
	st.Phase, st.ExpiredAt = custosv1alpha1.ExportExpired, ptr.To(metav1.NewTime(now))
	conditions.Set(&st.Conditions, de.Generation, custosv1alpha1.ConditionReady, false, custosv1alpha1.ReasonExportExpired,
		fmt.Sprintf("the bag %s was deleted at %s, as the export policy says (expireAfterDelivery)", path, now.Format(time.RFC3339)))
	r.Recorder.Eventf(de, nil, corev1.EventTypeNormal, custosv1alpha1.ReasonExportExpired, "Expire", "bag %s deleted", path)
	return ctrl.Result{}, nil
}

func (r *DataExportReconciler) audit(ctx context.Context, t *custosv1alpha1.Tenant, a evidence.Action, detail map[string]string) error {
	if r.Audit == nil {
		return nil
	}
	detail[audittrail.StepKey] = string(a) + "/" + detail["export"]
	return r.Audit.Record(ctx, t, a, detail)
}

// SetupWithManager registers the controller; finished export tasks arrive through Done.
func (r *DataExportReconciler) SetupWithManager(mgr ctrl.Manager) error {
	// A tenant's legal hold keeps its bags past expiry; when it is lifted (a spec change) they are deleted at once,
	// not at the next hourly look: the exit's certificate waits for its bag.
	byTenant := handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []ctrl.Request {
		var list custosv1alpha1.DataExportList
		if err := mgr.GetClient().List(ctx, &list); err != nil {
			return nil
		}
		var out []ctrl.Request
		for i := range list.Items {
			if de := &list.Items[i]; de.Spec.TenantRef.Name == o.GetName() && (de.Status.Phase == custosv1alpha1.ExportReady || de.Status.Phase == custosv1alpha1.ExportAcknowledged) {
				out = append(out, ctrl.Request{NamespacedName: client.ObjectKey{Name: de.Name}})
			}
		}
		return out
	})
	return ctrl.NewControllerManagedBy(mgr).
		For(&custosv1alpha1.DataExport{}).
		Watches(&custosv1alpha1.Tenant{}, byTenant, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		WatchesRawSource(source.Channel(r.Done, &handler.EnqueueRequestForObject{})).
		Named("dataexport").
		Complete(r)
}

// exportBag writes the bag of the DataExport named in sp (runner task).
func (e *BackupExecutor) exportBag(ctx context.Context, sp runner.Spec) ([]byte, error) {
	name := sp.Export
	var de custosv1alpha1.DataExport
	if err := e.Reader.Get(ctx, client.ObjectKey{Name: name}, &de); err != nil {
		return nil, err
	}
	var t custosv1alpha1.Tenant
	if err := e.Reader.Get(ctx, client.ObjectKey{Name: de.Spec.TenantRef.Name}, &t); err != nil {
		return nil, err
	}
	in := export.Input{PgDump: e.Programs.PgDump, Now: e.Clock.Now().UTC(), Info: export.BagInfo{
		SourceOrganization: e.Processor, ExternalIdentifier: t.Spec.Contract.ID,
		ExternalDescription: fmt.Sprintf("Data of %s (tenant %s), exported for %s", t.Spec.DisplayName, t.Name, t.Spec.DataController.Name),
		ContactName:         t.Spec.DataController.Contact, ContactEmail: t.Spec.DataController.Email, Tenant: t.Name}}
	if de.Spec.Include.Database {
		if t.Status.Database == nil {
			return nil, errors.New("the tenant has no database")
		}
		var srv custosv1alpha1.DatabaseServer
		if err := e.Reader.Get(ctx, client.ObjectKey{Name: t.Status.Database.Server}, &srv); err != nil {
			return nil, err
		}
		cfg, err := adminConfig(ctx, e.Reader, e.Namespace, &srv)
		if err != nil {
			return nil, err
		}
		in.Conn, in.Database = cfg, t.Status.Database.Name
	}
	if de.Spec.Include.KubernetesObjects {
		objs, err := e.objects(ctx, &t)
		if err != nil {
			return nil, err
		}
		paths := make([]string, 0, len(objs))
		for p := range objs {
			if strings.Contains(p, "/secret/") {
				continue // credentials are not the tenant's data and must not leave in a bag
			}
			paths = append(paths, p)
		}
		slices.Sort(paths)
		for _, p := range paths {
			in.Objects = append(in.Objects, export.Object{Path: p, Data: objs[p]})
		}
	}
	if err := os.MkdirAll(de.Spec.Delivery.Filesystem.Path, 0o700); err != nil {
		return nil, fmt.Errorf("delivery directory: %w", err)
	}
	res, err := export.WriteFile(ctx, de.BagPath(), in)
	if err != nil {
		return nil, err
	}
	return json.Marshal(res)
}
