package controllers

import (
	"context"
	"fmt"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	custosv1alpha1 "github.com/custos-io/custos/api/v1alpha1"
	"github.com/custos-io/custos/internal/evidence"
)

// The audit trail of a tenant lives in ConfigMaps in the manager's namespace, not in the Tenant, so that it
// survives the Tenant's deletion: custos-audit-<tenant>-<uid8>-<segment>, each holding JSON lines of
// hash-chained entries (internal/evidence). A segment is closed when it nears the ConfigMap size limit; the next
// one continues the chain. The ConfigMaps are never deleted by custos.
const (
	auditDataKey      = "entries.jsonl"
	auditSegmentBytes = 512 * 1024
	labelAuditTenant  = "custos.io/audit-tenant"
	labelAuditSegment = "custos.io/audit-segment"
	purposeAudit      = "audit-trail"
	auditActor        = "custos-manager"
	// auditStepKey in an entry's detail identifies the step it records; Append records a step once.
	auditStepKey = "step"
)

// AuditLog appends to and reads tenants' audit trails.
type AuditLog struct {
	Client    client.Client
	Reader    client.Reader
	Namespace string
	Clock     clock.PassiveClock
}

func auditPrefix(t *custosv1alpha1.Tenant) string {
	uid := string(t.UID)
	if len(uid) > 8 {
		uid = uid[:8]
	}
	return fmt.Sprintf("custos-audit-%s-%s", t.Name, uid)
}

// segments returns the tenant's audit ConfigMaps in order.
func (a *AuditLog) segments(ctx context.Context, t *custosv1alpha1.Tenant) ([]corev1.ConfigMap, error) {
	var out []corev1.ConfigMap
	for i := 1; ; i++ {
		var cm corev1.ConfigMap
		err := a.Reader.Get(ctx, client.ObjectKey{Namespace: a.Namespace, Name: fmt.Sprintf("%s-%d", auditPrefix(t), i)}, &cm)
		if apierrors.IsNotFound(err) {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		out = append(out, cm)
	}
}

// Entries returns the tenant's whole trail, verified.
func (a *AuditLog) Entries(ctx context.Context, t *custosv1alpha1.Tenant) ([]evidence.Entry, error) {
	segs, err := a.segments(ctx, t)
	if err != nil {
		return nil, err
	}
	var all []evidence.Entry
	for _, cm := range segs {
		es, err := evidence.ParseLines([]byte(cm.Data[auditDataKey]))
		if err != nil {
			return nil, fmt.Errorf("audit trail %s/%s: %w", cm.Namespace, cm.Name, err)
		}
		all = append(all, es...)
	}
	if err := evidence.VerifyChain(all); err != nil {
		return nil, fmt.Errorf("audit trail of %s: %w", t.Name, err)
	}
	return all, nil
}

// Record appends an entry and shows the new head in t's status. A failure is logged, not returned: the action it
// records has already happened, and the next entry still chains to the last one written. A nil log records
// nothing.
func (a *AuditLog) Record(ctx context.Context, t *custosv1alpha1.Tenant, action evidence.Action, detail map[string]string) {
	if a == nil {
		return
	}
	head, err := a.Append(ctx, t, action, detail)
	if err != nil {
		log.FromContext(ctx).Error(err, "Could not append to the audit trail", "action", action)
		return
	}
	t.Status.AuditHead = head
}

// Append adds an entry and returns the new head as "sha256:<hex>". A concurrent writer makes the update
// conflict; it is retried on fresh data, so the chain never forks.
func (a *AuditLog) Append(ctx context.Context, t *custosv1alpha1.Tenant, action evidence.Action, detail map[string]string) (string, error) {
	var head string
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		segs, err := a.segments(ctx, t)
		if err != nil {
			return err
		}
		var prev *evidence.Entry
		var last *corev1.ConfigMap
		if len(segs) > 0 {
			last = &segs[len(segs)-1]
			es, err := evidence.ParseLines([]byte(last.Data[auditDataKey]))
			if err != nil {
				return fmt.Errorf("audit trail %s/%s: %w", last.Namespace, last.Name, err)
			}
			if len(es) > 0 {
				prev = &es[len(es)-1]
			}
			// A step carried out again after a restart (its outcome was not yet in status) is recorded once.
			if key := detail[auditStepKey]; key != "" {
				for _, e := range es {
					if e.Action == action && e.Detail[auditStepKey] == key {
						head = "sha256:" + prev.Hash
						return nil
					}
				}
			}
		}
		e := evidence.Append(prev, evidence.Entry{Time: a.Clock.Now(), Tenant: t.Name, Action: action, Actor: auditActor, Detail: detail})
		line := string(evidence.MarshalLine(e)) + "\n"
		head = "sha256:" + e.Hash
		if last != nil && len(last.Data[auditDataKey])+len(line) <= auditSegmentBytes {
			last.Data[auditDataKey] += line
			return a.Client.Update(ctx, last)
		}
		n := len(segs) + 1
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: a.Namespace, Name: fmt.Sprintf("%s-%d", auditPrefix(t), n),
			Labels: map[string]string{labelPurpose: purposeAudit, labelAuditTenant: t.Name, labelAuditSegment: strconv.Itoa(n),
				custosv1alpha1.LabelManagedBy: "custos"},
			Annotations: map[string]string{"custos.io/tenant-uid": string(t.UID)}},
			Data: map[string]string{auditDataKey: line}}
		err = a.Client.Create(ctx, cm)
		if apierrors.IsAlreadyExists(err) {
			return apierrors.NewConflict(corev1.Resource("configmaps"), cm.Name, err)
		}
		return err
	})
	return head, err
}
