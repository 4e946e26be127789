package storage

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/custos-io/custos/internal/restic"
)

// Object types of a restic repository, in the order a shred deletes them: the contents first, then config before
// keys (a config without keys makes restic answer "wrong password", exit code 12, which a retry could not tell
// from a repository that is not ours; keys without a config make it answer "does not exist", exit code 10), and
// the locks last.
var deleteOrder = []string{"data", "index", "snapshots", "config", "keys", "locks"}

// typeRank orders objects by deleteOrder.
func typeRank(t string) int {
	for i, o := range deleteOrder {
		if o == t {
			return i
		}
	}
	return len(deleteOrder)
}

// object is one file of a repository at its backend.
type object struct {
	// Type is data, index, snapshots, config, keys or locks.
	Type string
	// Name is the file name (the hex id; "config" for the config).
	Name string
	Size int64
	// Version is the S3 versionId of one version or delete marker of the object ("" elsewhere).
	Version string
	// latest is the S3 version that is current; it is deleted after the others of its key (a server may promote
	// the next version when the current one goes).
	latest bool
	// marker is an S3 delete marker (the object was deleted; its older versions stay until deleted by id).
	marker bool
	// path is the file of a local repository, or the key of an S3 object.
	path string
}

func (o object) key() string {
	if o.Version != "" {
		return o.Type + "/" + o.Name + "@" + o.Version
	}
	return o.Type + "/" + o.Name
}

// sortObjects puts objects in deletion order: by type, then name, the current version of a name last.
func sortObjects(objs []object) {
	sort.SliceStable(objs, func(i, j int) bool {
		if ri, rj := typeRank(objs[i].Type), typeRank(objs[j].Type); ri != rj {
			return ri < rj
		}
		if objs[i].Name != objs[j].Name {
			return objs[i].Name < objs[j].Name
		}
		return !objs[i].latest && objs[j].latest
	})
}

// backend is where a repository's objects live, addressed without restic.
type backend interface {
	// kind is local, rest or s3.
	kind() string
	// display is the repository's address without credentials.
	display() string
	// list returns every object of the repository; none when the repository does not exist.
	list(ctx context.Context) ([]object, error)
	// remove deletes objects, in the order given, and returns how many are gone (removing an object that is
	// already gone counts: deletion is idempotent).
	remove(ctx context.Context, objs []object) (int, error)
	// removeContainer removes what holds the repository (a local directory) when the backend allows it, and
	// says what it did.
	removeContainer(ctx context.Context) (string, error)
	// absence describes, for the verification, where the listing looked.
	absence() string
}

// ErrUnsupported is returned for a repository whose backend custos cannot yet delete objects from.
var ErrUnsupported = errors.New("deleting a repository at this backend is not supported yet")

// newBackend picks the backend of repo.URL.
func newBackend(repo restic.Repository) (backend, error) {
	u := repo.URL
	switch {
	case strings.HasPrefix(u, "rest:"):
		return newRestBackend(u, repo.Env)
	case strings.HasPrefix(u, "s3:"):
		return newS3Backend(u, repo.Env)
	case strings.HasPrefix(u, "local:"):
		return newLocalBackend(strings.TrimPrefix(u, "local:"))
	case strings.HasPrefix(u, "/"), !strings.Contains(u, ":"):
		return newLocalBackend(u)
	}
	scheme, _, _ := strings.Cut(u, ":")
	return nil, fmt.Errorf("%w: %q repositories (local paths, rest: and s3: are)", ErrUnsupported, scheme)
}

// localBackend is a repository in a directory.
type localBackend struct {
	dir string
}

func newLocalBackend(dir string) (*localBackend, error) {
	if !filepath.IsAbs(dir) {
		return nil, fmt.Errorf("local repository %q: not an absolute path", dir)
	}
	clean := filepath.Clean(dir)
	if clean == "/" || filepath.Dir(clean) == "/" {
		// A tenant's repository is <location base>/<tenant>-<uid>: never the root nor a directory right under it.
		return nil, fmt.Errorf("local repository %q: refusing to delete a top-level directory", dir)
	}
	return &localBackend{dir: clean}, nil
}

func (b *localBackend) kind() string    { return "local" }
func (b *localBackend) display() string { return b.dir }
func (b *localBackend) absence() string {
	return "no file of config, data/, index/, keys/, locks/ or snapshots/ under " + b.dir
}

func (b *localBackend) list(ctx context.Context) ([]object, error) {
	var objs []object
	st, err := os.Stat(filepath.Join(b.dir, "config"))
	switch {
	case err == nil:
		objs = append(objs, object{Type: "config", Name: "config", Size: st.Size(), path: filepath.Join(b.dir, "config")})
	case !errors.Is(err, fs.ErrNotExist):
		return nil, err
	}
	for _, t := range []string{"data", "index", "keys", "locks", "snapshots"} {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		root := filepath.Join(b.dir, t)
		err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					return nil
				}
				return err
			}
			if d.IsDir() {
				return nil
			}
			info, err := d.Info()
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					return nil
				}
				return err
			}
			objs = append(objs, object{Type: t, Name: d.Name(), Size: info.Size(), path: p})
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	sortObjects(objs)
	return objs, nil
}

func (b *localBackend) remove(ctx context.Context, objs []object) (int, error) {
	n := 0
	for _, o := range objs {
		if err := ctx.Err(); err != nil {
			return n, err
		}
		if err := os.Remove(o.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return n, err
		}
		n++
	}
	return n, nil
}

// removeEmptyTree removes dir and the directories below it, as long as no file is left anywhere in it.
func removeEmptyTree(dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range entries {
		if e.IsDir() {
			if err := removeEmptyTree(filepath.Join(dir, e.Name())); err != nil {
				return err
			}
		}
	}
	if err := os.Remove(dir); err != nil && !errors.Is(err, fs.ErrNotExist) {
		// Not empty: something that is not restic's is in there; the listing says whether a repository object is.
		if errors.Is(err, syscall.ENOTEMPTY) || errors.Is(err, syscall.EEXIST) {
			return nil
		}
		return err
	}
	return nil
}

func (b *localBackend) removeContainer(context.Context) (string, error) {
	// The emptied type directories (data/00 … data/ff) go first; anything restic did not write is left alone.
	for _, t := range []string{"data", "index", "keys", "locks", "snapshots"} {
		if err := removeEmptyTree(filepath.Join(b.dir, t)); err != nil {
			return "", err
		}
	}
	err := os.Remove(b.dir)
	switch {
	case err == nil:
		return "the repository directory removed", nil
	case errors.Is(err, fs.ErrNotExist):
		return "the repository directory is gone", nil
	}
	entries, rerr := os.ReadDir(b.dir)
	if rerr != nil {
		return "", rerr
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return fmt.Sprintf("the repository directory kept: it holds %d entries restic does not write (%s)", len(names), strings.Join(firstN(names, 5), ", ")), nil
}

func firstN(s []string, n int) []string {
	if len(s) > n {
		return append(append([]string(nil), s[:n]...), "…")
	}
	return s
}

// parallel is how many DELETE requests are in flight at once.
const parallel = 8

// removeParallel deletes objs with up to parallel calls of removeOne at once, one type after the other in the
// order given (config before keys), and stops at the first error. The versions of one object are deleted one
// after the other, in the order given.
func removeParallel(ctx context.Context, objs []object, removeOne func(context.Context, object) error) (int, error) {
	n := 0
	for i := 0; i < len(objs); {
		j := i
		for j < len(objs) && objs[j].Type == objs[i].Type {
			j++
		}
		done, err := removeType(ctx, objs[i:j], removeOne)
		n += done
		if err != nil {
			return n, err
		}
		i = j
	}
	return n, nil
}

func removeType(ctx context.Context, objs []object, removeOne func(context.Context, object) error) (int, error) {
	var units [][]object
	for i, o := range objs {
		if i > 0 && o.Name == objs[i-1].Name {
			units[len(units)-1] = append(units[len(units)-1], o)
		} else {
			units = append(units, []object{o})
		}
	}
	var (
		mu    sync.Mutex
		n     int
		first error
		wg    sync.WaitGroup
		next  = make(chan []object)
	)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for range min(parallel, len(units)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for unit := range next {
				for _, o := range unit {
					err := removeOne(ctx, o)
					mu.Lock()
					if err == nil {
						n++
					} else if first == nil {
						first = err
						cancel()
					}
					mu.Unlock()
					if err != nil {
						break
					}
				}
			}
		}()
	}
feed:
	for _, u := range units {
		select {
		case next <- u:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	if first == nil {
		first = ctx.Err()
	}
	return n, first
}

// httpClient is a client for a backend reached over HTTP, with restic's TLS settings from env (RESTIC_CACERT,
// RESTIC_TLS_CLIENT_CERT) and no proxy (restic runs without the manager's proxy settings too).
func httpClient(env []string, display string) (*http.Client, error) {
	tlsConf := &tls.Config{MinVersion: tls.VersionTLS12}
	if files := envValue(env, "RESTIC_CACERT"); files != "" {
		pool := x509.NewCertPool()
		for _, f := range strings.Split(files, ",") {
			pem, err := os.ReadFile(f)
			if err != nil {
				return nil, fmt.Errorf("CA bundle of %s: %w", display, err)
			}
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("CA bundle %s of %s holds no PEM certificate", f, display)
			}
		}
		tlsConf.RootCAs = pool
	}
	if f := envValue(env, "RESTIC_TLS_CLIENT_CERT"); f != "" {
		pem, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("TLS client certificate of %s: %w", display, err)
		}
		cert, err := tls.X509KeyPair(pem, pem)
		if err != nil {
			return nil, fmt.Errorf("TLS client certificate of %s: %w", display, err)
		}
		tlsConf.Certificates = []tls.Certificate{cert}
	}
	return &http.Client{
		Transport: &http.Transport{TLSClientConfig: tlsConf, Proxy: nil, MaxIdleConnsPerHost: parallel,
			ResponseHeaderTimeout: time.Minute},
		// A request never waits longer than this, even if the caller's context would.
		Timeout: 2 * time.Minute,
	}, nil
}
