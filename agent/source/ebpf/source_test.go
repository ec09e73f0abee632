//go:build linux

package ebpf

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	flowpb "github.com/cilium/cilium/api/v1/flow"
	"github.com/cilium/ebpf/rlimit"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/flowbus/flowbus/agent/cluster"
	"github.com/flowbus/flowbus/agent/identity"
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

// testSnapshot is a cluster of two pods: web-1 at a (behind interface vA,
// ifindex ifA) and api at b, backend of the service api-svc on 8080.
func testSnapshot(a, b netip.Addr, ifA uint32, nameB string, policies ...*networkingv1.NetworkPolicy) *cluster.Snapshot {
	return &cluster.Snapshot{
		Namespaces: []cluster.Namespace{{Name: "shop", Labels: map[string]string{"kubernetes.io/metadata.name": "shop"}}},
		Pods: []cluster.Pod{
			{Namespace: "shop", Name: "web-1", Workload: "web", WorkloadKind: "Deployment",
				Labels: map[string]string{"app": "web"}, IPs: []netip.Addr{a}, Interface: "vA", IfIndex: ifA},
			{Namespace: "shop", Name: nameB, Workload: "api", WorkloadKind: "Deployment",
				Labels: map[string]string{"app": "api"}, IPs: []netip.Addr{b}},
		},
		Services: []cluster.Service{{Namespace: "shop", Name: "api-svc",
			Backends: []cluster.Backend{{Namespace: "shop", Pod: nameB, IP: b, Port: 8080, Protocol: "TCP"}}}},
		NetworkPolicies: policies,
	}
}

func TestToFlow(t *testing.T) {
	a, b := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2")
	snap := testSnapshot(a, b, 7, "api-1")
	v := newView(snap, identity.Allocator{}.Allocate(snap, nil), map[uint32]string{7: "vA"})
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
		{"a kernel drop is Hubble's drop event with its mapped reason, received by the pod, counted nowhere again",
			bpf.Event{Kind: bpf.EventKernelDrop, IfIndex: 7, IfName: "vA", IPVersion: 4, Protocol: 17, Src: b, Dst: a, SrcPort: 40000, DstPort: 9,
				PacketsFwd: 1, BytesFwd: 142, Verdict: bpf.VerdictDropped, DropReason: bpf.HubbleDropReason("NO_SOCKET")},
			func(f *schemas.Flow) string {
				if f.Verdict != flowpb.Verdict_DROPPED || f.DropReason != flowpb.DropReason_SOCKET_LOOKUP_FAILED ||
					f.EventType != hubble.MsgTypeDrop || f.EventSubType != int32(flowpb.DropReason_SOCKET_LOOKUP_FAILED) ||
					f.Direction != flowpb.TrafficDirection_INGRESS || f.IsReply != schemas.False || f.CountAs != schemas.CountNone ||
					f.SrcIP != b || f.DstIP != a || f.SrcPort != 40000 || f.DstPort != 9 || f.L4Protocol != 17 || f.PacketsFwd != 1 {
					return "not a dropped, ingress, uncounted UDP record with SOCKET_LOOKUP_FAILED"
				}
				return ""
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var f schemas.Flow
			toFlow(&tc.ev, "n1", v, nil, &f)
			if msg := tc.check(&f); msg != "" {
				t.Errorf("%s: %+v", msg, f)
			}
		})
	}
}

// TestSourceInNetns runs the source on a real veth with a cluster view: an
// HTTP exchange between two namespaces becomes one flow with both pods,
// their identities, the service and the direction; after a new snapshot
// renames the server, the next flow uses it; a NetworkPolicy that leaves
// web-1 no egress to the server drops the next request in the program that
// observes it, and the flow says DROPPED, POLICY_DENIED and which policy;
// without the policy the request passes again.
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
	snapOf := func(nameB string, pols ...*networkingv1.NetworkPolicy) *cluster.Snapshot {
		s := testSnapshot(f.A, f.B, uint32(ifc.Index), nameB, pols...)
		s.Pods[0].Interface = f.HostA
		return s
	}
	store := cluster.NewStore()
	store.Publish(snapOf("api-1"))
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
		Cluster:       store,
		EnforcePolicy: true,
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
				if fl.L4Protocol == 6 && fl.CountAs != schemas.CountTraffic { // the test's connections, their first records
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
	revision := func() float64 { return testutil.ToFloat64(mustCollector(reg, "flowbus_policy_revision")) }
	// publish publishes a snapshot and waits until the kernel maps have it.
	publish := func(s *cluster.Snapshot) {
		t.Helper()
		before := revision()
		store.Publish(s)
		waitFor(t, func() bool { return revision() > before })
	}
	// The endpoint and its policy are written before the programs are
	// attached to its interface: once attached, they are there, no wait.
	waitFor(t, func() bool { c := src.coll.Load(); return c != nil && len(c.Attached()) == 1 })
	if got := testutil.ToFloat64(mustCollector(reg, "flowbus_policy_endpoints")); got != 1 {
		t.Fatalf("interface attached with %v endpoints in the policy maps; want 1", got)
	}
	waitFor(t, func() bool { _, ok := src.Counters(); return ok && src.Stats().Sweeps > 0 })

	get := func() error {
		t.Helper()
		tr := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (c net.Conn, err error) {
			err = nettest.In(f.NSA, func() error { c, err = (&net.Dialer{Timeout: time.Second}).Dial(network, addr); return err })
			return c, err
		}}
		defer tr.CloseIdleConnections()
		resp, err := (&http.Client{Transport: tr, Timeout: 2 * time.Second}).Get("http://" + netip.AddrPortFrom(f.B, 8080).String())
		if err != nil {
			return err
		}
		io.ReadAll(resp.Body)
		return resp.Body.Close()
	}
	// count is the flow records so far, not the policy verdict events
	// beside them.
	count := func() int {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, fl := range flows {
			if fl.EventType != hubble.MsgTypePolicyVerdict {
				n++
			}
		}
		return n
	}

	if err := get(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return count() >= 1 })
	publish(snapOf("api-renamed-2"))
	if err := get(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return count() >= 2 })

	// web-1 may only talk to port 9999: its request to 8080 is dropped.
	tcp := corev1.ProtocolTCP
	only := intstr.FromInt32(9999)
	deny := &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web-egress"},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Egress:      []networkingv1.NetworkPolicyEgressRule{{Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: &only}}}},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeEgress},
		},
	}
	publish(snapOf("api-renamed-2", deny))
	if err := get(); err == nil {
		t.Fatal("a request the policy denies got an answer")
	}
	waitFor(t, func() bool { return count() >= 3 })
	publish(snapOf("api-renamed-2"))
	if err := get(); err != nil {
		t.Fatalf("the policy is gone but the request failed: %v", err)
	}
	waitFor(t, func() bool { return count() >= 4 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	close(out)
	<-collected

	// The denied request's drop record has its policy verdict event
	// beside it: the default deny of web-egress (match none), counting
	// nothing. The allowed requests had no policy (before and after).
	var verdicts []schemas.Flow
	flows = slices.DeleteFunc(flows, func(fl schemas.Flow) bool {
		if fl.EventType == hubble.MsgTypePolicyVerdict {
			verdicts = append(verdicts, fl)
			return true
		}
		return false
	})
	if len(flows) != 4 {
		t.Fatalf("%d flows, want 4: %+v", len(flows), flows)
	}
	if len(verdicts) != 1 {
		t.Fatalf("%d policy verdict events, want 1: %+v", len(verdicts), verdicts)
	}
	if pv, drop := verdicts[0], flows[2]; pv.Verdict != flowpb.Verdict_DROPPED || pv.DropReason != flowpb.DropReason_POLICY_DENIED ||
		pv.Direction != flowpb.TrafficDirection_EGRESS || pv.PolicyMatchType != 0 || pv.CountAs != schemas.CountNone ||
		!slices.Equal(pv.EgressDeniedBy, []string{"NetworkPolicy:shop/web-egress"}) || pv.SrcPort != drop.SrcPort ||
		pv.TimeNs != drop.FirstSeenNs || pv.PacketsFwd != 0 || pv.TCPFlags != schemas.FlagSYN || pv.Dst.PodName != "api-renamed-2" {
		t.Errorf("policy verdict %+v\nbeside the drop %+v", pv, drop)
	}
	ids := identity.Allocator{Node: "lab-node"}.Allocate(snapOf("api-1"), nil)
	web, _ := ids.Pod("shop", "web-1")
	for i, want := range []string{"api-1", "api-renamed-2", "api-renamed-2", "api-renamed-2"} {
		fl := flows[i]
		if fl.Src.PodName != "web-1" || fl.Src.Identity != uint32(web) || fl.Dst.PodName != want || fl.Dst.Identity == 0 ||
			fl.DstService.Name != "api-svc" || fl.NodeName != "lab-node" ||
			fl.Direction != flowpb.TrafficDirection_EGRESS || fl.ObservationPoint != flowpb.TraceObservationPoint_FROM_ENDPOINT ||
			fl.SrcIP != f.A || fl.DstIP != f.B || fl.DstPort != 8080 || fl.IfIndex != uint32(ifc.Index) || fl.PacketsFwd == 0 {
			t.Errorf("flow %d: %+v", i, fl)
		}
		denied := i == 2
		if got := fl.Verdict == flowpb.Verdict_DROPPED; got != denied {
			t.Errorf("flow %d: verdict %v, want dropped %v", i, fl.Verdict, denied)
		}
		if denied && (fl.DropReason != flowpb.DropReason_POLICY_DENIED || fl.EventType != hubble.MsgTypeDrop ||
			len(fl.EgressDeniedBy) != 1 || fl.EgressDeniedBy[0] != "NetworkPolicy:shop/web-egress" || fl.PacketsRev != 0) {
			t.Errorf("denied flow: reason %v, event type %d, denied by %v, %d packets back; want POLICY_DENIED, drop, the policy, none",
				fl.DropReason, fl.EventType, fl.EgressDeniedBy, fl.PacketsRev)
		}
		if !denied && (fl.TCPFlags&schemas.FlagFIN == 0 || fl.LatencyNs == 0 || fl.PacketsRev == 0) {
			t.Errorf("flow %d: flags %v, latency %d, %d packets back", i, fl.TCPFlags, fl.LatencyNs, fl.PacketsRev)
		}
	}
	if lost != 0 {
		t.Errorf("lost %d", lost)
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

// TestRecycleReusesBatches: a batch the agent hands back is the next one
// filled, emptied; a batch too small for BatchSize is not kept, and more
// than the source keeps are dropped without blocking.
func TestRecycleReusesBatches(t *testing.T) {
	s, err := New(Config{Kernel: bpf.Config{Interfaces: []string{"veth*"}}, BatchSize: 4}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	b := s.newBatch()
	if len(b) != 0 || cap(b) != 4 {
		t.Fatalf("new batch: len %d cap %d, want 0 and 4", len(b), cap(b))
	}
	b = append(b, schemas.Flow{SrcPort: 1}, schemas.Flow{SrcPort: 2})
	s.Recycle(b)
	got := s.newBatch()
	if len(got) != 0 || cap(got) != 4 || &got[:1][0] != &b[0] {
		t.Fatalf("after Recycle: len %d cap %d, same array %v; want the handed-back batch, emptied",
			len(got), cap(got), &got[:1][0] == &b[0])
	}
	s.Recycle(make([]schemas.Flow, 3))
	if got := s.newBatch(); cap(got) != 4 {
		t.Fatalf("a batch below BatchSize was kept: cap %d", cap(got))
	}
	for range freeBatches + 5 {
		s.Recycle(make([]schemas.Flow, 0, 4))
	}
	if n := len(s.free); n != freeBatches {
		t.Fatalf("kept %d batches, want %d", n, freeBatches)
	}
}
