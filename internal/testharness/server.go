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

// server is a program of bin/ serving a temporary directory on a free loopback port, until stop. RestServer and
// S3Server are two of them. Down and Up take it away and bring it back on the same address and directory, as a
// backend that restarts or drops off the network.
type server struct {
	Addr string
	dir  string

	bin, tool string
	argv      []string

	mu       sync.Mutex
	cmd      *exec.Cmd
	done     chan error
	stopOnce sync.Once
	stopErr  error
}

// startServer makes a temporary directory, picks a free port, starts tool with the arguments args gives for that
// address and directory (args may create what it needs in dir), logs into dir/<tool>.log and waits up to 30 s for
// the port to accept connections.
func startServer(ctx context.Context, tool string, args func(addr, dir string) ([]string, error)) (*server, error) {
	bin, err := Tool(tool)
	if err != nil {
		return nil, err
	}
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "custos-"+tool+"-")
	if err != nil {
		return nil, err
	}
	s := &server{Addr: fmt.Sprintf("127.0.0.1:%d", port), dir: dir, bin: bin, tool: tool}
	s.argv, err = args(s.Addr, dir)
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	if err := s.Up(ctx); err != nil {
		_ = s.stop()
		return nil, err
	}
	return s, nil
}

// Up starts the server (again) and waits up to 30 s for its port; it does nothing when it runs.
func (s *server) Up(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return nil
	}
	log, err := os.OpenFile(filepath.Join(s.dir, s.tool+".log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	cmd := exec.Command(s.bin, s.argv...)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		_ = log.Close()
		return err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait(); _ = log.Close() }()
	s.cmd, s.done = cmd, done
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := WaitForPort(wctx, s.Addr); err != nil {
		return fmt.Errorf("%s did not start: %w", s.tool, err)
	}
	return nil
}

// Down kills the server, keeping its directory; Up brings it back.
func (s *server) Down() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	<-s.done
	s.cmd, s.done = nil, nil
}

// stop kills the server and removes its directory; it is safe to call more than once.
func (s *server) stop() error {
	if s == nil {
		return nil
	}
	s.stopOnce.Do(func() {
		s.Down()
		s.stopErr = os.RemoveAll(s.dir)
	})
	return s.stopErr
}
