package testharness

import (
	"context"
	"fmt"
	"net"
	"time"
)

// FreePort asks the kernel for a free TCP port on loopback.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// WaitForPort waits until something accepts TCP connections on addr.
func WaitForPort(ctx context.Context, addr string) error {
	var lastErr error
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			return c.Close()
		}
		lastErr = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("nothing listens on %s: %w", addr, lastErr)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
