package controllers

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	custosv1alpha1 "github.com/custos-io/custos/api/v1alpha1"
	"github.com/custos-io/custos/internal/postgres"
)

// setCondition sets a condition of the given status; generation is the object's metadata.generation.
func setCondition(conds *[]metav1.Condition, generation int64, typ string, ok bool, reason, msg string) {
	st := metav1.ConditionFalse
	if ok {
		st = metav1.ConditionTrue
	}
	meta.SetStatusCondition(conds, metav1.Condition{Type: typ, Status: st, Reason: reason, Message: msg, ObservedGeneration: generation})
}

// adminConfig reads a DatabaseServer's admin Secret (and CA Secret) from the manager's namespace. A missing
// Secret or key is a user error, reported with what to create.
func adminConfig(ctx context.Context, r client.Reader, namespace string, s *custosv1alpha1.DatabaseServer) (postgres.ConnConfig, error) {
	cfg := postgres.ConnConfig{Host: s.Spec.Host, Port: int(s.Spec.Port), Database: s.Spec.MaintenanceDatabase, SSLMode: string(s.Spec.SSLMode)}
	if cfg.Port == 0 {
		cfg.Port = 5432
	}
	if cfg.Database == "" {
		cfg.Database = "postgres"
	}
	if cfg.SSLMode == "" {
		cfg.SSLMode = "verify-full"
	}
	user, err := secretKey(ctx, r, namespace, s.Spec.AdminCredentialsSecretRef.Name, "username")
	if err != nil {
		return cfg, err
	}
	pw, err := secretKey(ctx, r, namespace, s.Spec.AdminCredentialsSecretRef.Name, "password")
	if err != nil {
		return cfg, err
	}
	cfg.User, cfg.Password = string(user), string(pw)
	if s.Spec.CASecretRef != nil {
		ca, err := secretKey(ctx, r, namespace, s.Spec.CASecretRef.Name, "ca.crt")
		if err != nil {
			return cfg, err
		}
		cfg.CAPEM = ca
	}
	return cfg, nil
}

// errSecret is a missing Secret or key: the user must create it.
type errSecret struct{ msg string }

func (e *errSecret) Error() string { return e.msg }

func secretKey(ctx context.Context, r client.Reader, namespace, name, key string) ([]byte, error) {
	var sec corev1.Secret
	if err := r.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, &sec); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, &errSecret{fmt.Sprintf("Secret %s/%s not found: create it with the key %q", namespace, name, key)}
		}
		return nil, err
	}
	v, ok := sec.Data[key]
	if !ok || len(v) == 0 {
		return nil, &errSecret{fmt.Sprintf("Secret %s/%s has no key %q", namespace, name, key)}
	}
	return v, nil
}
