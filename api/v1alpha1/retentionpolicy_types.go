package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// RetentionPolicySpec is the backup and retention part of an agreement: when snapshots run, where they go, how long
// they live, how they are checked, and how long an export lives after delivery.
// +kubebuilder:validation:XValidation:rule="!has(self.offsite) || self.offsite.name != self.primary.name",message="offsite must name a different BackupLocation than primary: an offsite copy in the same place is no offsite copy"
type RetentionPolicySpec struct {
	// schedule of the daily snapshot into the primary location.
	// +kubebuilder:default={cron: "@daily", jitter: "6h", timeZone: "UTC"}
	// +optional
	Schedule Schedule `json:"schedule,omitempty"`

	// primary names the BackupLocation snapshots are taken into.
	// +required
	Primary ObjectReference `json:"primary"`

	// offsite names the BackupLocation the primary's snapshots are copied to (restic copy), each repository with a
	// key of its own. Required by most agreements; leave it out only where none asks for an offsite copy.
	// +optional
	Offsite *ObjectReference `json:"offsite,omitempty"`

	// copySchedule is when snapshots are copied offsite. Defaults to @daily with a 6h jitter.
	// +kubebuilder:default={cron: "@daily", jitter: "6h", timeZone: "UTC"}
	// +optional
	CopySchedule Schedule `json:"copySchedule,omitempty"`

	// keepWithin is how long each snapshot is kept, counted from the time it was taken, in every location: "90d"
	// for three months, "30d" for thirty days. Expiry runs on its own schedule and does not wait for new backups,
	// so a former tenant's last snapshot is gone keepWithin after it was taken (plus at most one expiry period).
	// At least 24h (1d): a shorter window is a typo ("1s", "90m" for "90d") that would expire every snapshot
	// within minutes; the shortest retention agreed in practice is 30d.
	// +kubebuilder:validation:XValidation:rule="self.matches('[0-9]{12}') || (self.matches('[0-9]+d') ? int(self.find('[0-9]+d').find('[0-9]+')) * 86400 : 0) + (self.matches('[0-9]+h') ? int(self.find('[0-9]+h').find('[0-9]+')) * 3600 : 0) + (self.matches('[0-9]+m') ? int(self.find('[0-9]+m').find('[0-9]+')) * 60 : 0) + (self.matches('[0-9]+s') ? int(self.find('[0-9]+s').find('[0-9]+')) : 0) >= 86400",message="keepWithin must be at least 24h (1d): a shorter window would expire every snapshot almost as soon as it is taken; write days, such as 30d or 90d"
	// +required
	KeepWithin Duration `json:"keepWithin"`

	// expirySchedule is when forget + prune run in each location, independently of backups.
	// +kubebuilder:default={cron: "@daily", timeZone: "UTC"}
	// +optional
	ExpirySchedule Schedule `json:"expirySchedule,omitempty"`

	// maxSnapshotAge: when a tenant's newest snapshot is older than this, its BackupsHealthy condition turns False.
	// +kubebuilder:default="26h"
	// +optional
	MaxSnapshotAge Duration `json:"maxSnapshotAge,omitempty"`

	// check verifies each repository's integrity (restic check --read-data-subset).
	// +kubebuilder:default={}
	// +optional
	Check RepositoryCheck `json:"check,omitempty"`

	// restoreDrill periodically restores the latest snapshot into a scratch database and compares it with what
	// was recorded at backup time.
	// +kubebuilder:default={}
	// +optional
	RestoreDrill RestoreDrill `json:"restoreDrill,omitempty"`

	// export governs the DataExports of tenants under this policy.
	// +kubebuilder:default={}
	// +optional
	Export ExportPolicy `json:"export,omitempty"`

	// exitGracePeriod is how long after a tenant's exit starts (the moment custos first sees contract.end reached,
	// even when that end lies further in the past) its live data and backups are still kept. The tenant is suspended
	// at once, and its export is written and can be acknowledged meanwhile; nothing is destroyed before the grace
	// period ends, and removing contract.end (or moving it into the future) during it returns the tenant to Active.
	// It guards against one careless edit of contract.end. At least 1h, written in hours or days ("72h", "3d"), or
	// exactly "0s" to turn the safeguard off (tests and demos).
	// +kubebuilder:default="72h"
	// +optional
	ExitGracePeriod GraceDuration `json:"exitGracePeriod,omitempty"`

	// allowedJurisdictions admits the places data may be stored or processed: every BackupLocation and
	// DatabaseServer a tenant under this policy uses must have its jurisdiction in this list, or nothing is stored.
	// Use EEA for the European Economic Area.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=64
	// +listType=set
	// +required
	AllowedJurisdictions []JurisdictionSelector `json:"allowedJurisdictions"`
}

// RepositoryCheck configures restic check.
type RepositoryCheck struct {
	// schedule of the check.
	// +kubebuilder:default={cron: "@weekly", jitter: "24h", timeZone: "UTC"}
	// +optional
	Schedule Schedule `json:"schedule,omitempty"`

	// readDataSubset is the part of the pack files read back and verified on each check: a percentage such as
	// "5%" or a fraction n/t such as "1/7".
	// +kubebuilder:validation:MaxLength=16
	// +kubebuilder:validation:XValidation:rule="self.matches('^(100|[1-9][0-9]?)(\\\\.[0-9]+)?%$') || self.matches('^[1-9][0-9]*/[1-9][0-9]*$')",message="readDataSubset must be a percentage between 1% and 100% such as 5% or 2.5%, or a fraction n/t such as 1/7"
	// +kubebuilder:default="5%"
	// +optional
	ReadDataSubset string `json:"readDataSubset,omitempty"`
}

// RestoreDrill configures restore drills.
type RestoreDrill struct {
	// enabled turns drills on. Agreements that promise tested restores need them on.
	// +kubebuilder:default=true
	// +optional
	Enabled *bool `json:"enabled,omitempty"`

	// schedule of the drill.
	// +kubebuilder:default={cron: "@monthly", jitter: "48h", timeZone: "UTC"}
	// +optional
	Schedule Schedule `json:"schedule,omitempty"`
}

// ExportPolicy governs exports.
type ExportPolicy struct {
	// expireAfterDelivery: the export bag is deleted this long after it was delivered (or acknowledged). One of
	// the agreements says "10 days after download": 10d.
	// +kubebuilder:default="10d"
	// +optional
	ExpireAfterDelivery Duration `json:"expireAfterDelivery,omitempty"`

	// acknowledgeTimeout: if the receiver has not acknowledged the export this long after it was delivered, the
	// exit goes on, and the certificate says the export was never acknowledged.
	// +kubebuilder:default="30d"
	// +optional
	AcknowledgeTimeout Duration `json:"acknowledgeTimeout,omitempty"`

	// delivery is where the exit's DataExport writes its bag; the manager's --export-dir when unset.
	// +optional
	Delivery *ExportDelivery `json:"delivery,omitempty"`
}

// RetentionPolicyStatus is what custos observed.
type RetentionPolicyStatus struct {
	// observedGeneration is the spec generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// conditions: Ready (references resolve, locations admitted by allowedJurisdictions, schedules parse).
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=32
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// tenants is the number of Tenants that use this policy.
	// +optional
	Tenants int32 `json:"tenants,omitempty"`
}

// RetentionPolicy says when a tenant's backups run, where they go and how long they live.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=rp,categories=custos
// +kubebuilder:printcolumn:name="Primary",type=string,JSONPath=`.spec.primary.name`
// +kubebuilder:printcolumn:name="Offsite",type=string,JSONPath=`.spec.offsite.name`
// +kubebuilder:printcolumn:name="Keep Within",type=string,JSONPath=`.spec.keepWithin`
// +kubebuilder:printcolumn:name="Tenants",type=integer,JSONPath=`.status.tenants`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Message",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].message`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type RetentionPolicy struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +required
	Spec RetentionPolicySpec `json:"spec"`
	// +optional
	Status RetentionPolicyStatus `json:"status,omitempty"`
}

// RetentionPolicyList is a list of RetentionPolicies.
// +kubebuilder:object:root=true
type RetentionPolicyList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []RetentionPolicy `json:"items"`
}

func init() {
	SchemeBuilder.Register(&RetentionPolicy{}, &RetentionPolicyList{})
}
