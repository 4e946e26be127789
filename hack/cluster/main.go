// Command cluster brings up, and tears down, a real one-node Kubernetes cluster on this machine, built only from
// the Go module proxy (bin/, hack/tools.sh) and Debian's packages (hack/cluster-packages.sh): etcd,
// kube-apiserver, kube-controller-manager, kube-scheduler, containerd + runc with the CNI bridge plugin, kubelet,
// kube-proxy (iptables) and kube-router as the NetworkPolicy enforcer (iptables + ipset), plus the platform's
// services on the host: a PostgreSQL server (TLS) and a rest-server (TLS) for the backup locations.
//
//	go run ./hack/cluster up        start everything (state in .cluster/, logs in .cluster/logs/)
//	go run ./hack/cluster images    build the custos and testbox images from local parts and import them
//	go run ./hack/cluster install   helm install charts/custos and create the platform's objects
//	go run ./hack/cluster down      stop everything it started (by the PIDs it recorded) and remove .cluster/
//	go run ./hack/cluster env       print the environment the e2e/cluster suite reads
//
// It must run as root (containerd, kubelet, iptables). Every process it starts is recorded in .cluster/pids/;
// down stops those PIDs, the containers of its own containerd (found through its own socket) and the network
// devices and rules it made, and nothing else.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The cluster's fixed addresses. The node's IP sits on a device of its own (custos-node), so it does not depend
// on the machine's network; pods reach the host's services (the API server, PostgreSQL, rest-server) there.
const (
	nodeName     = "custos-node"
	nodeDevice   = "custos-node"
	nodeIP       = "10.250.0.1"
	podCIDR      = "10.244.0.0/16"
	nodePodCIDR  = "10.244.0.0/24" // the first /24 the controller-manager hands out: the only node's
	podBridge    = "custos0"
	serviceCIDR  = "10.96.0.0/16"
	serviceAPIIP = "10.96.0.1"
	etcdPort     = 23790
	apiPort      = 6443
	pgPort       = 5432
	restPort     = 8000
)

type env struct {
	root  string // the repository
	bin   string // bin/: the tools hack/tools.sh built
	state string // .cluster/
}

func (e env) path(p ...string) string { return filepath.Join(append([]string{e.state}, p...)...) }
func (e env) tool(name string) string { return filepath.Join(e.bin, name) }

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "[cluster %s] %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: go run ./hack/cluster up|images|install|down|env")
		os.Exit(2)
	}
	root, err := os.Getwd()
	if err != nil {
		panic(err)
	}
	e := env{root: root, bin: envOr("BIN", filepath.Join(root, "bin")), state: envOr("CUSTOS_CLUSTER_DIR", filepath.Join(root, ".cluster"))}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	switch os.Args[1] {
	case "up":
		err = up(ctx, e)
	case "images":
		err = images(ctx, e)
	case "install":
		err = install(ctx, e)
	case "down":
		err = down(e)
	case "env":
		for _, kv := range suiteEnv(e) {
			fmt.Println("export " + kv)
		}
	default:
		err = fmt.Errorf("unknown command %q: up, images, install, down or env", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "cluster:", err)
		os.Exit(1)
	}
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// run runs a command to its end and returns its error with the command's output.
func run(ctx context.Context, name string, args ...string) error {
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

func output(ctx context.Context, name string, args ...string) (string, error) {
	out, err := exec.CommandContext(ctx, name, args...).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return "", fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(ee.Stderr)))
		}
		return "", fmt.Errorf("%s %s: %w", name, strings.Join(args, " "), err)
	}
	return string(out), nil
}

// daemon starts a long-running component in a process group of its own, detached from this program, with its
// output in logs/<name>.log, and records its PID in pids/<name>. A component already recorded and alive is left
// as it is (up is idempotent).
func daemon(e env, name string, cred *syscall.Credential, cmdline ...string) error {
	if pid, ok := alive(e, name); ok {
		logf("%s already runs (pid %d)", name, pid)
		return nil
	}
	if err := os.MkdirAll(e.path("logs"), 0o755); err != nil {
		return err
	}
	if err := os.MkdirAll(e.path("pids"), 0o755); err != nil {
		return err
	}
	logFile, err := os.OpenFile(e.path("logs", name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logFile.Close()
	cmd := exec.Command(cmdline[0], cmdline[1:]...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: cred}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", name, err)
	}
	pid := cmd.Process.Pid
	if err := os.WriteFile(e.path("pids", name), []byte(strconv.Itoa(pid)), 0o644); err != nil {
		return err
	}
	_ = cmd.Process.Release()
	logf("%s started (pid %d, log %s)", name, pid, e.path("logs", name+".log"))
	return nil
}

// alive reports the recorded PID of name when that process still runs.
func alive(e env, name string) (int, bool) {
	b, err := os.ReadFile(e.path("pids", name))
	if err != nil {
		return 0, false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		return 0, false
	}
	if syscall.Kill(pid, 0) != nil {
		return pid, false
	}
	// A zombie or a reused PID is not ours: the process must be in the group we made for it.
	if pgid, err := syscall.Getpgid(pid); err != nil || pgid != pid {
		return pid, false
	}
	return pid, true
}

// stopDaemon sends SIGTERM to the recorded process group, and SIGKILL after grace.
func stopDaemon(e env, name string, grace time.Duration) {
	pid, ok := alive(e, name)
	if !ok {
		_ = os.Remove(e.path("pids", name))
		return
	}
	_ = syscall.Kill(-pid, syscall.SIGTERM)
	deadline := time.Now().Add(grace)
	for time.Now().Before(deadline) {
		if _, ok := alive(e, name); !ok {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if _, ok := alive(e, name); ok {
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		time.Sleep(300 * time.Millisecond)
	}
	_ = os.Remove(e.path("pids", name))
	logf("%s stopped (pid %d)", name, pid)
}

// waitFor polls check until it succeeds, the timeout passes or ctx ends; what names the wait in errors, and the
// component's log is named so a failure can be read.
func waitFor(ctx context.Context, what string, timeout time.Duration, check func() error) error {
	deadline := time.Now().Add(timeout)
	var last error
	for {
		if last = check(); last == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after %s: %w", what, timeout, last)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// suiteEnv is what the e2e/cluster suite and kubectl need to talk to this cluster.
func suiteEnv(e env) []string {
	return []string{
		"KUBECONFIG=" + e.path("admin.kubeconfig"),
		"KUBECTL=" + e.tool("kubectl"),
		"CUSTOS_E2E_CONTAINERD_SOCKET=" + e.path("containerd", "containerd.sock"),
		"CUSTOS_NAMESPACE=" + managerNamespace,
		"CUSTOS_E2E_DATABASESERVER=" + databaseServerName,
		"CUSTOS_E2E_RETENTIONPOLICY=" + policyName,
		"CUSTOS_E2E_EXPORT_DIR=" + e.path("exports"),
		"CUSTOS_E2E_NODE_IP=" + nodeIP,
		"CUSTOS_E2E_DATABASE_PORT=" + strconv.Itoa(pgPort),
		"CUSTOS_E2E_TESTBOX_IMAGE=" + testboxImage,
	}
}
