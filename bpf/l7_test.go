//go:build linux

package bpf

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/flowbus/flowbus/bpf/nettest"
)

// l7Recorder keeps every capture, with its head copied.
type l7Recorder struct {
	mu   sync.Mutex
	caps []L7Capture
}

func (r *l7Recorder) Capture(c *L7Capture) {
	r.mu.Lock()
	defer r.mu.Unlock()
	cp := *c
	cp.Head = bytes.Clone(c.Head)
	r.caps = append(r.caps, cp)
}

func (r *l7Recorder) Idle() {}

func (r *l7Recorder) all() []L7Capture {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.caps)
}

// stream rebuilds one direction of a TCP connection from its captures: the
// heads placed at their offsets from the SYN's ISN + 1, and the lengths'
// sum. It fails the test when captures overlap or leave a hole.
func stream(t *testing.T, caps []L7Capture, fromClient bool) (data []byte, total int, syn, fin bool) {
	t.Helper()
	var isn uint32
	var next uint32
	for _, c := range caps {
		if c.IsReply == fromClient {
			continue
		}
		if uint16(c.TCPFlags)&TCPFlagSYN != 0 {
			syn, isn, next = true, c.Seq, c.Seq+1
			continue
		}
		if uint16(c.TCPFlags)&TCPFlagFIN != 0 {
			fin = true
		}
		if c.Len == 0 {
			continue
		}
		if !syn {
			t.Fatalf("payload captured before the SYN")
		}
		if c.Seq != next {
			t.Fatalf("capture at seq %d (offset %d), want %d: a hole or an overlap", c.Seq, c.Seq-isn-1, next)
		}
		next += c.Len
		total += int(c.Len)
		data = append(data, c.Head...)
		if len(c.Head) < int(c.Len) {
			data = append(data, make([]byte, int(c.Len)-len(c.Head))...)
		}
	}
	return data, total, syn, fin
}

// TestL7CaptureFollowsStreams: on an enabled TCP port the captures of a
// connection rebuild both byte streams exactly (heads in order, no hole, no
// overlap, SYN and FIN included), a segment longer than the head carries
// only the head; on an enabled UDP port every datagram is captured whole;
// flows on ports not enabled are not captured at all; and the kernel's
// counters agree with what userspace received.
func TestL7CaptureFollowsStreams(t *testing.T) {
	requireBPF(t)
	f := nettest.New(t, false)
	const head = 64
	server := netip.AddrPortFrom(f.B, 8080)
	other := netip.AddrPortFrom(f.B, 8081)
	dns := netip.AddrPortFrom(f.B, 5353)

	// A server that answers each line with a fixed reply, on both ports.
	for _, a := range []netip.AddrPort{server, other} {
		var ln net.Listener
		if err := nettest.In(f.NSB, func() (err error) { ln, err = net.Listen("tcp", a.String()); return }); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go func() {
					defer c.Close()
					buf := make([]byte, 1<<20)
					for {
						n, err := c.Read(buf)
						if n > 0 {
							c.Write([]byte("reply:" + string(rune('a'+n%26)) + "\n"))
						}
						if err != nil {
							return
						}
					}
				}()
			}
		}()
	}
	var udp net.PacketConn
	if err := nettest.In(f.NSB, func() (err error) { udp, err = net.ListenPacket("udp", dns.String()); return }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { udp.Close() })
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := udp.ReadFrom(buf)
			if err != nil {
				return
			}
			udp.WriteTo(append([]byte("answer-"), buf[:n]...), from)
		}
	}()

	rec := &l7Recorder{}
	cfg := Config{Interfaces: []string{f.HostA}, L7: L7Config{HeadBytes: head, Ports: []L7Port{
		{Port: 8080, Proto: 6, Class: 1}, {Port: 5353, Proto: 17, Class: 2},
	}}}
	c, stop := startCollector(t, cfg, &recorder{})
	ctx, cancel := context.WithCancel(context.Background())
	l7done := make(chan error, 1)
	go func() { l7done <- c.RunL7(ctx, rec) }()
	stopL7 := sync.OnceFunc(func() {
		cancel()
		if err := <-l7done; err != nil {
			t.Errorf("run L7: %v", err)
		}
	})
	t.Cleanup(stopL7)

	// Client writes: small messages one at a time (each its own segment,
	// answered before the next), then one of 20,000 bytes.
	var sent, got bytes.Buffer
	talk := func(addr netip.AddrPort, record bool) {
		conn, err := dialer(f.NSA)(context.Background(), "tcp", addr.String())
		if err != nil {
			t.Fatal(err)
		}
		msgs := [][]byte{[]byte("GET /one HTTP/1.1\r\n\r\n"), []byte("GET /two HTTP/1.1\r\n\r\n"), bytes.Repeat([]byte("z"), 20000)}
		for _, m := range msgs {
			if _, err := conn.Write(m); err != nil {
				t.Fatal(err)
			}
			if record {
				sent.Write(m)
			}
			conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			buf := make([]byte, 64)
			n, err := conn.Read(buf)
			if err != nil {
				t.Fatal(err)
			}
			if record {
				got.Write(buf[:n])
			}
			// The big message may be read in several parts: wait for every reply.
			time.Sleep(50 * time.Millisecond)
			conn.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
			for {
				n, err := conn.Read(buf)
				if record {
					got.Write(buf[:n])
				}
				if err != nil {
					break
				}
			}
		}
		conn.(*net.TCPConn).CloseWrite()
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		io.Copy(io.Discard, conn)
		conn.Close()
	}
	talk(server, true)
	talk(other, false)

	var queries [][]byte
	for i := range 3 {
		conn, err := dialer(f.NSA)(context.Background(), "udp", dns.String())
		if err != nil {
			t.Fatal(err)
		}
		q := []byte("query-" + string(rune('0'+i)))
		conn.Write(q)
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 64)
		if _, err := conn.Read(buf); err != nil {
			t.Fatal(err)
		}
		conn.Close()
		queries = append(queries, q)
	}

	var caps []L7Capture
	waitFor(t, 5*time.Second, func() bool {
		caps = rec.all()
		fins := 0
		for _, c := range caps {
			if uint16(c.TCPFlags)&TCPFlagFIN != 0 {
				fins++
			}
		}
		udps := 0
		for _, c := range caps {
			if c.Proto == 17 {
				udps++
			}
		}
		return fins >= 2 && udps >= 6
	})
	time.Sleep(200 * time.Millisecond)
	caps = rec.all()
	counters, err := c.L7Counters()
	if err != nil {
		t.Fatal(err)
	}
	stopL7()
	stop()

	var tcp, udps []L7Capture
	for _, cp := range caps {
		if cp.IfIndex == 0 || cp.TimeNs == 0 {
			t.Errorf("capture without interface or time: %+v", cp)
		}
		switch {
		case cp.Proto == 6 && (cp.DstPort == 8081 || cp.SrcPort == 8081):
			t.Errorf("a flow on a port not enabled was captured: %+v", cp)
		case cp.Proto == 6:
			tcp = append(tcp, cp)
			if cp.Class != 1 {
				t.Errorf("TCP capture of class %d, want 1", cp.Class)
			}
			if cp.Ingress == cp.IsReply {
				t.Errorf("at the client's interface, the client's segments pass ingress: %+v", cp)
			}
		default:
			udps = append(udps, cp)
			if cp.Class != 2 {
				t.Errorf("UDP capture of class %d, want 2", cp.Class)
			}
		}
	}
	reqs, reqTotal, syn, fin := stream(t, tcp, true)
	if !syn || !fin {
		t.Errorf("client stream: SYN captured %v, FIN captured %v; want both", syn, fin)
	}
	if reqTotal != sent.Len() {
		t.Errorf("client stream of %d bytes captured, %d sent", reqTotal, sent.Len())
	}
	// Every captured head equals the sent bytes at its offset; bytes past
	// a head are zero in reqs and skipped here.
	want := sent.Bytes()
	for _, cp := range tcp {
		if cp.IsReply || cp.Len == 0 {
			continue
		}
		if len(cp.Head) != min(int(cp.Len), head) {
			t.Errorf("segment of %d bytes with a head of %d, want %d", cp.Len, len(cp.Head), min(int(cp.Len), head))
		}
	}
	if len(reqs) != len(want) {
		t.Fatalf("rebuilt %d client bytes, want %d", len(reqs), len(want))
	}
	off := 0
	for _, cp := range tcp {
		if cp.IsReply || cp.Len == 0 {
			continue
		}
		if !bytes.Equal(cp.Head, want[off:off+len(cp.Head)]) {
			t.Errorf("head at offset %d is %q, sent %q", off, cp.Head, want[off:off+len(cp.Head)])
		}
		off += int(cp.Len)
	}
	resp, respTotal, rsyn, rfin := stream(t, tcp, false)
	if !rsyn || !rfin {
		t.Errorf("server stream: SYN-ACK captured %v, FIN captured %v; want both", rsyn, rfin)
	}
	if respTotal != got.Len() || !bytes.Equal(resp, got.Bytes()) {
		t.Errorf("server stream %q (%d bytes), client read %q", resp, respTotal, got.Bytes())
	}

	var qs, as int
	for _, u := range udps {
		if !u.IsReply {
			if int(u.Len) != len(u.Head) || !bytes.HasPrefix(u.Head, []byte("query-")) || u.Seq != 0 {
				t.Errorf("query capture %+v", u)
			}
			qs++
		} else {
			if !bytes.HasPrefix(u.Head, []byte("answer-query-")) {
				t.Errorf("answer capture %q", u.Head)
			}
			as++
		}
	}
	if qs != len(queries) || as != len(queries) {
		t.Errorf("%d queries and %d answers captured, want %d each", qs, as, len(queries))
	}
	if counters[1].Captured != uint64(len(tcp)) || counters[2].Captured != uint64(len(udps)) ||
		counters[1].RingBuf+counters[2].RingBuf+counters[1].Load+counters[2].Load != 0 {
		t.Errorf("kernel counters %+v, received %d TCP and %d UDP captures", counters[:3], len(tcp), len(udps))
	}
	if st := c.Stats(); st.L7BadRecords != 0 || st.L7Captures != uint64(len(caps)) {
		t.Errorf("stats: %d captures, %d bad; received %d", st.L7Captures, st.L7BadRecords, len(caps))
	}
	t.Logf("%d TCP captures (%d client bytes, %d server bytes), %d UDP captures", len(tcp), reqTotal, respTotal, len(udps))
}
