package local

import (
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// The schema's part of the security rules: who may be made a tenant's owner, how short a retention window may be,
// and where credentials may be sent. Each refusal is checked against the real API server with the message a person
// reads; the accepted cases next to them show the rule does not refuse more than it says.
var _ = Describe("CRD validation of the security rules by the real API server", Label("integration", "validation", "security"), func() {
	owner := func(kind, name string) func(*unstructured.Unstructured) {
		return set([]any{map[string]any{"kind": kind, "name": name}}, "spec", "owners")
	}
	restCreds := func(url string) func(*unstructured.Unstructured) {
		return all(set(url, "spec", "url"), set(map[string]any{"name": "offsite-credentials"}, "spec", "credentialsSecretRef"))
	}
	server := func(host, sslMode string) func(*unstructured.Unstructured) {
		return all(set(host, "spec", "host"), set(sslMode, "spec", "sslMode"), del("spec", "caSecretRef"))
	}

	DescribeTable("refuses",
		func(ctx SpecContext, c invalid) {
			u := sample(c.kind)
			c.mutate(u)
			expectRejected(k8s.Create(ctx, u), c.want)
		},
		// Tenant owners: a system: group or user would make every user (or anyone at all) admin in the namespaces.
		Entry("an owner Group system:authenticated", invalid{kind: "Tenant", mutate: owner("Group", "system:authenticated"),
			want: "an owner Group must not be a system: group"}),
		Entry("an owner Group system:unauthenticated", invalid{kind: "Tenant", mutate: owner("Group", "system:unauthenticated"),
			want: "every user in it would be admin in the tenant's namespaces"}),
		Entry("an owner Group system:serviceaccounts", invalid{kind: "Tenant", mutate: owner("Group", "system:serviceaccounts"),
			want: "an owner Group must not be a system: group"}),
		Entry("an owner Group system:masters", invalid{kind: "Tenant", mutate: owner("Group", "system:masters"),
			want: "an owner Group must not be a system: group"}),
		Entry("an owner User system:anonymous", invalid{kind: "Tenant", mutate: owner("User", "system:anonymous"),
			want: "an owner User must not be a system: user"}),
		Entry("an owner User that is a service account's name", invalid{kind: "Tenant", mutate: owner("User", "system:serviceaccount:kube-system:default"),
			want: "a service account with kind ServiceAccount"}),

		// keepWithin: at least a day.
		Entry("keepWithin 1s", invalid{kind: "RetentionPolicy", mutate: set("1s", "spec", "keepWithin"),
			want: "keepWithin must be at least 24h (1d)"}),
		Entry("keepWithin 90m (a typo for 90d)", invalid{kind: "RetentionPolicy", mutate: set("90m", "spec", "keepWithin"),
			want: "keepWithin must be at least 24h (1d)"}),
		Entry("keepWithin 23h59m59s", invalid{kind: "RetentionPolicy", mutate: set("23h59m59s", "spec", "keepWithin"),
			want: "keepWithin must be at least 24h (1d)"}),
		Entry("keepWithin past what a duration holds", invalid{kind: "RetentionPolicy", mutate: set("99999999999999d", "spec", "keepWithin"),
			want: "must be at most 106751d"}),
		Entry("acknowledgeTimeout past what a duration holds", invalid{kind: "RetentionPolicy", mutate: set("106751d24h", "spec", "export", "acknowledgeTimeout"),
			want: "must be at most 106751d"}),

		// Credentials only over TLS, except to the loopback host.
		Entry("rest-server credentials over plain http", invalid{kind: "BackupLocation", mutate: restCreds("rest:http://backup.example.eu:8000/custos"),
			want: "credentials are only sent over https"}),
		Entry("rest-server credentials over plain http to a host that starts like loopback", invalid{kind: "BackupLocation",
			mutate: restCreds("rest:http://127.0.0.1.attacker.example:8000/"), want: "credentials are only sent over https"}),
		Entry("rest-server credentials over plain http to localhost as a user name", invalid{kind: "BackupLocation",
			mutate: restCreds("rest:http://localhost.example.eu/"), want: "credentials are only sent over https"}),
		Entry("S3 keys over plain http", invalid{kind: "BackupLocation", mutate: restCreds("s3:http://minio.example.eu:9000/bucket"),
			want: "credentials are only sent over https"}),
		Entry("the admin password with sslMode disable to a remote server", invalid{kind: "DatabaseServer", mutate: server("pg.example.eu", "disable"),
			want: "sslMode disable or require would send the admin password to whoever answers"}),
		Entry("the admin password with sslMode require to a remote server", invalid{kind: "DatabaseServer", mutate: server("10.0.0.7", "require"),
			want: "disable and require are allowed only for a server on the loopback host"}),
	)

	DescribeTable("accepts",
		func(ctx SpecContext, kind string, mutate func(*unstructured.Unstructured)) {
			u := sample(kind)
			mutate(u)
			Expect(k8s.Create(ctx, u)).To(Succeed())
		},
		Entry("an owner Group of the tenant's own", "Tenant", owner("Group", "clinic-zuid:admins")),
		Entry("an owner User with system in the name", "Tenant", owner("User", "systemadmin@clinic.example")),
		Entry("a ServiceAccount owner", "Tenant", set([]any{map[string]any{"kind": "ServiceAccount", "name": "deployer", "namespace": "ci"}}, "spec", "owners")),
		Entry("keepWithin 24h", "RetentionPolicy", set("24h", "spec", "keepWithin")),
		Entry("keepWithin 1d", "RetentionPolicy", set("1d", "spec", "keepWithin")),
		Entry("keepWithin 23h60m", "RetentionPolicy", set("23h60m", "spec", "keepWithin")),
		Entry("keepWithin 30d", "RetentionPolicy", set("30d", "spec", "keepWithin")),
		Entry("keepWithin the longest duration", "RetentionPolicy", set("106751d23h47m16s", "spec", "keepWithin")),
		Entry("rest-server credentials over https", "BackupLocation", restCreds("rest:https://backup.example.eu:8000/custos")),
		Entry("rest-server credentials over http to 127.0.0.1", "BackupLocation", restCreds("rest:http://127.0.0.1:8000/")),
		Entry("rest-server credentials over http to localhost", "BackupLocation", restCreds("rest:http://localhost:8000/custos")),
		Entry("rest-server credentials over http to [::1]", "BackupLocation", restCreds("rest:http://[::1]:8000/")),
		Entry("S3 keys over http to 127.0.0.1", "BackupLocation", restCreds("s3:http://127.0.0.1:9000/bucket")),
		Entry("S3 keys over https by default", "BackupLocation", restCreds("s3:s3.eu-central-1.amazonaws.com/bucket")),
		Entry("a rest-server over http without credentials", "BackupLocation", set("rest:http://backup.example.eu:8000/", "spec", "url")),
		Entry("sslMode disable on 127.0.0.1", "DatabaseServer", server("127.0.0.1", "disable")),
		Entry("sslMode require on localhost", "DatabaseServer", server("localhost", "require")),
		Entry("sslMode verify-ca on a remote server", "DatabaseServer", server("pg.example.eu", "verify-ca")),
	)
})
