package testharness

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"time"
)

// S3Server is versitygw (an S3-compatible gateway) serving a temporary directory on a free loopback port: each
// bucket is a directory under Root, object versions of a versioned bucket are kept under Versions.
type S3Server struct {
	// Endpoint is the server's base URL for restic, s3:http://127.0.0.1:<port>; a repository is
	// <Endpoint>/<bucket>/<path>.
	Endpoint string
	Addr     string
	Root     string
	Versions string
	// AccessKey and SecretKey are the only credentials the server accepts.
	AccessKey, SecretKey string

	dir      string
	cmd      *exec.Cmd
	done     chan error
	stopOnce sync.Once
}

// Env is the credentials as restic reads them from its environment.
func (s *S3Server) Env() []string {
	return []string{"AWS_ACCESS_KEY_ID=" + s.AccessKey, "AWS_SECRET_ACCESS_KEY=" + s.SecretKey}
}

// StartS3Server starts bin/versitygw with the posix backend.
func StartS3Server(ctx context.Context) (*S3Server, error) {
	bin, err := Tool("versitygw")
	if err != nil {
		return nil, err
	}
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "custos-s3-")
	if err != nil {
		return nil, err
	}
	s := &S3Server{
		Addr: fmt.Sprintf("127.0.0.1:%d", port), Root: filepath.Join(dir, "root"), Versions: filepath.Join(dir, "versions"),
		AccessKey: "custos-test-key", SecretKey: "custos-test-secret-0123456789", dir: dir, done: make(chan error, 1),
	}
	s.Endpoint = "s3:http://" + s.Addr
	for _, d := range []string{s.Root, s.Versions} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, err
		}
	}
	log, err := os.Create(filepath.Join(dir, "versitygw.log"))
	if err != nil {
		return nil, err
	}
	s.cmd = exec.Command(bin, "--access", s.AccessKey, "--secret", s.SecretKey, "--port", s.Addr, "posix", "--versioning-dir", s.Versions, s.Root)
	s.cmd.Stdout, s.cmd.Stderr = log, log
	if err := s.cmd.Start(); err != nil {
		log.Close()
		return nil, err
	}
	go func() { s.done <- s.cmd.Wait(); log.Close() }()
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := WaitForPort(wctx, s.Addr); err != nil {
		s.Stop()
		return nil, fmt.Errorf("versitygw did not start: %w", err)
	}
	return s, nil
}

// Stop kills the server and removes its directories.
func (s *S3Server) Stop() {
	if s == nil || s.cmd == nil || s.cmd.Process == nil {
		return
	}
	s.stopOnce.Do(func() {
		_ = s.cmd.Process.Kill()
		<-s.done
		_ = os.RemoveAll(s.dir)
	})
}
