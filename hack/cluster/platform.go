package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The platform's names: what a platform team would have set up before its first Tenant, and what the
// e2e/cluster suite is told to use (env).
const (
	managerNamespace   = "custos-system"
	databaseServerName = "pg-ams-1"
	policyName         = "ehealth-3-months"
	pgAdmin            = "custos_admin"
)

func pgBinary(name string) (string, error) {
	m, _ := filepath.Glob("/usr/lib/postgresql/*/bin/" + name)
	if len(m) == 0 {
		return "", fmt.Errorf("%s: PostgreSQL's server programs are missing (hack/os-packages.sh installs them)", name)
	}
	return m[len(m)-1], nil
}

// platformServices runs the services a platform team runs outside the cluster: PostgreSQL (TLS, scram, reachable
// from the pod network at the node's IP) and rest-server (TLS) holding the primary and offsite repositories.
func platformServices(ctx context.Context, e env) error {
	if err := postgres(ctx, e); err != nil {
		return err
	}
	rest := e.path("rest")
	if err := os.MkdirAll(rest, 0o700); err != nil {
		return err
	}
	pki := e.path("pki")
	if err := daemon(e, "rest-server", nil, e.tool("rest-server"), "--path", rest, "--listen", fmt.Sprintf("%s:%d", nodeIP, restPort),
		"--no-auth", "--tls", "--tls-cert", pki+"/platform.crt", "--tls-key", pki+"/platform.key"); err != nil {
		return err
	}
	return waitFor(ctx, "rest-server (logs/rest-server.log)", 30*time.Second, dialer(fmt.Sprintf("%s:%d", nodeIP, restPort)))
}

func dialer(addr string) func() error {
	return func() error {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
		}
		return err
	}
}

func postgres(ctx context.Context, e env) error {
	initdb, err := pgBinary("initdb")
	if err != nil {
		return err
	}
	server, err := pgBinary("postgres")
	if err != nil {
		return err
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return fmt.Errorf("user postgres (from Debian's postgresql package) to run the server as: %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	cred := &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	dir := e.path("pg")
	data := filepath.Join(dir, "data")
	if _, err := os.Stat(filepath.Join(data, "PG_VERSION")); os.IsNotExist(err) {
		if err := os.MkdirAll(filepath.Join(dir, "run"), 0o700); err != nil {
			return err
		}
		pw := make([]byte, 16)
		if _, err := rand.Read(pw); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, "password"), []byte(hex.EncodeToString(pw)), 0o600); err != nil {
			return err
		}
		// The server's own copies of the key pair: PostgreSQL wants its key readable by itself only.
		for _, f := range []string{"platform.crt", "platform.key", "ca.crt"} {
			b, err := os.ReadFile(e.path("pki", f))
			if err != nil {
				return err
			}
			if err := os.WriteFile(filepath.Join(dir, f), b, 0o600); err != nil {
				return err
			}
		}
		if err := filepath.Walk(dir, func(p string, _ os.FileInfo, err error) error {
			if err != nil {
				return err
			}
			return os.Chown(p, uid, gid)
		}); err != nil {
			return err
		}
		if err := writeAs(cred, filepath.Join(dir, "pwfile"), hex.EncodeToString(pw)+"\n"); err != nil {
			return err
		}
		cmd := commandAs(ctx, cred, initdb, "-D", data, "-U", pgAdmin, "--pwfile="+filepath.Join(dir, "pwfile"),
			"--auth-local=scram-sha-256", "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C", "--no-sync")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("initdb: %w: %s", err, out)
		}
		_ = os.Remove(filepath.Join(dir, "pwfile"))
		// TLS only from the network: the pod network and the node itself.
		hba := "local all all scram-sha-256\n" +
			"hostssl all all " + podCIDR + " scram-sha-256\n" +
			"hostssl all all " + nodeIP + "/32 scram-sha-256\n" +
			"hostssl all all 127.0.0.1/32 scram-sha-256\n"
		if err := writeAs(cred, filepath.Join(data, "pg_hba.conf"), hba); err != nil {
			return err
		}
	}
	if err := daemon(e, "postgres", cred, server, "-D", data, "-c", "listen_addresses="+nodeIP+",127.0.0.1",
		"-c", "port="+strconv.Itoa(pgPort), "-c", "unix_socket_directories="+filepath.Join(dir, "run"),
		"-c", "ssl=on", "-c", "ssl_cert_file="+filepath.Join(dir, "platform.crt"), "-c", "ssl_key_file="+filepath.Join(dir, "platform.key"),
		"-c", "fsync=off", "-c", "max_connections=200"); err != nil {
		return err
	}
	return waitFor(ctx, "PostgreSQL (logs/postgres.log)", time.Minute, dialer(fmt.Sprintf("%s:%d", nodeIP, pgPort)))
}

func pgPassword(e env) (string, error) {
	b, err := os.ReadFile(e.path("pg", "password"))
	return strings.TrimSpace(string(b)), err
}

func writeAs(cred *syscall.Credential, path, content string) error {
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		return err
	}
	return os.Chown(path, int(cred.Uid), int(cred.Gid))
}

func commandAs(ctx context.Context, cred *syscall.Credential, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	return cmd
}
