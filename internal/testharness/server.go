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
// S3Server are two of them.
type server struct {
	Addr string
	dir  string

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
	s := &server{Addr: fmt.Sprintf("127.0.0.1:%d", port), dir: dir, done: make(chan error, 1)}
	argv, err := args(s.Addr, dir)
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	log, err := os.Create(filepath.Join(dir, tool+".log"))
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	s.cmd = exec.Command(bin, argv...)
	s.cmd.Stdout, s.cmd.Stderr = log, log
	if err := s.cmd.Start(); err != nil {
		_ = log.Close()
		_ = os.RemoveAll(dir)
		return nil, err
	}
	go func() { s.done <- s.cmd.Wait(); _ = log.Close() }()
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := WaitForPort(wctx, s.Addr); err != nil {
		_ = s.stop()
		return nil, fmt.Errorf("%s did not start: %w", tool, err)
	}
	return s, nil
}

// stop kills the server and removes its directory; it is safe to call more than once.
func (s *server) stop() error {
	if s == nil || s.cmd == nil || s.cmd.Process == nil {
		return nil
	}
	s.stopOnce.Do(func() {
		_ = s.cmd.Process.Kill()
		<-s.done
		s.stopErr = os.RemoveAll(s.dir)
	})
	return s.stopErr
}
