package v1alpha1

import (
	"fmt"
	"path/filepath"

	"k8s.io/apimachinery/pkg/api/meta"
)

// Names, labels and annotations of what custos makes, shared by the controllers, the task executor and the exit.
// Their values are stored in clusters (object names, labels, annotations): changing one strands what an older
// manager wrote.
const (
	// ManagedByCustos is the value of LabelManagedBy on everything custos makes.
	ManagedByCustos = "custos"
	// LabelPurpose says what a Secret or ConfigMap of the manager's namespace is for (Purpose* values).
	LabelPurpose = "custos.io/purpose"
	// PurposeDatabaseCredentials marks a tenant's master password Secret (Tenant.MasterSecretName).
	PurposeDatabaseCredentials = "database-credentials"
	// PurposeRepositoryKeys marks a tenant's repository keys Secret (Tenant.RepoKeySecretName).
	PurposeRepositoryKeys = "repository-keys"
	// AnnotationTenantUID names the UID of the Tenant an object was made for: on a tenant namespace (labels can be
	// set by anyone who can create namespaces; the UID is unknown before the Tenant exists), on the exit's
	// DataExport, and on the segments of the audit trail.
	AnnotationTenantUID = "custos.io/tenant-uid"
	// CredentialsSecretName is the Secret with the database credentials in each tenant namespace.
	CredentialsSecretName = "custos-database"
	// PolicyDefaultDeny is the NetworkPolicy of each tenant namespace that denies all traffic; the exit's
	// suspension keeps it and removes every other.
	PolicyDefaultDeny = "custos-default-deny"

	// LabelAuditTenant names the tenant on each segment ConfigMap of its audit trail (manager's namespace).
	LabelAuditTenant = "custos.io/audit-tenant"
	// LabelAuditSegment is a segment's number in its trail, from 0.
	LabelAuditSegment = "custos.io/audit-segment"
	// AuditEntriesKey is the key of a segment ConfigMap holding its entries, one JSON line each.
	AuditEntriesKey = "entries.jsonl"
	// SigningKeyName is the ConfigMap (manager's namespace) publishing every public key that signed certificates,
	// and the default name of the Secret holding the private key.
	SigningKeyName = "custos-signing-key"
	// SigningPublicKeyFile is the current public key's entry (PEM) in the ConfigMap SigningKeyName.
	SigningPublicKeyFile = "public.pem"

	masterSecretPrefix  = "custos-db-"
	repoKeySecretPrefix = "custos-repo-"
)

// shortUID is the first 8 characters of the tenant's UID: with the name it tells a tenant from an earlier one of
// the same name, in names that must stay short.
func (t *Tenant) shortUID() string {
	uid := string(t.UID)
	if len(uid) > 8 {
		uid = uid[:8]
	}
	return uid
}

// ManagedLabels are on everything custos makes for a tenant (a new map each call); the watches map objects back
// by them.
func (t *Tenant) ManagedLabels() map[string]string {
	return map[string]string{LabelTenant: t.Name, LabelManagedBy: ManagedByCustos}
}

// MasterSecretName is the Secret (manager's namespace) with the master copy of the tenant's database password.
func (t *Tenant) MasterSecretName() string { return masterSecretPrefix + t.Name }

// RepoKeySecretName is the Secret (manager's namespace) with the tenant's repository keys, one key per
// BackupLocation name.
func (t *Tenant) RepoKeySecretName() string { return repoKeySecretPrefix + t.Name }

// CertificateName is the name of the tenant's DestructionCertificate: fixed by the tenant's UID, so it is written
// once.
func (t *Tenant) CertificateName() string { return fmt.Sprintf("%s-%s", t.Name, t.shortUID()) }

// RepositoryName is the tenant's repository under a BackupLocation's base URL: <tenant>-<first 8 of uid>.
func (t *Tenant) RepositoryName() string { return t.Name + "-" + t.shortUID() }

// AuditPrefix starts the names of the ConfigMaps of the tenant's audit trail: custos-audit-<tenant>-<uid8>.
func (t *Tenant) AuditPrefix() string { return fmt.Sprintf("custos-audit-%s-%s", t.Name, t.shortUID()) }

// LocationStatus is the tenant's backup summary at BackupLocation loc, or nil.
func (t *Tenant) LocationStatus(loc string) *LocationBackupStatus {
	for i := range t.Status.Backups {
		if t.Status.Backups[i].Location == loc {
			return &t.Status.Backups[i]
		}
	}
	return nil
}

// Disposing reports whether the tenant's repositories are being (or have been) destroyed: no backup task may
// run, and no repository or key may be created, from then on.
func (t *Tenant) Disposing() bool {
	return t.Status.Phase == TenantDestroyed || (t.Status.Exit != nil && t.Status.Exit.DisposalStartedAt != nil)
}

// DatabaseLost reports whether status says the tenant's recorded database is missing (DatabaseReady with reason
// DatabaseMissing): backups of it stop and its snapshots are kept from expiry. Once the exit has started (a
// person ended the contract) the exit decides.
func (t *Tenant) DatabaseLost() bool {
	if t.Status.Phase.ExitStarted() {
		return false
	}
	c := meta.FindStatusCondition(t.Status.Conditions, ConditionDatabaseReady)
	return c != nil && c.Reason == ReasonDatabaseMissing
}

// BagPath is where the export's bag is written: <delivery path>/<name>.tar.
func (de *DataExport) BagPath() string {
	return filepath.Join(de.Spec.Delivery.Filesystem.Path, de.Name+".tar")
}

// ArtefactPath is where the bag is: the artefact's recorded location once written, else BagPath.
func (de *DataExport) ArtefactPath() string {
	if de.Status.Artefact != nil && de.Status.Artefact.Location != "" {
		return de.Status.Artefact.Location
	}
	return de.BagPath()
}
