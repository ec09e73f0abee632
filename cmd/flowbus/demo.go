package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	flowpb "github.com/cilium/cilium/api/v1/flow"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/flowbus/flowbus/aggregator"
	"github.com/flowbus/flowbus/aggregator/report"
	"github.com/flowbus/flowbus/deploy/lab"
	"github.com/flowbus/flowbus/internal/flowcodec"
	"github.com/flowbus/flowbus/schemas"
	"github.com/flowbus/flowbus/sinks/kafka"
	"github.com/flowbus/flowbus/sinks/nats"
)

// runDemo runs the whole path on one machine: agent → bus → (a reader that
// tallies what came back, and the aggregator writing Parquet) and prints,
// from what was read back over the bus, the table an SRE would otherwise
// build with pandas, then the L7 drill-down computed by DuckDB over the
// Parquet the aggregator wrote.
func runDemo(ctx context.Context, args []string, cio cmdIO) error {
	fs, d, f := newDemoFlags(cio)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected arguments %q", errUsage, fs.Args())
	}
	out := filepath.Join(*f.dataDir, "parquet")
	// Each demo starts from an empty bus and output, so the tables describe this run only.
	if *f.bus == "embedded" {
		if err := os.RemoveAll(filepath.Join(*f.dataDir, "nats")); err != nil {
			return fmt.Errorf("reset demo state: %w", err)
		}
	}
	if err := os.RemoveAll(out); err != nil {
		return fmt.Errorf("reset demo output: %w", err)
	}
	runID := time.Now().UTC().Format("20060102T150405.000000000Z")

	var labCfg lab.Config
	if d.lab {
		stop, plan, err := demoLabUp(ctx, cio)
		if err != nil {
			return err
		}
		defer stop()
		labCfg = lab.Config{StateDir: lab.DefaultStateDir}
		*f.source, *f.endpoints, *f.policies, *f.interfaces = "ebpf", plan.EndpointsFile, plan.PoliciesFile, []string{lab.DefaultPrefix + "[0-9]*h"}
		if l7 := labL7Ports(&plan.Topology); l7 != "" && len(f.l7Ports) == 0 {
			// L7 on the fleet's servers, for the drill-down.
			if err := f.l7Ports.Set(l7); err != nil {
				return fmt.Errorf("--lab: L7 ports of the fleet: %w", err)
			}
		}
	}

	rt, err := f.build(cio, true, runID)
	if err != nil {
		return err
	}
	defer rt.close()

	// The reader and the aggregator consume the same messages the agent publishes.
	tally := newDemoTally(runID)
	aggReg := prometheus.NewRegistry()
	agg, err := aggregator.New(aggregator.Config{Out: out, Window: aggregator.DefaultWindow, Lateness: aggregator.DefaultLateness}, cio.Log, aggReg)
	if err != nil {
		return err
	}
	cctx, stopConsumers := context.WithCancel(context.WithoutCancel(ctx))
	defer stopConsumers()
	var wg sync.WaitGroup
	var readErr, aggErr error
	wg.Add(2)
	switch {
	case rt.natsURL != "":
		go func() {
			defer wg.Done()
			aggErr = aggregator.RunNATS(cctx, agg, nats.ConsumerConfig{Conn: nats.Conn{URL: rt.natsURL}, Partitions: *f.natsPartitions, Durable: "flowbus-demo-aggregator"})
		}()
		go func() {
			defer wg.Done()
			readErr = readNATS(cctx, rt.natsURL, *f.natsPartitions, tally)
		}()
	case strings.HasPrefix(*f.bus, "kafka://"):
		conn := kafka.Conn{Brokers: strings.Split(strings.TrimPrefix(*f.bus, "kafka://"), ",")}
		go func() {
			defer wg.Done()
			aggErr = aggregator.RunKafka(cctx, agg, kafka.ConsumerConfig{Conn: conn, Topic: *f.topic, Group: "flowbus-demo-aggregator-" + runID, CreateDLQTopic: true})
		}()
		go func() {
			defer wg.Done()
			readErr = readKafka(cctx, conn, *f.topic, "flowbus-demo-reader-"+runID, tally)
		}()
	default:
		return fmt.Errorf("%w: --bus %q: the demo reads flows back from the bus: use embedded, nats:// or kafka://", errUsage, *f.bus)
	}

	fmt.Fprintf(cio.Stdout, "flowbus demo: source %s for %s → %s; reading back over the bus and aggregating to %s\n", *f.source, d.duration, busName(*f.bus, rt.natsURL), out)
	actx, stopAgent := context.WithTimeout(ctx, d.duration)
	defer stopAgent()
	if d.lab {
		go func() {
			if _, err := lab.Traffic(actx, withLabSelf(labCfg), lab.TrafficOptions{Duration: d.duration, Rate: 50}); err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
				cio.Log.Warn("lab traffic", "err", err)
			}
		}()
	}
	progressDone := make(chan struct{})
	go demoProgress(actx, cio.Stderr, rt.reg, tally, progressDone)
	start := time.Now()
	if err := rt.run(actx); err != nil && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("agent: %w", err)
	}
	<-progressDone
	published := counterValue(rt.reg, "flowbus_stage_emitted_total", "stage", "export")
	spooled := counterValue(rt.reg, "flowbus_spool_bytes", "", "")

	// Wait until everything published has come back to the reader and the aggregator.
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if tally.records() >= uint64(published) && counterValue(aggReg, "flowbus_aggregator_flow_rows_total", "", "") >= published {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	stopConsumers()
	wg.Wait()
	for _, e := range []error{readErr, aggErr} {
		if e != nil && !errors.Is(e, context.Canceled) {
			return e
		}
	}
	fmt.Fprintf(cio.Stdout, "\nran %.1fs; published %d records; read back %d records in %d messages; %d bytes left in the spool\n\n",
		time.Since(start).Seconds(), uint64(published), tally.records(), tally.messages, uint64(spooled))
	tally.print(cio.Stdout, d.top)
	if got := tally.records(); got != uint64(published) {
		fmt.Fprintf(cio.Stdout, "\nWARNING: %d records published but %d read back\n", uint64(published), got)
	}

	rows, q, err := report.Routes(ctx, out, "")
	if errors.Is(err, report.ErrNoDuckDB) {
		// A build without cgo (macOS, Windows): everything above still holds.
		fmt.Fprintf(cio.Stdout, "\nL7 drill-down: not computed: %v.\nThe SQL (with the macros of flowbus sql: duckdb -init flowbus.sql):\n%s\n", err, q)
		return nil
	}
	if err != nil {
		return fmt.Errorf("L7 drill-down: %w", err)
	}
	printRoutes(cio.Stdout, rows, q)
	return nil
}

// demoFlags are the demo's own flags; the agent's come with them.
type demoFlags struct {
	duration time.Duration
	top      int
	lab      bool
}

// newDemoFlags returns the flags of `flowbus demo`: its own, then the agent's.
func newDemoFlags(cio cmdIO) (*flagSet, *demoFlags, *agentFlags) {
	fs := newFlagSet("demo", "demo [flags]", "Run the agent on the synthetic payments fleet (or, with --lab, on the "+
		"real eBPF datapath of a netns lab), an embedded NATS JetStream bus, a reader and the aggregator; after "+
		"--duration, print what came back over the bus and the per-route latency table DuckDB computes from the "+
		"Parquet. The agent's flags apply to the demo's agent.", cio)
	d := &demoFlags{}
	fs.group("Demo")
	fs.DurationVar(&d.duration, "duration", 20*time.Second, "how long the agent produces flows")
	fs.check("duration", positive(&d.duration))
	fs.IntVar(&d.top, "top", 12, "rows of the pair table")
	fs.check("top", atLeast(&d.top, 1))
	fs.BoolVar(&d.lab, "lab", false, "run on the real kernel datapath: create a netns lab (root, Linux), attach the eBPF programs to its veths, generate real traffic")
	return fs, d, addAgentFlags(fs, true)
}

func busName(bus, natsURL string) string {
	if bus == "embedded" {
		return "embedded NATS JetStream at " + natsURL
	}
	return nats.RedactURL(bus) // a password or token in the URL is not printed
}

func withLabSelf(cfg lab.Config) lab.Config {
	if self, err := labSelf(); err == nil {
		cfg.Self = self
	}
	return cfg
}

// demoLabUp creates the default lab and returns its teardown and plan
// (which names the endpoints and policies files the agent reads).
func demoLabUp(ctx context.Context, cio cmdIO) (func(), *lab.Plan, error) {
	if runtime.GOOS != "linux" {
		return nil, nil, fmt.Errorf("--lab %w: this build is for %s", lab.ErrNeedsLinux, runtime.GOOS)
	}
	if os.Geteuid() != 0 {
		return nil, nil, errors.New("--lab creates network namespaces and loads eBPF programs: run it as root (sudo flowbus demo --lab)")
	}
	self, err := labSelf()
	if err != nil {
		return nil, nil, err
	}
	cfg := lab.Config{Self: self, Log: cio.Log}
	topo, err := lab.DefaultTopology()
	if err != nil {
		return nil, nil, err
	}
	plan, err := lab.Up(ctx, cfg, topo)
	if err != nil {
		return nil, nil, fmt.Errorf("lab up: %w", err)
	}
	fmt.Fprintf(cio.Stdout, "lab: %d pods up, endpoints in %s, %d policies in %s (enforced by the agent)\n",
		len(plan.Pods), plan.EndpointsFile, len(plan.Topology.Policies), plan.PoliciesFile)
	return func() {
		if _, err := lab.Down(context.Background(), cfg); err != nil {
			cio.Log.Warn("lab down", "err", err)
		}
	}, plan, nil
}

func demoProgress(ctx context.Context, w io.Writer, g prometheus.Gatherer, t *demoTally, done chan<- struct{}) {
	defer close(done)
	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
	start := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			fmt.Fprintf(w, "  %3.0fs  source %d flows  published %d records  read back %d records\n",
				time.Since(start).Seconds(), uint64(counterValue(g, "flowbus_stage_emitted_total", "stage", "source")),
				uint64(counterValue(g, "flowbus_stage_emitted_total", "stage", "export")), t.records())
		}
	}
}

// counterValue sums the samples of a metric, optionally those with label=value.
func counterValue(g prometheus.Gatherer, name, label, value string) float64 {
	mfs, err := g.Gather()
	if err != nil {
		return 0
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			match := label == ""
			for _, lp := range m.GetLabel() {
				if lp.GetName() == label && lp.GetValue() == value {
					match = true
				}
			}
			if !match {
				continue
			}
			switch {
			case m.Counter != nil:
				sum += m.Counter.GetValue()
			case m.Gauge != nil:
				sum += m.Gauge.GetValue()
			}
		}
	}
	return sum
}

func readNATS(ctx context.Context, url string, partitions int, t *demoTally) error {
	c, err := nats.NewConsumer(nats.ConsumerConfig{Conn: nats.Conn{URL: url}, Partitions: partitions, Durable: "flowbus-demo-reader"})
	if err != nil {
		return fmt.Errorf("demo reader: %w", err)
	}
	defer c.Close()
	for {
		ds, err := c.Poll(ctx)
		if err != nil {
			return err
		}
		next := map[int32]int64{}
		for _, d := range ds {
			t.add(d.Headers, d.Value)
			next[d.Partition] = d.Offset + 1
		}
		if len(next) > 0 {
			if err := c.Commit(ctx, next); err != nil {
				return err
			}
		}
	}
}

func readKafka(ctx context.Context, conn kafka.Conn, topic, group string, t *demoTally) error {
	c, err := kafka.NewConsumer(kafka.ConsumerConfig{Conn: conn, Topic: topic, Group: group})
	if err != nil {
		return fmt.Errorf("demo reader: %w", err)
	}
	defer c.Close()
	for {
		ds, err := c.Poll(ctx)
		if err != nil {
			return err
		}
		for _, d := range ds {
			t.add(d.Headers, d.Value)
		}
	}
}

// demoTally is what the reader computed from the messages it read back.
type demoTally struct {
	mu         sync.Mutex
	run        string
	dec        *flowcodec.Decoder
	buf        []schemas.Flow
	messages   int
	rows       uint64
	bad        int
	flows      uint64
	pairs      map[demoPair]*demoPairStats
	verdicts   map[flowpb.Verdict]uint64
	dropReason map[flowpb.DropReason]uint64
}

type demoPair struct {
	src, dst   string
	verdict    flowpb.Verdict
	dropReason flowpb.DropReason
}

type demoPairStats struct{ flows, bytes uint64 }

func newDemoTally(run string) *demoTally {
	return &demoTally{run: run, dec: flowcodec.NewDecoder(), pairs: map[demoPair]*demoPairStats{},
		verdicts: map[flowpb.Verdict]uint64{}, dropReason: map[flowpb.DropReason]uint64{}}
}

func (t *demoTally) records() uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.rows
}

// add decodes one message of this run (others on a shared bus are skipped).
func (t *demoTally) add(headers map[string]string, value []byte) {
	if !strings.HasPrefix(headers[schemas.HeaderSeq], t.run+"/") {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	var err error
	t.buf, err = t.dec.Decode(t.buf[:0], value)
	if err != nil {
		t.bad++
		return
	}
	t.messages++
	t.rows += uint64(len(t.buf))
	for i := range t.buf {
		fl := &t.buf[i]
		// Count each connection once (schemas.CountAs): a record another
		// observation point's record carries adds nothing, a later part of
		// a counted connection only its bytes.
		if !fl.CountAs.Traffic() {
			continue
		}
		n := fl.FlowCount()
		if !fl.CountAs.Flows() {
			n = 0
			if fl.BytesFwd+fl.BytesRev == 0 {
				// Nothing to add: an L7 response of the eBPF source (its
				// connection's L3/L4 records carry the flow and bytes).
				continue
			}
		}
		t.flows += n
		t.verdicts[fl.Verdict] += n
		if fl.Verdict == flowpb.Verdict_DROPPED {
			t.dropReason[fl.DropReason] += n
		}
		k := demoPair{src: endpointName(&fl.Src, fl.SrcIP.String()), dst: endpointName(&fl.Dst, fl.DstIP.String()), verdict: fl.Verdict, dropReason: fl.DropReason}
		s := t.pairs[k]
		if s == nil {
			s = &demoPairStats{}
			t.pairs[k] = s
		}
		s.flows += n
		s.bytes += fl.BytesFwd + fl.BytesRev
	}
}

func endpointName(e *schemas.Endpoint, ip string) string {
	switch {
	case e.Workload != "":
		return e.Namespace + "/" + e.Workload
	case e.PodName != "":
		return e.Namespace + "/" + e.PodName
	}
	return ip
}

func (t *demoTally) print(w io.Writer, top int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	type row struct {
		demoPair
		demoPairStats
	}
	rows := make([]row, 0, len(t.pairs))
	for k, v := range t.pairs {
		rows = append(rows, row{k, *v})
	}
	sort.Slice(rows, func(i, j int) bool {
		if rows[i].flows != rows[j].flows {
			return rows[i].flows > rows[j].flows
		}
		if rows[i].src != rows[j].src {
			return rows[i].src < rows[j].src
		}
		return rows[i].dst < rows[j].dst
	})
	fmt.Fprintf(w, "Top source → destination pairs (of %d), from the flows read back over the bus:\n", len(rows))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "SOURCE\tDESTINATION\tVERDICT\tDROP REASON\tFLOWS\tBYTES\t")
	for i, r := range rows {
		if i == top {
			break
		}
		reason := ""
		if r.verdict == flowpb.Verdict_DROPPED {
			reason = r.dropReason.String()
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t\n", r.src, r.dst, r.verdict, reason, r.flows, r.bytes)
	}
	tw.Flush()
	fmt.Fprintf(w, "\nTotal flows: %d (in %d records; %d bad messages)\n\nVerdicts:\n", t.flows, t.rows, t.bad)
	printCounts(w, t.verdicts, func(v flowpb.Verdict) string { return v.String() }, t.flows)
	fmt.Fprintln(w, "\nDrop reasons:")
	var drops uint64
	for _, n := range t.dropReason {
		drops += n
	}
	printCounts(w, t.dropReason, func(v flowpb.DropReason) string { return v.String() }, drops)
}

func printCounts[K comparable](w io.Writer, m map[K]uint64, name func(K) string, total uint64) {
	type kv struct {
		k string
		n uint64
	}
	var s []kv
	for k, n := range m {
		s = append(s, kv{name(k), n})
	}
	sort.Slice(s, func(i, j int) bool { return s[i].n > s[j].n || s[i].n == s[j].n && s[i].k < s[j].k })
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	for _, e := range s {
		fmt.Fprintf(tw, "  %s\t%d\t%.2f%%\t\n", e.k, e.n, 100*float64(e.n)/float64(max(total, 1)))
	}
	if len(s) == 0 {
		fmt.Fprintln(tw, "  (none)\t")
	}
	tw.Flush()
}

func printRoutes(w io.Writer, rows []report.RouteRow, q string) {
	fmt.Fprintf(w, "\nL7 drill-down per (method, route), computed by DuckDB over the Parquet rollups:\n")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "METHOD\tROUTE\tREQUESTS\tERRORS\tP50\tP99\tP99.9\t")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\t%s\t%s\t\n", r.Method, r.Route, r.Requests, r.Errors, fmtDur(r.P50), fmtDur(r.P99), fmtDur(r.P999))
	}
	if len(rows) == 0 {
		fmt.Fprintln(tw, "(no L7 records)\t")
	}
	tw.Flush()
	fmt.Fprintf(w, "\nThe SQL (run it again with: flowbus sql > flowbus.sql; duckdb -init flowbus.sql -c \"<SQL>\"):\n%s\n", q)
}

func fmtDur(d time.Duration) string {
	if d == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2fms", float64(d)/1e6)
}
