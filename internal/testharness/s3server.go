package testharness

import (
	"context"
	"os"
	"path/filepath"
)

// S3Server is versitygw (an S3-compatible gateway) serving a temporary directory on a free loopback port: each
// bucket is a directory under Root, object versions of a versioned bucket are kept under Versions.
type S3Server struct {
	// Endpoint is the server's base URL for restic, s3:http://127.0.0.1:<port>; a repository is
	// <Endpoint>/<bucket>/<path>.
	Endpoint string
	Root     string
	Versions string
	// AccessKey and SecretKey are the only credentials the server accepts.
	AccessKey, SecretKey string
	*server
}

// Env is the credentials as restic reads them from its environment.
func (s *S3Server) Env() []string {
	return []string{"AWS_ACCESS_KEY_ID=" + s.AccessKey, "AWS_SECRET_ACCESS_KEY=" + s.SecretKey}
}

// StartS3Server starts bin/versitygw with the posix backend.
func StartS3Server(ctx context.Context) (*S3Server, error) {
	s := &S3Server{AccessKey: "custos-test-key", SecretKey: "custos-test-secret-0123456789"}
	srv, err := startServer(ctx, "versitygw", func(addr, dir string) ([]string, error) {
		s.Root, s.Versions = filepath.Join(dir, "root"), filepath.Join(dir, "versions")
		for _, d := range []string{s.Root, s.Versions} {
			if err := os.MkdirAll(d, 0o700); err != nil {
				return nil, err
			}
		}
		return []string{"--access", s.AccessKey, "--secret", s.SecretKey, "--port", addr, "posix", "--versioning-dir", s.Versions, s.Root}, nil
	})
	if err != nil {
		return nil, err
	}
	s.server, s.Endpoint = srv, "s3:http://"+srv.Addr
	return s, nil
}

// Stop kills the server and removes its directories.
func (s *S3Server) Stop() {
	if s != nil {
		_ = s.stop()
	}
}
