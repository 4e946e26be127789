// Package controllers holds one reconciler per custos kind. Each reconciler gathers facts, decides, and carries out
// idempotent steps; status is written once per reconcile.
package controllers

import (
	"os"
	"path/filepath"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"

	custosv1alpha1 "github.com/custos-io/custos/api/v1alpha1"
	"github.com/custos-io/custos/internal/audittrail"
	"github.com/custos-io/custos/internal/postgres"
	"github.com/custos-io/custos/internal/runner"
	"github.com/custos-io/custos/internal/signing"
)

// Options configure the controllers.
type Options struct {
	// Namespace the manager runs in; it holds admin Secrets and the master copies of tenant passwords.
	Namespace string
	// TenantConcurrency is how many tenants are reconciled at once.
	TenantConcurrency int
	// Clock is the clock every decision reads; the real one when nil.
	Clock clock.PassiveClock
	// Resync is how often a provisioned tenant is checked for drift outside Kubernetes; RetryAfter how soon a
	// step that failed outside Kubernetes is retried.
	Resync, RetryAfter time.Duration
	// Programs are restic, pg_dump and psql. Backups run when Programs.Restic is set.
	Programs Programs
	// WorkDir holds backup tasks' temporary files and restic's cache.
	WorkDir string
	// BackupConcurrency is how many backup tasks run at once; BackupConcurrencyPerLocation how many at one
	// location.
	BackupConcurrency, BackupConcurrencyPerLocation int
	// TaskTimeout ends a backup task that runs longer.
	TaskTimeout time.Duration
	// Runner runs backup tasks; the in-process pool when nil.
	Runner runner.Runner
	// ExportDir is where exit exports go when the RetentionPolicy names no delivery.
	ExportDir string
	// Processor is the processor's name on certificates of destruction.
	Processor string
	// SigningKeySecret names the Secret (manager's namespace) with the certificate signing key; empty:
	// signing.DefaultName.
	SigningKeySecret string
	// AuditSegmentBytes is the size at which an audit trail segment is closed; 0: 512 KiB (tests use less).
	AuditSegmentBytes int
	// WrapRunner, when set, wraps the in-process pool (tests inject faults: a result lost as in a crash).
	WrapRunner func(runner.Runner) runner.Runner
	// AllowNewSigningKey lets the manager generate a signing key when the Secret is missing although certificates
	// were signed before (the key history is not empty); the old public keys stay published.
	AllowNewSigningKey bool
	// NamespaceStuckAfter is how long a tenant namespace the exit deletes may take to go before the exit reports
	// what holds it; 2 minutes when zero.
	NamespaceStuckAfter time.Duration
}

// Permissions the manager needs whatever controllers run: leader election and Events.
// +kubebuilder:rbac:groups=coordination.k8s.io,resources=leases,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// CacheOptions keeps the manager's cache to what custos made: Secrets, namespaces, quotas, limits, network
// policies and role bindings carrying the custos.io/tenant label. Without it the manager would hold every Secret
// of the cluster in memory. Objects without the label (admin Secrets, namespaces that might collide) are read
// through the API reader.
func CacheOptions() cache.Options {
	req, err := labels.NewRequirement(custosv1alpha1.LabelTenant, selection.Exists, nil)
	if err != nil {
		panic(err)
	}
	labelled := cache.ByObject{Label: labels.NewSelector().Add(*req)}
	return cache.Options{ByObject: map[client.Object]cache.ByObject{
		&corev1.Secret{}:              labelled,
		&corev1.Namespace{}:           labelled,
		&corev1.ResourceQuota{}:       labelled,
		&corev1.LimitRange{}:          labelled,
		&networkingv1.NetworkPolicy{}: labelled,
		&rbacv1.RoleBinding{}:         labelled,
	}}
}

// Setup registers every reconciler with the manager.
func Setup(mgr ctrl.Manager, opts Options) error {
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	if opts.TenantConcurrency <= 0 {
		opts.TenantConcurrency = 4
	}
	if opts.Resync <= 0 {
		opts.Resync = 10 * time.Minute
	}
	if opts.RetryAfter <= 0 {
		opts.RetryAfter = 30 * time.Second
	}
	pools := &postgres.Pools{MaxConns: int32(opts.TenantConcurrency) + 1}
	// pg_dump runs only where backups and exports run (Programs.Restic set: see below); only then must it be able
	// to dump each server. A manager without backups may have no pg_dump at all, and must not call every server
	// unsupported for it.
	pgDump := ""
	if opts.Programs.Restic != "" {
		pgDump = opts.Programs.PgDump
	}
	audit := &audittrail.Store{Client: mgr.GetClient(), Reader: mgr.GetAPIReader(), Namespace: opts.Namespace, Clock: opts.Clock, SegmentBytes: opts.AuditSegmentBytes}
	if err := (&DatabaseServerReconciler{
		Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Recorder: mgr.GetEventRecorder("custos-databaseserver"),
		Clock: opts.Clock, Namespace: opts.Namespace, Recheck: 5 * time.Minute, RetryAfter: opts.RetryAfter, Pools: pools,
		PgDump: pgDump,
	}).SetupWithManager(mgr); err != nil {
		return err
	}
	if err := (&TenantReconciler{
		Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Recorder: mgr.GetEventRecorder("custos-tenant"),
		Clock: opts.Clock, Namespace: opts.Namespace, Resync: opts.Resync, RetryAfter: opts.RetryAfter, Pools: pools, Audit: audit,
	}).SetupWithManager(mgr, opts.TenantConcurrency); err != nil {
		return err
	}
	if err := (&BackupLocationReconciler{
		Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Recorder: mgr.GetEventRecorder("custos-backuplocation"),
		Clock: opts.Clock, Namespace: opts.Namespace, Recheck: 5 * time.Minute, RetryAfter: opts.RetryAfter,
	}).SetupWithManager(mgr); err != nil {
		return err
	}
	if err := (&RetentionPolicyReconciler{Client: mgr.GetClient()}).SetupWithManager(mgr); err != nil {
		return err
	}
	if opts.Processor == "" {
		opts.Processor = "the processor running custos"
	}
	if opts.Programs.Restic == "" {
		mgr.GetLogger().Info("No restic program configured: backups are not scheduled")
		return nil
	}
	done := make(chan event.GenericEvent, 1024)
	exitDone := make(chan event.GenericEvent, 1024)
	exportDone := make(chan event.GenericEvent, 1024)
	run := opts.Runner
	if run == nil {
		if opts.WorkDir == "" {
			opts.WorkDir = filepath.Join(os.TempDir(), "custos")
		}
		exec := &BackupExecutor{Reader: mgr.GetAPIReader(), Namespace: opts.Namespace, Programs: opts.Programs, WorkDir: opts.WorkDir, Clock: opts.Clock, Processor: opts.Processor}
		pool := runner.NewPool(exec, runner.PoolOptions{
			Global: opts.BackupConcurrency, PerLocation: opts.BackupConcurrencyPerLocation, Timeout: opts.TaskTimeout,
			Notify: func(sp runner.Spec) {
				ev := event.GenericEvent{Object: &custosv1alpha1.Tenant{ObjectMeta: metav1.ObjectMeta{Name: sp.Tenant}}}
				switch sp.Kind {
				case custosv1alpha1.TaskShred:
					exitDone <- ev
					return
				case custosv1alpha1.TaskExport:
					exportDone <- event.GenericEvent{Object: &custosv1alpha1.DataExport{ObjectMeta: metav1.ObjectMeta{Name: sp.Export}}}
					return
				}
				done <- ev
			},
		})
		if err := mgr.Add(pool); err != nil {
			return err
		}
		run = pool
		if opts.WrapRunner != nil {
			run = opts.WrapRunner(pool)
		}
	}
	if err := (&TenantBackupReconciler{
		Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Recorder: mgr.GetEventRecorder("custos-backup"),
		Clock: opts.Clock, Namespace: opts.Namespace, Runner: run, Done: done, RetryAfter: opts.RetryAfter, Audit: audit,
	}).SetupWithManager(mgr, opts.TenantConcurrency); err != nil {
		return err
	}
	keys := &signing.Keys{Client: mgr.GetClient(), Reader: mgr.GetAPIReader(), Namespace: opts.Namespace, SecretName: opts.SigningKeySecret,
		AllowNew: opts.AllowNewSigningKey, Clock: opts.Clock}
	if err := mgr.Add(keys); err != nil {
		return err
	}
	if err := (&DestructionCertificateReconciler{Client: mgr.GetClient(), Keys: keys}).SetupWithManager(mgr); err != nil {
		return err
	}
	if err := (&DataExportReconciler{Client: mgr.GetClient(), Recorder: mgr.GetEventRecorder("custos-export"), Clock: opts.Clock,
		Runner: run, Done: exportDone, Audit: audit, RetryWait: opts.RetryAfter}).SetupWithManager(mgr); err != nil {
		return err
	}
	return (&TenantExitReconciler{
		Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Recorder: mgr.GetEventRecorder("custos-exit"),
		Clock: opts.Clock, Namespace: opts.Namespace, Pools: pools, Runner: run, Done: exitDone, RetryAfter: opts.RetryAfter,
		ExportDir: opts.ExportDir, Processor: opts.Processor, Keys: keys, NamespaceStuckAfter: opts.NamespaceStuckAfter,
		Audit: audit,
	}).SetupWithManager(mgr, opts.TenantConcurrency)
}
