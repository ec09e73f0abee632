package http2

import (
	"context"
	"math/rand/v2"
	"net"
	"slices"
	"testing"
	"time"

	flowpb "github.com/cilium/cilium/api/v1/flow"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/flowbus/flowbus/agent/l7"
	"github.com/flowbus/flowbus/agent/l7/l7test"
	"github.com/flowbus/flowbus/schemas"
)

// recordGRPC runs health Check and Watch calls through the recording proxy
// and returns the two byte streams as read, and the proxy's address.
func recordGRPC(t *testing.T, checks int) ([]read, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	hs := health.NewServer()
	healthpb.RegisterHealthServer(srv, hs)
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
	for range checks {
		if _, err := hc.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: "nope"}); status.Code(err) != codes.NotFound {
		t.Fatalf("Check nope: %v; want NotFound", err)
	}
	wctx, wcancel := context.WithCancel(ctx)
	w, err := hc.Watch(wctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if r, err := w.Recv(); err != nil || r.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("Watch: %v %v", r, err)
	}
	hs.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	if r, err := w.Recv(); err != nil || r.Status != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("Watch: %v %v", r, err)
	}
	wcancel()
	if _, err := w.Recv(); status.Code(err) != codes.Canceled {
		t.Fatalf("Watch after cancel: %v", err)
	}
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	if _, err := hc.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatal(err)
	}
	cc.Close()
	return record(t, rec), rec.Addr()
}

// expected derives the exchanges from the recording with the test's own
// frame walker: the times of the first bytes of each stream's first
// HEADERS frames.
func expected(t *testing.T, reads []read, want []l7.Exchange) []l7.Exchange {
	t.Helper()
	s, seqAt := streams(reads)
	first := func(dir l7.Direction, id uint32) int64 {
		for _, f := range frames(s[dir], dir == l7.FromClient) {
			if f.typ == frameHeaders && f.id == id {
				return seqAt[dir][f.off]
			}
		}
		return 0
	}
	var ids []uint32
	for _, f := range frames(s[l7.FromClient], true) {
		if f.typ == frameHeaders && !slices.Contains(ids, f.id) {
			ids = append(ids, f.id)
		}
	}
	if len(ids) != len(want) {
		t.Fatalf("%d streams recorded; want %d", len(ids), len(want))
	}
	out := slices.Clone(want)
	for i, id := range ids {
		out[i].RequestNs = first(l7.FromClient, id)
		out[i].ResponseNs = first(l7.FromServer, id)
		if out[i].RequestNs == 0 || out[i].ResponseNs <= out[i].RequestNs {
			t.Fatalf("stream %d: times %d %d", id, out[i].RequestNs, out[i].ResponseNs)
		}
	}
	return out
}

func grpcExchange(url string, hdrs ...string) l7.Exchange {
	return l7.Exchange{L7: schemas.L7{
		Type: flowpb.L7FlowType_RESPONSE, Protocol: schemas.L7HTTP,
		HTTPMethod: "POST", HTTPURL: url, HTTPStatus: 200, HTTPProtocol: "HTTP/2", HTTPHeaders: hdrs,
	}}
}

func wantGRPC(t *testing.T, reads []read, addr string, checks int) []l7.Exchange {
	check := "http://" + addr + "/grpc.health.v1.Health/Check"
	var want []l7.Exchange
	for range checks {
		want = append(want, grpcExchange(check, "Grpc-Status: 0"))
	}
	want = append(want,
		grpcExchange(check, "Grpc-Message: unknown service", "Grpc-Status: 5"),
		grpcExchange("http://"+addr+"/grpc.health.v1.Health/Watch"), // cancelled by the client: no status
		grpcExchange(check, "Grpc-Status: 0"))
	return expected(t, reads, want)
}

func diff(t *testing.T, name string, got, want []l7.Exchange) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d exchanges; want %d:\n%+v", name, len(got), len(want), got)
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.RequestNs != w.RequestNs || g.ResponseNs != w.ResponseNs || g.L7.Type != w.L7.Type ||
			g.L7.Protocol != w.L7.Protocol || g.L7.HTTPMethod != w.L7.HTTPMethod || g.L7.HTTPURL != w.L7.HTTPURL ||
			g.L7.HTTPStatus != w.L7.HTTPStatus || g.L7.HTTPProtocol != w.L7.HTTPProtocol || !slices.Equal(g.L7.HTTPHeaders, w.L7.HTTPHeaders) {
			t.Fatalf("%s: exchange %d:\n got %+v\nwant %+v", name, i, g, w)
		}
	}
}

// splitReads cuts every read into random pieces (never joining two reads,
// so each byte keeps its read's time); head returns a piece's head size.
func splitReads(rng *rand.Rand, reads []read, head func(n int) int) []l7.Chunk {
	var out []l7.Chunk
	for _, c := range chunks(reads) {
		data := c.Head
		off := c.Offset
		for len(data) > 0 {
			n := min(len(data), 1+rng.IntN(2*len(data)))
			out = append(out, l7.Chunk{Dir: c.Dir, TimeNs: c.TimeNs, Offset: off, Len: uint32(n), Head: data[:head(n)]})
			data, off = data[n:], off+uint64(n)
		}
	}
	return out
}

// frameChunks cuts each direction at frame boundaries, one frame a chunk,
// with heads holding the frame header and any header block or control
// payload but only part of a DATA payload: what a head of 9 + the header
// block sizes captures.
func frameChunks(rng *rand.Rand, reads []read) []l7.Chunk {
	s, seqAt := streams(reads)
	var out []l7.Chunk
	for dir := l7.FromClient; dir <= l7.FromServer; dir++ {
		if dir == l7.FromClient {
			out = append(out, l7.Chunk{Dir: dir, TimeNs: seqAt[dir][0], Len: uint32(len(preface)), Head: s[dir][:len(preface)]})
		}
		for _, f := range frames(s[dir], dir == l7.FromClient) {
			n := 9 + f.len
			h := n
			if f.typ == frameData {
				h = 9 + uint32(rng.IntN(int(f.len)+1))
			}
			out = append(out, l7.Chunk{Dir: dir, TimeNs: seqAt[dir][f.off], Offset: f.off, Len: n, Head: s[dir][f.off : f.off+uint64(h)]})
		}
	}
	slices.SortStableFunc(out, func(a, b l7.Chunk) int { return int(a.TimeNs - b.TimeNs) })
	return out
}

func TestGRPCHealthCallsInAnyChunking(t *testing.T) {
	const checks = 5
	reads, addr := recordGRPC(t, checks)
	want := wantGRPC(t, reads, addr, checks)

	got, st := run(chunks(reads))
	diff(t, "whole reads", got, want)
	if st != (l7.Stats{}) {
		t.Fatalf("whole reads: stats %v", st)
	}
	rng := newRand()
	for i := range 200 {
		got, st := run(splitReads(rng, reads, func(n int) int { return n }))
		diff(t, "random splits", got, want)
		if st != (l7.Stats{}) {
			t.Fatalf("random splits %d: stats %v", i, st)
		}
		got, st = run(frameChunks(rng, reads))
		diff(t, "frame heads", got, want)
		if st != (l7.Stats{}) {
			t.Fatalf("frame heads %d: stats %v", i, st)
		}
	}
}

// With heads too small for the header blocks, the connection's HPACK state
// is lost: counted once (truncated, then lost), never misparsed.
func TestGRPCSmallHeadsLoseTheConnectionCounted(t *testing.T) {
	reads, addr := recordGRPC(t, 3)
	want := wantGRPC(t, reads, addr, 3)
	rng := rand.New(rand.NewPCG(3, 4))
	for range 100 {
		hs := 1 + rng.IntN(24)
		got, st := run(splitReads(rng, reads, func(n int) int { return min(n, hs) }))
		if st[l7.ReasonLost] != 1 || st[l7.ReasonTruncated] != 1 || st[l7.ReasonGap]+st[l7.ReasonMalformed]+st[l7.ReasonUnpaired]+st[l7.ReasonStateCap] != 0 {
			t.Fatalf("heads of %d: stats %v", hs, st)
		}
		// what was emitted before the loss is what happened
		for _, g := range got {
			i := slices.IndexFunc(want, func(w l7.Exchange) bool { return w.RequestNs == g.RequestNs })
			if i < 0 || g.L7.HTTPURL != want[i].L7.HTTPURL || g.L7.HTTPMethod != "POST" {
				t.Fatalf("heads of %d: %+v is not a call made", hs, g)
			}
		}
	}
}

func newRand() *rand.Rand { return rand.New(rand.NewPCG(1, 2)) }
