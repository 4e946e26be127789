package controllers

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	custosv1alpha1 "github.com/custos-io/custos/api/v1alpha1"
	"github.com/custos-io/custos/internal/audittrail"
	"github.com/custos-io/custos/internal/conditions"
	"github.com/custos-io/custos/internal/evidence"
	"github.com/custos-io/custos/internal/metrics"
	"github.com/custos-io/custos/internal/postgres"
)

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
