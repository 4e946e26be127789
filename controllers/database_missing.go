package controllers

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"

	custosv1alpha1 "github.com/custos-io/custos/api/v1alpha1"
	"github.com/custos-io/custos/internal/evidence"
	"github.com/custos-io/custos/internal/metrics"
	"github.com/custos-io/custos/internal/postgres"
)

// A tenant's database that custos made (its OID is in status.database) and that is gone is a loss, not a step to
// redo: an empty database of the same name would be backed up in its place while the good snapshots age out. So
// custos does not make it again; it says so (DatabaseReady False, reason DatabaseMissing, a Warning Event, the
// custos_database_missing gauge, an audit entry), takes no new snapshot, copy or drill, and expires nothing, until
// a person decides by setting the annotation custos.io/accept-database-loss to the lost OID.

// Audit actions of a lost database (the chain accepts actions beyond evidence.Actions()).
const (
	actionDatabaseMissing      evidence.Action = "DatabaseMissing"
	actionDatabaseLossAccepted evidence.Action = "DatabaseLossAccepted"
)

// recordedOwner is the tenant as the postgres package decides ownership: name and UID (the comment, for the first
// adoption) and the database's and role's OIDs once recorded.
func recordedOwner(t *custosv1alpha1.Tenant) postgres.Owner {
	o := postgres.Owner{Tenant: t.Name, UID: string(t.UID)}
	if d := t.Status.Database; d != nil && d.Name == t.DatabaseName() {
		o.DatabaseOID, o.RoleOID = uint32(d.OID), uint32(d.RoleOID)
	}
	return o
}

// lossAccepted reports whether a person accepted the loss of the database with the recorded OID.
func lossAccepted(t *custosv1alpha1.Tenant) bool {
	d := t.Status.Database
	return d != nil && d.OID != 0 && t.Annotations[custosv1alpha1.AnnotationAcceptDatabaseLoss] == fmt.Sprint(d.OID)
}

// findMissing checks, when an OID is recorded, that the database of the tenant's name is still the one with that
// OID. It returns a message for a person when it is not (gone, or replaced by one made outside custos), "" when
// it is there or nothing is recorded.
func findMissing(ctx context.Context, srv *postgres.Server, t *custosv1alpha1.Tenant, serverName string) (string, error) {
	o := recordedOwner(t)
	if o.DatabaseOID == 0 {
		return "", nil
	}
	name := t.DatabaseName()
	oid, exists, err := srv.DatabaseOID(ctx, name)
	if err != nil {
		return "", err
	}
	what := "is gone"
	switch {
	case exists && oid == o.DatabaseOID:
		return "", nil
	case exists:
		what = fmt.Sprintf("is gone: a database of that name with OID %d was made outside custos and is not used", oid)
	}
	return fmt.Sprintf("database %s (OID %d) on DatabaseServer %q %s. custos does not make it again, takes no new snapshot and expires none of its snapshots. "+
		"If the server itself is restored (a physical backup keeps the OID), custos goes on by itself. Otherwise accept the loss: annotate the Tenant %s=%d; custos then makes a new, empty database, backups and expiry resume, and you restore the newest good snapshot into it",
		name, o.DatabaseOID, serverName, what, custosv1alpha1.AnnotationAcceptDatabaseLoss, o.DatabaseOID), nil
}

// reportMissing records the loss: condition, Event (once per message, by stop), audit entry (once), metric.
func (r *TenantReconciler) reportMissing(ctx context.Context, s *tenantScope, msg string) error {
	t := s.tenant
	metrics.DatabaseMissing(t.Name, true)
	if !t.DatabaseLost() {
		if err := r.Audit.Record(ctx, t, actionDatabaseMissing, map[string]string{"database": t.DatabaseName(),
			"oid": fmt.Sprint(t.Status.Database.OID), "server": s.server.Name}); err != nil {
			return err
		}
	}
	return r.dbFail(s, custosv1alpha1.ReasonDatabaseMissing, msg)
}

// acceptLoss records that a person accepted the loss before the new, empty database is made.
func (r *TenantReconciler) acceptLoss(ctx context.Context, s *tenantScope) error {
	t := s.tenant
	// On the trail before anything is made: an accepted loss without its entry would be a silent one.
	if err := r.Audit.Record(ctx, t, actionDatabaseLossAccepted, map[string]string{"database": t.DatabaseName(),
		"oid": fmt.Sprint(t.Status.Database.OID), "server": s.server.Name}); err != nil {
		return err
	}
	r.Recorder.Eventf(t, nil, corev1.EventTypeWarning, "DatabaseLossAccepted", "Provision",
		"the loss of database %s (OID %d) was accepted (annotation %s): a new, empty database is made; backups and expiry resume",
		t.DatabaseName(), t.Status.Database.OID, custosv1alpha1.AnnotationAcceptDatabaseLoss)
	return nil
}
