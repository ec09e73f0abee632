//go:build linux

package ebpf

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	flowpb "github.com/cilium/cilium/api/v1/flow"
	"github.com/cilium/ebpf/rlimit"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/flowbus/flowbus/agent/endpoints"
	"github.com/flowbus/flowbus/bpf"
	"github.com/flowbus/flowbus/bpf/nettest"
	"github.com/flowbus/flowbus/schemas"
	"github.com/flowbus/flowbus/schemas/hubble"
)

func TestConfigValidate(t *testing.T) {
	cases := []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{"a config without interfaces is refused", Config{}, "no interfaces"},
		{"a ring buffer size that is not a power of two is refused",
			Config{Kernel: bpf.Config{Interfaces: []string{"eth0"}, RingBufSize: 3 << 12}}, "power of two"},
		{"a malformed glob is refused", Config{Kernel: bpf.Config{Interfaces: []string{"veth["}}}, "syntax error"},
		{"a negative batch size is refused", Config{Kernel: bpf.Config{Interfaces: []string{"lxc*"}}, BatchSize: -1}, "batch size"},
		{"globs and names with defaults are accepted", Config{Kernel: bpf.Config{Interfaces: []string{"lxc*", "eth0"}}}, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("unexpected error %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

func testEndpoints(a, b netip.Addr, ifA uint32, nameB string) *endpoints.File {
	return &endpoints.File{
		Node: "n1",
		Pods: []endpoints.Pod{
			{Namespace: "shop", Name: "web-1", Workload: "web", WorkloadKind: "Deployment",
				Labels: []string{"k8s:app=web"}, IPs: []netip.Addr{a}, Interface: "vA", IfIndex: ifA, Identity: 1001},
			{Namespace: "shop", Name: nameB, Workload: "api", WorkloadKind: "Deployment",
				Labels: []string{"k8s:app=api"}, IPs: []netip.Addr{b}, Identity: 1002},
		},
		Services: []endpoints.Service{{Namespace: "shop", Name: "api-svc",
			Backends: []endpoints.Backend{{Namespace: "shop", Pod: nameB, IP: b, Port: 8080, Protocol: "TCP"}}}},
	}
}

func TestToFlow(t *testing.T) {
	a, b := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2")
	eps := testEndpoints(a, b, 7, "api-1")
	if err := eps.Validate(); err != nil {
		t.Fatal(err)
	}
	eps, _ = endpoints.Parse(mustMarshal(t, eps))
	cases := []struct {
		name  string
		ev    bpf.Event
		check func(*schemas.Flow) string
	}{
		{"a flow opened by the pod behind the interface leaves the endpoint with both pods and the service resolved",
			bpf.Event{Kind: bpf.EventFlowEnd, IfIndex: 7, IfName: "vA", IPVersion: 4, Protocol: 6, Src: a, Dst: b, SrcPort: 40000, DstPort: 8080,
				Ingress: true, TCPFlags: bpf.TCPFlagSYN | bpf.TCPFlagFIN | bpf.TCPFlagACK, FirstSeenNs: 100, LastSeenNs: 200,
				BytesFwd: 10, BytesRev: 20, PacketsFwd: 1, PacketsRev: 2, HandshakeNs: 5000},
			func(f *schemas.Flow) string {
				if f.Direction != flowpb.TrafficDirection_EGRESS || f.ObservationPoint != flowpb.TraceObservationPoint_FROM_ENDPOINT ||
					f.EventType != hubble.MsgTypeTrace || f.EventSubType != hubble.TraceFromLxc ||
					f.Verdict != flowpb.Verdict_FORWARDED || f.IsReply != schemas.False || f.IPVersion != flowpb.IPVersion_IPv4 ||
					f.Src.PodName != "web-1" || f.Src.Workload != "web" || f.Dst.PodName != "api-1" || f.DstService.Name != "api-svc" ||
					f.TCPFlags != schemas.FlagSYN|schemas.FlagFIN|schemas.FlagACK || f.TimeNs != 200 || f.FirstSeenNs != 100 ||
					f.LatencyNs != 5000 || f.BytesRev != 20 || f.PacketsRev != 2 || f.Count != 1 || f.IfName != "vA" || f.NodeName != "n1" ||
					f.SrcPort != 40000 || f.DstPort != 8080 || f.L4Protocol != 6 {
					return "wrong fields"
				}
				if f.CountAs != schemas.CountNone {
					return "the sender's record counts although the receiver is an endpoint (its record carries the connection)"
				}
				return ""
			}},
		{"the receiver's record of the same connection counts it, as to-endpoint, and is not a reply even if a reply ended it",
			bpf.Event{Kind: bpf.EventFlowEnd, IfIndex: 9, IPVersion: 4, Protocol: 6, Src: a, Dst: b, SrcPort: 40000, DstPort: 8080,
				IsReply: true, TCPFlags: bpf.TCPFlagSYN | bpf.TCPFlagFIN | bpf.TCPFlagACK, BytesFwd: 10, BytesRev: 20, PacketsFwd: 1, PacketsRev: 2},
			func(f *schemas.Flow) string {
				if f.ObservationPoint != flowpb.TraceObservationPoint_TO_ENDPOINT || f.EventSubType != 0 ||
					f.Direction != flowpb.TrafficDirection_INGRESS || f.IsReply != schemas.False || f.CountAs != schemas.CountFlow ||
					f.Src.PodName != "web-1" || f.Dst.PodName != "api-1" {
					return "want to-endpoint, INGRESS, not a reply, counted as a flow"
				}
				return ""
			}},
		{"the sender's record counts when the receiver is not an endpoint (the world)",
			bpf.Event{Kind: bpf.EventFlowEnd, IfIndex: 7, IPVersion: 4, Protocol: 6, Src: a, Dst: netip.MustParseAddr("198.51.100.7"),
				SrcPort: 40000, DstPort: 443, Ingress: true, TCPFlags: bpf.TCPFlagSYN},
			func(f *schemas.Flow) string {
				if f.CountAs != schemas.CountFlow || f.ObservationPoint != flowpb.TraceObservationPoint_FROM_ENDPOINT {
					return "want a counted from-endpoint record"
				}
				return ""
			}},
		{"a later record of a counted connection counts its traffic only",
			bpf.Event{Kind: bpf.EventActiveTimeout, IfIndex: 9, IPVersion: 4, Protocol: 6, Src: a, Dst: b, SrcPort: 40000, DstPort: 8080,
				Continued: true, TCPFlags: bpf.TCPFlagACK, BytesFwd: 10},
			func(f *schemas.Flow) string {
				if f.CountAs != schemas.CountTraffic || f.IsReply != schemas.False {
					return "want count_as traffic"
				}
				return ""
			}},
		{"a mid-stream flow whose first packet came from a service backend is turned around to start at the client",
			bpf.Event{Kind: bpf.EventIdleTimeout, IfIndex: 9, IPVersion: 4, Protocol: 6, Src: b, Dst: a, SrcPort: 8080, DstPort: 40000,
				Midstream: true, Ingress: true, TCPFlags: bpf.TCPFlagACK, BytesFwd: 300, BytesRev: 40, PacketsFwd: 3, PacketsRev: 1},
			func(f *schemas.Flow) string {
				if f.SrcIP != a || f.DstIP != b || f.SrcPort != 40000 || f.DstPort != 8080 || f.BytesFwd != 40 || f.BytesRev != 300 ||
					f.PacketsFwd != 1 || f.PacketsRev != 3 || f.ObservationPoint != flowpb.TraceObservationPoint_TO_ENDPOINT ||
					f.IsReply != schemas.False || f.CountAs != schemas.CountTraffic || f.DstService.Name != "api-svc" {
					return "want the client→api-svc orientation, to-endpoint, known (not a reply), traffic only"
				}
				return ""
			}},
		{"a mid-stream flow between unknown ports is oriented by the ephemeral range and says its initiator is unknown",
			bpf.Event{Kind: bpf.EventIdleTimeout, IfIndex: 9, IPVersion: 4, Protocol: 6, Src: netip.MustParseAddr("192.0.2.1"), Dst: a,
				SrcPort: 5432, DstPort: 51000, Midstream: true, Ingress: false, BytesFwd: 100, PacketsFwd: 1},
			func(f *schemas.Flow) string {
				if f.SrcPort != 51000 || f.DstPort != 5432 || f.BytesRev != 100 || f.IsReply != schemas.Unknown ||
					f.ObservationPoint != flowpb.TraceObservationPoint_FROM_ENDPOINT || f.CountAs != schemas.CountTraffic {
					return "want 51000→5432, is_reply unknown, traffic only"
				}
				return ""
			}},
		{"a flow into the pod enters the endpoint; an unknown source stays empty",
			bpf.Event{Kind: bpf.EventIdleTimeout, IfIndex: 7, IPVersion: 4, Protocol: 17, Src: netip.MustParseAddr("192.0.2.9"), Dst: netip.MustParseAddr("10.9.9.9"), SrcPort: 53, DstPort: 999},
			func(f *schemas.Flow) string {
				if f.Direction != flowpb.TrafficDirection_INGRESS || f.ObservationPoint != flowpb.TraceObservationPoint_TO_ENDPOINT ||
					f.EventType != hubble.MsgTypeTrace || f.EventSubType != hubble.TraceToLxc ||
					f.Src.PodName != "" || f.Dst.PodName != "web-1" {
					return "wrong direction or endpoints (the interface's pod is the destination)"
				}
				return ""
			}},
		{"ICMP carries type and code, not the echo identifier as ports",
			bpf.Event{Kind: bpf.EventFlush, IPVersion: 6, Protocol: 58, Src: netip.MustParseAddr("fd00::1"), Dst: netip.MustParseAddr("fd00::2"), SrcPort: 77, DstPort: 77, ICMPType: 128},
			func(f *schemas.Flow) string {
				if f.SrcPort != 0 || f.DstPort != 0 || f.ICMPType != 128 || f.IPVersion != flowpb.IPVersion_IPv6 {
					return "wrong ICMP fields"
				}
				return ""
			}},
		{"a single-packet event keeps the packet's reply flag",
			bpf.Event{Kind: bpf.EventInsertFailed, IPVersion: 4, Protocol: 6, Src: a, Dst: b, IsReply: true, PacketsRev: 1},
			func(f *schemas.Flow) string {
				if f.IsReply != schemas.True || f.CountAs != schemas.CountTraffic {
					return "IsReply not true, or a lone packet counted as a flow"
				}
				return ""
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var f schemas.Flow
			toFlow(&tc.ev, "n1", eps, &f)
			if msg := tc.check(&f); msg != "" {
				t.Errorf("%s: %+v", msg, f)
			}
		})
	}
}

func mustMarshal(t *testing.T, f *endpoints.File) []byte {
	t.Helper()
	b, err := f.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestNewRefusesABadEndpointsFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "eps.yaml")
	os.WriteFile(path, []byte("version: 1\npods:\n  - namespace: a\n    name: b\n    ips: [not-an-ip]\n"), 0o644)
	_, err := New(Config{Kernel: bpf.Config{Interfaces: []string{"eth0"}}, EndpointsFile: path}, nil, nil)
	if err == nil || !strings.Contains(err.Error(), "not-an-ip") {
		t.Fatalf("error %v, want one naming the bad address", err)
	}
}

// TestSourceInNetns runs the source on a real veth: an HTTP exchange
// between two namespaces becomes one flow with both pods, the service and
// the direction filled in; after the endpoints file changes (and after a
// bad version of it, which is ignored and counted), the next flow uses it.
func TestSourceInNetns(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to load BPF programs and create namespaces")
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		t.Skipf("cannot lift memlock limit for BPF: %v", err)
	}
	f := nettest.New(t, false)
	ifc, err := net.InterfaceByName(f.HostA)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "endpoints.yaml")
	if err := endpoints.Write(path, testEndpoints(f.A, f.B, uint32(ifc.Index), "api-1")); err != nil {
		t.Fatal(err)
	}
	var ln net.Listener
	if err := nettest.In(f.NSB, func() (err error) { ln, err = net.Listen("tcp", netip.AddrPortFrom(f.B, 8080).String()); return }); err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })}
	go srv.Serve(ln)
	defer srv.Close()

	reg := prometheus.NewRegistry()
	src, err := New(Config{
		Kernel:        bpf.Config{Interfaces: []string{f.HostA}, SweepInterval: 100 * time.Millisecond, EndLinger: 200 * time.Millisecond},
		Node:          "lab-node",
		EndpointsFile: path,
		ReloadEvery:   10 * time.Millisecond,
	}, nil, reg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	out := make(chan []schemas.Flow, 16)
	var mu sync.Mutex
	var flows []schemas.Flow
	collected := make(chan struct{})
	go func() {
		defer close(collected)
		for b := range out {
			mu.Lock()
			for _, fl := range b {
				if fl.L4Protocol == 6 { // the test's traffic
					flows = append(flows, fl)
				}
			}
			mu.Unlock()
		}
	}()
	done := make(chan error, 1)
	var lost uint64
	go func() {
		done <- src.Run(ctx, out, func(s flowpb.LostEventSource, n uint64) { lost += n })
	}()
	var runErr error
	var stopOnce sync.Once
	stop := func() error {
		stopOnce.Do(func() { cancel(); runErr = <-done })
		return runErr
	}
	defer stop()
	waitFor(t, func() bool { _, ok := src.Counters(); return ok && src.Stats().Sweeps > 0 })

	get := func() {
		t.Helper()
		tr := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (c net.Conn, err error) {
			err = nettest.In(f.NSA, func() error { c, err = net.Dial(network, addr); return err })
			return c, err
		}}
		resp, err := (&http.Client{Transport: tr}).Get("http://" + netip.AddrPortFrom(f.B, 8080).String())
		if err != nil {
			t.Fatal(err)
		}
		io.ReadAll(resp.Body)
		resp.Body.Close()
		tr.CloseIdleConnections()
	}
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(flows) }

	get()
	waitFor(t, func() bool { return count() >= 1 })
	os.WriteFile(path, []byte("version: 1\npods: [{namespace: x}]\n"), 0o644) // bad: no name
	waitFor(t, func() bool {
		return testutil.ToFloat64(mustCollector(reg, "flowbus_bpf_endpoints_reload_errors_total")) >= 1
	})
	if err := endpoints.Write(path, testEndpoints(f.A, f.B, uint32(ifc.Index), "api-renamed-2")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	get()
	waitFor(t, func() bool { return count() >= 2 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	close(out)
	<-collected

	if len(flows) != 2 {
		t.Fatalf("%d flows, want 2: %+v", len(flows), flows)
	}
	for i, want := range []string{"api-1", "api-renamed-2"} {
		fl := flows[i]
		if fl.Src.PodName != "web-1" || fl.Dst.PodName != want || fl.DstService.Name != "api-svc" || fl.NodeName != "lab-node" ||
			fl.Direction != flowpb.TrafficDirection_EGRESS || fl.ObservationPoint != flowpb.TraceObservationPoint_FROM_ENDPOINT ||
			fl.SrcIP != f.A || fl.DstIP != f.B || fl.DstPort != 8080 || fl.TCPFlags&schemas.FlagFIN == 0 || fl.LatencyNs == 0 ||
			fl.IfIndex != uint32(ifc.Index) || fl.PacketsFwd == 0 || fl.PacketsRev == 0 {
			t.Errorf("flow %d: %+v", i, fl)
		}
	}
	if lost != 0 {
		t.Errorf("lost %d", lost)
	}
	if got := testutil.ToFloat64(mustCollector(reg, "flowbus_bpf_flows_total")); got != 2 {
		t.Errorf("flowbus_bpf_flows_total %v, want 2", got)
	}
}

// mustCollector returns a collector of the registry's metric name.
func mustCollector(reg *prometheus.Registry, name string) prometheus.Collector {
	return collectorFunc(func(ch chan<- prometheus.Metric) {
		mfs, _ := reg.Gather()
		for _, mf := range mfs {
			if mf.GetName() == name && len(mf.GetMetric()) > 0 {
				m := mf.GetMetric()[0]
				v := m.GetCounter().GetValue() + m.GetGauge().GetValue()
				ch <- prometheus.MustNewConstMetric(prometheus.NewDesc(name, "", nil, nil), prometheus.UntypedValue, v)
			}
		}
	})
}

type collectorFunc func(chan<- prometheus.Metric)

func (f collectorFunc) Describe(chan<- *prometheus.Desc)    {}
func (f collectorFunc) Collect(ch chan<- prometheus.Metric) { f(ch) }

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
