package main

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"
)

// Decision: the Observer API is secure by default. It serves every pod's
// flows, so a plaintext listener is loopback-only unless the user says
// otherwise: without TLS the default address is 127.0.0.1 (with TLS, every
// interface), and an address that reaches beyond the host without TLS is
// refused unless --observer-insecure accepts it, with a warning.

// observerAddress returns the address the Observer API of a command
// listens on: addr as given when set (an explicit value, from a flag, a
// variable or the config file), else loopback or, with TLS, every
// interface, on port. It refuses a plaintext non-loopback address unless
// insecure.
func observerAddress(cmd, addr string, set bool, port int, tls, insecure bool, log *slog.Logger) (string, error) {
	if !set {
		if tls {
			return fmt.Sprintf(":%d", port), nil
		}
		return fmt.Sprintf("127.0.0.1:%d", port), nil
	}
	if addr == "" || tls || loopbackAddress(addr) {
		return addr, nil
	}
	if !insecure {
		return "", fmt.Errorf("--observer-address %s would serve every pod's flows in plaintext to anyone who can reach this host: "+
			"give --observer-tls-cert-file and --observer-tls-key-file (and --observer-tls-client-ca-file for mTLS), "+
			"listen on 127.0.0.1, or accept it with --observer-insecure", addr)
	}
	log.Warn(cmd+": the Observer API serves every pod's flows in plaintext beyond this host (--observer-insecure)", "address", addr)
	return addr, nil
}

// loopbackAddress reports whether host:port listens on loopback only.
func loopbackAddress(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil || host == "" {
		return false
	}
	if host == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}
