package controllers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	custosv1alpha1 "github.com/custos-io/custos/api/v1alpha1"
	"github.com/custos-io/custos/internal/backup"
	"github.com/custos-io/custos/internal/postgres"
	"github.com/custos-io/custos/internal/restic"
	"github.com/custos-io/custos/internal/runner"
)

// Programs are the external programs backups need.
type Programs struct {
	Restic, PgDump, Psql string
	// BackendRetryLimit stops a restic command once one backend operation has kept failing this long (restic's
	// own limit is 15 minutes, during which the task would hold its location's runner slots); the task fails with
	// the reason Unreachable and is retried. Zero leaves it to restic.
	BackendRetryLimit time.Duration
}

// BackupExecutor carries out backup tasks: it reads what a task needs from the API server (tenant, policy,
// locations, keys), opens the repositories and calls internal/backup. It is the Executor of the in-process
// runner; a Job runner would run the same Execute from `custos task`.
type BackupExecutor struct {
	Reader    client.Reader
	Namespace string
	Programs  Programs
	// WorkDir holds temporary files (dump row counts, objects, CA files) and restic's cache.
	WorkDir string
	Clock   clock.PassiveClock
	// Processor names the processor in export bags (Source-Organization).
	Processor string

	// opening serialises opening (and so creating) one repository: two tasks of a new tenant that both found no
	// repository would both run `restic init`, leaving two configs' worth of keys and an unusable repository.
	opening sync.Map // repository URL → *sync.Mutex
}

// open opens the repository, creating it when missing, one task at a time per repository.
func (e *BackupExecutor) open(ctx context.Context, repo restic.Repository, from *restic.Repository) error {
	mu, _ := e.opening.LoadOrStore(repo.URL, &sync.Mutex{})
	mu.(*sync.Mutex).Lock()
	defer mu.(*sync.Mutex).Unlock()
	_, _, err := backup.Open(ctx, repo, from)
	return err
}

// locationSummary is a repository's state after a task.
type locationSummary struct {
	RepositoryID string    `json:"repositoryID"`
	Snapshots    int       `json:"snapshots"`
	Oldest       time.Time `json:"oldest"`
	Newest       time.Time `json:"newest"`
}

// taskOutput is a task's result as JSON (a Job runner would read it back from the Job).
type taskOutput struct {
	Locations  map[string]locationSummary `json:"locations,omitempty"`
	Snapshot   *backup.SnapshotResult     `json:"snapshot,omitempty"`
	Expired    int                        `json:"expired,omitempty"`
	Copied     int                        `json:"copied,omitempty"`
	CheckError string                     `json:"checkError,omitempty"`
	Drill      *backup.DrillResult        `json:"drill,omitempty"`
}

// objectKinds are the namespaced kinds saved with each snapshot as YAML.
var objectKinds = []schema.GroupVersionKind{
	{Version: "v1", Kind: "ConfigMap"}, {Version: "v1", Kind: "Secret"}, {Version: "v1", Kind: "Service"},
	{Version: "v1", Kind: "ServiceAccount"}, {Version: "v1", Kind: "PersistentVolumeClaim"},
	{Group: "apps", Version: "v1", Kind: "Deployment"}, {Group: "apps", Version: "v1", Kind: "StatefulSet"},
	{Group: "apps", Version: "v1", Kind: "DaemonSet"}, {Group: "batch", Version: "v1", Kind: "CronJob"},
	{Group: "batch", Version: "v1", Kind: "Job"}, {Group: "networking.k8s.io", Version: "v1", Kind: "Ingress"},
	{Group: "networking.k8s.io", Version: "v1", Kind: "NetworkPolicy"}, {Group: "rbac.authorization.k8s.io", Version: "v1", Kind: "Role"},
	{Group: "rbac.authorization.k8s.io", Version: "v1", Kind: "RoleBinding"}, {Version: "v1", Kind: "ResourceQuota"},
	{Version: "v1", Kind: "LimitRange"},
}

// +kubebuilder:rbac:groups="",resources=configmaps;services;serviceaccounts;persistentvolumeclaims,verbs=get;list
// +kubebuilder:rbac:groups=apps,resources=deployments;statefulsets;daemonsets,verbs=get;list
// +kubebuilder:rbac:groups=batch,resources=cronjobs;jobs,verbs=get;list
// +kubebuilder:rbac:groups=networking.k8s.io,resources=ingresses,verbs=get;list
// +kubebuilder:rbac:groups=rbac.authorization.k8s.io,resources=roles,verbs=get;list

// taskEnv is what every task of a tenant needs.
type taskEnv struct {
	tenant   *custosv1alpha1.Tenant
	policy   *custosv1alpha1.RetentionPolicy
	keep     time.Duration
	dir      string
	repos    map[string]restic.Repository
	backends map[string]backend
	primary  string
	offsite  string
}

// Execute implements runner.Executor.
func (e *BackupExecutor) Execute(ctx context.Context, sp runner.Spec) ([]byte, error) {
	switch sp.Kind {
	case KindShred:
		return e.shred(ctx, sp)
	case KindExport:
		return e.exportBag(ctx, sp)
	}
	env, err := e.load(ctx, sp)
	if err != nil {
		return nil, err
	}
	defer func() { _ = os.RemoveAll(env.dir) }()
	out := taskOutput{Locations: map[string]locationSummary{}}
	// The locations the task touches: a copy reads the primary and writes the offsite.
	touched := []string{sp.Location}
	if sp.Kind == retentionKindCopy {
		touched = []string{env.primary, sp.Location}
	}
	for _, loc := range touched {
		b, ok := env.backends[loc]
		if !ok {
			return nil, fmt.Errorf("location %q is no longer in the tenant's RetentionPolicy", loc)
		}
		if err := b.probe(ctx); err != nil {
			return nil, err
		}
		var from *restic.Repository
		if loc == env.offsite {
			p := env.repos[env.primary]
			from = &p
		}
		if err := e.open(ctx, env.repos[loc], from); err != nil {
			return nil, fmt.Errorf("opening the repository at %s: %w", loc, err)
		}
		// Stale locks of a killed restic (a manager that died mid-task) would block this task; live ones are kept.
		if err := env.repos[loc].Unlock(ctx); err != nil {
			return nil, fmt.Errorf("clearing stale locks at %s: %w", loc, err)
		}
	}
	now := e.Clock.Now()
	switch sp.Kind {
	case retentionKindSnapshot:
		res, err := e.snapshot(ctx, env, sp)
		if err != nil {
			return nil, err
		}
		out.Snapshot = &res
	case retentionKindCopy:
		n, err := backup.Copy(ctx, env.repos[env.primary], env.repos[sp.Location], env.tenant.Name, env.keep, now)
		if err != nil {
			return nil, err
		}
		out.Copied = n
	case retentionKindExpiry:
		n, err := backup.Expire(ctx, env.repos[sp.Location], env.tenant.Name, env.keep, now)
		if err != nil {
			return nil, err
		}
		out.Expired = n
	case retentionKindCheck:
		if err := env.repos[sp.Location].Check(ctx, env.policy.Spec.Check.ReadDataSubset); err != nil {
			var re *restic.Error
			if !errors.As(err, &re) || re.Code != restic.ExitFatal || ctx.Err() != nil {
				return nil, err
			}
			out.CheckError = re.Message // the repository answered and reported damage: a result, not a retry
		}
	case retentionKindDrill:
		db, err := e.database(ctx, env)
		if err != nil {
			return nil, err
		}
		res, err := backup.Drill(ctx, env.repos[sp.Location], backup.DrillInput{
			Tenant: env.tenant.Name, UID: string(env.tenant.UID), Role: env.tenant.Status.Database.Role, Database: db, TempDir: env.dir})
		if err != nil {
			return nil, err
		}
		out.Drill = &res
	default:
		return nil, fmt.Errorf("unknown task kind %q", sp.Kind)
	}
	for _, loc := range touched {
		sum, _, err := backup.Summarize(ctx, env.repos[loc], env.tenant.Name)
		if err != nil {
			return nil, fmt.Errorf("listing snapshots at %s: %w", loc, err)
		}
		id, err := env.repos[loc].ID(ctx)
		if err != nil {
			return nil, err
		}
		out.Locations[loc] = locationSummary{RepositoryID: id, Snapshots: sum.Count, Oldest: sum.Oldest, Newest: sum.Newest}
	}
	return json.Marshal(out)
}

// Kinds as the runner carries them.
const (
	retentionKindSnapshot = string(custosv1alpha1.TaskSnapshot)
	retentionKindCopy     = string(custosv1alpha1.TaskCopy)
	retentionKindExpiry   = string(custosv1alpha1.TaskExpiry)
	retentionKindCheck    = string(custosv1alpha1.TaskCheck)
	retentionKindDrill    = string(custosv1alpha1.TaskDrill)
)

func (e *BackupExecutor) load(ctx context.Context, sp runner.Spec) (*taskEnv, error) {
	var t custosv1alpha1.Tenant
	if err := e.Reader.Get(ctx, client.ObjectKey{Name: sp.Tenant}, &t); err != nil {
		return nil, err
	}
	var p custosv1alpha1.RetentionPolicy
	if err := e.Reader.Get(ctx, client.ObjectKey{Name: t.Spec.RetentionPolicyRef.Name}, &p); err != nil {
		return nil, err
	}
	keep, err := p.Spec.KeepWithin.Parse()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(e.WorkDir, 0o700); err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp(e.WorkDir, "task-")
	if err != nil {
		return nil, err
	}
	env := &taskEnv{tenant: &t, policy: &p, keep: keep, dir: dir, repos: map[string]restic.Repository{}, backends: map[string]backend{}, primary: p.Spec.Primary.Name}
	locs := []string{p.Spec.Primary.Name}
	if p.Spec.Offsite != nil {
		env.offsite = p.Spec.Offsite.Name
		locs = append(locs, env.offsite)
	}
	keys := &corev1.Secret{}
	if err := e.Reader.Get(ctx, client.ObjectKey{Namespace: e.Namespace, Name: repoKeySecretPrefix + t.Name}, keys); err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("repository keys: %w", err)
	}
	for _, loc := range locs {
		var bl custosv1alpha1.BackupLocation
		if err := e.Reader.Get(ctx, client.ObjectKey{Name: loc}, &bl); err != nil {
			_ = os.RemoveAll(dir)
			return nil, err
		}
		if !custosv1alpha1.JurisdictionAdmitted(p.Spec.AllowedJurisdictions, bl.Spec.Jurisdiction) {
			_ = os.RemoveAll(dir)
			return nil, &probeError{custosv1alpha1.ReasonJurisdictionRefused, fmt.Sprintf("%s is in %s, which the policy does not allow", loc, bl.Spec.Jurisdiction)}
		}
		b, err := resolveBackend(ctx, e.Reader, e.Namespace, &bl, dir)
		if err != nil {
			_ = os.RemoveAll(dir)
			return nil, err
		}
		pw := keys.Data[loc]
		if len(pw) == 0 {
			_ = os.RemoveAll(dir)
			return nil, &errSecret{fmt.Sprintf("Secret %s/%s has no key for location %q", e.Namespace, keys.Name, loc)}
		}
		env.backends[loc] = b
		env.repos[loc] = b.repository(e.Programs, filepath.Join(e.WorkDir, "cache"), &t, string(pw))
	}
	return env, nil
}

// database is the tenant's database as pg_dump and psql reach it (with the server's admin credentials).
func (e *BackupExecutor) database(ctx context.Context, env *taskEnv) (backup.Database, error) {
	t := env.tenant
	if t.Status.Database == nil {
		return backup.Database{}, errors.New("the tenant has no database yet")
	}
	var srv custosv1alpha1.DatabaseServer
	if err := e.Reader.Get(ctx, client.ObjectKey{Name: t.Status.Database.Server}, &srv); err != nil {
		return backup.Database{}, err
	}
	cfg, err := adminConfig(ctx, e.Reader, e.Namespace, &srv)
	if err != nil {
		return backup.Database{}, err
	}
	return backup.Database{Conn: cfg, Name: t.Status.Database.Name, PgDump: e.Programs.PgDump, Psql: e.Programs.Psql,
		RestrictKey: backup.DeriveRestrictKey(env.repos[env.primary].Password, t.Name)}, nil
}

func (e *BackupExecutor) snapshot(ctx context.Context, env *taskEnv, sp runner.Spec) (backup.SnapshotResult, error) {
	db, err := e.database(ctx, env)
	if err != nil {
		return backup.SnapshotResult{}, err
	}
	if err := recordedDatabaseThere(ctx, db, env.tenant); err != nil {
		return backup.SnapshotResult{}, err
	}
	objects, err := e.objects(ctx, env.tenant)
	if err != nil {
		return backup.SnapshotResult{}, fmt.Errorf("reading the tenant's objects: %w", err)
	}
	return backup.Snapshot(ctx, env.repos[sp.Location], backup.SnapshotInput{
		Tenant: env.tenant.Name, Slot: sp.Slot, Database: db, Objects: objects, TempDir: env.dir, FirstAttempt: sp.Attempt == 1})
}

// objects reads the tenant namespaces' objects as YAML, keyed <namespace>/<kind>/<name>.yaml.
func (e *BackupExecutor) objects(ctx context.Context, t *custosv1alpha1.Tenant) (map[string][]byte, error) {
	out := map[string][]byte{}
	for _, ns := range t.Status.Namespaces {
		for _, gvk := range objectKinds {
			list := &unstructured.UnstructuredList{}
			list.SetGroupVersionKind(gvk.GroupVersion().WithKind(gvk.Kind + "List"))
			if err := e.Reader.List(ctx, list, client.InNamespace(ns.Name)); err != nil {
				return nil, fmt.Errorf("%s in %s: %w", gvk.Kind, ns.Name, err)
			}
			for i := range list.Items {
				o := &list.Items[i]
				o.SetManagedFields(nil)
				b, err := yaml.Marshal(o.Object)
				if err != nil {
					return nil, err
				}
				out[fmt.Sprintf("%s/%s/%s.yaml", ns.Name, strings.ToLower(gvk.Kind), o.GetName())] = b
			}
		}
	}
	return out, nil
}

// recordedDatabaseThere refuses to dump a database other than the one custos made for the tenant: the database
// of that name must have the OID recorded in status (one made again, empty, must never be backed up in its place).
func recordedDatabaseThere(ctx context.Context, db backup.Database, t *custosv1alpha1.Tenant) error {
	want := t.Status.Database.OID
	if want == 0 {
		return nil
	}
	srv, err := postgres.Connect(ctx, db.Conn)
	if err != nil {
		return err
	}
	defer func() { _ = srv.Close(context.WithoutCancel(ctx)) }()
	oid, ok, err := srv.DatabaseOID(ctx, db.Name)
	switch {
	case err != nil:
		return err
	case !ok:
		return fmt.Errorf("database %s (OID %d) is missing: no snapshot is taken", db.Name, want)
	case int64(oid) != want:
		return fmt.Errorf("database %s has OID %d, not the recorded %d (it was made again outside custos): no snapshot is taken", db.Name, oid, want)
	}
	return nil
}
