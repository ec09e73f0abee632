package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"
	"time"

	flowpb "github.com/cilium/cilium/api/v1/flow"
	observerpb "github.com/cilium/cilium/api/v1/observer"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// TestAgentExportsHubbleLostEventsFromEverySource: the agent's /metrics
// has hubble_lost_events_total for each place Hubble loses events, with
// Hubble's source label values: perf_event_ring_buffer and
// observer_events_queue from the start (as Hubble's monitor consumer
// registers them), and hubble_ring_buffer counting what GetFlows readers
// lost to ring overwrites, as flowbus_observer_reader_lost_total does.
// A follower stalls while a fast synthetic source overwrites a 16-flow
// ring many times over.
func TestAgentExportsHubbleLostEventsFromEverySource(t *testing.T) {
	obs := freeLocalAddr(t)
	fs, f := newAgentFlags(testIO())
	if err := parseFlags(fs, []string{"--source", "synthetic", "--rate", "200000", "--bus", "stdout", "--no-aggregate",
		"--node", "n1", "--observer-address", obs, "--metrics-address", "", "--spool-dir", "off", "--ring-size", "16"}); err != nil {
		t.Fatal(err)
	}
	rt, err := f.build(testIO(), false, "")
	if err != nil {
		t.Fatal(err)
	}
	defer rt.close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- rt.run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()

	conn, err := grpc.NewClient(obs, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	sctx, scancel := context.WithTimeout(ctx, 30*time.Second)
	defer scancel()
	var s observerpb.Observer_GetFlowsClient
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if s, err = observerpb.NewObserverClient(conn).GetFlows(sctx, &observerpb.GetFlowsRequest{Follow: true}); err == nil {
			if _, err = s.Recv(); err == nil {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("observer API: %v", err)
		}
	}
	time.Sleep(2 * time.Second) // stall: the ring is overwritten many times
	var clientLost uint64
	for clientLost == 0 {
		res, err := s.Recv()
		if err != nil {
			t.Fatalf("stream: %v", err)
		}
		if le := res.GetLostEvents(); le != nil {
			if le.GetSource() != flowpb.LostEventSource_HUBBLE_RING_BUFFER {
				t.Errorf("lost events from %v", le.GetSource())
			}
			clientLost += le.GetNumEventsLost()
		}
	}
	scancel()
	cancel()
	if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
		t.Fatalf("agent: %v", err)
	}
	done <- nil

	// Scrape as Prometheus would: the text exposition, parsed.
	mfs, err := rt.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var text bytes.Buffer
	enc := expfmt.NewEncoder(&text, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, mf := range mfs {
		if err := enc.Encode(mf); err != nil {
			t.Fatal(err)
		}
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(io.Reader(&text))
	if err != nil {
		t.Fatal(err)
	}
	lost := map[string]float64{}
	for _, m := range fams["hubble_lost_events_total"].GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == "source" {
				lost[l.GetValue()] = m.GetCounter().GetValue()
			}
		}
	}
	var readerLost float64
	for _, m := range fams["flowbus_observer_reader_lost_total"].GetMetric() {
		readerLost = m.GetCounter().GetValue()
	}
	if readerLost < float64(clientLost) || clientLost == 0 {
		t.Errorf("flowbus_observer_reader_lost_total %v, client told of %d lost", readerLost, clientLost)
	}
	want := map[string]float64{"perf_event_ring_buffer": 0, "observer_events_queue": 0, "hubble_ring_buffer": readerLost}
	if len(lost) != len(want) {
		t.Errorf("hubble_lost_events_total %v, want %v", lost, want)
	}
	for k, v := range want {
		if got, ok := lost[k]; !ok || got != v {
			t.Errorf("hubble_lost_events_total{source=%q} = %v (present %v), want %v", k, got, ok, v)
		}
	}
}
