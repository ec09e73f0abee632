package inspect

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var (
	t0 = time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	t1 = t0.Add(5 * time.Minute)
)

func conn(src, dst string, ifindex uint32) Connection {
	return Connection{Proto: "tcp", Src: netip.MustParseAddrPort(src), Dst: netip.MustParseAddrPort(dst), IfIndex: ifindex,
		Direction: "egress", State: "established", Verdict: "forwarded", Packets: [2]uint64{3, 2}, Bytes: [2]uint64{180, 120}}
}

func backend(s string, id uint32) Backend { return Backend{Addr: netip.MustParseAddrPort(s), ID: id} }

var (
	allow8080 = Rule{Direction: "ingress", Peer: 300, Proto: "tcp", Port: 8080, PortBits: 16, Verdict: "allow", Match: "L3-L4", PolicyID: 2<<28 | 5}
	allowDNS  = Rule{Direction: "egress", Peer: 0, Proto: "udp", Port: 53, PortBits: 16, Verdict: "allow", Match: "L4-Only", PolicyID: 3<<28 | 6}
	deny22    = Rule{Direction: "ingress", Peer: 2, Proto: "tcp", Port: 22, PortBits: 16, Verdict: "deny", Match: "L3-L4", PolicyID: 2<<28 | 7}
)

func ip(p string, id uint32) IPEntry { return IPEntry{Prefix: netip.MustParsePrefix(p), Identity: id} }

func snapA() *Snapshot {
	return &Snapshot{Kind: Kind, Version: Version, Time: t0, Node: "node-1", PinDir: "/sys/fs/bpf/flowbus/node-1", SocketLB: true,
		Connections: []Connection{
			conn("10.0.0.1:40000", "10.0.0.2:8080", 7),
			conn("10.0.0.1:40001", "10.0.0.2:8080", 7),
			conn("10.0.0.1:40002", "10.0.0.3:8080", 7),
		},
		Services: []Service{
			{ID: 1, Frontend: "10.96.0.10:80/tcp", Algorithm: "random", Backends: []Backend{backend("10.0.0.2:8080", 1), backend("10.0.0.3:8080", 2)}},
			{ID: 2, Frontend: "10.96.0.11:53/udp", Algorithm: "maglev", Backends: []Backend{backend("10.0.0.4:53", 3)}},
			{ID: 3, Frontend: "10.96.0.12:443/tcp", Algorithm: "random", Backends: []Backend{backend("10.0.0.5:8443", 4)}},
		},
		Endpoints: []Endpoint{
			{ID: 11, IfIndex: 7, Identity: 300, Enforced: []string{"ingress"}, Rules: []Rule{deny22, allow8080}},
			{ID: 12, IfIndex: 8, Identity: 301, Enforced: []string{}, Rules: []Rule{}},
		},
		IPCache: []IPEntry{ip("10.0.0.1/32", 300), ip("10.0.0.2/32", 301), ip("10.0.0.3/32", 302)},
	}
}

// snapB: one connection ended, two new, one unchanged but with new
// counters; service 1 lost a backend and gained one, service 2 changed its
// algorithm, service 3 is gone and 4 is new; endpoint 11 lost deny22 and
// gained allowDNS, 12 is gone, 13 is new; identity 302 gone, 310 new, and
// 10.0.0.2 moved from 301 to 303.
func snapB() *Snapshot {
	s := snapA()
	s.Time = t1
	c := conn("10.0.0.1:40000", "10.0.0.2:8080", 7)
	c.Packets = [2]uint64{30, 20}
	s.Connections = []Connection{
		c,
		conn("10.0.0.1:40002", "10.0.0.3:8080", 7),
		conn("10.0.0.1:40004", "10.0.0.2:8080", 7),
		conn("10.0.0.1:40003", "10.0.0.2:8080", 7),
	}
	s.Services = []Service{
		{ID: 1, Frontend: "10.96.0.10:80/tcp", Algorithm: "random", Backends: []Backend{backend("10.0.0.6:8080", 5), backend("10.0.0.3:8080", 2)}},
		{ID: 2, Frontend: "10.96.0.11:53/udp", Algorithm: "random", Backends: []Backend{backend("10.0.0.4:53", 3)}},
		{ID: 4, Frontend: "10.96.0.13:9090/tcp", Algorithm: "random", Backends: []Backend{}},
	}
	s.Endpoints = []Endpoint{
		{ID: 11, IfIndex: 7, Identity: 300, Enforced: []string{"ingress"}, Rules: []Rule{allow8080, allowDNS}},
		{ID: 13, IfIndex: 9, Identity: 310, Enforced: []string{}, Rules: []Rule{allowDNS}},
	}
	s.IPCache = []IPEntry{ip("10.0.0.1/32", 300), ip("10.0.0.2/32", 303), ip("10.0.0.9/32", 310), ip("10.1.0.0/16", 310)}
	return s
}

func TestCompareExact(t *testing.T) {
	d := Compare(snapA(), snapB(), 1)
	got, err := json.MarshalIndent(d, "", " ")
	if err != nil {
		t.Fatal(err)
	}
	want := Diff{From: Header{t0, "node-1"}, To: Header{t1, "node-1"},
		Connections: ConnDiff{NewCount: 2, New: []Connection{conn("10.0.0.1:40003", "10.0.0.2:8080", 7)},
			EndedCount: 1, Ended: []Connection{conn("10.0.0.1:40001", "10.0.0.2:8080", 7)}},
		Services: []ServiceDiff{
			{Frontend: "10.96.0.10:80/tcp", ID: 1, Change: "changed",
				BackendsAdded: []netip.AddrPort{netip.MustParseAddrPort("10.0.0.6:8080")}, BackendsRemoved: []netip.AddrPort{netip.MustParseAddrPort("10.0.0.2:8080")}},
			{Frontend: "10.96.0.11:53/udp", ID: 2, Change: "changed", BackendsAdded: []netip.AddrPort{}, BackendsRemoved: []netip.AddrPort{},
				AlgorithmFrom: "maglev", AlgorithmTo: "random"},
			{Frontend: "10.96.0.12:443/tcp", ID: 3, Change: "removed", BackendsAdded: []netip.AddrPort{}, BackendsRemoved: []netip.AddrPort{netip.MustParseAddrPort("10.0.0.5:8443")}},
			{Frontend: "10.96.0.13:9090/tcp", ID: 4, Change: "new", BackendsAdded: []netip.AddrPort{}, BackendsRemoved: []netip.AddrPort{}},
		},
		Endpoints: []EndpointDiff{
			{ID: 11, IfIndex: 7, Change: "changed", RulesAdded: []Rule{allowDNS}, RulesRemoved: []Rule{deny22}},
			{ID: 12, IfIndex: 8, Change: "removed", RulesAdded: []Rule{}, RulesRemoved: []Rule{}},
			{ID: 13, IfIndex: 9, Change: "new", RulesAdded: []Rule{allowDNS}, RulesRemoved: []Rule{}},
		},
		IPCache: IPCacheDiff{Added: []IPEntry{ip("10.0.0.9/32", 310), ip("10.1.0.0/16", 310)}, Removed: []IPEntry{ip("10.0.0.3/32", 302)},
			Changed: []IPMove{{Prefix: netip.MustParsePrefix("10.0.0.2/32"), From: ip("10.0.0.2/32", 301), To: ip("10.0.0.2/32", 303)}}},
		Identities: IdentityDiff{New: []uint32{303, 310}, Gone: []uint32{301, 302}},
	}
	exp, _ := json.MarshalIndent(want, "", " ")
	if string(got) != string(exp) {
		t.Errorf("diff:\n%s\nwant:\n%s", got, exp)
	}

	var text bytes.Buffer
	if err := d.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	wantText := `From 2026-12-06T12:00:00Z to 2026-12-06T12:05:00Z on node node-1:
2 connections are new:
  tcp 10.0.0.1:40003 → 10.0.0.2:8080 at ifindex 7 (egress)
  … and 1 more
1 connection ended:
  tcp 10.0.0.1:40001 → 10.0.0.2:8080 at ifindex 7 (egress)
Service 10.96.0.10:80/tcp (id 1) gained backend 10.0.0.6:8080 and lost backend 10.0.0.2:8080.
Service 10.96.0.11:53/udp (id 2) changed its algorithm from maglev to random.
Service 10.96.0.12:443/tcp (id 3) was removed; it had backend 10.0.0.5:8443.
Service 10.96.0.13:9090/tcp (id 4) is new, with no backend.
Endpoint 11 (ifindex 7) gained 1 policy entry: allow egress to any peer udp/53 (L4-Only, policy 6).
Endpoint 11 (ifindex 7) lost 1 policy entry: deny ingress from identity 2 tcp/22 (L3-L4, policy 7).
Endpoint 12 (ifindex 8) was removed, with 0 policy entries.
Endpoint 13 (ifindex 9) is new, with 1 policy entry: allow egress to any peer udp/53 (L4-Only, policy 6).
Identity 303 is new in the ipcache: 10.0.0.2/32.
Identity 310 is new in the ipcache: 10.0.0.9/32, 10.1.0.0/16.
Identity 301 is gone from the ipcache; it had 10.0.0.2/32.
Identity 302 is gone from the ipcache; it had 10.0.0.3/32.
10.0.0.2/32 moved from identity 301 to 303 in the ipcache.
`
	if text.String() != wantText {
		t.Errorf("text:\n%s\nwant:\n%s", text.String(), wantText)
	}
}

func TestCompareSameIsEmpty(t *testing.T) {
	a := snapA()
	b := snapA()
	b.Time = t1
	b.Connections[0].Packets = [2]uint64{100, 100} // counters are not a change
	d := Compare(a, b, DefaultListMax)
	if !d.Empty() {
		t.Fatalf("diff of the same maps: %+v", d)
	}
	var text bytes.Buffer
	d.WriteText(&text)
	if want := "From 2026-12-06T12:00:00Z to 2026-12-06T12:05:00Z on node node-1:\nNothing changed.\n"; text.String() != want {
		t.Errorf("text %q, want %q", text.String(), want)
	}
}

func TestCompareListsAllWithNegativeMax(t *testing.T) {
	d := Compare(snapA(), snapB(), -1)
	if d.Connections.NewCount != 2 || len(d.Connections.New) != 2 ||
		d.Connections.New[1] != conn("10.0.0.1:40004", "10.0.0.2:8080", 7) {
		t.Errorf("new connections %d %+v", d.Connections.NewCount, d.Connections.New)
	}
}

func TestSnapshotRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a.json")
	a := snapA()
	if err := WriteFile(path, a); err != nil {
		t.Fatal(err)
	}
	got, err := ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(got)
	if string(x) != string(y) {
		t.Errorf("read back:\n%s\nwrote:\n%s", y, x)
	}
	if _, err := os.Stat(path + ".tmp"); !os.IsNotExist(err) {
		t.Errorf("temporary file left: %v", err)
	}
}

func TestReadBadSnapshots(t *testing.T) {
	var good bytes.Buffer
	if err := Write(&good, snapA()); err != nil {
		t.Fatal(err)
	}
	g := good.String()
	for name, c := range map[string]struct{ data, want string }{
		"empty":           {"", "empty file, not a snapshot"},
		"truncated":       {g[:len(g)/2], "truncated snapshot (the file ends inside the document): unexpected end of JSON input"},
		"corrupt":         {strings.Replace(g, `"node": "node-1"`, `"node": node-1`, 1), "corrupt snapshot: invalid character 'o' in literal null (expecting 'u')"},
		"not json":        {"PK\x03\x04", "corrupt snapshot: invalid character 'P' looking for beginning of value"},
		"another kind":    {`{"kind":"hubble.flows","version":1}`, `not a flowbus snapshot (kind "hubble.flows", want "flowbus.bpf.snapshot"): write one with 'flowbus audit snapshot'`},
		"no kind":         {`{"version":1}`, `not a flowbus snapshot (kind "", want "flowbus.bpf.snapshot"): write one with 'flowbus audit snapshot'`},
		"newer version":   {strings.Replace(g, `"version": 1`, `"version": 2`, 1), "snapshot version 2: this flowbus reads version 1"},
		"no version":      {strings.Replace(g, `"version": 1,`, ``, 1), "snapshot version none: this flowbus reads version 1"},
		"unknown field":   {strings.Replace(g, `"node": "node-1"`, `"node": "node-1", "extra": 1`, 1), `corrupt snapshot: json: unknown field "extra"`},
		"bad address":     {strings.Replace(g, `"10.0.0.1:40000"`, `"10.0.0.1"`, 1), "corrupt snapshot: not an ip:port"},
		"no time":         {strings.Replace(g, `"time": "2026-12-06T12:00:00Z"`, `"time": "0001-01-01T00:00:00Z"`, 1), "corrupt snapshot: no time"},
		"trailing object": {g + "{", "corrupt snapshot: invalid character '{' after top-level value"},
		"two documents":   {g + g, "corrupt snapshot: invalid character '{' after top-level value"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Read(strings.NewReader(c.data))
			if err == nil || err.Error() != c.want {
				t.Errorf("error %v, want %q", err, c.want)
			}
		})
	}
	path := filepath.Join(t.TempDir(), "cut.json")
	os.WriteFile(path, []byte(g[:10]), 0o644)
	if _, err := ReadFile(path); err == nil || !strings.HasPrefix(err.Error(), path+": ") {
		t.Errorf("ReadFile error %v does not name the file", err)
	}
}

func TestRulePorts(t *testing.T) {
	for _, c := range []struct {
		r    Rule
		want string
	}{
		{Rule{Proto: "tcp", Port: 8080, PortBits: 16}, "8080"},
		{Rule{Proto: "tcp", Port: 8080, PortBits: 12}, "8080-8095"},
		{Rule{Proto: "tcp", PortBits: 0}, "any"},
		{Rule{Proto: "any"}, "any"},
	} {
		if got := c.r.Ports(); got != c.want {
			t.Errorf("%+v: %q, want %q", c.r, got, c.want)
		}
	}
}
