//go:build linux

package ebpf

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	flowpb "github.com/cilium/cilium/api/v1/flow"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/net/dns/dnsmessage"

	"github.com/flowbus/flowbus/agent/cluster"
	"github.com/flowbus/flowbus/agent/l7/stream"
	"github.com/flowbus/flowbus/bpf"
	"github.com/flowbus/flowbus/bpf/nettest"
	"github.com/flowbus/flowbus/schemas"
	"github.com/flowbus/flowbus/schemas/hubble"
)

// serveDNS answers A queries for name with addr (TTL ttl seconds) and
// NXDOMAIN for every other name, on UDP addr:53 inside ns.
func serveDNS(t *testing.T, ns string, at netip.AddrPort, name string, addr netip.Addr, ttl uint32) {
	t.Helper()
	var pc net.PacketConn
	if err := nettest.In(ns, func() (err error) { pc, err = net.ListenPacket("udp", at.String()); return }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			var m dnsmessage.Message
			if m.Unpack(buf[:n]) != nil || len(m.Questions) != 1 {
				continue
			}
			q := m.Questions[0]
			m.Header.Response, m.Header.Authoritative = true, true
			if q.Name.String() == name && q.Type == dnsmessage.TypeA {
				m.Answers = []dnsmessage.Resource{{Header: dnsmessage.ResourceHeader{Name: q.Name, Type: dnsmessage.TypeA,
					Class: dnsmessage.ClassINET, TTL: ttl}, Body: &dnsmessage.AResource{A: addr.As4()}}}
			} else {
				m.Header.RCode = dnsmessage.RCodeNameError
			}
			out, err := m.Pack()
			if err == nil {
				pc.WriteTo(out, from)
			}
		}
	}()
}

// query asks at for name (type A) from inside ns and returns the rcode.
func query(t *testing.T, ns string, at netip.AddrPort, name string, id uint16) dnsmessage.RCode {
	t.Helper()
	m := dnsmessage.Message{Header: dnsmessage.Header{ID: id, RecursionDesired: true},
		Questions: []dnsmessage.Question{{Name: dnsmessage.MustNewName(name), Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET}}}
	b, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	var c net.Conn
	if err := nettest.In(ns, func() (err error) { c, err = net.Dial("udp", at.String()); return }); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write(b); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1500)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Unpack(buf[:n]); err != nil {
		t.Fatal(err)
	}
	return m.Header.RCode
}

// TestL7InNetns: with L7 on for HTTP (8080) and DNS (53), the eBPF source,
// attached to both pods' interfaces, gives each HTTP request and DNS query
// exactly once (at the server's interface: count once) as a Hubble L7
// request and response, with method, URL, status, the query and its
// answer, and a latency no longer than the client measured; a connection
// to an address the client pod resolved carries the name until the
// answer's TTL is over, and not after.
func TestL7InNetns(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to load BPF programs and create namespaces")
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		t.Skipf("cannot lift memlock limit for BPF: %v", err)
	}
	f := nettest.New(t, false)
	ifA, err := net.InterfaceByName(f.HostA)
	if err != nil {
		t.Fatal(err)
	}
	ifB, err := net.InterfaceByName(f.HostB)
	if err != nil {
		t.Fatal(err)
	}
	snap := testSnapshot(f.A, f.B, uint32(ifA.Index), "api-1")
	snap.Pods[0].Interface = f.HostA
	snap.Pods[1].Interface, snap.Pods[1].IfIndex = f.HostB, uint32(ifB.Index)
	store := cluster.NewStore()
	store.Publish(snap)

	const name, ttl = "api.shop.svc.cluster.local.", 2
	serveDNS(t, f.NSB, netip.AddrPortFrom(f.B, 53), name, f.B, ttl)
	var ln, other net.Listener
	if err := nettest.In(f.NSB, func() (err error) {
		if ln, err = net.Listen("tcp", netip.AddrPortFrom(f.B, 8080).String()); err != nil {
			return err
		}
		other, err = net.Listen("tcp", netip.AddrPortFrom(f.B, 9000).String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/fail") {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		io.WriteString(w, "body")
	})}
	go srv.Serve(ln)
	defer srv.Close()
	go func() {
		for {
			c, err := other.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	defer other.Close()

	ports, err := stream.ParsePorts("http:8080 dns:53")
	if err != nil {
		t.Fatal(err)
	}
	src, err := New(Config{
		Kernel:        bpf.Config{Interfaces: []string{f.HostA, f.HostB}, SweepInterval: 100 * time.Millisecond, EndLinger: 200 * time.Millisecond},
		Node:          "lab-node",
		Cluster:       store,
		EnforcePolicy: true,
		L7:            &stream.Config{Ports: ports},
	}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	out := make(chan []schemas.Flow, 64)
	var mu sync.Mutex
	var flows []schemas.Flow
	collected := make(chan struct{})
	go func() {
		defer close(collected)
		for b := range out {
			mu.Lock()
			flows = append(flows, b...)
			mu.Unlock()
		}
	}()
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx, out, nil) }()
	stop := sync.OnceValue(func() error { cancel(); return <-done })
	defer stop()
	deadline := time.Now().Add(20 * time.Second)
	for st := src.Stats(); ; st = src.Stats() {
		if c := src.coll.Load(); c != nil && len(c.Attached()) == 2 && src.view.Load() != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not attached: %+v", st)
		}
		time.Sleep(20 * time.Millisecond)
	}

	// HTTP: 10 requests answered 200 and 10 answered 503, keep-alive.
	tr := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (c net.Conn, err error) {
		err = nettest.In(f.NSA, func() error { var d net.Dialer; c, err = d.DialContext(ctx, network, addr); return err })
		return c, err
	}}
	client := &http.Client{Transport: tr}
	var maxLatency time.Duration
	for i := range 20 {
		path := fmt.Sprintf("/ok/%d", i)
		if i%2 == 1 {
			path = fmt.Sprintf("/fail/%d", i)
		}
		start := time.Now()
		resp, err := client.Get("http://" + netip.AddrPortFrom(f.B, 8080).String() + path)
		if err != nil {
			t.Fatal(err)
		}
		maxLatency = max(maxLatency, time.Since(start))
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	tr.CloseIdleConnections()

	// DNS: the name resolved, then a connection to its address (named), an
	// unknown name (NXDOMAIN), and after the TTL another connection (not
	// named).
	dnsAt := netip.AddrPortFrom(f.B, 53)
	if rc := query(t, f.NSA, dnsAt, name, 1); rc != dnsmessage.RCodeSuccess {
		t.Fatalf("rcode %v", rc)
	}
	if rc := query(t, f.NSA, dnsAt, "nope.shop.svc.cluster.local.", 2); rc != dnsmessage.RCodeNameError {
		t.Fatalf("rcode %v, want NXDOMAIN", rc)
	}
	dial := func() {
		var c net.Conn
		if err := nettest.In(f.NSA, func() (err error) { c, err = net.Dial("tcp", netip.AddrPortFrom(f.B, 9000).String()); return }); err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, c)
		c.Close()
	}
	time.Sleep(300 * time.Millisecond) // the answer reaches the cache before the flow's record
	dial()
	time.Sleep((ttl + 1) * time.Second)
	dial()

	wantL7 := 2*20 + 2*2
	var l7s, named []schemas.Flow
	waitUntil := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		l7s, named = nil, nil
		for _, fl := range flows {
			if fl.EventType == hubble.MsgTypeAccessLog {
				l7s = append(l7s, fl)
			} else if fl.DstPort == 9000 && fl.CountAs == schemas.CountFlow {
				named = append(named, fl)
			}
		}
		mu.Unlock()
		if (len(l7s) >= wantL7 && len(named) >= 2) || time.Now().After(waitUntil) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	close(out)
	<-collected

	type key struct {
		typ    flowpb.L7FlowType
		proto  schemas.L7Protocol
		method string
		status uint32
		what   string
	}
	got := map[key]int{}
	for _, fl := range l7s {
		k := key{typ: fl.L7.Type, proto: fl.L7.Protocol}
		switch fl.L7.Protocol {
		case schemas.L7HTTP:
			k.method, k.status = fl.L7.HTTPMethod, fl.L7.HTTPStatus
			k.what = strings.SplitN(strings.TrimPrefix(fl.L7.HTTPURL, "http://"+netip.AddrPortFrom(f.B, 8080).String()), "/", 3)[1]
		case schemas.L7DNS:
			k.status, k.what = fl.L7.DNSRCode, fl.L7.DNSQuery
		}
		got[k]++
		req := fl.L7.Type == flowpb.L7FlowType_REQUEST
		client, server := fl.Src, fl.Dst
		if !req {
			client, server = fl.Dst, fl.Src
			if fl.IsReply != schemas.True || fl.CountAs != schemas.CountTraffic || fl.LatencyNs == 0 || time.Duration(fl.LatencyNs) > maxLatency {
				t.Errorf("response %+v: want a reply counted as traffic, latency in (0, %v]", fl.L7, maxLatency)
			}
		} else if fl.IsReply != schemas.False || fl.CountAs != schemas.CountNone {
			t.Errorf("request %+v: want no reply, counting nothing", fl.L7)
		}
		if client.PodName != "web-1" || server.PodName != "api-1" || fl.Direction != flowpb.TrafficDirection_INGRESS ||
			fl.IfIndex != uint32(ifB.Index) || fl.NodeName != "lab-node" || fl.Verdict != flowpb.Verdict_FORWARDED {
			t.Errorf("L7 record %v %v → %v, direction %v on ifindex %d: want web-1 → api-1 at api-1's ingress (ifindex %d)",
				fl.L7.Type, client.PodName, server.PodName, fl.Direction, fl.IfIndex, ifB.Index)
		}
	}
	want := map[key]int{}
	for _, typ := range []flowpb.L7FlowType{flowpb.L7FlowType_REQUEST, flowpb.L7FlowType_RESPONSE} {
		st := func(s uint32) uint32 {
			if typ == flowpb.L7FlowType_REQUEST {
				return 0
			}
			return s
		}
		want[key{typ, schemas.L7HTTP, "GET", st(200), "ok"}] = 10
		want[key{typ, schemas.L7HTTP, "GET", st(503), "fail"}] = 10
		want[key{typ, schemas.L7DNS, "", 0, name}] = 1
		want[key{typ, schemas.L7DNS, "", st(3), "nope.shop.svc.cluster.local."}] = 1
	}
	if len(got) != len(want) {
		t.Errorf("L7 records %v, want %v", got, want)
	}
	for k, n := range want {
		if got[k] != n {
			t.Errorf("%d L7 records %+v, want %d (all: %v)", got[k], k, n, got)
		}
	}
	if len(named) != 2 {
		t.Fatalf("%d records of the connections to :9000, want 2", len(named))
	}
	slices.SortFunc(named, func(a, b schemas.Flow) int { return int(a.FirstSeenNs - b.FirstSeenNs) })
	if !slices.Equal(named[0].DstNames, []string{strings.TrimSuffix(name, ".")}) { // Hubble's form: no trailing dot
		t.Errorf("connection within the TTL: destination names %q, want %q", named[0].DstNames, name)
	}
	if named[1].DstNames != nil {
		t.Errorf("connection after the TTL: destination names %q, want none", named[1].DstNames)
	}
}
