package lab

import (
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
)

// loopbackEdge returns client edge idx of pod from in topology yaml, aimed
// at 127.0.0.1 and ::1 instead of the target pod's addresses, writing its
// ground truth to a log in a temporary state directory (returned).
func loopbackEdge(t *testing.T, yaml string, from string, idx int) (*edge, string) {
	t.Helper()
	topo, err := ParseTopology([]byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	plan, err := NewPlan(topo, "fb", "n")
	if err != nil {
		t.Fatal(err)
	}
	spec, _ := plan.Spec(from)
	cs := spec.Clients[idx]
	target := *func() *PodPlan { p, _ := plan.Pod(cs.To); return p }()
	target.IPv4, target.IPv6 = netip.MustParseAddr("127.0.0.1"), netip.IPv6Loopback()
	dir := filepath.Join(t.TempDir(), "state")
	truth, err := openTruth(dir, plan, from)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { truth.Close() })
	return &edge{spec: cs, target: &target, plan: plan, from: from, truth: truth, rng: rand.New(rand.NewPCG(1, 2))}, dir
}

// freePort returns a TCP port free on loopback now.
func freePort(t *testing.T) uint16 {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return uint16(ln.Addr().(*net.TCPAddr).Port)
}

func TestPipelinedHTTPClientSendsBackToBackAndChecksEachAnswerInOrder(t *testing.T) {
	port := freePort(t)
	yaml := fmt.Sprintf(`
pods:
  - name: shop
    namespace: payments
    servers:
      - kind: http
        port: %d
        routes:
          - {path: "/orders/{id}", method: POST, error_every: 3, error_status: 503}
  - name: gw
    namespace: edge
    clients:
      - {to: shop, kind: http, port: %[1]d, method: POST, paths: ["/orders/{id}"], pipeline: 8, family: ipv4}
`, port)
	e, dir := loopbackEdge(t, yaml, "gw", 0)
	spec, _ := e.plan.Spec("shop")
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	// Count the connections and the requests the server saw on each.
	var conns []net.Conn
	accepted := make(chan net.Conn, 16)
	srv := &http.Server{Handler: &httpHandler{pod: "shop", routes: spec.Servers[0].Routes},
		ConnState: func(c net.Conn, s http.ConnState) {
			if s == http.StateNew {
				accepted <- c
			}
		}, ErrorLog: slog.NewLogLogger(slog.DiscardHandler, 0)}
	go srv.Serve(ln)
	defer srv.Close()

	for range 3 {
		e.sent.Add(1) // as the tick loop does
		e.do()
	}
	close(accepted)
	for c := range accepted {
		conns = append(conns, c)
	}
	st := e.stats()
	if st.Sent != 24 || st.OK+st.Status5xx != 24 || st.Errors != 0 || st.Connections != 3 || len(conns) != 3 {
		t.Fatalf("stats %+v, server accepted %d connections; want 24 requests answered as expected on 3 connections", st, len(conns))
	}
	if err := e.truth.Flush(); err != nil {
		t.Fatal(err)
	}
	recs, err := ReadTruth(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 24 {
		t.Fatalf("%d truth records; want 24", len(recs))
	}
	var s5xx uint64
	for i, r := range recs {
		var id uint64
		fmt.Sscanf(strings.TrimPrefix(r.Path, "/orders/"), "%d", &id)
		want := 200
		if id%3 == 0 {
			want = 503
			s5xx++
		}
		if r.Pipelined != i%8+1 || r.Status != want || r.Error != "" || r.Method != "POST" || r.Proto != "http" ||
			r.To != "shop" || r.ToNamespace != "payments" || r.From != "gw" || r.Family != "ipv4" || r.Transport != "tcp" ||
			r.ServerPort != port || r.LocalPort == 0 || r.LatencyNs <= 0 || r.Time == 0 {
			t.Errorf("record %d: %+v; want position %d, status %d, a local port and a latency", i, r, i%8+1, want)
		}
		// One connection per pipeline: one local port for its 8 requests,
		// one start time, and responses that come in order.
		if first := recs[i-i%8]; r.LocalPort != first.LocalPort || r.Time != first.Time {
			t.Errorf("record %d: port %d time %d; want those of the pipeline's first, %d %d", i, r.LocalPort, r.Time, first.LocalPort, first.Time)
		}
		if i%8 > 0 && r.LatencyNs < recs[i-1].LatencyNs {
			t.Errorf("record %d: latency %d before the previous response's %d", i, r.LatencyNs, recs[i-1].LatencyNs)
		}
	}
	if s5xx != st.Status5xx {
		t.Errorf("%d 5xx in the truth, %d counted", s5xx, st.Status5xx)
	}
	if recs[0].LocalPort == recs[8].LocalPort && recs[8].LocalPort == recs[16].LocalPort {
		t.Errorf("three pipelines on one local port %d", recs[0].LocalPort)
	}
}

func TestPipelinedClientAgainstNoServerFailsEveryRequestOnce(t *testing.T) {
	port := freePort(t)
	yaml := fmt.Sprintf(`
pods:
  - name: shop
    namespace: payments
    servers: [{kind: http, port: %d, routes: [{path: "/x"}]}]
  - name: gw
    namespace: edge
    clients: [{to: shop, kind: http, port: %[1]d, paths: ["/x"], pipeline: 4, family: ipv4}]
`, port)
	e, dir := loopbackEdge(t, yaml, "gw", 0)
	e.sent.Add(1)
	e.do()
	st := e.stats()
	if st.Sent != 4 || st.Errors != 4 || st.Connections != 1 {
		t.Fatalf("stats %+v; want 4 sent, 4 errors (refused), 1 connection", st)
	}
	e.truth.Flush()
	recs, _ := ReadTruth(dir)
	if len(recs) != 4 {
		t.Fatalf("%d records; want 4", len(recs))
	}
	for _, r := range recs {
		if r.Status != -1 || r.Error == "" {
			t.Errorf("%+v; want status -1 with an error", r)
		}
	}
}

func TestGRPCClientCallsCheckAndStreamAndWritesEachRPC(t *testing.T) {
	port := freePort(t)
	yaml := fmt.Sprintf(`
pods:
  - name: fraud
    namespace: payments
    workload: fraud-detector
    servers: [{kind: grpc, port: %d}]
  - name: api
    namespace: payments
    clients:
      - {to: fraud, kind: grpc, port: %[1]d, services: ["", fraud-detector, nosuch], family: ipv4}
      - {to: fraud, kind: grpc, port: %[1]d, stream: 5, family: ipv4}
`, port)
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	srv := newGRPCServer("fraud-detector", 0)
	go srv.Serve(ln)
	defer srv.Stop()
	for i, want := range []struct {
		method   string
		statuses []int
		messages int
	}{
		{GRPCCheck, []int{0, 0, 0, 0, 5, 5}, 1}, // n/2 picks the service: "", "", fraud-detector ×2, nosuch ×2 (NOT_FOUND)
		{GRPCStream, []int{0, 0, 0, 0, 0, 0}, 5},
	} {
		e, dir := loopbackEdge(t, yaml, "api", i)
		if err := e.setup(); err != nil {
			t.Fatal(err)
		}
		for range 6 {
			e.sent.Add(1)
			e.do()
		}
		for _, c := range e.closers {
			c()
		}
		if st := e.stats(); st.OK != 6 || st.Errors != 0 || st.Connections != 1 {
			t.Fatalf("%s: %+v (%s); want 6 OK on 1 connection", want.method, st, st.LastError)
		}
		e.truth.Flush()
		recs, err := ReadTruth(dir)
		if err != nil || len(recs) != 6 {
			t.Fatalf("%s: %d records, %v; want 6", want.method, len(recs), err)
		}
		for j, r := range recs {
			notFound := want.statuses[j] == 5
			msgs := want.messages
			if notFound {
				msgs = 0
			}
			if r.Method != want.method || r.Status != want.statuses[j] || r.Stream != (want.method == GRPCStream) || r.Messages != msgs ||
				r.Proto != "grpc" || r.LocalPort == 0 || r.LocalPort != recs[0].LocalPort || r.LatencyNs <= 0 || r.DurationNs < r.LatencyNs ||
				r.ToWorkload != "fraud-detector" || r.Transport != "tcp" || (r.Error != "") != notFound {
				t.Errorf("%s record %d: %+v; want status %d, %d messages, one connection, latency <= duration", want.method, j, r, want.statuses[j], msgs)
			}
		}
	}
}
