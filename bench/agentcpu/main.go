//go:build linux

// Command agentcpu measures the whole `flowbus agent` process on the eBPF
// source in the lab: CPU per exported flow at steady traffic rates, CPU at
// idle, and peak RSS. It is a measurement, not a test: run it as root from
// the repository root, one at a time (the lab's addresses and the host's
// veths are shared), wrapped in the privileged lock:
//
//	flock /tmp/flowbus-priv.lock go run ./bench/agentcpu -runs 2
//
// With -benchfmt it also prints its figures as `go test -bench` result
// lines (BenchmarkAgentCPU/idle, /rate=R, /end), which bench/mkresults
// (`make bench`) reads.
//
// What it does, per run:
//   - `flowbus lab up` (once for all runs), into a temporary --data-dir;
//   - a NATS server in its own process (nats-server -js; Debian's package),
//     the bus;
//   - `flowbus agent` with the flags `flowbus lab up` prints (endpoints,
//     policies, interfaces; --l7 only with -l7), --bus nats://…;
//   - idle: the agent's CPU over -idle with no traffic, as % of one core;
//   - for each -rates value, `flowbus lab traffic --rate R --duration D`:
//     the agent's CPU and its exported flows (flowbus_bpf_flows_total, the
//     records the eBPF source passed to the pipeline) over the steady middle
//     of the traffic (from -warmup after it starts to -warmup before it
//     ends), and over the whole run (start of traffic until the flows that
//     end by idle timeout are out, -drain after it stops): whole-process CPU
//     per flow, fixed costs (timers, sweeps) included, nothing subtracted;
//   - with -storm D, a connect storm after the rates: -storm-workers
//     threads in one pod (-storm-from) open TCP connections to a server of
//     another (-storm-to) as fast as they can for D, each an HTTP/1.0
//     request the server answers and closes (so the client's ports are
//     free at once), and the agent's CPU per exported flow and per
//     connection over the storm and its drain;
//   - peak RSS (VmHWM) at the end.
//
// CPU is the agent process's CPU clock (clock_gettime of its
// CLOCK_PROCESS_CPUTIME_ID: user + system of every thread, dead ones
// included, in ns), and the same from /proc/<pid>/stat utime+stime (clock
// ticks) beside it as a check. The lab is taken down at the end, also on
// failure or interrupt.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/flowbus/flowbus/internal/wholeproc"
	"golang.org/x/sys/unix"
)

type options struct {
	flowbus, natsServer, prefix string
	rates                       []float64
	duration, warmup, drain     time.Duration
	idle                        time.Duration
	runs                        int
	l7                          bool
	extra                       string
	keep                        bool
	storm                       time.Duration
	stormWorkers                int
	stormFrom, stormTo          string
	podIPs                      map[string]string // from lab up's table
	agentEnv                    []string          // more environment of the agent (NAME=value)
	benchfmt                    bool
}

func main() {
	var o options
	var rates string
	flag.StringVar(&o.flowbus, "flowbus", "", "flowbus binary (default: go build ./cmd/flowbus into a temporary directory)")
	flag.StringVar(&o.natsServer, "nats-server", "nats-server", "NATS server binary (Debian: apt-get install nats-server)")
	flag.StringVar(&o.prefix, "prefix", "fbcpu", "lab prefix (namespaces and veths)")
	flag.StringVar(&rates, "rates", "200,500", "lab traffic --rate values (requests per second per client edge), comma-separated")
	flag.DurationVar(&o.duration, "duration", 40*time.Second, "traffic duration per rate")
	flag.DurationVar(&o.warmup, "warmup", 5*time.Second, "left out at both ends of the traffic for the steady figure")
	flag.DurationVar(&o.drain, "drain", 13*time.Second, "wait after the traffic for its last flows (idle timeout 10 s + sweep + window)")
	flag.DurationVar(&o.idle, "idle", 30*time.Second, "idle measurement")
	flag.IntVar(&o.runs, "runs", 1, "runs (a fresh bus and agent each; one lab)")
	flag.BoolVar(&o.l7, "l7", false, "also pass the lab's --l7 to the agent")
	flag.StringVar(&o.extra, "agent-flags", "", "more agent flags, space-separated")
	agentEnv := flag.String("agent-env", "", "more environment of the agent, space-separated NAME=value (e.g. GOMAXPROCS=1)")
	flag.BoolVar(&o.keep, "keep", false, "keep the temporary directory (logs)")
	flag.DurationVar(&o.storm, "storm", 0, "connect storm after the rates, this long (0: none)")
	flag.IntVar(&o.stormWorkers, "storm-workers", 4, "connecting threads of the storm")
	flag.StringVar(&o.stormFrom, "storm-from", "istio-gateway", "lab pod the storm's connections come from")
	flag.StringVar(&o.stormTo, "storm-to", "checkout-api:8080", "lab pod and HTTP port the storm connects to (one the lab's policies allow from -storm-from)")
	stormClient := flag.String("storm-client", "", "internal: run the storm's client against this address (in a lab pod)")
	flag.BoolVar(&o.benchfmt, "benchfmt", false, "also print each figure as a go test -bench result line (BenchmarkAgentCPU/…), for bench/mkresults")
	flag.Parse()
	o.agentEnv = strings.Fields(*agentEnv)
	if *stormClient != "" {
		n, err := runStormClient(*stormClient, o.storm, o.stormWorkers)
		if err != nil {
			fmt.Fprintln(os.Stderr, "agentcpu storm client:", err)
			os.Exit(1)
		}
		fmt.Println(n)
		return
	}
	for _, r := range strings.Split(rates, ",") {
		v, err := strconv.ParseFloat(strings.TrimSpace(r), 64)
		if err != nil || v <= 0 {
			fmt.Fprintf(os.Stderr, "agentcpu: bad rate %q\n", r)
			os.Exit(2)
		}
		o.rates = append(o.rates, v)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "agentcpu:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, o options) (err error) {
	if os.Geteuid() != 0 {
		return errors.New("needs root: network namespaces, veths and eBPF programs")
	}
	tmp, err := os.MkdirTemp("", "agentcpu-")
	if err != nil {
		return err
	}
	if o.keep {
		fmt.Println("# logs in", tmp)
	} else {
		defer os.RemoveAll(tmp)
	}
	if o.flowbus == "" {
		o.flowbus = filepath.Join(tmp, "flowbus")
		b := exec.CommandContext(ctx, "go", "build", "-o", o.flowbus, "./cmd/flowbus")
		b.Stdout, b.Stderr = os.Stderr, os.Stderr
		if err := b.Run(); err != nil {
			return fmt.Errorf("go build ./cmd/flowbus (run from the repository root): %w", err)
		}
	}
	labDir := filepath.Join(tmp, "lab")
	up, upErr := exec.CommandContext(ctx, o.flowbus, "lab", "up", "--data-dir", labDir, "--prefix", o.prefix).CombinedOutput()
	defer func() {
		// Down must run even when interrupted.
		out, derr := exec.Command(o.flowbus, "lab", "down", "--data-dir", labDir).CombinedOutput()
		if derr != nil {
			err = errors.Join(err, fmt.Errorf("lab down: %w: %s", derr, out))
		}
	}()
	if upErr != nil {
		return fmt.Errorf("lab up: %w: %s", upErr, up)
	}
	agentArgs, pods, err := labAgentArgs(string(up), o.l7)
	if err != nil {
		return err
	}
	o.podIPs = labPodIPs(string(up))
	if o.extra != "" {
		agentArgs = append(agentArgs, strings.Fields(o.extra)...)
	}
	host, _ := os.Hostname()
	uname := unameString()
	fmt.Printf("# %s  host %s  %s  %d CPUs\n# agent flags: %s\n", time.Now().UTC().Format(time.RFC3339), host, uname,
		nproc(), strings.Join(agentArgs, " "))
	for i := 1; i <= o.runs; i++ {
		if err := oneRun(ctx, o, tmp, labDir, agentArgs, pods, i); err != nil {
			return fmt.Errorf("run %d: %w", i, err)
		}
	}
	return nil
}

// labAgentArgs takes the agent's flags from what `flowbus lab up` prints
// ("agent:  sudo flowbus agent --source ebpf … --interfaces '…'") and the
// number of pods (rows of its table).
func labAgentArgs(up string, l7 bool) ([]string, int, error) {
	var line string
	pods := 0
	for _, l := range strings.Split(up, "\n") {
		if rest, ok := strings.CutPrefix(l, "agent:"); ok {
			line = strings.TrimSpace(rest)
		}
		if f := strings.Fields(l); len(f) > 5 && strings.HasSuffix(f[4], "h") && f[0] != "POD" {
			pods++
		}
	}
	line, ok := strings.CutPrefix(line, "sudo flowbus agent ")
	if !ok {
		return nil, 0, fmt.Errorf("no agent line in lab up's output:\n%s", up)
	}
	words := shellWords(line)
	var args []string
	for i := 0; i < len(words); i++ {
		if words[i] == "--l7" && !l7 {
			i++
			continue
		}
		args = append(args, words[i])
	}
	return args, pods, nil
}

// labPodIPs maps each pod of lab up's table to its IPv4 address.
func labPodIPs(up string) map[string]string {
	ips := map[string]string{}
	for _, l := range strings.Split(up, "\n") {
		if f := strings.Fields(l); len(f) > 5 && strings.HasSuffix(f[4], "h") && f[0] != "POD" {
			ips[f[0]] = f[2]
		}
	}
	return ips
}

// shellWords splits on spaces, keeping single-quoted parts whole.
func shellWords(s string) []string {
	var out []string
	var cur strings.Builder
	quoted, have := false, false
	for _, r := range s {
		switch {
		case r == '\'':
			quoted, have = !quoted, true
		case r == ' ' && !quoted:
			if have {
				out = append(out, cur.String())
				cur.Reset()
				have = false
			}
		default:
			cur.WriteRune(r)
			have = true
		}
	}
	if have {
		out = append(out, cur.String())
	}
	return out
}

func oneRun(ctx context.Context, o options, tmp, labDir string, agentArgs []string, pods, run int) error {
	dir := filepath.Join(tmp, fmt.Sprintf("run%d", run))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	natsPort, metricsPort, obsPort := wholeproc.FreePort(), wholeproc.FreePort(), wholeproc.FreePort()
	nats, err := wholeproc.Start(dir, "nats", nil, nil, o.natsServer, "-a", "127.0.0.1", "-p", strconv.Itoa(natsPort), "-js", "-sd", filepath.Join(dir, "nats"))
	if err != nil {
		return err
	}
	defer nats.Stop(20 * time.Second)
	if err := wholeproc.WaitTCP(ctx, fmt.Sprintf("127.0.0.1:%d", natsPort), 10*time.Second); err != nil {
		return fmt.Errorf("nats-server: %w", err)
	}
	args := append([]string{"agent"}, agentArgs...)
	args = append(args, "--bus", fmt.Sprintf("nats://127.0.0.1:%d", natsPort), "--data-dir", filepath.Join(dir, "agent"),
		"--metrics-address", fmt.Sprintf("127.0.0.1:%d", metricsPort), "--observer-address", fmt.Sprintf("127.0.0.1:%d", obsPort))
	agent, err := wholeproc.Start(dir, "agent", o.agentEnv, nil, o.flowbus, args...)
	if err != nil {
		return err
	}
	defer agent.Stop(20 * time.Second)
	m := wholeproc.MetricsURL(metricsPort)
	deadline := time.Now().Add(30 * time.Second)
	for {
		v := wholeproc.Scrape(m).Get("flowbus_bpf_attached_interfaces", "")
		if int(v) == pods && pods > 0 {
			break
		}
		if time.Now().After(deadline) || agent.Exited() {
			return fmt.Errorf("agent did not attach to %d interfaces (log: %s)", pods, agent.LogPath)
		}
		if err := wholeproc.Sleep(ctx, 200*time.Millisecond); err != nil {
			return err
		}
	}
	// Settle: the first sweeps, the first window, the bus connection.
	if err := wholeproc.Sleep(ctx, 5*time.Second); err != nil {
		return err
	}
	pid := agent.Pid()
	c0, t0 := procCPU(pid), time.Now()
	s0 := wholeproc.StatCPU(pid).Nanoseconds()
	if err := wholeproc.Sleep(ctx, o.idle); err != nil {
		return err
	}
	c1, t1 := procCPU(pid), time.Now()
	s1 := wholeproc.StatCPU(pid).Nanoseconds()
	fmt.Printf("run %d  idle %v: %.3f%% of a core (%.1f ms CPU; /proc stat %.0f ms)\n", run, o.idle.Round(time.Second),
		100*float64(c1-c0)/float64(t1.Sub(t0)), float64(c1-c0)/1e6, float64(s1-s0)/1e6)
	if o.benchfmt {
		fmt.Printf("BenchmarkAgentCPU/idle 1 %.4f %%core\n", 100*float64(c1-c0)/float64(t1.Sub(t0)))
	}
	for _, rate := range o.rates {
		if err := measureRate(ctx, o, labDir, dir, m, pid, rate, run); err != nil {
			return err
		}
	}
	if o.storm > 0 {
		if err := measureStorm(ctx, o, labDir, dir, m, pid, run); err != nil {
			return err
		}
	}
	lost := wholeproc.Scrape(m).Get("flowbus_bpf_kernel_events_total", `counter="ringbuf_lost"`)
	refused := wholeproc.Scrape(m).Get("flowbus_bpf_kernel_events_total", `counter="ringbuf_end"`)
	fmt.Printf("run %d  peak RSS %.1f MiB  ring refused ends %.0f, lost %.0f\n", run, float64(wholeproc.StatusKB(pid, "VmHWM"))/1024, refused, lost)
	if o.benchfmt {
		fmt.Printf("BenchmarkAgentCPU/end 1 %.1f peak-RSS-MiB %.0f ring-refused-ends %.0f ring-lost\n", float64(wholeproc.StatusKB(pid, "VmHWM"))/1024, refused, lost)
	}
	return nil
}

func measureRate(ctx context.Context, o options, labDir, dir, m string, pid int, rate float64, run int) error {
	logf, err := os.Create(filepath.Join(dir, fmt.Sprintf("traffic-%g.log", rate)))
	if err != nil {
		return err
	}
	defer logf.Close()
	f0 := wholeproc.Scrape(m).Get("flowbus_bpf_flows_total", "")
	c0, t0 := procCPU(pid), time.Now()
	s0 := wholeproc.StatCPU(pid).Nanoseconds()
	tr := exec.CommandContext(ctx, o.flowbus, "lab", "traffic", "--data-dir", labDir, "--rate", strconv.FormatFloat(rate, 'g', -1, 64),
		"--duration", o.duration.String())
	tr.Stdout, tr.Stderr = logf, logf
	if err := tr.Start(); err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- tr.Wait() }()
	var sf0, sf1 float64
	var sc0, sc1 int64
	var st0, st1 time.Time
	select {
	case <-time.After(o.warmup):
	case err := <-done:
		return fmt.Errorf("lab traffic ended early: %v (log %s)", err, logf.Name())
	}
	sf0 = wholeproc.Scrape(m).Get("flowbus_bpf_flows_total", "")
	sc0, st0 = procCPU(pid), time.Now()
	select {
	case <-time.After(o.duration - 2*o.warmup):
	case err := <-done:
		return fmt.Errorf("lab traffic ended early: %v (log %s)", err, logf.Name())
	}
	sf1 = wholeproc.Scrape(m).Get("flowbus_bpf_flows_total", "")
	sc1, st1 = procCPU(pid), time.Now()
	if err := <-done; err != nil {
		return fmt.Errorf("lab traffic: %w (log %s)", err, logf.Name())
	}
	if err := wholeproc.Sleep(ctx, o.drain); err != nil {
		return err
	}
	f1 := wholeproc.Scrape(m).Get("flowbus_bpf_flows_total", "")
	c1, t1 := procCPU(pid), time.Now()
	s1 := wholeproc.StatCPU(pid).Nanoseconds()
	conns := trafficConnections(logf.Name())
	steadyFlows := sf1 - sf0
	steadySec := st1.Sub(st0).Seconds()
	fmt.Printf("run %d  rate %g: steady %.0f flows/s, %.2f µs CPU/flow (%.2f%% of a core);  whole run %.0f flows (%d connections), %.2f µs CPU/flow (%.0f ms CPU over %v; /proc stat %.2f µs/flow)\n",
		run, rate, steadyFlows/steadySec, float64(sc1-sc0)/1e3/steadyFlows, 100*float64(sc1-sc0)/1e9/steadySec,
		f1-f0, conns, float64(c1-c0)/1e3/(f1-f0), float64(c1-c0)/1e6, t1.Sub(t0).Round(time.Second), float64(s1-s0)/1e3/(f1-f0))
	if o.benchfmt {
		fmt.Printf("BenchmarkAgentCPU/rate=%g 1 %.0f steady-flows/s %.3f steady-µs/flow %.3f %%core %.0f run-flows %.3f run-µs/flow\n",
			rate, steadyFlows/steadySec, float64(sc1-sc0)/1e3/steadyFlows, 100*float64(sc1-sc0)/1e9/steadySec, f1-f0, float64(c1-c0)/1e3/(f1-f0))
	}
	return nil
}

// measureStorm runs the connect storm (-storm) from -storm-from to
// -storm-to and reports the agent's CPU per exported flow and per
// connection, over the storm and the drain after it (the last ends, the
// sweep, the aggregation window: every flow of the storm is out by then).
func measureStorm(ctx context.Context, o options, labDir, dir, m string, pid, run int) error {
	pod, port, ok := strings.Cut(o.stormTo, ":")
	ip := o.podIPs[pod]
	if !ok || ip == "" {
		return fmt.Errorf("-storm-to %q: want POD:PORT of a lab pod (have %v)", o.stormTo, o.podIPs)
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	logf, err := os.Create(filepath.Join(dir, "storm.log"))
	if err != nil {
		return err
	}
	defer logf.Close()
	f0 := wholeproc.Scrape(m).Get("flowbus_bpf_flows_total", "")
	c0, t0 := procCPU(pid), time.Now()
	cl := exec.CommandContext(ctx, o.flowbus, "lab", "exec", "--data-dir", labDir, o.stormFrom, "--", self,
		"-storm-client", ip+":"+port, "-storm", o.storm.String(), "-storm-workers", strconv.Itoa(o.stormWorkers))
	cl.Stderr = logf
	out, err := cl.Output()
	if err != nil {
		return fmt.Errorf("storm client: %w (log %s)", err, logf.Name())
	}
	conns, err := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil {
		return fmt.Errorf("storm client printed %q, want a count", out)
	}
	cs := procCPU(pid)
	if err := wholeproc.Sleep(ctx, o.drain); err != nil {
		return err
	}
	f1 := wholeproc.Scrape(m).Get("flowbus_bpf_flows_total", "")
	c1, t1 := procCPU(pid), time.Now()
	flows := f1 - f0
	fmt.Printf("run %d  storm %v: %d connections (%.0f/s), %.0f flows, %.2f µs CPU/flow, %.2f µs CPU/connection (%.0f ms CPU over %v; %.0f ms of it during the storm: %.0f%% of a core)\n",
		run, o.storm, conns, float64(conns)/o.storm.Seconds(), flows, float64(c1-c0)/1e3/flows, float64(c1-c0)/1e3/float64(conns),
		float64(c1-c0)/1e6, t1.Sub(t0).Round(time.Second), float64(cs-c0)/1e6, 100*float64(cs-c0)/1e9/o.storm.Seconds())
	if o.benchfmt {
		fmt.Printf("BenchmarkAgentCPU/storm 1 %.0f conns/s %.0f flows %.3f µs/flow %.3f µs/conn\n",
			float64(conns)/o.storm.Seconds(), flows, float64(c1-c0)/1e3/flows, float64(c1-c0)/1e3/float64(conns))
	}
	return nil
}

// runStormClient opens TCP connections to addr from workers threads for d,
// each an HTTP/1.0 request read to the server's close, and returns how many
// completed. It runs inside a lab pod (flowbus lab exec).
func runStormClient(addr string, d time.Duration, workers int) (uint64, error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil || !ap.Addr().Is4() {
		return 0, fmt.Errorf("storm address %q: want IPv4:port", addr)
	}
	// The pod's own ephemeral range, wide: connections close server first,
	// so ports are free again at once.
	_ = os.WriteFile("/proc/sys/net/ipv4/ip_local_port_range", []byte("1024 65535"), 0o644)
	sa := &unix.SockaddrInet4{Addr: ap.Addr().As4(), Port: int(ap.Port())}
	req := []byte("GET /storm HTTP/1.0\r\n\r\n")
	end := time.Now().Add(d)
	var done atomic.Uint64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runtime.LockOSThread()
			buf := make([]byte, 4096)
			for time.Now().Before(end) {
				fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
				if err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
				if err := unix.Connect(fd, sa); err != nil {
					unix.Close(fd)
					firstErr.CompareAndSwap(nil, fmt.Errorf("connect: %w", err))
					continue
				}
				unix.Write(fd, req)
				for {
					n, err := unix.Read(fd, buf)
					if err == unix.EINTR {
						continue
					}
					if n <= 0 {
						break
					}
				}
				unix.Close(fd)
				done.Add(1)
			}
		}()
	}
	wg.Wait()
	if e, _ := firstErr.Load().(error); e != nil && done.Load() == 0 {
		return 0, e
	}
	return done.Load(), nil
}

// trafficConnections reads the CONNECTIONS column of the total row that
// `flowbus lab traffic` prints.
func trafficConnections(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return -1
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) == 9 && f[0] == "total" {
			n, _ := strconv.Atoi(f[8])
			return n
		}
	}
	return -1
}

// procCPU is the process's CPU clock (all threads, user + system), in ns.
func procCPU(pid int) int64 {
	var ts unix.Timespec
	clk := int32((^pid)<<3 | 2) // MAKE_PROCESS_CPUCLOCK(pid, CPUCLOCK_SCHED)
	if err := unix.ClockGettime(clk, &ts); err != nil {
		return 0
	}
	return ts.Nano()
}

func unameString() string {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return ""
	}
	return "Linux " + unix.ByteSliceToString(u.Release[:])
}

func nproc() int {
	var s unix.CPUSet
	if unix.SchedGetaffinity(0, &s) != nil {
		return 0
	}
	return s.Count()
}
