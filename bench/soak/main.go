//go:build linux

// Command soak runs the real flowbus pipeline at a constant rate for a long
// time and records what each process costs over it, so that a leak or a
// slow drift shows: `make soak` (30 minutes at 10k flows/s), or
//
//	go run ./bench/soak -duration 30m -rate 10000 -out bench
//
// What runs, each in its own process:
//   - a NATS server with JetStream: Debian's nats-server (apt-get install
//     nats-server; -nats-server), else this command again as an embedded
//     server (sinks/nats.StartEmbedded) in a process of its own;
//   - `flowbus agent --source hubble-json --hubble-json -`, its stdin fed
//     by this command with Hubble JSON lines (`hubble observe -o json`),
//     paced to exactly -rate lines a second (every 10 ms, the lines due by
//     then), from a cluster of -namespaces × -workloads workloads: many
//     pairs, TCP connections opening (SYN, SYN-ACK) and closing (data, FIN)
//     over log-normal lives, DNS queries and answers, policy drops, a pod
//     replaced every -churn (gen.go);
//   - `flowbus aggregator` on the same bus, writing Parquet rollups.
//
// Every -interval it samples, for the agent and the aggregator (and the
// NATS server): RSS (VmRSS of /proc/<pid>/status), CPU as % of one core
// over the interval (utime + stime of /proc/<pid>/stat), goroutines
// (go_goroutines of their /metrics); the bus lag (num_pending +
// num_ack_pending of the aggregator's JetStream consumers, asked of the
// server); the agent's spool (flowbus_spool_bytes); the machine's load
// average. At the end it stops the input, waits for the aggregator to have
// every row the agent exported, stops both, and counts the flows in the
// Parquet with DuckDB (aggregator/report): they must equal the flows it
// wrote (Hubble's count: a connection's SYN, a DNS query, a drop).
//
// Output in -out: soak.csv (the samples), soak-rss.png, soak-cpu.png,
// soak-goroutines.png, soak-lag.png, soak-spool.png, soak-load.png (the
// machine's load average), and soak.md: the RSS
// slope of each process after -warmup (least squares over those samples,
// MB per hour), mean CPU, max lag and spool, the exact totals, the load.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/flowbus/flowbus/agent/source/hubblejson"
	"github.com/flowbus/flowbus/aggregator/report"
	"github.com/flowbus/flowbus/internal/wholeproc"
	"github.com/flowbus/flowbus/sinks/nats"
)

type options struct {
	duration, interval, warmup, churn time.Duration
	rate                              float64
	namespaces, workloads             int
	seed                              uint64
	out, flowbus, natsServer          string
	keep                              bool
	command                           string // as printed in soak.md
}

func main() {
	var o options
	flag.DurationVar(&o.duration, "duration", 30*time.Minute, "how long the input runs at -rate")
	flag.Float64Var(&o.rate, "rate", 10000, "Hubble flow records (JSON lines) a second into the agent")
	flag.DurationVar(&o.interval, "interval", 10*time.Second, "sampling interval")
	flag.DurationVar(&o.warmup, "warmup", 5*time.Minute, "samples before this are left out of the RSS slope and the CPU mean (a run no longer than twice it uses its second half)")
	flag.DurationVar(&o.churn, "churn", 5*time.Second, "replace one pod of the cluster this often (0: never)")
	flag.IntVar(&o.namespaces, "namespaces", 24, "namespaces of the generated cluster")
	flag.IntVar(&o.workloads, "workloads", 8, "workloads per namespace")
	flag.Uint64Var(&o.seed, "seed", 1, "random seed of the cluster and its traffic")
	flag.StringVar(&o.out, "out", "bench", "directory of soak.csv, soak-*.png and soak.md")
	flag.StringVar(&o.flowbus, "flowbus", "", "flowbus binary (default: go build ./cmd/flowbus into a temporary directory; run from the repository root)")
	flag.StringVar(&o.natsServer, "nats-server", "nats-server", "NATS server binary; if not found, this command runs the embedded server in a process of its own")
	flag.BoolVar(&o.keep, "keep", false, "keep the temporary directory (logs, Parquet)")
	replotCSV := flag.String("replot", "", "only draw the PNGs again from this soak.csv, into -out")
	flag.Parse()
	maybeServeNATS()
	if *replotCSV != "" {
		if err := replot(*replotCSV, o.out); err != nil {
			fmt.Fprintln(os.Stderr, "soak:", err)
			os.Exit(1)
		}
		return
	}
	o.command = "go run ./bench/soak " + strings.Join(os.Args[1:], " ")
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := run(ctx, o, os.Stdout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
		os.Exit(1)
	}
	if !res.exact() {
		os.Exit(1)
	}
}

// serveNATSEnv, set to "<port> <store dir>", makes this command (or the
// test binary: TestMain) the embedded NATS server until SIGTERM.
const serveNATSEnv = "FLOWBUS_SOAK_SERVE_NATS"

func maybeServeNATS() {
	v := os.Getenv(serveNATSEnv)
	if v == "" {
		return
	}
	port, dir, _ := strings.Cut(v, " ")
	p, err := strconv.Atoi(port)
	if err == nil {
		err = serveEmbedded(dir, p)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "soak: embedded NATS:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

func serveEmbedded(dir string, port int) error {
	srv, _, err := nats.StartEmbedded(dir, port)
	if err != nil {
		return err
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, os.Interrupt)
	<-sig
	srv.Shutdown()
	srv.WaitForShutdown()
	return nil
}

// sample is one row of soak.csv.
type sample struct {
	t                                 time.Duration // since the input started
	sent                              uint64        // lines written so far
	agentRSS, aggRSS, natsRSS         float64       // MB (10^6 bytes)
	agentCPU, aggCPU, natsCPU         float64       // % of one core over the interval
	agentGoroutines, aggGoroutines    float64
	lag, lagPending, lagAckPending    float64 // messages
	spoolBytes                        float64
	load1, load5, load15              float64
	agentExportRows, aggregatorRows   float64
	behind                            uint64 // most lines the pacer was behind in the interval
	agentGCHeapMB, aggregatorGCHeapMB float64
}

// result is what the run proved and measured.
type result struct {
	samples                           []sample
	start                             time.Time
	elapsed                           time.Duration
	records, flows, conns, drops, dns uint64
	replaced                          uint64
	peakOpen                          int
	sourceReceived                    float64 // the records the agent's source produced
	stageDropped                      float64 // records any stage of the agent dropped
	exportRows, aggregatorRows        float64 // agent export rows, aggregator flow rows (the bus hop)
	parquetFlows                      int64
	pairs                             int
	maxBehind                         uint64
	natsKind                          string
	agentExit, aggExit                string
}

func (r *result) exact() bool {
	return r.sourceReceived == float64(r.records) && r.stageDropped == 0 && r.exportRows == r.aggregatorRows && uint64(r.parquetFlows) == r.flows
}

func run(ctx context.Context, o options, stdout io.Writer) (res *result, err error) {
	if o.rate <= 0 || o.duration <= 0 || o.interval <= 0 {
		return nil, errors.New("-rate, -duration and -interval must be positive")
	}
	tmp, err := os.MkdirTemp("", "soak-")
	if err != nil {
		return nil, err
	}
	if o.keep {
		fmt.Fprintln(stdout, "# logs and Parquet in", tmp)
	} else {
		defer os.RemoveAll(tmp)
	}
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return nil, err
	}
	if o.flowbus == "" {
		o.flowbus = filepath.Join(tmp, "flowbus")
		b := exec.CommandContext(ctx, "go", "build", "-o", o.flowbus, "./cmd/flowbus")
		b.Stdout, b.Stderr = os.Stderr, os.Stderr
		if err := b.Run(); err != nil {
			return nil, fmt.Errorf("go build ./cmd/flowbus (run from the repository root): %w", err)
		}
	}
	res = &result{}

	// The bus.
	natsPort := wholeproc.FreePort()
	natsDir := filepath.Join(tmp, "nats")
	var bus *wholeproc.Proc
	if p, lerr := exec.LookPath(o.natsServer); lerr == nil {
		res.natsKind = "nats-server " + natsVersion(p)
		bus, err = wholeproc.Start(tmp, "nats", nil, nil, p, "-a", "127.0.0.1", "-p", strconv.Itoa(natsPort), "-js", "-sd", natsDir)
	} else {
		self, serr := os.Executable()
		if serr != nil {
			return nil, serr
		}
		res.natsKind = "embedded (sinks/nats.StartEmbedded, nats-server/v2 of go.mod) in its own process; " + o.natsServer + " not found"
		bus, err = wholeproc.Start(tmp, "nats", []string{serveNATSEnv + "=" + strconv.Itoa(natsPort) + " " + natsDir}, nil, self)
	}
	if err != nil {
		return nil, err
	}
	defer bus.Stop(stopGrace)
	natsURL := fmt.Sprintf("nats://127.0.0.1:%d", natsPort)
	if err := wholeproc.WaitTCP(ctx, fmt.Sprintf("127.0.0.1:%d", natsPort), 15*time.Second); err != nil {
		return nil, fmt.Errorf("NATS server (log %s): %w", bus.LogPath, err)
	}

	// The agent, its stdin ours.
	agentMetrics, aggMetrics := wholeproc.FreePort(), wholeproc.FreePort()
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	agent, err := wholeproc.Start(tmp, "agent", nil, pr, o.flowbus, "agent", "--source", "hubble-json", "--hubble-json", "-", "--node", "soak",
		"--bus", natsURL, "--data-dir", filepath.Join(tmp, "agent"),
		"--metrics-address", fmt.Sprintf("127.0.0.1:%d", agentMetrics), "--observer-address", fmt.Sprintf("127.0.0.1:%d", wholeproc.FreePort()))
	pr.Close()
	if err != nil {
		pw.Close()
		return nil, err
	}
	defer agent.Stop(stopGrace)
	defer pw.Close()
	am := wholeproc.MetricsURL(agentMetrics)
	if err := waitMetric(ctx, agent, am, "go_goroutines", 30*time.Second); err != nil {
		return nil, err
	}
	outDir := filepath.Join(tmp, "parquet")
	agg, err := wholeproc.Start(tmp, "aggregator", nil, nil, o.flowbus, "aggregator", "--bus", natsURL, "--data-dir", outDir,
		"--metrics-address", fmt.Sprintf("127.0.0.1:%d", aggMetrics))
	if err != nil {
		return nil, err
	}
	defer agg.Stop(stopGrace)
	gm := wholeproc.MetricsURL(aggMetrics)
	if err := waitMetric(ctx, agg, gm, "go_goroutines", 30*time.Second); err != nil {
		return nil, err
	}
	nc, err := natsgo.Connect(natsURL)
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}

	fmt.Fprintf(stdout, "# soak: %v at %g lines/s; agent pid %d, aggregator pid %d, %s pid %d; sampling every %v\n",
		o.duration, o.rate, agent.Pid(), agg.Pid(), res.natsKind, bus.Pid(), o.interval)
	fmt.Fprintln(stdout, csvHeader)

	// The pacer: every 10 ms, the lines due by then.
	g := newGenerator(o.seed, o.namespaces, o.workloads, "soak", o.churn)
	var mu sync.Mutex // guards g's totals and behind for the sampler
	var behind uint64
	res.start = time.Now()
	pctx, pstop := context.WithDeadline(ctx, res.start.Add(o.duration))
	defer pstop()
	pacerDone := make(chan error, 1)
	go func() {
		w := bufio.NewWriterSize(pw, 1<<20)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		var buf []byte
		for {
			select {
			case <-pctx.Done():
				// End on a whole batch of the hubble-json source (it
				// hands lines on 256 at a time, the rest at EOF), so that
				// the agent's counters are final before its input ends.
				mu.Lock()
				buf = buf[:0]
				for g.Records%hubblejson.DefaultBatchSize != 0 {
					buf = g.Fill(buf, int(hubblejson.DefaultBatchSize-g.Records%hubblejson.DefaultBatchSize), time.Now())
				}
				mu.Unlock()
				_, err := w.Write(buf)
				pacerDone <- errors.Join(err, w.Flush())
				return
			case now := <-tick.C:
				due := uint64(now.Sub(res.start).Seconds() * o.rate)
				mu.Lock()
				if due > g.Records {
					behind = max(behind, due-g.Records)
					buf = g.Fill(buf[:0], int(due-g.Records), now)
				} else {
					buf = buf[:0]
				}
				mu.Unlock()
				if _, err := w.Write(buf); err != nil {
					pacerDone <- err
					return
				}
				if err := w.Flush(); err != nil {
					pacerDone <- err
					return
				}
			}
		}
	}()

	// The sampler.
	procs := []*wholeproc.Proc{agent, agg, bus}
	prevCPU := make([]float64, len(procs))
	for i, p := range procs {
		prevCPU[i] = wholeproc.StatCPU(p.Pid()).Seconds()
	}
	prevT := time.Now()
	sampleTick := time.NewTicker(o.interval)
	defer sampleTick.Stop()
	var pacerErr error
loop:
	for {
		select {
		case <-ctx.Done():
			return res, ctx.Err()
		case pacerErr = <-pacerDone:
			break loop
		case now := <-sampleTick.C:
			s := sample{t: now.Sub(res.start)}
			dt := now.Sub(prevT).Seconds()
			prevT = now
			cpu := make([]float64, len(procs))
			for i, p := range procs {
				c := wholeproc.StatCPU(p.Pid()).Seconds()
				cpu[i] = 100 * (c - prevCPU[i]) / dt
				prevCPU[i] = c
			}
			s.agentCPU, s.aggCPU, s.natsCPU = cpu[0], cpu[1], cpu[2]
			s.agentRSS, s.aggRSS, s.natsRSS = float64(wholeproc.StatusKB(agent.Pid(), "VmRSS"))*1024/1e6, float64(wholeproc.StatusKB(agg.Pid(), "VmRSS"))*1024/1e6, float64(wholeproc.StatusKB(bus.Pid(), "VmRSS"))*1024/1e6
			ams, gms := wholeproc.Scrape(am), wholeproc.Scrape(gm)
			s.agentGoroutines, s.aggGoroutines = ams.Get("go_goroutines", ""), gms.Get("go_goroutines", "")
			s.agentGCHeapMB, s.aggregatorGCHeapMB = ams.Get("go_memstats_heap_inuse_bytes", "")/1e6, gms.Get("go_memstats_heap_inuse_bytes", "")/1e6
			s.spoolBytes = ams.Get("flowbus_spool_bytes", "")
			s.agentExportRows, s.aggregatorRows = ams.Get("flowbus_export_rows_total", ""), gms.Get("flowbus_aggregator_flow_rows_total", "")
			s.lagPending, s.lagAckPending = consumerLag(ctx, js)
			s.lag = s.lagPending + s.lagAckPending
			s.load1, s.load5, s.load15 = loadAvg()
			mu.Lock()
			s.sent, s.behind, behind = g.Records, behind, 0
			mu.Unlock()
			res.maxBehind = max(res.maxBehind, s.behind)
			res.samples = append(res.samples, s)
			fmt.Fprintln(stdout, s.csv())
			if agent.Exited() || agg.Exited() || bus.Exited() {
				return res, fmt.Errorf("a process exited during the run (logs in %s; -keep keeps them)", tmp)
			}
		}
	}
	res.elapsed = time.Since(res.start)
	if pacerErr != nil {
		return res, fmt.Errorf("writing to the agent: %w (log %s)", pacerErr, agent.LogPath)
	}
	res.records, res.flows, res.conns, res.drops, res.dns, res.replaced, res.peakOpen = g.Records, g.Flows, g.Connections, g.Drops, g.DNS, g.Replaced, g.PeakOpen

	// Drain: the agent has read every line and exported it, the aggregator
	// has every row the agent exported.
	deadline := time.Now().Add(3 * time.Minute)
	stable := 0
	for {
		ams, gms := wholeproc.Scrape(am), wholeproc.Scrape(gm)
		res.sourceReceived = ams.Get("flowbus_stage_emitted_total", `stage="source"`)
		res.stageDropped = ams.Get("flowbus_stage_dropped_total", "")
		res.exportRows, res.aggregatorRows = ams.Get("flowbus_export_rows_total", ""), gms.Get("flowbus_aggregator_flow_rows_total", "")
		if res.sourceReceived == float64(res.records) && res.exportRows == res.aggregatorRows && ams.Get("flowbus_export_queue_messages", "") == 0 {
			stable++ // the agent's last window (1 s) and linger (1 s) may still come: 5 s alike
		} else {
			stable = 0
		}
		if stable >= 5 {
			break
		}
		if time.Now().After(deadline) {
			return res, fmt.Errorf("not drained after 3 minutes: %d lines written, the agent's source received %.0f, exported %.0f rows, the aggregator decoded %.0f",
				res.records, res.sourceReceived, res.exportRows, res.aggregatorRows)
		}
		if err := wholeproc.Sleep(ctx, time.Second); err != nil {
			return res, err
		}
	}
	// EOF: the agent's source ends, and the agent with it (nothing is left
	// to send); then the aggregator writes its open windows and commits.
	pw.Close()
	select {
	case <-agent.Done():
	case <-time.After(30 * time.Second):
	}
	res.agentExit = agent.Stop(stopGrace)
	if rows := wholeproc.Scrape(gm).Get("flowbus_aggregator_flow_rows_total", ""); rows != res.aggregatorRows {
		return res, fmt.Errorf("the aggregator decoded %.0f rows after the agent's input ended, %.0f before", rows, res.aggregatorRows)
	}
	res.aggExit = agg.Stop(stopGrace)
	pairs, _, err := report.Pairs(ctx, outDir, "")
	if err != nil {
		return res, fmt.Errorf("reading the Parquet with DuckDB: %w", err)
	}
	for _, p := range pairs {
		res.parquetFlows += p.Flows
	}
	res.pairs = len(pairs)
	return res, writeOutputs(o, res, stdout)
}

// consumerLag sums num_pending and num_ack_pending over every consumer of
// every stream: messages the aggregator has not yet taken, and taken but not
// yet acknowledged (it acknowledges once the window's Parquet is committed).
func consumerLag(ctx context.Context, js jetstream.JetStream) (pending, ackPending float64) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	streams := js.ListStreams(ctx)
	for si := range streams.Info() {
		s, err := js.Stream(ctx, si.Config.Name)
		if err != nil {
			continue
		}
		cs := s.ListConsumers(ctx)
		for ci := range cs.Info() {
			pending += float64(ci.NumPending)
			ackPending += float64(ci.NumAckPending)
		}
	}
	return pending, ackPending
}

func loadAvg() (l1, l5, l15 float64) {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0, 0, 0
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return 0, 0, 0
	}
	l1, _ = strconv.ParseFloat(f[0], 64)
	l5, _ = strconv.ParseFloat(f[1], 64)
	l15, _ = strconv.ParseFloat(f[2], 64)
	return l1, l5, l15
}

func natsVersion(bin string) string {
	out, err := exec.Command(bin, "--version").Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(string(out)), "nats-server: "))
}

// stopGrace is how long a process has to exit after SIGTERM.
const stopGrace = 60 * time.Second

func waitMetric(ctx context.Context, p *wholeproc.Proc, url, name string, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		if _, ok := wholeproc.Scrape(url)[name]; ok {
			return nil
		}
		if p.Exited() {
			log, _ := os.ReadFile(p.LogPath)
			return fmt.Errorf("%s exited at start:\n%s", p.Cmd.Args[0], log)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s serves no %s after %v (log %s)", p.Cmd.Args[0], name, d, p.LogPath)
		}
		if err := wholeproc.Sleep(ctx, 100*time.Millisecond); err != nil {
			return err
		}
	}
}
