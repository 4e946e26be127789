package controllers

import (
	"context"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	custosv1alpha1 "github.com/custos-io/custos/api/v1alpha1"
	"github.com/custos-io/custos/internal/postgres"
)

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
	creds, err := credentialsSecret(ctx, r, namespace, s.Spec.AdminCredentialsSecretRef.Name, "DatabaseServer/"+s.Name, "username", "password")
	if err != nil {
		return cfg, err
	}
	cfg.User, cfg.Password = string(creds["username"]), string(creds["password"])
	if s.Spec.CASecretRef != nil {
		ca, err := secretKey(ctx, r, namespace, s.Spec.CASecretRef.Name, "ca.crt")
		if err != nil {
			return cfg, err
		}
		cfg.CAPEM = ca
	}
	return cfg, nil
}

// errSecretNotBound is a credentials Secret that does not name the object using it in its
// custos.io/credentials-for annotation: custos does not send it.
type errSecretNotBound struct{ msg string }

func (e *errSecretNotBound) Error() string { return e.msg }

// credentialsSecret reads the keys of a credentials Secret for the object user ("Kind/name"). The Secret must name
// user in its custos.io/credentials-for annotation: naming a Secret in a BackupLocation or DatabaseServer is not
// enough to have custos send it somewhere, so a person who may create those objects cannot get hold of another
// object's credentials (or any other Secret of the manager's namespace) by pointing a new object at them.
func credentialsSecret(ctx context.Context, r client.Reader, namespace, name, user string, keys ...string) (map[string][]byte, error) {
	var sec corev1.Secret
	if err := r.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, &sec); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, &errSecret{fmt.Sprintf("Secret %s/%s not found: create it with the keys %s and the annotation %s: %s",
				namespace, name, strings.Join(keys, ", "), custosv1alpha1.AnnotationCredentialsFor, user)}
		}
		return nil, err
	}
	if !credentialsBound(sec.Annotations[custosv1alpha1.AnnotationCredentialsFor], user) {
		return nil, &errSecretNotBound{fmt.Sprintf("Secret %s/%s is not bound to %s, so custos does not use it: add %s to its annotation %s "+
			"(kubectl annotate secret -n %s %s %s=%s; several objects sharing it are listed with commas)",
			namespace, name, user, user, custosv1alpha1.AnnotationCredentialsFor, namespace, name, custosv1alpha1.AnnotationCredentialsFor, user)}
	}
	out := make(map[string][]byte, len(keys))
	for _, k := range keys {
		v, ok := sec.Data[k]
		if !ok || len(v) == 0 {
			return nil, &errSecret{fmt.Sprintf("Secret %s/%s has no key %q", namespace, name, k)}
		}
		out[k] = v
	}
	return out, nil
}

// credentialsBound reports whether the annotation value (a comma-separated list of Kind/name) names user.
func credentialsBound(annotation, user string) bool {
	for _, v := range strings.Split(annotation, ",") {
		if strings.TrimSpace(v) == user {
			return true
		}
	}
	return false
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
