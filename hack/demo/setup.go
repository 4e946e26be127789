package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
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

	"github.com/custos-io/custos/controllers"
	"github.com/custos-io/custos/internal/testharness"
)

const (
	managerNamespace = "custos-system"
	tenantName       = "kliniek-noord"
	primaryName      = "primary-ams"
	offsiteName      = "offsite-fra"
	policyName       = "ehealth-demo"
	serverName       = "pg-ams-1"
	processor        = "e-Health Hosting B.V."
)

// demo holds what the run started and what the steps share.
type demo struct {
	exportName  string // the exit's DataExport (status.exit.exportRef), once the exit made it
	start       time.Time
	keep, hold  bool
	interrupted atomic.Bool
	completed   atomic.Bool // every step passed
	mu          sync.Mutex
	steps       []stepTime
	cleanups    []cleanupFn

	root       string // the repository
	dir        string // the demo's temporary directory
	outDir     string // files a person looks at: certificate, key, bag, audit trail
	exportDir  string // where the manager delivers the exit's bag
	primaryDir string // the primary BackupLocation
	kubeconfig string
	kubectlBin string
	resticBin  string
	logPath    string

	cp       *testharness.ControlPlane
	c        client.Client
	pg       *testharness.Postgres
	offsite  *testharness.RestServer
	programs controllers.Programs

	custosBin  string
	custosDone chan error
}

// onCleanup registers what the cleanup undoes, newest first; an empty what is undone without a line of output.
func (d *demo) onCleanup(what string, fn func() error) {
	d.cleanups = append(d.cleanups, cleanupFn{what: what, fn: fn})
}

func (d *demo) run(ctx context.Context) error {
	fmt.Println("custos demo: the clinic \"Kliniek Noord\" from its first backup to its certificate of destruction,")
	fmt.Println("on this machine only (kube-apiserver + etcd, PostgreSQL, restic, rest-server; no cluster, no network).")
	steps := []struct {
		title string
		f     func(context.Context) error
	}{
		{"0/5 Start: control plane, PostgreSQL, backup repositories, custos manager", d.setup},
		{"1/5 Platform: backup locations, retention policy, database server", d.installPlatform},
		{"2/5 Tenant kliniek-noord: provisioned, with sample data", d.provisionTenant},
		{"3/5 Backups: first snapshot, offsite copy, expiry of snapshots older than 90 days", d.backups},
		{"4/5 Contract end: suspension, export, receipt, purge, shredding", d.exit},
		{"5/5 Certificate of destruction: checked offline with the custos CLI", d.certificate},
	}
	for _, s := range steps {
		if err := d.step(ctx, s.title, s.f); err != nil {
			if !d.interrupted.Load() {
				d.explainFailure()
			}
			return err
		}
	}
	d.completed.Store(true)
	if d.hold {
		d.say("")
		d.say("Everything is still running (-hold). Look around:")
		d.say("  export KUBECONFIG=%s", d.kubeconfig)
		d.say("  %s get tenants,dataexports,destructioncertificates -o wide", d.kubectlRel())
		d.say("Ctrl-C stops it all.")
		<-ctx.Done()
	}
	return nil
}

func (d *demo) kubectlRel() string { return filepathRel(d.root, d.kubectlBin) }

// setup starts every component and the manager.
func (d *demo) setup(ctx context.Context) error {
	var err error
	if d.root, err = testharness.RepoRoot(); err != nil {
		return fmt.Errorf("%w (run it from the repository: make demo)", err)
	}
	for _, tool := range []string{"kube-apiserver", "etcd", "kubectl", "restic", "rest-server"} {
		if _, err := testharness.Tool(tool); err != nil {
			return err
		}
	}
	d.kubectlBin, _ = testharness.Tool("kubectl")
	d.resticBin, _ = testharness.Tool("restic")
	d.programs.Restic = d.resticBin
	if d.programs.PgDump, err = testharness.PostgresBinary("pg_dump"); err != nil {
		return err
	}
	if d.programs.Psql, err = testharness.PostgresBinary("psql"); err != nil {
		return err
	}

	if d.dir, err = os.MkdirTemp("", "custos-demo-"); err != nil {
		return err
	}
	d.outDir = filepath.Join(d.dir, "out")
	d.exportDir = filepath.Join(d.dir, "exports")
	d.primaryDir = filepath.Join(d.dir, "primary")
	for _, p := range []string{d.outDir, d.exportDir, filepath.Join(d.dir, "work")} {
		if err := os.MkdirAll(p, 0o700); err != nil {
			return err
		}
	}
	d.say("Demo directory %s", d.dir)

	// The manager logs to a file; the terminal is for the story.
	d.logPath = filepath.Join(d.dir, "manager.log")
	logFile, err := os.Create(d.logPath)
	if err != nil {
		return err
	}
	d.onCleanup("", logFile.Close)
	logger := zap.New(zap.WriteTo(logFile))
	ctrl.SetLogger(logger)
	klog.SetLogger(logger.WithName("klog"))

	// The custos CLI is built while the components start; step 5 runs it.
	d.custosBin = filepath.Join(d.dir, "bin", "custos")
	d.custosDone = make(chan error, 1)
	go func() { d.custosDone <- d.buildCLI(ctx) }()
	d.onCleanup("", func() error { <-d.custosDone; return nil }) // the build ends (ctx is cancelled first) before the directory goes

	t0 := time.Now()
	if d.cp, err = testharness.StartControlPlane(); err != nil {
		return err
	}
	d.onCleanup("kube-apiserver and etcd", d.cp.Stop)
	d.c = d.cp.Client
	if err := testharness.ApplyManifests(ctx, d.c, filepath.Join(d.root, "config", "admission", "tenant-deletion-guard.yaml")); err != nil {
		return fmt.Errorf("installing config/admission: %w", err)
	}
	d.kubeconfig = filepath.Join(d.dir, "kubeconfig")
	if err := testharness.WriteKubeconfig(d.kubeconfig, "custos-demo", d.cp.Config); err != nil {
		return err
	}
	d.say("kube-apiserver + etcd up with custos' CRDs and its admission policy (%s)", time.Since(t0).Round(100*time.Millisecond))
	d.say("  Look around while it runs, in another terminal:")
	d.say("    export KUBECONFIG=%s", d.kubeconfig)
	d.say("    %s get tenants -w", d.kubectlRel())

	t0 = time.Now()
	if d.pg, err = testharness.StartPostgres(ctx); err != nil {
		return err
	}
	d.onCleanup("PostgreSQL", d.pg.Stop)
	d.say("PostgreSQL up on %s:%d (%s, %s)", d.pg.Host, d.pg.Port, d.pg.Version, time.Since(t0).Round(100*time.Millisecond))

	if d.offsite, err = testharness.StartRestServer(ctx); err != nil {
		return err
	}
	d.onCleanup("rest-server (offsite)", d.offsite.Stop)
	d.say("Primary backup location: the directory %s", d.primaryDir)
	d.say("Offsite backup location: rest-server at %s (data in %s)", strings.TrimPrefix(d.offsite.URL, "rest:"), filepath.Join(d.offsite.Dir, "data"))

	// envtest runs no namespace controller: the demo plays its part for deleted namespaces.
	nsCtx, stopNS := context.WithCancel(context.Background())
	nsDone := make(chan struct{})
	go func() { defer close(nsDone); d.finalizeNamespaces(nsCtx) }()
	d.onCleanup("namespace finalizer (the demo's)", func() error { stopNS(); <-nsDone; return nil })

	return d.startManager()
}

// startManager runs the custos controllers in this process, as cmd/manager would in a pod.
func (d *demo) startManager() error {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: managerNamespace}}
	if err := d.c.Create(context.Background(), ns); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	mgr, err := ctrl.NewManager(d.cp.Config, ctrl.Options{
		Scheme:                 d.cp.Scheme,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Cache:                  controllers.CacheOptions(),
	})
	if err != nil {
		return err
	}
	opts := controllers.Options{
		Namespace: managerNamespace, TenantConcurrency: 4, Resync: time.Minute, RetryAfter: 2 * time.Second,
		Programs: d.programs, WorkDir: filepath.Join(d.dir, "work"), TaskTimeout: 5 * time.Minute,
		ExportDir: d.exportDir, Processor: processor,
	}
	if err := controllers.Setup(mgr, opts); err != nil {
		return err
	}
	mctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(mctx) }()
	d.onCleanup("custos manager", func() error {
		cancel()
		// Running backup tasks are interrupted (SIGINT to restic, which removes its lock) and waited for.
		select {
		case err := <-done:
			return err
		case <-time.After(90 * time.Second):
			return fmt.Errorf("did not stop within 90s")
		}
	})
	d.say("custos manager running in this process (namespace %s, processor %q); its log: %s", managerNamespace, processor, d.logPath)
	return nil
}

// finalizeNamespaces plays the namespace controller envtest does not run (as e2e/local/exit_test.go does, and a
// little more): the objects of a namespace being deleted are deleted, then its "kubernetes" finalizer is removed,
// so it goes away as it would in a cluster.
func (d *demo) finalizeNamespaces(ctx context.Context) {
	told := map[string]bool{}
	for ctx.Err() == nil {
		var list corev1.NamespaceList
		if err := d.c.List(ctx, &list); err == nil {
			for i := range list.Items {
				ns := &list.Items[i]
				if ns.DeletionTimestamp == nil || len(ns.Spec.Finalizers) == 0 {
					continue
				}
				for _, o := range namespacedKinds() {
					_ = d.c.DeleteAllOf(ctx, o, client.InNamespace(ns.Name))
				}
				ns.Spec.Finalizers = nil
				if err := d.c.SubResource("finalize").Update(ctx, ns); err == nil && !told[ns.Name] {
					told[ns.Name] = true
					d.say("  [demo] namespace %s is being deleted. envtest runs no namespace controller, so the demo plays its part:", ns.Name)
					d.say("         it deletes the objects in it and removes the namespace's \"kubernetes\" finalizer")
				}
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// namespacedKinds are the kinds the demo's tenant namespaces can hold.
func namespacedKinds() []client.Object {
	return []client.Object{&corev1.ConfigMap{}, &corev1.Secret{}, &corev1.ServiceAccount{}, &corev1.ResourceQuota{}, &corev1.LimitRange{},
		&appsv1.Deployment{}, &networkingv1.NetworkPolicy{}, &rbacv1.RoleBinding{}, &rbacv1.Role{}}
}

// buildCLI builds cmd/custos once, into the demo's directory.
func (d *demo) buildCLI(ctx context.Context) error {
	goBin, err := exec.LookPath("go")
	if err != nil {
		return fmt.Errorf("go not found on PATH to build cmd/custos: %w", err)
	}
	cmd := exec.CommandContext(ctx, goBin, "build", "-o", d.custosBin, "./cmd/custos")
	cmd.Dir = d.root
	cmd.Env = append(os.Environ(), "GOTOOLCHAIN=local", "GOFLAGS=-buildvcs=false")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./cmd/custos: %w\n%s", err, out)
	}
	return nil
}

// cli waits for the custos CLI to be built and returns its path.
func (d *demo) cli(ctx context.Context) (string, error) {
	select {
	case err := <-d.custosDone:
		d.custosDone <- err // for the next caller
		if err != nil {
			return "", err
		}
		return d.custosBin, nil
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

// kubectl runs bin/kubectl against the demo's API server, printing the command and its output.
func (d *demo) kubectl(ctx context.Context, args ...string) error {
	out, err := d.kubectlOut(ctx, args...)
	d.say("$ kubectl %s", strings.Join(args, " "))
	d.block(out)
	return err
}

func (d *demo) kubectlOut(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, d.kubectlBin, args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+d.kubeconfig)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("kubectl %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return string(out), nil
}

// custos runs the custos CLI in the output directory, printing the command and its output; any exit status but 0
// is a failure.
func (d *demo) custos(ctx context.Context, args ...string) error {
	bin, err := d.cli(ctx)
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = d.outDir
	cmd.Env = append(os.Environ(), "KUBECONFIG="+d.kubeconfig)
	out, err := cmd.CombinedOutput()
	d.say("$ custos %s", shellJoin(args))
	d.block(string(out))
	if err != nil {
		return fmt.Errorf("custos %s: %w", strings.Join(args, " "), err)
	}
	return nil
}

// shellJoin quotes the arguments that need it, for printing a command a person can paste.
func shellJoin(args []string) string {
	out := make([]string, len(args))
	for i, a := range args {
		if a == "" || strings.ContainsAny(a, " \t'\"$`\\*?;&|<>()") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		out[i] = a
	}
	return strings.Join(out, " ")
}

// explainFailure prints what helps to understand a failed step: the tenant's status and the manager log's tail.
func (d *demo) explainFailure() {
	if d.c != nil {
		if out, err := d.kubectlOut(context.Background(), "get", "tenant", tenantName, "-o", "yaml"); err == nil {
			d.say("The tenant as the API server holds it:")
			d.block(out)
		}
	}
	if d.logPath != "" {
		if b, err := os.ReadFile(d.logPath); err == nil {
			lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
			d.say("Last lines of the manager log (%s):", d.logPath)
			d.block(strings.Join(lines[max(0, len(lines)-40):], "\n"))
		}
	}
}
