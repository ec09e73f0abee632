//go:build linux

// Package nettest builds network-namespace fixtures for tests of the
// datapath: two "pods" (namespaces) bridged through host-side veths, with
// static neighbours so that the test's traffic is the only traffic. Tests
// that use it need root and iproute2; New skips the test otherwise. It is a
// test helper: it calls t.Fatal and t.Skip.
package nettest

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// Fixture is two network namespaces ("pods") A and B, each with one veth
// whose host side is enslaved to a bridge in the test's own namespace:
//
//	[A eth0 .1] ── HostA ─┐
//	                      bridge (no address)
//	[B eth0 .2] ── HostB ─┘
//
// Neighbours are static, multicast is off, and IPv6 is off unless asked
// for, so the test's
// traffic is the only traffic on the veths. Everything is removed in
// t.Cleanup, also when the test fails.
type Fixture struct {
	NSA, NSB     string
	HostA, HostB string
	Bridge       string
	A, B         netip.Addr // IPv4
	A6, B6       netip.Addr // IPv6, valid if the fixture has IPv6
}

// requireNetns skips unless the test can create namespaces and links.
func requireNetns(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to create network namespaces")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs iproute2 (ip) to build network namespaces")
	}
}

// New builds a fixture, removed in t.Cleanup (also when the test fails).
func New(t testing.TB, withIPv6 bool) *Fixture {
	t.Helper()
	requireNetns(t)
	var rb [3]byte
	rand.Read(rb[:])
	id := hex.EncodeToString(rb[:])
	subnet := fmt.Sprintf("10.%d.%d.", 200+int(rb[0])%50, rb[1])
	f := &Fixture{
		NSA: "fbt-a-" + id, NSB: "fbt-b-" + id,
		HostA: "fbha" + id, HostB: "fbhb" + id, Bridge: "fbbr" + id,
		A: netip.MustParseAddr(subnet + "1"), B: netip.MustParseAddr(subnet + "2"),
	}
	if withIPv6 {
		f.A6 = netip.MustParseAddr(fmt.Sprintf("fd00:fb%02x:%02x::1", rb[0], rb[1]))
		f.B6 = netip.MustParseAddr(fmt.Sprintf("fd00:fb%02x:%02x::2", rb[0], rb[1]))
	}
	t.Cleanup(func() {
		// Deleting the namespaces deletes their veth ends and so the pairs.
		exec.Command("ip", "link", "del", f.HostA).Run()
		exec.Command("ip", "link", "del", f.HostB).Run()
		exec.Command("ip", "link", "del", f.Bridge).Run()
		exec.Command("ip", "netns", "del", f.NSA).Run()
		exec.Command("ip", "netns", "del", f.NSB).Run()
	})
	sh := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	nsSysctl := func(ns, key, val string) {
		t.Helper()
		sh("netns", "exec", ns, "sysctl", "-q", "-w", key+"="+val)
	}
	sh("netns", "add", f.NSA)
	sh("netns", "add", f.NSB)
	// No multicast anywhere: a bridge or interface coming up sends IGMP/MLD
	// reports otherwise.
	sh("link", "add", f.Bridge, "type", "bridge", "mcast_snooping", "0")
	sh("link", "set", f.Bridge, "multicast", "off")
	hostSysctl(t, "net/ipv6/conf/"+f.Bridge+"/disable_ipv6", "1")
	mac := map[string]string{}
	for _, p := range []struct{ ns, host, ip, ip6 string }{
		{f.NSA, f.HostA, f.A.String(), addrStr(f.A6)},
		{f.NSB, f.HostB, f.B.String(), addrStr(f.B6)},
	} {
		if withIPv6 {
			nsSysctl(p.ns, "net.ipv6.conf.default.accept_dad", "0")
			nsSysctl(p.ns, "net.ipv6.conf.default.router_solicitations", "0")
		} else {
			nsSysctl(p.ns, "net.ipv6.conf.all.disable_ipv6", "1")
			nsSysctl(p.ns, "net.ipv6.conf.default.disable_ipv6", "1")
		}
		sh("link", "add", p.host, "type", "veth", "peer", "name", "eth0", "netns", p.ns)
		hostSysctl(t, "net/ipv6/conf/"+p.host+"/disable_ipv6", "1")
		sh("link", "set", p.host, "multicast", "off")
		sh("link", "set", p.host, "master", f.Bridge)
		sh("link", "set", p.host, "up")
		sh("-n", p.ns, "addr", "add", p.ip+"/24", "dev", "eth0")
		if withIPv6 {
			sh("-n", p.ns, "addr", "add", p.ip6+"/64", "dev", "eth0", "nodad")
		}
		sh("-n", p.ns, "link", "set", "lo", "up")
		sh("-n", p.ns, "link", "set", "eth0", "multicast", "off")
		sh("-n", p.ns, "link", "set", "eth0", "up")
		out, err := exec.Command("ip", "-n", p.ns, "-br", "link", "show", "eth0").Output()
		if err != nil {
			t.Fatal(err)
		}
		fields := strings.Fields(string(out))
		mac[p.ns] = fields[2]
	}
	sh("link", "set", f.Bridge, "up")
	// Static neighbours: no ARP or neighbour discovery during the test.
	sh("-n", f.NSA, "neigh", "add", f.B.String(), "lladdr", mac[f.NSB], "dev", "eth0", "nud", "permanent")
	sh("-n", f.NSB, "neigh", "add", f.A.String(), "lladdr", mac[f.NSA], "dev", "eth0", "nud", "permanent")
	if withIPv6 {
		sh("-n", f.NSA, "neigh", "add", f.B6.String(), "lladdr", mac[f.NSB], "dev", "eth0", "nud", "permanent")
		sh("-n", f.NSB, "neigh", "add", f.A6.String(), "lladdr", mac[f.NSA], "dev", "eth0", "nud", "permanent")
	}
	return f
}

func addrStr(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}

func hostSysctl(t testing.TB, key, val string) {
	t.Helper()
	if err := os.WriteFile("/proc/sys/"+key, []byte(val), 0o644); err != nil {
		t.Fatalf("sysctl %s: %v", key, err)
	}
}

// In runs fn on a fresh OS thread that has entered namespace ns. Sockets fn
// creates belong to ns and may be used from any goroutine afterwards. The
// thread is never unlocked, so it exits with the goroutine instead of
// returning to the scheduler in the wrong namespace.
func In(ns string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		fd, err := unix.Open("/run/netns/"+ns, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errc <- fmt.Errorf("open netns %s: %w", ns, err)
			return
		}
		defer unix.Close(fd)
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("enter netns %s: %w", ns, err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// VethStats are a host-side veth's counters. Rx is what the pod sent.
type VethStats struct{ RxBytes, RxPackets, TxBytes, TxPackets uint64 }

// ReadVeth reads an interface's counters from sysfs.
func ReadVeth(t testing.TB, name string) VethStats {
	t.Helper()
	rd := func(k string) uint64 {
		b, err := os.ReadFile("/sys/class/net/" + name + "/statistics/" + k)
		if err != nil {
			t.Fatal(err)
		}
		v, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	return VethStats{rd("rx_bytes"), rd("rx_packets"), rd("tx_bytes"), rd("tx_packets")}
}

// Sysctl sets a sysctl inside namespace ns (key in dotted form).
func Sysctl(t testing.TB, ns, key, val string) {
	t.Helper()
	if out, err := exec.Command("ip", "netns", "exec", ns, "sysctl", "-q", "-w", key+"="+val).CombinedOutput(); err != nil {
		t.Fatalf("sysctl %s in %s: %v: %s", key, ns, err, out)
	}
}

// Pod is one network namespace of a LAN: its eth0 has Addr/24 and is the
// peer of Host, a veth enslaved to the LAN's bridge.
type Pod struct {
	NS   string
	Host string
	Addr netip.Addr
}

// LAN is n pods on one bridge, as Fixture is two: IPv4 only, no multicast,
// static neighbours between every pair of pods, a default route via eth0
// in every pod (so that a pod can send to addresses that are not on the
// LAN, such as a service's ClusterIP before it is translated). Everything
// is removed in t.Cleanup, also when the test fails.
type LAN struct {
	Bridge string
	Pods   []Pod
}

// NewLAN builds a LAN of n pods (2 ≤ n ≤ 200), removed in t.Cleanup.
func NewLAN(t testing.TB, n int) *LAN {
	t.Helper()
	requireNetns(t)
	if n < 2 || n > 200 {
		t.Fatalf("nettest.NewLAN: %d pods, want 2..200", n)
	}
	var rb [3]byte
	rand.Read(rb[:])
	id := hex.EncodeToString(rb[:])
	subnet := fmt.Sprintf("10.%d.%d.", 200+int(rb[0])%50, rb[1])
	l := &LAN{Bridge: "fblb" + id}
	for i := range n {
		l.Pods = append(l.Pods, Pod{
			NS:   fmt.Sprintf("fbt-l%d-%s", i, id),
			Host: fmt.Sprintf("fbl%d%s", i, id),
			Addr: netip.MustParseAddr(subnet + strconv.Itoa(i+1)),
		})
	}
	t.Cleanup(func() {
		for _, p := range l.Pods {
			exec.Command("ip", "link", "del", p.Host).Run()
			exec.Command("ip", "netns", "del", p.NS).Run()
		}
		exec.Command("ip", "link", "del", l.Bridge).Run()
	})
	sh := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	sh("link", "add", l.Bridge, "type", "bridge", "mcast_snooping", "0")
	sh("link", "set", l.Bridge, "multicast", "off")
	hostSysctl(t, "net/ipv6/conf/"+l.Bridge+"/disable_ipv6", "1")
	mac := make([]string, n)
	for i, p := range l.Pods {
		sh("netns", "add", p.NS)
		Sysctl(t, p.NS, "net.ipv6.conf.all.disable_ipv6", "1")
		Sysctl(t, p.NS, "net.ipv6.conf.default.disable_ipv6", "1")
		sh("link", "add", p.Host, "type", "veth", "peer", "name", "eth0", "netns", p.NS)
		hostSysctl(t, "net/ipv6/conf/"+p.Host+"/disable_ipv6", "1")
		sh("link", "set", p.Host, "multicast", "off")
		sh("link", "set", p.Host, "master", l.Bridge)
		sh("link", "set", p.Host, "up")
		sh("-n", p.NS, "addr", "add", p.Addr.String()+"/24", "dev", "eth0")
		sh("-n", p.NS, "link", "set", "lo", "up")
		sh("-n", p.NS, "link", "set", "eth0", "multicast", "off")
		sh("-n", p.NS, "link", "set", "eth0", "up")
		sh("-n", p.NS, "route", "add", "default", "dev", "eth0")
		out, err := exec.Command("ip", "-n", p.NS, "-br", "link", "show", "eth0").Output()
		if err != nil {
			t.Fatal(err)
		}
		mac[i] = strings.Fields(string(out))[2]
	}
	sh("link", "set", l.Bridge, "up")
	for i, p := range l.Pods {
		for j, q := range l.Pods {
			if i != j {
				sh("-n", p.NS, "neigh", "add", q.Addr.String(), "lladdr", mac[j], "dev", "eth0", "nud", "permanent")
			}
		}
	}
	return l
}
