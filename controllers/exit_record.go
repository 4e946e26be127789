package controllers

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	custosv1alpha1 "github.com/custos-io/custos/api/v1alpha1"
	"github.com/custos-io/custos/internal/audittrail"
	"github.com/custos-io/custos/internal/conditions"
	"github.com/custos-io/custos/internal/evidence"
	"github.com/custos-io/custos/internal/lifecycle"
	"github.com/custos-io/custos/internal/metrics"
)

func hasDestroyed(t *custosv1alpha1.Tenant, kind custosv1alpha1.DestroyedLocationKind, name string) bool {
	if t.Status.Exit == nil {
		return false
	}
	for _, d := range t.Status.Exit.Destroyed {
		if d.Kind == kind && d.Name == name {
			return true
		}
	}
	return false
}

func (r *TenantExitReconciler) addDestroyed(t *custosv1alpha1.Tenant, d custosv1alpha1.DestroyedLocation) {
	if hasDestroyed(t, d.Kind, d.Name) {
		return
	}
	t.Status.Exit.Destroyed = append(t.Status.Exit.Destroyed, d)
	metrics.Destruction("verified")
}

// record writes the decision into status: phase, Ready and LegalHold conditions, deadlines, acknowledgement, and
// the step about to be carried out.
func (r *TenantExitReconciler) record(ctx context.Context, s *exitScope, d lifecycle.Decision) {
	t := s.tenant
	if t.Status.Exit == nil {
		t.Status.Exit = &custosv1alpha1.TenantExitStatus{}
	}
	ex := t.Status.Exit
	if ex.EndObservedAt == nil {
		ex.EndObservedAt = ptr.To(metav1.NewTime(s.now))
	}
	if !d.DestructionNotBefore.IsZero() && (ex.DestructionNotBefore == nil || !ex.DestructionNotBefore.Time.Equal(d.DestructionNotBefore)) {
		first := ex.DestructionNotBefore == nil
		ex.DestructionNotBefore = ptr.To(metav1.NewTime(d.DestructionNotBefore))
		if first && s.now.Before(d.DestructionNotBefore) {
			r.Recorder.Eventf(t, nil, corev1.EventTypeNormal, custosv1alpha1.ReasonGracePeriod, "Exit",
				"contract %s ended: nothing is destroyed before %s; removing spec.contract.end (or moving it into the future) before then cancels the exit",
				t.Spec.Contract.ID, d.DestructionNotBefore.UTC().Format(time.RFC3339))
		}
	}
	if ex.ExportRef != nil && ex.ExportRef.Bag == "" && s.export != nil && s.export.Status.Artefact != nil {
		ex.ExportRef.Bag = s.export.ArtefactPath()
	}
	if d.Reason == custosv1alpha1.ReasonExportNotBound {
		if c := meta.FindStatusCondition(t.Status.Conditions, custosv1alpha1.ConditionReady); c == nil || c.Reason != d.Reason || c.Message != d.Message {
			r.Recorder.Eventf(t, nil, corev1.EventTypeWarning, custosv1alpha1.ReasonExportNotBound, "Exit", "%s", conditions.Truncate(d.Message, 1000))
		}
	}
	if d.Phase != t.Status.Phase {
		r.Recorder.Eventf(t, nil, corev1.EventTypeNormal, string(d.Phase), "Exit", "%s → %s: %s", t.Status.Phase, d.Phase, d.Message)
		t.Status.Phase = d.Phase
	}
	if !d.BackupsGoneBy.IsZero() && (ex.BackupsGoneBy == nil || !ex.BackupsGoneBy.Time.Equal(d.BackupsGoneBy)) {
		ex.BackupsGoneBy = ptr.To(metav1.NewTime(d.BackupsGoneBy))
	}
	if ex.BackupsGoneBy != nil && d.Phase != custosv1alpha1.TenantDestroyed {
		metrics.ExpiryDeadline(t.Name, ex.BackupsGoneBy.Time)
	}
	if d.Phase == custosv1alpha1.TenantDestroyed {
		metrics.ForgetTenant(t.Name)
		// Two controllers append to the trail and write the head into status; once the tenant is destroyed
		// nothing appends any more, and the head shown is the trail's own.
		if r.Audit != nil {
			if entries, err := r.Audit.Entries(ctx, t); err == nil && len(entries) > 0 {
				t.Status.AuditHead, t.Status.AuditLength = "sha256:"+entries[len(entries)-1].Hash, entries[len(entries)-1].Seq
			}
		}
	}
	if ex.ExportAcknowledgedAt == nil && (d.AcknowledgeTimedOut || s.facts.Export.Phase == custosv1alpha1.ExportAcknowledged) && ex.ExportRef != nil {
		at := metav1.NewTime(s.now)
		if !d.AcknowledgeTimedOut && s.export != nil && s.export.Status.AcknowledgedAt != nil {
			at = *s.export.Status.AcknowledgedAt
		}
		ex.ExportAcknowledgedAt, ex.ExportAcknowledgeTimedOut = &at, d.AcknowledgeTimedOut
		msg := "the receiver's sha256 matched the bag"
		action := evidence.ActionExportAcknowledged
		if d.AcknowledgeTimedOut {
			msg = "no receipt came within acknowledgeTimeout after delivery; the exit goes on and the certificate says so"
		}
		if err := r.audit(ctx, t, action, map[string]string{"export": ex.ExportRef.Name, "timedOut": fmt.Sprint(d.AcknowledgeTimedOut),
			audittrail.StepKey: string(action) + "/" + ex.ExportRef.Name}); err != nil {
			ex.ExportAcknowledgedAt, ex.ExportAcknowledgeTimedOut, s.auditErr = nil, false, err // recorded again next time
		} else {
			conditions.Set(&t.Status.Conditions, t.Generation, custosv1alpha1.ConditionExportAcknowledged, !d.AcknowledgeTimedOut, ackReason(d.AcknowledgeTimedOut), msg)
		}
	}
	hold := lifecycle.HoldActive(t.Spec.LegalHold, s.now)
	if hold {
		msg := "a legal hold freezes every destructive step: " + t.Spec.LegalHold.Reason
		if t.Spec.LegalHold.Until != nil {
			msg += "; until " + t.Spec.LegalHold.Until.UTC().Format(time.RFC3339)
		}
		var err error
		if c := meta.FindStatusCondition(t.Status.Conditions, custosv1alpha1.ConditionLegalHold); c == nil || c.Status != metav1.ConditionTrue {
			err = r.audit(ctx, t, evidence.ActionLegalHoldSet, legalHoldDetail(t.Spec.LegalHold, map[string]string{"reason": t.Spec.LegalHold.Reason,
				audittrail.StepKey: fmt.Sprintf("%s/generation-%d", evidence.ActionLegalHoldSet, t.Generation)}))
		}
		if err != nil {
			s.auditErr = err // the hold is shown once it is recorded; nothing is destroyed meanwhile (carryOut refuses)
		} else {
			conditions.Set(&t.Status.Conditions, t.Generation, custosv1alpha1.ConditionLegalHold, true, custosv1alpha1.ReasonLegalHoldActive, msg)
		}
	} else if c := meta.FindStatusCondition(t.Status.Conditions, custosv1alpha1.ConditionLegalHold); c != nil && c.Status == metav1.ConditionTrue {
		if err := r.audit(ctx, t, evidence.ActionLegalHoldLifted, map[string]string{audittrail.StepKey: fmt.Sprintf("%s/generation-%d", evidence.ActionLegalHoldLifted, t.Generation)}); err != nil {
			s.auditErr = err // the hold stays shown, and nothing is destroyed, until the lifting is recorded
		} else {
			conditions.Set(&t.Status.Conditions, t.Generation, custosv1alpha1.ConditionLegalHold, false, custosv1alpha1.ReasonLegalHoldExpired, "the legal hold is lifted or has passed its until date")
			// A step that starts now starts after the lifting as recorded (the certificate checks that order).
			s.now = r.Clock.Now().UTC()
		}
	}
	ready := d.Phase == custosv1alpha1.TenantDestroyed
	if c := meta.FindStatusCondition(t.Status.Conditions, custosv1alpha1.ConditionReady); c == nil || c.Reason != custosv1alpha1.ReasonExitStepFailed || d.Action == lifecycle.Wait || ex.Step == nil || ex.Step.Action != string(d.Action) {
		conditions.Set(&t.Status.Conditions, t.Generation, custosv1alpha1.ConditionReady, ready, d.Reason, d.Message)
	}
	if d.Action == lifecycle.Wait {
		ex.Step = nil
		return
	}
	if ex.Step == nil || ex.Step.Action != string(d.Action) {
		ex.Step = &custosv1alpha1.ExitStep{Action: string(d.Action), StartedAt: metav1.NewTime(s.now)}
	}
	if d.Action == lifecycle.DisposeBackups && ex.DisposalStartedAt == nil {
		ex.DisposalStartedAt = ptr.To(metav1.NewTime(s.now))
	}
}

func ackReason(timedOut bool) string {
	if timedOut {
		return custosv1alpha1.ReasonAcknowledgeTimeout
	}
	return custosv1alpha1.ReasonExportAcknowledged
}

// audit records an exit action on the tenant's trail (audittrail.Store.Record), once per step. An error means the entry
// is not written: the step must not count as done.
func (r *TenantExitReconciler) audit(ctx context.Context, t *custosv1alpha1.Tenant, action evidence.Action, detail map[string]string) error {
	if r.Audit == nil {
		return nil
	}
	if detail == nil {
		detail = map[string]string{}
	}
	if _, ok := detail[audittrail.StepKey]; !ok {
		// The exit's steps are recorded once: the step's start (in status before it runs) identifies it.
		step := string(action)
		if st := t.Status.Exit.Step; st != nil {
			step = fmt.Sprintf("%s/%d", st.Action, st.StartedAt.Unix())
		}
		if loc := detail["location"]; loc != "" {
			step += "/" + loc
		}
		detail[audittrail.StepKey] = step
	}
	return r.Audit.Record(ctx, t, action, detail)
}
