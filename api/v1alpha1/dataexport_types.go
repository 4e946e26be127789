package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// DataExportSpec asks for a tenant's data in a common, structured, documented format: a BagIt bag holding a
// Frictionless Data Package (one CSV per table, the schema, checksums, a README).
// +kubebuilder:validation:XValidation:rule="self.tenantRef == oldSelf.tenantRef",message="tenantRef is immutable: create another DataExport for another tenant"
// +kubebuilder:validation:XValidation:rule="self.include == oldSelf.include && self.delivery == oldSelf.delivery",message="include and delivery are immutable once the export is requested; only receipt may be added"
// +kubebuilder:validation:XValidation:rule="!has(oldSelf.receipt) || has(self.receipt)",message="receipt cannot be removed once given (a wrong one may be corrected; an acknowledged export stays acknowledged)"
type DataExportSpec struct {
	// tenantRef names the Tenant whose data is exported.
	// +required
	TenantRef ObjectReference `json:"tenantRef"`

	// include says what goes into the bag.
	// +kubebuilder:default={database: true, kubernetesObjects: true}
	// +optional
	Include ExportInclude `json:"include,omitempty"`

	// delivery says where the bag is written.
	// +required
	Delivery ExportDelivery `json:"delivery"`

	// receipt is the sha256 the receiver computed over the bag it received. When it equals the bag's digest the
	// export is Acknowledged and the exit may go on; a mismatch is reported and destroys nothing.
	// +optional
	Receipt *ExportReceipt `json:"receipt,omitempty"`

	// expireAfterDelivery overrides the RetentionPolicy's export.expireAfterDelivery for this export.
	// +optional
	ExpireAfterDelivery *Duration `json:"expireAfterDelivery,omitempty"`
}

// ExportInclude selects the parts of the export.
// +kubebuilder:validation:XValidation:rule="self.database || self.kubernetesObjects",message="include at least one of database and kubernetesObjects"
type ExportInclude struct {
	// database: every table of the tenant's database as CSV, with its schema.
	// +kubebuilder:default=true
	// +optional
	Database bool `json:"database"`

	// kubernetesObjects: the tenant namespaces' objects as YAML (Secrets excluded).
	// +kubebuilder:default=true
	// +optional
	KubernetesObjects bool `json:"kubernetesObjects"`
}

// ExportDelivery is where the bag goes.
type ExportDelivery struct {
	// filesystem writes the bag as <path>/<export name>.tar on a volume mounted into the manager.
	// +required
	Filesystem FilesystemDelivery `json:"filesystem"`
}

// FilesystemDelivery is a directory on a volume mounted into the manager.
type FilesystemDelivery struct {
	// path of the directory, absolute.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=1024
	// +kubebuilder:validation:XValidation:rule="self.startsWith('/')",message="delivery.filesystem.path must be an absolute path"
	// +kubebuilder:validation:XValidation:rule="!self.matches('(^|/)\\\\.\\\\.(/|$)')",message="delivery.filesystem.path must not contain '..' segments"
	// +required
	Path string `json:"path"`
}

// ExportReceipt is the receiver's acknowledgement.
type ExportReceipt struct {
	// sha256 of the bag as received, lowercase hex (what `sha256sum <bag>.tar` prints).
	// +kubebuilder:validation:Pattern=`^[a-f0-9]{64}$`
	// +required
	SHA256 string `json:"sha256"`

	// receivedBy names who received it.
	// +kubebuilder:validation:MaxLength=256
	// +optional
	ReceivedBy string `json:"receivedBy,omitempty"`
}

// DataExportPhase is where an export is.
// +kubebuilder:validation:Enum=Pending;Running;Ready;Acknowledged;Expired;Failed
type DataExportPhase string

// DataExport phases.
const (
	ExportPending      DataExportPhase = "Pending"
	ExportRunning      DataExportPhase = "Running"
	ExportReady        DataExportPhase = "Ready"
	ExportAcknowledged DataExportPhase = "Acknowledged"
	ExportExpired      DataExportPhase = "Expired"
	ExportFailed       DataExportPhase = "Failed"
)

// ExportArtefact describes the bag.
type ExportArtefact struct {
	// location of the bag: its path on the export volume (the file custos export fetch copies).
	Location string `json:"location"`
	// sha256 of the bag file, lowercase hex.
	// +kubebuilder:validation:Pattern=`^[a-f0-9]{64}$`
	SHA256 string `json:"sha256"`
	// bytes of the bag file.
	Bytes int64 `json:"bytes"`
	// payloadOxum is BagIt's "<octets>.<files>" of the payload.
	// +optional
	PayloadOxum string `json:"payloadOxum,omitempty"`
	// files is the number of files in the bag's payload (data/): one CSV per table, datapackage.json,
	// schema.sql, objects and the README.
	// +optional
	Files int32 `json:"files,omitempty"`
}

// DataExportStatus is what custos did.
type DataExportStatus struct {
	// phase of the export.
	// +optional
	Phase DataExportPhase `json:"phase,omitempty"`
	// observedGeneration is the spec generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// conditions: Ready, Acknowledged, Expired.
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=32
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	// artefact is the bag, once written.
	// +optional
	Artefact *ExportArtefact `json:"artefact,omitempty"`
	// startedAt is when the export began.
	// +optional
	StartedAt *metav1.Time `json:"startedAt,omitempty"`
	// failedAttempts counts the attempts to write the bag that failed; at 3 the export is Failed.
	// +kubebuilder:validation:Minimum=0
	// +optional
	FailedAttempts int32 `json:"failedAttempts,omitempty"`
	// deliveredAt is when the bag was complete at its location.
	// +optional
	DeliveredAt *metav1.Time `json:"deliveredAt,omitempty"`
	// acknowledgedAt is when a matching receipt was seen.
	// +optional
	AcknowledgedAt *metav1.Time `json:"acknowledgedAt,omitempty"`
	// expiresAt is when the bag will be deleted.
	// +optional
	ExpiresAt *metav1.Time `json:"expiresAt,omitempty"`
	// expiredAt is when the bag was deleted.
	// +optional
	ExpiredAt *metav1.Time `json:"expiredAt,omitempty"`
}

// DataExport is one structured export of a tenant's data, delivered, acknowledged and later expired.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=dex,categories=custos
// +kubebuilder:printcolumn:name="Tenant",type=string,JSONPath=`.spec.tenantRef.name`
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="SHA256",type=string,JSONPath=`.status.artefact.sha256`,priority=1
// +kubebuilder:printcolumn:name="Bytes",type=integer,JSONPath=`.status.artefact.bytes`
// +kubebuilder:printcolumn:name="Expires",type=string,JSONPath=`.status.expiresAt`
// +kubebuilder:printcolumn:name="Message",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].message`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type DataExport struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +required
	Spec DataExportSpec `json:"spec"`
	// +optional
	Status DataExportStatus `json:"status,omitempty"`
}

// DataExportList is a list of DataExports.
// +kubebuilder:object:root=true
type DataExportList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []DataExport `json:"items"`
}

func init() {
	SchemeBuilder.Register(&DataExport{}, &DataExportList{})
}
