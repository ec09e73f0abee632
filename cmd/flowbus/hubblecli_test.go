package main

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
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
)

// hubbleCLI finds the real hubble CLI, built from cilium's own source by
// `make hubble` (bin/hubble) or named by FLOWBUS_HUBBLE_CLI.
func hubbleCLI(t *testing.T) string {
	t.Helper()
	p := os.Getenv("FLOWBUS_HUBBLE_CLI")
	if p == "" {
		p, _ = filepath.Abs("../../bin/hubble")
	}
	if _, err := os.Stat(p); err != nil {
		t.Skipf("real hubble CLI not built (make hubble, or set FLOWBUS_HUBBLE_CLI): %v", err)
	}
	return p
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
