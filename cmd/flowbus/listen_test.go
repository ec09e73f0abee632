package main

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

// TestObserverAddress: unset, the Observer API listens on loopback (every
// interface with TLS); set, an address beyond loopback needs TLS or
// --observer-insecure, which warns.
func TestObserverAddress(t *testing.T) {
	cases := []struct {
		name           string
		addr           string
		set, tls, insc bool
		want, err      string
		warns          bool
	}{
		{"unset, plaintext: loopback", "127.0.0.1:4244", false, false, false, "127.0.0.1:4244", "", false},
		{"unset, TLS: every interface", "127.0.0.1:4244", false, true, false, ":4244", "", false},
		{"set to loopback", "127.0.0.1:5000", true, false, false, "127.0.0.1:5000", "", false},
		{"set to localhost", "localhost:5000", true, false, false, "localhost:5000", "", false},
		{"set to IPv6 loopback", "[::1]:5000", true, false, false, "[::1]:5000", "", false},
		{"set empty: disabled", "", true, false, false, "", "", false},
		{"every interface with TLS", ":4244", true, true, false, ":4244", "", false},
		{"every interface in plaintext is refused", ":4244", true, false, false, "", "--observer-address :4244 would serve every pod's flows in plaintext", false},
		{"a host address in plaintext is refused", "10.0.0.1:4244", true, false, false, "", "accept it with --observer-insecure", false},
		{"every interface in plaintext, accepted", "0.0.0.0:4244", true, false, true, "0.0.0.0:4244", "", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var logs bytes.Buffer
			got, err := observerAddress("agent", c.addr, c.set, 4244, c.tls, c.insc, slog.New(slog.NewTextHandler(&logs, nil)))
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("error %v, want one containing %q", err, c.err)
				}
				return
			}
			if err != nil || got != c.want {
				t.Fatalf("%q, %v; want %q", got, err, c.want)
			}
			if warned := strings.Contains(logs.String(), "level=WARN"); warned != c.warns {
				t.Errorf("warned %v, want %v: %s", warned, c.warns, logs.String())
			}
		})
	}
}
