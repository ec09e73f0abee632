//go:build linux

package main

// The fault suite's process cases (make faults; issue 18): the agent and
// the aggregator run as processes of their own (this test binary with
// FLOWBUS_TEST_MAIN=1, TestMain), the bus in the test process (embedded
// NATS, kfake) so that the test stops and restarts it. Every case asserts
// exact totals from DuckDB over the Parquet or exact counters.

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/flowbus/flowbus/agent/source/synthetic"
	"github.com/flowbus/flowbus/internal/ducktest"
	"github.com/flowbus/flowbus/schemas"
	"github.com/flowbus/flowbus/sinks/kafka"
	"github.com/flowbus/flowbus/sinks/nats"
)

// faultOutage is how long the outage cases keep the bus down: 60 s under
// make faults (FLOWBUS_FAULTS_FULL=1), 8 s in make test.
func faultOutage() time.Duration {
	if os.Getenv("FLOWBUS_FAULTS_FULL") == "1" {
		return 60 * time.Second
	}
	return 8 * time.Second
}

// faultNATS is an embedded NATS JetStream server the test stops and
// restarts on the same port and store.
type faultNATS struct {
	t     *testing.T
	store string
	port  int
	url   string
	srv   *server.Server
}

func startFaultNATS(t *testing.T) *faultNATS {
	t.Helper()
	n := &faultNATS{t: t, store: filepath.Join(t.TempDir(), "jetstream")}
	srv, url, err := nats.StartEmbedded(n.store, -1)
	if err != nil {
		t.Fatal(err)
	}
	n.srv, n.url = srv, url
	n.port, _ = strconv.Atoi(url[strings.LastIndex(url, ":")+1:])
	t.Cleanup(n.stop)
	return n
}

func (n *faultNATS) stop() {
	if n.srv != nil {
		n.srv.Shutdown()
		n.srv.WaitForShutdown()
		n.srv = nil
	}
}

func (n *faultNATS) start() {
	n.t.Helper()
	srv, _, err := nats.StartEmbedded(n.store, n.port)
	if err != nil {
		n.t.Fatalf("restart NATS on port %d: %v", n.port, err)
	}
	n.srv = srv
}

// messages is how many messages the flows stream holds.
func (n *faultNATS) messages() uint64 {
	n.t.Helper()
	nc, err := natsgo.Connect(n.url)
	if err != nil {
		n.t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, nats.DefaultStream)
	if err != nil {
		n.t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		n.t.Fatal(err)
	}
	return info.State.Msgs
}

// fbProc is a flowbus command run as a process of its own, its output in
// a log file; killed when the test ends if still running.
type fbProc struct {
	t       *testing.T
	name    string
	cmd     *exec.Cmd
	logPath string
	metrics string // host:port of /metrics, or ""
	done    chan struct{}
	err     error
}

// startFB starts `flowbus args...` (metrics on a free port) with its log
// in dir/name.log.
func startFB(t *testing.T, dir, name string, args ...string) *fbProc {
	t.Helper()
	p := &fbProc{t: t, name: name, logPath: filepath.Join(dir, name+".log"), metrics: freeAddr(t), done: make(chan struct{})}
	logf, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	args = append(args, "--metrics-address", p.metrics)
	if args[0] == "agent" {
		args = append(args, "--observer-address", "")
	}
	p.cmd = exec.Command(os.Args[0], args...)
	p.cmd.Env = append(os.Environ(), "FLOWBUS_TEST_MAIN=1")
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		tail := 4000
		select {
		case <-p.done:
		default:
			if t.Failed() {
				// A process still running when the test failed may be
				// stuck: SIGQUIT makes Go print every goroutine's stack.
				_ = p.cmd.Process.Signal(syscall.SIGQUIT)
				select {
				case <-p.done:
					tail = 40000
				case <-time.After(5 * time.Second):
				}
			}
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("%s's log:\n%s", p.name, p.logTail(tail))
		}
	})
	return p
}

func (p *fbProc) log() string { b, _ := os.ReadFile(p.logPath); return string(b) }

func (p *fbProc) logTail(n int) string {
	s := p.log()
	if len(s) > n {
		s = "…" + s[len(s)-n:]
	}
	return s
}

func (p *fbProc) signal(sig syscall.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatalf("%s: signal %v: %v", p.name, sig, err)
	}
}

// wait waits up to d for the process to exit and returns its error.
func (p *fbProc) wait(d time.Duration) error {
	p.t.Helper()
	select {
	case <-p.done:
		return p.err
	case <-time.After(d):
		p.t.Fatalf("%s did not exit within %v", p.name, d)
		return nil
	}
}

func (p *fbProc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// metric scrapes the process's /metrics for one series (0, false when it
// cannot be read).
func (p *fbProc) metric(name string, labels ...string) (float64, bool) {
	mfs, err := scrapeMetrics(&http.Client{Timeout: 2 * time.Second}, "http://"+p.metrics+"/metrics")
	if err != nil {
		return 0, false
	}
	return metricValue(mfs, name, labels...)
}

// stop SIGTERMs the process and requires a clean exit.
func (p *fbProc) stop() {
	p.t.Helper()
	p.signal(syscall.SIGTERM)
	if err := p.wait(60 * time.Second); err != nil {
		p.t.Fatalf("%s: %v\n%s", p.name, err, p.logTail(4000))
	}
}

// agentArgs are a synthetic agent's flags: n flows (0: until stopped) at
// rate per second, raw (no aggregation) unless aggregate.
func agentArgs(bus, dataDir, node string, seed int64, rate float64, n uint64, extra ...string) []string {
	return append([]string{"agent", "--source", "synthetic", "--seed", strconv.FormatInt(seed, 10),
		"--rate", strconv.FormatFloat(rate, 'f', -1, 64), "--count", strconv.FormatUint(n, 10), "--node", node,
		"--bus", bus, "--data-dir", dataDir, "--linger", "200ms", "--queue-messages", "4"}, extra...)
}

// startFaultAggregator starts the aggregator with raw flows on bus.
func startFaultAggregator(t *testing.T, dir, bus, dataDir string, extra ...string) *fbProc {
	t.Helper()
	return startFB(t, dir, "aggregator", append([]string{"aggregator", "--bus", bus, "--group", "faults",
		"--data-dir", dataDir, "--raw-flows"}, extra...)...)
}

// drainAggregator waits until the aggregator has consumed at least want
// messages (the bus's whole stream) and then 2 s without a new one, then
// stops it: it writes and commits what it holds. (A Kafka aggregator that
// lost its partitions during an outage reads some messages twice; its
// files skip what they already hold.)
func drainAggregator(t *testing.T, agg *fbProc, want uint64, d time.Duration) {
	t.Helper()
	var got, last float64
	var since time.Time
	waitFor(t, fmt.Sprintf("the aggregator to consume the %d messages on the bus", want), d, func() bool {
		got, _ = agg.metric("flowbus_aggregator_messages_total")
		if agg.exited() {
			t.Fatalf("the aggregator exited: %v\n%s", agg.err, agg.logTail(4000))
		}
		if got != last || since.IsZero() {
			last, since = got, time.Now()
		}
		return got >= float64(want) && time.Since(since) >= 2*time.Second
	})
	if got != float64(want) {
		t.Logf("the aggregator consumed %v messages, the bus holds %d (re-read after losing partitions)", got, want)
	}
	agg.stop()
}

// duckInt runs a query of one integer over the Parquet under dataDir:
// {flows}, {pairs} and {routes} stand for the tables.
func duckInt(t *testing.T, dataDir, query string) int64 {
	t.Helper()
	r := strings.NewReplacer(
		"{flows}", fmt.Sprintf("read_parquet('%s/flows/**/*.parquet', filename = true, hive_partitioning = false)", dataDir),
		"{pairs}", fmt.Sprintf("read_parquet('%s/pair_rollup/**/*.parquet', filename = true, hive_partitioning = false)", dataDir))
	db := ducktest.Open(t)
	var n *int64
	if err := db.QueryRow(r.Replace(query)).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	if n == nil {
		return 0
	}
	return *n
}

// spoolFiles lists the spool's segment files.
func spoolFiles(t *testing.T, dir string) []string {
	t.Helper()
	m, _ := filepath.Glob(filepath.Join(dir, "*.seg"))
	return m
}

// TestAgentAndAggregatorProcessesAcrossBusOutage: the agent and the
// aggregator as processes, the bus down for faultOutage (60 s under make
// faults) while the agent keeps producing (2,000 flows/s, raw): the agent
// spools (flowbus_spool_bytes > 0 during the outage), both ride it out,
// and once the bus is back every flow is in the Parquet exactly once:
// count(*) = sum(count) = the flows the agent generated, and the spool is
// empty again.
func TestAgentAndAggregatorProcessesAcrossBusOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the bus is down for 8 s or more")
	}
	outage := faultOutage()
	const rate = 2000
	n := uint64(rate) * uint64((outage+8*time.Second)/time.Second) // 3 s before, the outage, 5 s after
	for _, busKind := range []string{"nats", "kafka"} {
		t.Run(busKind, func(t *testing.T) {
			dir := t.TempDir()
			var bus string
			var down, up func()
			var stored func() uint64
			switch busKind {
			case "nats":
				ns := startFaultNATS(t)
				bus, down, up, stored = ns.url, ns.stop, ns.start, ns.messages
			case "kafka":
				kdir := filepath.Join(dir, "kafka")
				opts := func(port int) []kfake.Opt {
					return []kfake.Opt{kfake.NumBrokers(1), kfake.Ports(port), kfake.DataDir(kdir),
						kfake.SeedTopics(4, kafka.DefaultTopic, kafka.DefaultTopic+".dlq")}
				}
				c, err := kfake.NewCluster(opts(0)...)
				if err != nil {
					t.Fatal(err)
				}
				addr := c.ListenAddrs()[0]
				_, ps, _ := net.SplitHostPort(addr)
				port, _ := strconv.Atoi(ps)
				t.Cleanup(func() { c.Close() })
				bus = "kafka://" + addr
				down = func() { c.Close() }
				up = func() {
					if c, err = kfake.NewCluster(opts(port)...); err != nil {
						t.Fatalf("restart kfake on port %d: %v", port, err)
					}
				}
				stored = func() uint64 { return kafkaEndOffsets(t, addr, kafka.DefaultTopic) }
			}
			agg := startFaultAggregator(t, dir, bus, filepath.Join(dir, "parquet"), "--window", "1s", "--lateness", "1s")
			agent := startFB(t, dir, "agent", agentArgs(bus, filepath.Join(dir, "agent"), "outage-node", 1, rate, n, "--no-aggregate")...)
			time.Sleep(3 * time.Second)
			down()
			t0 := time.Now()
			t.Logf("%s down for %v", busKind, outage)
			var spooled float64
			for time.Since(t0) < outage {
				time.Sleep(time.Second)
				if v, ok := agent.metric("flowbus_spool_bytes"); ok {
					spooled = max(spooled, v)
				}
				if agent.exited() || agg.exited() {
					t.Fatalf("a process exited during the outage: agent %v, aggregator %v", agent.err, agg.err)
				}
			}
			up()
			t.Logf("%s back; the agent's spool peaked at %.0f bytes", busKind, spooled)
			if spooled == 0 {
				t.Error("flowbus_spool_bytes stayed 0 through the outage: nothing was spooled")
			}
			if err := agent.wait(2*time.Minute + outage); err != nil {
				t.Fatalf("agent: %v", err)
			}
			if f := spoolFiles(t, filepath.Join(dir, "agent", "spool")); len(f) != 0 {
				t.Errorf("spool segments left after the agent finished: %v", f)
			}
			drainAggregator(t, agg, stored(), 2*time.Minute)
			out := filepath.Join(dir, "parquet")
			rows := duckInt(t, out, `SELECT count(*) FROM {flows}`)
			flows := duckInt(t, out, `SELECT sum(count)::BIGINT FROM {flows}`)
			uniq := duckInt(t, out, `SELECT count(DISTINCT epoch_us("time")) FROM {flows}`)
			t.Logf("Parquet: %d raw rows, %d flows, %d distinct times; the agent generated %d", rows, flows, uniq, n)
			if rows != int64(n) || flows != int64(n) || uniq != int64(n) {
				t.Errorf("Parquet holds %d rows, %d flows, %d distinct flow times; want %d of each (every flow once)", rows, flows, uniq, n)
			}
		})
	}
}

// kafkaEndOffsets is the sum of the topic's end offsets: its records.
func kafkaEndOffsets(t *testing.T, addr, topic string) uint64 {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	ends.Each(func(o kadm.ListedOffset) { n += o.Offset })
	return uint64(n)
}

// TestAgentSIGKILLedLosesAtMostItsOpenWindow runs the agent as a process
// (synthetic, 2,000 flows/s, aggregation on: 1 s windows, --linger 200ms)
// with the aggregator, stops the bus for 3 s so that the agent spools, and
// SIGKILLs it. A second agent process on the same data directory replays
// the spool (and sends 100 flows of its own). The guarantee, checked
// flow by flow against the synthetic source regenerated from its seed:
//   - per destination (partition key), the first agent's flows in the
//     Parquet are exactly those up to the last one delivered: each once,
//     none missing before it;
//   - every flow older than 3 s at the kill (the aggregation window, the
//     linger and 1.8 s for a loaded machine's scheduling) is in the Parquet:
//     what a SIGKILL loses is the open window and the batches not yet
//     encoded, at most 3 s × 2,000 = 6,000 flows (600–800 measured);
//     everything spooled is replayed;
//   - the second agent's 100 flows are there once each.
func TestAgentSIGKILLedLosesAtMostItsOpenWindow(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: runs the agent and the aggregator as processes")
	}
	const rate, seed, node = 2000, 1, "kill-node"
	const bound = 3 * time.Second
	dir := t.TempDir()
	ns := startFaultNATS(t)
	out := filepath.Join(dir, "parquet")
	agg := startFaultAggregator(t, dir, ns.url, out, "--window", "1s", "--lateness", "1s")
	agentDir := filepath.Join(dir, "agent")
	a1 := startFB(t, dir, "agent-1", agentArgs(ns.url, agentDir, node, seed, rate, 0)...)
	time.Sleep(4 * time.Second)
	ns.stop()
	waitFor(t, "the agent to spool", 10*time.Second, func() bool {
		v, _ := a1.metric("flowbus_spool_messages")
		return v > 0
	})
	time.Sleep(2 * time.Second)
	tKill := time.Now()
	a1.signal(syscall.SIGKILL)
	_ = a1.wait(10 * time.Second)
	segs := spoolFiles(t, filepath.Join(agentDir, "spool"))
	t.Logf("SIGKILLed with the bus down; %d spool segment(s) left", len(segs))
	if len(segs) == 0 {
		t.Fatal("no spool segment left by the killed agent")
	}
	ns.start()
	tRestart := time.Now()
	a2 := startFB(t, dir, "agent-2", agentArgs(ns.url, agentDir, node, seed+1, 100, 100)...)
	if err := a2.wait(time.Minute); err != nil {
		t.Fatalf("restarted agent: %v", err)
	}
	if !strings.Contains(a2.log(), "replaying spooled messages from an earlier run") {
		t.Errorf("the restarted agent did not say it replays the spool:\n%s", a2.logTail(2000))
	}
	if f := spoolFiles(t, filepath.Join(agentDir, "spool")); len(f) != 0 {
		t.Errorf("spool segments left after the restarted agent finished: %v", f)
	}
	drainAggregator(t, agg, ns.messages(), 2*time.Minute)

	if n := duckInt(t, out, fmt.Sprintf(`SELECT sum(count)::BIGINT FROM {flows} WHERE epoch_us("time") >= %d`, tRestart.UnixMicro())); n != 100 {
		t.Errorf("the restarted agent's flows in the Parquet: %d, want 100", n)
	}
	// The first agent's flows per destination (partition key).
	db := ducktest.Open(t)
	rows, err := db.Query(fmt.Sprintf(`SELECT dst_namespace || '/' || CASE WHEN dst_workload <> '' THEN dst_workload ELSE dst_pod_name END AS k, sum(count)::BIGINT, max(epoch_us("time")), min(epoch_us(first_seen))
		FROM read_parquet('%s/flows/**/*.parquet', hive_partitioning = false) WHERE epoch_us("time") < %d GROUP BY ALL`, out, tRestart.UnixMicro()))
	if err != nil {
		t.Fatal(err)
	}
	type got struct{ n, last int64 }
	delivered := map[string]got{}
	start := int64(1<<63 - 1)
	var total int64
	for rows.Next() {
		var k string
		var g got
		var first int64
		if err := rows.Scan(&k, &g.n, &g.last, &first); err != nil {
			t.Fatal(err)
		}
		delivered[k] = g
		start = min(start, first)
		total += g.n
	}
	rows.Close()
	// Regenerate the first agent's flows: flow i is at start + i × 500 µs.
	const stepUs = 1e6 / rate
	gen, err := synthetic.NewGenerator(synthetic.Config{Seed: seed, Rate: rate, Start: time.UnixMicro(start), Node: node})
	if err != nil {
		t.Fatal(err)
	}
	upTo := int((tKill.UnixMicro()-start)/stepUs) + 1
	flows := make([]schemas.Flow, upTo)
	gen.Fill(flows)
	type want struct{ prefix, must, all int64 }
	wants := map[string]*want{}
	mustUs := tKill.Add(-bound).UnixMicro()
	for i := range flows {
		f := &flows[i]
		k := f.PartitionKey() // records are folded per destination workload (pod name: the first flow's)
		w := wants[k]
		if w == nil {
			w = &want{}
			wants[k] = w
		}
		tUs := start + int64(i)*stepUs
		w.all++
		if tUs <= delivered[k].last {
			w.prefix++
		}
		if tUs <= mustUs {
			w.must++
		}
	}
	var lost int64
	for k, w := range wants {
		d := delivered[k]
		if d.n != w.prefix {
			t.Errorf("%s: %d flows in the Parquet, want the %d up to its last one delivered (lost or duplicated in the middle)", k, d.n, w.prefix)
		}
		if d.n < w.must {
			t.Errorf("%s: %d flows in the Parquet, want at least the %d older than %v at the kill", k, d.n, w.must, bound)
		}
		lost += w.all - d.n
	}
	for k := range delivered {
		if wants[k] == nil {
			t.Errorf("%s: in the Parquet, not a destination of the first agent's flows", k)
		}
	}
	t.Logf("first agent: %d flows generated up to the kill, %d in the Parquet, %d lost (bound %d: %v at %d/s)", upTo, total, lost, int64(bound.Seconds()*rate), bound, rate)
	if lost > int64(bound.Seconds()*rate) {
		t.Errorf("the SIGKILL lost %d flows, more than %v of flows (%d)", lost, bound, int64(bound.Seconds()*rate))
	}
}

// rawGaps reads the raw flows of one synthetic agent (--no-aggregate,
// flow i at start + i × stepUs) from the Parquet: rows, distinct flow
// times, and the flows missing between the first and the last one.
func rawGaps(t *testing.T, out, node string, stepUs int64) (rows, distinct, gaps int64) {
	t.Helper()
	where := fmt.Sprintf(`FROM {flows} WHERE node_name = '%s'`, node)
	rows = duckInt(t, out, `SELECT count(*) `+where)
	distinct = duckInt(t, out, `SELECT count(DISTINCT epoch_us("time")) `+where)
	span := duckInt(t, out, fmt.Sprintf(`SELECT (max(epoch_us("time")) - min(epoch_us("time"))) // %d + 1 `, stepUs)+where)
	return rows, distinct, span - distinct
}

// TestAgentSpoolFullDiskDropsCountedAndRecovers: the agent (a process,
// 2,000 raw flows/s) spools to a 1 MiB tmpfs while the bus is down. When
// the disk is full it logs the cause (no space left on device), counts
// every message it cannot spool (flowbus_stage_dropped_total{stage=
// "export",reason="spool_error"}) and keeps running; when the disk has
// room again it spools again, and when the bus is back it replays the
// spool. In the Parquet: every flow once, and the flows missing are
// exactly the counted drops; the spool has no corrupt record nor torn tail
// (flowbus_spool_corrupt_records_total, _torn_tails_total = 0).
func TestAgentSpoolFullDiskDropsCountedAndRecovers(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: runs the agent and the aggregator as processes")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root: mounts a small tmpfs for the spool")
	}
	dir := t.TempDir()
	spoolDir := filepath.Join(dir, "spool")
	if err := os.Mkdir(spoolDir, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", spoolDir, "tmpfs", 0, "size=1m"); err != nil {
		t.Skipf("cannot mount a tmpfs: %v", err)
	}
	t.Cleanup(func() { _ = syscall.Unmount(spoolDir, syscall.MNT_DETACH) })
	const rate, node = 2000, "spoolfull-node"
	ns := startFaultNATS(t)
	out := filepath.Join(dir, "parquet")
	agg := startFaultAggregator(t, dir, ns.url, out, "--window", "1s", "--lateness", "1s")
	a := startFB(t, dir, "agent", agentArgs(ns.url, filepath.Join(dir, "agent"), node, 1, rate, 0, "--no-aggregate", "--spool-dir", spoolDir)...)
	m := func(name string, labels ...string) float64 { v, _ := a.metric(name, labels...); return v }
	dropped := func() float64 { return m("flowbus_stage_dropped_total", "stage", "export", "reason", "spool_error") }
	time.Sleep(2 * time.Second)
	ns.stop()
	waitFor(t, "the spool's disk to fill (a message dropped)", 30*time.Second, func() bool { return dropped() > 0 })
	emitted := m("flowbus_stage_emitted_total", "stage", "source")
	time.Sleep(2 * time.Second)
	if a.exited() {
		t.Fatalf("the agent exited on a full spool disk: %v", a.err)
	}
	if e := m("flowbus_stage_emitted_total", "stage", "source"); e <= emitted {
		t.Errorf("the source stopped on a full spool disk: %v flows, 2 s later %v", emitted, e)
	}
	log := a.log()
	if !strings.Contains(log, "export: cannot spool; dropped a message") || !strings.Contains(log, "no space left on device") {
		t.Errorf("the agent's log does not say it drops because the disk is full:\n%s", a.logTail(3000))
	}
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, "no space left on device") {
			t.Logf("the agent said: %s", l)
			break
		}
	}
	full := m("flowbus_spool_bytes")
	if err := syscall.Mount("tmpfs", spoolDir, "tmpfs", syscall.MS_REMOUNT, "size=256m"); err != nil {
		t.Fatal(err)
	}
	d := dropped()
	time.Sleep(2 * time.Second)
	if g := m("flowbus_spool_bytes"); g <= full {
		t.Errorf("the spool did not grow once the disk had room: %v bytes, then %v", full, g)
	}
	ns.start()
	waitFor(t, "the spool to drain", time.Minute, func() bool {
		v, ok := a.metric("flowbus_spool_bytes")
		return ok && v == 0
	})
	if after := dropped(); after != d {
		t.Errorf("%v more flows dropped (spool_error) after the disk had room again", after-d)
	}
	corrupt, torn := m("flowbus_spool_corrupt_records_total"), m("flowbus_spool_torn_tails_total")
	a.stop()
	drainAggregator(t, agg, ns.messages(), 2*time.Minute)
	rows, distinct, gaps := rawGaps(t, out, node, 1e6/rate)
	t.Logf("dropped on the full disk: %v flows (spool_error); Parquet: %d rows, %d distinct, %d missing; spool corrupt %v, torn %v", d, rows, distinct, gaps, corrupt, torn)
	if rows != distinct {
		t.Errorf("Parquet: %d rows, %d distinct flows: duplicates", rows, distinct)
	}
	if float64(gaps) != d || d == 0 {
		t.Errorf("flows missing from the Parquet: %d; counted as dropped (spool_error): %v; want equal and more than 0", gaps, d)
	}
	if corrupt != 0 || torn != 0 {
		t.Errorf("spool: %v corrupt records, %v torn tails; want 0", corrupt, torn)
	}
	if f := spoolFiles(t, spoolDir); len(f) != 0 {
		t.Errorf("spool segments left: %v", f)
	}
}

// TestAgentClockSkewLateRowsCounted: two agents (processes, 4,000 raw
// flows each), one with its clock 5 minutes ahead, one 5 minutes behind
// (--clock-offset), into one aggregator (1-minute windows, 10 s lateness,
// the defaults). The ahead agent's flows move every partition's watermark
// 5 minutes on; the behind agent's, which follow, are for windows already
// written: none is dropped, every one is counted late
// (flowbus_aggregator_late_rows_total = 4,000) and written to a late file of
// its own window (p…-late.parquet; pair_rollup.late = true), with its own
// timestamps; the ahead agent's are on time.
func TestAgentClockSkewLateRowsCounted(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: runs two agents and the aggregator as processes")
	}
	const n, rate = 4000, 2000
	dir := t.TempDir()
	ns := startFaultNATS(t)
	out := filepath.Join(dir, "parquet")
	agg := startFaultAggregator(t, dir, ns.url, out)
	t0 := time.Now()
	for _, a := range []struct {
		node, offset string
		seed         int64
	}{{"skew-ahead", "5m", 1}, {"skew-behind", "-5m", 2}} {
		p := startFB(t, dir, a.node, agentArgs(ns.url, filepath.Join(dir, a.node), a.node, a.seed, rate, n, "--no-aggregate", "--clock-offset", a.offset)...)
		if err := p.wait(time.Minute); err != nil {
			t.Fatalf("%s: %v", a.node, err)
		}
	}
	want := ns.messages()
	waitFor(t, "the aggregator to consume every message", time.Minute, func() bool {
		v, _ := agg.metric("flowbus_aggregator_messages_total")
		return v >= float64(want)
	})
	time.Sleep(time.Second) // the last message's rows counted
	late, _ := agg.metric("flowbus_aggregator_late_rows_total")
	agg.stop()
	q := func(s string) int64 { return duckInt(t, out, s) }
	onTime := q(`SELECT count(*) FROM {flows} WHERE filename NOT LIKE '%-late.parquet'`)
	lateRows := q(`SELECT count(*) FROM {flows} WHERE filename LIKE '%-late.parquet'`)
	lateBehind := q(`SELECT count(*) FROM {flows} WHERE filename LIKE '%-late.parquet' AND node_name = 'skew-behind'`)
	t.Logf("late rows: counter %v, in late files %d (all the behind agent's: %d), on time %d", late, lateRows, lateBehind, onTime)
	if late != n || lateRows != n || lateBehind != n || onTime != n {
		t.Errorf("flowbus_aggregator_late_rows_total %v, rows in late files %d (of the behind agent %d), on time %d; want %d, %d, %d, %d",
			late, lateRows, lateBehind, onTime, n, n, n, n)
	}
	// Late rows keep their timestamps: the behind agent's are 5 minutes
	// before the test started, the ahead agent's 5 minutes after.
	if lo := q(fmt.Sprintf(`SELECT count(*) FROM {flows} WHERE node_name = 'skew-behind' AND epoch_us("time") BETWEEN %d AND %d`,
		t0.Add(-5*time.Minute).UnixMicro(), time.Now().Add(-5*time.Minute).UnixMicro())); lo != n {
		t.Errorf("the behind agent's flows stamped 5 minutes back: %d, want %d", lo, n)
	}
	if hi := q(fmt.Sprintf(`SELECT count(*) FROM {flows} WHERE node_name = 'skew-ahead' AND epoch_us("time") > %d`, t0.Add(4*time.Minute).UnixMicro())); hi != n {
		t.Errorf("the ahead agent's flows stamped 5 minutes on: %d, want %d", hi, n)
	}
	// The rollups: the late rows' flows are in pair_rollup rows with late
	// = true, and nothing else is.
	lateFlows := q(`SELECT sum(count)::BIGINT FROM {flows} WHERE node_name = 'skew-behind' AND count_as = 'flow'`)
	onTimeFlows := q(`SELECT sum(count)::BIGINT FROM {flows} WHERE node_name = 'skew-ahead' AND count_as = 'flow'`)
	pairLate := q(`SELECT sum(flows)::BIGINT FROM {pairs} WHERE late`)
	pairOnTime := q(`SELECT sum(flows)::BIGINT FROM {pairs} WHERE NOT late`)
	if pairLate != lateFlows || pairOnTime != onTimeFlows || lateFlows == 0 {
		t.Errorf("pair_rollup flows late %d, on time %d; want %d and %d (the raw flows that count)", pairLate, pairOnTime, lateFlows, onTimeFlows)
	}
}

// throttledProxy forwards TCP connections to a target; while rate > 0 what
// the clients send goes at most rate bytes per second: a slow bus link.
type throttledProxy struct {
	ln     net.Listener
	target string
	rate   atomic.Int64
	mu     sync.Mutex
	conns  []net.Conn
}

func startThrottledProxy(t *testing.T, target string) *throttledProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &throttledProxy{ln: ln, target: target}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go p.serve(c)
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, c := range p.conns {
			c.Close()
		}
	})
	return p
}

func (p *throttledProxy) serve(c net.Conn) {
	u, err := net.Dial("tcp", p.target)
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	p.conns = append(p.conns, c, u)
	p.mu.Unlock()
	go func() { _, _ = io.Copy(c, u); c.Close(); u.Close() }()
	buf := make([]byte, 1024)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			if r := p.rate.Load(); r > 0 {
				time.Sleep(time.Duration(n) * time.Second / time.Duration(r))
			}
			if _, err := u.Write(buf[:n]); err != nil {
				break
			}
		}
		if err != nil {
			break
		}
	}
	c.Close()
	u.Close()
}

// rssBytes is a process's resident set (VmRSS of /proc/<pid>/status).
func rssBytes(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) == 3 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}

// TestSlowConsumerAndSlowBusSpoolWithBoundedMemory: the aggregator (a
// process) is throttled to a tenth of the time (SIGSTOP 900 ms, SIGCONT
// 100 ms) for slowConsumerFor while the agent (a process, 5,000 raw flows/s)
// publishes through a link throttled to 16 KB/s. A slow consumer alone
// does not push back on the agent: the stream holds its lag (up to its
// 4 GiB). The slow link does: Publish waits, the agent's queue fills and
// the spool grows (flowbus_spool_bytes: 11 MiB in 12 s, 55 MiB in 60 s),
// while the agent's resident memory (VmRSS from /proc) grows by less than
// 48 MiB over what it was before (the queue of 4 messages, the NATS
// client's reconnect buffer; 128 MiB at rest for this test binary, which
// links DuckDB) and stays under 256 MiB. Once both are released, the spool
// drains and every flow is in the Parquet exactly once.
func TestSlowConsumerAndSlowBusSpoolWithBoundedMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: runs the agent and the aggregator as processes")
	}
	slow := 12 * time.Second
	if os.Getenv("FLOWBUS_FAULTS_FULL") == "1" {
		slow = 60 * time.Second
	}
	const rate, node = 5000, "slow-node"
	const rssGrowth, rssBound = 48 << 20, 256 << 20
	n := uint64(rate) * uint64((slow+12*time.Second)/time.Second) // 2 s before, the slow phase, 10 s after
	dir := t.TempDir()
	ns := startFaultNATS(t)
	proxy := startThrottledProxy(t, strings.TrimPrefix(ns.url, "nats://"))
	out := filepath.Join(dir, "parquet")
	agg := startFaultAggregator(t, dir, ns.url, out, "--window", "1s", "--lateness", "1s")
	t.Cleanup(func() { _ = agg.cmd.Process.Signal(syscall.SIGCONT) })
	a := startFB(t, dir, "agent", agentArgs("nats://"+proxy.ln.Addr().String(), filepath.Join(dir, "agent"), node, 1, rate, n, "--no-aggregate")...)
	time.Sleep(2 * time.Second)
	rssBefore := rssBytes(a.cmd.Process.Pid)
	proxy.rate.Store(16 << 10)
	t.Logf("agent RSS %d MiB; throttling the aggregator (10 %% of the time) and the agent's bus link (16 KB/s) for %v", rssBefore>>20, slow)
	var peakRSS int64
	var peakSpool float64
	for t0 := time.Now(); time.Since(t0) < slow; {
		agg.signal(syscall.SIGSTOP)
		time.Sleep(900 * time.Millisecond)
		agg.signal(syscall.SIGCONT)
		time.Sleep(100 * time.Millisecond)
		peakRSS = max(peakRSS, rssBytes(a.cmd.Process.Pid))
		if v, ok := a.metric("flowbus_spool_bytes"); ok {
			peakSpool = max(peakSpool, v)
		}
		if a.exited() {
			t.Fatalf("the agent exited: %v", a.err)
		}
	}
	proxy.rate.Store(0)
	t.Logf("released; the spool peaked at %.1f MiB, the agent's RSS at %d MiB (%d MiB before)", peakSpool/(1<<20), peakRSS>>20, rssBefore>>20)
	if peakSpool < 1<<20 {
		t.Errorf("the spool peaked at %.0f bytes: the slow bus did not reach it", peakSpool)
	}
	if peakRSS > rssBound || peakRSS-rssBefore > rssGrowth {
		t.Errorf("the agent's RSS reached %d MiB from %d MiB; want under %d MiB and %d MiB more at most", peakRSS>>20, rssBefore>>20, rssBound>>20, rssGrowth>>20)
	}
	if err := a.wait(2*time.Minute + slow); err != nil {
		t.Fatalf("agent: %v", err)
	}
	if f := spoolFiles(t, filepath.Join(dir, "agent", "spool")); len(f) != 0 {
		t.Errorf("spool segments left after the agent finished: %v", f)
	}
	drainAggregator(t, agg, ns.messages(), 3*time.Minute)
	rows, distinct, gaps := rawGaps(t, out, node, 1e6/rate)
	t.Logf("Parquet: %d rows, %d distinct flows, %d missing; the agent generated %d", rows, distinct, gaps, n)
	if rows != int64(n) || distinct != int64(n) || gaps != 0 {
		t.Errorf("Parquet: %d rows, %d distinct, %d missing; want %d, %d, 0", rows, distinct, gaps, n, n)
	}
}
