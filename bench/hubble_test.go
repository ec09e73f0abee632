package bench

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/flowbus/flowbus/internal/hubbletest"
	"github.com/flowbus/flowbus/schemas"
	"github.com/flowbus/flowbus/sinks/nats"
)

// BenchmarkHubbleSource measures `flowbus agent --source hubble` as a
// process, the way a node runs it: the real binary (built once), its
// GOMAXPROCS at 1 and pinned to CPU 1 (taskset, when present), publishing to
// an embedded NATS JetStream that runs in this benchmark's process, so the
// agent's figures are its own. Each run streams a cluster's Hubble events
// (hubbletest.Cluster, every one a distinct flow record).
//
//   - hubble: hubbleN events from a local Hubble over TCP, one GetFlows
//     stream as from a Cilium agent. The upstream replays responses encoded
//     once (replayUpstream), so that what limits the rate is the agent, not
//     the encoding a real Hubble does on its own CPU: flows/s (wall, from
//     the connection to the last event delivered to the pipeline),
//     flows/cpu-s (the agent's whole-process CPU from /proc/<pid>/stat,
//     every thread, GC included), cpu-cores (CPU over wall time), rss-MB
//     (its VmHWM).
//   - hubble-observer: the same from hubbletest.Upstream, flowbus's
//     Observer server with Hubble's 4096-event ring, paced so that the agent
//     loses nothing: the upstream's own CPU (in this process, on CPU 0)
//     bounds flows/s; flows/cpu-s is the agent's as above.
//   - hubble-json, the baseline: the same binary and pinning on the same
//     events as `hubble observe -o json` lines in a file (--follow), from
//     its start.
//   - hubble-bus-down: the hubble case with nothing listening at the bus's
//     address and 10 × hubbleN events: the agent queues 64 messages, then
//     spools to disk; rss-MB@1/3, @2/3 and @3/3 (VmHWM after a third, two
//     thirds and all of them) show whether memory stays bounded, spool-MB
//     what went to disk.
//
// Timing never decides a test: this only reports.
//
//	taskset -c 0 go test ./bench -run '^$' -bench HubbleSource -benchtime 1x -count 3
func BenchmarkHubbleSource(b *testing.B) {
	bin := buildFlowbus(b)
	events := hubbletest.Flows(hubbletest.NewCluster(21, time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC), "node-a").NextEvents(hubblePool))
	encoded, err := hubbletest.Encode(events)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("hubble", func(b *testing.B) {
		for range b.N {
			runReplayAgent(b, bin, encoded, hubbleN, true)
		}
	})
	b.Run("hubble-observer", func(b *testing.B) {
		for range b.N {
			runObserverAgent(b, bin, events)
		}
	})
	b.Run("hubble-json", func(b *testing.B) {
		file := writeHubbleJSON(b, events)
		for range b.N {
			runHubbleJSONAgent(b, bin, file)
		}
	})
	b.Run("hubble-bus-down", func(b *testing.B) {
		for range b.N {
			runReplayAgent(b, bin, encoded, 10*hubbleN, false)
		}
	})
}

const (
	hubbleN    = 600_000 // events per run
	hubblePool = 100_000 // distinct events, fed over again (a stream is not deduplicated)
)

var (
	buildOnce sync.Once
	builtBin  string
	buildErr  error
)

// buildFlowbus builds cmd/flowbus once per benchmark process.
func buildFlowbus(b *testing.B) string {
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "flowbus-bench-")
		if err != nil {
			buildErr = err
			return
		}
		builtBin = filepath.Join(dir, "flowbus")
		out, err := exec.Command("go", "build", "-o", builtBin, "github.com/flowbus/flowbus/cmd/flowbus").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		b.Fatal(buildErr)
	}
	return builtBin
}

// agentProc is a running agent process.
type agentProc struct {
	cmd     *exec.Cmd
	metrics string // host:port of /metrics
	log     string
	exited  chan struct{}
}

// failIfExited stops the benchmark with the agent's log if it has exited.
func (p *agentProc) failIfExited(b *testing.B, waiting string) {
	select {
	case <-p.exited:
		log, _ := os.ReadFile(p.log)
		b.Fatalf("the agent exited while %s: %v\n%s", waiting, p.cmd.ProcessState, log)
	default:
	}
}

// startAgentProc starts the agent pinned to CPU 1 with GOMAXPROCS=1.
func startAgentProc(b *testing.B, bin string, args ...string) *agentProc {
	b.Helper()
	metrics := freePort(b)
	p := startProc(b, bin, "1", "agent", append(append([]string{"agent"}, args...),
		"--metrics-address", metrics, "--observer-address", "", "--data-dir", b.TempDir(), "--node", "bench")...)
	p.metrics = metrics
	return p
}

// cpu is the process's CPU time so far, every thread (/proc/<pid>/stat).
func (p *agentProc) cpu(b *testing.B) time.Duration {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
	if err != nil {
		b.Fatal(err)
	}
	f := strings.Fields(string(data[bytes.LastIndexByte(data, ')')+2:]))
	utime, _ := strconv.ParseInt(f[11], 10, 64) // fields 14 and 15 of stat(5)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * time.Second / 100 // USER_HZ
}

// hwm is the process's peak resident memory (VmHWM), in MB.
func (p *agentProc) hwm(b *testing.B) float64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		b.Fatal(err)
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		if kb, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			n, _ := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(kb), "kB")), 64)
			return n / 1024
		}
	}
	return 0
}

// metric reads one counter or gauge from the agent's /metrics (0 if absent).
func (p *agentProc) metric(name, label, value string) float64 {
	res, err := http.Get("http://" + p.metrics + "/metrics")
	if err != nil {
		return 0
	}
	defer res.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := parser.TextToMetricFamilies(res.Body)
	if err != nil {
		return 0
	}
	var v float64
	for _, m := range mfs[name].GetMetric() {
		match := label == ""
		for _, lp := range m.GetLabel() {
			match = match || (lp.GetName() == label && lp.GetValue() == value)
		}
		if match {
			v += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return v
}

func (p *agentProc) delivered() int {
	return int(p.metric("flowbus_stage_emitted_total", "stage", "source"))
}

func (p *agentProc) waitDelivered(b *testing.B, n int) {
	b.Helper()
	deadline := time.Now().Add(5 * time.Minute)
	for p.delivered() < n {
		p.failIfExited(b, "delivering")
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(p.log)
			b.Fatalf("agent delivered %d of %d flows\n%s", p.delivered(), n, log)
		}
		time.Sleep(100 * time.Millisecond) // each scrape costs the agent CPU
	}
}

func freePort(b *testing.B) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// startBus returns the address of an embedded NATS JetStream, or of
// nothing (the bus down).
func startBus(b *testing.B, up bool) string {
	if !up {
		return "nats://" + freePort(b)
	}
	srv, url, err := nats.StartEmbedded(filepath.Join(b.TempDir(), "nats"), -1)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	return url
}

// waitConnected waits until the agent's Hubble stream is open.
func (p *agentProc) waitConnected(b *testing.B) {
	deadline := time.Now().Add(time.Minute)
	for p.metric("flowbus_source_connected", "", "") != 1 {
		p.failIfExited(b, "connecting")
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(p.log)
			b.Fatalf("the agent does not connect\n%s", log)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (p *agentProc) report(b *testing.B, n int, wall, cpu time.Duration) {
	b.ReportMetric(float64(n)/wall.Seconds(), "flows/s")
	b.ReportMetric(float64(n)/cpu.Seconds(), "flows/cpu-s")
	b.ReportMetric(cpu.Seconds()/wall.Seconds(), "cpu-cores")
}

// runReplayAgent streams n events from a replaying upstream into the agent.
func runReplayAgent(b *testing.B, bin string, encoded [][]byte, n int, busUp bool) {
	b.StopTimer()
	addr, stop, err := hubbletest.Replay(encoded, n)
	if err != nil {
		b.Fatal(err)
	}
	defer stop()
	p := startAgentProc(b, bin, "--source", "hubble", "--hubble-server", addr, "--bus", startBus(b, busUp))
	cpu0, t0 := p.cpu(b), time.Now()
	b.StartTimer()
	p.waitConnected(b)
	if busUp {
		p.waitDelivered(b, n)
		b.StopTimer()
		p.report(b, n, time.Since(t0), p.cpu(b)-cpu0)
		b.ReportMetric(p.hwm(b), "rss-MB")
		return
	}
	p.waitDelivered(b, n/3)
	b.ReportMetric(p.hwm(b), "rss-MB@1/3")
	p.waitDelivered(b, 2*n/3)
	b.ReportMetric(p.hwm(b), "rss-MB@2/3")
	p.waitDelivered(b, n)
	b.StopTimer()
	p.report(b, n, time.Since(t0), p.cpu(b)-cpu0)
	b.ReportMetric(p.hwm(b), "rss-MB@3/3")
	b.ReportMetric(p.metric("flowbus_spool_bytes", "", "")/(1<<20), "spool-MB")
}

// runObserverAgent streams hubbleN events from hubbletest's Hubble (its
// 4096-event ring, fed as fast as the agent reads without loss).
func runObserverAgent(b *testing.B, bin string, events []schemas.Flow) {
	b.StopTimer()
	u, err := hubbletest.StartUpstream(hubbletest.UpstreamConfig{Node: "node-a"})
	if err != nil {
		b.Fatal(err)
	}
	defer u.Close()
	p := startAgentProc(b, bin, "--source", "hubble", "--hubble-server", u.Target(), "--bus", startBus(b, true))
	p.waitConnected(b)
	cpu0, t0 := p.cpu(b), time.Now()
	b.StartTimer()
	for sent := 0; sent < hubbleN; sent += len(events) {
		if err := u.FeedPaced(events[:min(len(events), hubbleN-sent)], 2048, time.Minute); err != nil {
			b.Fatal(err)
		}
	}
	p.waitDelivered(b, hubbleN)
	b.StopTimer()
	if u.Lost() != 0 {
		b.Fatalf("the upstream reported %d events lost: the agent fell behind its ring", u.Lost())
	}
	p.report(b, hubbleN, time.Since(t0), p.cpu(b)-cpu0)
	b.ReportMetric(p.hwm(b), "rss-MB")
}

// writeHubbleJSON writes hubbleN events (the pool over again) as `hubble
// observe -o json` lines.
func writeHubbleJSON(b *testing.B, events []schemas.Flow) string {
	path := filepath.Join(b.TempDir(), "hubble.json")
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	lines := make([][]byte, len(events))
	for i := range events {
		line, err := protojson.Marshal(hubbletest.Response(&events[i]))
		if err != nil {
			b.Fatal(err)
		}
		lines[i] = line
	}
	for i := range hubbleN {
		w.Write(lines[i%len(lines)])
		w.WriteByte('\n')
	}
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
	f.Close()
	return path
}

// runHubbleJSONAgent reads the file with the hubble-json source.
func runHubbleJSONAgent(b *testing.B, bin, file string) {
	b.StopTimer()
	bus := startBus(b, true)
	t0 := time.Now()
	b.StartTimer()
	p := startAgentProc(b, bin, "--source", "hubble-json", "--hubble-json", file, "--follow", "--bus", bus)
	p.waitDelivered(b, hubbleN)
	b.StopTimer()
	p.report(b, hubbleN, time.Since(t0), p.cpu(b))
	b.ReportMetric(p.hwm(b), "rss-MB")
}
