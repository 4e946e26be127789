package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// The images the cluster runs, built from local parts (no registry is reachable) and imported into containerd.
const (
	custosImage  = "localhost/custos:dev"
	testboxImage = "localhost/custos-testbox:dev"
)

// The same contents, user and entrypoint as the Dockerfile's image: the manager, the CLI, restic, and PostgreSQL
// 15's pg_dump and psql at their Debian paths (here with the shared libraries they load), CA certificates,
// time zones, and user 65532.
var custosEntrypoint = `["/usr/local/bin/custos-manager","--restic=/usr/local/bin/restic","--pg-dump=/usr/lib/postgresql/15/bin/pg_dump","--psql=/usr/lib/postgresql/15/bin/psql"]`

func images(ctx context.Context, e env) error {
	start := time.Now()
	src := envOr("CUSTOS_SOURCE", e.root)
	stage := e.path("images")
	if err := os.RemoveAll(stage); err != nil {
		return err
	}
	custos := filepath.Join(stage, "custos")
	for _, b := range []struct{ out, pkg string }{
		{custos + "/usr/local/bin/custos-manager", "./cmd/manager"},
		{custos + "/usr/local/bin/custos", "./cmd/custos"},
		{stage + "/testbox/testbox", "./hack/cluster/testbox"},
	} {
		cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", "-s -w", "-o", b.out, b.pkg)
		cmd.Dir = src
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=-buildvcs=false", "GOTOOLCHAIN=local")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go build %s: %w: %s", b.pkg, err, out)
		}
	}
	if err := copyFile(e.tool("restic"), custos+"/usr/local/bin/restic", 0o755); err != nil {
		return err
	}
	for _, prog := range []string{"/usr/lib/postgresql/15/bin/pg_dump", "/usr/lib/postgresql/15/bin/psql"} {
		if err := copyWithLibraries(ctx, prog, custos); err != nil {
			return err
		}
	}
	for _, f := range []string{"/etc/ssl/certs/ca-certificates.crt"} {
		if err := copyFile(f, custos+f, 0o644); err != nil {
			return fmt.Errorf("%w (Debian's ca-certificates package)", err)
		}
	}
	if err := os.MkdirAll(custos+"/usr/share", 0o755); err != nil {
		return err
	}
	if err := run(ctx, "cp", "-a", "/usr/share/zoneinfo", custos+"/usr/share/zoneinfo"); err != nil {
		return err
	}
	if err := writeFile(custos+"/etc/passwd", "root:x:0:0:root:/root:/usr/sbin/nologin\ncustos:x:65532:65532::/tmp:/usr/sbin/nologin\n"); err != nil {
		return err
	}
	if err := writeFile(custos+"/etc/group", "root:x:0:\ncustos:x:65532:\n"); err != nil {
		return err
	}
	if err := os.MkdirAll(custos+"/tmp", 0o1777); err != nil {
		return err
	}
	if err := os.Chmod(custos+"/tmp", 0o1777); err != nil {
		return err
	}
	if err := buildImage(ctx, e, custosImage, custos, "--entrypoint", custosEntrypoint, "--user", "65532:65532",
		"--env", "HOME=/tmp", "--env", "TMPDIR=/tmp", "--workingdir", "/tmp"); err != nil {
		return err
	}
	if err := writeFile(stage+"/testbox/etc/passwd", "testbox:x:65532:65532::/:/testbox\n"); err != nil {
		return err
	}
	if err := buildImage(ctx, e, testboxImage, stage+"/testbox", "--entrypoint", `["/testbox"]`, "--cmd", `["pause"]`, "--user", "65532:65532"); err != nil {
		return err
	}
	logf("images %s and %s built and imported in %s", custosImage, testboxImage, time.Since(start).Round(time.Second))
	return nil
}

func copyFile(from, to string, mode os.FileMode) error {
	b, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
		return err
	}
	return os.WriteFile(to, b, mode)
}

var lddLine = regexp.MustCompile(`(?:=>\s*)?(/\S+)\s+\(0x`)

// copyWithLibraries copies prog and every shared library ldd says it loads (and the dynamic loader) into root at
// their own paths.
func copyWithLibraries(ctx context.Context, prog, root string) error {
	out, err := output(ctx, "ldd", prog)
	if err != nil {
		return err
	}
	files := []string{prog}
	for _, line := range strings.Split(out, "\n") {
		if m := lddLine.FindStringSubmatch(line); m != nil {
			files = append(files, m[1])
		}
	}
	for _, f := range files {
		real, err := filepath.EvalSymlinks(f)
		if err != nil {
			return err
		}
		if err := copyFile(real, root+f, 0o755); err != nil {
			return err
		}
	}
	return nil
}

// buildImage commits the directory dir as a one-layer image from scratch with buildah (its own storage under
// .cluster/buildah, the vfs driver) and imports it into the cluster's containerd.
func buildImage(ctx context.Context, e env, name, dir string, config ...string) error {
	b := []string{"--root", e.path("buildah", "root"), "--runroot", e.path("buildah", "run"), "--storage-driver", "vfs"}
	id, err := output(ctx, "buildah", append(b, "from", "scratch")...)
	if err != nil {
		return err
	}
	id = strings.TrimSpace(id)
	defer func() { _ = run(context.Background(), "buildah", append(b, "rm", id)...) }()
	if err := run(ctx, "buildah", append(b, "copy", "--chown", "0:0", id, dir+"/", "/")...); err != nil {
		return err
	}
	if err := run(ctx, "buildah", append(append(append(b, "config"), config...), id)...); err != nil {
		return err
	}
	if err := run(ctx, "buildah", append(b, "commit", "--quiet", id, name)...); err != nil {
		return err
	}
	archive := e.path("images", strings.NewReplacer("/", "_", ":", "_").Replace(name)+".tar")
	if err := run(ctx, "buildah", append(b, "push", "--quiet", name, "oci-archive:"+archive+":"+name)...); err != nil {
		return err
	}
	return run(ctx, "ctr", "--address", e.path("containerd", "containerd.sock"), "-n", "k8s.io", "images", "import", archive)
}
