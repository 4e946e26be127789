package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TenantSpec is what a data-processing agreement with one customer says custos must keep.
type TenantSpec struct {
	// displayName is the customer's name as it appears on exports and on the certificate of destruction.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=256
	// +required
	DisplayName string `json:"displayName"`

	// dataController is the customer organisation that decides about the data (GDPR art. 4(7)); it is named on
	// exports and on the certificate of destruction.
	// +required
	DataController DataController `json:"dataController"`

	// contract is the data-processing agreement this tenant exists for. When now reaches contract.end the exit
	// starts: the tenant is suspended, its data returned or not as exit.dataReturn says, then destroyed.
	// +required
	Contract Contract `json:"contract"`

	// retentionPolicyRef names the RetentionPolicy that schedules this tenant's backups and sets how long they live.
	// +required
	RetentionPolicyRef ObjectReference `json:"retentionPolicyRef"`

	// namespaces the tenant's workloads run in. Each is labelled custos.io/tenant=<tenant name>, isolated by a
	// default-deny NetworkPolicy and bounded by the quota below. Defaults to one namespace named after the tenant.
	// +kubebuilder:default={count: 1}
	// +optional
	Namespaces TenantNamespaces `json:"namespaces,omitempty"`

	// quota is the ResourceQuota applied to each tenant namespace.
	// +optional
	Quota *TenantQuota `json:"quota,omitempty"`

	// limits are the LimitRange defaults and maxima for containers in each tenant namespace.
	// +optional
	Limits *TenantLimits `json:"limits,omitempty"`

	// owners are bound to the ClusterRole "admin" in each tenant namespace, and nowhere else. Kubernetes' own
	// system: users and groups (system:anonymous, system:authenticated, system:unauthenticated, …) are refused:
	// they would make every user, or anyone at all, admin there.
	// +kubebuilder:validation:MaxItems=32
	// +listType=atomic
	// +optional
	Owners []TenantOwner `json:"owners,omitempty"`

	// database is the tenant's own PostgreSQL database and role.
	// +required
	Database TenantDatabase `json:"database"`

	// exit says what happens to the data when the contract ends.
	// +kubebuilder:default={}
	// +optional
	Exit TenantExit `json:"exit,omitempty"`

	// legalHold, while set, freezes every destructive step of the exit (purge, shred, expiry of this tenant's
	// backups): a court order or investigation may require data to be kept past the contract. The controller
	// lifts it once legalHold.until has passed; CEL cannot compare with the current time, so that check is done by
	// the controller and shown in the LegalHold condition.
	// +optional
	LegalHold *LegalHold `json:"legalHold,omitempty"`
}

// DataController identifies the customer organisation.
type DataController struct {
	// name of the organisation, as in the agreement.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=256
	// +required
	Name string `json:"name"`

	// contact is who receives the export and, on request, the certificate of destruction (a person or a role).
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=256
	// +required
	Contact string `json:"contact"`

	// email address of the contact.
	// +kubebuilder:validation:MaxLength=254
	// +kubebuilder:validation:Pattern=`^[^@\s]+@[^@\s]+\.[^@\s]+$`
	// +optional
	Email string `json:"email,omitempty"`
}

// Contract is the data-processing agreement's identity and term.
// +kubebuilder:validation:XValidation:rule="!has(self.end) || self.end > self.start",message="contract.end must be after contract.start"
type Contract struct {
	// id of the agreement, as the parties refer to it; it becomes the export's External-Identifier.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=128
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9][A-Za-z0-9._/-]*$`
	// +required
	ID string `json:"id"`

	// start of the agreement.
	// +required
	Start metav1.Time `json:"start"`

	// end of the agreement. When now reaches it, the exit starts. Set it to end a contract; never delete a Tenant
	// directly (that is refused until the tenant is Destroyed).
	// +optional
	End *metav1.Time `json:"end,omitempty"`
}

// TenantNamespaces lists the tenant's namespaces by name, or asks for a number of them named <tenant>, <tenant>-2, ….
// +kubebuilder:validation:XValidation:rule="(has(oldSelf.names) ? (has(self.names) && oldSelf.names.all(n, n in self.names)) : true) && (has(oldSelf.count) ? (has(self.count) && self.count >= oldSelf.count) : true)",message="namespaces cannot be removed from a Tenant (their data would be orphaned): add namespaces, or end the contract to remove them all"
// +kubebuilder:validation:XValidation:rule="!(has(self.names) && has(self.count))",message="set either namespaces.names or namespaces.count, not both"
// +kubebuilder:validation:XValidation:rule="has(self.names) || has(self.count)",message="set namespaces.names or namespaces.count"
type TenantNamespaces struct {
	// names of the namespaces. custos creates them; it never adopts an existing namespace that does not already
	// carry this tenant's label.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:MaxLength=63
	// +kubebuilder:validation:items:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	// +listType=set
	// +optional
	Names []string `json:"names,omitempty"`

	// count of namespaces to create, named after the tenant.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=16
	// +optional
	Count *int32 `json:"count,omitempty"`
}

// TenantQuota becomes a ResourceQuota in each tenant namespace.
type TenantQuota struct {
	// hard limits, as in a ResourceQuota: requests.cpu, limits.memory, pods, persistentvolumeclaims, ….
	// +kubebuilder:validation:MinProperties=1
	// +required
	Hard corev1.ResourceList `json:"hard"`
}

// TenantLimits becomes a LimitRange for containers in each tenant namespace.
// +kubebuilder:validation:MinProperties=1
type TenantLimits struct {
	// default limits for a container that sets none.
	// +optional
	Default corev1.ResourceList `json:"default,omitempty"`
	// defaultRequest is the request for a container that sets none.
	// +optional
	DefaultRequest corev1.ResourceList `json:"defaultRequest,omitempty"`
	// max is the most any single container may ask for.
	// +optional
	Max corev1.ResourceList `json:"max,omitempty"`
}

// TenantOwner is a subject that administers the tenant's namespaces.
// +kubebuilder:validation:XValidation:rule="self.kind == 'ServiceAccount' ? has(self.__namespace__) : !has(self.__namespace__)",message="namespace is required for a ServiceAccount owner and not allowed for a User or Group"
// +kubebuilder:validation:XValidation:rule="!(self.kind == 'Group' && self.name.startsWith('system:'))",message="an owner Group must not be a system: group (such as system:authenticated, system:unauthenticated or system:serviceaccounts): every user in it would be admin in the tenant's namespaces; name the tenant's own group"
// +kubebuilder:validation:XValidation:rule="!(self.kind == 'User' && self.name.startsWith('system:'))",message="an owner User must not be a system: user (such as system:anonymous or a node or controller identity); name a person, or a service account with kind ServiceAccount"
type TenantOwner struct {
	// kind of subject.
	// +kubebuilder:validation:Enum=User;Group;ServiceAccount
	// +required
	Kind string `json:"kind"`
	// name of the user, group or service account.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +required
	Name string `json:"name"`
	// namespace of a ServiceAccount.
	// +kubebuilder:validation:MaxLength=63
	// +optional
	Namespace string `json:"namespace,omitempty"`
}

// TenantDatabase is the tenant's PostgreSQL database and its owning role.
// +kubebuilder:validation:XValidation:rule="has(self.name) == has(oldSelf.name) && (!has(self.name) || self.name == oldSelf.name)",message="database.name is immutable: the tenant's data lives in the database of that name"
// +kubebuilder:validation:XValidation:rule="self.serverRef == oldSelf.serverRef",message="database.serverRef is immutable: moving a tenant to another server is a migration, not an edit"
type TenantDatabase struct {
	// serverRef names the DatabaseServer the database lives on. Its jurisdiction must be admitted by the
	// RetentionPolicy's allowedJurisdictions.
	// +required
	ServerRef ObjectReference `json:"serverRef"`

	// name of the database and of its owning role. Defaults to "tenant_" followed by the tenant name with dashes
	// turned into underscores. custos never adopts a database or role it did not create for this tenant. Names
	// starting with pg_ or custos_ are reserved.
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z_][a-z0-9_]*$`
	// +kubebuilder:validation:XValidation:rule="!self.startsWith('pg_')",message="database.name must not start with pg_ (reserved by PostgreSQL)"
	// +kubebuilder:validation:XValidation:rule="!(self in ['postgres', 'template0', 'template1'])",message="database.name must not be a PostgreSQL system database"
	// +kubebuilder:validation:XValidation:rule="!self.startsWith('custos_')",message="database.name must not start with custos_ (reserved for custos' own databases and roles, such as restore-drill scratch databases)"
	// +optional
	Name string `json:"name,omitempty"`

	// extensions to create in the database, such as pgcrypto or citext. They must be available on the server.
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:MaxLength=63
	// +kubebuilder:validation:items:Pattern=`^[a-z_][a-z0-9_-]*$`
	// +listType=set
	// +optional
	Extensions []string `json:"extensions,omitempty"`

	// connectionLimit is the most concurrent connections the tenant's role may hold.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=10000
	// +kubebuilder:default=20
	// +optional
	ConnectionLimit int32 `json:"connectionLimit,omitempty"`

	// rotatePasswordAt: each time it is set to a new value, the role gets a new random password and every
	// credentials Secret is rewritten, as soon as that time has come.
	// +optional
	RotatePasswordAt *metav1.Time `json:"rotatePasswordAt,omitempty"`
}

// DataReturn is what the customer receives when the contract ends.
// +kubebuilder:validation:Enum=Export;None
type DataReturn string

const (
	// DataReturnExport delivers a DataExport and destroys nothing until it is acknowledged or acknowledgeTimeout passes.
	DataReturnExport DataReturn = "Export"
	// DataReturnNone destroys the data without returning it (the controller chose destruction).
	DataReturnNone DataReturn = "None"
)

// BackupDisposal is how a former tenant's backups disappear.
// +kubebuilder:validation:Enum=Expire;Shred
type BackupDisposal string

const (
	// BackupDisposalExpire takes no new snapshots and lets the retention window remove the old ones.
	BackupDisposalExpire BackupDisposal = "Expire"
	// BackupDisposalShred deletes every repository of the tenant at once and then its key (cryptographic erase).
	BackupDisposalShred BackupDisposal = "Shred"
)

// TenantExit is the customer's choice for the end of the contract.
type TenantExit struct {
	// dataReturn: Export returns the data as a DataExport before anything is destroyed; None destroys it without
	// returning it.
	// +kubebuilder:default=Export
	// +optional
	DataReturn DataReturn `json:"dataReturn,omitempty"`

	// backups: Expire lets the retention window remove them (gone by newest snapshot + keepWithin); Shred deletes
	// the repositories at once after the live data is purged.
	// +kubebuilder:default=Expire
	// +optional
	Backups BackupDisposal `json:"backups,omitempty"`
}

// LegalHold freezes destruction.
type LegalHold struct {
	// reason for the hold, such as a case number; shown in status and on the audit trail.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=1024
	// +required
	Reason string `json:"reason"`

	// until when the hold applies. Without it the hold lasts until it is removed. Whether it lies in the future is
	// checked by the controller (CEL has no clock).
	// +optional
	Until *metav1.Time `json:"until,omitempty"`
}

// TenantPhase is where a tenant is in its life.
// +kubebuilder:validation:Enum=Pending;Provisioning;Active;Terminating;Exporting;Purging;AwaitingBackupExpiry;Destroyed;Failed
type TenantPhase string

// Tenant phases, in the order a tenant passes through them.
const (
	TenantPending              TenantPhase = "Pending"
	TenantProvisioning         TenantPhase = "Provisioning"
	TenantActive               TenantPhase = "Active"
	TenantTerminating          TenantPhase = "Terminating"
	TenantExporting            TenantPhase = "Exporting"
	TenantPurging              TenantPhase = "Purging"
	TenantAwaitingBackupExpiry TenantPhase = "AwaitingBackupExpiry"
	TenantDestroyed            TenantPhase = "Destroyed"
	TenantFailed               TenantPhase = "Failed"
)

// ExitStarted reports whether the phase is one of the exit's (Terminating and after): the exit controller owns
// the tenant from there, and provisioning and new backups stop.
func (p TenantPhase) ExitStarted() bool {
	switch p {
	case TenantTerminating, TenantExporting, TenantPurging, TenantAwaitingBackupExpiry, TenantDestroyed:
		return true
	}
	return false
}

// TenantStatus is what custos observed and did.
type TenantStatus struct {
	// phase of the tenant's life.
	// +optional
	Phase TenantPhase `json:"phase,omitempty"`

	// observedGeneration is the spec generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// conditions: Ready, NamespacesReady, DatabaseReady, BackupsHealthy, LegalHold, ExportAcknowledged,
	// LiveDataPurged, BackupsExpired, CertificateIssued.
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=32
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// namespaces custos created for the tenant, with their UIDs (the certificate names them).
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=16
	// +optional
	Namespaces []NamespaceStatus `json:"namespaces,omitempty"`

	// database custos created for the tenant.
	// +optional
	Database *DatabaseStatus `json:"database,omitempty"`

	// backups per BackupLocation.
	// +listType=map
	// +listMapKey=location
	// +kubebuilder:validation:MaxItems=8
	// +optional
	Backups []LocationBackupStatus `json:"backups,omitempty"`

	// nextBackup is when the next snapshot is scheduled.
	// +optional
	NextBackup *metav1.Time `json:"nextBackup,omitempty"`

	// lastDrill is the result of the latest restore drill.
	// +optional
	LastDrill *RestoreDrillStatus `json:"lastDrill,omitempty"`

	// tasks are the backup tasks started and not yet finished. A task is written here before it starts, so a
	// manager that restarts finds it and runs it again (after clearing stale repository locks) instead of leaving
	// it running forever; its key makes sure one scheduled slot produces one result.
	// +listType=map
	// +listMapKey=key
	// +kubebuilder:validation:MaxItems=32
	// +optional
	Tasks []BackupTask `json:"tasks,omitempty"`

	// exit records the steps of the exit, once it started.
	// +optional
	Exit *TenantExitStatus `json:"exit,omitempty"`

	// auditHead is the sha256 of the latest entry of the tenant's hash-chained audit trail.
	// +kubebuilder:validation:Pattern=`^sha256:[a-f0-9]{64}$`
	// +optional
	AuditHead string `json:"auditHead,omitempty"`

	// auditLength is the seq of the entry auditHead names: a trail found shorter than this was cut.
	// +kubebuilder:validation:Minimum=0
	// +optional
	AuditLength int64 `json:"auditLength,omitempty"`

	// auditSegment is the ConfigMap (manager's namespace) that holds the head of the audit trail.
	// +kubebuilder:validation:MaxLength=253
	// +optional
	AuditSegment string `json:"auditSegment,omitempty"`
}

// NamespaceStatus is a namespace custos created for a tenant.
type NamespaceStatus struct {
	// name of the namespace.
	Name string `json:"name"`
	// uid of the namespace.
	// +optional
	UID string `json:"uid,omitempty"`
}

// DatabaseStatus is the tenant's database as custos created it.
type DatabaseStatus struct {
	// server is the DatabaseServer's name.
	Server string `json:"server"`
	// name of the database.
	Name string `json:"name"`
	// role that owns the database and that the tenant logs in as.
	Role string `json:"role"`
	// oid of the database, which proves after a purge that this very database is gone (a new one of the same name
	// would have another OID).
	// +optional
	OID int64 `json:"oid,omitempty"`
	// roleOID is the OID of the role. Once the OIDs are recorded, custos decides that the database and role of
	// that name are the tenant's by these OIDs alone, facts the tenant cannot change (the COMMENT custos writes on
	// both, which the tenant can change on its database, only decides the first adoption).
	// +optional
	RoleOID int64 `json:"roleOID,omitempty"`
	// passwordRotatedAt is when the role's password was last set.
	// +optional
	PasswordRotatedAt *metav1.Time `json:"passwordRotatedAt,omitempty"`
	// rotationHonoured is the value of spec.database.rotatePasswordAt the last rotation answered; a different
	// value that has passed asks for a new rotation.
	// +optional
	RotationHonoured *metav1.Time `json:"rotationHonoured,omitempty"`
}

// LocationBackupStatus summarises a tenant's repository at one BackupLocation.
type LocationBackupStatus struct {
	// location is the BackupLocation's name.
	Location string `json:"location"`
	// role of the location in the policy: Primary, Offsite, or Retired for a location the policy names no
	// longer (its repository is still expired, on the policy's expiry schedule, until it holds no snapshot; the
	// exit destroys it with the others).
	// +kubebuilder:validation:Enum=Primary;Offsite;Retired
	// +optional
	Role string `json:"role,omitempty"`
	// repositoryID is restic's id of the tenant's repository at this location.
	// +optional
	RepositoryID string `json:"repositoryID,omitempty"`
	// snapshots is the number of restic snapshots of this tenant in the repository after the latest task (a
	// slot makes two: the database dump and the objects).
	// +optional
	Snapshots int32 `json:"snapshots,omitempty"`
	// oldest snapshot's time.
	// +optional
	Oldest *metav1.Time `json:"oldest,omitempty"`
	// newest snapshot's time.
	// +optional
	Newest *metav1.Time `json:"newest,omitempty"`
	// goneBy is when the oldest snapshot leaves this location at the latest: its time plus keepWithin, plus one
	// expiry run.
	// +optional
	GoneBy *metav1.Time `json:"goneBy,omitempty"`
	// listedAt is when snapshots, oldest, newest and goneBy were read from the repository. Tasks at two locations
	// can overlap (a copy lists the primary while the primary's expiry forgets): figures a task read before
	// these are older than them and are not applied.
	// +optional
	ListedAt *metav1.MicroTime `json:"listedAt,omitempty"`
	// lastCopy is when a snapshot was last copied here (offsite locations).
	// +optional
	LastCopy *metav1.Time `json:"lastCopy,omitempty"`
	// nextRun is when the next job for this location is due.
	// +optional
	NextRun *metav1.Time `json:"nextRun,omitempty"`
	// lastSnapshotSlot is the latest snapshot slot answered here (primary), successfully or not.
	// +optional
	LastSnapshotSlot *metav1.Time `json:"lastSnapshotSlot,omitempty"`
	// lastCopySlot is the latest copy slot answered here (offsite).
	// +optional
	LastCopySlot *metav1.Time `json:"lastCopySlot,omitempty"`
	// lastExpiry is the latest expiry slot answered here.
	// +optional
	LastExpiry *metav1.Time `json:"lastExpiry,omitempty"`
	// expiredSnapshots is how many snapshots the latest expiry run removed.
	// +optional
	ExpiredSnapshots int32 `json:"expiredSnapshots,omitempty"`
	// lastCheck is the latest integrity check slot answered here.
	// +optional
	LastCheck *metav1.Time `json:"lastCheck,omitempty"`
	// lastCheckSucceeded is the result of that check.
	// +optional
	LastCheckSucceeded *bool `json:"lastCheckSucceeded,omitempty"`
	// lastError is the latest failure at this location, cleared by the next success.
	// +kubebuilder:validation:MaxLength=4096
	// +optional
	LastError string `json:"lastError,omitempty"`
	// lastErrorReason classifies lastError in one word, and is the BackupsHealthy reason it causes when no
	// snapshot is too old: Unreachable, AuthenticationFailed, TLSFailed, NotWritable, SecretMissing,
	// JurisdictionNotAllowed (the location), WrongRepositoryPassword, RepositoryLocked, RepositoryNotFound,
	// PartialBackup, ResticFailed (restic's exit code), IntegrityCheckFailed, or TaskFailed (anything else).
	// Cleared with lastError.
	// +kubebuilder:validation:MaxLength=64
	// +optional
	LastErrorReason string `json:"lastErrorReason,omitempty"`
}

// TaskKind is a kind of backup work.
// +kubebuilder:validation:Enum=Snapshot;Copy;Expiry;Check;Drill
type TaskKind string

// Kinds of backup work.
const (
	TaskSnapshot TaskKind = "Snapshot"
	TaskCopy     TaskKind = "Copy"
	TaskExpiry   TaskKind = "Expiry"
	TaskCheck    TaskKind = "Check"
	TaskDrill    TaskKind = "Drill"
)

// Kinds of work the runner carries that are never in status.tasks (outside the enum above): the exit's destruction
// of a repository, and the writing of a DataExport's bag. One vocabulary for retention, the runner and the executor.
const (
	TaskShred  TaskKind = "Shred"
	TaskExport TaskKind = "Export"
)

// BackupTask is a unit of backup work for one scheduled slot.
type BackupTask struct {
	// key identifies the task: kind/location/slot, the same for every attempt.
	// +kubebuilder:validation:MaxLength=253
	Key string `json:"key"`
	// kind of work.
	Kind TaskKind `json:"kind"`
	// location is the BackupLocation the task works on.
	// +optional
	Location string `json:"location,omitempty"`
	// slot is the scheduled time the task answers.
	Slot metav1.Time `json:"slot"`
	// startedAt is when the latest attempt started.
	// +optional
	StartedAt *metav1.Time `json:"startedAt,omitempty"`
	// attempts is the number of attempts started for this slot, including a running one; a task is given up
	// after 3.
	// +optional
	Attempts int32 `json:"attempts,omitempty"`
	// notBefore delays the next attempt after a failure.
	// +optional
	NotBefore *metav1.Time `json:"notBefore,omitempty"`
	// lastError is the latest attempt's failure.
	// +kubebuilder:validation:MaxLength=4096
	// +optional
	LastError string `json:"lastError,omitempty"`
}

// RestoreDrillStatus is the result of a restore drill.
type RestoreDrillStatus struct {
	// time the drill started.
	Time metav1.Time `json:"time"`
	// slot is the scheduled drill this result answers.
	// +optional
	Slot *metav1.Time `json:"slot,omitempty"`
	// tables is the number of tables whose row count and checksum were compared.
	// +optional
	Tables int32 `json:"tables,omitempty"`
	// snapshot is the restic id of the database snapshot that was restored.
	// +optional
	Snapshot string `json:"snapshot,omitempty"`
	// succeeded is true when every table's row count and checksum matched what was recorded at backup time.
	Succeeded bool `json:"succeeded"`
	// duration of the restore: the measured recovery time.
	// +optional
	Duration *metav1.Duration `json:"duration,omitempty"`
	// message explains a failure.
	// +kubebuilder:validation:MaxLength=4096
	// +optional
	Message string `json:"message,omitempty"`
}

// TenantExitStatus records the exit's steps.
type TenantExitStatus struct {
	// endObservedAt is when custos first saw the contract ended (now ≥ contract.end): the exit's grace period runs
	// from here, also when contract.end lies further in the past.
	// +optional
	EndObservedAt *metav1.Time `json:"endObservedAt,omitempty"`
	// destructionNotBefore is the end of the grace period (endObservedAt + the RetentionPolicy's
	// exitGracePeriod): no live data or backup is destroyed before it. Until the live data is purged, removing
	// contract.end or moving it into the future returns the tenant to Active.
	// +optional
	DestructionNotBefore *metav1.Time `json:"destructionNotBefore,omitempty"`
	// terminatedAt is when the tenant was suspended.
	// +optional
	TerminatedAt *metav1.Time `json:"terminatedAt,omitempty"`
	// exportRef names the DataExport made for this exit, by name and UID: only that object counts as the exit's
	// export (an earlier tenant's export of the same name, or one made by hand, never does).
	// +optional
	ExportRef *ExitExportReference `json:"exportRef,omitempty"`
	// exportAcknowledgedAt is when the receiver's digest matched, or when acknowledgeTimeout passed (see
	// exportAcknowledgeTimedOut).
	// +optional
	ExportAcknowledgedAt *metav1.Time `json:"exportAcknowledgedAt,omitempty"`
	// exportAcknowledgeTimedOut is true when the exit went on without a receipt because acknowledgeTimeout passed.
	// +optional
	ExportAcknowledgeTimedOut bool `json:"exportAcknowledgeTimedOut,omitempty"`
	// liveDataPurgedAt is when the database, Secrets and namespaces were verified gone.
	// +optional
	LiveDataPurgedAt *metav1.Time `json:"liveDataPurgedAt,omitempty"`
	// backupsGoneBy is the date by which the last backup copy in every location is gone.
	// +optional
	BackupsGoneBy *metav1.Time `json:"backupsGoneBy,omitempty"`
	// destroyedAt is when every location was verified empty.
	// +optional
	DestroyedAt *metav1.Time `json:"destroyedAt,omitempty"`
	// certificateRef names the DestructionCertificate.
	// +optional
	CertificateRef *ObjectReference `json:"certificateRef,omitempty"`
	// disposalStartedAt is when the destruction of the backup repositories began; from then on no backup task
	// runs for the tenant.
	// +optional
	DisposalStartedAt *metav1.Time `json:"disposalStartedAt,omitempty"`
	// step is the exit step being carried out, recorded before it starts so that a restarted manager resumes it.
	// +optional
	Step *ExitStep `json:"step,omitempty"`
	// destroyed lists every storage location verified gone, with how and when: what the certificate states.
	// +listType=map
	// +listMapKey=kind
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=64
	// +optional
	Destroyed []DestroyedLocation `json:"destroyed,omitempty"`

	// shredIntents records, before each repository's Shred task is started, which repository it is about to
	// destroy (as the backups last saw it). A manager that restarts after the Shred ran but before its outcome
	// was written still knows what was destroyed, and the certificate names that repository instead of saying
	// there was none.
	// +listType=map
	// +listMapKey=location
	// +kubebuilder:validation:MaxItems=8
	// +optional
	ShredIntents []ShredIntent `json:"shredIntents,omitempty"`
}

// ShredIntent is a repository the exit is about to destroy, recorded before the act.
type ShredIntent struct {
	// location is the BackupLocation's name.
	// +kubebuilder:validation:MaxLength=253
	Location string `json:"location"`
	// repositoryID is restic's id of the tenant's repository there, as the latest backup task saw it; empty when
	// no backup ever reached the location.
	// +kubebuilder:validation:MaxLength=128
	// +optional
	RepositoryID string `json:"repositoryID,omitempty"`
	// snapshots is the number of snapshots the latest backup task saw there.
	// +optional
	Snapshots int32 `json:"snapshots,omitempty"`
	// recordedAt is when the intent was written, before the Shred task started.
	RecordedAt metav1.Time `json:"recordedAt"`
}

// ExitExportReference names the exit's DataExport.
type ExitExportReference struct {
	// name of the DataExport.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
	// uid of the DataExport the exit created; an object of the same name with another UID is not the exit's.
	// +kubebuilder:validation:MaxLength=64
	// +optional
	UID string `json:"uid,omitempty"`
	// bag is the path of the exit's bag on the export volume, once written: the certificate of destruction is
	// issued only once this file is verified gone.
	// +kubebuilder:validation:MaxLength=2048
	// +optional
	Bag string `json:"bag,omitempty"`
}

// ExitStep is a step of the exit in progress.
type ExitStep struct {
	// action being carried out: Suspend, RequestExport, Purge, DisposeBackups, IssueCertificate, CancelExit.
	// +kubebuilder:validation:MaxLength=64
	Action string `json:"action"`
	// startedAt is when it was first started.
	StartedAt metav1.Time `json:"startedAt"`
	// attempts is the number of times the step was started, counting restarts of the manager.
	// +optional
	Attempts int32 `json:"attempts,omitempty"`
	// lastError of the latest attempt.
	// +kubebuilder:validation:MaxLength=4096
	// +optional
	LastError string `json:"lastError,omitempty"`
}

// DestroyedLocationKind is what kind of storage a destroyed location was.
// +kubebuilder:validation:Enum=Database;Role;Secret;Namespace;Repository
type DestroyedLocationKind string

// Kinds of destroyed locations.
const (
	DestroyedDatabase   DestroyedLocationKind = "Database"
	DestroyedRole       DestroyedLocationKind = "Role"
	DestroyedSecret     DestroyedLocationKind = "Secret"
	DestroyedNamespace  DestroyedLocationKind = "Namespace"
	DestroyedRepository DestroyedLocationKind = "Repository"
)

// DestroyedLocation is one storage location of the tenant's data, verified gone.
type DestroyedLocation struct {
	// kind of location.
	Kind DestroyedLocationKind `json:"kind"`
	// name of the location: database name, namespace, Secret namespace/name, BackupLocation name.
	// +kubebuilder:validation:MaxLength=512
	Name string `json:"name"`
	// identifier that pins it down: database OID, namespace UID, restic repository id and URL.
	// +kubebuilder:validation:MaxLength=1024
	// +optional
	Identifier string `json:"identifier,omitempty"`
	// jurisdiction where the location was.
	// +kubebuilder:validation:MaxLength=64
	// +optional
	Jurisdiction string `json:"jurisdiction,omitempty"`
	// method is the NIST SP 800-88 category: Clear or Purge.
	Method SanitizationMethod `json:"method"`
	// technique says in words what was done to the data, e.g. "sessions ended; DROP DATABASE … WITH (FORCE)"
	// for a database, or how a backup repository's snapshots, objects and key were removed.
	// +kubebuilder:validation:MaxLength=1024
	Technique string `json:"technique"`
	// tool and its version.
	// +kubebuilder:validation:MaxLength=256
	// +optional
	Tool string `json:"tool,omitempty"`
	// startedAt is when the destruction of this location started.
	StartedAt metav1.Time `json:"startedAt"`
	// completedAt is when it was verified complete.
	CompletedAt metav1.Time `json:"completedAt"`
	// verification says how absence was checked and what was seen.
	// +kubebuilder:validation:MaxLength=1024
	Verification string `json:"verification"`
}

// Tenant is one customer of the processor: isolated namespaces, a PostgreSQL database of its own, backups kept as
// its agreement says, and an exit that returns or destroys its data with proof.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=ctnt,categories=custos
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Backups",type=string,JSONPath=`.status.conditions[?(@.type=="BackupsHealthy")].reason`
// +kubebuilder:printcolumn:name="Last Snapshot",type=date,JSONPath=`.status.backups[?(@.role=="Primary")].newest`
// +kubebuilder:printcolumn:name="Contract End",type=string,JSONPath=`.spec.contract.end`
// +kubebuilder:printcolumn:name="Policy",type=string,JSONPath=`.spec.retentionPolicyRef.name`,priority=1
// +kubebuilder:printcolumn:name="Offsite Newest",type=date,JSONPath=`.status.backups[?(@.role=="Offsite")].newest`,priority=1
// +kubebuilder:printcolumn:name="Next Backup",type=string,JSONPath=`.status.nextBackup`,priority=1
// +kubebuilder:printcolumn:name="Destruction Not Before",type=string,JSONPath=`.status.exit.destructionNotBefore`,priority=1
// +kubebuilder:printcolumn:name="Backups Gone By",type=string,JSONPath=`.status.exit.backupsGoneBy`,priority=1
// +kubebuilder:printcolumn:name="Database",type=string,JSONPath=`.status.database.name`,priority=1
// +kubebuilder:printcolumn:name="Message",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].message`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:validation:XValidation:rule="self.metadata.name.size() <= 48",message="a Tenant name must be at most 48 characters, so that its namespaces and its PostgreSQL database and role names (at most 63 bytes) can be derived from it"
// +kubebuilder:validation:XValidation:rule="self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')",message="a Tenant name must start with a letter and contain only lowercase letters, digits and dashes, so that it is a valid namespace and PostgreSQL name"
type Tenant struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +required
	Spec TenantSpec `json:"spec"`
	// +optional
	Status TenantStatus `json:"status,omitempty"`
}

// TenantList is a list of Tenants.
// +kubebuilder:object:root=true
type TenantList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Tenant `json:"items"`
}

func init() {
	SchemeBuilder.Register(&Tenant{}, &TenantList{})
}
