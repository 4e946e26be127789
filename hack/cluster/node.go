package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The programs this needs from Debian's packages (hack/cluster-packages.sh installs them).
var hostPrograms = []string{"containerd", "containerd-shim-runc-v2", "runc", "ctr", "iptables", "ipset", "conntrack", "buildah", "ip"}

const cniBin = "/usr/lib/cni"

func preflight(e env) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("must run as root (containerd, kubelet, iptables)")
	}
	var missing []string
	for _, p := range hostPrograms {
		if _, err := exec.LookPath(p); err != nil {
			missing = append(missing, p)
		}
	}
	for _, p := range []string{"bridge", "host-local", "loopback", "portmap"} {
		if _, err := os.Stat(filepath.Join(cniBin, p)); err != nil {
			missing = append(missing, cniBin+"/"+p)
		}
	}
	for _, t := range []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy", "kube-router", "kubectl", "rest-server", "helm"} {
		if _, err := os.Stat(e.tool(t)); err != nil {
			missing = append(missing, e.tool(t)+" (hack/tools.sh "+t+")")
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("missing: %s (make cluster-up installs and builds them)", strings.Join(missing, ", "))
	}
	return nil
}

func writeFile(path, content string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, []byte(content), 0o644)
}

func kubeconfig(e env, name, cert string) error {
	p := e.path("pki")
	return writeFile(e.path(name+".kubeconfig"), fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: custos
  cluster:
    server: https://127.0.0.1:%d
    certificate-authority: %s/ca.crt
users:
- name: %s
  user:
    client-certificate: %s/%s.crt
    client-key: %s/%s.key
contexts:
- name: custos
  context: {cluster: custos, user: %s}
current-context: custos
`, apiPort, p, name, p, cert, p, cert, name))
}

// network makes the node's device and turns on what a bridge CNI and kube-proxy need.
func network(ctx context.Context) error {
	if _, err := net.InterfaceByName(nodeDevice); err != nil {
		// A bridge with no ports: this kernel has no dummy devices, and a bridge holds a local address as well.
		if err := run(ctx, "ip", "link", "add", nodeDevice, "type", "bridge"); err != nil {
			return err
		}
		if err := run(ctx, "ip", "addr", "add", nodeIP+"/32", "dev", nodeDevice); err != nil {
			return err
		}
	}
	if err := run(ctx, "ip", "link", "set", nodeDevice, "up"); err != nil {
		return err
	}
	for k, v := range map[string]string{"net/ipv4/ip_forward": "1", "net/bridge/bridge-nf-call-iptables": "1"} {
		if err := os.WriteFile("/proc/sys/"+k, []byte(v), 0o644); err != nil {
			return fmt.Errorf("sysctl %s=%s: %w", k, v, err)
		}
	}
	return nil
}

func tlsClient(e env) (*http.Client, error) {
	p := e.path("pki")
	pair, err := tls.LoadX509KeyPair(filepath.Join(p, "admin.crt"), filepath.Join(p, "admin.key"))
	if err != nil {
		return nil, err
	}
	caPEM, err := os.ReadFile(filepath.Join(p, "ca.crt"))
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		RootCAs: pool, Certificates: []tls.Certificate{pair}}}}, nil
}

func httpOK(c *http.Client, url string) func() error {
	return func() error {
		resp, err := c.Get(url)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s: %s", url, resp.Status)
		}
		return nil
	}
}

func kubectl(ctx context.Context, e env, args ...string) (string, error) {
	return output(ctx, e.tool("kubectl"), append([]string{"--kubeconfig", e.path("admin.kubeconfig")}, args...)...)
}

func up(ctx context.Context, e env) error {
	start := time.Now()
	if err := preflight(e); err != nil {
		return err
	}
	if err := os.MkdirAll(e.state, 0o755); err != nil {
		return err
	}
	if _, err := os.Stat(e.path("pki", "ca.crt")); os.IsNotExist(err) {
		if err := writePKI(e.path("pki")); err != nil {
			return err
		}
	}
	for _, k := range []struct{ name, cert string }{{"admin", "admin"}, {"kubelet", "kubelet-client"}} {
		if err := kubeconfig(e, k.name, k.cert); err != nil {
			return err
		}
	}
	if err := network(ctx); err != nil {
		return err
	}
	pki := e.path("pki")
	if err := daemon(e, "etcd", nil, e.tool("etcd"), "--name", "custos", "--data-dir", e.path("etcd"),
		"--listen-client-urls", fmt.Sprintf("http://127.0.0.1:%d", etcdPort), "--advertise-client-urls", fmt.Sprintf("http://127.0.0.1:%d", etcdPort),
		"--listen-peer-urls", fmt.Sprintf("http://127.0.0.1:%d", etcdPort+10), "--initial-advertise-peer-urls", fmt.Sprintf("http://127.0.0.1:%d", etcdPort+10),
		"--initial-cluster", fmt.Sprintf("custos=http://127.0.0.1:%d", etcdPort+10), "--unsafe-no-fsync", "--log-level", "warn"); err != nil {
		return err
	}
	if err := waitFor(ctx, "etcd", time.Minute, httpOK(http.DefaultClient, fmt.Sprintf("http://127.0.0.1:%d/health", etcdPort))); err != nil {
		return err
	}
	if err := daemon(e, "kube-apiserver", nil, e.tool("kube-apiserver"),
		"--etcd-servers", fmt.Sprintf("http://127.0.0.1:%d", etcdPort), "--bind-address", "0.0.0.0", "--secure-port", strconv.Itoa(apiPort),
		"--advertise-address", nodeIP, "--service-cluster-ip-range", serviceCIDR,
		"--tls-cert-file", pki+"/apiserver.crt", "--tls-private-key-file", pki+"/apiserver.key", "--client-ca-file", pki+"/ca.crt",
		"--kubelet-client-certificate", pki+"/apiserver-kubelet-client.crt", "--kubelet-client-key", pki+"/apiserver-kubelet-client.key",
		"--kubelet-certificate-authority", pki+"/ca.crt", "--kubelet-preferred-address-types", "InternalIP",
		"--service-account-issuer", "https://kubernetes.default.svc", "--service-account-key-file", pki+"/sa.pub",
		"--service-account-signing-key-file", pki+"/sa.key", "--authorization-mode", "Node,RBAC",
		"--enable-admission-plugins", "NodeRestriction", "--allow-privileged=false", "--profiling=false"); err != nil {
		return err
	}
	api, err := tlsClient(e)
	if err != nil {
		return err
	}
	if err := waitFor(ctx, "kube-apiserver (logs/kube-apiserver.log)", 2*time.Minute, httpOK(api, fmt.Sprintf("https://127.0.0.1:%d/readyz", apiPort))); err != nil {
		return err
	}
	admin := e.path("admin.kubeconfig")
	if err := daemon(e, "kube-controller-manager", nil, e.tool("kube-controller-manager"), "--kubeconfig", admin,
		"--authentication-kubeconfig", admin, "--authorization-kubeconfig", admin, "--bind-address", "127.0.0.1",
		"--leader-elect=false", "--use-service-account-credentials", "--service-account-private-key-file", pki+"/sa.key",
		"--root-ca-file", pki+"/ca.crt", "--allocate-node-cidrs", "--cluster-cidr", podCIDR, "--node-cidr-mask-size", "24",
		"--service-cluster-ip-range", serviceCIDR); err != nil {
		return err
	}
	if err := daemon(e, "kube-scheduler", nil, e.tool("kube-scheduler"), "--kubeconfig", admin,
		"--authentication-kubeconfig", admin, "--authorization-kubeconfig", admin, "--bind-address", "127.0.0.1", "--leader-elect=false"); err != nil {
		return err
	}
	if err := containerd(ctx, e); err != nil {
		return err
	}
	if err := kubelet(ctx, e); err != nil {
		return err
	}
	if err := waitFor(ctx, "node "+nodeName+" Ready (logs/kubelet.log)", 3*time.Minute, func() error {
		out, err := kubectl(ctx, e, "get", "node", nodeName, "-o", `jsonpath={.status.conditions[?(@.type=="Ready")].status} {.spec.podCIDR}`)
		if err != nil {
			return err
		}
		if out != "True "+nodePodCIDR {
			return fmt.Errorf("Ready and podCIDR: %q", out)
		}
		return nil
	}); err != nil {
		return err
	}
	if err := daemon(e, "kube-proxy", nil, e.tool("kube-proxy"), "--kubeconfig", admin, "--proxy-mode", "iptables",
		"--hostname-override", nodeName, "--cluster-cidr", podCIDR, "--conntrack-max-per-core", "0",
		"--metrics-bind-address", "127.0.0.1:10249", "--healthz-bind-address", "127.0.0.1:10256"); err != nil {
		return err
	}
	// kube-router only as the NetworkPolicy enforcer: the CNI bridge wires pods, kube-proxy serves Services.
	if err := daemon(e, "kube-router", nil, e.tool("kube-router"), "--kubeconfig", admin, "--hostname-override", nodeName,
		"--run-firewall=true", "--run-router=false", "--run-service-proxy=false", "--enable-cni=false", "--enable-ipv6=false",
		"--service-cluster-ip-range", serviceCIDR, "--health-port", "20244", "--metrics-port", "0"); err != nil {
		return err
	}
	if err := waitFor(ctx, "kube-proxy (logs/kube-proxy.log)", time.Minute, httpOK(http.DefaultClient, "http://127.0.0.1:10256/healthz")); err != nil {
		return err
	}
	if err := waitFor(ctx, "kube-router (logs/kube-router.log)", 2*time.Minute, httpOK(http.DefaultClient, "http://127.0.0.1:20244/healthz")); err != nil {
		return err
	}
	if err := platformServices(ctx, e); err != nil {
		return err
	}
	logf("cluster up in %s: export KUBECONFIG=%s", time.Since(start).Round(time.Second), admin)
	return nil
}

func containerd(ctx context.Context, e env) error {
	d := e.path("containerd")
	if err := writeFile(filepath.Join(d, "config.toml"), fmt.Sprintf(`version = 2
root = %[1]q
state = %[2]q
[grpc]
  address = %[3]q
[ttrpc]
  address = "%[3]s.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = %[4]q
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %[5]q
  # root here may not lower oom_score_adj; without this runc fails every sandbox (notes/real-node.md).
  restrict_oom_score_adj = true
  disable_apparmor = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = %[6]q
    conf_dir = %[7]q
`, filepath.Join(d, "root"), filepath.Join(d, "state"), e.path("containerd", "containerd.sock"), filepath.Join(d, "opt"),
		testboxImage, cniBin, e.path("cni", "net.d"))); err != nil {
		return err
	}
	if err := writeFile(e.path("cni", "net.d", "10-custos.conflist"), fmt.Sprintf(`{
  "cniVersion": "0.4.0",
  "name": "custos",
  "plugins": [
    {"type": "bridge", "bridge": %q, "isGateway": true, "ipMasq": true, "hairpinMode": true,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": %q}]], "routes": [{"dst": "0.0.0.0/0"}], "dataDir": %q}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
`, podBridge, nodePodCIDR, e.path("cni", "ipam"))); err != nil {
		return err
	}
	if err := daemon(e, "containerd", nil, "containerd", "--config", filepath.Join(d, "config.toml")); err != nil {
		return err
	}
	return waitFor(ctx, "containerd (logs/containerd.log)", time.Minute, func() error {
		return run(ctx, "ctr", "--address", e.path("containerd", "containerd.sock"), "version")
	})
}

func kubelet(ctx context.Context, e env) error {
	pki := e.path("pki")
	cfg := e.path("kubelet", "config.yaml")
	if err := writeFile(cfg, fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
containerRuntimeEndpoint: unix://%s
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: false}
  x509: {clientCAFile: %s/ca.crt}
authorization: {mode: AlwaysAllow}
address: %s
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
tlsCertFile: %s/kubelet.crt
tlsPrivateKeyFile: %s/kubelet.key
# cgroup v1 on this machine: kubelet >= 1.35 refuses it unless told (notes/real-node.md).
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupsPerQOS: false
enforceNodeAllocatable: []
failSwapOn: false
resolvConf: /etc/resolv.conf
serializeImagePulls: false
imageGCHighThresholdPercent: 99
imageGCLowThresholdPercent: 98
evictionHard: {memory.available: 50Mi, nodefs.available: 1%%, imagefs.available: 1%%, nodefs.inodesFree: 1%%}
maxPods: 110
`, e.path("containerd", "containerd.sock"), pki, nodeIP, pki, pki)); err != nil {
		return err
	}
	return daemon(e, "kubelet", nil, e.tool("kubelet"), "--config", cfg, "--kubeconfig", e.path("kubelet.kubeconfig"),
		"--node-ip", nodeIP, "--hostname-override", nodeName, "--root-dir", e.path("kubelet", "root"), "--cert-dir", e.path("kubelet", "pki"))
}

// down stops what up started, in reverse: the containers first (through our own containerd's socket, so no
// other containerd's are touched), then every recorded PID, then the network state it made; and removes
// .cluster/.
func down(e env) error {
	ctx := context.Background()
	if _, err := os.Stat(e.state); os.IsNotExist(err) {
		logf("nothing to tear down (%s does not exist)", e.state)
		return nil
	}
	sock := e.path("containerd", "containerd.sock")
	// Read before anything stops: a sandbox the kubelet does not stop in time leaves its network namespace.
	netns := sandboxNetns(ctx, e, sock)
	drainPods(ctx, e, sock)
	stopDaemon(e, "kubelet", 20*time.Second)
	if _, ok := alive(e, "containerd"); ok {
		if out, err := output(ctx, "ctr", "--address", sock, "-n", "k8s.io", "tasks", "ls", "-q"); err == nil {
			for _, id := range strings.Fields(out) {
				_ = run(ctx, "ctr", "--address", sock, "-n", "k8s.io", "tasks", "kill", "-a", "-s", "SIGKILL", id)
			}
			time.Sleep(time.Second)
			for _, id := range strings.Fields(out) {
				_ = run(ctx, "ctr", "--address", sock, "-n", "k8s.io", "tasks", "delete", "-f", id)
			}
		}
	}
	for _, name := range []string{"kube-router", "kube-proxy", "rest-server", "postgres", "kube-scheduler", "kube-controller-manager", "containerd", "kube-apiserver", "etcd"} {
		stopDaemon(e, name, 15*time.Second)
	}
	// The shims our containerd started outlive it; they carry our socket's path on their command line.
	killShims(sock)
	if _, err := os.Stat(e.tool("kube-proxy")); err == nil {
		_ = run(ctx, e.tool("kube-proxy"), "--cleanup")
	}
	if _, err := os.Stat(e.tool("kube-router")); err == nil {
		_ = run(ctx, e.tool("kube-router"), "--cleanup-config")
	}
	unmountUnder(e.state)
	for _, dev := range []string{podBridge, nodeDevice} {
		if _, err := net.InterfaceByName(dev); err == nil {
			if err := run(ctx, "ip", "link", "del", dev); err != nil {
				logf("%v", err)
			}
		}
	}
	// The masquerade rules of the bridge plugin name our pod network; kubelet and kube-router leave a few
	// chains and rules of their own behind.
	cleanBridgeNAT(ctx)
	cleanKubeRules(ctx)
	for _, p := range netns {
		if _, err := os.Stat(p); err != nil {
			continue // removed with its sandbox
		}
		if err := run(ctx, "ip", "netns", "delete", filepath.Base(p)); err != nil {
			logf("network namespace %s of one of our sandboxes is left: %v", p, err)
		}
	}
	if left, _ := filepath.Glob("/var/run/netns/cni-*"); len(left) > 0 {
		logf("note: %d network namespace(s) /var/run/netns/cni-* are left that none of our containers named (another containerd's, or an earlier cluster's)", len(left))
	}
	if err := os.RemoveAll(e.state); err != nil {
		return err
	}
	logf("cluster down, %s removed", e.state)
	return nil
}

// sandboxNetns lists the network namespaces (/var/run/netns/...) of the containers our containerd runs, from their
// OCI specs; nothing when containerd is not running.
func sandboxNetns(ctx context.Context, e env, sock string) []string {
	if _, ok := alive(e, "containerd"); !ok {
		return nil
	}
	out, err := output(ctx, "ctr", "--address", sock, "-n", "k8s.io", "containers", "ls", "-q")
	if err != nil {
		return nil
	}
	seen := map[string]bool{}
	var paths []string
	for _, id := range strings.Fields(out) {
		info, err := output(ctx, "ctr", "--address", sock, "-n", "k8s.io", "containers", "info", id)
		if err != nil {
			continue
		}
		for _, p := range netnsPaths([]byte(info)) {
			if !seen[p] {
				seen[p] = true
				paths = append(paths, p)
			}
		}
	}
	return paths
}

// netnsPaths reads the named network namespaces out of `ctr containers info` JSON.
func netnsPaths(info []byte) []string {
	var c struct {
		Spec struct {
			Linux struct {
				Namespaces []struct {
					Type string `json:"type"`
					Path string `json:"path"`
				} `json:"namespaces"`
			} `json:"linux"`
		} `json:"Spec"`
	}
	if json.Unmarshal(info, &c) != nil {
		return nil
	}
	var out []string
	for _, ns := range c.Spec.Linux.Namespaces {
		if ns.Type == "network" && strings.HasPrefix(ns.Path, "/var/run/netns/") {
			out = append(out, ns.Path)
		}
	}
	return out
}

func killShims(sock string) {
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil || !strings.Contains(string(b), "containerd-shim") {
			continue
		}
		args := strings.Split(string(b), "\x00")
		for i, a := range args {
			if a == "-address" && i+1 < len(args) && args[i+1] == sock {
				if pid, err := strconv.Atoi(strings.Split(p, "/")[2]); err == nil {
					_ = syscall.Kill(pid, syscall.SIGKILL)
					logf("shim %d stopped", pid)
				}
			}
		}
	}
}

func unmountUnder(dir string) {
	b, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		return
	}
	var mounts []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 1 && (f[1] == dir || strings.HasPrefix(f[1], dir+"/")) {
			mounts = append(mounts, strings.ReplaceAll(f[1], `\040`, " "))
		}
	}
	sort.Sort(sort.Reverse(sort.StringSlice(mounts)))
	for _, m := range mounts {
		if err := syscall.Unmount(m, syscall.MNT_DETACH); err != nil {
			logf("unmount %s: %v", m, err)
		}
	}
}

func cleanBridgeNAT(ctx context.Context) {
	deleteRules(ctx, "nat", func(line string) bool {
		return strings.HasPrefix(line, "-A POSTROUTING") && strings.Contains(line, "10.244.")
	})
	out, err := output(ctx, "iptables", "-t", "nat", "-S")
	if err != nil {
		return
	}
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) == 2 && f[0] == "-N" && strings.HasPrefix(f[1], "CNI-") {
			_ = run(ctx, "iptables", "-t", "nat", "-F", f[1])
			_ = run(ctx, "iptables", "-t", "nat", "-X", f[1])
		}
	}
}

// deleteRules deletes every rule of table for which match holds (lines as iptables -S prints them).
func deleteRules(ctx context.Context, table string, match func(line string) bool) {
	out, err := output(ctx, "iptables", "-t", table, "-S")
	if err != nil {
		return
	}
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "-A ") && match(line) {
			_ = run(ctx, "iptables", append([]string{"-t", table, "-D"}, splitRule(strings.TrimPrefix(line, "-A "))...)...)
		}
	}
}

// drainPods deletes every pod through the API and waits for the kubelet to stop their sandboxes (which removes
// their network namespaces and veth devices through the CNI plugins), so nothing of theirs outlives the cluster.
func drainPods(ctx context.Context, e env, sock string) {
	if _, ok := alive(e, "kube-apiserver"); !ok {
		return
	}
	if _, ok := alive(e, "kubelet"); !ok {
		return
	}
	if _, err := kubectl(ctx, e, "delete", "pods", "--all", "--all-namespaces", "--grace-period=0", "--force", "--wait=false"); err != nil {
		logf("deleting the pods: %v", err)
		return
	}
	err := waitFor(ctx, "the kubelet to stop every pod", 90*time.Second, func() error {
		out, err := output(ctx, "ctr", "--address", sock, "-n", "k8s.io", "tasks", "ls", "-q")
		if err != nil {
			return err
		}
		if n := len(strings.Fields(out)); n > 0 {
			return fmt.Errorf("%d container(s) still running", n)
		}
		return nil
	})
	if err != nil {
		logf("%v", err)
	}
}

// cleanKubeRules removes what the kubelet (KUBE-FIREWALL, KUBE-KUBELET-CANARY) and kube-router (its ACCEPT rules
// in the built-in chains) leave in iptables after they stop.
func cleanKubeRules(ctx context.Context) {
	for _, table := range []string{"filter", "nat", "mangle"} {
		deleteRules(ctx, table, func(line string) bool {
			return strings.Contains(line, "KUBE-ROUTER") || strings.Contains(line, "-j KUBE-FIREWALL") || strings.Contains(line, "-j KUBE-KUBELET-CANARY")
		})
		for _, chain := range []string{"KUBE-FIREWALL", "KUBE-KUBELET-CANARY"} {
			if run(ctx, "iptables", "-t", table, "-F", chain) == nil {
				_ = run(ctx, "iptables", "-t", table, "-X", chain)
			}
		}
	}
}

// splitRule splits an iptables -S line into arguments, keeping double-quoted comments whole.
func splitRule(line string) []string {
	var args []string
	var cur strings.Builder
	quoted, has := false, false
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case c == '\\' && quoted && i+1 < len(line):
			i++
			cur.WriteByte(line[i])
		case c == '"':
			quoted, has = !quoted, true
		case c == ' ' && !quoted:
			if cur.Len() > 0 || has {
				args = append(args, cur.String())
				cur.Reset()
				has = false
			}
		default:
			cur.WriteByte(c)
		}
	}
	if cur.Len() > 0 || has {
		args = append(args, cur.String())
	}
	return args
}
