package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	observerpb "github.com/cilium/cilium/api/v1/observer"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/flowbus/flowbus/aggregator"
	"github.com/flowbus/flowbus/aggregator/relay"
	"github.com/flowbus/flowbus/internal/ducktest"
	"github.com/flowbus/flowbus/internal/hubbletest"
	"github.com/flowbus/flowbus/internal/observer"
	"github.com/flowbus/flowbus/schemas"
	"github.com/flowbus/flowbus/sinks/nats"
)

// hubbleEpoch is when the Hubble tests' flows happen.
var hubbleEpoch = time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)

// hubblePipe is `flowbus agent --source hubble` instances (one at a time)
// publishing to an embedded NATS JetStream, and what was fed upstream.
type hubblePipe struct {
	dir, url string
	agents   []*labAgent
	fed      []hubbletest.Event // in feeding order
	lost     map[string]bool    // UUIDs of fed events the upstream reported lost
}

func newHubblePipe(t *testing.T) *hubblePipe {
	t.Helper()
	dir := t.TempDir()
	srv, url, err := nats.StartEmbedded(filepath.Join(dir, "nats"), -1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	return &hubblePipe{dir: dir, url: url, lost: map[string]bool{}}
}

// start runs an agent on server, as `flowbus agent` does; the state of the
// source is in the pipe's data directory, shared by every agent it starts.
func (p *hubblePipe) start(t *testing.T, server, observerAddr string) *labAgent {
	t.Helper()
	a := startLabAgent(t, "--source", "hubble", "--hubble-server", server, "--node", "flowbus-1", "--bus", p.url,
		"--observer-address", observerAddr, "--metrics-address", "", "--data-dir", p.dir, "--linger", "100ms")
	p.agents = append(p.agents, a)
	return a
}

// sum adds a counter over every agent the pipe started.
func (p *hubblePipe) sum(name, label, value string) float64 {
	var v float64
	for _, a := range p.agents {
		v += a.metric(name, label, value)
	}
	return v
}

// delivered is what the agents' sources handed their pipelines.
func (p *hubblePipe) delivered() int {
	return int(p.sum("flowbus_stage_emitted_total", "stage", "source"))
}

// waitDelivered waits until every fed event not reported lost was delivered.
func (p *hubblePipe) waitDelivered(t *testing.T) {
	t.Helper()
	want := len(p.fed) - len(p.lost)
	waitFor(t, fmt.Sprintf("%d flows delivered", want), 60*time.Second, func() bool { return p.delivered() >= want })
	if got := p.delivered(); got != want {
		t.Fatalf("%d flows delivered, want %d (fed %d, reported lost %d)", got, want, len(p.fed), len(p.lost))
	}
}

// feed writes events into u paced to the reader (no loss) and records them.
func (p *hubblePipe) feed(t *testing.T, u *hubbletest.Upstream, events []hubbletest.Event) {
	t.Helper()
	if err := u.FeedPaced(hubbletest.Flows(events), 1024, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	p.fed = append(p.fed, events...)
}

// burst writes events into u in one write after the reader has caught up:
// the reader loses exactly the oldest len(events) − ring of them, which
// the upstream reports as lost events.
func (p *hubblePipe) burst(t *testing.T, u *hubbletest.Upstream, events []hubbletest.Event, ring int) {
	t.Helper()
	p.waitDelivered(t)
	if err := u.Feed(hubbletest.Flows(events)); err != nil {
		t.Fatal(err)
	}
	for _, e := range events[:len(events)-ring] {
		p.lost[e.Flow.UUID] = true
	}
	p.fed = append(p.fed, events...)
}

// aggregate stops the agents and runs the aggregator (raw flows on) until
// it has read everything they published; it returns its output directory.
func (p *hubblePipe) aggregate(t *testing.T) string {
	t.Helper()
	for _, a := range p.agents {
		a.close(t)
	}
	out := filepath.Join(p.dir, "parquet")
	aggregateNATS(t, p.url, out, "hubble", p.sum("flowbus_stage_emitted_total", "stage", "export"))
	return out
}

// aggregateNATS runs the aggregator (raw flows on) on the NATS bus at url
// until it has read published records, and stops it: its Parquet is in out.
func aggregateNATS(t *testing.T, url, out, durable string, published float64) {
	t.Helper()
	reg := prometheus.NewRegistry()
	agg, err := aggregator.New(aggregator.Config{Out: out, RawFlows: true}, slog.New(slog.DiscardHandler), reg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- aggregator.RunNATS(ctx, agg, nats.ConsumerConfig{Conn: nats.Conn{URL: url}, Partitions: nats.DefaultPartitions, Durable: durable})
	}()
	waitFor(t, fmt.Sprintf("the aggregator to read %v records", published), 60*time.Second, func() bool {
		return counterValue(reg, "flowbus_aggregator_flow_rows_total", "", "") >= published
	})
	stop()
	if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
}

// check compares what DuckDB reads from the aggregator's Parquet with what
// the upstream was fed, minus what it reported lost: the flows on the bus
// (every record, in flows/) per node, and per pair the flows and
// connections the events that carry their connections add up to (the
// count-once rule as hubbletest marks it, not as the code computes it),
// and the HTTP requests per server, method and status.
func (p *hubblePipe) check(t *testing.T, out string) {
	t.Helper()
	type counts struct{ flows, conns int64 }
	wantNodes, wantPairs, wantHTTP := map[string]int64{}, map[hubbletest.Pair]counts{}, map[string]int64{}
	for _, e := range p.fed {
		if p.lost[e.Flow.UUID] {
			continue
		}
		wantNodes[e.Flow.NodeName]++
		if !e.Counts {
			continue
		}
		c := wantPairs[e.Pair]
		c.flows++
		if e.Opens {
			c.conns++
		}
		wantPairs[e.Pair] = c
		if l7 := e.Flow.L7; l7.Protocol == schemas.L7HTTP {
			wantHTTP[fmt.Sprintf("%s %s %d", e.Pair.DstWorkload, l7.HTTPMethod, l7.HTTPStatus)]++
		}
	}
	db := ducktest.Open(t)
	table := func(name string) string {
		return "read_parquet('" + out + "/" + name + "/*/*/*.parquet', hive_partitioning = true)"
	}
	query := func(q string, scan func(scan func(...any) error)) {
		t.Helper()
		rows, err := db.Query(q)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		for rows.Next() {
			scan(rows.Scan)
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
	}
	gotNodes := map[string]int64{}
	query(`SELECT node_name, sum(greatest(count, 1))::BIGINT FROM `+table("flows")+` GROUP BY ALL`, func(scan func(...any) error) {
		var node string
		var n int64
		if err := scan(&node, &n); err != nil {
			t.Fatal(err)
		}
		gotNodes[node] = n
	})
	if fmt.Sprint(gotNodes) != fmt.Sprint(wantNodes) {
		t.Errorf("flows on the bus per node %v, want %v", gotNodes, wantNodes)
	}
	gotPairs := map[hubbletest.Pair]counts{}
	query(`SELECT src_namespace, src_workload, dst_namespace, dst_workload, dst_service, dst_port, protocol, verdict, drop_reason,
		sum(flows)::BIGINT, sum(connections)::BIGINT FROM `+table("pair_rollup")+` GROUP BY ALL HAVING sum(flows) > 0`, func(scan func(...any) error) {
		var k hubbletest.Pair
		var c counts
		if err := scan(&k.SrcNamespace, &k.SrcWorkload, &k.DstNamespace, &k.DstWorkload, &k.DstService, &k.DstPort, &k.Protocol,
			&k.Verdict, &k.DropReason, &c.flows, &c.conns); err != nil {
			t.Fatal(err)
		}
		gotPairs[k] = c
	})
	var sumFlows, sumConns int64
	for k, w := range wantPairs {
		if gotPairs[k] != w {
			t.Errorf("pair %+v: %+v in pair_rollup, want %+v", k, gotPairs[k], w)
		}
		sumFlows, sumConns = sumFlows+w.flows, sumConns+w.conns
	}
	for k, g := range gotPairs {
		if _, ok := wantPairs[k]; !ok {
			t.Errorf("pair %+v: %+v in pair_rollup, for no connection", k, g)
		}
	}
	gotHTTP := map[string]int64{}
	query(`SELECT dst_workload, method, status, sum(requests)::BIGINT FROM `+table("route_rollup")+` WHERE l7_protocol = 'http' GROUP BY ALL`,
		func(scan func(...any) error) {
			var wl, method string
			var status int32
			var n int64
			if err := scan(&wl, &method, &status, &n); err != nil {
				t.Fatal(err)
			}
			gotHTTP[fmt.Sprintf("%s %s %d", wl, method, status)] = n
		})
	if len(wantHTTP) == 0 || fmt.Sprint(gotHTTP) != fmt.Sprint(wantHTTP) {
		t.Errorf("HTTP requests per server, method and status %v, want %v", gotHTTP, wantHTTP)
	}
	t.Logf("fed %d events, reported lost %d; on the bus per node %v; pair_rollup: %d pairs, %d flows, %d connections",
		len(p.fed), len(p.lost), gotNodes, len(gotPairs), sumFlows, sumConns)
}

// The acceptance run of the Hubble source: a node's Hubble (flowbus's own
// Observer server over a 4096-event ring, fed with a cluster's events) is
// restarted twice mid-stream and the flowbus agent once, and the upstream
// drops events twice for a reader that fell behind. What reaches the bus,
// and what DuckDB sums from the aggregator's Parquet, is every event fed
// minus exactly those the upstream reported lost, each once; the source's
// counters agree with the upstream's.
func TestHubbleSourceExactThroughRestarts(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: streams 200,000 flows through the bus and the aggregator")
	}
	const ring = 4096
	u, err := hubbletest.StartUpstream(hubbletest.UpstreamConfig{Node: "node-a", RingSize: ring})
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	cl := hubbletest.NewCluster(14, hubbleEpoch, "node-a")
	p := newHubblePipe(t)
	obs := freeAddr(t)
	first := p.start(t, u.Target(), obs)

	p.feed(t, u, cl.NextEvents(50_000))
	p.burst(t, u, cl.NextEvents(6_000), ring)
	p.feed(t, u, cl.NextEvents(30_000))
	p.waitDelivered(t)
	u.Stop() // Hubble restart 1: the ring comes back empty
	time.Sleep(300 * time.Millisecond)
	if err := u.Start(); err != nil {
		t.Fatal(err)
	}
	p.feed(t, u, cl.NextEvents(30_000))

	// The agent restarts (SIGTERM, then a new process on the same data
	// directory) while Hubble goes on: fewer events than its ring holds.
	p.waitDelivered(t)
	first.close(t)
	unsent := u.Fed() - u.Sent() - u.Lost() // 0: Hubble sent everything it did not report lost
	down := cl.NextEvents(3_000)
	if err := u.Feed(hubbletest.Flows(down)); err != nil {
		t.Fatal(err)
	}
	p.fed = append(p.fed, down...)
	second := p.start(t, u.Target(), obs)
	p.feed(t, u, cl.NextEvents(40_000))
	p.burst(t, u, cl.NextEvents(5_000), ring)
	p.feed(t, u, cl.NextEvents(20_000))
	p.waitDelivered(t)
	u.Stop() // Hubble restart 2
	time.Sleep(300 * time.Millisecond)
	if err := u.Start(); err != nil {
		t.Fatal(err)
	}
	p.feed(t, u, cl.NextEvents(20_000))
	p.waitDelivered(t)

	if len(p.fed) < 200_000 {
		t.Fatalf("only %d events fed", len(p.fed))
	}
	// The source's counters against the upstream's own.
	if lost := p.sum("flowbus_source_lost_events_total", "lost_source", "HUBBLE_RING_BUFFER"); lost != float64(u.Lost()) || u.Lost() != uint64(len(p.lost)) {
		t.Errorf("the source counted %v lost, the upstream reported %d, the test expects %d", lost, u.Lost(), len(p.lost))
	}
	if v := p.sum("hubble_lost_events_total", "source", "hubble_ring_buffer"); v != float64(len(p.lost)) {
		t.Errorf("hubble_lost_events_total = %v, want %d", v, len(p.lost))
	}
	if g := p.sum("flowbus_source_resume_gaps_total", "node", "node-a"); g != 2 {
		t.Errorf("%v resume gaps, want 2 (the two Hubble restarts)", g)
	}
	// At the agent's restart Hubble's ring held the 4096 newest events: the
	// 3,000 fed while the agent was down, and the rest delivered before.
	if d := second.metric("flowbus_source_duplicates_total", "", ""); d != float64(ring-len(down)) || unsent != 0 {
		t.Errorf("the restarted agent dropped %v events sent again, want %d (%d unsent at its stop)", d, ring-len(down), unsent)
	}
	p.check(t, p.aggregate(t))
}

// Through flowbus's relay over three nodes' Hubble: every node's flows
// arrive with their node names, and a node that stops is counted as
// unavailable, in the source's metrics and in the agent's Observer API as
// `hubble status` shows it.
func TestHubbleSourceThroughRelay(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: streams flows through the bus and the aggregator")
	}
	nodes := []string{"node-0", "node-1", "node-2"}
	ups := map[string]*hubbletest.Upstream{}
	var addrs []string
	for _, n := range nodes {
		u, err := hubbletest.StartUpstream(hubbletest.UpstreamConfig{Node: n})
		if err != nil {
			t.Fatal(err)
		}
		defer u.Close()
		ups[n] = u
		addrs = append(addrs, u.Target())
	}
	rl, err := relay.New(relay.Config{Agents: addrs, RetryInterval: 200 * time.Millisecond, SortWindow: 50 * time.Millisecond}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rctx, stopRelay := context.WithCancel(context.Background())
	relayDone := make(chan error, 1)
	go func() { relayDone <- rl.Serve(rctx, lis) }()
	defer func() {
		stopRelay()
		<-relayDone
	}()

	p := newHubblePipe(t)
	obs := freeAddr(t)
	a := p.start(t, lis.Addr().String(), obs)
	cl := hubbletest.NewCluster(15, hubbleEpoch, nodes...)
	feedAll := func(events []hubbletest.Event, skip string) {
		for node, evs := range hubbletest.ByNode(events) {
			if node != skip {
				p.feed(t, ups[node], evs)
			}
		}
	}
	feedAll(cl.NextEvents(20_000), "")
	p.waitDelivered(t)

	ups["node-1"].Stop()
	waitFor(t, "node-1 reported unavailable", 20*time.Second, func() bool {
		return a.metric("flowbus_source_node_events_total", "node", "node-1") >= 1
	})
	feedAll(cl.NextEvents(10_000), "node-1")
	p.waitDelivered(t)
	if v := a.metric("flowbus_source_upstream_nodes", "state", "NODE_CONNECTED"); v != 2 {
		t.Errorf("%v nodes connected, want 2", v)
	}
	st := serverStatus(t, obs)
	if st.connected != 2 || st.unavailable != 1 || !slices.Equal(st.names, []string{"node-1"}) {
		t.Errorf("agent's ServerStatus: %d connected, %d unavailable %v; want 2, 1 [node-1]", st.connected, st.unavailable, st.names)
	}
	if cli, _ := findHubbleCLI(); cli != "" {
		out, err := exec.Command(cli, "status", "--server", obs).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "Connected Nodes: 2/3") || !strings.Contains(string(out), "Unavailable Nodes: 1\n  - node-1") {
			t.Errorf("hubble status against the agent: %v\n%s", err, out)
		}
	}
	p.check(t, p.aggregate(t))
}

type statusSummary struct {
	connected, unavailable uint32
	names                  []string
}

// serverStatus asks the agent's Observer API for its status.
func serverStatus(t *testing.T, addr string) statusSummary {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := observerpb.NewObserverClient(conn).ServerStatus(ctx, &observerpb.ServerStatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	return statusSummary{st.GetNumConnectedNodes().GetValue(), st.GetNumUnavailableNodes().GetValue(), st.GetUnavailableNodes()}
}

// The agent's TLS flags reach the source: with the Hubble CA, the relay's
// client certificate and the node's server name it follows a node's Hubble
// over mTLS; without the client certificate it exits with an error that
// says so.
func TestHubbleSourceTLSFlags(t *testing.T) {
	pki, err := hubbletest.NewPKI(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	u, err := hubbletest.StartUpstream(hubbletest.UpstreamConfig{Node: "node-a",
		TLS: observer.ServerTLS{CertFile: pki.ServerCert, KeyFile: pki.ServerKey, ClientCAFile: pki.CAFile}})
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	p := newHubblePipe(t)
	tls := []string{"--hubble-tls", "--hubble-tls-ca-file", pki.CAFile, "--hubble-tls-server-name", hubbletest.ServerName("node-a")}
	args := append([]string{"--source", "hubble", "--hubble-server", u.Target(), "--bus", p.url, "--observer-address", "",
		"--metrics-address", "", "--data-dir", p.dir}, tls...)

	var stderr strings.Builder
	err = runAgent(context.Background(), args, cmdIO{Stdout: &stderr, Stderr: &stderr, Log: slog.New(slog.DiscardHandler)})
	if err == nil || !strings.Contains(err.Error(), "requires a client certificate (mTLS) and none was given") {
		t.Fatalf("agent without a client certificate: %v", err)
	}

	a := startLabAgent(t, append(args, "--hubble-tls-cert-file", pki.ClientCert, "--hubble-tls-key-file", pki.ClientKey)...)
	p.agents = append(p.agents, a)
	p.feed(t, u, hubbletest.NewCluster(16, hubbleEpoch, "node-a").NextEvents(2000))
	p.waitDelivered(t)
}
