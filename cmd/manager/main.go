// Command manager runs the custos controllers.
package main

import (
	"flag"
	"os"
	"path/filepath"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	_ "k8s.io/client-go/plugin/pkg/client/auth"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	custosv1alpha1 "github.com/custos-io/custos/api/v1alpha1"
	"github.com/custos-io/custos/controllers"
	"github.com/custos-io/custos/internal/signing"
)

var scheme = runtime.NewScheme()

func init() {
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(custosv1alpha1.AddToScheme(scheme))
}

func main() {
	var (
		metricsAddr    string
		probeAddr      string
		leaderElection bool
		namespace      string
		concurrency    int
		qps            float64
		burst          int
	)
	flag.StringVar(&metricsAddr, "metrics-bind-address", ":8080", "Address the Prometheus metrics endpoint binds to; 0 turns it off.")
	flag.StringVar(&probeAddr, "health-probe-bind-address", ":8081", "Address the health and readiness probes bind to.")
	flag.BoolVar(&leaderElection, "leader-elect", false, "Elect a leader so that only one replica acts at a time.")
	flag.StringVar(&namespace, "namespace", os.Getenv("POD_NAMESPACE"), "Namespace the manager runs in: where it keeps repository passwords, the signing key and referenced Secrets.")
	flag.IntVar(&concurrency, "tenant-concurrency", 4, "How many tenants are provisioned at once.")
	flag.Float64Var(&qps, "kube-api-qps", 50, "Requests per second the manager may send to the Kubernetes API (client-side limit).")
	flag.IntVar(&burst, "kube-api-burst", 100, "Burst of requests above --kube-api-qps.")
	var progs controllers.Programs
	var workDir string
	var backupConc, backupConcLoc int
	var taskTimeout time.Duration
	flag.StringVar(&progs.Restic, "restic", "restic", "The restic program (a path or a name on PATH). Empty turns backups off.")
	flag.StringVar(&progs.PgDump, "pg-dump", "pg_dump", "The pg_dump program; its major version must be at least the servers'.")
	flag.StringVar(&progs.Psql, "psql", "psql", "The psql program (restore drills).")
	flag.DurationVar(&progs.BackendRetryLimit, "backend-retry-limit", 3*time.Minute, "A restic command whose backup location keeps failing this long is stopped, and its task retried later (restic alone retries for 15 minutes); 0 leaves it to restic.")
	flag.Int64Var(&progs.ObjectsLimit, "objects-limit", controllers.DefaultObjectsLimit, "Bytes of a tenant's Kubernetes objects (as YAML) one snapshot saves at most; a tenant above it gets no new snapshot and the reason ObjectsTooLarge.")
	flag.StringVar(&workDir, "work-dir", filepath.Join(os.TempDir(), "custos"), "Directory for backup tasks' temporary files and restic's cache.")
	flag.IntVar(&backupConc, "backup-concurrency", 2, "How many backup tasks run at once.")
	flag.IntVar(&backupConcLoc, "backup-concurrency-per-location", 2, "How many backup tasks run at once at one BackupLocation.")
	flag.DurationVar(&taskTimeout, "task-timeout", 6*time.Hour, "A backup task running longer is stopped and retried.")
	var nsStuckAfter time.Duration
	flag.DurationVar(&nsStuckAfter, "namespace-stuck-after", 2*time.Minute, "A tenant namespace the exit deletes that is not gone after this is reported (LiveDataPurged=False, NamespaceStuck) with what holds it.")
	var exportDir, processor, signingKey string
	flag.StringVar(&exportDir, "export-dir", "", "Directory (a mounted volume) for exit exports when the RetentionPolicy names no export.delivery.")
	flag.StringVar(&processor, "processor", "", "The processor's name, as it appears on certificates of destruction.")
	flag.StringVar(&signingKey, "signing-key-secret", signing.DefaultName, "Secret in the manager's namespace with the Ed25519 key (ed25519.pem, PKCS#8 PEM) that signs certificates of destruction; generated when missing.")
	var allowNewKey bool
	flag.BoolVar(&allowNewKey, "allow-new-signing-key", false, "Sign with a new key although certificates were signed with another one (the signing key Secret is missing or holds another key); the old public keys stay published in the key history. Without it the manager signs nothing until the key in use is restored.")
	opts := zap.Options{Development: false}
	opts.BindFlags(flag.CommandLine)
	flag.Parse()
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&opts)))
	log := ctrl.Log.WithName("setup")

	if namespace == "" {
		log.Error(nil, "The manager's namespace is unknown: set --namespace or POD_NAMESPACE")
		os.Exit(2)
	}

	cfg := ctrl.GetConfigOrDie()
	cfg.QPS, cfg.Burst = float32(qps), burst
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 scheme,
		Metrics:                metricsserver.Options{BindAddress: metricsAddr},
		HealthProbeBindAddress: probeAddr,
		LeaderElection:         leaderElection,
		LeaderElectionID:       "custos-manager.custos.io",
		Cache:                  controllers.CacheOptions(),
	})
	if err != nil {
		log.Error(err, "Could not create the manager")
		os.Exit(1)
	}
	if err := controllers.Setup(mgr, controllers.Options{
		Namespace: namespace, TenantConcurrency: concurrency, Programs: progs, WorkDir: workDir, ExportDir: exportDir, Processor: processor, SigningKeySecret: signingKey,
		AllowNewSigningKey: allowNewKey,
		BackupConcurrency:  backupConc, BackupConcurrencyPerLocation: backupConcLoc, TaskTimeout: taskTimeout, NamespaceStuckAfter: nsStuckAfter,
	}); err != nil {
		log.Error(err, "Could not set up the controllers")
		os.Exit(1)
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		log.Error(err, "Could not add the health check")
		os.Exit(1)
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		log.Error(err, "Could not add the readiness check")
		os.Exit(1)
	}
	log.Info("Starting the manager", "namespace", namespace)
	if err := mgr.Start(ctrl.SetupSignalHandler()); err != nil {
		log.Error(err, "The manager stopped with an error")
		os.Exit(1)
	}
}
