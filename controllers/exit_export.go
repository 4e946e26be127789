package controllers

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	custosv1alpha1 "github.com/custos-io/custos/api/v1alpha1"
	"github.com/custos-io/custos/internal/lifecycle"
)

// exitExportName is the name of this exit's DataExport: the tenant's name and the moment it was suspended, so an
// export of an earlier tenant of the same name, or of an earlier (cancelled) exit, is never at that name.
func exitExportName(t *custosv1alpha1.Tenant) string {
	return fmt.Sprintf("%s%s-%s", t.Name, exitExportSuffix, t.Status.Exit.TerminatedAt.UTC().Format("20060102-150405"))
}

// gatherExport reads the exit's DataExport. Only the object the exit created counts (status.exit.exportRef, by
// UID); an object found at the exit's name that is not bound to this tenant and this exit is refused: the facts
// say so, and nothing is destroyed on its strength.
func (r *TenantExitReconciler) gatherExport(ctx context.Context, s *exitScope) error {
	t := s.tenant
	ex := t.Status.Exit
	if ex.ExportRef == nil {
		if ex.TerminatedAt == nil || t.Spec.Exit.DataReturn != custosv1alpha1.DataReturnExport {
			return nil
		}
		var de custosv1alpha1.DataExport
		err := r.Client.Get(ctx, client.ObjectKey{Name: exitExportName(t)}, &de)
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return err
		}
		if why := exitExportProblem(&de, t); why != "" {
			s.facts.Export = lifecycle.ExportFacts{Exists: true, Refused: refusedExport(&de, why)}
		}
		return nil // a bound one (made before a restart) is adopted by RequestExport
	}
	var de custosv1alpha1.DataExport
	err := r.Client.Get(ctx, client.ObjectKey{Name: ex.ExportRef.Name}, &de)
	if err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	if apierrors.IsNotFound(err) {
		// The DataExport is gone. Its bag counts as gone only when the file is verified absent.
		if ex.ExportRef.Bag != "" {
			gone, err := fileGone(ex.ExportRef.Bag)
			if err != nil {
				return err
			}
			s.facts.Export.BagGone = gone
		}
		return nil
	}
	switch {
	case ex.ExportRef.UID != "" && string(de.UID) != ex.ExportRef.UID:
		s.facts.Export = lifecycle.ExportFacts{Exists: true, Refused: refusedExport(&de,
			fmt.Sprintf("its uid is %s, the exit created uid %s (it was deleted and made again)", de.UID, ex.ExportRef.UID))}
		return nil
	case ex.ExportRef.UID == "":
		if why := exitExportProblem(&de, t); why != "" {
			s.facts.Export = lifecycle.ExportFacts{Exists: true, Refused: refusedExport(&de, why)}
			return nil
		}
	}
	s.export = &de
	s.facts.Export = exportFacts(&de)
	if de.Status.ExpiresAt != nil {
		s.facts.Export.ExpiresAt = de.Status.ExpiresAt.Time
	}
	if de.Status.Phase == custosv1alpha1.ExportExpired {
		gone, err := fileGone(de.ArtefactPath())
		if err != nil {
			return err
		}
		s.facts.Export.BagGone = gone
	}
	return nil
}

// fileGone reports whether path is verifiably absent.
func fileGone(path string) (bool, error) {
	_, err := os.Stat(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return true, nil
	case err != nil:
		return false, fmt.Errorf("checking that the exit's bag %s is gone: %w", path, err)
	}
	return false, nil
}

// exitExportProblem says why de is not this exit's export ("" when it is): made for this tenant (by UID) and this
// exit (by terminatedAt), after the exit began, with the database and the Kubernetes objects.
func exitExportProblem(de *custosv1alpha1.DataExport, t *custosv1alpha1.Tenant) string {
	var why []string
	if de.Spec.TenantRef.Name != t.Name {
		why = append(why, fmt.Sprintf("it exports tenant %s", de.Spec.TenantRef.Name))
	}
	switch uid := de.Annotations[custosv1alpha1.AnnotationTenantUID]; uid {
	case string(t.UID):
	case "":
		why = append(why, "it carries no "+custosv1alpha1.AnnotationTenantUID+" annotation (it was made by hand or by an earlier version of custos)")
	default:
		why = append(why, fmt.Sprintf("it was made for tenant uid %s, not this tenant's %s (an earlier tenant of the same name)", uid, t.UID))
	}
	terminated := t.Status.Exit.TerminatedAt.UTC()
	if at := de.Annotations[annotationExitTerminatedAt]; at != "" && at != terminated.Format(time.RFC3339) {
		why = append(why, fmt.Sprintf("it was made for an exit that began at %s, not this one (%s)", at, terminated.Format(time.RFC3339)))
	}
	if de.CreationTimestamp.Time.Before(terminated.Truncate(time.Second)) {
		why = append(why, fmt.Sprintf("it was created at %s, before this exit began at %s", de.CreationTimestamp.UTC().Format(time.RFC3339), terminated.Format(time.RFC3339)))
	}
	if !de.Spec.Include.Database {
		why = append(why, "include.database is false: it holds no copy of the database")
	}
	if !de.Spec.Include.KubernetesObjects {
		why = append(why, "include.kubernetesObjects is false")
	}
	return strings.Join(why, "; ")
}

func refusedExport(de *custosv1alpha1.DataExport, why string) string {
	return fmt.Sprintf("DataExport %s is not this exit's export: %s. Nothing is destroyed on its strength, and custos neither adopts nor deletes it: delete it (or have whoever made it do so), and the exit writes its own export",
		de.Name, why)
}

func exportFacts(de *custosv1alpha1.DataExport) lifecycle.ExportFacts {
	f := lifecycle.ExportFacts{Exists: true, Phase: de.Status.Phase}
	if de.Status.DeliveredAt != nil {
		f.DeliveredAt = de.Status.DeliveredAt.Time
	}
	if c := meta.FindStatusCondition(de.Status.Conditions, custosv1alpha1.ConditionExportAcknowledged); c != nil && c.Status == metav1.ConditionFalse && c.Reason == custosv1alpha1.ReasonReceiptMismatch {
		f.ReceiptMismatch = true
	}
	if c := meta.FindStatusCondition(de.Status.Conditions, custosv1alpha1.ConditionReady); c != nil && c.Status == metav1.ConditionFalse {
		f.Message = c.Message
	}
	return f
}

// requestExport creates the exit's DataExport, bound to the tenant's UID and to this exit, or adopts the one an
// earlier attempt created (recognised by the same binding). Anything else at that name is refused.
func (r *TenantExitReconciler) requestExport(ctx context.Context, s *exitScope) (bool, error) {
	t := s.tenant
	name := exitExportName(t)
	var de custosv1alpha1.DataExport
	err := r.Client.Get(ctx, client.ObjectKey{Name: name}, &de)
	if apierrors.IsNotFound(err) {
		path := r.ExportDir
		if s.policy != nil && s.policy.Spec.Export.Delivery != nil {
			path = s.policy.Spec.Export.Delivery.Filesystem.Path
		}
		if path == "" {
			return false, errors.New("no delivery for the exit's export: set the RetentionPolicy's export.delivery.filesystem.path or the manager's --export-dir")
		}
		de = custosv1alpha1.DataExport{
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: t.ManagedLabels(), Annotations: map[string]string{
				custosv1alpha1.AnnotationTenantUID: string(t.UID), annotationExitTerminatedAt: t.Status.Exit.TerminatedAt.UTC().Format(time.RFC3339)}},
			Spec: custosv1alpha1.DataExportSpec{TenantRef: custosv1alpha1.ObjectReference{Name: t.Name},
				Include:  custosv1alpha1.ExportInclude{Database: true, KubernetesObjects: true},
				Delivery: custosv1alpha1.ExportDelivery{Filesystem: custosv1alpha1.FilesystemDelivery{Path: path}}},
		}
		if err := r.Client.Create(ctx, &de); err != nil {
			return false, fmt.Errorf("creating DataExport %s: %w", name, err)
		}
		r.Recorder.Eventf(t, nil, corev1.EventTypeNormal, "ExportRequested", "Exit", "DataExport %s requested for the data controller (exit.dataReturn: Export), delivered to %s", name, path)
	} else if err != nil {
		return false, err
	} else if why := exitExportProblem(&de, t); why != "" {
		return false, errors.New(refusedExport(&de, why))
	}
	t.Status.Exit.ExportRef = &custosv1alpha1.ExitExportReference{Name: name, UID: string(de.UID)}
	return true, nil
}
