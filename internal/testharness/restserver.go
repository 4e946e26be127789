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

// RestServer is restic's rest-server serving a temporary directory on a free loopback port, without auth.
type RestServer struct {
	// URL is the restic repository base, rest:http://127.0.0.1:<port>/.
	URL  string
	Dir  string
	Addr string

	cmd      *exec.Cmd
	done     chan error
	stopOnce sync.Once
	stopErr  error
}

// StartRestServer starts bin/rest-server.
func StartRestServer(ctx context.Context) (*RestServer, error) {
	bin, err := Tool("rest-server")
	if err != nil {
		return nil, err
	}
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "custos-rest-")
	if err != nil {
		return nil, err
	}
	s := &RestServer{Dir: dir, Addr: fmt.Sprintf("127.0.0.1:%d", port), done: make(chan error, 1)}
	s.URL = "rest:http://" + s.Addr + "/"
	log, err := os.Create(filepath.Join(dir, "rest-server.log"))
	if err != nil {
		return nil, err
	}
	s.cmd = exec.Command(bin, "--path", filepath.Join(dir, "data"), "--listen", s.Addr, "--no-auth")
	s.cmd.Stdout, s.cmd.Stderr = log, log
	if err := s.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { s.done <- s.cmd.Wait(); log.Close() }()
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := WaitForPort(wctx, s.Addr); err != nil {
		_ = s.Stop()
		return nil, fmt.Errorf("rest-server did not start: %w", err)
	}
	return s, nil
}

// Stop kills the server and removes its directory.
func (s *RestServer) Stop() error {
	if s == nil || s.cmd == nil || s.cmd.Process == nil {
		return nil
	}
	s.stopOnce.Do(func() {
		_ = s.cmd.Process.Kill()
		<-s.done
		s.stopErr = os.RemoveAll(s.Dir)
	})
	return s.stopErr
}
