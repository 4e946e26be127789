// Package audittrail stores tenants' audit trails. The trail of a tenant lives in ConfigMaps in the manager's
// namespace, not in the Tenant, so that it survives the Tenant's deletion: custos-audit-<tenant>-<uid8>-<segment>,
// each holding JSON lines of hash-chained entries (internal/evidence). A segment is closed when it nears the
// ConfigMap size limit; the next one continues the chain and names its predecessor and the predecessor's last
// entry in annotations. The head of the trail (last segment, length, hash) is kept in an index ConfigMap
// custos-audit-<tenant>-<uid8>-head and in the Tenant's status (auditHead, auditLength, auditSegment), and the
// certificate commits to it: a deleted segment, first, middle or last, is a gap the manager and `custos audit`
// report, never a shorter trail that is continued. The ConfigMaps are never deleted by custos.
package audittrail

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	custosv1alpha1 "github.com/custos-io/custos/api/v1alpha1"
	"github.com/custos-io/custos/internal/conditions"
	"github.com/custos-io/custos/internal/evidence"
	"github.com/custos-io/custos/internal/metrics"
)

const (
	auditDataKey      = custosv1alpha1.AuditEntriesKey
	auditSegmentBytes = 512 * 1024
	labelAuditTenant  = custosv1alpha1.LabelAuditTenant
	labelAuditSegment = custosv1alpha1.LabelAuditSegment
	// labelAuditIndex marks the index ConfigMap (not labelAuditTenant: it is no segment).
	labelAuditIndex = "custos.io/audit-index"
	purposeAudit    = "audit-trail"
	auditActor      = "custos-manager"
	// StepKey in an entry's detail identifies the step it records; Append records a step once.
	StepKey = "step"

	annotationAuditPrevName = "custos.io/audit-prev-segment"
	annotationAuditPrevSeq  = "custos.io/audit-prev-seq"
	annotationAuditPrevHash = "custos.io/audit-prev-hash"
	auditIndexSuffix        = "-head"
)

// Store appends to and reads tenants' audit trails.
type Store struct {
	Client    client.Client
	Reader    client.Reader
	Namespace string
	Clock     clock.PassiveClock
	// SegmentBytes closes a segment at this size; 0: auditSegmentBytes.
	SegmentBytes int
}

func auditSegmentName(t *custosv1alpha1.Tenant, n int) string {
	return fmt.Sprintf("%s-%d", t.AuditPrefix(), n)
}

func auditIndexName(t *custosv1alpha1.Tenant) string { return t.AuditPrefix() + auditIndexSuffix }

// segmentOf reads a segment's number and link from the ConfigMap's labels and annotations.
func segmentOf(cm *corev1.ConfigMap) (evidence.SegmentLink, error) {
	n, err := strconv.Atoi(cm.Labels[labelAuditSegment])
	if err != nil || n < 1 {
		return evidence.SegmentLink{}, fmt.Errorf("ConfigMap %s: label %s is %q, not a segment number", cm.Name, labelAuditSegment, cm.Labels[labelAuditSegment])
	}
	l := evidence.SegmentLink{Number: n, Name: cm.Name, PrevName: cm.Annotations[annotationAuditPrevName], PrevHash: cm.Annotations[annotationAuditPrevHash]}
	if s := cm.Annotations[annotationAuditPrevSeq]; s != "" {
		if l.PrevSeq, err = strconv.ParseInt(s, 10, 64); err != nil {
			return evidence.SegmentLink{}, fmt.Errorf("ConfigMap %s: annotation %s is %q", cm.Name, annotationAuditPrevSeq, s)
		}
	}
	return l, nil
}

func parseSegment(cm *corev1.ConfigMap) (evidence.Segment, error) {
	l, err := segmentOf(cm)
	if err != nil {
		return evidence.Segment{}, err
	}
	es, err := evidence.ParseLines([]byte(cm.Data[auditDataKey]))
	if err != nil {
		return evidence.Segment{}, fmt.Errorf("audit trail %s/%s: %w", cm.Namespace, cm.Name, err)
	}
	return evidence.Segment{SegmentLink: l, Entries: es}, nil
}

// ownSegment: the ConfigMap is a segment of this tenant's trail (not of an earlier tenant of the same name).
func ownSegment(t *custosv1alpha1.Tenant, name string) bool {
	rest, ok := strings.CutPrefix(name, t.AuditPrefix()+"-")
	if !ok {
		return false
	}
	_, err := strconv.Atoi(rest)
	return err == nil
}

// segmentNumbers lists the numbers of the tenant's segments from their metadata alone (no data is read).
func (a *Store) segmentNumbers(ctx context.Context, t *custosv1alpha1.Tenant) ([]evidence.SegmentLink, error) {
	var list metav1.PartialObjectMetadataList
	list.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("ConfigMapList"))
	if err := a.Reader.List(ctx, &list, client.InNamespace(a.Namespace), client.MatchingLabels{labelAuditTenant: t.Name}); err != nil {
		return nil, fmt.Errorf("listing the audit trail of %s: %w", t.Name, err)
	}
	var out []evidence.SegmentLink
	for _, m := range list.Items {
		if !ownSegment(t, m.Name) {
			continue
		}
		l, err := segmentOf(&corev1.ConfigMap{ObjectMeta: m.ObjectMeta})
		if err != nil {
			return nil, err
		}
		out = append(out, l)
	}
	return out, nil
}

// index reads the trail's head from the index ConfigMap; found is false when there is none.
func (a *Store) index(ctx context.Context, t *custosv1alpha1.Tenant) (evidence.TrailHead, *corev1.ConfigMap, error) {
	var cm corev1.ConfigMap
	err := a.Reader.Get(ctx, client.ObjectKey{Namespace: a.Namespace, Name: auditIndexName(t)}, &cm)
	if apierrors.IsNotFound(err) {
		return evidence.TrailHead{}, nil, nil
	}
	if err != nil {
		return evidence.TrailHead{}, nil, err
	}
	var h evidence.TrailHead
	h.SegmentName, h.Hash = cm.Data["segmentName"], cm.Data["hash"]
	var e1, e2 error
	h.Segment, e1 = strconv.Atoi(cm.Data["segment"])
	h.Length, e2 = strconv.ParseInt(cm.Data["length"], 10, 64)
	if e1 != nil || e2 != nil || h.Segment < 1 || h.Length < 1 {
		return evidence.TrailHead{}, nil, &evidence.TrailError{Reason: fmt.Sprintf("the index ConfigMap %s/%s does not name a head (segment %q, length %q)",
			a.Namespace, cm.Name, cm.Data["segment"], cm.Data["length"])}
	}
	return h, &cm, nil
}

// statusHead is the head the Tenant's status records.
func statusHead(t *custosv1alpha1.Tenant) evidence.TrailHead {
	h := evidence.TrailHead{Hash: strings.TrimPrefix(t.Status.AuditHead, "sha256:"), Length: t.Status.AuditLength, SegmentName: t.Status.AuditSegment}
	if h.Length == 0 && h.Hash != "" {
		h.Length = 1 // recorded before auditLength existed: at least one entry was written
		h.Hash = ""
	}
	return h
}

// Entries returns the tenant's whole trail, verified: every segment from 1 to the head, linked, one chain, and
// not shorter than the head in the index or in the Tenant's status. A gap is a *evidence.TrailError.
func (a *Store) Entries(ctx context.Context, t *custosv1alpha1.Tenant) ([]evidence.Entry, error) {
	var list corev1.ConfigMapList
	if err := a.Reader.List(ctx, &list, client.InNamespace(a.Namespace), client.MatchingLabels{labelAuditTenant: t.Name}); err != nil {
		return nil, fmt.Errorf("listing the audit trail of %s: %w", t.Name, err)
	}
	var segs []evidence.Segment
	for i := range list.Items {
		if !ownSegment(t, list.Items[i].Name) {
			continue
		}
		s, err := parseSegment(&list.Items[i])
		if err != nil {
			return nil, err
		}
		segs = append(segs, s)
	}
	idx, _, err := a.index(ctx, t)
	if err != nil {
		return nil, fmt.Errorf("audit trail of %s: %w", t.Name, err)
	}
	all, err := evidence.VerifyTrail(segs, idx)
	if err != nil {
		return nil, fmt.Errorf("audit trail of %s: %w", t.Name, err)
	}
	h, n := evidence.Head(all)
	if len(all) == 0 {
		h = ""
	}
	if err := evidence.CheckAgainst(evidence.TrailHead{Length: int64(n), Hash: h}, all, statusHead(t), "the Tenant's status"); err != nil {
		return nil, fmt.Errorf("audit trail of %s: %w", t.Name, err)
	}
	return all, nil
}

// Record appends an entry and shows the new head in t's status. It returns the error when the entry could not be
// written: the caller must not count the step it records as done (it is retried, and Append records a step with a
// step key once). A broken trail (a segment missing) is not appended to: the condition AuditTrail says where the
// gap is, and nothing is recorded until a person restores the segment. A nil log records nothing.
func (a *Store) Record(ctx context.Context, t *custosv1alpha1.Tenant, action evidence.Action, detail map[string]string) error {
	if a == nil {
		return nil
	}
	head, err := a.Append(ctx, t, action, detail)
	if err != nil {
		log.FromContext(ctx).Error(err, "Could not append to the audit trail; the step is not counted as done", "action", action)
		metrics.AuditAppendFailed(t.Name)
		reason := custosv1alpha1.ReasonAuditAppendFailed
		var te *evidence.TrailError
		var ce *evidence.ChainError
		if errors.As(err, &te) || errors.As(err, &ce) {
			reason = custosv1alpha1.ReasonAuditTrailBroken
		}
		conditions.Set(&t.Status.Conditions, t.Generation, custosv1alpha1.ConditionAuditTrail, false, reason,
			conditions.Truncate(fmt.Sprintf("could not record %s: %v", action, err), 4000))
		return fmt.Errorf("recording %s on the audit trail: %w", action, err)
	}
	t.Status.AuditHead, t.Status.AuditLength, t.Status.AuditSegment = "sha256:"+head.Hash, head.Length, head.SegmentName
	conditions.Set(&t.Status.Conditions, t.Generation, custosv1alpha1.ConditionAuditTrail, true, custosv1alpha1.ReasonAuditTrailIntact,
		fmt.Sprintf("the audit trail ends at entry %d in ConfigMap %s/%s", head.Length, a.Namespace, head.SegmentName))
	return nil
}

// trailHead finds where the trail ends without reading every segment: the segments' numbers from their metadata
// (they must run 1..N), the index, then the last segment, checked against the index and the Tenant's status. It
// returns the head, the last segment's ConfigMap (nil for an empty trail) and its entries.
func (a *Store) trailHead(ctx context.Context, t *custosv1alpha1.Tenant) (evidence.TrailHead, *corev1.ConfigMap, []evidence.Entry, error) {
	links, err := a.segmentNumbers(ctx, t)
	if err != nil {
		return evidence.TrailHead{}, nil, nil, err
	}
	idx, idxCM, err := a.index(ctx, t)
	if err != nil {
		return evidence.TrailHead{}, nil, nil, err
	}
	// The segment numbers must run 1..N without a gap (the data of the middle ones is not read here).
	maxN := 0
	seen := map[int]bool{}
	for _, l := range links {
		seen[l.Number] = true
		maxN = max(maxN, l.Number)
	}
	for n := 1; n <= maxN; n++ {
		if !seen[n] {
			m := n
			for m < maxN && !seen[m+1] {
				m++
			}
			what := fmt.Sprintf("segment %d (ConfigMap %s/%s) is missing", n, a.Namespace, auditSegmentName(t, n))
			if m > n {
				what = fmt.Sprintf("segments %d to %d (ConfigMaps %s-%d to -%d) are missing", n, m, t.AuditPrefix(), n, m)
			}
			var missing []int
			for i := n; i <= m; i++ {
				missing = append(missing, i)
			}
			return evidence.TrailHead{}, nil, nil, &evidence.TrailError{Missing: missing,
				Reason: what + fmt.Sprintf(" while segment %d exists: restore it from a backup of the cluster; custos does not append to a trail with a gap", maxN)}
		}
	}
	recorded := statusHead(t)
	if maxN == 0 {
		if idxCM != nil || !recorded.Empty() {
			return evidence.TrailHead{}, nil, nil, &evidence.TrailError{Reason: fmt.Sprintf("no segment of the audit trail is left (ConfigMaps %s-*), but the trail's head was %s: the trail was deleted; restore it from a backup of the cluster",
				t.AuditPrefix(), map[bool]evidence.TrailHead{true: idx, false: recorded}[idxCM != nil])}
		}
		return evidence.TrailHead{}, nil, nil, nil
	}
	if idxCM != nil && maxN < idx.Segment {
		return evidence.TrailHead{}, nil, nil, &evidence.TrailError{Missing: spanInts(maxN+1, idx.Segment),
			Reason: fmt.Sprintf("the trail's head is %s, but the last segment found is %d: the segments after it were deleted; restore them from a backup of the cluster", idx, maxN)}
	}
	var cm corev1.ConfigMap
	if err := a.Reader.Get(ctx, client.ObjectKey{Namespace: a.Namespace, Name: auditSegmentName(t, maxN)}, &cm); err != nil {
		return evidence.TrailHead{}, nil, nil, err
	}
	seg, err := parseSegment(&cm)
	if err != nil {
		return evidence.TrailHead{}, nil, nil, err
	}
	var last *evidence.Entry
	switch {
	case idxCM == nil:
		// No index yet (a trail written before there was one): verify the whole trail once; the append writes
		// the index.
		all, err := a.Entries(ctx, t)
		if err != nil {
			return evidence.TrailHead{}, nil, nil, err
		}
		if len(all) > 0 {
			last = &all[len(all)-1]
		}
	case maxN == idx.Segment:
		if last, err = evidence.VerifyHeadSegment(seg, idx); err != nil {
			return evidence.TrailHead{}, nil, nil, err
		}
	default:
		// The index lags behind a new segment (its update failed after the segment was made): the new one must
		// continue after the index's head.
		if !seg.Linked() || seg.PrevSeq < idx.Length || (seg.PrevSeq == idx.Length && seg.PrevHash != idx.Hash) {
			return evidence.TrailHead{}, nil, nil, &evidence.TrailError{Reason: fmt.Sprintf("segment %d (%s) does not continue the trail's head %s", maxN, cm.Name, idx)}
		}
		prev, first := seg.PrevHash, seg.PrevSeq+1
		if err := evidence.VerifyChainFrom(prev, first, seg.Entries); err != nil {
			return evidence.TrailHead{}, nil, nil, err
		}
		if len(seg.Entries) > 0 {
			last = &seg.Entries[len(seg.Entries)-1]
		}
	}
	head := evidence.TrailHead{Segment: maxN, SegmentName: cm.Name}
	switch {
	case last != nil:
		head.Length, head.Hash = last.Seq, last.Hash
	case seg.Linked():
		head.Length, head.Hash = seg.PrevSeq, seg.PrevHash
	}
	if err := evidence.CheckAgainst(head, nil, recorded, "the Tenant's status"); err != nil {
		return evidence.TrailHead{}, nil, nil, err
	}
	return head, &cm, seg.Entries, nil
}

func spanInts(from, to int) []int {
	var out []int
	for i := from; i <= to; i++ {
		out = append(out, i)
	}
	return out
}

// Append adds an entry and returns the new head. It reads the index and the last segment, not the whole trail. A
// concurrent writer makes the update conflict; it is retried on fresh data, so the chain never forks. A trail with
// a gap is not appended to (a *evidence.TrailError).
func (a *Store) Append(ctx context.Context, t *custosv1alpha1.Tenant, action evidence.Action, detail map[string]string) (evidence.TrailHead, error) {
	var head evidence.TrailHead
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur, last, es, err := a.trailHead(ctx, t)
		if err != nil {
			return err
		}
		var prev *evidence.Entry
		if len(es) > 0 {
			prev = &es[len(es)-1]
		} else if cur.Length > 0 {
			prev = &evidence.Entry{Seq: cur.Length, Hash: cur.Hash}
		}
		// A step carried out again after a restart (its outcome was not yet in status) is recorded once.
		if key := detail[StepKey]; key != "" {
			for _, e := range es {
				if e.Action == action && e.Detail[StepKey] == key {
					head = cur
					return nil
				}
			}
		}
		e := evidence.Append(prev, evidence.Entry{Time: a.Clock.Now(), Tenant: t.Name, Action: action, Actor: auditActor, Detail: detail})
		line := string(evidence.MarshalLine(e)) + "\n"
		limit := auditSegmentBytes
		if a.SegmentBytes > 0 {
			limit = a.SegmentBytes
		}
		if last != nil && len(last.Data[auditDataKey])+len(line) <= limit {
			if last.Data == nil {
				last.Data = map[string]string{}
			}
			last.Data[auditDataKey] += line
			if err := a.Client.Update(ctx, last); err != nil {
				return err
			}
			head = evidence.TrailHead{Segment: cur.Segment, SegmentName: last.Name, Length: e.Seq, Hash: e.Hash}
			return nil
		}
		n := cur.Segment + 1
		ann := map[string]string{custosv1alpha1.AnnotationTenantUID: string(t.UID)}
		if last != nil {
			ann[annotationAuditPrevName], ann[annotationAuditPrevSeq], ann[annotationAuditPrevHash] = last.Name, strconv.FormatInt(cur.Length, 10), cur.Hash
		}
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: a.Namespace, Name: auditSegmentName(t, n),
			Labels: map[string]string{custosv1alpha1.LabelPurpose: purposeAudit, labelAuditTenant: t.Name, labelAuditSegment: strconv.Itoa(n),
				custosv1alpha1.LabelManagedBy: "custos"},
			Annotations: ann},
			Data: map[string]string{auditDataKey: line}}
		err = a.Client.Create(ctx, cm)
		if apierrors.IsAlreadyExists(err) {
			return apierrors.NewConflict(corev1.Resource("configmaps"), cm.Name, err)
		}
		if err != nil {
			return err
		}
		head = evidence.TrailHead{Segment: n, SegmentName: cm.Name, Length: e.Seq, Hash: e.Hash}
		return nil
	})
	if err != nil {
		return evidence.TrailHead{}, err
	}
	if err := a.advanceIndex(ctx, t, head); err != nil {
		// The entry is written; a lagging index is caught up by the next append (it reads on from the index).
		log.FromContext(ctx).Error(err, "Could not update the audit trail's index", "head", head.String())
	}
	return head, nil
}

// advanceIndex writes head into the index unless the index is already at or beyond it (another writer).
func (a *Store) advanceIndex(ctx context.Context, t *custosv1alpha1.Tenant, head evidence.TrailHead) error {
	if head.Empty() {
		return nil
	}
	data := func() map[string]string {
		return map[string]string{"segment": strconv.Itoa(head.Segment), "segmentName": head.SegmentName,
			"length": strconv.FormatInt(head.Length, 10), "hash": head.Hash}
	}
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur, cm, err := a.index(ctx, t)
		var te *evidence.TrailError
		if err != nil && !errors.As(err, &te) {
			return err
		}
		if cm == nil && te == nil {
			cm = &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: a.Namespace, Name: auditIndexName(t),
				Labels:      map[string]string{custosv1alpha1.LabelPurpose: purposeAudit + "-index", labelAuditIndex: t.Name, custosv1alpha1.LabelManagedBy: "custos"},
				Annotations: map[string]string{custosv1alpha1.AnnotationTenantUID: string(t.UID)}}, Data: data()}
			err := a.Client.Create(ctx, cm)
			if apierrors.IsAlreadyExists(err) {
				return apierrors.NewConflict(corev1.Resource("configmaps"), cm.Name, err)
			}
			return err
		}
		if te == nil && cur.Length >= head.Length {
			return nil
		}
		if cm == nil {
			return err
		}
		cm.Data = data()
		return a.Client.Update(ctx, cm)
	})
}
