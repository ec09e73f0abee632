//go:build linux

package bpf

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/flowbus/flowbus/bpf/nettest"
)

// recorder is a Sink that keeps every event.
type recorder struct {
	mu     sync.Mutex
	events []Event
}

func (r *recorder) Event(ev *Event) {
	r.mu.Lock()
	r.events = append(r.events, *ev)
	r.mu.Unlock()
}
func (r *recorder) Flush() {}

func (r *recorder) final(match func(*Event) bool) []Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []Event
	for i := range r.events {
		if r.events[i].Kind.Final() && match(&r.events[i]) {
			out = append(out, r.events[i])
		}
	}
	return out
}

// startCollector runs a Collector on the given interfaces until the test
// ends; stop stops it (flushing the map) and waits for Run to return.
func startCollector(t testing.TB, cfg Config, sink Sink) (c *Collector, stop func()) {
	t.Helper()
	if cfg.SweepInterval == 0 {
		cfg.SweepInterval = 100 * time.Millisecond
	}
	if cfg.EndLinger == 0 {
		cfg.EndLinger = 200 * time.Millisecond
	}
	c, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx, sink) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("collector run: %v", err)
			}
			if err := c.Close(); err != nil {
				t.Errorf("collector close: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	start := time.Now()
	for len(c.Attached()) < len(cfg.Interfaces) {
		if time.Since(start) > 20*time.Second {
			t.Fatalf("collector attached to %v, want %v (%s)", c.Attached(), cfg.Interfaces, c.Stats().AttachError)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if d := time.Since(start); d > time.Second {
		t.Logf("attaching took %v", d)
	}
	return c, stop
}

// serveHTTP serves a fixed body from namespace ns.
func serveHTTP(t testing.TB, ns string, addr netip.AddrPort) {
	t.Helper()
	var ln net.Listener
	if err := nettest.In(ns, func() (err error) { ln, err = net.Listen("tcp", addr.String()); return }); err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, strings.Repeat("x", 1000))
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
}

// dialer dials from namespace ns.
func dialer(ns string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (c net.Conn, err error) {
		err = nettest.In(ns, func() error {
			var d net.Dialer
			c, err = d.DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}
}

// TestHTTPFlowsMatchVethCounters: N requests over M keep-alive connections
// between two namespaces give exactly M flows, each ended by FIN, whose
// bytes and packets each way add up to the host veth's counters.
func TestHTTPFlowsMatchVethCounters(t *testing.T) {
	requireBPF(t)
	f := nettest.New(t, false)
	const conns, perConn = 4, 5
	server := netip.AddrPortFrom(f.B, 8080)
	serveHTTP(t, f.NSB, server)
	rec := &recorder{}
	_, stop := startCollector(t, Config{Interfaces: []string{f.HostA}}, rec)

	before := nettest.ReadVeth(t, f.HostA)
	for range conns {
		tr := &http.Transport{DialContext: dialer(f.NSA), MaxConnsPerHost: 1}
		client := &http.Client{Transport: tr}
		for range perConn {
			resp, err := client.Get("http://" + server.String() + "/")
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if len(b) != 1000 {
				t.Fatalf("body of %d bytes", len(b))
			}
		}
		tr.CloseIdleConnections()
	}
	// Wait for every end event (the client closes; the server answers FIN).
	isOurs := func(ev *Event) bool { return ev.Protocol == 6 && ev.DstPort == 8080 }
	waitFor(t, 5*time.Second, func() bool { return len(rec.final(isOurs)) >= conns })
	after := nettest.ReadVeth(t, f.HostA)
	stop()

	flows := rec.final(isOurs)
	if len(flows) != conns {
		t.Fatalf("%d flows, want %d: %+v", len(flows), conns, flows)
	}
	var sum nettest.VethStats
	for _, ev := range flows {
		if ev.Kind != EventFlowEnd {
			t.Errorf("flow ended by %v, want end (FIN)", ev.Kind)
		}
		if ev.Src != f.A || ev.Dst != f.B || !ev.Ingress || ev.IfName != f.HostA {
			t.Errorf("flow %v -> %v ingress=%v on %q, want %v -> %v ingress on %s", ev.Src, ev.Dst, ev.Ingress, ev.IfName, f.A, f.B, f.HostA)
		}
		want := TCPFlagSYN | TCPFlagACK | TCPFlagFIN | TCPFlagPSH
		if ev.TCPFlags != want {
			t.Errorf("flags %#x, want %#x", ev.TCPFlags, want)
		}
		if ev.HandshakeNs == 0 || ev.HandshakeNs > uint64(time.Second) {
			t.Errorf("handshake latency %d ns", ev.HandshakeNs)
		}
		if ev.FirstSeenNs > ev.LastSeenNs || time.Since(time.Unix(0, ev.FirstSeenNs)).Abs() > time.Minute {
			t.Errorf("first/last seen %v/%v not around now", time.Unix(0, ev.FirstSeenNs), time.Unix(0, ev.LastSeenNs))
		}
		sum.RxBytes += ev.BytesFwd
		sum.RxPackets += ev.PacketsFwd
		sum.TxBytes += ev.BytesRev
		sum.TxPackets += ev.PacketsRev
	}
	want := nettest.VethStats{RxBytes: after.RxBytes - before.RxBytes, RxPackets: after.RxPackets - before.RxPackets,
		TxBytes: after.TxBytes - before.TxBytes, TxPackets: after.TxPackets - before.TxPackets}
	if sum != want {
		t.Errorf("flows sum to fwd %d B/%d p, rev %d B/%d p; veth %s counted %d B/%d p in, %d B/%d p out",
			sum.RxBytes, sum.RxPackets, sum.TxBytes, sum.TxPackets, f.HostA, want.RxBytes, want.RxPackets, want.TxBytes, want.TxPackets)
	}
	t.Logf("%d requests over %d connections: fwd %d B/%d p, rev %d B/%d p (veth equal)", conns*perConn, conns,
		sum.RxBytes, sum.RxPackets, sum.TxBytes, sum.TxPackets)
}

func waitFor(t testing.TB, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v", d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestServerResetIsOneResetFlow: the server closes with SO_LINGER 0 while
// the client still writes; the connection is one record, a reset, with RST.
func TestServerResetIsOneResetFlow(t *testing.T) {
	requireBPF(t)
	f := nettest.New(t, false)
	server := netip.AddrPortFrom(f.B, 9000)
	var ln net.Listener
	if err := nettest.In(f.NSB, func() (err error) { ln, err = net.Listen("tcp", server.String()); return }); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		buf := make([]byte, 5)
		io.ReadFull(c, buf)
		c.(*net.TCPConn).SetLinger(0)
		c.Close()
	}()
	rec := &recorder{}
	_, stop := startCollector(t, Config{Interfaces: []string{f.HostA}}, rec)

	c, err := dialer(f.NSA)(context.Background(), "tcp", server.String())
	if err != nil {
		t.Fatal(err)
	}
	c.Write([]byte("hello"))
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	_, err = c.Read(make([]byte, 10))
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("client read %v, want connection reset", err)
	}
	c.Write([]byte("more")) // answered by another RST, still one record
	c.Close()
	isOurs := func(ev *Event) bool { return ev.Protocol == 6 && ev.DstPort == 9000 }
	waitFor(t, 5*time.Second, func() bool { return len(rec.final(isOurs)) >= 1 })
	time.Sleep(300 * time.Millisecond)
	stop()
	flows := rec.final(isOurs)
	if len(flows) != 1 {
		t.Fatalf("%d records for the reset connection, want 1: %+v", len(flows), flows)
	}
	ev := flows[0]
	if ev.Kind != EventFlowReset || ev.TCPFlags&TCPFlagRST == 0 || ev.TCPFlags&TCPFlagSYN == 0 || !ev.IsReply {
		t.Errorf("record %v flags %#x reply=%v, want a reset sent by the server with SYN and RST seen", ev.Kind, ev.TCPFlags, ev.IsReply)
	}
	if ev.Src != f.A || ev.Dst != f.B || ev.DstPort != 9000 {
		t.Errorf("oriented %v:%d -> %v:%d", ev.Src, ev.SrcPort, ev.Dst, ev.DstPort)
	}
}

// TestUDPICMPAndIPv6Flows checks the fields of non-TCP and IPv6 flows.
func TestUDPICMPAndIPv6Flows(t *testing.T) {
	requireBPF(t)
	f := nettest.New(t, true)
	// UDP echo server in B on v4 and a TCP listener on v6.
	var udp net.PacketConn
	var ln6 net.Listener
	if err := nettest.In(f.NSB, func() (err error) {
		if udp, err = net.ListenPacket("udp", netip.AddrPortFrom(f.B, 5353).String()); err != nil {
			return err
		}
		ln6, err = net.Listen("tcp", netip.AddrPortFrom(f.B6, 8443).String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	defer ln6.Close()
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := udp.ReadFrom(buf)
			if err != nil {
				return
			}
			udp.WriteTo(buf[:n], from)
		}
	}()
	go func() {
		for {
			c, err := ln6.Accept()
			if err != nil {
				return
			}
			io.Copy(io.Discard, c)
			c.Close()
		}
	}()
	rec := &recorder{}
	_, stop := startCollector(t, Config{Interfaces: []string{f.HostA}}, rec)

	err := nettest.In(f.NSA, func() error {
		u, err := net.Dial("udp", netip.AddrPortFrom(f.B, 5353).String())
		if err != nil {
			return err
		}
		defer u.Close()
		for i := range 3 {
			u.Write([]byte(fmt.Sprintf("ping-%d", i)))
			u.SetReadDeadline(time.Now().Add(2 * time.Second))
			if _, err := u.Read(make([]byte, 100)); err != nil {
				return fmt.Errorf("udp echo: %w", err)
			}
		}
		if err := ping(f.B, 0x4242); err != nil {
			return err
		}
		c, err := net.Dial("tcp", netip.AddrPortFrom(f.B6, 8443).String())
		if err != nil {
			return err
		}
		c.Write([]byte("v6"))
		return c.Close()
	})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, func() bool {
		return len(rec.final(func(ev *Event) bool { return ev.IPVersion == 6 && ev.Protocol == 6 })) == 1
	})
	stop() // flushes the UDP and ICMP flows, which never "end"

	cases := []struct {
		name  string
		match func(*Event) bool
		check func(*Event) error
	}{
		{"UDP is one flow with three datagrams each way", func(ev *Event) bool { return ev.Protocol == 17 }, func(ev *Event) error {
			if ev.Kind != EventFlush || ev.Src != f.A || ev.Dst != f.B || ev.DstPort != 5353 || ev.PacketsFwd != 3 || ev.PacketsRev != 3 ||
				ev.BytesFwd != 3*(14+20+8+6) || ev.BytesRev != ev.BytesFwd {
				return fmt.Errorf("got %+v", *ev)
			}
			return nil
		}},
		{"ICMP echo is one flow with the request type and both packets", func(ev *Event) bool { return ev.Protocol == 1 }, func(ev *Event) error {
			if ev.Src != f.A || ev.Dst != f.B || ev.ICMPType != 8 || ev.SrcPort != 0x4242 || ev.PacketsFwd != 1 || ev.PacketsRev != 1 || ev.IPVersion != 4 {
				return fmt.Errorf("got %+v", *ev)
			}
			return nil
		}},
		{"IPv6 TCP ends by FIN with IPv6 addresses", func(ev *Event) bool { return ev.IPVersion == 6 && ev.Protocol == 6 }, func(ev *Event) error {
			if ev.Kind != EventFlowEnd || ev.Src != f.A6 || ev.Dst != f.B6 || ev.DstPort != 8443 || ev.TCPFlags&TCPFlagFIN == 0 || ev.HandshakeNs == 0 {
				return fmt.Errorf("got %+v", *ev)
			}
			return nil
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			flows := rec.final(tc.match)
			if len(flows) != 1 {
				t.Fatalf("%d flows, want 1: %+v", len(flows), flows)
			}
			if err := tc.check(&flows[0]); err != nil {
				t.Error(err)
			}
		})
	}
}

// ping sends one ICMP echo request with identifier id and waits for the reply.
func ping(dst netip.Addr, id uint16) error {
	c, err := net.ListenPacket("ip4:icmp", "0.0.0.0")
	if err != nil {
		return err
	}
	defer c.Close()
	msg := make([]byte, 16)
	msg[0] = 8
	binary.BigEndian.PutUint16(msg[4:], id)
	binary.BigEndian.PutUint16(msg[6:], 1)
	var sum uint32
	for i := 0; i < len(msg); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(msg[i:]))
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	binary.BigEndian.PutUint16(msg[2:], ^uint16(sum))
	if _, err := c.WriteTo(msg, &net.IPAddr{IP: dst.AsSlice()}); err != nil {
		return err
	}
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 1500)
	for {
		n, _, err := c.ReadFrom(buf)
		if err != nil {
			return fmt.Errorf("ping reply: %w", err)
		}
		if n >= 8 && buf[0] == 0 && binary.BigEndian.Uint16(buf[4:]) == id {
			return nil
		}
	}
}
