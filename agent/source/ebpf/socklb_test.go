//go:build linux

package ebpf

import (
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	flowpb "github.com/cilium/cilium/api/v1/flow"

	"github.com/flowbus/flowbus/agent/cluster"
	"github.com/flowbus/flowbus/agent/identity"
	"github.com/flowbus/flowbus/bpf/socklb"
	"github.com/flowbus/flowbus/schemas"
	"github.com/flowbus/flowbus/schemas/hubble"
)

func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

func TestSockServices(t *testing.T) {
	a4, b4, a6 := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2"), netip.MustParseAddr("fd00::1")
	snap := &cluster.Snapshot{Services: []cluster.Service{
		{Namespace: "shop", Name: "web", ClusterIPs: []netip.Addr{netip.MustParseAddr("10.96.0.1"), netip.MustParseAddr("fd00:96::1")},
			Ports: []cluster.ServicePort{{Name: "http", Port: 80, TargetPort: 8080, Protocol: "TCP"}, {Name: "dns", Port: 53, TargetPort: 5353, Protocol: "UDP"},
				{Name: "sctp", Port: 9, TargetPort: 9, Protocol: "SCTP"}},
			Backends: []cluster.Backend{{IP: a4, Port: 8080, Protocol: "TCP"}, {IP: b4, Port: 8080, Protocol: "TCP"}, {IP: a6, Port: 8080, Protocol: "TCP"},
				{IP: a4, Port: 5353, Protocol: "UDP"}, {IP: a4, Port: 9, Protocol: "SCTP"}, {IP: b4, Port: 8080, Protocol: "TCP"}}},
		// A named target port, the only TCP one: every TCP backend.
		{Namespace: "shop", Name: "named", ClusterIPs: []netip.Addr{netip.MustParseAddr("10.96.0.2")},
			Ports:    []cluster.ServicePort{{Port: 80, Protocol: "TCP"}},
			Backends: []cluster.Backend{{IP: a4, Port: 8081, Protocol: "TCP"}}},
		// Two named TCP ports: the backends cannot be told apart.
		{Namespace: "shop", Name: "ambiguous", ClusterIPs: []netip.Addr{netip.MustParseAddr("10.96.0.3")},
			Ports:    []cluster.ServicePort{{Port: 80, Protocol: "TCP"}, {Port: 81, Protocol: "TCP"}},
			Backends: []cluster.Backend{{IP: a4, Port: 8081, Protocol: "TCP"}}},
		{Namespace: "shop", Name: "headless", Ports: []cluster.ServicePort{{Port: 80}}, Backends: []cluster.Backend{{IP: a4, Port: 80}}},
		{Namespace: "shop", Name: "empty", ClusterIPs: []netip.Addr{netip.MustParseAddr("10.96.0.4")}, Ports: []cluster.ServicePort{{Port: 80, TargetPort: 80}}},
	}}
	fe := func(ns, name, addr string, port uint16, proto uint8) frontendKey {
		return frontendKey{ns: ns, name: name, Frontend: socklb.Frontend{Addr: netip.MustParseAddr(addr), Port: port, Proto: proto}}
	}
	want := []wantService{
		{fe("shop", "web", "10.96.0.1", 80, 6), []netip.AddrPort{ap("10.0.0.1:8080"), ap("10.0.0.2:8080")}},
		{fe("shop", "web", "10.96.0.1", 53, 17), []netip.AddrPort{ap("10.0.0.1:5353")}},
		{fe("shop", "web", "fd00:96::1", 80, 6), []netip.AddrPort{ap("[fd00::1]:8080")}},
		{fe("shop", "web", "fd00:96::1", 53, 17), nil},
		{fe("shop", "named", "10.96.0.2", 80, 6), []netip.AddrPort{ap("10.0.0.1:8081")}},
		{fe("shop", "ambiguous", "10.96.0.3", 80, 6), nil},
		{fe("shop", "ambiguous", "10.96.0.3", 81, 6), nil},
		{fe("shop", "empty", "10.96.0.4", 80, 6), nil},
	}
	if got := sockServices(snap); !reflect.DeepEqual(got, want) {
		t.Errorf("sockServices:\n got %+v\nwant %+v", got, want)
	}
}

func TestSockLBAllocID(t *testing.T) {
	l := &sockLB{ids: map[frontendKey]uint32{}}
	k := func(port uint16) frontendKey { return frontendKey{Frontend: socklb.Frontend{Port: port}} }
	for i := range uint16(3) {
		l.ids[k(i)] = l.allocID()
	}
	if l.ids[k(0)] != 1 || l.ids[k(1)] != 2 || l.ids[k(2)] != 3 {
		t.Fatalf("first ids %v, want 1, 2, 3", l.ids)
	}
	delete(l.ids, k(1))
	if id := l.allocID(); id != 4 {
		t.Errorf("after freeing 2: id %d, want 4 (no reuse before the ids wrap)", id)
	}
	l.nextID = socklb.DefaultMaxServices - 1
	if id := l.allocID(); id != 2 {
		t.Errorf("wrapped: id %d, want 2 (1 and 3 are held)", id)
	}
}

// TestSockLBRecord checks the records of a translation and a refusal: the
// source pod from the cgroup the decision was made in.
func TestSockLBRecord(t *testing.T) {
	root := t.TempDir()
	podDir := filepath.Join(root, "shop_web-1")
	other := filepath.Join(root, "system")
	for _, d := range []string{filepath.Join(podDir, "c1"), other} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	ino := func(p string) uint64 {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		return fi.Sys().(*syscall.Stat_t).Ino
	}
	a, b := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2")
	snap := testSnapshot(a, b, 7, "api-1")
	snap.Pods[0].IPs = append(snap.Pods[0].IPs, netip.MustParseAddr("fd00::1"))
	s := &Source{cfg: Config{Node: "n1"}}
	s.view.Store(newView(snap, identity.Allocator{}.Allocate(snap, nil), nil))
	l := &sockLB{src: s, names: map[uint32]schemas.Service{5: {Namespace: "shop", Name: "api-svc"}}, pods: newCgroupPods(root)}
	at := time.Unix(100, 42)
	ev := socklb.Event{Time: at, CgroupID: ino(filepath.Join(podDir, "c1")), ServiceID: 5, Proto: 6,
		Frontend: ap("10.96.0.5:80"), Backend: netip.AddrPortFrom(b, 8080), Verdict: socklb.Translated}
	f := l.record(&ev)
	if f.Verdict != flowpb.Verdict_TRANSLATED || f.EventType != hubble.MsgTypeTraceSock || f.EventSubType != 2 ||
		f.DropReason != 0 || f.IsReply != schemas.False || f.Direction != flowpb.TrafficDirection_EGRESS ||
		f.SrcIP != a || f.Src.PodName != "web-1" || f.Src.Identity == 0 || f.DstIP != b || f.DstPort != 8080 || f.Dst.PodName != "api-1" ||
		f.DstService != (schemas.Service{Namespace: "shop", Name: "api-svc"}) || f.L4Protocol != 6 || f.NodeName != "n1" ||
		f.TimeNs != at.UnixNano() || f.FirstSeenNs != f.TimeNs || f.CountAs != schemas.CountNone || f.Count != 1 ||
		f.IPVersion != flowpb.IPVersion_IPv4 {
		t.Errorf("translated: %+v", f)
	}
	ev = socklb.Event{Time: at, CgroupID: ino(podDir), ServiceID: 5, Proto: 17, Frontend: ap("10.96.0.5:53"), Verdict: socklb.NoBackend}
	f = l.record(&ev)
	if f.Verdict != flowpb.Verdict_DROPPED || f.DropReason != flowpb.DropReason_SERVICE_BACKEND_NOT_FOUND ||
		f.EventType != hubble.MsgTypeDrop || f.EventSubType != 158 || f.DstIP != netip.MustParseAddr("10.96.0.5") || f.DstPort != 53 ||
		f.Src.PodName != "web-1" || f.Dst.PodName != "" || f.DstService.Name != "api-svc" || f.L4Protocol != 17 {
		t.Errorf("refused: %+v", f)
	}
	// A cgroup of no pod's, and one made after the last scan.
	ev.CgroupID = ino(other)
	if f = l.record(&ev); f.Src.PodName != "" || f.SrcIP.IsValid() {
		t.Errorf("no pod's cgroup: source %+v %v", f.Src, f.SrcIP)
	}
	late := filepath.Join(root, "shop_api-1")
	if err := os.Mkdir(late, 0o755); err != nil {
		t.Fatal(err)
	}
	time.Sleep(rescanEvery)
	ev.CgroupID = ino(late)
	if f = l.record(&ev); f.Src.PodName != "api-1" || f.SrcIP != b {
		t.Errorf("new cgroup: source %+v %v", f.Src, f.SrcIP)
	}
}

// A decision's cgroup names its pod on a Kubernetes node (by the pod's UID
// in the slice or directory name, either cgroup driver, from any cgroup
// below the pod's) and in the lab ("<namespace>_<name>"); other cgroups,
// UIDs the view does not hold and names that only look alike name none.
func TestCgroupPodsNamesThePodOfACgroup(t *testing.T) {
	uidA, uidB := "3f1c2a9e-7b4d-4e21-9a0b-5c6d7e8f9a01", "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
	snap := &cluster.Snapshot{Pods: []cluster.Pod{
		{Namespace: "shop", Name: "checkout-1", UID: uidA, IPs: []netip.Addr{netip.MustParseAddr("10.1.0.5")}},
		{Namespace: "shop", Name: "ledger-0", UID: uidB, IPs: []netip.Addr{netip.MustParseAddr("10.1.0.6"), netip.MustParseAddr("fd00::6")}},
		{Namespace: "chat", Name: "chat-client", IPs: []netip.Addr{netip.MustParseAddr("10.1.0.7")}},
	}}
	v := newView(snap, identity.Allocator{}.Allocate(snap, nil), nil)
	under := func(uid string) string { return strings.ReplaceAll(uid, "-", "_") }
	cases := []struct{ dir, pod string }{
		{"kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + under(uidA) + ".slice/cri-containerd-0123abcd.scope", "shop/checkout-1"},
		{"kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + under(uidA) + ".slice", "shop/checkout-1"},
		{"kubepods.slice/kubepods-pod" + under(uidB) + ".slice/cri-containerd-4567.scope", "shop/ledger-0"},
		{"kubepods/besteffort/pod" + uidB + "/4f5e6d7c", "shop/ledger-0"},
		{"chat_chat-client/ctr", "chat/chat-client"},
		{"kubepods.slice/kubepods-besteffort.slice", ""},
		{"system.slice/containerd.service", ""},
		{"kubepods/pod" + "ffffffff-ffff-4fff-bfff-ffffffffffff", ""},
		{"kubepods/podcast", ""},
		{"kubepods/xpod" + uidB, ""},
	}
	root := t.TempDir()
	for _, c := range cases {
		if err := os.MkdirAll(filepath.Join(root, c.dir), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	pods := newCgroupPods(root)
	for _, c := range cases {
		fi, err := os.Stat(filepath.Join(root, c.dir))
		if err != nil {
			t.Fatal(err)
		}
		got := ""
		if p, ok := pods.pod(fi.Sys().(*syscall.Stat_t).Ino, v); ok {
			got = p.Namespace + "/" + p.PodName
			if c.pod == "shop/ledger-0" && len(p.addrs) != 2 {
				t.Errorf("%s: addresses %v, want both of ledger-0's", c.dir, p.addrs)
			}
		}
		if got != c.pod {
			t.Errorf("cgroup %s: pod %q, want %q", c.dir, got, c.pod)
		}
	}
}
