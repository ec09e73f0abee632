package main

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/flowbus/flowbus/agent/endpoints"
	"github.com/flowbus/flowbus/deploy/lab"
	"github.com/flowbus/flowbus/internal/ducktest"
	"github.com/flowbus/flowbus/sinks/nats"
)

// The test binary is also the lab's child program: the lab runs
// "<test binary> lab serve|client ..." inside the pods, as it runs
// "flowbus lab ..." for the real binary.
//
// With FLOWBUS_TEST_MAIN=1 it is flowbus itself, for tests that run a
// command as a process of its own (to SIGKILL it).
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && (os.Args[1] == "lab" || os.Getenv("FLOWBUS_TEST_MAIN") == "1") {
		os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// labTestSetup is a lab on address ranges of its own (no other test or
// user lab uses 10.205.0.0/24), torn down when the test ends.
func labTestSetup(t *testing.T, prefix string, octet int) (*lab.Plan, lab.Config) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: network namespaces, veths and eBPF programs")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs iproute2's ip command")
	}
	topo, err := lab.DefaultTopology()
	if err != nil {
		t.Fatal(err)
	}
	topo.Network = lab.Network{IPv4: fmt.Sprintf("10.%d.0.0/24", octet), IPv6: fmt.Sprintf("fd00:fb:%d::/64", octet)}
	topo.Node = "lab-node"
	cfg := lab.Config{Prefix: prefix, StateDir: filepath.Join(t.TempDir(), "lab"), Self: []string{os.Args[0], "lab"},
		Log: slog.New(slog.DiscardHandler)}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	plan, err := lab.Up(ctx, cfg, topo)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := lab.Down(ctx, cfg); err != nil {
			t.Errorf("lab down: %v", err)
		}
	})
	if err != nil {
		t.Fatalf("lab up: %v", err)
	}
	return plan, cfg
}

// vethRx reads the receive counters of every pod's host-side veth: what
// the pods sent.
func vethRx(t *testing.T, plan *lab.Plan) map[string][2]int64 {
	t.Helper()
	out := map[string][2]int64{}
	for _, p := range plan.Pods {
		var v [2]int64
		for i, f := range []string{"rx_bytes", "rx_packets"} {
			b, err := os.ReadFile(filepath.Join("/sys/class/net", p.HostIf, "statistics", f))
			if err != nil {
				t.Fatal(err)
			}
			if v[i], err = strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64); err != nil {
				t.Fatal(err)
			}
		}
		out[p.Name] = v
	}
	return out
}

// labAgent is one agent of the test, built as `flowbus agent` builds it.
type labAgent struct {
	rt   *agentRuntime
	reg  *prometheus.Registry // outlives rt
	done chan error
	stop context.CancelFunc
}

func startLabAgent(t *testing.T, args ...string) *labAgent {
	t.Helper()
	fs, f := newAgentFlags(cmdIO{Stdout: io.Discard, Stderr: io.Discard})
	if err := parseFlags(fs, args); err != nil {
		t.Fatal(err)
	}
	rt, err := f.build(cmdIO{Stdout: io.Discard, Stderr: io.Discard, Log: slog.New(slog.DiscardHandler)}, false, "")
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	a := &labAgent{rt: rt, reg: rt.reg, done: make(chan error, 1), stop: stop}
	go func() { a.done <- rt.run(ctx) }()
	t.Cleanup(func() { a.close(t) })
	return a
}

// close stops the agent (it flushes every flow still in the kernel maps)
// and detaches its programs.
func (a *labAgent) close(t *testing.T) {
	if a.rt == nil {
		return
	}
	a.stop()
	if err := <-a.done; err != nil && !errors.Is(err, context.Canceled) {
		t.Errorf("agent: %v", err)
	}
	a.rt.close()
	a.rt = nil
}

func (a *labAgent) metric(name, label, value string) float64 {
	return counterValue(a.reg, name, label, value)
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func waitFor(t *testing.T, what string, d time.Duration, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestLabCountsEveryConnectionOnce runs the payments lab's real traffic
// (HTTP with keep-alive and per-request connections, gRPC, TCP, DNS over
// UDP, ICMP echo, IPv4 and IPv6; no policies, so every edge is answered) through agents on the real
// datapath, a NATS JetStream bus and the aggregator, and compares what
// DuckDB reads from the Parquet with independent ground truth:
//   - per pod, the bytes and packets the pod sent (pair rows where it is the
//     source, forward, and where it is the destination, reverse) equal its
//     host-side veth's receive counters;
//   - per client edge, the flows equal the connections the client opened;
//   - every record starts at the side that opened its connection, is not a
//     reply, and both pods' interfaces report each same-node connection.
//
// It runs once with one agent on every pod and once with the pods split
// over two agents with different node names (two nodes on one machine),
// which must give the same figures.
func TestLabCountsEveryConnectionOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the lab runs real traffic for seconds")
	}
	plan, labCfg := labTestSetup(t, "fblc", 205)
	eps, err := endpoints.Read(plan.EndpointsFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, split := range []struct {
		name  string
		nodes int
	}{{"one agent", 1}, {"two agents on two nodes", 2}} {
		t.Run(split.name, func(t *testing.T) {
			dir := t.TempDir()
			srv, url, err := nats.StartEmbedded(filepath.Join(dir, "nats"), -1)
			if err != nil {
				t.Fatal(err)
			}
			defer func() { srv.Shutdown(); srv.WaitForShutdown() }()

			// Agents: node i gets every nodes-th pod's interface.
			var agents []*labAgent
			observer := ""
			for n := range split.nodes {
				var ifs []string
				for i, p := range plan.Pods {
					if i%split.nodes == n {
						ifs = append(ifs, p.HostIf)
					}
				}
				obs := ""
				if n == 0 {
					obs = freeAddr(t)
					observer = obs
				}
				agents = append(agents, startLabAgent(t, "--source", "ebpf", "--interfaces", strings.Join(ifs, ","),
					"--endpoints", plan.EndpointsFile, "--node", fmt.Sprintf("node-%c", 'a'+n), "--bus", url,
					"--observer-address", obs, "--metrics-address", "", "--spool-dir", "off", "--data-dir", dir,
					"--active-timeout", "3s", "--linger", "200ms"))
				want := float64(len(ifs))
				waitFor(t, "the agent to attach", 10*time.Second, func() bool {
					return agents[n].metric("flowbus_bpf_attached_interfaces", "", "") == want
				})
			}
			before := vethRx(t, plan)
			rep, err := lab.Traffic(context.Background(), labCfg, lab.TrafficOptions{Duration: 8 * time.Second, Rate: 40, Seed: 7})
			if err != nil {
				t.Fatalf("traffic: %v", err)
			}
			if tot := rep.Total(); tot.Errors != 0 || tot.Timeouts != 0 || tot.Resets != 0 || tot.Connections == 0 {
				t.Fatalf("traffic: %d errors, %d timeouts, %d resets, %d connections; want answers only: %+v",
					tot.Errors, tot.Timeouts, tot.Resets, tot.Connections, rep.Edges)
			}
			// Let the last closes and their stragglers pass and linger out.
			time.Sleep(3 * time.Second)
			if split.nodes == 1 {
				checkObservationPoints(t, observer)
			}
			after := vethRx(t, plan)
			var published float64
			for _, a := range agents {
				if v := a.metric("flowbus_bpf_kernel_events_total", "counter", "non_ip"); v != 0 {
					t.Errorf("%v non-IP frames (ARP) on the pods' veths: the lab is meant to have none", v)
				} else {
					t.Logf("ARP and other non-IP frames in the run: 0")
				}
				a.close(t)
				published += a.metric("flowbus_stage_emitted_total", "stage", "export")
			}
			if again := vethRx(t, plan); fmt.Sprint(again) != fmt.Sprint(after) {
				t.Fatalf("the pods sent packets while the agents stopped: %v then %v", after, again)
			}

			out := filepath.Join(dir, "parquet")
			aggregateNATS(t, url, out, "labcount", published)
			checkLabCounts(t, out, plan, eps, before, after, rep)
		})
	}
}

// checkLabCounts compares the Parquet the aggregator wrote with the veth
// counters and the clients' connection counts.
func checkLabCounts(t *testing.T, out string, plan *lab.Plan, eps *endpoints.File, before, after map[string][2]int64, rep lab.TrafficReport) {
	t.Helper()
	db := ducktest.Open(t)
	pairs := "read_parquet('" + out + "/pair_rollup/*/*/*.parquet', hive_partitioning = true)"
	flows := "read_parquet('" + out + "/flows/*/*/*.parquet', hive_partitioning = true)"
	workload := map[string]string{} // pod → workload
	for _, p := range eps.Pods {
		workload[p.Name] = p.Namespace + "/" + p.Workload
	}

	// Per pod: what it sent, as the rollup says and as its veth says.
	var total [2]int64
	for _, p := range plan.Pods {
		wl := workload[p.Name]
		var sent [2]int64
		if err := db.QueryRow(`SELECT
			coalesce(sum(CASE WHEN src_namespace || '/' || src_workload = ? THEN bytes_fwd ELSE 0 END
			           + CASE WHEN dst_namespace || '/' || dst_workload = ? THEN bytes_rev ELSE 0 END), 0)::BIGINT,
			coalesce(sum(CASE WHEN src_namespace || '/' || src_workload = ? THEN packets_fwd ELSE 0 END
			           + CASE WHEN dst_namespace || '/' || dst_workload = ? THEN packets_rev ELSE 0 END), 0)::BIGINT
			FROM `+pairs, wl, wl, wl, wl).Scan(&sent[0], &sent[1]); err != nil {
			t.Fatal(err)
		}
		veth := [2]int64{after[p.Name][0] - before[p.Name][0], after[p.Name][1] - before[p.Name][1]}
		if sent != veth {
			t.Errorf("%s sent %d B in %d packets by pair_rollup, its veth %s received %d B in %d packets", wl, sent[0], sent[1], p.HostIf, veth[0], veth[1])
		}
		total[0] += veth[0]
		total[1] += veth[1]
	}
	var sumBytes, sumPackets, unknown int64
	if err := db.QueryRow(`SELECT sum(bytes_fwd + bytes_rev)::BIGINT, sum(packets_fwd + packets_rev)::BIGINT,
		count(*) FILTER (WHERE src_workload = '' OR dst_workload = '') FROM `+pairs).Scan(&sumBytes, &sumPackets, &unknown); err != nil {
		t.Fatal(err)
	}
	if sumBytes != total[0] || sumPackets != total[1] || unknown != 0 {
		t.Errorf("pair_rollup holds %d B, %d packets (%d rows with an unknown side); the veths received %d B, %d packets",
			sumBytes, sumPackets, unknown, total[0], total[1])
	}
	t.Logf("pods sent %d B in %d packets; pair_rollup %d B in %d packets", total[0], total[1], sumBytes, sumPackets)

	// Per client edge: flows against the connections the clients opened.
	// An edge's key: its workloads, protocol and port (ping: ICMP over both
	// families).
	edgeKey := func(src, dst, p string, port int64) string {
		if strings.HasPrefix(p, "ICMP") {
			return fmt.Sprintf("%s → %s ICMP", src, dst)
		}
		return fmt.Sprintf("%s → %s %s/%d", src, dst, p, port)
	}
	want := map[string]int64{}
	var wantAll int64
	for _, e := range rep.Edges {
		want[edgeKey(workload[e.From], workload[e.To], strings.ToUpper(e.Transport), int64(e.Port))] += int64(e.Connections)
		wantAll += int64(e.Connections)
	}
	got := map[string]int64{}
	rows, err := db.Query(`SELECT src_namespace || '/' || src_workload, dst_namespace || '/' || dst_workload, protocol, dst_port,
		sum(flows)::BIGINT FROM ` + pairs + ` GROUP BY ALL`)
	if err != nil {
		t.Fatal(err)
	}
	var gotAll int64
	for rows.Next() {
		var src, dst, p string
		var port, n int64
		if err := rows.Scan(&src, &dst, &p, &port, &n); err != nil {
			t.Fatal(err)
		}
		got[edgeKey(src, dst, p, port)] += n
		gotAll += n
	}
	rows.Close()
	for k, w := range want {
		if got[k] != w {
			t.Errorf("%s: %d flows in pair_rollup, the clients opened %d connections", k, got[k], w)
		}
	}
	for k, n := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("%s: %d flows in pair_rollup for a pair no client opens (a reversed flow?)", k, n)
		}
	}
	if gotAll != wantAll {
		t.Errorf("sum(flows) = %d, the clients opened %d connections", gotAll, wantAll)
	}
	t.Logf("sum(flows) %d for %d connections opened", gotAll, wantAll)

	// Every record: from the opener, not a reply; both points agree.
	// ARP (non-IP frames, counted by the kernel program) and ND/MLD would be
	// excluded from the veth counters; the settled lab has none (reported).
	var records, bad, reply, nd int64
	if err := db.QueryRow(`SELECT count(*),
		count(*) FILTER (WHERE src_pod_name = '' OR dst_pod_name = ''),
		count(*) FILTER (WHERE is_reply IS DISTINCT FROM false),
		count(*) FILTER (WHERE l4_protocol = 58 AND icmp_type BETWEEN 133 AND 143)
		FROM `+flows).Scan(&records, &bad, &reply, &nd); err != nil {
		t.Fatal(err)
	}
	if records == 0 || bad != 0 || reply != 0 || nd != 0 {
		t.Errorf("%d records: %d with an unknown side, %d replies or of unknown direction, %d neighbour discovery flows", records, bad, reply, nd)
	}
	t.Logf("%d records; ND/MLD flows in the run: %d", records, nd)
	edges := map[string]bool{}
	for _, e := range rep.Edges {
		edges[workload[e.From]+" → "+workload[e.To]] = true
	}
	q, err := db.Query(`SELECT DISTINCT src_namespace || '/' || src_workload, dst_namespace || '/' || dst_workload FROM ` + flows)
	if err != nil {
		t.Fatal(err)
	}
	for q.Next() {
		var s, d string
		if err := q.Scan(&s, &d); err != nil {
			t.Fatal(err)
		}
		if !edges[s+" → "+d] {
			t.Errorf("records oriented %s → %s: no client opens connections that way", s, d)
		}
	}
	q.Close()
	checkPointsAgree(t, db, flows)
}

// checkPointsAgree: the sender's records (from-endpoint, count_as none) and
// the receiver's (to-endpoint) of every pair hold the same traffic.
func checkPointsAgree(t *testing.T, db *sql.DB, flows string) {
	t.Helper()
	rows, err := db.Query(`SELECT src_workload, dst_workload, l4_protocol,
		sum(bytes_fwd + bytes_rev) FILTER (WHERE trace_observation_point = 'FROM_ENDPOINT')::BIGINT,
		sum(bytes_fwd + bytes_rev) FILTER (WHERE trace_observation_point = 'TO_ENDPOINT')::BIGINT,
		count(*) FILTER (WHERE trace_observation_point = 'FROM_ENDPOINT' AND count_as <> 'none'),
		count(*) FILTER (WHERE trace_observation_point = 'TO_ENDPOINT' AND count_as = 'none')
		FROM ` + flows + ` GROUP BY ALL ORDER BY ALL`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var s, d string
		var p int
		var from, to sql.NullInt64
		var fromCounted, toNone int64
		if err := rows.Scan(&s, &d, &p, &from, &to, &fromCounted, &toNone); err != nil {
			t.Fatal(err)
		}
		if from != to || fromCounted != 0 || toNone != 0 {
			t.Errorf("%s → %s proto %d: %v B at the sender, %v B at the receiver; %d sender records count, %d receiver records do not",
				s, d, p, from, to, fromCounted, toNone)
		}
	}
}

// checkObservationPoints points the real hubble CLI at the agent serving
// both pods' interfaces: a connection appears at the sender's point
// (from-endpoint, egress) and at the receiver's (to-endpoint, ingress), not
// as a reply, and --traffic-direction selects one or the other.
func checkObservationPoints(t *testing.T, server string) {
	t.Helper()
	hubble := hubbleCLI(t)
	observe := func(args ...string) string {
		cmd := exec.Command(hubble, append([]string{"observe", "--server", server, "--last", "4096"}, args...)...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		b, err := cmd.Output()
		if err != nil {
			t.Fatalf("hubble observe %v: %v: %s", args, err, stderr.String())
		}
		return string(b)
	}
	for _, c := range []struct{ dir, point, other string }{
		{"egress", "from-endpoint", "to-endpoint"},
		{"ingress", "to-endpoint", "from-endpoint"},
	} {
		lines := strings.Split(strings.TrimSpace(observe("--traffic-direction", c.dir, "-o", "compact", "--protocol", "tcp")), "\n")
		n := 0
		for _, l := range lines {
			if strings.Contains(l, " "+c.other+" ") || !strings.Contains(l, " "+c.point+" ") || !strings.Contains(l, " -> ") {
				t.Errorf("--traffic-direction %s printed %q, want %s only, client -> server", c.dir, l, c.point)
			}
			n++
		}
		if n < 10 {
			t.Errorf("--traffic-direction %s printed %d lines", c.dir, n)
		}
	}
	// One connection, both points: the echo edge opens one per request.
	js := observe("-o", "json", "--to-port", "5432", "--protocol", "tcp")
	seen := map[string]map[string]bool{}
	for _, l := range strings.Split(strings.TrimSpace(js), "\n") {
		var port, point, dir string
		if i := strings.Index(l, `"source_port":`); i >= 0 {
			port = strings.SplitN(l[i+len(`"source_port":`):], ",", 2)[0]
		}
		for _, p := range []string{"FROM_ENDPOINT", "TO_ENDPOINT"} {
			if strings.Contains(l, `"trace_observation_point":"`+p+`"`) {
				point = p
			}
		}
		for _, d := range []string{"EGRESS", "INGRESS"} {
			if strings.Contains(l, `"traffic_direction":"`+d+`"`) {
				dir = d
			}
		}
		if strings.Contains(l, `"is_reply":true`) {
			t.Errorf("a connection record marked as a reply: %s", l)
		}
		if (point == "FROM_ENDPOINT") != (dir == "EGRESS") || point == "" {
			t.Errorf("observation point %q with traffic direction %q: %s", point, dir, l)
		}
		if seen[port] == nil {
			seen[port] = map[string]bool{}
		}
		seen[port][point] = true
	}
	both := 0
	for _, pts := range seen {
		if pts["FROM_ENDPOINT"] && pts["TO_ENDPOINT"] {
			both++
		}
	}
	if both < len(seen)/2 || both == 0 {
		t.Errorf("%d of %d ledger → postgres connections appear at both the sender's and the receiver's point", both, len(seen))
	}
}
