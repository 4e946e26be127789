package testharness

import (
	"context"
	"path/filepath"
)

// RestServer is restic's rest-server serving a temporary directory on a free loopback port, without auth.
type RestServer struct {
	// URL is the restic repository base, rest:http://127.0.0.1:<port>/.
	URL string
	// Dir is the server's directory; the repositories are under Dir/data.
	Dir string
	*server
}

// StartRestServer starts bin/rest-server.
func StartRestServer(ctx context.Context) (*RestServer, error) {
	srv, err := startServer(ctx, "rest-server", func(addr, dir string) ([]string, error) {
		return []string{"--path", filepath.Join(dir, "data"), "--listen", addr, "--no-auth"}, nil
	})
	if err != nil {
		return nil, err
	}
	return &RestServer{URL: "rest:http://" + srv.Addr + "/", Dir: srv.dir, server: srv}, nil
}

// Stop kills the server and removes its directory.
func (s *RestServer) Stop() error {
	if s == nil {
		return nil
	}
	return s.stop()
}
