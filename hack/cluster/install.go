package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// install does what a platform engineer does on a new cluster: the manager's namespace under the restricted Pod
// Security Standard, a volume for exit exports (a static hostPath PersistentVolume, so a person on the node can
// read the bags as a data controller would fetch them), `helm install` of charts/custos with the image built
// here, and the platform's objects: the DatabaseServer, the primary and offsite BackupLocations, their CA and
// credentials Secrets, and a RetentionPolicy whose schedules run every minute so the suite's lifecycle takes
// minutes.
func install(ctx context.Context, e env) error {
	start := time.Now()
	exports := e.path("exports")
	if err := os.MkdirAll(exports, 0o750); err != nil {
		return err
	}
	if err := os.Chown(exports, 65532, 65532); err != nil { // the image's user; fsGroup does not apply to hostPath
		return err
	}
	ca, err := os.ReadFile(e.path("pki", "ca.crt"))
	if err != nil {
		return err
	}
	pw, err := pgPassword(e)
	if err != nil {
		return err
	}
	if err := apply(ctx, e, fmt.Sprintf(`apiVersion: v1
kind: Namespace
metadata:
  name: %[1]s
  labels:
    pod-security.kubernetes.io/enforce: restricted
    pod-security.kubernetes.io/warn: restricted
---
apiVersion: v1
kind: PersistentVolume
metadata:
  name: custos-exports
spec:
  capacity: {storage: 10Gi}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  storageClassName: custos-exports
  hostPath: {path: %[2]q, type: Directory}
`, managerNamespace, exports)); err != nil {
		return err
	}
	helm := exec.CommandContext(ctx, e.tool("helm"), "upgrade", "--install", "custos", filepath.Join(e.root, "charts", "custos"),
		"--kubeconfig", e.path("admin.kubeconfig"), "--namespace", managerNamespace, "--wait", "--timeout", "5m",
		"--set", "image.repository="+strings.Split(custosImage, ":")[0], "--set", "image.tag="+strings.Split(custosImage, ":")[1],
		"--set", "image.pullPolicy=Never", "--set", "processor=custos one-node cluster (hack/cluster)",
		"--set", "export.path=/var/lib/custos/exports", "--set", "export.persistence.enabled=true",
		"--set", "export.persistence.storageClassName=custos-exports", "--set", "logLevel=debug")
	if out, err := helm.CombinedOutput(); err != nil {
		return fmt.Errorf("helm install: %w: %s", err, out)
	}
	logf("custos installed with helm in namespace %s", managerNamespace)
	if err := apply(ctx, e, fmt.Sprintf(`apiVersion: v1
kind: Secret
metadata:
  name: platform-ca
  namespace: %[1]s
stringData:
  ca.crt: |
%[2]s
---
apiVersion: v1
kind: Secret
metadata:
  name: %[3]s-admin
  namespace: %[1]s
  annotations:
    custos.io/credentials-for: DatabaseServer/%[3]s
stringData:
  username: %[4]s
  password: %[5]s
---
apiVersion: custos.io/v1alpha1
kind: DatabaseServer
metadata:
  name: %[3]s
spec:
  host: %[6]q
  port: %[7]d
  sslMode: verify-full
  caSecretRef: {name: platform-ca}
  adminCredentialsSecretRef: {name: %[3]s-admin}
  maintenanceDatabase: postgres
  jurisdiction: NL
---
apiVersion: custos.io/v1alpha1
kind: BackupLocation
metadata:
  name: cluster-primary
spec:
  url: rest:https://%[6]s:%[8]d/primary
  caSecretRef: {name: platform-ca}
  jurisdiction: NL
---
apiVersion: custos.io/v1alpha1
kind: BackupLocation
metadata:
  name: cluster-offsite
spec:
  url: rest:https://%[6]s:%[8]d/offsite
  caSecretRef: {name: platform-ca}
  jurisdiction: DE
---
apiVersion: custos.io/v1alpha1
kind: RetentionPolicy
metadata:
  name: %[9]s
spec:
  primary: {name: cluster-primary}
  offsite: {name: cluster-offsite}
  schedule: {cron: "* * * * *", timeZone: UTC}
  copySchedule: {cron: "* * * * *", timeZone: UTC}
  expirySchedule: {cron: "* * * * *", timeZone: UTC}
  keepWithin: 90d
  maxSnapshotAge: 26h
  allowedJurisdictions: [EEA]
  # No grace period after contract.end, and the exit's bag lives a minute after its receipt (or after its
  # delivery without one: the suite fetches it within that minute): the suite's exit runs in minutes. A real
  # policy keeps the defaults (72h, and days for the bag).
  exitGracePeriod: 0s
  export: {expireAfterDelivery: 60s}
`, managerNamespace, indent(string(ca), "    "), databaseServerName, pgAdmin, pw, nodeIP, pgPort, restPort, policyName)); err != nil {
		return err
	}
	for _, obj := range []string{"databaseserver/" + databaseServerName, "backuplocation/cluster-primary", "backuplocation/cluster-offsite", "retentionpolicy/" + policyName} {
		if _, err := kubectl(ctx, e, "wait", "--for=condition=Ready", "--timeout=3m", obj); err != nil {
			out, _ := kubectl(ctx, e, "get", obj, "-o", "yaml")
			return fmt.Errorf("%s not Ready: %w\n%s", obj, err, out)
		}
	}
	logf("platform objects Ready; installed in %s", time.Since(start).Round(time.Second))
	return nil
}

func indent(s, prefix string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i := range lines {
		lines[i] = prefix + lines[i]
	}
	return strings.Join(lines, "\n")
}

func apply(ctx context.Context, e env, manifest string) error {
	cmd := exec.CommandContext(ctx, e.tool("kubectl"), "--kubeconfig", e.path("admin.kubeconfig"), "apply", "-f", "-")
	cmd.Stdin = strings.NewReader(manifest)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("kubectl apply: %w: %s", err, out)
	}
	return nil
}
