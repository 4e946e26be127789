package testharness

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// Postgres is a throwaway PostgreSQL cluster in a temporary directory, listening on a free loopback port.
// The superuser authenticates with a random password over TCP (scram-sha-256), as tenant roles will.
type Postgres struct {
	Host     string
	Port     int
	User     string
	Password string
	Version  string

	dir   string
	pgCtl string
	cred  *syscall.Credential
}

// StartPostgres runs initdb and pg_ctl start. When the tests run as root, the server runs as the unprivileged
// user "nobody" (PostgreSQL refuses to run as root).
func StartPostgres(ctx context.Context) (*Postgres, error) {
	initdb, err := PostgresBinary("initdb")
	if err != nil {
		return nil, err
	}
	pgCtl, err := PostgresBinary("pg_ctl")
	if err != nil {
		return nil, err
	}
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "custos-pg-")
	if err != nil {
		return nil, err
	}
	pw := make([]byte, 24)
	if _, err := rand.Read(pw); err != nil {
		return nil, err
	}
	p := &Postgres{Host: "127.0.0.1", Port: port, User: "postgres", Password: hex.EncodeToString(pw), dir: dir, pgCtl: pgCtl}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("nobody")
		if err != nil {
			return nil, fmt.Errorf("running as root and no user nobody to run PostgreSQL as: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		p.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chown(dir, uid, gid); err != nil {
			return nil, err
		}
	}
	pwfile := filepath.Join(dir, "pwfile")
	if err := os.WriteFile(pwfile, []byte(p.Password+"\n"), 0o600); err != nil {
		return nil, err
	}
	if p.cred != nil {
		if err := os.Chown(pwfile, int(p.cred.Uid), int(p.cred.Gid)); err != nil {
			return nil, err
		}
	}
	data := filepath.Join(dir, "data")
	if out, err := p.run(ctx, initdb, "-D", data, "-U", p.User, "--pwfile="+pwfile, "--auth-local=scram-sha-256",
		"--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C", "--no-sync"); err != nil {
		p.cleanup()
		return nil, fmt.Errorf("initdb: %w\n%s", err, out)
	}
	_ = os.Remove(pwfile)
	if err := p.Resume(ctx); err != nil {
		p.cleanup()
		return nil, err
	}
	if v, err := exec.CommandContext(ctx, pgCtl, "--version").Output(); err == nil {
		p.Version = string(bytes.TrimSpace(v))
	}
	return p, nil
}

// Resume starts the server (again) on its port.
func (p *Postgres) Resume(ctx context.Context) error {
	opts := fmt.Sprintf("-p %d -h 127.0.0.1 -k %s -c fsync=off -c max_connections=300", p.Port, p.dir)
	if out, err := p.run(ctx, p.pgCtl, "-D", filepath.Join(p.dir, "data"), "-l", filepath.Join(p.dir, "postgres.log"), "-o", opts, "-w", "-t", "60", "start"); err != nil {
		log, _ := os.ReadFile(filepath.Join(p.dir, "postgres.log"))
		return fmt.Errorf("pg_ctl start: %w\n%s\n%s", err, out, log)
	}
	return nil
}

// Pause stops the server and keeps its data, to simulate an outage; Resume starts it again.
func (p *Postgres) Pause() error {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if out, err := p.run(ctx, p.pgCtl, "-D", filepath.Join(p.dir, "data"), "-m", "fast", "-w", "stop"); err != nil {
		return fmt.Errorf("pg_ctl stop: %w\n%s", err, out)
	}
	return nil
}

// URL is a libpq connection URL for database db as the superuser.
func (p *Postgres) URL(db string) string {
	u := url.URL{Scheme: "postgres", User: url.UserPassword(p.User, p.Password), Host: fmt.Sprintf("%s:%d", p.Host, p.Port),
		Path: "/" + db, RawQuery: "sslmode=disable"}
	return u.String()
}

// Stop shuts the server down and removes its directory.
func (p *Postgres) Stop() error {
	if p == nil {
		return nil
	}
	err := p.Pause()
	if err != nil && !p.stopped() {
		p.cleanup()
		return err
	}
	p.cleanup()
	return nil
}

// stopped reports whether no server runs on the data directory (pg_ctl status).
func (p *Postgres) stopped() bool {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := p.run(ctx, p.pgCtl, "-D", filepath.Join(p.dir, "data"), "status")
	return err != nil
}

func (p *Postgres) cleanup() { _ = os.RemoveAll(p.dir) }

func (p *Postgres) run(ctx context.Context, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = p.dir
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	if p.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: p.cred}
	}
	return cmd.CombinedOutput()
}
