package controllers

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	custosv1alpha1 "github.com/custos-io/custos/api/v1alpha1"
	"github.com/custos-io/custos/internal/runner"
	"github.com/custos-io/custos/internal/storage"
)

// shred destroys the tenant's repository at sp.Location and returns the storage.Report as JSON. The repository's
// address is the tenant's own (<base>/<tenant>-<uid8>), so a repository the key does not open (a key lost earlier)
// is deleted too: it cannot belong to anyone else, and the exit must leave nothing behind.
func (e *BackupExecutor) shred(ctx context.Context, sp runner.Spec) ([]byte, error) {
	var t custosv1alpha1.Tenant
	if err := e.Reader.Get(ctx, client.ObjectKey{Name: sp.Tenant}, &t); err != nil {
		return nil, err
	}
	var bl custosv1alpha1.BackupLocation
	if err := e.Reader.Get(ctx, client.ObjectKey{Name: sp.Location}, &bl); err != nil {
		return nil, fmt.Errorf("BackupLocation %s: %w", sp.Location, err)
	}
	if err := os.MkdirAll(e.WorkDir, 0o700); err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp(e.WorkDir, "shred-")
	if err != nil {
		return nil, err
	}
	defer func() { _ = os.RemoveAll(dir) }()
	b, err := resolveBackend(ctx, e.Reader, e.Namespace, &bl, dir)
	if err != nil {
		return nil, err
	}
	if err := b.probe(ctx); err != nil {
		return nil, err
	}
	var keys corev1.Secret
	password := ""
	if err := e.Reader.Get(ctx, client.ObjectKey{Namespace: e.Namespace, Name: t.RepoKeySecretName()}, &keys); err == nil {
		password = string(keys.Data[sp.Location])
	} else if !apierrors.IsNotFound(err) {
		return nil, err
	}
	repo := b.repository(e.Programs, filepath.Join(dir, "cache"), &t, password)
	rep, err := storage.ShredWith(ctx, repo, storage.Options{Now: e.Clock.Now, DeleteUnopenable: true})
	if err != nil {
		return nil, err
	}
	return json.Marshal(rep)
}
