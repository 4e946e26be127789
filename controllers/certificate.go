package controllers

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	custosv1alpha1 "github.com/custos-io/custos/api/v1alpha1"
	"github.com/custos-io/custos/internal/conditions"
	"github.com/custos-io/custos/internal/evidence"
	"github.com/custos-io/custos/internal/metrics"
)

// The signing key of certificates: an Ed25519 key generated at first start into a Secret of the manager's
// namespace (SigningKeyName unless --signing-key-secret names another); its public half is published in the
// ConfigMap SigningKeyName of the same namespace, for auditors (`custos verify --key`, `custos pubkey --cluster`),
// together with the history of every key that ever signed (key history.json, evidence.KeyHistory), so that
// certificates signed with an earlier key still verify. A key is never replaced silently: when the Secret is
// missing or holds another key than the one in use, the manager signs nothing (certificates wait, the exit step
// says why, custos_signing_key_ready is 0) until the Secret is restored or the manager runs with
// --allow-new-signing-key; the first key of an installation (no history yet) needs no flag.
const (
	SigningKeyName       = "custos-signing-key"
	signingKeyPrivateKey = "ed25519.pem"
	signingKeyPublicKey  = "public.pem"
	signingKeyHistory    = "history.json"
)

// SigningKeys loads, or makes once, the certificate signing key.
type SigningKeys struct {
	Client    client.Client
	Reader    client.Reader
	Namespace string
	// SecretName is the Secret holding the private key; empty: SigningKeyName. A Secret made beforehand (your own
	// key) is used as it is; a missing one is generated when no key signed before (or AllowNew).
	SecretName string
	// AllowNew lets a new key (a generated one for a missing Secret, or another key in the Secret) replace the
	// key in use; the old public keys stay in the history.
	AllowNew bool
	// Clock dates the keys' validity; nil: the wall clock.
	Clock clock.PassiveClock

	mu  sync.Mutex
	key ed25519.PrivateKey
}

// Start makes sure the key and its published public key exist (a manager.Runnable; leader only). A refused key
// is logged and shown in custos_signing_key_ready; the manager goes on (backups must not stop), signing nothing.
func (k *SigningKeys) Start(ctx context.Context) error {
	if _, err := k.Key(ctx); err != nil {
		log.FromContext(ctx).Error(err, "No certificate signing key: certificates of destruction are not signed until this is resolved")
	}
	<-ctx.Done()
	return nil
}

// NewKeyRefusedError says why the manager does not sign with a new key.
type NewKeyRefusedError struct{ Msg string }

func (e *NewKeyRefusedError) Error() string { return e.Msg }

func (k *SigningKeys) now() time.Time {
	if k.Clock == nil {
		return time.Now()
	}
	return k.Clock.Now()
}

// History returns the published key history (a ConfigMap without history.json: its public.pem as the only key,
// validity unknown).
func (k *SigningKeys) History(ctx context.Context) (evidence.KeyHistory, *corev1.ConfigMap, error) {
	var cm corev1.ConfigMap
	err := k.Reader.Get(ctx, client.ObjectKey{Namespace: k.Namespace, Name: SigningKeyName}, &cm)
	if apierrors.IsNotFound(err) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	if raw, ok := cm.Data[signingKeyHistory]; ok {
		h, err := evidence.ParseKeyHistory([]byte(raw))
		if err != nil {
			return nil, nil, fmt.Errorf("ConfigMap %s/%s: %w", k.Namespace, SigningKeyName, err)
		}
		return h, &cm, nil
	}
	if p := cm.Data[signingKeyPublicKey]; p != "" {
		pub, err := evidence.ParsePublicKey([]byte(p))
		if err != nil {
			return nil, nil, fmt.Errorf("ConfigMap %s/%s, key %s: %w", k.Namespace, SigningKeyName, signingKeyPublicKey, err)
		}
		return evidence.KeyHistory{{KeyID: evidence.KeyID(pub), PublicKey: p}}, &cm, nil
	}
	return nil, &cm, nil
}

// Key returns the signing key, generating it when the Secret does not exist and no key signed before.
func (k *SigningKeys) Key(ctx context.Context) (ed25519.PrivateKey, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.key != nil {
		return k.key, nil
	}
	priv, err := k.load(ctx)
	if err != nil {
		metrics.SigningKeyReady(false)
		return nil, err
	}
	metrics.SigningKeyReady(true)
	k.key = priv
	return priv, nil
}

func (k *SigningKeys) load(ctx context.Context) (ed25519.PrivateKey, error) {
	name := k.SecretName
	if name == "" {
		name = SigningKeyName
	}
	history, _, err := k.History(ctx)
	if err != nil {
		return nil, err
	}
	cur, inUse := history.Current()
	key := client.ObjectKey{Namespace: k.Namespace, Name: name}
	var sec corev1.Secret
	err = k.Reader.Get(ctx, key, &sec)
	switch {
	case apierrors.IsNotFound(err):
		if inUse && !k.AllowNew {
			return nil, &NewKeyRefusedError{Msg: fmt.Sprintf("the signing key Secret %s is missing, but certificates were signed with key %s (ConfigMap %s/%s): "+
				"restore the Secret from your backup, or start the manager with --allow-new-signing-key (chart: signingKey.allowNew) to sign with a new key; "+
				"the old public keys stay published", key, cur.KeyID, k.Namespace, SigningKeyName)}
		}
		_, priv, err := evidence.GenerateKey()
		if err != nil {
			return nil, err
		}
		pem, err := evidence.MarshalPrivateKey(priv)
		if err != nil {
			return nil, err
		}
		sec = corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: k.Namespace, Name: name,
			Labels: map[string]string{custosv1alpha1.LabelPurpose: "certificate-signing-key", custosv1alpha1.LabelManagedBy: "custos"}},
			Type: corev1.SecretTypeOpaque, Data: map[string][]byte{signingKeyPrivateKey: pem}, Immutable: ptr.To(true)}
		if err := k.Client.Create(ctx, &sec); err != nil {
			if !apierrors.IsAlreadyExists(err) {
				return nil, err
			}
			if err := k.Reader.Get(ctx, key, &sec); err != nil { // another manager made it first
				return nil, err
			}
		}
	case err != nil:
		return nil, err
	}
	priv, err := evidence.ParsePrivateKey(sec.Data[signingKeyPrivateKey])
	if err != nil {
		return nil, fmt.Errorf("Secret %s, key %s: %w", key, signingKeyPrivateKey, err)
	}
	pub := priv.Public().(ed25519.PublicKey)
	if inUse && cur.KeyID != evidence.KeyID(pub) && !k.AllowNew {
		return nil, &NewKeyRefusedError{Msg: fmt.Sprintf("the signing key in Secret %s is %s, but certificates were signed with key %s (ConfigMap %s/%s): "+
			"restore the key in use, or start the manager with --allow-new-signing-key (chart: signingKey.allowNew) to sign with the new one; "+
			"the old public keys stay published", key, evidence.KeyID(pub), cur.KeyID, k.Namespace, SigningKeyName)}
	}
	if err := k.publish(ctx, pub); err != nil {
		return nil, err
	}
	return priv, nil
}

// publish makes pub the key in use in the published history (the previous one is closed, never removed) and its
// PEM the ConfigMap's public.pem.
func (k *SigningKeys) publish(ctx context.Context, pub ed25519.PublicKey) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		history, cm, err := k.History(ctx)
		if err != nil {
			return err
		}
		history, err = history.With(pub, k.now())
		if err != nil {
			return err
		}
		pem, err := evidence.MarshalPublicKey(pub)
		if err != nil {
			return err
		}
		want := map[string]string{signingKeyPublicKey: string(pem), "keyid": evidence.KeyID(pub), signingKeyHistory: string(history.Marshal())}
		if cm == nil {
			cm = &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: k.Namespace, Name: SigningKeyName,
				Labels: map[string]string{custosv1alpha1.LabelPurpose: "certificate-public-key", custosv1alpha1.LabelManagedBy: "custos"}}, Data: want}
			err := k.Client.Create(ctx, cm)
			if apierrors.IsAlreadyExists(err) {
				return apierrors.NewConflict(corev1.Resource("configmaps"), cm.Name, err)
			}
			return err
		}
		if equality.Semantic.DeepEqual(cm.Data, want) {
			return nil
		}
		cm.Data = want
		return k.Client.Update(ctx, cm)
	})
}

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

// recordCertificate appends CertificateIssued to the trail, once per certificate. Unlike the other steps' entries
// it is not left to AuditLog.Record, which only logs a failure: nothing comes after this step to record it later,
// so the step is not done (and is retried, adopting the certificate) until the entry is written.
func (r *TenantExitReconciler) recordCertificate(ctx context.Context, t *custosv1alpha1.Tenant, name, head string) error {
	return r.audit(ctx, t, evidence.ActionCertificateIssued, map[string]string{"certificate": name, "auditHead": head,
		auditStepKey: string(evidence.ActionCertificateIssued) + "/" + name})
}

func (r *TenantExitReconciler) certified(t *custosv1alpha1.Tenant, name string) {
	ex := t.Status.Exit
	ex.CertificateRef = &custosv1alpha1.ObjectReference{Name: name}
	if ex.DestroyedAt == nil {
		ex.DestroyedAt = ptr.To(metav1.NewTime(r.Clock.Now()))
	}
	conditions.Set(&t.Status.Conditions, t.Generation, custosv1alpha1.ConditionCertificateIssued, true, custosv1alpha1.ReasonSigned,
		fmt.Sprintf("DestructionCertificate %s is signed; its public key is in ConfigMap %s/%s", name, r.Namespace, SigningKeyName))
}
