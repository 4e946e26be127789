package v1alpha1

// Condition types. Every kind has Ready but DestructionCertificate (Verified); the others belong to the kind named in their comment.
const (
	// ConditionReady summarises the object: True when it does what its spec asks.
	ConditionReady = "Ready"

	// ConditionNamespacesReady (Tenant): every tenant namespace exists with its label, quota, limits, network
	// policies and owner bindings.
	ConditionNamespacesReady = "NamespacesReady"
	// ConditionDatabaseReady (Tenant): the database and role exist, isolated, and the credentials Secrets are written.
	ConditionDatabaseReady = "DatabaseReady"
	// ConditionBackupsHealthy (Tenant): the newest snapshot is younger than the policy's maxSnapshotAge everywhere.
	ConditionBackupsHealthy = "BackupsHealthy"
	// ConditionLegalHold (Tenant): True while a legal hold freezes destruction.
	ConditionLegalHold = "LegalHold"
	// ConditionExportAcknowledged (Tenant, DataExport): the receiver's digest matched the bag.
	ConditionExportAcknowledged = "ExportAcknowledged"
	// ConditionLiveDataPurged (Tenant): database, Secrets and namespaces verified gone.
	ConditionLiveDataPurged = "LiveDataPurged"
	// ConditionBackupsExpired (Tenant): every repository verified gone.
	ConditionBackupsExpired = "BackupsExpired"
	// ConditionCertificateIssued (Tenant): the DestructionCertificate is written.
	ConditionCertificateIssued = "CertificateIssued"
	// ConditionVerified (DestructionCertificate): the signature checks with the published key.
	ConditionVerified = "Verified"
)

// Condition reasons, in CamelCase as metav1.Condition requires.
const (
	ReasonReconciled             = "Reconciled"
	ReasonProgressing            = "Progressing"
	ReasonNotFound               = "NotFound"
	ReasonJurisdictionNotAllowed = "JurisdictionNotAllowed"
	ReasonScheduleInvalid        = "ScheduleInvalid"
	ReasonUnreachable            = "Unreachable"
	ReasonAuthenticationFailed   = "AuthenticationFailed"
	ReasonTLSFailed              = "TLSFailed"
	ReasonSecretMissing          = "SecretMissing"
	// ReasonSecretNotBound: the credentials Secret does not name the object in its custos.io/credentials-for
	// annotation, so custos does not send it.
	ReasonSecretNotBound    = "SecretNotBound"
	ReasonNamespaceNotOwned = "NamespaceNotOwned"
	ReasonDatabaseNotOwned  = "DatabaseNotOwned"
	// ReasonDatabaseMissing (DatabaseReady): the tenant's database, whose OID is recorded, is gone. custos does not
	// make it again, takes no new snapshot and expires none until a person sets AnnotationAcceptDatabaseLoss.
	ReasonDatabaseMissing = "DatabaseMissing"
	// ReasonDatabaseNameReserved (DatabaseReady): the database name starts with a prefix custos keeps for itself.
	ReasonDatabaseNameReserved = "DatabaseNameReserved"
	ReasonLegalHoldActive      = "LegalHoldActive"
	ReasonLegalHoldExpired     = "LegalHoldExpired"
)

// Labels and annotations custos puts on what it creates.
const (
	// LabelTenant marks every object custos creates for a tenant with the tenant's name.
	LabelTenant = "custos.io/tenant"
	// AnnotationAcceptDatabaseLoss on a Tenant whose database is missing (reason DatabaseMissing) is how a person
	// decides: its value is the OID of the lost database (status.database.oid). custos then makes a new, empty
	// database, records its OID, and backups and expiry resume; until then the snapshots are kept whatever the
	// retention window says. A value naming another OID does nothing.
	AnnotationAcceptDatabaseLoss = "custos.io/accept-database-loss"
	// LabelManagedBy is the standard managed-by label; its value is "custos".
	LabelManagedBy = "app.kubernetes.io/managed-by"
	// AnnotationCredentialsFor is put on a credentials Secret in the manager's namespace by the platform team: a
	// comma-separated list of the objects allowed to use it, each Kind/name ("BackupLocation/offsite-fra",
	// "DatabaseServer/pg-ams-1"). custos sends a Secret's credentials only to a BackupLocation or DatabaseServer the
	// annotation names: naming a Secret in spec is not enough to get hold of it.
	AnnotationCredentialsFor = "custos.io/credentials-for"
)

// The audit trail's condition (Tenant).
const (
	// ConditionAuditTrail (Tenant): False when the tenant's audit trail cannot be appended to: a segment is
	// missing, the chain does not verify, or the write failed. The step that wanted to record is not counted as
	// done until its entry is written.
	ConditionAuditTrail = "AuditTrail"
	// ReasonAuditTrailBroken: a segment or entries are missing or altered; custos does not append (that would
	// fork the trail) until a person restores the missing segment.
	ReasonAuditTrailBroken = "AuditTrailBroken"
	// ReasonAuditAppendFailed: the entry could not be written (API error); retried.
	ReasonAuditAppendFailed = "AuditAppendFailed"
	// ReasonAuditTrailIntact: the latest append succeeded.
	ReasonAuditTrailIntact = "AuditTrailIntact"
)

// Condition reasons of a Tenant's provisioning (Ready, NamespacesReady, DatabaseReady).
const (
	// ReasonProvisioningFailed: a provisioning step failed outside Kubernetes (PostgreSQL, DNS); retried.
	ReasonProvisioningFailed = "ProvisioningFailed"
)

// Condition reasons of a Tenant's backups (BackupsHealthy) and of its backup tasks' events.
const (
	ReasonSnapshotsFresh = "SnapshotsFresh"
	ReasonNoSnapshotYet  = "NoSnapshotYet"
	ReasonSnapshotTooOld = "SnapshotTooOld"
	// ReasonRepositoryKeyMissing: a repository exists but its key is gone from the tenant's key Secret.
	ReasonRepositoryKeyMissing  = "RepositoryKeyMissing"
	ReasonTaskFailed            = "TaskFailed"
	ReasonRestoreDrillFailed    = "RestoreDrillFailed"
	ReasonRestoreDrillSucceeded = "RestoreDrillSucceeded"
	ReasonIntegrityCheckFailed  = "IntegrityCheckFailed"
	// ReasonObjectsTooLarge: the tenant's Kubernetes objects exceed the manager's --objects-limit.
	ReasonObjectsTooLarge = "ObjectsTooLarge"
	// ReasonBackupsNotActive: the tenant is not Active; no new snapshots, expiry goes on.
	ReasonBackupsNotActive = "NotActive"
	// ReasonBackupsDisposed: the exit destroys the repositories; no backup task runs any more.
	ReasonBackupsDisposed = "Disposed"
)

// Condition reasons of a Tenant's exit decisions: internal/lifecycle gives them, and they are the Ready
// condition's reason while the exit runs (with ReasonExportFailed, ReasonReceiptMismatch, ReasonAwaitingReceipt
// and ReasonLegalHoldActive).
const (
	ReasonContractRunning    = "ContractRunning"
	ReasonContractEnded      = "ContractEnded"
	ReasonAwaitingExport     = "AwaitingExport"
	ReasonExportAcknowledged = "ExportAcknowledged"
	ReasonAcknowledgeTimeout = "AcknowledgeTimeout"
	ReasonPurging            = "PurgingLiveData"
	ReasonShredding          = "ShreddingBackups"
	ReasonAwaitingExpiry     = "AwaitingBackupExpiry"
	ReasonCertifying         = "IssuingCertificate"
	ReasonDestroyed          = "Destroyed"
	ReasonGracePeriod        = "GracePeriod"
	ReasonExitCancelled      = "ExitCancelled"
	ReasonExportNotBound     = "ExportNotBound"
	ReasonAwaitingBagExpiry  = "AwaitingExportExpiry"
)

// Condition reasons of a Tenant's exit steps (Ready, LiveDataPurged, BackupsExpired, CertificateIssued).
const (
	ReasonExitStepFailed = "ExitStepFailed"
	// ReasonPolicyInvalid: the tenant's RetentionPolicy holds a duration the exit cannot read.
	ReasonPolicyInvalid = "PolicyInvalid"
	// ReasonNamespaceStuck (LiveDataPurged): a namespace being deleted does not go away.
	ReasonNamespaceStuck = "NamespaceStuck"
	// ReasonPurged (LiveDataPurged): database, role, Secrets and namespaces verified gone.
	ReasonPurged = "Purged"
	// ReasonRepositoriesDestroyed (BackupsExpired): every repository and its key verified gone.
	ReasonRepositoriesDestroyed = "RepositoriesDestroyed"
	// ReasonSigned (CertificateIssued): the certificate of destruction is signed and written.
	ReasonSigned = "Signed"
)

// Condition reasons of a DataExport.
const (
	ReasonExportDelivered = "Delivered"
	ReasonExportWriting   = "Writing"
	ReasonExportFailed    = "ExportFailed"
	// ReasonDatabaseNotReady: the tenant's database is not provisioned (or missing): nothing to export yet.
	ReasonDatabaseNotReady = "DatabaseNotReady"
	ReasonTenantNotFound   = "TenantNotFound"
	ReasonExportExpired    = "Expired"
	ReasonReceiptMatched   = "ReceiptMatched"
	ReasonAwaitingReceipt  = "AwaitingReceipt"
	// ReasonReceiptMismatch: the receipt's digest is not the bag's.
	ReasonReceiptMismatch = "ReceiptMismatch"
)

// Condition reasons of a BackupLocation.
const (
	ReasonReachable   = "Reachable"
	ReasonNotWritable = "NotWritable"
	// ReasonBucketMissing: an s3: location's bucket does not exist.
	ReasonBucketMissing = "BucketMissing"
)

// Condition reasons of a DatabaseServer (Ready), besides Unreachable, AuthenticationFailed, TLSFailed,
// SecretMissing and SecretNotBound.
const (
	// ReasonUnsupportedVersion: the server's major version is outside the range custos is tested against
	// (postgres.MinServerMajor to MaxServerMajor), or the manager's pg_dump is older than the server (or cannot be
	// run to tell).
	ReasonUnsupportedVersion = "UnsupportedVersion"
)

// Condition reasons of a Tenant that waits for its DatabaseServer.
const (
	// ReasonDatabaseServerUnsupported (Ready; DatabaseReady of a provisioned tenant): the tenant's DatabaseServer
	// is not Ready with reason UnsupportedVersion. A tenant not yet provisioned gets nothing on that server; a
	// provisioned one keeps its database and role as they are, unreconciled, until the server is supported again.
	ReasonDatabaseServerUnsupported = "DatabaseServerUnsupported"
)

// Condition reasons of a DestructionCertificate (Verified).
const (
	ReasonSignatureValid   = "SignatureValid"
	ReasonSignatureInvalid = "SignatureInvalid"
	ReasonInconsistent     = "Inconsistent"
)
