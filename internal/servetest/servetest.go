// Package servetest runs a server under test on a free local port.
package servetest

import (
	"context"
	"net"
	"testing"
)

// Serve listens on a free 127.0.0.1 port and runs serve on that listener
// until the test ends; then it cancels serve's context, waits for serve to
// return and fails the test if serve returned an error. It returns the
// listener's address (host:port).
func Serve(t testing.TB, serve func(ctx context.Context, lis net.Listener) error) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, lis) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve on %s: %v", lis.Addr(), err)
		}
	})
	return lis.Addr().String()
}
