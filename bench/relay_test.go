package bench

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	observerpb "github.com/cilium/cilium/api/v1/observer"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// BenchmarkRelayFanIn runs 10 real agents (synthetic payments fleet, 2,000
// raw flows/s each, their own seeds, on CPU 0) and the real `flowbus relay`
// in front of their Observer APIs (pinned to CPU 1, GOMAXPROCS=1), and
// follows the relay's merged GetFlows stream for relayRun: the relay's
// whole-process CPU (/proc) per flow it delivered, its delivery rate and
// its peak RSS.
//
//	go test ./bench -run '^$' -bench RelayFanIn -benchtime 1x -count 2
func BenchmarkRelayFanIn(b *testing.B) {
	bin := buildFlowbus(b)
	for range b.N {
		runRelayFanIn(b, bin, 10, 2000)
	}
}

const relayRun = 10 * time.Second

func runRelayFanIn(b *testing.B, bin string, agents, rate int) {
	b.StopTimer()
	url := startBus(b, true)
	var addrs []string
	for i := range agents {
		obs := freePort(b)
		addrs = append(addrs, obs)
		startProc(b, bin, "0", fmt.Sprintf("agent-%d", i), "agent", "--source", "synthetic", "--rate", strconv.Itoa(rate),
			"--seed", strconv.Itoa(100+i), "--bus", url, "--spool-dir", "off", "--observer-address", obs,
			"--node", fmt.Sprintf("node-%d", i), "--data-dir", b.TempDir(), "--metrics-address", "")
	}
	relayAddr := freePort(b)
	relay := startProc(b, bin, "1", "relay", "relay", "--agents", strings.Join(addrs, ","), "--observer-address", relayAddr,
		"--metrics-address", freePort(b))
	cc, err := grpc.NewClient(relayAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stream observerpb.Observer_GetFlowsClient
	deadline := time.Now().Add(time.Minute)
	for {
		stream, err = observerpb.NewObserverClient(cc).GetFlows(ctx, &observerpb.GetFlowsRequest{Follow: true})
		if err == nil {
			if _, err = stream.Recv(); err == nil {
				break
			}
		}
		relay.failIfExited(b, "starting")
		if time.Now().After(deadline) {
			b.Fatalf("no flow through the relay in a minute: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	// Warm-up, then the measured span.
	count := func(d time.Duration) int {
		n := 0
		end := time.Now().Add(d)
		for time.Now().Before(end) {
			resp, err := stream.Recv()
			if err == io.EOF {
				b.Fatal("the relay ended the follow stream")
			}
			if err != nil {
				b.Fatal(err)
			}
			if resp.GetFlow() != nil {
				n++
			}
		}
		return n
	}
	count(2 * time.Second)
	cpu0, t0 := relay.cpu(b), time.Now()
	b.StartTimer()
	n := count(relayRun)
	b.StopTimer()
	cpu, wall := relay.cpu(b)-cpu0, time.Since(t0)
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(n)/1000, "relay-cpu-µs/flow")
	b.ReportMetric(float64(n)/wall.Seconds(), "flows/s")
	b.ReportMetric(100*cpu.Seconds()/wall.Seconds(), "relay-%core")
	b.ReportMetric(relay.hwm(b), "rss-MB")
}

// startProc starts 'bin args...' on CPU cpu (taskset, when installed) with
// GOMAXPROCS=1, its output in a log file named for name, stopped (SIGTERM)
// when the benchmark ends; FLOWBUS_BENCH_LOGS names a directory to keep
// the logs in.
func startProc(b *testing.B, bin, cpu, name string, args ...string) *agentProc {
	b.Helper()
	p := &agentProc{log: filepath.Join(b.TempDir(), name+".log")}
	cmdName := bin
	if tp, err := exec.LookPath("taskset"); err == nil {
		args = append([]string{"-c", cpu, bin}, args...)
		cmdName = tp
	}
	p.cmd = exec.Command(cmdName, args...)
	p.cmd.Env = append(os.Environ(), "GOMAXPROCS=1")
	logf, err := os.Create(p.log)
	if err != nil {
		b.Fatal(err)
	}
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	if err := p.cmd.Start(); err != nil {
		b.Fatal(err)
	}
	p.exited = make(chan struct{})
	go func() { p.cmd.Wait(); close(p.exited) }()
	b.Cleanup(func() {
		p.cmd.Process.Signal(syscall.SIGTERM)
		<-p.exited
		logf.Close()
		if dir := os.Getenv("FLOWBUS_BENCH_LOGS"); dir != "" {
			data, _ := os.ReadFile(p.log)
			os.WriteFile(filepath.Join(dir, strings.ReplaceAll(b.Name(), "/", "_")+"-"+name+".log"), data, 0o644)
		}
	})
	return p
}
