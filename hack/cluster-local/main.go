// Command cluster-local runs e2e/cluster (make e2e-cluster) against a stand-in for a cluster on this machine:
// the harness's kube-apiserver and etcd with custos' CRDs and admission policy, a throwaway PostgreSQL, a
// directory and a rest-server as backup locations, the custos manager in this process and, as in make demo, a
// stand-in for the namespace controller (envtest runs none). It sets up the platform (DatabaseServer
// e2e-pg, RetentionPolicy e2e-every-minute with every schedule at every minute), writes a kubeconfig, runs
// `go tool ginkgo -v --label-filter=cluster ./e2e/cluster` with KUBECONFIG and the CUSTOS_E2E_* variables
// pointing at it, and stops everything. It proves the suite against a live API server; it is no substitute for
// running make e2e-cluster against a real cluster (make test-cluster builds one on this machine) (no kubelet, no network policy enforcement, no pods).
//
//	go run ./hack/cluster-local [-keep] [-fetch=false] [ginkgo flags ...]
//
// CUSTOS_E2E_DATA_RETURN, CUSTOS_E2E_BACKUPS and the timeouts pass through to the suite; the contract ends 3
// minutes after the tenant is created unless CUSTOS_E2E_CONTRACT_END_AFTER says otherwise.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	custosv1alpha1 "github.com/custos-io/custos/api/v1alpha1"
	"github.com/custos-io/custos/controllers"
	"github.com/custos-io/custos/internal/testharness"
)

const (
	managerNamespace = "custos-system"
	serverName       = "e2e-pg"
	policyName       = "e2e-every-minute"
)

func main() {
	keep := flag.Bool("keep", false, "keep the temporary directory (kubeconfig, manager.log, exports)")
	fetch := flag.Bool("fetch", true, "set CUSTOS_E2E_EXPORT_DIR, so the suite fetches the bag with custos export fetch; false: it writes the receipt from status")
	flag.Parse()
	code, err := run(*keep, *fetch, flag.Args())
	if err != nil {
		fmt.Fprintln(os.Stderr, "cluster-local:", err)
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}

func run(keep, fetch bool, ginkgoArgs []string) (code int, err error) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var cleanups []func()
	defer func() {
		for i := len(cleanups) - 1; i >= 0; i-- {
			cleanups[i]()
		}
	}()

	root, err := testharness.RepoRoot()
	if err != nil {
		return 1, err
	}
	dir, err := os.MkdirTemp("", "custos-cluster-local-")
	if err != nil {
		return 1, err
	}
	cleanups = append(cleanups, func() {
		if keep {
			fmt.Println("cluster-local: kept", dir)
			return
		}
		_ = os.RemoveAll(dir)
	})
	exportDir, primaryDir, workDir := filepath.Join(dir, "exports"), filepath.Join(dir, "primary"), filepath.Join(dir, "work")
	for _, p := range []string{exportDir, workDir} {
		if err := os.MkdirAll(p, 0o700); err != nil {
			return 1, err
		}
	}
	logFile, err := os.Create(filepath.Join(dir, "manager.log"))
	if err != nil {
		return 1, err
	}
	cleanups = append(cleanups, func() { _ = logFile.Close() })
	logger := zap.New(zap.WriteTo(logFile))
	ctrl.SetLogger(logger)
	klog.SetLogger(logger.WithName("klog"))

	var programs controllers.Programs
	if programs.Restic, err = testharness.Tool("restic"); err != nil {
		return 1, err
	}
	if programs.PgDump, err = testharness.PostgresBinary("pg_dump"); err != nil {
		return 1, err
	}
	if programs.Psql, err = testharness.PostgresBinary("psql"); err != nil {
		return 1, err
	}

	fmt.Println("cluster-local: starting kube-apiserver and etcd, PostgreSQL, rest-server and the custos manager in", dir)
	cp, err := testharness.StartControlPlane()
	if err != nil {
		return 1, err
	}
	cleanups = append(cleanups, func() { _ = cp.Stop() })
	c := cp.Client
	if err := testharness.ApplyManifests(ctx, c, filepath.Join(root, "config", "admission", "tenant-deletion-guard.yaml")); err != nil {
		return 1, err
	}
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := testharness.WriteKubeconfig(kubeconfig, "custos-local", cp.Config); err != nil {
		return 1, err
	}
	pg, err := testharness.StartPostgres(ctx)
	if err != nil {
		return 1, err
	}
	cleanups = append(cleanups, func() { _ = pg.Stop() })
	offsite, err := testharness.StartRestServer(ctx)
	if err != nil {
		return 1, err
	}
	cleanups = append(cleanups, func() { _ = offsite.Stop() })

	nsCtx, stopNS := context.WithCancel(context.Background())
	nsDone := make(chan struct{})
	go func() { defer close(nsDone); finalizeNamespaces(nsCtx, c) }()
	cleanups = append(cleanups, func() { stopNS(); <-nsDone })

	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: managerNamespace}}); err != nil && !apierrors.IsAlreadyExists(err) {
		return 1, err
	}
	mgr, err := ctrl.NewManager(cp.Config, ctrl.Options{Scheme: cp.Scheme, Metrics: metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0", Cache: controllers.CacheOptions()})
	if err != nil {
		return 1, err
	}
	if err := controllers.Setup(mgr, controllers.Options{Namespace: managerNamespace, TenantConcurrency: 4, Resync: time.Minute,
		RetryAfter: 2 * time.Second, Programs: programs, WorkDir: workDir, TaskTimeout: 5 * time.Minute,
		ExportDir: exportDir, Processor: "custos e2e (hack/cluster-local)"}); err != nil {
		return 1, err
	}
	mctx, cancelMgr := context.WithCancel(context.Background())
	mgrDone := make(chan error, 1)
	go func() { mgrDone <- mgr.Start(mctx) }()
	cleanups = append(cleanups, func() {
		cancelMgr()
		select {
		case <-mgrDone:
		case <-time.After(90 * time.Second):
			fmt.Fprintln(os.Stderr, "cluster-local: the manager did not stop within 90s")
		}
	})

	every := custosv1alpha1.Schedule{Cron: "* * * * *", TimeZone: "UTC"}
	platform := []client.Object{
		&custosv1alpha1.BackupLocation{ObjectMeta: metav1.ObjectMeta{Name: "e2e-primary"},
			Spec: custosv1alpha1.BackupLocationSpec{URL: primaryDir, Jurisdiction: "NL"}},
		&custosv1alpha1.BackupLocation{ObjectMeta: metav1.ObjectMeta{Name: "e2e-offsite"},
			Spec: custosv1alpha1.BackupLocationSpec{URL: offsite.URL, Jurisdiction: "DE"}},
		&custosv1alpha1.RetentionPolicy{ObjectMeta: metav1.ObjectMeta{Name: policyName}, Spec: custosv1alpha1.RetentionPolicySpec{
			Primary: custosv1alpha1.ObjectReference{Name: "e2e-primary"}, Offsite: &custosv1alpha1.ObjectReference{Name: "e2e-offsite"},
			Schedule: every, CopySchedule: every, ExpirySchedule: every, KeepWithin: "90d", MaxSnapshotAge: "26h",
			// No grace period after contract.end, and the exit's bag lives 10s after its receipt (the certificate
			// is signed once it is gone): the suite's exit runs in minutes.
			ExitGracePeriod: "0s", Export: custosv1alpha1.ExportPolicy{ExpireAfterDelivery: "10s"},
			AllowedJurisdictions: []custosv1alpha1.JurisdictionSelector{"EEA"}}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: serverName + "-admin", Namespace: managerNamespace,
			Annotations: map[string]string{custosv1alpha1.AnnotationCredentialsFor: "DatabaseServer/" + serverName}},
			StringData: map[string]string{"username": pg.User, "password": pg.Password}},
		&custosv1alpha1.DatabaseServer{ObjectMeta: metav1.ObjectMeta{Name: serverName}, Spec: custosv1alpha1.DatabaseServerSpec{
			Host: pg.Host, Port: int32(pg.Port), SSLMode: "disable", Jurisdiction: "NL",
			AdminCredentialsSecretRef: custosv1alpha1.SecretReference{Name: serverName + "-admin"}, MaintenanceDatabase: "postgres"}},
	}
	for _, o := range platform {
		if err := c.Create(ctx, o); err != nil {
			return 1, fmt.Errorf("creating %T %s: %w", o, o.GetName(), err)
		}
	}
	// The platform team would wait for Ready before running the suite; so does this.
	deadline := time.Now().Add(time.Minute)
	for {
		var s custosv1alpha1.DatabaseServer
		var p custosv1alpha1.RetentionPolicy
		if c.Get(ctx, client.ObjectKey{Name: serverName}, &s) == nil && c.Get(ctx, client.ObjectKey{Name: policyName}, &p) == nil &&
			ready(s.Status.Conditions) && ready(p.Status.Conditions) {
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return 1, fmt.Errorf("DatabaseServer %s and RetentionPolicy %s not Ready within a minute", serverName, policyName)
		}
		time.Sleep(500 * time.Millisecond)
	}

	args := append([]string{"tool", "ginkgo", "-v", "--label-filter=cluster"}, ginkgoArgs...)
	args = append(args, "./e2e/cluster")
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = root
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), "GOTOOLCHAIN=local", "GOFLAGS=-buildvcs=false",
		"KUBECONFIG="+kubeconfig, "CUSTOS_NAMESPACE="+managerNamespace,
		"CUSTOS_E2E_DATABASESERVER="+serverName, "CUSTOS_E2E_RETENTIONPOLICY="+policyName,
		"CUSTOS_E2E_CONTRACT_END_AFTER="+envOr("CUSTOS_E2E_CONTRACT_END_AFTER", "3m"))
	if fetch {
		cmd.Env = append(cmd.Env, "CUSTOS_E2E_EXPORT_DIR="+exportDir)
	} else {
		cmd.Env = append(cmd.Env, "CUSTOS_E2E_EXPORT_DIR=")
	}
	fmt.Printf("cluster-local: platform Ready; running go %v with KUBECONFIG=%s\n", args, kubeconfig)
	t0 := time.Now()
	err = cmd.Run()
	fmt.Printf("cluster-local: the suite ran %s\n", time.Since(t0).Round(time.Second))
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			fmt.Println("cluster-local: the manager's log:", filepath.Join(dir, "manager.log"), "(kept: -keep)")
			return ee.ExitCode(), nil
		}
		return 1, err
	}
	return 0, nil
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func ready(conds []metav1.Condition) bool {
	for _, c := range conds {
		if c.Type == custosv1alpha1.ConditionReady {
			return c.Status == metav1.ConditionTrue
		}
	}
	return false
}

// finalizeNamespaces plays the namespace controller envtest does not run, as make demo does: the objects of a
// namespace being deleted are deleted, then its "kubernetes" finalizer is removed.
func finalizeNamespaces(ctx context.Context, c client.Client) {
	kinds := []client.Object{&corev1.ConfigMap{}, &corev1.Secret{}, &corev1.ServiceAccount{}, &corev1.ResourceQuota{}, &corev1.LimitRange{},
		&appsv1.Deployment{}, &networkingv1.NetworkPolicy{}, &rbacv1.RoleBinding{}, &rbacv1.Role{}}
	for ctx.Err() == nil {
		var list corev1.NamespaceList
		if err := c.List(ctx, &list); err == nil {
			for i := range list.Items {
				ns := &list.Items[i]
				if ns.DeletionTimestamp == nil || len(ns.Spec.Finalizers) == 0 {
					continue
				}
				for _, o := range kinds {
					_ = c.DeleteAllOf(ctx, o, client.InNamespace(ns.Name))
				}
				ns.Spec.Finalizers = nil
				_ = c.SubResource("finalize").Update(ctx, ns)
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(500 * time.Millisecond):
		}
	}
}
