package storage

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

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
	// path is the file of a local repository.
	path string
}

func (o object) key() string { return o.Type + "/" + o.Name }

// sortObjects puts objects in deletion order.
func sortObjects(objs []object) {
	sort.SliceStable(objs, func(i, j int) bool {
		if ri, rj := typeRank(objs[i].Type), typeRank(objs[j].Type); ri != rj {
			return ri < rj
		}
		return objs[i].Name < objs[j].Name
	})
}

// backend is where a repository's objects live, addressed without restic.
type backend interface {
	// kind is local or rest.
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
	case strings.HasPrefix(u, "local:"):
		return newLocalBackend(strings.TrimPrefix(u, "local:"))
	case strings.HasPrefix(u, "/"), !strings.Contains(u, ":"):
		return newLocalBackend(u)
	}
	scheme, _, _ := strings.Cut(u, ":")
	return nil, fmt.Errorf("%w: %q repositories (only local paths and rest: are)", ErrUnsupported, scheme)
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
