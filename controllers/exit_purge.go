package controllers

import (
	"context"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	custosv1alpha1 "github.com/custos-io/custos/api/v1alpha1"
	"github.com/custos-io/custos/internal/conditions"
	"github.com/custos-io/custos/internal/evidence"
)

// purge destroys the live data in the order DESIGN §4 gives: the database and role, then the Secrets, then the
// namespaces; each verified gone and recorded for the certificate.
func (r *TenantExitReconciler) purge(ctx context.Context, s *exitScope) (bool, error) {
	t := s.tenant
	started := t.Status.Exit.Step.StartedAt
	if t.Status.Database != nil && !hasDestroyed(t, custosv1alpha1.DestroyedDatabase, t.DatabaseName()) {
		db, srv, err := r.server(ctx, t)
		if err != nil {
			return false, err
		}
		defer db.Close(ctx)
		version, _ := db.Version(ctx)
		res, err := db.DropTenant(ctx, t.DatabaseName(), owner(t), uint32(t.Status.Database.OID))
		if err != nil {
			return false, err
		}
		oid := res.OID
		done := metav1.NewTime(r.Clock.Now())
		tool := "PostgreSQL " + version
		r.addDestroyed(t, custosv1alpha1.DestroyedLocation{Kind: custosv1alpha1.DestroyedDatabase, Name: t.DatabaseName(),
			Identifier:   fmt.Sprintf("database %s OID %d on DatabaseServer %s (%s)", t.DatabaseName(), oid, srv.Name, srv.Spec.Host),
			Jurisdiction: string(srv.Spec.Jurisdiction), Method: "Clear", Technique: "sessions ended; DROP DATABASE … WITH (FORCE)",
			Tool: tool, StartedAt: started, CompletedAt: done, Verification: res.Verification})
		r.addDestroyed(t, custosv1alpha1.DestroyedLocation{Kind: custosv1alpha1.DestroyedRole, Name: t.DatabaseName(),
			Identifier: fmt.Sprintf("role %s on DatabaseServer %s", t.DatabaseName(), srv.Name), Jurisdiction: string(srv.Spec.Jurisdiction),
			Method: "Clear", Technique: "DROP ROLE", Tool: tool, StartedAt: started, CompletedAt: done,
			Verification: fmt.Sprintf("pg_roles has no role %s", t.DatabaseName())})
	}
	// Secrets and namespaces: only in the namespaces provisioning proved the tenant's (status.namespaces, UID and
	// annotation verified live); any other namespace the spec names is left alone and reported.
	nss, live, err := r.exitNamespaces(ctx, t)
	if err != nil {
		return false, err
	}
	r.reportNotOwned(t, nss)
	// The credentials in each tenant namespace and the master password in the manager's namespace (if it is the
	// tenant's: provisioning refuses to use one without the tenant's label, and so must the purge).
	var secrets []client.ObjectKey
	master := client.ObjectKey{Namespace: r.Namespace, Name: t.MasterSecretName()}
	if foreign, err := r.foreignSecret(ctx, t, master); err != nil {
		return false, err
	} else if !foreign {
		secrets = append(secrets, master)
	}
	for _, ns := range nss.OwnedNames() {
		secrets = append(secrets, client.ObjectKey{Namespace: ns, Name: custosv1alpha1.CredentialsSecretName})
	}
	for _, key := range secrets {
		if hasDestroyed(t, custosv1alpha1.DestroyedSecret, key.String()) {
			continue
		}
		gone, uid, err := r.deleteAndVerify(ctx, &corev1.Secret{}, key)
		if err != nil {
			return false, err
		}
		if !gone {
			return false, nil
		}
		r.addDestroyed(t, custosv1alpha1.DestroyedLocation{Kind: custosv1alpha1.DestroyedSecret, Name: key.String(), Identifier: secretIdentifier(key, uid),
			Method: "Clear", Technique: "Kubernetes DELETE (the database password it held no longer opens anything: the role is dropped)",
			Tool: "kube-apiserver", StartedAt: started, CompletedAt: metav1.NewTime(r.Clock.Now()), Verification: "GET returns 404 Not Found"})
	}
	// A recorded namespace already gone (deleted by someone, or by an earlier attempt) is verified gone by its UID.
	for _, n := range nss.Gone {
		if hasDestroyed(t, custosv1alpha1.DestroyedNamespace, n.Name) {
			continue
		}
		verification := "GET returns 404 Not Found"
		if other := live[n.Name]; other != nil {
			verification = fmt.Sprintf("GET returns another namespace of that name (uid %s, not the tenant's: left alone), not uid %s", other.UID, n.UID)
		}
		r.addDestroyed(t, custosv1alpha1.DestroyedLocation{Kind: custosv1alpha1.DestroyedNamespace, Name: n.Name, Identifier: fmt.Sprintf("namespace %s uid %s", n.Name, n.UID),
			Method: "Clear", Technique: "Kubernetes DELETE of the namespace and, by the namespace controller, every object in it",
			Tool: "kube-apiserver", StartedAt: started, CompletedAt: metav1.NewTime(r.Clock.Now()), Verification: verification})
	}
	for _, n := range nss.Owned {
		if hasDestroyed(t, custosv1alpha1.DestroyedNamespace, n.Name) {
			continue
		}
		gone, _, err := r.deleteVerified(ctx, &corev1.Namespace{}, client.ObjectKey{Name: n.Name}, types.UID(n.UID))
		if err != nil {
			return false, err
		}
		if !gone {
			// The namespace controller is deleting its content; come back. If that takes long, say what holds it.
			return false, r.namespaceStuck(ctx, t, n.Name, types.UID(n.UID))
		}
		r.addDestroyed(t, custosv1alpha1.DestroyedLocation{Kind: custosv1alpha1.DestroyedNamespace, Name: n.Name, Identifier: fmt.Sprintf("namespace %s uid %s", n.Name, n.UID),
			Method: "Clear", Technique: "Kubernetes DELETE of the namespace and, by the namespace controller, every object in it",
			Tool: "kube-apiserver", StartedAt: started, CompletedAt: metav1.NewTime(r.Clock.Now()), Verification: "GET returns 404 Not Found"})
	}
	var purgedNS []string
	nSecrets := 0
	for _, d := range t.Status.Exit.Destroyed {
		switch d.Kind {
		case custosv1alpha1.DestroyedNamespace:
			purgedNS = append(purgedNS, d.Name)
		case custosv1alpha1.DestroyedSecret:
			nSecrets++
		}
	}
	if err := r.audit(ctx, t, evidence.ActionLiveDataPurged, map[string]string{"database": t.DatabaseName(), "namespaces": strings.Join(purgedNS, ",")}); err != nil {
		return false, err // purged (and recorded in status), but not counted as done until it is on the trail
	}
	at := metav1.NewTime(r.Clock.Now())
	t.Status.Exit.LiveDataPurgedAt = &at
	conditions.Set(&t.Status.Conditions, t.Generation, custosv1alpha1.ConditionLiveDataPurged, true, custosv1alpha1.ReasonPurged,
		fmt.Sprintf("database %s and its role, %d Secret(s) and %d namespace(s) verified gone", t.DatabaseName(), nSecrets, len(purgedNS)))
	r.Recorder.Eventf(t, nil, corev1.EventTypeNormal, "LiveDataPurged", "Exit", "database %s, its role, the Secrets and the namespaces are verified gone", t.DatabaseName())
	return true, nil
}

func secretIdentifier(key client.ObjectKey, uid string) string {
	if uid == "" {
		return "Secret " + key.String()
	}
	return fmt.Sprintf("Secret %s uid %s", key, uid)
}

// deleteAndVerify deletes obj (if there) and reports whether a live read returns 404, with the UID it had.
func (r *TenantExitReconciler) deleteAndVerify(ctx context.Context, obj client.Object, key client.ObjectKey) (bool, string, error) {
	return r.deleteVerified(ctx, obj, key, "")
}

// deleteVerified deletes the object at key, exactly the one read (UID precondition), and reports whether it is
// gone, with the UID it had. With want set, only the object of that UID is deleted: another object of that name
// (the one recorded was deleted, and someone made a new one) is left alone, and the recorded one counts as gone.
func (r *TenantExitReconciler) deleteVerified(ctx context.Context, obj client.Object, key client.ObjectKey, want types.UID) (bool, string, error) {
	err := r.APIReader.Get(ctx, key, obj)
	if apierrors.IsNotFound(err) {
		return true, "", nil
	}
	if err != nil {
		return false, "", err
	}
	uid := obj.GetUID()
	if want != "" && uid != want {
		return true, "", nil
	}
	if obj.GetDeletionTimestamp() == nil {
		err := r.Client.Delete(ctx, obj, client.Preconditions{UID: &uid})
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			return false, string(uid), fmt.Errorf("deleting %T %s: %w", obj, key, err)
		}
	}
	err = r.APIReader.Get(ctx, key, obj)
	if apierrors.IsNotFound(err) || (err == nil && obj.GetUID() != uid) {
		return true, string(uid), nil
	}
	return false, string(uid), err
}

// foreignSecret reports whether the Secret at key exists without the tenant's label: custos did not make it for
// this tenant, and the exit leaves it alone (with a Warning Event).
func (r *TenantExitReconciler) foreignSecret(ctx context.Context, t *custosv1alpha1.Tenant, key client.ObjectKey) (bool, error) {
	var sec corev1.Secret
	err := r.APIReader.Get(ctx, key, &sec)
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if sec.Labels[custosv1alpha1.LabelTenant] == t.Name {
		return false, nil
	}
	r.Recorder.Eventf(t, nil, corev1.EventTypeWarning, "SecretNotOwned", "Exit",
		"Secret %s does not carry the label %s=%s: custos did not make it for this tenant and leaves it alone", key, custosv1alpha1.LabelTenant, t.Name)
	return true, nil
}
