package stream

import (
	"context"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/flowbus/flowbus/agent/l7"
	l7http2 "github.com/flowbus/flowbus/agent/l7/http2"
	"github.com/flowbus/flowbus/agent/l7/l7test"
)

// recordGRPC makes health checks from a real grpc-go client to a real
// server through the recording proxy and returns the connection's reads.
func recordGRPC(t *testing.T, calls int) []l7test.Read {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	healthpb.RegisterHealthServer(srv, health.NewServer())
	go srv.Serve(ln)
	defer srv.Stop()
	rec := l7test.NewRecorder(t, ln.Addr().String())
	cc, err := grpc.NewClient(rec.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	hc := healthpb.NewHealthClient(cc)
	for range calls {
		if _, err := hc.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
			t.Fatal(err)
		}
	}
	cc.Close()
	conns := rec.Wait()
	if len(conns) != 1 {
		t.Fatalf("%d connections recorded; want 1", len(conns))
	}
	return conns[0]
}

// piece is one segment's worth of a read.
type piece struct {
	dir  l7.Direction
	ns   int64
	off  uint32
	data []byte
}

// pieces cuts the reads into segments of at most mss bytes.
func pieces(reads []l7test.Read, mss int) []piece {
	var out []piece
	var off [2]uint32
	for _, rd := range reads {
		for b := rd.Data; len(b) > 0; {
			n := min(len(b), mss)
			out = append(out, piece{rd.Dir, rd.Seq, off[rd.Dir], b[:n]})
			off[rd.Dir] += uint32(n)
			b = b[n:]
		}
	}
	return out
}

// Through the tracker, with sequence numbers wrapping, heads cut and
// retransmissions, a gRPC connection gives what the HTTP/2 parser alone
// gives from the same segments as chunks, on a grpc port and on an auto
// port alike.
func TestGRPCThroughTheTracker(t *testing.T) {
	const calls, mss, head = 20, 1000, 256
	reads := recordGRPC(t, calls)
	ps := pieces(reads, mss)

	// The floor: the parser fed the chunks directly.
	var want []string
	var wantStats l7.Stats
	p := l7http2.New(&wantStats, l7http2.Options{})
	conn := l7.Conn{Client: netip.MustParseAddrPort("10.0.0.1:40001"), Server: netip.MustParseAddrPort("10.0.0.2:9090"), Proto: TCP}
	emit := func(e *l7.Exchange) { want = append(want, format(&Record{Conn: conn, Protocol: HTTP2, Exchange: e})) }
	for _, pc := range ps {
		p.Feed(&l7.Chunk{Dir: pc.dir, TimeNs: pc.ns, Offset: uint64(pc.off), Len: uint32(len(pc.data)), Head: pc.data[:min(len(pc.data), head)]}, emit)
	}
	p.Close(emit)
	if len(want) != calls || !strings.HasPrefix(want[0], "http2 :40001 RESP POST http://") || !strings.Contains(want[0], "/grpc.health.v1.Health/Check 200 ") {
		t.Fatalf("the parser alone: %q", want)
	}

	for _, port := range []Protocol{HTTP2, Auto} {
		for _, noisy := range []bool{false, true} {
			rng := rand.New(rand.NewPCG(1, 2))
			r := newRig(t, Config{Ports: Ports{{TCP, 9090}: port}, HeadBytes: head})
			f := &tcp{c: conn, isn: [2]uint32{0xffffffff - 5000, 0xffffffff - 700}}
			r.feed(f.syn(0), f.synAck(0))
			retransmits := 0
			for i, pc := range ps {
				r.feed(f.at(pc.dir, pc.ns, pc.off, string(pc.data)))
				if noisy && rng.IntN(4) == 0 {
					back := ps[rng.IntN(i+1)] // an earlier segment of either direction
					r.feed(f.at(back.dir, pc.ns, back.off, string(back.data)))
					retransmits++
				}
			}
			for _, pc := range ps {
				f.sent[pc.dir] = pc.off + uint32(len(pc.data))
			}
			r.feed(f.fin(l7.FromClient, 1<<40), f.fin(l7.FromServer, 1<<40))
			got := r.take()
			if !slices.Equal(got, want) {
				t.Fatalf("port %s, noisy %v: records\n%s\nwant\n%s", port, noisy, strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
			st := r.tr.Stats()
			if st.Parse[HTTP2] != wantStats || st.Retransmits != uint64(retransmits) || st.Live != 0 || st.Unparsed != 0 {
				t.Fatalf("port %s, noisy %v: stats %+v; want parse stats %v and %d retransmits", port, noisy, st, wantStats, retransmits)
			}
		}
	}
}
