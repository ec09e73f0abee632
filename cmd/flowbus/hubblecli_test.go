package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	flowpb "github.com/cilium/cilium/api/v1/flow"
	observerpb "github.com/cilium/cilium/api/v1/observer"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/flowbus/flowbus/agent/source/synthetic"
	"github.com/flowbus/flowbus/internal/observer"
	"github.com/flowbus/flowbus/internal/servetest"
	"github.com/flowbus/flowbus/schemas"
	"github.com/flowbus/flowbus/schemas/hubble"
)

// hubbleCLI finds the real hubble CLI, built from cilium's own source by
// `make hubble` (bin/hubble) or named by FLOWBUS_HUBBLE_CLI.
func hubbleCLI(t *testing.T) string {
	t.Helper()
	p, err := findHubbleCLI()
	if err != nil {
		t.Skipf("real hubble CLI not built (make hubble, or set FLOWBUS_HUBBLE_CLI): %v", err)
	}
	return p
}

// findHubbleCLI returns the real hubble CLI's path, or "" and why not.
func findHubbleCLI() (string, error) {
	p := os.Getenv("FLOWBUS_HUBBLE_CLI")
	if p == "" {
		p, _ = filepath.Abs("../../bin/hubble")
	}
	if _, err := os.Stat(p); err != nil {
		return "", err
	}
	return p, nil
}

// The incident workflow with the real hubble CLI against our Observer API:
// every flow it prints is one the filter selects, none is missing, and its
// -o json lines are byte for byte what `flowbus observe -o json` prints.
func TestRealHubbleCLIAgainstTheAgent(t *testing.T) {
	hubble := hubbleCLI(t)
	g, err := synthetic.NewGenerator(synthetic.Config{Seed: 11, Rate: 1000, Start: time.Now().Add(-time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	flows := make([]schemas.Flow, 3000)
	g.Fill(flows)
	ring := observer.NewRing(4096, time.Now)
	ring.Observe(flows)
	srv, err := observer.NewServer(observer.Config{NodeName: "node-1", Version: "test"}, ring, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	addr := servetest.Serve(t, srv.Serve)

	var want []string
	for i := range flows {
		f := &flows[i]
		if f.Dst.Namespace == "payments" && strings.HasPrefix(f.Dst.PodName, "ledger-svc") && f.Verdict == flowpb.Verdict_DROPPED {
			want = append(want, f.UUID)
		}
	}
	if len(want) == 0 {
		t.Fatal("fixture has no dropped flow toward ledger-svc")
	}
	query := []string{"--last", "5000", "--to-pod", "payments/ledger-svc", "--verdict", "DROPPED", "-o", "json"}

	hout, err := exec.Command(hubble, append([]string{"observe", "--server", addr}, query...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("hubble observe: %v\n%s", err, hout)
	}
	var got []string
	for _, line := range bytes.Split(bytes.TrimSpace(hout), []byte("\n")) {
		var r observerpb.GetFlowsResponse
		if err := protojson.Unmarshal(line, &r); err != nil {
			t.Fatalf("hubble printed %q: %v", line, err)
		}
		got = append(got, r.GetFlow().GetUuid())
	}
	sort.Strings(got)
	sort.Strings(want)
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("hubble observe returned %d flows, want %d\ngot  %v\nwant %v", len(got), len(want), got, want)
	}

	var fout, ferr strings.Builder
	if err := runObserve(context.Background(), append([]string{"--server", addr}, query...),
		cmdIO{Stdout: &fout, Stderr: &ferr, Log: slog.New(slog.DiscardHandler)}); err != nil {
		t.Fatalf("flowbus observe: %v\n%s", err, ferr.String())
	}
	if fout.String() != string(hout) {
		t.Fatalf("flowbus observe -o json differs from hubble's:\nflowbus: %.300s\nhubble:  %.300s", fout.String(), hout)
	}

	st, err := exec.Command(hubble, "status", "--server", addr).CombinedOutput()
	if err != nil || !strings.Contains(string(st), "Healthcheck (via "+addr+"): Ok") || !strings.Contains(string(st), "Current/Max Flows: 3,000/4,096") {
		t.Fatalf("hubble status: %v\n%s", err, st)
	}
	nodes, err := exec.Command(hubble, "list", "nodes", "--server", addr).CombinedOutput()
	if err != nil || !strings.Contains(string(nodes), "node-1") || !strings.Contains(string(nodes), "Connected") {
		t.Fatalf("hubble list nodes: %v\n%s", err, nodes)
	}
}

// printFixture returns flows that exercise every part of hubble's printer:
// the synthetic fleet (services, world, L7 HTTP and DNS, drops), and random
// flows over event types and sub-types (known and unknown drop reasons and
// observation points, policy verdicts, captures, trace-sock), verdicts,
// reply flags, identities (reserved ones by name), IPv4, IPv6 and no IP,
// L4 protocols, ICMP types, L7 records of every protocol and type, DNS
// rcodes, and text with terminal escapes that hubble must neutralise.
func printFixture(t *testing.T) []schemas.Flow {
	t.Helper()
	base := time.Date(2026, 11, 25, 21, 47, 0, 0, time.UTC)
	g, err := synthetic.NewGenerator(synthetic.Config{Seed: 7, Rate: 1000, Start: base})
	if err != nil {
		t.Fatal(err)
	}
	flows := make([]schemas.Flow, 300)
	g.Fill(flows)
	r := rand.New(rand.NewPCG(11, 13))
	pick := func(xs ...string) string { return xs[r.IntN(len(xs))] }
	ep := func() schemas.Endpoint {
		if r.IntN(5) == 0 {
			return schemas.Endpoint{}
		}
		return schemas.Endpoint{Identity: []uint32{0, 1, 2, 6, 9, 11, 14, 15, 1001, 70000}[r.IntN(10)],
			Namespace: pick("", "shop", "kube-system"), PodName: pick("", "frontend-7d9f", "checkout-1", "x\x1b[31mred", "cr\rlf"),
			Labels: []string{"k8s:app=frontend"}}
	}
	svc := func() schemas.Service {
		if r.IntN(2) == 0 {
			return schemas.Service{}
		}
		return schemas.Service{Namespace: pick("", "shop"), Name: pick("checkout", "kube-dns")}
	}
	for i := range 400 {
		f := schemas.Flow{
			UUID: fmt.Sprintf("p%03d", i), TimeNs: base.Add(time.Duration(i)*time.Millisecond + 123456).UnixNano(),
			NodeName: pick("node-1", "cluster-1/node-2", ""), Verdict: flowpb.Verdict(r.IntN(8)),
			DropReason: flowpb.DropReason(r.IntN(210)), Direction: flowpb.TrafficDirection(r.IntN(3)),
			EventType: []int32{0, hubble.MsgTypeDrop, hubble.MsgTypeTrace, hubble.MsgTypeTrace, hubble.MsgTypePolicyVerdict,
				hubble.MsgTypeCapture, hubble.MsgTypeTraceSock, hubble.MsgTypeAccessLog, 99}[r.IntN(9)],
			EventSubType: []int32{0, hubble.TraceFromLxc, 13, 14, 133, 250, 300, 2}[r.IntN(8)],
			IsReply:      []schemas.Tristate{schemas.Unknown, schemas.True, schemas.False}[r.IntN(3)],
			L4Protocol:   []uint8{0, 1, 2, 6, 6, 17, 58, 112, 132}[r.IntN(9)],
			SrcPort:      uint16(r.IntN(3) * 4000), DstPort: []uint16{0, 53, 8080}[r.IntN(3)],
			TCPFlags: schemas.TCPFlags(r.IntN(512)), ICMPType: uint8(r.IntN(20)), ICMPCode: uint8(r.IntN(3)),
			Src: ep(), Dst: ep(), SrcService: svc(), DstService: svc(), Count: 1, LatencyNs: uint64(r.IntN(5e7)),
		}
		switch r.IntN(4) {
		case 0:
			f.IPVersion, f.SrcIP, f.DstIP = flowpb.IPVersion_IPv4, netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.1.5")
		case 1:
			f.IPVersion, f.SrcIP, f.DstIP = flowpb.IPVersion_IPv6, netip.MustParseAddr("fd00::1"), netip.MustParseAddr("fd00::2")
			if f.L4Protocol == 1 {
				f.L4Protocol = 58
			}
		case 2:
			f.IPVersion, f.SrcIP, f.DstIP = flowpb.IPVersion_IPv4, netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("93.184.216.34")
			f.DstNames = []string{"www.example.com", "example.com"}
		}
		if r.IntN(6) == 0 {
			f.TimeNs = 0
		}
		typ := flowpb.L7FlowType(r.IntN(4))
		switch r.IntN(5) {
		case 0:
			f.L7 = schemas.L7{Type: typ, Protocol: schemas.L7HTTP, HTTPMethod: pick("GET", "POST"), HTTPStatus: []uint32{0, 200, 503}[r.IntN(3)],
				HTTPURL: pick("http://checkout/api/v1/cart?id=1", "http://x/\x1b]0;title\x07", "/p\rq"), HTTPProtocol: "HTTP/1.1"}
		case 1:
			f.L7 = schemas.L7{Type: typ, Protocol: schemas.L7DNS, DNSQuery: "api.example.com.", DNSQTypes: []string{"A", "AAAA"}[:1+r.IntN(2)],
				DNSRCode: []uint32{0, 3, 9, 11, 30}[r.IntN(5)], DNSIPs: []string{"93.184.216.34"}, DNSCNAMEs: []string{"x.example.com."}[:r.IntN(2)],
				DNSTTL: 30, DNSObservationSource: pick("proxy", "")}
		case 2:
			f.L7 = schemas.L7{Type: typ, Protocol: schemas.L7Kafka, KafkaAPIKey: "produce", KafkaTopic: "orders"}
		}
		flows = append(flows, f)
	}
	return flows
}

// TestRealHubbleCLIPrintsAsFlowbusObserve runs the real `hubble observe`
// and `flowbus observe` with the same flags against the same server, in
// every output mode and with the options that change what is printed, and
// requires byte-identical output: flows, lost events, and (through a relay
// with an agent down) node status events.
func TestRealHubbleCLIPrintsAsFlowbusObserve(t *testing.T) {
	hubble := hubbleCLI(t)
	clock := time.Date(2026, 11, 25, 22, 0, 0, 0, time.UTC)
	ring := observer.NewRing(4096, func() time.Time { return clock })
	flows := printFixture(t)
	ring.Observe(flows[:350])
	ring.Lost(flowpb.LostEventSource_PERF_EVENT_RING_BUFFER, 7)
	ring.Observe(flows[350:])
	ring.Lost(flowpb.LostEventSource_OBSERVER_EVENTS_QUEUE, 3)
	srv, err := observer.NewServer(observer.Config{NodeName: "node-1", Version: "test"}, ring, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	addr := servetest.Serve(t, srv.Serve)

	modes := []string{"compact", "dict", "table", "json", "jsonpb"}
	options := [][]string{
		{"--all"},
		{"--last", "50", "--print-node-name"},
		{"--all", "--numeric"},
		{"--first", "40", "--time-format", "RFC3339Nano", "--print-node-name"},
		{"--all", "--time-format", "YearMonthDayHourMinute", "--ip-translation=false"},
		{"--all", "--not", "--type", "l7", "--verdict", "DROPPED"},
		{"--last", "30", "--type", "trace:from-endpoint", "--type", "drop"},
		{"--all", "--to-identity", "world", "--print-node-name"},
		{"--all", "--http-status", "5+"},
		{"--all", "--protocol", "dns", "--use-default-field-masks=false"},
	}
	for _, mode := range modes {
		for _, opts := range options {
			args := append([]string{"-o", mode}, opts...)
			t.Run(strings.Join(args, " "), func(t *testing.T) {
				hout, herr := runHubble(t, hubble, addr, args)
				fout, ferr := runFlowbusObserve(t, addr, args)
				if fout != hout {
					t.Errorf("stdout differs\n%s", firstDiff(fout, hout))
				}
				if ferr != herr {
					t.Errorf("stderr differs: flowbus %q, hubble %q", ferr, herr)
				}
				if strings.Count(hout, "\n") < 3 {
					t.Errorf("hubble printed %d lines only: the options select too little", strings.Count(hout, "\n"))
				}
			})
		}
	}

	// Node status events come from a relay; one agent is down.
	down := freeLocalAddr(t)
	relay := freeLocalAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- runRelay(ctx, []string{"--agents", addr + "," + down, "--observer-address", relay},
			cmdIO{Stdout: io.Discard, Stderr: io.Discard, Log: slog.New(slog.DiscardHandler)})
	}()
	defer func() {
		cancel()
		<-done
	}()
	times := regexp.MustCompile(`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z`)
	for _, mode := range modes {
		args := []string{"-o", mode, "--last", "5", "--time-format", "RFC3339Nano"}
		t.Run("through a relay with an agent down "+strings.Join(args, " "), func(t *testing.T) {
			var hout, herr, fout, ferr string
			for range 50 { // until the relay serves
				if hout, herr = runHubble(t, hubble, relay, args); strings.Contains(herr, down) {
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
			fout, ferr = runFlowbusObserve(t, relay, args)
			if fout != hout {
				t.Errorf("stdout differs\n%s", firstDiff(fout, hout))
			}
			// node status events carry the relay's time of sending
			if f, h := times.ReplaceAllString(ferr, "T"), times.ReplaceAllString(herr, "T"); f != h || !strings.Contains(h, down) {
				t.Errorf("stderr differs or names no unavailable agent: flowbus %q, hubble %q", f, h)
			}
		})
	}
}

func runHubble(t *testing.T, hubble, addr string, args []string) (string, string) {
	t.Helper()
	var out, errw bytes.Buffer
	cmd := exec.Command(hubble, append([]string{"observe", "--server", addr}, args...)...)
	cmd.Stdout, cmd.Stderr = &out, &errw
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir()) // no user hubble config
	if err := cmd.Run(); err != nil {
		t.Fatalf("hubble observe %v: %v\n%s", args, err, errw.String())
	}
	return out.String(), errw.String()
}

func runFlowbusObserve(t *testing.T, addr string, args []string) (string, string) {
	t.Helper()
	var out, errw strings.Builder
	if err := runObserve(context.Background(), append([]string{"--server", addr}, args...),
		cmdIO{Stdout: &out, Stderr: &errw, Log: slog.New(slog.DiscardHandler)}); err != nil {
		t.Fatalf("flowbus observe %v: %v\n%s", args, err, errw.String())
	}
	return out.String(), errw.String()
}

// firstDiff shows the first line where got and want differ.
func firstDiff(got, want string) string {
	g, w := strings.Split(got, "\n"), strings.Split(want, "\n")
	for i := range max(len(g), len(w)) {
		var gl, wl string
		if i < len(g) {
			gl = g[i]
		}
		if i < len(w) {
			wl = w[i]
		}
		if gl != wl {
			return fmt.Sprintf("line %d:\nflowbus: %q\nhubble:  %q", i+1, gl, wl)
		}
	}
	return ""
}
