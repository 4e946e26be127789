package controllers

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	custosv1alpha1 "github.com/custos-io/custos/api/v1alpha1"
	"github.com/custos-io/custos/internal/audittrail"
	"github.com/custos-io/custos/internal/conditions"
	"github.com/custos-io/custos/internal/evidence"
	"github.com/custos-io/custos/internal/metrics"
	"github.com/custos-io/custos/internal/signing"
)

var destroyedKind = map[custosv1alpha1.DestroyedLocationKind]string{
	custosv1alpha1.DestroyedDatabase: evidence.KindDatabase, custosv1alpha1.DestroyedRole: evidence.KindDatabase,
	custosv1alpha1.DestroyedSecret: evidence.KindSecret, custosv1alpha1.DestroyedNamespace: evidence.KindNamespace,
	custosv1alpha1.DestroyedRepository: evidence.KindRepository,
}

// certify signs the statement of destruction and writes the DestructionCertificate (once: the name is fixed by
// the tenant's UID, and an existing certificate of this tenant is adopted).
func (r *TenantExitReconciler) certify(ctx context.Context, s *exitScope) (bool, error) {
	t := s.tenant
	ex := t.Status.Exit
	name := t.CertificateName()
	var existing custosv1alpha1.DestructionCertificate
	err := r.Client.Get(ctx, client.ObjectKey{Name: name}, &existing)
	if err == nil {
		if existing.Spec.Tenant.UID != string(t.UID) {
			return false, fmt.Errorf("DestructionCertificate %s exists for another tenant (uid %s)", name, existing.Spec.Tenant.UID)
		}
		// Written before a restart (or a failed append): its entry on the trail may be missing, and the step is
		// not done until it is there.
		head := ""
		for _, sub := range existing.Spec.Subjects {
			if sub.Name == evidence.AuditSubjectName {
				head = sub.SHA256
			}
		}
		if err := r.recordCertificate(ctx, t, name, head); err != nil {
			return false, err
		}
		r.certified(t, name)
		return true, nil
	}
	if !apierrors.IsNotFound(err) {
		return false, err
	}
	key, err := r.Keys.Key(ctx)
	if err != nil {
		return false, err
	}
	entries, err := r.Audit.Entries(ctx, t)
	if err != nil {
		conditions.Set(&t.Status.Conditions, t.Generation, custosv1alpha1.ConditionAuditTrail, false, custosv1alpha1.ReasonAuditTrailBroken,
			conditions.Truncate(fmt.Sprintf("no certificate is signed over a broken trail: %v", err), 4000))
		return false, err
	}
	head, length := evidence.Head(entries)
	holds := evidence.LegalHolds(entries)
	now := r.Clock.Now().UTC()
	d := evidence.Destruction{
		Tenant:         evidence.Tenant{Name: t.Name, UID: string(t.UID), DisplayName: t.Spec.DisplayName},
		Contract:       evidence.Contract{ID: t.Spec.Contract.ID, Start: t.Spec.Contract.Start.Time},
		DataController: evidence.DataController{Name: t.Spec.DataController.Name, Contact: t.Spec.DataController.Contact, Email: t.Spec.DataController.Email},
		Processor:      evidence.Processor{Name: r.Processor},
		Retained: []evidence.Retained{
			{What: fmt.Sprintf("the tenant's audit trail (ConfigMaps %s-* in namespace %s)", t.AuditPrefix(), r.Namespace), Reason: "accountability: record of processing and of its destruction (GDPR art. 5(2), NEN 7513 logging); it holds no personal data of the tenant's data subjects"},
			{What: "this certificate of destruction", Reason: "proof of destruction on the data controller's request"},
		},
		Audit:    evidence.AuditRef{Head: head, Length: length},
		IssuedAt: now,
	}
	var holdNotes []string
	d.LegalHold, holdNotes = evidence.LastHold(holds)
	d.Notes = append(d.Notes, holdNotes...)
	if t.Spec.Contract.End != nil {
		d.Contract.End = t.Spec.Contract.End.Time
	}
	for _, l := range ex.Destroyed {
		d.Locations = append(d.Locations, evidence.Location{Kind: destroyedKind[l.Kind], Identifier: l.Identifier, Location: l.Name,
			Jurisdiction: l.Jurisdiction, Method: string(l.Method), Technique: l.Technique, Tool: evidence.Tool{Name: l.Tool},
			StartedAt: l.StartedAt.Time, CompletedAt: l.CompletedAt.Time,
			Verification: evidence.Verification{Method: l.Verification, Result: evidence.ResultVerified}})
	}
	var subjects []evidence.Subject
	if s.export != nil && s.export.Status.Artefact != nil {
		e := evidence.ExportEvidence{Name: s.export.Name + ".tar", SHA256: s.export.Status.Artefact.SHA256, Bytes: s.export.Status.Artefact.Bytes,
			AcknowledgeTimedOut: ex.ExportAcknowledgeTimedOut}
		if ex.ExportAcknowledgedAt != nil && !ex.ExportAcknowledgeTimedOut {
			e.AcknowledgedAt = ex.ExportAcknowledgedAt.Time
		}
		if s.export.Spec.Receipt != nil {
			e.ReceivedBy = s.export.Spec.Receipt.ReceivedBy
		}
		d.Export = &e
		subjects = append(subjects, evidence.ExportSubject(e))
		if ex.ExportAcknowledgeTimedOut {
			d.Notes = append(d.Notes, "the data controller never acknowledged the export; the exit went on when the policy's acknowledgeTimeout had passed after delivery")
		}
	}
	if ref := ex.ExportRef; ref != nil {
		// lifecycle issues the certificate only once the bag is verified gone: say when and how.
		gone := "its DataExport was deleted; the file " + ref.Bag + " was verified absent"
		if s.export != nil && s.export.Status.ExpiredAt != nil {
			gone = fmt.Sprintf("deleted at %s (expireAfterDelivery after the receipt, or after delivery without one) and verified absent",
				s.export.Status.ExpiredAt.UTC().Format(time.RFC3339))
		}
		d.Notes = append(d.Notes, fmt.Sprintf("the exit's bag %s.tar (a full copy of the data) was %s before this certificate was signed: no copy of the data remains with the processor", ref.Name, gone))
	}
	if t.Spec.Exit.DataReturn == custosv1alpha1.DataReturnNone {
		d.Notes = append(d.Notes, "the data controller chose to have the data destroyed without an export (exit.dataReturn: None)")
	}
	if p := evidence.HoldProblems(holds, d.Locations); len(p) > 0 {
		return false, fmt.Errorf("the tenant's legal holds (audit trail) conflict with the destruction; no certificate is signed: %s", strings.Join(p, "; "))
	}
	subjects = append(subjects, evidence.InventorySubject(d.Locations), evidence.AuditSubject(d.Audit))
	st := evidence.Statement{Subject: subjects, Predicate: d}
	env, err := evidence.Sign(st, key) // refuses an incomplete statement
	if err != nil {
		return false, err
	}
	cert := &custosv1alpha1.DestructionCertificate{ObjectMeta: metav1.ObjectMeta{Name: name,
		Labels: map[string]string{custosv1alpha1.LabelTenant: t.Name}}, Spec: evidence.SpecFor(st, env)}
	if err := r.Client.Create(ctx, cert); err != nil && !apierrors.IsAlreadyExists(err) {
		return false, fmt.Errorf("writing DestructionCertificate %s: %w", name, err)
	}
	metrics.Destruction("certified")
	if err := r.recordCertificate(ctx, t, name, head); err != nil {
		return false, err
	}
	r.certified(t, name)
	r.Recorder.Eventf(t, nil, corev1.EventTypeNormal, "CertificateIssued", "Exit", "DestructionCertificate %s signed (key %s); verify it with `custos verify`", name, evidence.KeyID(key.Public().(ed25519.PublicKey)))
	return true, nil
}

// recordCertificate appends CertificateIssued to the trail, once per certificate (its step key names the
// certificate). Its error is the step's: nothing comes after this step to record it later, so the step is not done
// (and is retried, adopting the certificate) until the entry is written.
func (r *TenantExitReconciler) recordCertificate(ctx context.Context, t *custosv1alpha1.Tenant, name, head string) error {
	return r.audit(ctx, t, evidence.ActionCertificateIssued, map[string]string{"certificate": name, "auditHead": head,
		audittrail.StepKey: string(evidence.ActionCertificateIssued) + "/" + name})
}

func (r *TenantExitReconciler) certified(t *custosv1alpha1.Tenant, name string) {
	ex := t.Status.Exit
	ex.CertificateRef = &custosv1alpha1.ObjectReference{Name: name}
	if ex.DestroyedAt == nil {
		ex.DestroyedAt = ptr.To(metav1.NewTime(r.Clock.Now()))
	}
	conditions.Set(&t.Status.Conditions, t.Generation, custosv1alpha1.ConditionCertificateIssued, true, custosv1alpha1.ReasonSigned,
		fmt.Sprintf("DestructionCertificate %s is signed; its public key is in ConfigMap %s/%s", name, r.Namespace, signing.DefaultName))
}
