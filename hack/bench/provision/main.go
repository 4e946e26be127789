// Command provision measures custos' tenant provisioning (make bench-provision): it starts the harness's
// kube-apiserver + etcd and a PostgreSQL, runs bin/manager as a separate process, applies N Tenants at once and
// reports the time until all are Ready, the manager's peak RSS and its CPU over the quiet period after. In the
// same run it measures the baseline: kubectl create of N bare namespaces and N CREATE DATABASE by hand.
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	custosv1alpha1 "github.com/custos-io/custos/api/v1alpha1"
	"github.com/custos-io/custos/internal/testharness"
)

func main() {
	n := flag.Int("tenants", 1000, "number of Tenants to apply at once")
	quiet := flag.Duration("quiet", 60*time.Second, "how long to measure the manager's CPU after all are Ready")
	concurrency := flag.Int("concurrency", 8, "the manager's --tenant-concurrency")
	qps := flag.Int("qps", 50, "the manager's --kube-api-qps (burst is twice that)")
	flag.Parse()
	if err := run(*n, *quiet, *concurrency, *qps); err != nil {
		fmt.Fprintln(os.Stderr, "bench-provision:", err)
		os.Exit(1)
	}
}

func run(n int, quiet time.Duration, concurrency, qps int) error {
	ctx := context.Background()
	cp, err := testharness.StartControlPlane()
	if err != nil {
		return err
	}
	defer cp.Stop()
	pg, err := testharness.StartPostgres(ctx)
	if err != nil {
		return err
	}
	defer pg.Stop()
	c := cp.Client
	bin, _ := testharness.BinDir()
	dir, err := os.MkdirTemp("", "custos-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := testharness.WriteKubeconfig(kubeconfig, "envtest", cp.Config); err != nil {
		return err
	}

	// Baseline 1: kubectl create of N bare namespaces, one invocation.
	var manifest bytes.Buffer
	for i := 0; i < n; i++ {
		fmt.Fprintf(&manifest, "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: baseline-%d\n---\n", i)
	}
	nsFile := filepath.Join(dir, "namespaces.yaml")
	if err := os.WriteFile(nsFile, manifest.Bytes(), 0o600); err != nil {
		return err
	}
	start := time.Now()
	if out, err := exec.Command(filepath.Join(bin, "kubectl"), "--kubeconfig", kubeconfig, "create", "-f", nsFile).CombinedOutput(); err != nil {
		return fmt.Errorf("kubectl create: %w: %s", err, out)
	}
	nsTime := time.Since(start)

	// Baseline 2: N CREATE DATABASE (+ role) by hand, one session.
	admin, err := pgx.Connect(ctx, pg.URL("postgres"))
	if err != nil {
		return err
	}
	start = time.Now()
	for i := 0; i < n; i++ {
		if _, err := admin.Exec(ctx, fmt.Sprintf("CREATE ROLE baseline_%d LOGIN", i)); err != nil {
			return err
		}
		if _, err := admin.Exec(ctx, fmt.Sprintf("CREATE DATABASE baseline_%d OWNER baseline_%d", i, i)); err != nil {
			return err
		}
	}
	dbTime := time.Since(start)
	for i := 0; i < n; i++ { // keep the server's catalog the same size for the measured run
		if _, err := admin.Exec(ctx, fmt.Sprintf("DROP DATABASE baseline_%d", i)); err != nil {
			return err
		}
		if _, err := admin.Exec(ctx, fmt.Sprintf("DROP ROLE baseline_%d", i)); err != nil {
			return err
		}
	}
	_ = admin.Close(ctx)

	// The manager, as a separate process.
	const ns = "custos-system"
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		return err
	}
	if err := c.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "pg-admin", Namespace: ns,
		Annotations: map[string]string{custosv1alpha1.AnnotationCredentialsFor: "DatabaseServer/pg"}},
		StringData: map[string]string{"username": pg.User, "password": pg.Password}}); err != nil {
		return err
	}
	if err := c.Create(ctx, &custosv1alpha1.DatabaseServer{ObjectMeta: metav1.ObjectMeta{Name: "pg"}, Spec: custosv1alpha1.DatabaseServerSpec{
		Host: pg.Host, Port: int32(pg.Port), SSLMode: "disable", Jurisdiction: "NL",
		AdminCredentialsSecretRef: custosv1alpha1.SecretReference{Name: "pg-admin"}}}); err != nil {
		return err
	}
	if err := c.Create(ctx, &custosv1alpha1.RetentionPolicy{ObjectMeta: metav1.ObjectMeta{Name: "p"}, Spec: custosv1alpha1.RetentionPolicySpec{
		Primary: custosv1alpha1.ObjectReference{Name: "primary"}, KeepWithin: "90d",
		AllowedJurisdictions: []custosv1alpha1.JurisdictionSelector{"EEA"}}}); err != nil {
		return err
	}
	mgrLog, err := os.Create(filepath.Join(dir, "manager.log"))
	if err != nil {
		return err
	}
	mgr := exec.Command(filepath.Join(bin, "manager"), "--kubeconfig", kubeconfig, "--namespace", ns,
		"--metrics-bind-address", "0", "--health-probe-bind-address", "0", "--tenant-concurrency", strconv.Itoa(concurrency),
		"--kube-api-qps", strconv.Itoa(qps), "--kube-api-burst", strconv.Itoa(2*qps))
	mgr.Stdout, mgr.Stderr = mgrLog, mgrLog
	if err := mgr.Start(); err != nil {
		return err
	}
	defer func() { _ = mgr.Process.Kill(); _, _ = mgr.Process.Wait() }()

	start = time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	sem := make(chan struct{}, 16)
	for i := 0; i < n; i++ {
		wg.Add(1)
		sem <- struct{}{}
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
			name := fmt.Sprintf("bench-%d", i)
			t := &custosv1alpha1.Tenant{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: custosv1alpha1.TenantSpec{
				DisplayName: name, DataController: custosv1alpha1.DataController{Name: name, Contact: "dpo"},
				Contract:           custosv1alpha1.Contract{ID: name, Start: metav1.NewTime(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))},
				RetentionPolicyRef: custosv1alpha1.ObjectReference{Name: "p"},
				Namespaces:         custosv1alpha1.TenantNamespaces{Count: ptr(int32(1))},
				Database:           custosv1alpha1.TenantDatabase{ServerRef: custosv1alpha1.ObjectReference{Name: "pg"}, ConnectionLimit: 5},
			}}
			if err := c.Create(ctx, t); err != nil {
				errs <- err
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		return err
	}
	applied := time.Since(start)
	deadline := time.Now().Add(15 * time.Minute)
	for {
		var list custosv1alpha1.TenantList
		if err := c.List(ctx, &list); err != nil {
			return err
		}
		ready := 0
		for _, t := range list.Items {
			if meta.IsStatusConditionTrue(t.Status.Conditions, custosv1alpha1.ConditionReady) {
				ready++
			}
		}
		if ready == n {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("only %d of %d Tenants Ready after 15 minutes; manager log: %s", ready, n, mgrLog.Name())
		}
		time.Sleep(500 * time.Millisecond)
	}
	allReady := time.Since(start)

	cpu0, err := cpuTicks(mgr.Process.Pid)
	if err != nil {
		return err
	}
	time.Sleep(quiet)
	cpu1, err := cpuTicks(mgr.Process.Pid)
	if err != nil {
		return err
	}
	hwm, err := peakRSS(mgr.Process.Pid)
	if err != nil {
		return err
	}
	idle := float64(cpu1-cpu0) / 100.0 / quiet.Seconds() * 100 // USER_HZ = 100
	baseline := nsTime + dbTime

	fmt.Printf("| Tenants applied at once (manager: --tenant-concurrency %d --kube-api-qps %d) | %d |\n", concurrency, qps, n)
	fmt.Printf("| time to apply them (API calls) | %.1f s |\n", applied.Seconds())
	fmt.Printf("| **time until all Ready** | **%.1f s** (target ≤ 120 s) |\n", allReady.Seconds())
	fmt.Printf("| baseline: `kubectl create -f` of %d bare namespaces | %.1f s |\n", n, nsTime.Seconds())
	fmt.Printf("| baseline: %d `CREATE ROLE` + `CREATE DATABASE` in one psql-like session | %.1f s |\n", n, dbTime.Seconds())
	fmt.Printf("| ratio all-Ready / baseline sum | %.2f× |\n", allReady.Seconds()/baseline.Seconds())
	fmt.Printf("| **manager peak RSS (VmHWM)** | **%.0f MB** (target ≤ 200 MB) |\n", float64(hwm)/1024)
	fmt.Printf("| **manager CPU over %.0f s after all Ready** | **%.2f %% of a core** (target < 1 %%) |\n", quiet.Seconds(), idle)
	return nil
}

func ptr[T any](v T) *T { return &v }

// cpuTicks is utime+stime of a process, in clock ticks.
func cpuTicks(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return ut + st, nil
}

// peakRSS is VmHWM in KiB.
func peakRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmHWM:") {
			return strconv.ParseInt(strings.Fields(l)[1], 10, 64)
		}
	}
	return 0, fmt.Errorf("no VmHWM in /proc/%d/status", pid)
}

var _ client.Object = &custosv1alpha1.Tenant{}
