package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// SanitizationMethod is the NIST SP 800-88 category of a destruction.
// +kubebuilder:validation:Enum=Clear;Purge
type SanitizationMethod string

// DestructionCertificateSpec is a signed statement that a tenant's data was destroyed. The signed bytes are in
// envelope; the other fields repeat what it says so that kubectl can show it, and `custos verify` checks that they
// agree with the signed payload.
type DestructionCertificateSpec struct {
	// tenant that was destroyed. The Tenant object itself may be gone; the certificate outlives it.
	// +required
	Tenant CertifiedTenant `json:"tenant"`

	// contractID of the agreement that ended.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=128
	// +required
	ContractID string `json:"contractID"`

	// dataController is the customer the certificate is for.
	// +required
	DataController DataController `json:"dataController"`

	// issuedAt is when the certificate was signed.
	// +required
	IssuedAt metav1.Time `json:"issuedAt"`

	// methods used across all storage locations.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=2
	// +listType=set
	// +required
	Methods []SanitizationMethod `json:"methods"`

	// subjects are the digests the signed statement covers (export bag, inventory, evidence bundle).
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=16
	// +listType=atomic
	// +required
	Subjects []CertificateSubject `json:"subjects"`

	// envelope is the DSSE envelope: the in-toto Statement (predicateType https://custos.io/destruction/v1),
	// base64-encoded, and its Ed25519 signature(s).
	// +required
	Envelope DSSEEnvelope `json:"envelope"`
}

// CertifiedTenant identifies the destroyed tenant.
type CertifiedTenant struct {
	// name of the Tenant.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +required
	Name string `json:"name"`
	// uid of the Tenant object.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=64
	// +required
	UID string `json:"uid"`
	// displayName is the customer's name as the Tenant gave it (spec.displayName), so a reader of the
	// certificate knows whose data it is about.
	// +kubebuilder:validation:MaxLength=256
	// +optional
	DisplayName string `json:"displayName,omitempty"`
}

// CertificateSubject is one artefact the statement commits to by digest.
type CertificateSubject struct {
	// name of the artefact.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=512
	// +required
	Name string `json:"name"`
	// sha256 of the artefact, lowercase hex.
	// +kubebuilder:validation:Pattern=`^[a-f0-9]{64}$`
	// +required
	SHA256 string `json:"sha256"`
}

// DSSEEnvelope is a Dead Simple Signing Envelope (https://github.com/secure-systems-lab/dsse).
type DSSEEnvelope struct {
	// payloadType is the DSSE payload type: the payload is an in-toto Statement (JSON). It is part of what is
	// signed (DSSE's pre-authentication encoding), so it cannot be changed without breaking the signature.
	// +kubebuilder:validation:Enum="application/vnd.in-toto+json"
	// +required
	PayloadType string `json:"payloadType"`
	// payload, standard base64.
	// +kubebuilder:validation:MinLength=4
	// +kubebuilder:validation:MaxLength=1048576
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9+/]+=*$`
	// +required
	Payload string `json:"payload"`
	// signatures over the DSSE pre-authentication encoding of payloadType and payload.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=4
	// +listType=atomic
	// +required
	Signatures []DSSESignature `json:"signatures"`
}

// DSSESignature is one signature of a DSSE envelope.
type DSSESignature struct {
	// keyid identifies the key: sha256 of its public key, lowercase hex.
	// +kubebuilder:validation:Pattern=`^[a-f0-9]{64}$`
	// +required
	KeyID string `json:"keyid"`
	// sig is the Ed25519 signature, standard base64.
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9+/]+=*$`
	// +kubebuilder:validation:MaxLength=256
	// +required
	Sig string `json:"sig"`
}

// DestructionCertificateStatus is custos' own check of the certificate after it was written.
type DestructionCertificateStatus struct {
	// observedGeneration is the spec generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// conditions: Verified (the signature checks with the published key).
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=32
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// DestructionCertificate is the signed proof that a tenant's data was destroyed, verifiable offline with the
// published public key. Its spec is immutable.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=dcert,categories=custos
// +kubebuilder:printcolumn:name="Tenant",type=string,JSONPath=`.spec.tenant.name`
// +kubebuilder:printcolumn:name="Contract",type=string,JSONPath=`.spec.contractID`,priority=1
// +kubebuilder:printcolumn:name="Issued",type=date,JSONPath=`.spec.issuedAt`
// +kubebuilder:printcolumn:name="Methods",type=string,JSONPath=`.spec.methods`
// +kubebuilder:printcolumn:name="Verified",type=string,JSONPath=`.status.conditions[?(@.type=="Verified")].status`
// +kubebuilder:printcolumn:name="Message",type=string,JSONPath=`.status.conditions[?(@.type=="Verified")].message`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type DestructionCertificate struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is the certificate; it can never change once written.
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="a DestructionCertificate is immutable: issue a new certificate instead of editing this one"
	// +required
	Spec DestructionCertificateSpec `json:"spec"`
	// +optional
	Status DestructionCertificateStatus `json:"status,omitempty"`
}

// DestructionCertificateList is a list of DestructionCertificates.
// +kubebuilder:object:root=true
type DestructionCertificateList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []DestructionCertificate `json:"items"`
}

func init() {
	SchemeBuilder.Register(&DestructionCertificate{}, &DestructionCertificateList{})
}
