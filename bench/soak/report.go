//go:build linux

package main

import (
	"errors"
	"fmt"
	"image/color"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
)

const csvHeader = "t_s,lines_sent,agent_rss_mb,aggregator_rss_mb,nats_rss_mb,agent_cpu_pct,aggregator_cpu_pct,nats_cpu_pct," +
	"agent_goroutines,aggregator_goroutines,lag_msgs,lag_pending,lag_ack_pending,spool_bytes,agent_heap_inuse_mb,aggregator_heap_inuse_mb," +
	"agent_export_rows,aggregator_rows,pacer_behind_lines,load1,load5,load15"

func (s sample) csv() string {
	return fmt.Sprintf("%.0f,%d,%.2f,%.2f,%.2f,%.2f,%.2f,%.2f,%.0f,%.0f,%.0f,%.0f,%.0f,%.0f,%.2f,%.2f,%.0f,%.0f,%d,%.2f,%.2f,%.2f",
		s.t.Seconds(), s.sent, s.agentRSS, s.aggRSS, s.natsRSS, s.agentCPU, s.aggCPU, s.natsCPU,
		s.agentGoroutines, s.aggGoroutines, s.lag, s.lagPending, s.lagAckPending, s.spoolBytes, s.agentGCHeapMB, s.aggregatorGCHeapMB,
		s.agentExportRows, s.aggregatorRows, s.behind, s.load1, s.load5, s.load15)
}

// steady is the samples the slope and means are taken over: after warmup,
// or the second half of a run no longer than twice warmup.
func steady(ss []sample, warmup, duration time.Duration) ([]sample, time.Duration) {
	if duration <= 2*warmup {
		warmup = duration / 2
	}
	for i, s := range ss {
		if s.t >= warmup {
			return ss[i:], warmup
		}
	}
	return nil, warmup
}

// slope is the least-squares slope of y over t, per hour.
func slope(ss []sample, y func(sample) float64) float64 {
	if len(ss) < 2 {
		return math.NaN()
	}
	var st, sy, stt, sty float64
	n := float64(len(ss))
	for _, s := range ss {
		t := s.t.Hours()
		st, sy, stt, sty = st+t, sy+y(s), stt+t*t, sty+t*y(s)
	}
	return (n*sty - st*sy) / (n*stt - st*st)
}

func stats(ss []sample, y func(sample) float64) (mean, lo, hi float64) {
	if len(ss) == 0 {
		return math.NaN(), math.NaN(), math.NaN()
	}
	lo, hi = math.Inf(1), math.Inf(-1)
	for _, s := range ss {
		v := y(s)
		mean += v
		lo, hi = min(lo, v), max(hi, v)
	}
	return mean / float64(len(ss)), lo, hi
}

func writeOutputs(o options, r *result, stdout io.Writer) error {
	var csv strings.Builder
	csv.WriteString(csvHeader + "\n")
	for _, s := range r.samples {
		csv.WriteString(s.csv() + "\n")
	}
	if err := os.WriteFile(filepath.Join(o.out, "soak.csv"), []byte(csv.String()), 0o644); err != nil {
		return err
	}
	if err := plots(o.out, r.samples); err != nil {
		return err
	}
	md := summary(o, r)
	if err := os.WriteFile(filepath.Join(o.out, "soak.md"), []byte(md), 0o644); err != nil {
		return err
	}
	fmt.Fprint(stdout, "\n"+md)
	return nil
}

func summary(o options, r *result) string {
	st, wu := steady(r.samples, o.warmup, o.duration)
	agRSS := func(s sample) float64 { return s.agentRSS }
	ggRSS := func(s sample) float64 { return s.aggRSS }
	nsRSS := func(s sample) float64 { return s.natsRSS }
	var b strings.Builder
	host, _ := os.Hostname()
	commit, _ := exec.Command("git", "describe", "--always", "--dirty").Output()
	fmt.Fprintf(&b, "## Soak: %v at %g flow records/s\n\n", o.duration, o.rate)
	fmt.Fprintf(&b, "Run %s to %s UTC on %s (%d CPUs, %s), code %s; bus %s.\n\n    %s\n\n",
		r.start.UTC().Format("2006-01-02 15:04"), r.start.Add(r.elapsed).UTC().Format("15:04"), host, runtime.NumCPU(), kernel(),
		strings.TrimSpace(string(commit)), r.natsKind, o.command)
	fmt.Fprintf(&b, "Samples every %v (%d); the slope and the means are over the %d samples from %v on (after the warm-up).\n\n",
		o.interval, len(r.samples), len(st), wu)
	b.WriteString("| process | RSS slope after warm-up | RSS after warm-up (min–max) | CPU mean (max), % of a core | goroutines (min–max) |\n| --- | --- | --- | --- | --- |\n")
	row := func(name string, rss func(sample) float64, cpu func(sample) float64, gor func(sample) float64) {
		_, lo, hi := stats(st, rss)
		cm, _, cx := stats(st, cpu)
		g := "—"
		if gor != nil {
			_, gl, gh := stats(st, gor)
			g = fmt.Sprintf("%.0f–%.0f", gl, gh)
		}
		fmt.Fprintf(&b, "| %s | **%+.1f MB/h** | %.1f–%.1f MB | %.1f (%.1f) | %s |\n", name, slope(st, rss), lo, hi, cm, cx, g)
	}
	row("agent", agRSS, func(s sample) float64 { return s.agentCPU }, func(s sample) float64 { return s.agentGoroutines })
	row("aggregator", ggRSS, func(s sample) float64 { return s.aggCPU }, func(s sample) float64 { return s.aggGoroutines })
	row("nats-server", nsRSS, func(s sample) float64 { return s.natsCPU }, nil)
	_, _, lagMax := stats(r.samples, func(s sample) float64 { return s.lag })
	_, _, pendMax := stats(r.samples, func(s sample) float64 { return s.lagPending })
	_, _, spoolMax := stats(r.samples, func(s sample) float64 { return s.spoolBytes })
	lm, _, lx := stats(r.samples, func(s sample) float64 { return s.load1 })
	fmt.Fprintf(&b, "\nBus lag max %.0f messages (not yet delivered to the aggregator: max %.0f; the rest delivered, acknowledged when their window's Parquet is committed). Spool max %.0f bytes. The pacer was at most %d lines behind its schedule.\n\n",
		lagMax, pendMax, spoolMax, r.maxBehind)
	fmt.Fprintf(&b, "Load average (1 min) during the run: mean %.2f, max %.2f (on %d CPUs; the machine is shared, other work included).\n\n", lm, lx, runtime.NumCPU())
	verdict := "exact: nothing lost"
	if !r.exact() {
		verdict = "**NOT EXACT**"
	}
	b.WriteString("| totals | |\n| --- | --- |\n")
	fmt.Fprintf(&b, "| Hubble flow records written (%.1f s, %.1f/s) | %d |\n", r.elapsed.Seconds(), float64(r.records)/r.elapsed.Seconds(), r.records)
	fmt.Fprintf(&b, "| records the agent's source read (flowbus_stage_emitted_total{stage=\"source\"}); dropped by any stage | %.0f; %.0f |\n", r.sourceReceived, r.stageDropped)
	fmt.Fprintf(&b, "| rows the agent exported (after its 1 s aggregation) / the aggregator decoded | %.0f / %.0f |\n", r.exportRows, r.aggregatorRows)
	fmt.Fprintf(&b, "| flows written (Hubble's count: %d TCP connections' SYNs, %d DNS queries, %d drops) | %d |\n", r.conns-r.dns, r.dns, r.drops, r.flows)
	fmt.Fprintf(&b, "| flows in the Parquet (DuckDB: sum(flows) of pair_rollup, %d pairs) | %d |\n", r.pairs, r.parquetFlows)
	fmt.Fprintf(&b, "| result | %s |\n", verdict)
	fmt.Fprintf(&b, "\nTraffic: %d open TCP connections at the peak, %d pods replaced. Exits: agent %s, aggregator %s.\n",
		r.peakOpen, r.replaced, r.agentExit, r.aggExit)
	fmt.Fprintf(&b, "\nFiles: soak.csv (the samples), soak-rss.png, soak-cpu.png, soak-goroutines.png, soak-lag.png, soak-spool.png, soak-load.png.\n")
	return b.String()
}

func kernel() string {
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return runtime.GOOS
	}
	return "Linux " + strings.TrimSpace(string(b))
}

type series struct {
	name string
	y    func(sample) float64
}

var (
	blue   = color.RGBA{R: 31, G: 119, B: 180, A: 255}
	orange = color.RGBA{R: 255, G: 127, B: 14, A: 255}
	green  = color.RGBA{R: 44, G: 160, B: 44, A: 255}
	grey   = color.RGBA{R: 127, G: 127, B: 127, A: 255}
)

func plots(dir string, ss []sample) error {
	figs := []struct {
		file, title, y string
		ss             []series
	}{
		{"soak-rss.png", "Resident memory (VmRSS)", "RSS (MB)", []series{
			{"agent", func(s sample) float64 { return s.agentRSS }},
			{"aggregator", func(s sample) float64 { return s.aggRSS }},
			{"nats-server", func(s sample) float64 { return s.natsRSS }}}},
		{"soak-cpu.png", "CPU (utime + stime over each interval)", "CPU (% of one core)", []series{
			{"agent", func(s sample) float64 { return s.agentCPU }},
			{"aggregator", func(s sample) float64 { return s.aggCPU }},
			{"nats-server", func(s sample) float64 { return s.natsCPU }}}},
		{"soak-load.png", fmt.Sprintf("The machine's load average (%d CPUs, shared)", runtime.NumCPU()), "load average (runnable tasks)", []series{
			{"1 min", func(s sample) float64 { return s.load1 }},
			{"5 min", func(s sample) float64 { return s.load5 }},
			{"15 min", func(s sample) float64 { return s.load15 }}}},
		{"soak-goroutines.png", "Goroutines (go_goroutines)", "goroutines", []series{
			{"agent", func(s sample) float64 { return s.agentGoroutines }},
			{"aggregator", func(s sample) float64 { return s.aggGoroutines }}}},
		{"soak-lag.png", "Bus lag: the aggregator's JetStream consumers", "messages", []series{
			{"not yet acknowledged (pending + ack pending)", func(s sample) float64 { return s.lag }},
			{"not yet delivered (pending)", func(s sample) float64 { return s.lagPending }}}},
		{"soak-spool.png", "Agent disk spool (flowbus_spool_bytes)", "spool (bytes)", []series{
			{"agent", func(s sample) float64 { return s.spoolBytes }}}},
	}
	colors := []color.Color{blue, orange, green, grey}
	for _, f := range figs {
		p := plot.New()
		p.Title.Text = f.title
		p.X.Label.Text = "time since the input started (min)"
		p.Y.Label.Text = f.y
		p.X.Min, p.Y.Min = 0, 0
		p.Add(plotter.NewGrid())
		p.Legend.Top = true
		p.Legend.Left = true
		top := 0.0
		for _, se := range f.ss {
			for _, s := range ss {
				top = max(top, se.y(s))
			}
		}
		if top > 0 {
			p.Y.Max = top * 1.3 // room for the legend above the lines
		}
		for i, se := range f.ss {
			xy := make(plotter.XYs, len(ss))
			for j, s := range ss {
				xy[j] = plotter.XY{X: s.t.Minutes(), Y: se.y(s)}
			}
			l, err := plotter.NewLine(xy)
			if err != nil {
				return err
			}
			l.Color = colors[i%len(colors)]
			l.Width = vg.Points(1.5)
			if strings.HasPrefix(se.name, "not yet delivered") {
				l.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
				l.Width = vg.Points(1)
			}
			p.Add(l)
			p.Legend.Add(se.name, l)
		}
		if err := p.Save(8*vg.Inch, 4*vg.Inch, filepath.Join(dir, f.file)); err != nil {
			return err
		}
	}
	return nil
}

// replot writes the PNGs of the samples in a soak.csv again, into dir.
func replot(csvPath, dir string) error {
	b, err := os.ReadFile(csvPath)
	if err != nil {
		return err
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) < 2 || lines[0] != csvHeader {
		return errors.New(csvPath + ": not a soak.csv of this version (header differs) or no samples")
	}
	var ss []sample
	for _, l := range lines[1:] {
		f := strings.Split(l, ",")
		v := make([]float64, len(f))
		for i := range f {
			if v[i], err = strconv.ParseFloat(f[i], 64); err != nil {
				return fmt.Errorf("%s: %q: %w", csvPath, l, err)
			}
		}
		ss = append(ss, sample{t: time.Duration(v[0] * float64(time.Second)), sent: uint64(v[1]),
			agentRSS: v[2], aggRSS: v[3], natsRSS: v[4], agentCPU: v[5], aggCPU: v[6], natsCPU: v[7],
			agentGoroutines: v[8], aggGoroutines: v[9], lag: v[10], lagPending: v[11], lagAckPending: v[12], spoolBytes: v[13],
			agentGCHeapMB: v[14], aggregatorGCHeapMB: v[15], agentExportRows: v[16], aggregatorRows: v[17], behind: uint64(v[18]),
			load1: v[19], load5: v[20], load15: v[21]})
	}
	return plots(dir, ss)
}
