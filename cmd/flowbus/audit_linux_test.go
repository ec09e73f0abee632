//go:build linux

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/flowbus/flowbus/bpf"
	"github.com/flowbus/flowbus/bpf/inspect"
	"github.com/flowbus/flowbus/bpf/nettest"
	"github.com/flowbus/flowbus/bpf/socklb"
)

type discardSink struct{}

func (discardSink) Event(*bpf.Event) {}
func (discardSink) Flush()           {}

// auditLab is the datapath of one agent as the eBPF source runs it, on a
// nettest fixture: the flow programs on pod A's host interface (so each
// connection from A to B is one entry, and A's packets pass its tc
// ingress), their maps and the socket LB's pinned under a BPF filesystem of
// the test's own, and a TCP server in B.
type auditLab struct {
	f       *nettest.Fixture
	ifindex uint32
	root    string // --bpf-pin-dir
	pol     *bpf.PolicyMaps
	lb      *socklb.LB
	ln      net.Listener
}

func newAuditLab(t *testing.T) *auditLab {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: network namespaces, eBPF programs and a BPF filesystem")
	}
	f := nettest.New(t, false)
	root := t.TempDir()
	if out, err := exec.Command("mount", "-t", "bpf", "bpf", root).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a BPF filesystem: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", root).Run() })
	dir := filepath.Join(root, "node-audit")
	ifc, err := net.InterfaceByName(f.HostA)
	if err != nil {
		t.Fatal(err)
	}
	coll, err := bpf.New(bpf.Config{Interfaces: []string{f.HostA}, IdleTimeout: time.Hour, EndLinger: 50 * time.Millisecond,
		SweepInterval: 50 * time.Millisecond, MaxSweepInterval: 100 * time.Millisecond}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- coll.Run(ctx, discardSink{}) }()
	t.Cleanup(func() {
		cancel()
		<-done
		coll.UnpinMaps(dir)
		coll.Close()
	})
	// Run attaches the programs: no connection before that, or its first
	// packets are not in its entry.
	waitFor(t, "the flow programs attached", 5*time.Second, func() bool { return len(coll.Attached()) == 1 })
	if err := coll.PinMaps(dir); err != nil {
		t.Fatal(err)
	}
	lb, err := socklb.Load(socklb.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		lb.UnpinMaps(dir)
		lb.Close()
	})
	if err := lb.PinMaps(dir); err != nil {
		t.Fatal(err)
	}
	var ln net.Listener
	if err := nettest.In(f.NSB, func() (err error) {
		ln, err = net.Listen("tcp", netip.AddrPortFrom(f.B, 8080).String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(io.Discard, c); c.Close() }() // closes when the client does
		}
	}()
	return &auditLab{f: f, ifindex: uint32(ifc.Index), root: root, pol: coll.Policy(), lb: lb, ln: ln}
}

// dial opens a connection from pod A to B's server and sends 5 bytes.
func (l *auditLab) dial(t *testing.T) net.Conn {
	t.Helper()
	var c net.Conn
	if err := nettest.In(l.f.NSA, func() (err error) {
		c, err = net.Dial("tcp", netip.AddrPortFrom(l.f.B, 8080).String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := c.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	return c
}

// key is how the agent's maps see a connection from A at A's interface.
func (l *auditLab) key(c net.Conn) string {
	return inspect.Connection{Proto: "tcp", Src: netip.MustParseAddrPort(c.LocalAddr().String()),
		Dst: netip.MustParseAddrPort(c.RemoteAddr().String()), IfIndex: l.ifindex}.Key()
}

// waitConns waits until the pinned flow maps hold exactly the connections
// of keys.
func (l *auditLab) waitConns(t *testing.T, keys []string) {
	t.Helper()
	want := slices.Sorted(slices.Values(keys))
	var got, seen []string
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		s, err := inspect.Take(filepath.Join(l.root, "node-audit"), "node-audit")
		if err != nil {
			t.Fatal(err)
		}
		got, seen = got[:0], seen[:0]
		for _, c := range s.Connections {
			got = append(got, c.Key())
			seen = append(seen, fmt.Sprintf("%s: %s %s packets %v", c.Key(), c.State, c.Flags, c.Packets))
		}
		slices.Sort(got)
		if slices.Equal(got, want) {
			return
		}
	}
	t.Fatalf("flow maps hold %q, want %q", seen, want)
}

// flowbus runs the command in-process and returns its stdout.
func flowbus(t *testing.T, args ...string) string {
	t.Helper()
	code, out, errOut := runCommand(args...)
	if code != 0 {
		t.Fatalf("flowbus %s: exit %d: %s", strings.Join(args, " "), code, errOut)
	}
	return out
}

func decode[T any](t *testing.T, s string) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("decode %q: %v", s, err)
	}
	return v
}

var (
	ruleAllow8080 = bpf.Rule{Direction: bpf.Ingress, Peer: 300, Proto: 6, Port: 8080, PortBits: 16, PolicyID: 5}
	ruleDenySSH   = bpf.Rule{Direction: bpf.Ingress, Peer: 2, Proto: 6, Port: 22, PortBits: 16, Deny: true, PolicyID: 7}
	ruleDNS       = bpf.Rule{Direction: bpf.Egress, Proto: 17, Port: 53, PortBits: 16, PolicyID: 6}
	inspAllow8080 = inspect.Rule{Direction: "ingress", Peer: 300, Proto: "tcp", Port: 8080, PortBits: 16, Verdict: "allow", Match: "L3-L4", PolicyID: 5}
	inspDenySSH   = inspect.Rule{Direction: "ingress", Peer: 2, Proto: "tcp", Port: 22, PortBits: 16, Verdict: "deny", Match: "L3-L4", PolicyID: 7}
	inspDNS       = inspect.Rule{Direction: "egress", Proto: "udp", Port: 53, PortBits: 16, Verdict: "allow", Match: "L4-Only", PolicyID: 6}
)

func backendAt(s string, id uint32) socklb.Backend {
	ap := netip.MustParseAddrPort(s)
	return socklb.Backend{ID: id, Addr: ap.Addr(), Port: ap.Port()}
}

// TestAuditDiffReportsExactlyWhatChanged is issue 19's acceptance of
// flowbus audit: two snapshots of a running datapath's pinned maps around
// a scripted change (4 connections opened and 1 closed, one backend of a
// service swapped for another, a policy entry of an endpoint removed and
// another added, a new identity in the ipcache), and `flowbus audit diff`
// reports exactly those changes, as JSON and in sentences. The bpf
// listings are checked against the same maps.
func TestAuditDiffReportsExactlyWhatChanged(t *testing.T) {
	l := newAuditLab(t)
	f := l.f
	svc := socklb.Service{Frontend: socklb.Frontend{Addr: netip.MustParseAddr("10.96.77.10"), Port: 80, Proto: 6}, ID: 1,
		Algorithm: socklb.Random, Backends: []socklb.Backend{backendAt("10.0.77.1:8080", 1), backendAt("10.0.77.2:8080", 2)}}
	dns := socklb.Service{Frontend: socklb.Frontend{Addr: netip.MustParseAddr("10.96.77.11"), Port: 53, Proto: 17}, ID: 2,
		Algorithm: socklb.Maglev, Backends: []socklb.Backend{backendAt("10.0.77.4:53", 4)}}
	for _, s := range []socklb.Service{svc, dns} {
		if err := l.lb.SetService(s); err != nil {
			t.Fatal(err)
		}
	}
	ipc := map[netip.Prefix]bpf.IPCacheEntry{netip.PrefixFrom(f.A, 32): {Identity: 300}, netip.PrefixFrom(f.B, 32): {Identity: 301}}
	if err := l.pol.SetIPCache(ipc); err != nil {
		t.Fatal(err)
	}
	ep := bpf.Endpoint{IfIndex: l.ifindex, ID: 11, Identity: 301}
	if err := l.pol.SetEndpoint(ep, []bpf.Rule{ruleAllow8080, ruleDNS}); err != nil {
		t.Fatal(err)
	}
	var before []net.Conn
	var keys []string
	for range 3 {
		c := l.dial(t)
		before = append(before, c)
		keys = append(keys, l.key(c))
	}
	l.waitConns(t, keys)
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.json"), filepath.Join(dir, "b.json")
	flowbus(t, "audit", "snapshot", a, "--bpf-pin-dir", l.root)

	// The script.
	var opened []string
	for range 4 {
		opened = append(opened, l.key(l.dial(t)))
	}
	before[1].(*net.TCPConn).SetLinger(0) // a reset: A's own packet ends it
	before[1].Close()
	ended := keys[1]
	svc.Backends = []socklb.Backend{backendAt("10.0.77.2:8080", 2), backendAt("10.0.77.3:8080", 3)}
	if err := l.lb.SetService(svc); err != nil {
		t.Fatal(err)
	}
	if err := l.pol.SetEndpoint(ep, []bpf.Rule{ruleDenySSH, ruleDNS}); err != nil {
		t.Fatal(err)
	}
	ipc[netip.MustParsePrefix("192.0.2.0/24")] = bpf.IPCacheEntry{Identity: 400}
	if err := l.pol.SetIPCache(ipc); err != nil {
		t.Fatal(err)
	}
	now := append([]string{keys[0], keys[2]}, opened...)
	l.waitConns(t, now) // the closed connection ended and the sweep freed it
	flowbus(t, "audit", "snapshot", b, "--bpf-pin-dir", l.root)

	d := decode[inspect.Diff](t, flowbus(t, "audit", "diff", a, b, "-o", "json"))
	if d.From.Node != "node-audit" || d.To.Node != "node-audit" || !d.To.Time.After(d.From.Time) {
		t.Errorf("headers %+v → %+v", d.From, d.To)
	}
	var newKeys, endedKeys []string
	for _, c := range d.Connections.New {
		newKeys = append(newKeys, c.Key())
		if c.Direction != "egress" || c.State != "established" || c.Verdict != "forwarded" || c.Packets[0] != 3 {
			t.Errorf("new connection %+v: want egress (the pod behind the interface opened it), established, forwarded, 3 packets from A", c)
		}
	}
	for _, c := range d.Connections.Ended {
		endedKeys = append(endedKeys, c.Key())
	}
	slices.Sort(newKeys)
	slices.Sort(opened)
	if d.Connections.NewCount != 4 || !slices.Equal(newKeys, opened) {
		t.Errorf("new connections %d %q, want 4 %q", d.Connections.NewCount, newKeys, opened)
	}
	if d.Connections.EndedCount != 1 || !slices.Equal(endedKeys, []string{ended}) {
		t.Errorf("ended connections %d %q, want 1 %q", d.Connections.EndedCount, endedKeys, ended)
	}
	// The rest of the diff, exactly.
	d.From, d.To, d.Connections = inspect.Header{}, inspect.Header{}, inspect.ConnDiff{}
	want := inspect.Diff{
		Services: []inspect.ServiceDiff{{Frontend: "10.96.77.10:80/tcp", ID: 1, Change: "changed",
			BackendsAdded:   []netip.AddrPort{netip.MustParseAddrPort("10.0.77.3:8080")},
			BackendsRemoved: []netip.AddrPort{netip.MustParseAddrPort("10.0.77.1:8080")}}},
		Endpoints: []inspect.EndpointDiff{{ID: 11, IfIndex: l.ifindex, Change: "changed",
			RulesAdded: []inspect.Rule{inspDenySSH}, RulesRemoved: []inspect.Rule{inspAllow8080}}},
		IPCache: inspect.IPCacheDiff{Added: []inspect.IPEntry{{Prefix: netip.MustParsePrefix("192.0.2.0/24"), Identity: 400}},
			Removed: []inspect.IPEntry{}, Changed: []inspect.IPMove{}},
		Identities: inspect.IdentityDiff{New: []uint32{400}, Gone: []uint32{}},
	}
	gotJSON, _ := json.Marshal(d)
	wantJSON, _ := json.Marshal(want)
	if string(gotJSON) != string(wantJSON) {
		t.Errorf("diff:\n%s\nwant:\n%s", gotJSON, wantJSON)
	}

	text := flowbus(t, "audit", "diff", a, b)
	for _, s := range []string{
		"4 connections are new:\n",
		"1 connection ended:\n  tcp " + strings.ReplaceAll(strings.TrimSuffix(strings.TrimPrefix(ended, "tcp "), fmt.Sprintf(" %d", l.ifindex)), " ", " → ") +
			fmt.Sprintf(" at ifindex %d (egress)\n", l.ifindex),
		"Service 10.96.77.10:80/tcp (id 1) gained backend 10.0.77.3:8080 and lost backend 10.0.77.1:8080.\n",
		fmt.Sprintf("Endpoint 11 (ifindex %d) gained 1 policy entry: deny ingress from identity 2 tcp/22 (L3-L4, policy 7).\n", l.ifindex),
		fmt.Sprintf("Endpoint 11 (ifindex %d) lost 1 policy entry: allow ingress from identity 300 tcp/8080 (L3-L4, policy 5).\n", l.ifindex),
		"Identity 400 is new in the ipcache: 192.0.2.0/24.\n",
	} {
		if !strings.Contains(text, s) {
			t.Errorf("the sentences miss %q:\n%s", s, text)
		}
	}
	for _, c := range opened {
		parts := strings.Fields(c) // tcp src dst ifindex
		if line := fmt.Sprintf("  tcp %s → %s at ifindex %s (egress)\n", parts[1], parts[2], parts[3]); !strings.Contains(text, line) {
			t.Errorf("the sentences miss new connection %q:\n%s", line, text)
		}
	}
	if n := strings.Count(text, "\n"); n != 1+1+4+2+3+1 {
		t.Errorf("%d lines, want 12 (header, 4 new connections and their heading, 1 ended and its, service, 2 endpoint, identity):\n%s", n, text)
	}

	// flowbus bpf, on the same maps.
	svcs := decode[[]inspect.Service](t, flowbus(t, "bpf", "lb", "list", "-o", "json", "--bpf-pin-dir", l.root))
	wantSvcs := []inspect.Service{
		{ID: 1, Frontend: "10.96.77.10:80/tcp", Algorithm: "random", Backends: []inspect.Backend{
			{Addr: netip.MustParseAddrPort("10.0.77.3:8080"), ID: 3}, {Addr: netip.MustParseAddrPort("10.0.77.2:8080"), ID: 2}}},
		{ID: 2, Frontend: "10.96.77.11:53/udp", Algorithm: "maglev", Backends: []inspect.Backend{{Addr: netip.MustParseAddrPort("10.0.77.4:53"), ID: 4}}},
	}
	if g, w := fmt.Sprint(svcs), fmt.Sprint(wantSvcs); g != w {
		t.Errorf("bpf lb list: %s, want %s", g, w)
	}
	wantEP := inspect.Endpoint{ID: 11, IfIndex: l.ifindex, Identity: 301, Enforced: []string{}, Rules: []inspect.Rule{inspDenySSH, inspDNS}}
	for _, arg := range []string{"11", f.HostA, fmt.Sprint(l.ifindex)} {
		got := decode[inspect.Endpoint](t, flowbus(t, "bpf", "policy", "get", arg, "-o", "json", "--bpf-pin-dir", l.root))
		if g, w := fmt.Sprint(got), fmt.Sprint(wantEP); g != w {
			t.Errorf("bpf policy get %s: %s, want %s", arg, g, w)
		}
	}
	ipcRows := decode[[]inspect.IPEntry](t, flowbus(t, "bpf", "ipcache", "list", "-o", "json", "--bpf-pin-dir", l.root))
	wantIPC := []inspect.IPEntry{{Prefix: netip.PrefixFrom(f.A, 32), Identity: 300}, {Prefix: netip.PrefixFrom(f.B, 32), Identity: 301},
		{Prefix: netip.MustParsePrefix("192.0.2.0/24"), Identity: 400}}
	if !slices.Equal(ipcRows, wantIPC) {
		t.Errorf("bpf ipcache list: %v, want %v", ipcRows, wantIPC)
	}
	// Every connection is SYN, ACK and 5 bytes from A (74 + 66 + 71 bytes
	// of frames), SYN-ACK and the ACK of the 5 bytes from B (74 + 66), once
	// B's delayed ACK came.
	settled := func(s *inspect.Snapshot) bool {
		return !slices.ContainsFunc(s.Connections, func(c inspect.Connection) bool { return c.Packets[1] < 2 })
	}
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if s, err := inspect.Take(filepath.Join(l.root, "node-audit"), "node-audit"); err != nil || settled(s) {
			break
		}
	}
	for _, verb := range []string{"ct", "flows"} {
		conns := decode[[]inspect.Connection](t, flowbus(t, "bpf", verb, "list", "-o", "json", "--bpf-pin-dir", l.root))
		var got []string
		for _, c := range conns {
			got = append(got, c.Key())
			if c.Packets != [2]uint64{3, 2} || c.Bytes != [2]uint64{211, 140} || c.Flags != "SYN,PSH,ACK" ||
				c.State != "established" || c.Direction != "egress" {
				t.Errorf("bpf %s list: %s: packets %v bytes %v flags %s state %s direction %s; want [3 2], [211 140], SYN,PSH,ACK, established, egress",
					verb, c.Key(), c.Packets, c.Bytes, c.Flags, c.State, c.Direction)
			}
		}
		slices.Sort(got)
		slices.Sort(now)
		if !slices.Equal(got, now) {
			t.Errorf("bpf %s list: %q, want %q", verb, got, now)
		}
	}
	// A table, and what a person reads when the maps are not there.
	if out := flowbus(t, "bpf", "lb", "list", "--bpf-pin-dir", l.root); out != "ID  FRONTEND            ALGORITHM  BACKENDS\n"+
		"1   10.96.77.10:80/tcp  random     10.0.77.3:8080, 10.0.77.2:8080\n"+
		"2   10.96.77.11:53/udp  maglev     10.0.77.4:53\n" {
		t.Errorf("bpf lb list:\n%s", out)
	}
	empty := t.TempDir()
	code, _, errOut := runCommand("bpf", "ct", "list", "--bpf-pin-dir", empty)
	if want := fmt.Sprintf("flowbus bpf ct list: no agent maps at %s: is the agent running with the eBPF source and --bpf-pin-dir (by default /sys/fs/bpf/flowbus/<node>)?\n", empty); code != 1 || errOut != want {
		t.Errorf("no maps: exit %d, %q; want 1, %q", code, errOut, want)
	}
}
