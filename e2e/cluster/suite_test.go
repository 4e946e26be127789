// Package cluster walks one tenant through the same lifecycle as `make demo` against a real cluster, the one
// KUBECONFIG points at, where custos is installed (charts/custos) and the platform team has set up a
// DatabaseServer and a RetentionPolicy: provisioning, the first snapshot and offsite copy, the contract's end, the
// export and its receipt, the purge, the disposal of the backups and the certificate of destruction, checked with
// the real custos CLI. Without KUBECONFIG every spec is skipped (so `make test` passes where there is no cluster).
// Run it with `make e2e-cluster` (or `make test-cluster` on the one-node cluster of hack/cluster); docs/guide/platform-engineers.md lists the environment variables.
package cluster

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	custosv1alpha1 "github.com/custos-io/custos/api/v1alpha1"
	"github.com/custos-io/custos/internal/testharness"
)

// settings are read from the environment; every one has a default.
type settings struct {
	kubeconfig     string
	namespace      string // the custos manager's namespace
	server, policy string // the platform's DatabaseServer and RetentionPolicy
	dataReturn     custosv1alpha1.DataReturn
	backups        custosv1alpha1.BackupDisposal
	exportDir      string // a local view of the export volume; empty: the receipt is written from status
	keep           bool   // keep the CLI's files (certificate, key, bag)

	contractEndAfter time.Duration
	provisionTimeout time.Duration
	backupTimeout    time.Duration
	exitTimeout      time.Duration
	disposalTimeout  time.Duration
}

var (
	cfg       settings
	k8s       client.Client
	custosCLI string // built from ./cmd/custos
	workDir   string
)

func TestCluster(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Cluster suite (a real cluster from KUBECONFIG, custos installed)", Label("cluster"))
}

func envOr(name, def string) string {
	if v := strings.TrimSpace(os.Getenv(name)); v != "" {
		return v
	}
	return def
}

func envDuration(name string, def time.Duration) time.Duration {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	Expect(err).NotTo(HaveOccurred(), "%s=%q is not a Go duration (such as 20m or 1h30m)", name, v)
	Expect(d).To(BeNumerically(">", 0), "%s must be positive", name)
	return d
}

const needs = `e2e/cluster needs a cluster: set KUBECONFIG to a kubeconfig for a cluster where custos is installed
(helm install custos charts/custos -n custos-system) and the platform has a Ready DatabaseServer and RetentionPolicy
(CUSTOS_E2E_DATABASESERVER, default pg-ams-1; CUSTOS_E2E_RETENTIONPOLICY, default ehealth-3-months).
See docs/guide/platform-engineers.md, "Checking an installation: make e2e-cluster".`

var _ = BeforeSuite(func(ctx SpecContext) {
	cfg.kubeconfig = strings.TrimSpace(os.Getenv("KUBECONFIG"))
	if cfg.kubeconfig == "" {
		Skip("KUBECONFIG is not set: skipping. " + needs)
	}
	cfg.namespace = envOr("CUSTOS_NAMESPACE", "custos-system")
	cfg.server = envOr("CUSTOS_E2E_DATABASESERVER", "pg-ams-1")
	cfg.policy = envOr("CUSTOS_E2E_RETENTIONPOLICY", "ehealth-3-months")
	cfg.dataReturn = custosv1alpha1.DataReturn(envOr("CUSTOS_E2E_DATA_RETURN", string(custosv1alpha1.DataReturnExport)))
	Expect(cfg.dataReturn).To(BeElementOf(custosv1alpha1.DataReturnExport, custosv1alpha1.DataReturnNone), "CUSTOS_E2E_DATA_RETURN must be Export or None")
	cfg.backups = custosv1alpha1.BackupDisposal(envOr("CUSTOS_E2E_BACKUPS", string(custosv1alpha1.BackupDisposalShred)))
	Expect(cfg.backups).To(BeElementOf(custosv1alpha1.BackupDisposalShred, custosv1alpha1.BackupDisposalExpire), "CUSTOS_E2E_BACKUPS must be Shred or Expire")
	cfg.exportDir = os.Getenv("CUSTOS_E2E_EXPORT_DIR")
	cfg.keep = os.Getenv("CUSTOS_E2E_KEEP") != ""
	cfg.contractEndAfter = envDuration("CUSTOS_E2E_CONTRACT_END_AFTER", 10*time.Minute)
	cfg.provisionTimeout = envDuration("CUSTOS_E2E_PROVISION_TIMEOUT", 5*time.Minute)
	cfg.backupTimeout = envDuration("CUSTOS_E2E_BACKUP_TIMEOUT", 15*time.Minute)
	cfg.exitTimeout = envDuration("CUSTOS_E2E_EXIT_TIMEOUT", 15*time.Minute)
	cfg.disposalTimeout = envDuration("CUSTOS_E2E_DISPOSAL_TIMEOUT", 15*time.Minute)
	if cfg.exportDir != "" {
		st, err := os.Stat(cfg.exportDir)
		Expect(err).NotTo(HaveOccurred(), "CUSTOS_E2E_EXPORT_DIR must be a directory: a local view of the volume the manager writes exports to")
		Expect(st.IsDir()).To(BeTrue(), "CUSTOS_E2E_EXPORT_DIR=%s is not a directory", cfg.exportDir)
	}

	By("connecting to the cluster in KUBECONFIG=" + cfg.kubeconfig)
	restCfg, err := clientcmd.BuildConfigFromFlags("", cfg.kubeconfig)
	Expect(err).NotTo(HaveOccurred(), "reading KUBECONFIG=%s", cfg.kubeconfig)
	restCfg.Timeout = 30 * time.Second
	scheme := runtime.NewScheme()
	Expect(clientgoscheme.AddToScheme(scheme)).To(Succeed())
	Expect(custosv1alpha1.AddToScheme(scheme)).To(Succeed())
	k8s, err = client.New(restCfg, client.Options{Scheme: scheme})
	Expect(err).NotTo(HaveOccurred())

	By("checking that custos is installed: its CRDs answer and its namespace " + cfg.namespace + " exists")
	Expect(k8s.List(ctx, &custosv1alpha1.TenantList{}, client.Limit(1))).To(Succeed(),
		"listing Tenants failed: are custos' CRDs installed (helm install custos charts/custos), and may this user list tenants.custos.io?")
	Expect(k8s.Get(ctx, client.ObjectKey{Name: cfg.namespace}, &corev1.Namespace{})).To(Succeed(),
		"the manager's namespace %s is not there: set CUSTOS_NAMESPACE to the namespace custos is installed in", cfg.namespace)

	By(fmt.Sprintf("checking the platform: DatabaseServer %s and RetentionPolicy %s exist and are Ready", cfg.server, cfg.policy))
	var server custosv1alpha1.DatabaseServer
	Expect(k8s.Get(ctx, client.ObjectKey{Name: cfg.server}, &server)).To(Succeed(),
		"DatabaseServer %s: set CUSTOS_E2E_DATABASESERVER to one of `kubectl get databaseservers`", cfg.server)
	expectReady(server.Status.Conditions, "DatabaseServer "+cfg.server)
	var policy custosv1alpha1.RetentionPolicy
	Expect(k8s.Get(ctx, client.ObjectKey{Name: cfg.policy}, &policy)).To(Succeed(),
		"RetentionPolicy %s: set CUSTOS_E2E_RETENTIONPOLICY to one of `kubectl get retentionpolicies`", cfg.policy)
	expectReady(policy.Status.Conditions, "RetentionPolicy "+cfg.policy)
	checkPolicyAllows(&policy)

	By("building the custos CLI from ./cmd/custos")
	root, err := testharness.RepoRoot()
	Expect(err).NotTo(HaveOccurred())
	binDir := GinkgoT().TempDir()
	custosCLI = filepath.Join(binDir, "custos")
	build := exec.CommandContext(ctx, "go", "build", "-o", custosCLI, "./cmd/custos")
	build.Dir = root
	build.Env = append(os.Environ(), "GOTOOLCHAIN=local", "GOFLAGS=-buildvcs=false")
	out, err := build.CombinedOutput()
	Expect(err).NotTo(HaveOccurred(), "go build ./cmd/custos:\n%s", out)

	if cfg.keep {
		workDir, err = os.MkdirTemp("", "custos-e2e-cluster-")
		Expect(err).NotTo(HaveOccurred())
		GinkgoWriter.Printf("CUSTOS_E2E_KEEP: the certificate, the public key and the bag stay in %s\n", workDir)
	} else {
		workDir = GinkgoT().TempDir()
	}
}, NodeTimeout(10*time.Minute))

// expectReady fails, with the condition's message, unless conditions hold Ready=True.
func expectReady(conds []metav1.Condition, what string) {
	c := meta.FindStatusCondition(conds, custosv1alpha1.ConditionReady)
	Expect(c).NotTo(BeNil(), "%s has no Ready condition yet: is the custos manager running in %s (kubectl -n %s get pods)?", what, cfg.namespace, cfg.namespace)
	Expect(string(c.Status)).To(Equal("True"), "%s is not Ready (%s: %s): fix it first (kubectl describe)", what, c.Reason, c.Message)
}

// checkPolicyAllows checks that the exit asked for can finish under the policy within the suite's timeouts.
func checkPolicyAllows(p *custosv1alpha1.RetentionPolicy) {
	if cfg.backups == custosv1alpha1.BackupDisposalExpire {
		keep, err := p.Spec.KeepWithin.Parse()
		Expect(err).NotTo(HaveOccurred(), "RetentionPolicy %s: keepWithin %q", p.Name, p.Spec.KeepWithin)
		Expect(keep).To(BeNumerically("<", cfg.disposalTimeout),
			"CUSTOS_E2E_BACKUPS=Expire waits for the policy's keepWithin (%s) after the newest snapshot, longer than CUSTOS_E2E_DISPOSAL_TIMEOUT (%s): use Shred (the default), or raise CUSTOS_E2E_DISPOSAL_TIMEOUT past it (keepWithin is at least 24h)", p.Spec.KeepWithin, cfg.disposalTimeout)
	}
	if cfg.dataReturn == custosv1alpha1.DataReturnExport {
		if p.Spec.Export.Delivery != nil {
			GinkgoWriter.Printf("RetentionPolicy %s delivers exports to %s\n", p.Name, p.Spec.Export.Delivery.Filesystem.Path)
		} else {
			GinkgoWriter.Printf("RetentionPolicy %s names no export.delivery: the manager's --export-dir (chart value export.path) must be set, or the export fails\n", p.Name)
		}
		if ack, err := p.Spec.Export.AcknowledgeTimeout.Parse(); err == nil && ack < time.Minute {
			GinkgoWriter.Printf("note: export.acknowledgeTimeout is %s: the exit may go on without the receipt\n", p.Spec.Export.AcknowledgeTimeout)
		}
	}
}

// run runs the custos CLI in the work directory with the suite's KUBECONFIG; it returns its standard output and,
// in the error, its standard error.
func run(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, custosCLI, args...)
	cmd.Dir = workDir
	cmd.Env = append(os.Environ(), "KUBECONFIG="+cfg.kubeconfig)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	GinkgoWriter.Printf("$ custos %s\n%s%s\n", strings.Join(args, " "), out, stderr.String())
	if err != nil {
		return string(out), fmt.Errorf("custos %s: %w\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return string(out), nil
}

func mustQuantity(s string) resource.Quantity { return resource.MustParse(s) }

// e2eTenant is a Tenant of this suite, not yet created: the platform's DatabaseServer and RetentionPolicy, one
// namespace with room for 20 pods, a contract that started an hour ago and has no end, exit None + Shred, and the
// label custos.io/e2e=cluster that says where it came from. purpose goes into its display name.
func e2eTenant(name, purpose string) *custosv1alpha1.Tenant {
	return &custosv1alpha1.Tenant{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"custos.io/e2e": "cluster"}},
		Spec: custosv1alpha1.TenantSpec{
			DisplayName:        "custos e2e/cluster " + purpose + " " + name,
			DataController:     custosv1alpha1.DataController{Name: "custos e2e", Contact: "whoever ran make test-cluster"},
			Contract:           custosv1alpha1.Contract{ID: "E2E-" + name, Start: metav1.NewTime(time.Now().Add(-time.Hour).Truncate(time.Second))},
			RetentionPolicyRef: custosv1alpha1.ObjectReference{Name: cfg.policy},
			Namespaces:         custosv1alpha1.TenantNamespaces{Count: ptr.To[int32](1)},
			Quota:              &custosv1alpha1.TenantQuota{Hard: corev1.ResourceList{corev1.ResourcePods: mustQuantity("20")}},
			Database:           custosv1alpha1.TenantDatabase{ServerRef: custosv1alpha1.ObjectReference{Name: cfg.server}},
			Exit:               custosv1alpha1.TenantExit{DataReturn: custosv1alpha1.DataReturnNone, Backups: custosv1alpha1.BackupDisposalShred},
		},
	}
}

// describe is what a timeout reports about a tenant: phase, conditions, the exit's step, backup errors.
func describe(t *custosv1alpha1.Tenant) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Tenant %s phase %q", t.Name, t.Status.Phase)
	for _, c := range t.Status.Conditions {
		fmt.Fprintf(&b, "; %s=%s %s: %s", c.Type, c.Status, c.Reason, c.Message)
	}
	if ex := t.Status.Exit; ex != nil && ex.Step != nil && ex.Step.LastError != "" {
		fmt.Fprintf(&b, "; exit step %s: %s", ex.Step.Action, ex.Step.LastError)
	}
	for _, lb := range t.Status.Backups {
		fmt.Fprintf(&b, "; backups at %s: %d snapshot(s), newest %v", lb.Location, lb.Snapshots, lb.Newest)
		if lb.LastError != "" {
			fmt.Fprintf(&b, ", error %s", lb.LastError)
		}
	}
	fmt.Fprintf(&b, "; %d task(s) running", len(t.Status.Tasks))
	return b.String()
}

func mustYAML(o any) []byte {
	GinkgoHelper()
	b, err := yaml.Marshal(o)
	Expect(err).NotTo(HaveOccurred())
	return b
}
