package testharness

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
)

// BinDir is where hack/tools.sh puts the pinned tools: $CUSTOS_BIN, or bin/ at the module root.
func BinDir() (string, error) {
	if d := os.Getenv("CUSTOS_BIN"); d != "" {
		return filepath.Abs(d)
	}
	root, err := RepoRoot()
	if err != nil {
		return "", fmt.Errorf("%w and CUSTOS_BIN is not set", err)
	}
	return filepath.Join(root, "bin"), nil
}

// RepoRoot is the directory holding go.mod, found upwards from the working directory.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod above the working directory")
		}
		dir = parent
	}
}

// Tool returns the path of a tool built into bin/, or an error telling how to build it.
func Tool(name string) (string, error) {
	d, err := BinDir()
	if err != nil {
		return "", err
	}
	p := filepath.Join(d, name)
	if st, err := os.Stat(p); err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
		return "", fmt.Errorf("%s not found in %s: run `make tools-test` (hack/tools.sh %s)", name, d, name)
	}
	return p, nil
}

// PostgresBinary finds a PostgreSQL server program (initdb, pg_ctl, postgres, pg_dump): on PATH, else in the
// newest /usr/lib/postgresql/<version>/bin, where Debian's packages put them.
func PostgresBinary(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Sort(sort.Reverse(sort.StringSlice(dirs)))
	for _, d := range dirs {
		p := filepath.Join(d, name)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found on PATH nor in /usr/lib/postgresql/*/bin: install Debian's postgresql package", name)
}
