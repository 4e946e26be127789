package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// SSLMode is libpq's sslmode.
// +kubebuilder:validation:Enum=disable;require;verify-ca;verify-full
type SSLMode string

// DatabaseServerSpec is a PostgreSQL server custos creates tenant databases on.
// +kubebuilder:validation:XValidation:rule="!has(self.caSecretRef) || self.sslMode in ['verify-ca', 'verify-full']",message="caSecretRef is only used with sslMode verify-ca or verify-full"
// +kubebuilder:validation:XValidation:rule="!has(self.sslMode) || self.sslMode in ['verify-ca', 'verify-full'] || self.host == 'localhost' || self.host == '::1' || self.host.matches('^127[.][0-9]+[.][0-9]+[.][0-9]+$')",message="sslMode disable or require would send the admin password to whoever answers at host: use verify-full (or verify-ca), with caSecretRef for a private CA; disable and require are allowed only for a server on the loopback host (127.0.0.1, ::1 or localhost)"
type DatabaseServerSpec struct {
	// host name or IP address of the server.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9]([-A-Za-z0-9.:]*[A-Za-z0-9])?$`
	// +required
	Host string `json:"host"`

	// port of the server.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	// +kubebuilder:default=5432
	// +optional
	Port int32 `json:"port,omitempty"`

	// sslMode: verify-full (the default) checks the certificate and the host name; verify-ca only the
	// certificate; require encrypts without checking who answers, and disable does not encrypt: both are refused
	// unless host is the loopback host (127.0.0.1, ::1 or localhost), because the admin password is sent.
	// +kubebuilder:default=verify-full
	// +optional
	SSLMode SSLMode `json:"sslMode,omitempty"`

	// caSecretRef names a Secret in the manager's namespace whose key "ca.crt" is the CA bundle that signed the
	// server's certificate. Without it the system roots are used.
	// +optional
	CASecretRef *SecretReference `json:"caSecretRef,omitempty"`

	// adminCredentialsSecretRef names a Secret in the manager's namespace with keys "username" and "password" of
	// a role with CREATEDB and CREATEROLE. It is never logged and never copied into a tenant namespace. The Secret
	// must name this server in its annotation custos.io/credentials-for (DatabaseServer/<name>, a comma-separated
	// list when several objects share it); until it does, the server is not Ready (reason SecretNotBound) and
	// custos does not connect.
	// +required
	AdminCredentialsSecretRef SecretReference `json:"adminCredentialsSecretRef"`

	// maintenanceDatabase is the database custos connects to for administration.
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:default=postgres
	// +optional
	MaintenanceDatabase string `json:"maintenanceDatabase,omitempty"`

	// jurisdiction where the server runs and stores its data. Tenants may only use it under a RetentionPolicy
	// whose allowedJurisdictions admits it.
	// +required
	Jurisdiction Jurisdiction `json:"jurisdiction"`

	// region or site within the jurisdiction, for people.
	// +kubebuilder:validation:MaxLength=128
	// +optional
	Region string `json:"region,omitempty"`
}

// DatabaseServerStatus is what custos observed.
type DatabaseServerStatus struct {
	// observedGeneration is the spec generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// conditions: Ready (reachable, the admin credentials authenticate, and the version is supported; privileges
	// are not checked yet). A server whose major version is outside the range custos is tested against (15), or
	// that the manager's pg_dump is too old to dump, is not Ready with reason UnsupportedVersion.
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=32
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// version is the server's server_version (e.g. "15.18 (Debian 15.18-0+deb12u1)"), recorded whenever the
	// server answers, an unsupported one too.
	// +optional
	Version string `json:"version,omitempty"`

	// lastCheckedAt is when the server was last reached.
	// +optional
	LastCheckedAt *metav1.Time `json:"lastCheckedAt,omitempty"`

	// tenants is the number of tenant databases custos keeps on the server.
	// +optional
	Tenants int32 `json:"tenants,omitempty"`
}

// DatabaseServer is a PostgreSQL server on which custos creates one database and role per tenant.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=dbs,categories=custos
// +kubebuilder:printcolumn:name="Host",type=string,JSONPath=`.spec.host`
// +kubebuilder:printcolumn:name="Port",type=integer,JSONPath=`.spec.port`
// +kubebuilder:printcolumn:name="Jurisdiction",type=string,JSONPath=`.spec.jurisdiction`
// +kubebuilder:printcolumn:name="Version",type=string,JSONPath=`.status.version`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Message",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].message`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type DatabaseServer struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +required
	Spec DatabaseServerSpec `json:"spec"`
	// +optional
	Status DatabaseServerStatus `json:"status,omitempty"`
}

// DatabaseServerList is a list of DatabaseServers.
// +kubebuilder:object:root=true
type DatabaseServerList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []DatabaseServer `json:"items"`
}

func init() {
	SchemeBuilder.Register(&DatabaseServer{}, &DatabaseServerList{})
}
