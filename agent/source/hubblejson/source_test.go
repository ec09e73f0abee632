package hubblejson

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	flowpb "github.com/cilium/cilium/api/v1/flow"
	"github.com/cilium/cilium/api/v1/observer"
	"github.com/cilium/cilium/api/v1/relay"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/flowbus/flowbus/schemas"
)

// flowLine returns a GetFlowsResponse JSON line (no newline) of a flow with uuid.
func flowLine(t *testing.T, uuid string, url string) string {
	t.Helper()
	f := &flowpb.Flow{
		Time:     timestamppb.New(time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)),
		Uuid:     uuid,
		Verdict:  flowpb.Verdict_FORWARDED,
		NodeName: "node-a",
		IP:       &flowpb.IP{Source: "10.0.1.5", Destination: "10.0.2.7", IpVersion: flowpb.IPVersion_IPv4},
		L4:       &flowpb.Layer4{Protocol: &flowpb.Layer4_TCP{TCP: &flowpb.TCP{SourcePort: 40000, DestinationPort: 8080}}},
		Source:   &flowpb.Endpoint{Namespace: "payments", PodName: "checkout-api-1"},
		Destination: &flowpb.Endpoint{Namespace: "payments", PodName: "ledger-svc-1",
			Workloads: []*flowpb.Workload{{Name: "ledger-svc", Kind: "Deployment"}}},
	}
	if url != "" {
		f.L7 = &flowpb.Layer7{Type: flowpb.L7FlowType_REQUEST, Record: &flowpb.Layer7_Http{Http: &flowpb.HTTP{Method: "GET", Url: url}}}
	}
	b, err := protojson.Marshal(&observer.GetFlowsResponse{NodeName: "node-a", ResponseTypes: &observer.GetFlowsResponse_Flow{Flow: f}})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// logSink collects the malformed-line errors a Source logs.
type logSink struct {
	mu   sync.Mutex
	errs []*LineError
}

func (l *logSink) Enabled(context.Context, slog.Level) bool { return true }
func (l *logSink) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *logSink) WithGroup(string) slog.Handler            { return l }
func (l *logSink) Handle(_ context.Context, r slog.Record) error {
	r.Attrs(func(a slog.Attr) bool {
		if le, ok := a.Value.Any().(*LineError); ok {
			l.mu.Lock()
			l.errs = append(l.errs, le)
			l.mu.Unlock()
		}
		return true
	})
	return nil
}

func (l *logSink) lines() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var s []string
	for _, e := range l.errs {
		s = append(s, fmt.Sprintf("%s:%d", filepath.Base(e.File), e.Line))
	}
	return s
}

type lostCall struct {
	src flowpb.LostEventSource
	n   uint64
}

type run struct {
	src  *Source
	logs *logSink
	reg  *prometheus.Registry
	out  chan []schemas.Flow
	mu   sync.Mutex
	lost []lostCall
	done chan error
}

func startRun(t *testing.T, ctx context.Context, cfg Config) *run {
	t.Helper()
	r := &run{logs: &logSink{}, reg: prometheus.NewRegistry(), out: make(chan []schemas.Flow, 100), done: make(chan error, 1)}
	if cfg.PollInterval == 0 {
		cfg.PollInterval = 5 * time.Millisecond
	}
	s, err := New(cfg, slog.New(r.logs), r.reg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	r.src = s
	go func() {
		r.done <- s.Run(ctx, r.out, func(src flowpb.LostEventSource, n uint64) {
			r.mu.Lock()
			r.lost = append(r.lost, lostCall{src, n})
			r.mu.Unlock()
		})
	}()
	return r
}

// collect reads flows until Run returns, returning their UUIDs.
func (r *run) collect(t *testing.T) []string {
	t.Helper()
	var ids []string
	for {
		select {
		case b := <-r.out:
			for _, f := range b {
				ids = append(ids, f.UUID)
			}
		case err := <-r.done:
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			for {
				select {
				case b := <-r.out:
					for _, f := range b {
						ids = append(ids, f.UUID)
					}
				default:
					return ids
				}
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Run did not finish within 10 s")
		}
	}
}

// next reads flows until n UUIDs have arrived.
func (r *run) next(t *testing.T, n int) []string {
	t.Helper()
	var ids []string
	for len(ids) < n {
		select {
		case b := <-r.out:
			for _, f := range b {
				ids = append(ids, f.UUID)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("got %v, waited 10 s for %d flows", ids, n)
		}
	}
	return ids
}

func write(t *testing.T, path string, lines ...string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

func appendTo(t *testing.T, path, text string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(text); err != nil {
		t.Fatal(err)
	}
}

func TestGoodLinesAroundMalformedOnes(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "flows.json")
	good := flowLine(t, "f2", "")
	longURL := "/api/v1/orders/" + strings.Repeat("9", 100<<10) // a 100 KiB line
	nodeStatus, _ := protojson.Marshal(&observer.GetFlowsResponse{ResponseTypes: &observer.GetFlowsResponse_NodeStatus{
		NodeStatus: &relay.NodeStatusEvent{StateChange: relay.NodeState_NODE_CONNECTED, NodeNames: []string{"node-b"}}}})
	write(t, path,
		flowLine(t, "f1", "/api/v1/orders/1"), // 1
		`{"flow": {"uuid": "x", "verdict": `,  // 2 bad JSON
		good,                                  // 3
		good[:len(good)/2],                    // 4 truncated line
		`{"foo": "bar", "answer": 42}`,        // 5 JSON, not a GetFlowsResponse
		"",                                    // 6 empty line
		flowLine(t, "f3", longURL),            // 7
		`{"lost_events":{"source":"PERF_EVENT_RING_BUFFER","num_events_lost":"7"},"node_name":"node-a"}`, // 8
		string(nodeStatus),    // 9
		`[1, 2, 3]`,           // 10 JSON array
		flowLine(t, "f4", ""), // 11
		`{"flow": {"IP": {"source": "not-an-ip"}, "verdict": "FORWARDED"}}`, // 12 unconvertible
		flowLine(t, "f5", ""), // 13
	)
	r := startRun(t, context.Background(), Config{Path: path, BatchSize: 2})
	got := r.collect(t)
	if want := []string{"f1", "f2", "f3", "f4", "f5"}; !reflect.DeepEqual(got, want) {
		t.Errorf("flows %v, want %v", got, want)
	}
	wantBad := []string{"flows.json:2", "flows.json:4", "flows.json:5", "flows.json:6", "flows.json:10", "flows.json:12"}
	if got := r.logs.lines(); !reflect.DeepEqual(got, wantBad) {
		t.Errorf("malformed lines reported %v, want %v", got, wantBad)
	}
	if v := testutil.ToFloat64(r.src.malformed); v != float64(len(wantBad)) {
		t.Errorf("flowbus_source_malformed_total = %v, want %d", v, len(wantBad))
	}
	if want := []lostCall{{flowpb.LostEventSource_PERF_EVENT_RING_BUFFER, 7}}; !reflect.DeepEqual(r.lost, want) {
		t.Errorf("lost calls %v, want %v", r.lost, want)
	}
	if v := testutil.ToFloat64(r.src.skipped.WithLabelValues("node_status")); v != 1 {
		t.Errorf("skipped node_status = %v, want 1", v)
	}
}

func TestLegacyFlowLinesAndStdin(t *testing.T) {
	f := &flowpb.Flow{Uuid: "legacy-1", Verdict: flowpb.Verdict_DROPPED, DropReasonDesc: flowpb.DropReason_POLICY_DENIED}
	b, _ := protojson.Marshal(f)
	in := string(b) + "\n" + flowLine(t, "new-1", "") + "\n" + flowLine(t, "new-2", "") // no final newline
	r := startRun(t, context.Background(), Config{Path: "-", Stdin: strings.NewReader(in)})
	if got, want := r.collect(t), []string{"legacy-1", "new-1", "new-2"}; !reflect.DeepEqual(got, want) {
		t.Errorf("flows %v, want %v", got, want)
	}
}

// A connection between two pods as a node's Hubble exports it (the
// sender's from-endpoint event, the receiver's to-endpoint event, the
// reply) counts once, at the receiver (hubble.CountAs).
func TestHubbleEventsOfOneConnectionCountOnce(t *testing.T) {
	event := func(uuid string, point flowpb.TraceObservationPoint, sub int32, reply bool) string {
		f := &flowpb.Flow{Uuid: uuid, Verdict: flowpb.Verdict_FORWARDED, NodeName: "node-a",
			EventType: &flowpb.CiliumEventType{Type: 4, SubType: sub}, TraceObservationPoint: point, IsReply: wrapperspb.Bool(reply),
			IP:          &flowpb.IP{Source: "10.0.1.5", Destination: "10.0.2.7", IpVersion: flowpb.IPVersion_IPv4},
			L4:          &flowpb.Layer4{Protocol: &flowpb.Layer4_UDP{UDP: &flowpb.UDP{SourcePort: 40000, DestinationPort: 53}}},
			Source:      &flowpb.Endpoint{Identity: 1001, Namespace: "payments", PodName: "checkout-api-1"},
			Destination: &flowpb.Endpoint{Identity: 1002, Namespace: "kube-system", PodName: "coredns-1"}}
		b, err := protojson.Marshal(&observer.GetFlowsResponse{ResponseTypes: &observer.GetFlowsResponse_Flow{Flow: f}})
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	in := event("from", flowpb.TraceObservationPoint_FROM_ENDPOINT, 5, false) + "\n" +
		event("to", flowpb.TraceObservationPoint_TO_ENDPOINT, 0, false) + "\n" +
		event("reply", flowpb.TraceObservationPoint_TO_ENDPOINT, 0, true) + "\n"
	s, err := New(Config{Path: "-", Stdin: strings.NewReader(in)}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	out := make(chan []schemas.Flow, 8)
	if err := s.Run(context.Background(), out, nil); err != nil {
		t.Fatal(err)
	}
	close(out)
	got := map[string]schemas.CountAs{}
	for b := range out {
		for _, f := range b {
			got[f.UUID] = f.CountAs
		}
	}
	want := map[string]schemas.CountAs{"from": schemas.CountNone, "to": schemas.CountFlow, "reply": schemas.CountNone}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("count_as %v, want %v", got, want)
	}
}

func TestDirectoryOfRotatedFilesIsReadOldestFirst(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "hubble.log"), flowLine(t, "active-1", ""), flowLine(t, "active-2", ""))
	write(t, filepath.Join(dir, "hubble-2024-01-02T15-04-05.000.log"), flowLine(t, "second-1", ""), "garbage")
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write([]byte(flowLine(t, "first-1", "") + "\n" + flowLine(t, "first-2", "") + "\n"))
	zw.Close()
	os.WriteFile(filepath.Join(dir, "hubble-2024-01-01T09-00-00.000.log.gz"), gz.Bytes(), 0o644)

	r := startRun(t, context.Background(), Config{Path: dir})
	if got, want := r.collect(t), []string{"first-1", "first-2", "second-1", "active-1", "active-2"}; !reflect.DeepEqual(got, want) {
		t.Errorf("flows %v, want %v", got, want)
	}
	if got, want := r.logs.lines(), []string{"hubble-2024-01-02T15-04-05.000.log:2"}; !reflect.DeepEqual(got, want) {
		t.Errorf("malformed %v, want %v", got, want)
	}
}

func TestRotatedFileOrder(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []string{"hubble.log", "hubble.log.1", "hubble.log.3.gz", "hubble.log.2", ".hidden"} {
		os.WriteFile(filepath.Join(dir, n), nil, 0o644)
	}
	got, err := rotatedFiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range got {
		names = append(names, filepath.Base(p))
	}
	if want := []string{"hubble.log.3.gz", "hubble.log.2", "hubble.log.1", "hubble.log"}; !reflect.DeepEqual(names, want) {
		t.Errorf("order %v, want %v", names, want)
	}
}

func TestFollowPicksUpAppendsTruncationAndRotation(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "hubble.log")
	write(t, path, flowLine(t, "a1", ""), flowLine(t, "a2", ""))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r := startRun(t, ctx, Config{Path: path, Follow: true})
	if got := r.next(t, 2); !reflect.DeepEqual(got, []string{"a1", "a2"}) {
		t.Fatalf("initial flows %v", got)
	}

	t.Run("appended lines arrive, a half-written line waits for its end", func(t *testing.T) {
		l := flowLine(t, "a4", "")
		appendTo(t, path, flowLine(t, "a3", "")+"\n"+l[:20])
		if got := r.next(t, 1); !reflect.DeepEqual(got, []string{"a3"}) {
			t.Fatalf("got %v, want [a3]", got)
		}
		time.Sleep(30 * time.Millisecond)
		appendTo(t, path, l[20:]+"\nnot json\n")
		if got := r.next(t, 1); !reflect.DeepEqual(got, []string{"a4"}) {
			t.Fatalf("got %v, want [a4]", got)
		}
	})
	t.Run("a truncated file is read again from its start", func(t *testing.T) {
		write(t, path, flowLine(t, "b1", ""))
		if got := r.next(t, 1); !reflect.DeepEqual(got, []string{"b1"}) {
			t.Fatalf("got %v, want [b1]", got)
		}
	})
	t.Run("a rotated file is drained, then the new one is read", func(t *testing.T) {
		appendTo(t, path, flowLine(t, "b2", "")+"\n")
		os.Rename(path, path+".1")
		write(t, path, flowLine(t, "c1", ""))
		if got := r.next(t, 2); !reflect.DeepEqual(got, []string{"b2", "c1"}) {
			t.Fatalf("got %v, want [b2 c1]", got)
		}
	})
	cancel()
	if err := <-r.done; err != nil {
		t.Errorf("Run after cancel: %v", err)
	}
	if got, want := r.logs.lines(), []string{"hubble.log:5"}; !reflect.DeepEqual(got, want) {
		t.Errorf("malformed %v, want %v", got, want)
	}
}

func TestConfigValidate(t *testing.T) {
	for name, c := range map[string]Config{
		"an empty path is refused":          {},
		"stdin without a reader is refused": {Path: "-"},
		"following stdin is refused":        {Path: "-", Stdin: strings.NewReader(""), Follow: true},
		"a negative batch size is refused":  {Path: "x", BatchSize: -1},
	} {
		t.Run(name, func(t *testing.T) {
			if err := c.Validate(); err == nil {
				t.Errorf("Validate(%+v) = nil, want error", c)
			}
		})
	}
	if _, err := New(Config{Path: "/nonexistent/flows.json"}, nil, nil); err != nil {
		t.Fatalf("New checks the path lazily, got %v", err)
	}
	s, _ := New(Config{Path: "/nonexistent/flows.json"}, nil, nil)
	if err := s.Run(context.Background(), make(chan []schemas.Flow, 1), nil); err == nil || !strings.Contains(err.Error(), "/nonexistent/flows.json") {
		t.Errorf("Run on a missing file: %v, want an error naming it", err)
	}
}
