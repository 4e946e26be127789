package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// BackupLocationSpec is a place restic repositories are kept.
// +kubebuilder:validation:XValidation:rule="!has(self.credentialsSecretRef) || !(self.url.startsWith('rest:http://') || self.url.startsWith('s3:http://')) || self.url.matches('^(rest|s3):http://(localhost|127[.][0-9]+[.][0-9]+[.][0-9]+|[[]::1[]])(:[0-9]+)?(/|$)')",message="credentials are only sent over https: use rest:https:// or s3:https:// (with caSecretRef for a private CA); plain http with credentialsSecretRef is allowed only to the loopback host (127.0.0.1, [::1] or localhost)"
type BackupLocationSpec struct {
	// url is the base under which custos keeps one restic repository per tenant (<url>/<tenant>-<uid prefix>):
	// an absolute local path (/var/backups/custos), a rest-server URL (rest:https://host:8000/custos) or an S3
	// URL (s3:https://host/bucket/prefix). Immutable: repositories live there.
	// +kubebuilder:validation:MinLength=2
	// +kubebuilder:validation:MaxLength=1024
	// +kubebuilder:validation:XValidation:rule="self.startsWith('/') || self.startsWith('rest:http://') || self.startsWith('rest:https://') || self.startsWith('s3:')",message="url must be an absolute path (/…), a rest-server URL (rest:http://… or rest:https://…) or an S3 URL (s3:…)"
	// +kubebuilder:validation:XValidation:rule="!self.matches('(^|/)\\\\.\\\\.(/|$)')",message="url must not contain '..' path segments"
	// +kubebuilder:validation:XValidation:rule="!self.contains('@')",message="url must not contain credentials; put them in the Secret named by credentialsSecretRef"
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="url is immutable: create a new BackupLocation and point the RetentionPolicy at it"
	// +required
	URL string `json:"url"`

	// credentialsSecretRef names a Secret in the manager's namespace with what the backend needs: for rest-server
	// the keys "username" and "password"; for S3 "AWS_ACCESS_KEY_ID" and "AWS_SECRET_ACCESS_KEY". Repository
	// passwords are not kept here: each tenant's repository has its own random key. The Secret must name this
	// location in its annotation custos.io/credentials-for (BackupLocation/<name>, a comma-separated list when
	// several objects share it); until it does, the location is not Ready (reason SecretNotBound) and custos sends
	// nothing. Credentials go only over https (or plain http to the loopback host, for a local rest-server).
	// +optional
	CredentialsSecretRef *SecretReference `json:"credentialsSecretRef,omitempty"`

	// caSecretRef names a Secret in the manager's namespace whose key "ca.crt" is the CA bundle for an https URL.
	// +optional
	CASecretRef *SecretReference `json:"caSecretRef,omitempty"`

	// jurisdiction where the data is stored. A RetentionPolicy only uses the location when its
	// allowedJurisdictions admits it.
	// +required
	Jurisdiction Jurisdiction `json:"jurisdiction"`

	// region or site within the jurisdiction, for people (for example "Frankfurt" or "Amsterdam-2").
	// +kubebuilder:validation:MaxLength=128
	// +optional
	Region string `json:"region,omitempty"`
}

// BackupLocationStatus is what custos observed.
type BackupLocationStatus struct {
	// observedGeneration is the spec generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// conditions: Ready (the base is reachable and writable).
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=32
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// lastCheckedAt is when reachability was last checked.
	// +optional
	LastCheckedAt *metav1.Time `json:"lastCheckedAt,omitempty"`

	// repositories is the number of tenant repositories at this location.
	// +optional
	Repositories int32 `json:"repositories,omitempty"`
}

// BackupLocation is a place where restic repositories are kept, with the jurisdiction it is in.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=bl,categories=custos
// +kubebuilder:printcolumn:name="URL",type=string,JSONPath=`.spec.url`
// +kubebuilder:printcolumn:name="Jurisdiction",type=string,JSONPath=`.spec.jurisdiction`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Last Checked",type=date,JSONPath=`.status.lastCheckedAt`
// +kubebuilder:printcolumn:name="Repositories",type=integer,JSONPath=`.status.repositories`,priority=1
// +kubebuilder:printcolumn:name="Message",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].message`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type BackupLocation struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +required
	Spec BackupLocationSpec `json:"spec"`
	// +optional
	Status BackupLocationStatus `json:"status,omitempty"`
}

// BackupLocationList is a list of BackupLocations.
// +kubebuilder:object:root=true
type BackupLocationList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []BackupLocation `json:"items"`
}

func init() {
	SchemeBuilder.Register(&BackupLocation{}, &BackupLocationList{})
}
