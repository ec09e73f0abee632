//go:build linux

package bpf

import (
	"net/netip"
	"testing"
)

// TestFlowsAreKeptPerFamily checks that the kernel puts an IPv4 flow in
// flows4 and an IPv6 flow in flows6, that the Go side reads both back as
// the flow keys of the kernel's events (IPv4-mapped for IPv4), and that
// the key conversion round-trips.
func TestFlowsAreKeptPerFamily(t *testing.T) {
	objs := loadTest(t, loadOptions{ringBufSize: 1 << 16, maxFlows: 64, emitStartEvents: true})
	run(t, objs.FlowIngress, ipv4("192.0.2.10", "198.51.100.7", tcp(40000, 80, syn, 0)))
	run(t, objs.FlowIngress, ipv6("2001:db8::1", "2001:db8::2", tcp(40001, 443, syn, 0)))

	n4, n6 := 0, 0
	if err := scan(objs.Flows4, false, func(*bpfFlowKey4, *bpfFlowStats) { n4++ }); err != nil {
		t.Fatal(err)
	}
	if err := scan(objs.Flows6, false, func(*bpfFlowKey, *bpfFlowStats) { n6++ }); err != nil {
		t.Fatal(err)
	}
	if n4 != 1 || n6 != 1 {
		t.Fatalf("flows4 holds %d flows, flows6 %d; want 1 and 1", n4, n6)
	}

	flows := flowsIn(t, objs)
	evs := drain(t, objs)
	if len(evs) != 2 {
		t.Fatalf("%d start events, want 2", len(evs))
	}
	for _, ev := range evs {
		var found bool
		for k, st := range flows {
			var got Event
			got.fill(ev.Kind, &k, &st, 0)
			if got.Src == ev.Src && got.Dst == ev.Dst && got.SrcPort == ev.SrcPort && got.DstPort == ev.DstPort &&
				got.Protocol == ev.Protocol && got.IPVersion == ev.IPVersion && got.IfIndex == ev.IfIndex {
				found = true
			}
		}
		if !found {
			t.Errorf("event %v:%d -> %v:%d has no flow of the same key in the maps: %v", ev.Src, ev.SrcPort, ev.Dst, ev.DstPort, flows)
		}
	}
	want := map[netip.Addr]uint8{netip.MustParseAddr("192.0.2.10"): 4, netip.MustParseAddr("2001:db8::1"): 6}
	for _, ev := range evs {
		if v, ok := want[ev.Src]; !ok || v != ev.IPVersion {
			t.Errorf("event from %v version %d, want one of %v", ev.Src, ev.IPVersion, want)
		}
	}

	for k := range flows {
		if k.Family != 4 {
			continue
		}
		k4 := toKey4(&k)
		if back := fromKey4(&k4); back != k {
			t.Errorf("key %+v converts to %+v and back to %+v", k, k4, back)
		}
		if a := netip.AddrFrom4([4]byte{byte(k4.AddrLo), byte(k4.AddrLo >> 8), byte(k4.AddrLo >> 16), byte(k4.AddrLo >> 24)}); a != netip.MustParseAddr("192.0.2.10") && a != netip.MustParseAddr("198.51.100.7") {
			t.Errorf("flows4 key address %v is not one of the packet's", a)
		}
	}
}
