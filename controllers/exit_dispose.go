package controllers

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	custosv1alpha1 "github.com/custos-io/custos/api/v1alpha1"
	"github.com/custos-io/custos/internal/conditions"
	"github.com/custos-io/custos/internal/evidence"
	"github.com/custos-io/custos/internal/runner"
	"github.com/custos-io/custos/internal/storage"
)

// disposeLocations are the BackupLocations that may hold a repository of the tenant.
func (r *TenantExitReconciler) disposeLocations(s *exitScope) []string {
	var locs []string
	if s.policy != nil {
		locs = append(locs, s.policy.Spec.Primary.Name)
		if s.policy.Spec.Offsite != nil {
			locs = append(locs, s.policy.Spec.Offsite.Name)
		}
	}
	for _, b := range s.tenant.Status.Backups {
		if !slices.Contains(locs, b.Location) {
			locs = append(locs, b.Location)
		}
	}
	return locs
}

// dispose destroys every repository of the tenant (a Shred task per location in the Runner), then the Secret of
// repository keys: with every copy of the keys gone, whatever a backend might still hold is unreadable.
func (r *TenantExitReconciler) dispose(ctx context.Context, s *exitScope) (bool, error) {
	t := s.tenant
	if len(t.Status.Tasks) > 0 {
		return false, nil // the backup controller is draining; a running task must not write into a repository being destroyed
	}
	ex := t.Status.Exit
	slot := ex.DisposalStartedAt.Time.UTC()
	pending := false
	for _, loc := range r.disposeLocations(s) {
		if hasDestroyed(t, custosv1alpha1.DestroyedRepository, loc) {
			// Recorded on the trail once; an append that failed after the outcome was in status is retried here.
			if err := r.auditShredded(ctx, t, loc); err != nil {
				return false, err
			}
			continue
		}
		if shredIntentOf(t, loc) == nil {
			// What is about to be destroyed goes into status before the Shred starts (the next reconcile submits
			// it), so that a restart that loses the task's outcome still knows which repository it destroyed.
			recordShredIntent(t, loc, r.Clock.Now())
			pending = true
			continue
		}
		sp := runner.Spec{Tenant: t.Name, Kind: custosv1alpha1.TaskShred, Location: loc, Slot: slot, Attempt: int(ex.Step.Attempts) + 1}
		if res, ok := r.Runner.Result(sp.Key()); ok {
			// The location's jurisdiction goes on the certificate: read it before the result is forgotten, so a
			// failed read is retried with the result still there (a deleted BackupLocation leaves it empty).
			var bl custosv1alpha1.BackupLocation
			if err := r.Client.Get(ctx, client.ObjectKey{Name: loc}, &bl); err != nil && !apierrors.IsNotFound(err) {
				return false, fmt.Errorf("reading BackupLocation %s for the destruction record: %w", loc, err)
			}
			r.Runner.Forget(sp.Key())
			if res.Err != nil {
				return false, fmt.Errorf("destroying the repository at %s: %w", loc, res.Err)
			}
			var rep storage.Report
			if err := json.Unmarshal(res.Output, &rep); err != nil {
				return false, err
			}
			id := shredRepositoryID(shredIntentOf(t, loc), rep)
			technique := "restic forget of every snapshot and prune --max-unused 0, then DELETE of every object of the repository (data, index, snapshots, locks, keys, config) at the backend"
			method := custosv1alpha1.SanitizationMethod("Purge")
			if t.Spec.Exit.Backups == custosv1alpha1.BackupDisposalExpire {
				technique = "retention expiry (every snapshot older than keepWithin forgotten and pruned), then " + technique
			}
			r.addDestroyed(t, custosv1alpha1.DestroyedLocation{Kind: custosv1alpha1.DestroyedRepository, Name: loc,
				Identifier:   fmt.Sprintf("restic repository %s at %s (%d snapshot(s), %d object(s), %d bytes deleted)", id, rep.Repository, rep.SnapshotsBefore, rep.ObjectsDeleted, rep.BytesDeleted),
				Jurisdiction: string(bl.Spec.Jurisdiction), Method: method, Technique: technique,
				Tool: strings.TrimSpace(rep.Tool + " " + rep.ToolVersion), StartedAt: metav1.NewTime(rep.StartedAt), CompletedAt: metav1.NewTime(rep.CompletedAt),
				Verification: rep.Verification})
			r.Recorder.Eventf(t, nil, corev1.EventTypeNormal, "RepositoryDestroyed", "Exit", "repository %s at %s destroyed and verified gone", id, loc)
			if err := r.auditShredded(ctx, t, loc); err != nil {
				return false, err // the outcome is in status; the entry is retried before the step counts as done
			}
			continue
		}
		pending = true
		r.Runner.Submit(sp)
	}
	if pending {
		return false, nil
	}
	key := client.ObjectKey{Namespace: r.Namespace, Name: t.RepoKeySecretName()}
	// Every repository is verified gone: that is on the trail before the keys go (a failed append stops here,
	// with the keys still there, and is retried).
	if err := r.audit(ctx, t, evidence.ActionBackupsExpired, map[string]string{"locations": strings.Join(r.disposeLocations(s), ",")}); err != nil {
		return false, err
	}
	gone, uid, err := r.deleteAndVerify(ctx, &corev1.Secret{}, key)
	if err != nil || !gone {
		return false, err
	}
	r.addDestroyed(t, custosv1alpha1.DestroyedLocation{Kind: custosv1alpha1.DestroyedSecret, Name: key.String(), Identifier: secretIdentifier(key, uid),
		Method: "Purge", Technique: "cryptographic erase: the only copy of the repositories' keys (restic data is AES-256 encrypted) deleted",
		Tool: "kube-apiserver", StartedAt: ex.Step.StartedAt, CompletedAt: metav1.NewTime(r.Clock.Now()), Verification: "GET returns 404 Not Found"})
	conditions.Set(&t.Status.Conditions, t.Generation, custosv1alpha1.ConditionBackupsExpired, true, custosv1alpha1.ReasonRepositoriesDestroyed,
		"every backup repository of the tenant is verified gone and its keys are deleted")
	return true, nil
}

// legalHoldDetail adds the hold's until date (when it has one) to a LegalHoldSet entry's detail, so the
// certificate can say what the hold was.
func legalHoldDetail(h *custosv1alpha1.LegalHold, detail map[string]string) map[string]string {
	if h != nil && h.Until != nil {
		detail["until"] = h.Until.UTC().Format(time.RFC3339)
	}
	return detail
}

// shredIntentOf is the intent recorded for loc, or nil.
func shredIntentOf(t *custosv1alpha1.Tenant, loc string) *custosv1alpha1.ShredIntent {
	for i := range t.Status.Exit.ShredIntents {
		if t.Status.Exit.ShredIntents[i].Location == loc {
			return &t.Status.Exit.ShredIntents[i]
		}
	}
	return nil
}

// recordShredIntent writes into status which repository the Shred at loc is about to destroy, as the backups
// last saw it.
func recordShredIntent(t *custosv1alpha1.Tenant, loc string, now time.Time) {
	in := custosv1alpha1.ShredIntent{Location: loc, RecordedAt: metav1.NewTime(now)}
	for _, b := range t.Status.Backups {
		if b.Location == loc {
			in.RepositoryID, in.Snapshots = b.RepositoryID, b.Snapshots
		}
	}
	t.Status.Exit.ShredIntents = append(t.Status.Exit.ShredIntents, in)
}

// shredRepositoryID names the destroyed repository for the certificate: the one the Shred opened, else the one
// recorded before it ran (an earlier run destroyed it and its outcome was lost), else none.
func shredRepositoryID(intent *custosv1alpha1.ShredIntent, rep storage.Report) string {
	switch {
	case rep.RepositoryID != "":
		return rep.RepositoryID
	case intent != nil && intent.RepositoryID != "":
		return fmt.Sprintf("%s (recorded before the Shred at %s with %d snapshot(s); already gone when this run of the Shred looked: an earlier run destroyed it and its outcome was lost)",
			intent.RepositoryID, intent.RecordedAt.UTC().Format(time.RFC3339), intent.Snapshots)
	}
	return "none (no repository existed)"
}

// auditShredded records the destruction of the repository at loc (from status) on the trail, once per step.
func (r *TenantExitReconciler) auditShredded(ctx context.Context, t *custosv1alpha1.Tenant, loc string) error {
	detail := map[string]string{"location": loc}
	for _, d := range t.Status.Exit.Destroyed {
		if d.Kind == custosv1alpha1.DestroyedRepository && d.Name == loc {
			detail["repository"] = d.Identifier
		}
	}
	if in := shredIntentOf(t, loc); in != nil && in.RepositoryID != "" {
		detail["repositoryID"] = in.RepositoryID
	}
	return r.audit(ctx, t, evidence.ActionShredded, detail)
}
