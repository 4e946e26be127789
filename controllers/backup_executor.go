package controllers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
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
	"github.com/custos-io/custos/internal/lifecycle"
	"github.com/custos-io/custos/internal/postgres"
	"github.com/custos-io/custos/internal/restic"
	"github.com/custos-io/custos/internal/retention"
	"github.com/custos-io/custos/internal/runner"
	"github.com/custos-io/custos/internal/storage"
)

// Programs are the external programs backups need.
type Programs struct {
	Restic, PgDump, Psql string
	// BackendRetryLimit stops a restic command once one backend operation has kept failing this long (restic's
	// own limit is 15 minutes, during which the task would hold its location's runner slots); the task fails with
	// the reason Unreachable and is retried. Zero leaves it to restic.
	BackendRetryLimit time.Duration
	// ObjectsLimit caps the bytes of Kubernetes objects (as YAML) one snapshot saves of a tenant's namespaces;
	// a tenant above it gets no new snapshot and the reason ObjectsTooLarge, instead of a manager that runs out
	// of memory or disk. Zero means DefaultObjectsLimit.
	ObjectsLimit int64
}

// DefaultObjectsLimit is Programs.ObjectsLimit when none is set: a few hundred ConfigMaps at the API server's
// 1 MiB object limit.
const DefaultObjectsLimit = 256 << 20

// objectsPageSize is how many objects of a kind one list call returns: at most this many objects (each at most
// the API server's ~1.5 MiB request limit) are in memory at once.
const objectsPageSize = 50

// errObjectsTooLarge is a snapshot refused because the tenant's objects exceed the limit.
type errObjectsTooLarge struct {
	limit int64
	at    string
}

func (e *errObjectsTooLarge) Error() string {
	return fmt.Sprintf("the objects of the tenant's namespaces exceed %d bytes as YAML (the manager's --objects-limit) at %s: "+
		"no snapshot is taken; remove large ConfigMaps or Secrets from the tenant's namespaces, or raise the limit", e.limit, e.at)
}

// errLostHeld is an expiry stopped because the tenant's database is missing: nothing was forgotten.
var errLostHeld = errors.New("the tenant's database is missing (see DatabaseReady): no snapshot expires until a person accepts the loss; nothing was forgotten")

// errHeld is an expiry stopped by a legal hold: nothing was forgotten.
type errHeld struct{ reason string }

func (e *errHeld) Error() string {
	return "a legal hold (" + e.reason + ") stops every expiry: nothing was forgotten"
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
	// ListedAt is when the snapshots were listed (before the listing started).
	ListedAt time.Time `json:"listedAt,omitempty"`
}

// taskOutput is a task's result as JSON (a Job runner would read it back from the Job).
type taskOutput struct {
	Locations map[string]locationSummary `json:"locations,omitempty"`
	Snapshot  *backup.SnapshotResult     `json:"snapshot,omitempty"`
	Expired   int                        `json:"expired,omitempty"`
	// DeletedVersions are the noncurrent versions and delete markers an expiry deleted after its prune
	// (a versioned S3 bucket).
	DeletedVersions int                 `json:"deletedVersions,omitempty"`
	Copied          int                 `json:"copied,omitempty"`
	CheckError      string              `json:"checkError,omitempty"`
	Drill           *backup.DrillResult `json:"drill,omitempty"`
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
	// retired is true for a location of the tenant's repositories that the policy no longer names.
	retired map[string]bool
}

// active is true while the tenant's contract runs: expiry keeps its newest good snapshot.
func (env *taskEnv) active() bool { return !env.tenant.Status.Phase.ExitStarted() }

// Execute implements runner.Executor.
func (e *BackupExecutor) Execute(ctx context.Context, sp runner.Spec) ([]byte, error) {
	switch sp.Kind {
	case custosv1alpha1.TaskShred:
		return e.shred(ctx, sp)
	case custosv1alpha1.TaskExport:
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
	if sp.Kind == custosv1alpha1.TaskCopy {
		touched = []string{env.primary, sp.Location}
	}
	if env.retired[sp.Location] && sp.Kind != custosv1alpha1.TaskExpiry {
		return nil, fmt.Errorf("location %q is no longer in the tenant's RetentionPolicy: only its expiry runs there", sp.Location)
	}
	if err := e.heldBack(env.tenant, sp.Kind); err != nil {
		// Submitted before the hold or the loss was recorded and started after: held back as the controller would.
		return nil, err
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
	case custosv1alpha1.TaskSnapshot:
		res, err := e.snapshot(ctx, env, sp)
		if err != nil {
			return nil, err
		}
		out.Snapshot = &res
	case custosv1alpha1.TaskCopy:
		n, err := backup.Copy(ctx, env.repos[env.primary], env.repos[sp.Location], env.tenant.Name, env.keep, now, env.active())
		if err != nil {
			return nil, err
		}
		out.Copied = n
	case custosv1alpha1.TaskExpiry:
		primaryHolds := false
		if lb := env.tenant.LocationStatus(env.primary); lb != nil {
			primaryHolds = lb.Snapshots > 0
		}
		n, err := backup.Expire(ctx, env.repos[sp.Location], env.tenant.Name, backup.ExpireOptions{
			KeepWithin: env.keep, Now: now,
			KeepNewest: retention.KeepNewest(env.active(), env.retired[sp.Location], primaryHolds),
			Guard:      func(ctx context.Context) error { return e.notHeld(ctx, env.tenant.Name) },
		})
		if err != nil {
			return nil, err
		}
		out.Expired = n
		// A versioned S3 bucket keeps what the prune deleted as noncurrent versions: delete them too, so the
		// expired data is gone, not hidden. Every run looks, so a run stopped between the two finishes the job.
		dv, err := storage.PurgeDeletedVersions(ctx, env.repos[sp.Location])
		if err != nil {
			return nil, err
		}
		out.DeletedVersions = dv.Versions
	case custosv1alpha1.TaskCheck:
		if err := env.repos[sp.Location].Check(ctx, env.policy.Spec.Check.ReadDataSubset); err != nil {
			var re *restic.Error
			if !errors.As(err, &re) || re.Code != restic.ExitFatal || ctx.Err() != nil {
				return nil, err
			}
			out.CheckError = re.Message // the repository answered and reported damage: a result, not a retry
		}
	case custosv1alpha1.TaskDrill:
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
		listed := e.Clock.Now()
		sum, _, err := backup.Summarize(ctx, env.repos[loc], env.tenant.Name)
		if err != nil {
			return nil, fmt.Errorf("listing snapshots at %s: %w", loc, err)
		}
		id, err := env.repos[loc].ID(ctx)
		if err != nil {
			return nil, err
		}
		out.Locations[loc] = locationSummary{RepositoryID: id, Snapshots: sum.Count, Oldest: sum.Oldest, Newest: sum.Newest, ListedAt: listed}
	}
	return json.Marshal(out)
}

// notHeld re-reads the tenant right before an expiry forgets anything: a legal hold set (or the tenant's database
// found missing) since the task started stops it with nothing forgotten.
func (e *BackupExecutor) notHeld(ctx context.Context, tenant string) error {
	var t custosv1alpha1.Tenant
	if err := e.Reader.Get(ctx, client.ObjectKey{Name: tenant}, &t); err != nil {
		return err
	}
	// Read again after the expiry listed its snapshots: a hold or a loss recorded meanwhile still stops it.
	return e.heldBack(&t, custosv1alpha1.TaskExpiry)
}

// heldBack says why a task of this kind must not run for the tenant now: an expiry under a legal hold, or any task
// but the integrity check while the tenant's database is missing (its snapshots stay until a person accepts the
// loss).
func (e *BackupExecutor) heldBack(t *custosv1alpha1.Tenant, kind custosv1alpha1.TaskKind) error {
	if kind == custosv1alpha1.TaskExpiry && lifecycle.HoldActive(t.Spec.LegalHold, e.Clock.Now()) {
		return &errHeld{t.Spec.LegalHold.Reason}
	}
	if kind != custosv1alpha1.TaskCheck && t.DatabaseLost() {
		return errLostHeld
	}
	return nil
}

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
	if err != nil && (sp.Kind == custosv1alpha1.TaskExpiry || sp.Kind == custosv1alpha1.TaskCopy) {
		return nil, fmt.Errorf("keepWithin: %w", err) // never a window of 0; a snapshot still runs
	}
	if err := os.MkdirAll(e.WorkDir, 0o700); err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp(e.WorkDir, "task-")
	if err != nil {
		return nil, err
	}
	env := &taskEnv{tenant: &t, policy: &p, keep: keep, dir: dir, repos: map[string]restic.Repository{}, backends: map[string]backend{},
		primary: p.Spec.Primary.Name, retired: map[string]bool{}}
	locs := []string{p.Spec.Primary.Name}
	if p.Spec.Offsite != nil {
		env.offsite = p.Spec.Offsite.Name
		locs = append(locs, env.offsite)
	}
	if sp.Location != "" && !slices.Contains(locs, sp.Location) && t.LocationStatus(sp.Location) != nil {
		// A location the tenant's repositories were in before the policy changed: still expired until empty.
		env.retired[sp.Location] = true
		locs = append(locs, sp.Location)
	}
	keys := &corev1.Secret{}
	if err := e.Reader.Get(ctx, client.ObjectKey{Namespace: e.Namespace, Name: t.RepoKeySecretName()}, keys); err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("repository keys: %w", err)
	}
	for _, loc := range locs {
		var bl custosv1alpha1.BackupLocation
		if err := e.Reader.Get(ctx, client.ObjectKey{Name: loc}, &bl); err != nil {
			_ = os.RemoveAll(dir)
			return nil, err
		}
		// Deleting is allowed anywhere: a retired location outside today's jurisdictions is still expired.
		if !env.retired[loc] && !custosv1alpha1.JurisdictionAdmitted(p.Spec.AllowedJurisdictions, bl.Spec.Jurisdiction) {
			_ = os.RemoveAll(dir)
			return nil, &probeError{custosv1alpha1.ReasonJurisdictionNotAllowed, fmt.Sprintf("%s is in %s, which the policy does not allow", loc, bl.Spec.Jurisdiction)}
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
	return backup.Snapshot(ctx, env.repos[sp.Location], backup.SnapshotInput{
		Tenant: env.tenant.Name, Slot: sp.Slot, Database: db, TempDir: env.dir, FirstAttempt: sp.Attempt == 1,
		WriteObjects: func(ctx context.Context, dir string) error {
			if err := e.writeObjects(ctx, env.tenant, dir); err != nil {
				return fmt.Errorf("reading the tenant's objects: %w", err)
			}
			return nil
		}})
}

// writeObjects writes the tenant namespaces' objects as YAML into dir, as <namespace>/<kind>/<name>.yaml, one
// page at a time (eachObject).
func (e *BackupExecutor) writeObjects(ctx context.Context, t *custosv1alpha1.Tenant, dir string) error {
	return e.eachObject(ctx, t, func(path string, b []byte) error {
		p := filepath.Join(dir, filepath.Clean("/"+path))
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			return err
		}
		return os.WriteFile(p, b, 0o600)
	})
}

// objects reads the tenant namespaces' objects as YAML, keyed <namespace>/<kind>/<name>.yaml (for an export
// bag); Programs.ObjectsLimit bounds what it holds.
func (e *BackupExecutor) objects(ctx context.Context, t *custosv1alpha1.Tenant) (map[string][]byte, error) {
	out := map[string][]byte{}
	err := e.eachObject(ctx, t, func(path string, b []byte) error {
		out[path] = b
		return nil
	})
	return out, err
}

// eachObject hands each object of the tenant's namespaces to fn as YAML, with its path
// <namespace>/<kind>/<name>.yaml. Each kind is listed in pages of objectsPageSize (Limit and Continue), and a
// page is handed on before the next is read, so the manager holds one page at a time however many objects a
// tenant has. Past Programs.ObjectsLimit bytes it stops with errObjectsTooLarge: a tenant cannot make the
// manager run out of memory or disk (and so stop every other tenant's tasks) with its own objects.
func (e *BackupExecutor) eachObject(ctx context.Context, t *custosv1alpha1.Tenant, fn func(path string, b []byte) error) error {
	limit := e.Programs.ObjectsLimit
	if limit <= 0 {
		limit = DefaultObjectsLimit
	}
	var total int64
	for _, ns := range t.Status.Namespaces {
		for _, gvk := range objectKinds {
			cont := ""
			for {
				list := &unstructured.UnstructuredList{}
				list.SetGroupVersionKind(gvk.GroupVersion().WithKind(gvk.Kind + "List"))
				if err := e.Reader.List(ctx, list, client.InNamespace(ns.Name), client.Limit(objectsPageSize), client.Continue(cont)); err != nil {
					return fmt.Errorf("%s in %s: %w", gvk.Kind, ns.Name, err)
				}
				for i := range list.Items {
					o := &list.Items[i]
					o.SetManagedFields(nil)
					b, err := yaml.Marshal(o.Object)
					if err != nil {
						return err
					}
					if total += int64(len(b)); total > limit {
						return &errObjectsTooLarge{limit: limit, at: fmt.Sprintf("%s %s/%s", gvk.Kind, ns.Name, o.GetName())}
					}
					if err := fn(fmt.Sprintf("%s/%s/%s.yaml", ns.Name, strings.ToLower(gvk.Kind), o.GetName()), b); err != nil {
						return err
					}
				}
				list.Items = nil
				if cont = list.GetContinue(); cont == "" {
					break
				}
			}
		}
	}
	return nil
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
