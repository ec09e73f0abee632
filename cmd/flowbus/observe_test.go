package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	flowpb "github.com/cilium/cilium/api/v1/flow"
	observerpb "github.com/cilium/cilium/api/v1/observer"

	"github.com/flowbus/flowbus/internal/observer"
	"github.com/flowbus/flowbus/internal/servetest"
	"github.com/flowbus/flowbus/internal/syncbuf"
	"github.com/flowbus/flowbus/schemas"
	"github.com/flowbus/flowbus/schemas/hubble"
)

var obsBase = time.Date(2026, 11, 25, 21, 47, 0, 0, time.UTC)

// observeFixture is a small set of flows with UUIDs o1..o6 in time order.
func observeFixture() []schemas.Flow {
	at := func(i int) int64 { return obsBase.Add(time.Duration(i) * time.Second).UnixNano() }
	fe := schemas.Endpoint{Identity: 1001, Namespace: "shop", PodName: "frontend-7d9f", Workload: "frontend", WorkloadKind: "Deployment", Labels: []string{"k8s:app=frontend"}}
	co := schemas.Endpoint{Identity: 1002, Namespace: "shop", PodName: "checkout-api-5c8", Workload: "checkout-api", WorkloadKind: "Deployment", Labels: []string{"k8s:app=checkout-api"}}
	cr := schemas.Endpoint{Identity: 1003, Namespace: "chat", PodName: "chat-relay-0", Workload: "chat-relay", WorkloadKind: "StatefulSet", Labels: []string{"k8s:app=chat-relay"}}
	world := schemas.Endpoint{Identity: hubble.IdentityWorld, Labels: []string{hubble.LabelReservedWorld}}
	base := func(uuid string, i int) schemas.Flow {
		return schemas.Flow{UUID: uuid, TimeNs: at(i), NodeName: "node-a", Verdict: flowpb.Verdict_FORWARDED, EventType: hubble.MsgTypeTrace,
			IPVersion: flowpb.IPVersion_IPv4, L4Protocol: 6, Count: 1}
	}
	var fs []schemas.Flow
	f := base("o1", 1)
	f.Src, f.Dst, f.SrcIP, f.DstIP, f.SrcPort, f.DstPort, f.TCPFlags, f.IsReply = fe, co, netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.1.5"), 40000, 8080, schemas.FlagSYN, schemas.False
	f.Direction = flowpb.TrafficDirection_EGRESS
	fs = append(fs, f)
	f = base("o2", 2)
	f.Src, f.Dst, f.SrcIP, f.DstIP, f.SrcPort, f.DstPort, f.TCPFlags, f.IsReply = co, fe, netip.MustParseAddr("10.0.1.5"), netip.MustParseAddr("10.0.0.1"), 8080, 40000, schemas.FlagSYN|schemas.FlagACK, schemas.True
	f.EventSubType, f.Direction = hubble.TraceFromLxc, flowpb.TrafficDirection_INGRESS
	fs = append(fs, f)
	f = base("o3", 3)
	f.NodeName, f.Verdict, f.DropReason, f.EventType, f.EventSubType = "node-b", flowpb.Verdict_DROPPED, flowpb.DropReason_POLICY_DENIED, hubble.MsgTypeDrop, 133
	f.Src, f.Dst, f.SrcIP, f.DstIP, f.SrcPort, f.DstPort, f.TCPFlags = fe, cr, netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.5.7"), 40001, 7000, schemas.FlagSYN
	f.Direction = flowpb.TrafficDirection_INGRESS
	fs = append(fs, f)
	f = base("o4", 4)
	f.EventType, f.Src, f.Dst, f.SrcIP, f.DstIP, f.SrcPort, f.DstPort, f.IsReply = hubble.MsgTypeAccessLog, fe, co, netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.1.5"), 40002, 8080, schemas.False
	f.Direction = flowpb.TrafficDirection_INGRESS
	f.L7 = schemas.L7{Type: flowpb.L7FlowType_REQUEST, Protocol: schemas.L7HTTP, HTTPMethod: "GET", HTTPURL: "http://checkout/api/cart", HTTPProtocol: "HTTP/1.1"}
	fs = append(fs, f)
	f = base("o5", 5)
	f.EventType, f.Src, f.Dst, f.SrcIP, f.DstIP, f.SrcPort, f.DstPort, f.IsReply = hubble.MsgTypeAccessLog, co, fe, netip.MustParseAddr("10.0.1.5"), netip.MustParseAddr("10.0.0.1"), 8080, 40002, schemas.True
	f.Direction = flowpb.TrafficDirection_INGRESS
	f.L7 = schemas.L7{Type: flowpb.L7FlowType_RESPONSE, Protocol: schemas.L7HTTP, HTTPMethod: "GET", HTTPURL: "http://checkout/api/cart", HTTPProtocol: "HTTP/1.1", HTTPStatus: 503}
	fs = append(fs, f)
	f = base("o6", 6)
	f.Src, f.Dst, f.SrcIP, f.DstIP, f.SrcPort, f.DstPort, f.TCPFlags, f.IsReply = fe, world, netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("93.184.216.34"), 40003, 443, schemas.FlagFIN|schemas.FlagACK, schemas.False
	f.DstNames, f.Direction = []string{"www.example.com"}, flowpb.TrafficDirection_EGRESS
	fs = append(fs, f)
	return fs
}

// startObserveServer serves the fixture on a random port and returns its address.
func startObserveServer(t *testing.T) string {
	t.Helper()
	ring := observer.NewRing(64, nil)
	ring.Observe(observeFixture())
	return serveRing(t, ring)
}

func serveRing(t *testing.T, ring *observer.Ring) string {
	t.Helper()
	srv, err := observer.NewServer(observer.Config{NodeName: "node-a"}, ring, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return servetest.Serve(t, srv.Serve)
}

func runObserveArgs(t *testing.T, addr string, args ...string) (string, string, error) {
	t.Helper()
	var out, errw bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := runObserve(ctx, append([]string{"--server", addr}, args...), cmdIO{Stdout: &out, Stderr: &errw, Log: slog.New(slog.DiscardHandler)})
	return out.String(), errw.String(), err
}

func TestObserveFlagsSelectTheExpectedFlows(t *testing.T) {
	addr := startObserveServer(t)
	cases := []struct {
		name string
		args []string
		want []string
	}{
		{"a bare observe prints the last 20", nil, []string{"o1", "o2", "o3", "o4", "o5", "o6"}},
		{"the incident runbook: to-pod and verdict", []string{"--to-pod", "chat/chat-relay", "--verdict", "DROPPED"}, []string{"o3"}},
		{"pod matches either side", []string{"--pod", "shop/checkout"}, []string{"o1", "o2", "o4", "o5"}},
		{"from-pod without namespace means default", []string{"--from-pod", "frontend"}, nil},
		{"namespace matches either side", []string{"--namespace", "chat"}, []string{"o3"}},
		{"from-namespace and to-namespace", []string{"--from-namespace", "shop", "--to-namespace", "shop"}, []string{"o1", "o2", "o4", "o5"}},
		{"label", []string{"--label", "app=checkout-api"}, []string{"o1", "o2", "o4", "o5"}},
		{"from-label with source prefix", []string{"--from-label", "k8s:app=frontend"}, []string{"o1", "o3", "o4", "o6"}},
		{"to-label reserved", []string{"--to-label", "reserved:world"}, []string{"o6"}},
		{"ip either side", []string{"--ip", "10.0.5.7"}, []string{"o3"}},
		{"from-ip CIDR", []string{"--from-ip", "10.0.1.0/24"}, []string{"o2", "o5"}},
		{"to-fqdn wildcard", []string{"--to-fqdn", "*.example.com"}, []string{"o6"}},
		{"verdict twice is OR", []string{"--verdict", "DROPPED", "--verdict", "FORWARDED", "--last", "2"}, []string{"o5", "o6"}},
		{"drop reason", []string{"--drop-reason-desc", "POLICY_DENIED"}, []string{"o3"}},
		{"protocol http", []string{"--protocol", "http"}, []string{"o4", "o5"}},
		{"port either side", []string{"--port", "443"}, []string{"o6"}},
		{"to-port", []string{"--to-port", "8080"}, []string{"o1", "o4"}},
		{"http status prefix", []string{"--http-status", "5+"}, []string{"o5"}},
		{"http method", []string{"--http-method", "get"}, []string{"o4", "o5"}},
		{"http path", []string{"--http-path", "^/api/"}, []string{"o4", "o5"}},
		{"tcp flags", []string{"--tcp-flags", "SYN"}, []string{"o1", "o2", "o3"}},
		{"type drop", []string{"--type", "drop"}, []string{"o3"}},
		{"type trace with subtype", []string{"--type", "trace:from-endpoint"}, []string{"o2"}},
		{"node name", []string{"--node-name", "node-b"}, []string{"o3"}},
		{"identity", []string{"--identity", "world"}, []string{"o6"}},
		{"from-identity numeric", []string{"--from-identity", "1002"}, []string{"o2", "o5"}},
		{"traffic direction", []string{"--traffic-direction", "egress"}, []string{"o1", "o6"}},
		{"workload with kind", []string{"--to-workload", "StatefulSet/chat-relay"}, []string{"o3"}},
		{"uuid", []string{"--uuid", "o4"}, []string{"o4"}},
		{"reply", []string{"--reply"}, []string{"o2", "o5"}},
		{"not-reply", []string{"--not-reply"}, []string{"o1", "o3", "o4", "o6"}},
		{"not negates the next filter", []string{"--not", "--verdict", "FORWARDED"}, []string{"o3"}},
		{"not with another filter", []string{"--from-pod", "shop/frontend", "--not", "--protocol", "http"}, []string{"o1", "o3", "o6"}},
		{"ipv6 only", []string{"--ipv6"}, nil},
		{"ipv4 with last", []string{"-4", "--last", "1"}, []string{"o6"}},
		{"first", []string{"--first", "2"}, []string{"o1", "o2"}},
		{"since and until", []string{"--since", "2026-11-25T21:47:02Z", "--until", "2026-11-25T21:47:04Z"}, []string{"o2", "o3", "o4"}},
		{"allowlist as JSON", []string{"--allowlist", `{"destination_port":["7000"]}`}, []string{"o3"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, stderr, err := runObserveArgs(t, addr, append([]string{"-o", "json"}, tc.args...)...)
			if err != nil {
				t.Fatalf("%v (stderr %q)", err, stderr)
			}
			var got []string
			for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
				if line == "" {
					continue
				}
				var res struct {
					Flow struct {
						UUID string `json:"uuid"`
					} `json:"flow"`
				}
				if err := json.Unmarshal([]byte(line), &res); err != nil {
					t.Fatalf("line %q: %v", line, err)
				}
				got = append(got, res.Flow.UUID)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestObserveRejects(t *testing.T) {
	addr := startObserveServer(t)
	cases := []struct {
		name string
		args []string
		text string
	}{
		{"a trailing --not", []string{"--verdict", "DROPPED", "--not"}, "trailing --not"},
		{"a bad verdict", []string{"--verdict", "LOST"}, "invalid --verdict value"},
		{"conflicting filters", []string{"--ip", "1.2.3.4", "--from-ip", "1.2.3.5"}, "cannot be combined"},
		{"table with follow", []string{"-o", "table", "-f"}, "not compatible with follow"},
		{"first with last", []string{"--first", "1", "--last", "1"}, "cannot set both --first and --last"},
		{"a filter the server cannot answer", []string{"--node-label", "zone=a"}, "node_labels"},
		{"a bad IP", []string{"--from-ip", "10.0.0.300"}, "invalid IP address"},
		{"an unknown output", []string{"-o", "yaml"}, "invalid output format"},
	}
	for _, tc := range cases {
		t.Run("rejects "+tc.name, func(t *testing.T) {
			_, _, err := runObserveArgs(t, addr, tc.args...)
			if err == nil || !strings.Contains(err.Error(), tc.text) {
				t.Fatalf("err = %v, want one containing %q", err, tc.text)
			}
		})
	}
}

func TestObserveOutputModes(t *testing.T) {
	addr := startObserveServer(t)
	args := []string{"--uuid", "o2", "--uuid", "o3", "--uuid", "o5"}
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"compact", []string{"-o", "compact"}, "" +
			"Nov 25 21:47:02.000: shop/frontend-7d9f:40000 (ID:1001) <- shop/checkout-api-5c8:8080 (ID:1002) from-endpoint FORWARDED (TCP Flags: SYN, ACK)\n" +
			"Nov 25 21:47:03.000: shop/frontend-7d9f:40001 (ID:1001) <> chat/chat-relay-0:7000 (ID:1003) Policy denied DROPPED (TCP Flags: SYN)\n" +
			"Nov 25 21:47:05.000: shop/frontend-7d9f:40002 (ID:1001) <- shop/checkout-api-5c8:8080 (ID:1002) http-response FORWARDED (HTTP/1.1 503 0ms (GET http://checkout/api/cart))\n"},
		{"compact with node names and numeric", []string{"--print-node-name", "--numeric", "--uuid", "o3"}, "" +
			"Nov 25 21:47:03.000 [node-b]: 10.0.0.1:40001 (ID:1001) <> 10.0.5.7:7000 (ID:1003) Policy denied DROPPED (TCP Flags: SYN)\n"},
		{"dict", []string{"-o", "dict", "--time-format", "RFC3339"}, "" +
			"  TIMESTAMP: 2026-11-25T21:47:02Z\n     SOURCE: shop/checkout-api-5c8:8080\nDESTINATION: shop/frontend-7d9f:40000\n       TYPE: from-endpoint\n    VERDICT: FORWARDED\n    SUMMARY: TCP Flags: SYN, ACK\n" +
			"------------\n" +
			"  TIMESTAMP: 2026-11-25T21:47:03Z\n     SOURCE: shop/frontend-7d9f:40001\nDESTINATION: chat/chat-relay-0:7000\n       TYPE: Policy denied\n    VERDICT: DROPPED\n    SUMMARY: TCP Flags: SYN\n" +
			"------------\n" +
			"  TIMESTAMP: 2026-11-25T21:47:05Z\n     SOURCE: shop/checkout-api-5c8:8080\nDESTINATION: shop/frontend-7d9f:40002\n       TYPE: http-response\n    VERDICT: FORWARDED\n    SUMMARY: HTTP/1.1 503 0ms (GET http://checkout/api/cart)\n"},
		{"table", []string{"-o", "table"}, "" +
			"TIMESTAMP             SOURCE                       DESTINATION                TYPE            VERDICT     SUMMARY\n" +
			"Nov 25 21:47:02.000   shop/checkout-api-5c8:8080   shop/frontend-7d9f:40000   from-endpoint   FORWARDED   TCP Flags: SYN, ACK\n" +
			"Nov 25 21:47:03.000   shop/frontend-7d9f:40001     chat/chat-relay-0:7000     Policy denied   DROPPED     TCP Flags: SYN\n" +
			"Nov 25 21:47:05.000   shop/checkout-api-5c8:8080   shop/frontend-7d9f:40002   http-response   FORWARDED   HTTP/1.1 503 0ms (GET http://checkout/api/cart)\n"},
	}
	for _, tc := range cases {
		t.Run("prints "+tc.name, func(t *testing.T) {
			a := args
			if strings.Contains(tc.name, "numeric") {
				a = nil
			}
			out, stderr, err := runObserveArgs(t, addr, append(a, tc.args...)...)
			if err != nil {
				t.Fatalf("%v (stderr %q)", err, stderr)
			}
			if out != tc.want {
				t.Errorf("got:\n%s\nwant:\n%s", out, tc.want)
			}
		})
	}
}

// TestObserveJSONIsHubbleJSON checks that each -o json line is the
// GetFlowsResponse in protojson with proto names, compacted, as hubble's
// printer writes it (encoding/json over the API's MarshalJSON).
func TestObserveJSONIsHubbleJSON(t *testing.T) {
	addr := startObserveServer(t)
	out, _, err := runObserveArgs(t, addr, "-o", "json", "--uuid", "o3")
	if err != nil {
		t.Fatal(err)
	}
	want := hubble.ToProto(&observeFixture()[2])
	//lint:ignore SA1019 the server fills hubble's summary
	want.Summary = "TCP Flags: SYN"
	var buf bytes.Buffer
	if err := json.NewEncoder(&buf).Encode(&observerpb.GetFlowsResponse{Time: want.GetTime(), NodeName: want.GetNodeName(), ResponseTypes: &observerpb.GetFlowsResponse_Flow{Flow: want}}); err != nil {
		t.Fatal(err)
	}
	if out != buf.String() {
		t.Errorf("got  %s\nwant %s", out, buf.String())
	}
	for _, key := range []string{`"flow":{`, `"node_name":"node-b"`, `"drop_reason_desc":"POLICY_DENIED"`, `"time":"2026-11-25T21:47:03Z"`} {
		if !strings.Contains(out, key) {
			t.Errorf("output lacks %s: %s", key, out)
		}
	}
}

func TestObservePrintsLostEvents(t *testing.T) {
	ring := observer.NewRing(64, func() time.Time { return obsBase.Add(10 * time.Second) })
	ring.Observe(observeFixture()[:1])
	ring.Lost(flowpb.LostEventSource_PERF_EVENT_RING_BUFFER, 7)
	addr := serveRing(t, ring)
	out, _, err := runObserveArgs(t, addr)
	if err != nil {
		t.Fatal(err)
	}
	want := "Nov 25 21:47:01.000: shop/frontend-7d9f:40000 (ID:1001) -> shop/checkout-api-5c8:8080 (ID:1002) to-endpoint FORWARDED (TCP Flags: SYN)\n" +
		"Nov 25 21:47:10.000 EVENTS LOST: PERF_EVENT_RING_BUFFER CPU(0) 7\n"
	if out != want {
		t.Errorf("got:\n%s\nwant:\n%s", out, want)
	}
}

func TestObserveFollowPrintsNewFlows(t *testing.T) {
	ring := observer.NewRing(64, nil)
	flows := observeFixture()
	ring.Observe(flows[:1])
	addr := serveRing(t, ring)
	var out syncbuf.Buffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- runObserve(ctx, []string{"--server", addr, "-f", "--last", "1", "--to-pod", "chat/", "--verdict", "DROPPED", "-o", "json"},
			cmdIO{Stdout: &out, Stderr: io.Discard, Log: slog.New(slog.DiscardHandler)})
	}()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(out.String(), `"uuid":"o3"`) && time.Now().Before(deadline) {
		ring.Observe(flows[1:4]) // o2..o4 again and again until the follower is in place; only o3 matches
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("observe -f: %v", err)
	}
	for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		if !strings.Contains(line, `"uuid":"o3"`) {
			t.Errorf("unexpected line %s", line)
		}
	}
	if !strings.Contains(out.String(), `"uuid":"o3"`) {
		t.Error("the followed flow never arrived")
	}
}
