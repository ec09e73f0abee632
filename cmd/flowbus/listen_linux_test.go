//go:build linux

package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/flowbus/flowbus/bpf/nettest"
)

// TestObserverNotReachableBeyondLoopbackByDefault builds agents inside a
// network namespace with an address of its own: with default flags the
// Observer API answers on 127.0.0.1 and refuses a connection to the
// namespace's other address; --observer-address :4244 without TLS is
// refused at start, and with --observer-insecure it is served there.
func TestObserverNotReachableBeyondLoopbackByDefault(t *testing.T) {
	f := nettest.New(t, false)
	args := []string{"--source", "synthetic", "--rate", "10", "--bus", "stdout", "--metrics-address", "", "--spool-dir", "off", "--data-dir", t.TempDir()}
	dial := func(addr netip.AddrPort) error {
		return nettest.In(f.NSA, func() error {
			c, err := net.DialTimeout("tcp", addr.String(), time.Second)
			if err == nil {
				c.Close()
			}
			return err
		})
	}
	start := func(extra ...string) (stop func(), err error) {
		fs, fl := newAgentFlags(cmdIO{Stdout: io.Discard, Stderr: io.Discard})
		if err := parseFlags(fs, append(append([]string{}, args...), extra...)); err != nil {
			t.Fatal(err)
		}
		var rt *agentRuntime
		err = nettest.In(f.NSA, func() (err error) {
			rt, err = fl.build(cmdIO{Stdout: io.Discard, Stderr: io.Discard, Log: slog.New(slog.DiscardHandler)}, false, "")
			return err
		})
		if err != nil {
			return nil, err
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- rt.run(ctx) }()
		return func() {
			cancel()
			if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
				t.Errorf("agent: %v", err)
			}
			rt.close()
		}, nil
	}
	loop, there := netip.MustParseAddrPort("127.0.0.1:4244"), netip.AddrPortFrom(f.A, 4244)

	stop, err := start()
	if err != nil {
		t.Fatal(err)
	}
	if err := dial(loop); err != nil {
		t.Errorf("default flags: the Observer API does not answer on %v: %v", loop, err)
	}
	if err := dial(there); err == nil {
		t.Errorf("default flags: the Observer API answers on %v, beyond loopback", there)
	}
	stop()

	if _, err := start("--observer-address", ":4244"); err == nil || !strings.Contains(err.Error(), "--observer-insecure") {
		t.Errorf("--observer-address :4244 in plaintext: error %v, want a refusal naming --observer-insecure", err)
	}

	stop, err = start("--observer-address", ":4244", "--observer-insecure")
	if err != nil {
		t.Fatal(err)
	}
	if err := dial(there); err != nil {
		t.Errorf("--observer-insecure: the Observer API does not answer on %v: %v", there, err)
	}
	stop()
}
