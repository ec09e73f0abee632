//go:build linux

package bpf

import (
	"math/rand/v2"
	"testing"
)

// validPackets are well-formed packets of every parsed kind.
func validPackets() [][]byte {
	return [][]byte{
		ipv4("10.0.0.1", "10.0.0.2", tcp(1000, 80, syn, 0)),
		ipv4("10.0.0.1", "10.0.0.2", tcp(1000, 80, psh|ack, 64)),
		ipv4("10.0.0.1", "10.0.0.2", l4{proto: 17, sport: 9, dport: 53, payload: 12}),
		ipv4("10.0.0.1", "10.0.0.2", l4{proto: 1, icmpType: 8, icmpID: 3, payload: 16}),
		ipv6("fd00::1", "fd00::2", tcp(1000, 443, syn, 0)),
		ipv6("fd00::1", "fd00::2", l4{proto: 17, sport: 9, dport: 53, payload: 4}),
		ipv6("fd00::1", "fd00::2", l4{proto: 58, icmpType: 128, icmpID: 3, payload: 4}),
		ipv6("fd00::1", "fd00::2", tcp(1000, 443, ack, 10), ext{0, 8}, ext{43, 24}, ext{60, 8}),
		ipv6("fd00::1", "fd00::2", l4{proto: 17, sport: 1, dport: 2}, ext{44, 8}, ext{51, 16}),
	}
}

// TestTruncatedPacketsAreCountedNotParsed cuts valid packets at every
// offset from the Ethernet header on and requires each cut one to pass,
// create no flow, and count exactly one parse error. BPF_PROG_TEST_RUN
// refuses frames shorter than 14 bytes and IP frames whose network header
// is incomplete; those cuts are skipped (and at least the transport-header
// cuts must run).
func TestTruncatedPacketsAreCountedNotParsed(t *testing.T) {
	objs := loadTest(t, loadOptions{ringBufSize: 1 << 16, maxFlows: 1024})
	var cuts, refused uint64
	for _, pkt := range validPackets() {
		for n := 14; n < len(pkt); n++ {
			if runOrRefused(t, objs.FlowIngress, pkt[:n]) {
				cuts++
			} else {
				refused++
			}
		}
	}
	t.Logf("%d truncated frames ran, %d refused by the kernel's test runner", cuts, refused)
	if cuts < 100 {
		t.Fatalf("only %d truncated frames ran", cuts)
	}
	if flows := flowsIn(t, objs); len(flows) != 0 {
		t.Errorf("%d flows from truncated packets, want none: %v", len(flows), flows)
	}
	c := counters(t, objs)
	if c.ParseErrors() != cuts {
		t.Errorf("parse errors %d, want %d (one per truncated packet): %v", c.ParseErrors(), cuts, c)
	}
	// The whole packets still parse.
	for _, pkt := range validPackets() {
		run(t, objs.FlowIngress, pkt)
	}
	// validPackets holds 9 packets of 7 distinct flows (two TCP pairs share a tuple).
	if flows := flowsIn(t, objs); len(flows) != 7 {
		t.Errorf("%d flows from the valid packets, want 7", len(flows))
	}
	if c2 := counters(t, objs); c2.ParseErrors() != cuts {
		t.Errorf("valid packets counted as parse errors: %d", c2.ParseErrors()-cuts)
	}
}

// TestMalformedHeadersAreCounted: headers that lie about their lengths.
func TestMalformedHeadersAreCounted(t *testing.T) {
	mut := func(b []byte, f func([]byte)) []byte { f(b); return b }
	cases := []struct {
		name string
		pkt  []byte
		want Counter
	}{
		{"an IPv4 header length below 20 bytes is malformed", mut(ipv4("1.1.1.1", "2.2.2.2", tcp(1, 2, syn, 0)), func(b []byte) { b[14] = 0x44 }), CounterIPv4Malformed},
		{"an IPv4 version that is not 4 is malformed", mut(ipv4("1.1.1.1", "2.2.2.2", tcp(1, 2, syn, 0)), func(b []byte) { b[14] = 0x55 }), CounterIPv4Malformed},
		{"an IPv4 total length beyond the packet is truncated", mut(ipv4("1.1.1.1", "2.2.2.2", tcp(1, 2, syn, 0)), func(b []byte) { b[16] = 0x10 }), CounterIPv4Truncated},
		{"a TCP data offset below 5 is malformed", mut(ipv4("1.1.1.1", "2.2.2.2", tcp(1, 2, syn, 0)), func(b []byte) { b[34+12] = 0x40 }), CounterTCPMalformed},
		{"a TCP data offset beyond the packet is truncated", mut(ipv4("1.1.1.1", "2.2.2.2", tcp(1, 2, syn, 0)), func(b []byte) { b[34+12] = 0xf0 }), CounterL4Truncated},
		{"an IPv6 payload length of zero is malformed", mut(ipv6("fd00::1", "fd00::2", tcp(1, 2, syn, 0)), func(b []byte) { b[18], b[19] = 0, 0 }), CounterIPv6Malformed},
		{"an IPv6 extension header longer than the packet is truncated", mut(ipv6("fd00::1", "fd00::2", tcp(1, 2, syn, 0), ext{60, 8}), func(b []byte) { b[54+1] = 200 }), CounterIPv6ExtTruncated},
		{"nine extension headers exceed the walk limit", ipv6("fd00::1", "fd00::2", tcp(1, 2, syn, 0),
			ext{0, 8}, ext{60, 8}, ext{60, 8}, ext{60, 8}, ext{60, 8}, ext{60, 8}, ext{60, 8}, ext{60, 8}, ext{60, 8}), CounterIPv6ExtLimit},
		{"an ARP frame is not IP", eth(0x0806, make([]byte, 28)), CounterNonIP},
		{"a later IPv4 fragment carries no ports", mut(ipv4("1.1.1.1", "2.2.2.2", tcp(1, 2, syn, 0)), func(b []byte) { b[14+7] = 0x10 }), CounterFragment},
		{"a later IPv6 fragment carries no ports", mut(ipv6("fd00::1", "fd00::2", tcp(1, 2, syn, 0), ext{44, 8}), func(b []byte) { b[54+3] = 0x08 }), CounterFragment},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			objs := loadTest(t, loadOptions{ringBufSize: 1 << 16, maxFlows: 16})
			run(t, objs.FlowIngress, tc.pkt)
			c := counters(t, objs)
			for i, v := range c {
				want := uint64(0)
				if Counter(i) == tc.want {
					want = 1
				}
				if v != want {
					t.Errorf("counter %s = %d, want %d", Counter(i), v, want)
				}
			}
			if flows := flowsIn(t, objs); len(flows) != 0 {
				t.Errorf("malformed packet created flows %v", flows)
			}
		})
	}
}

// TestRandomBytesNeverMisbehave sends random frames, then random
// corruptions of valid packets: the program always passes the packet. Random
// frames hardly ever share a tuple, so for them every frame is exactly
// either in a flow or in a counter. Corrupted valid packets share their few
// tuples and carry random TCP flags (resets, restarts), so for them only
// the pass verdict and the parse-error count are checked.
func TestRandomBytesNeverMisbehave(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	const n = 1500
	t.Run("random frames are each in a flow or in a counter", func(t *testing.T) {
		objs := loadTest(t, loadOptions{ringBufSize: 1 << 20, maxFlows: 1 << 14})
		var refused uint64
		for range n {
			pkt := make([]byte, 15+r.IntN(200))
			for j := range pkt {
				pkt[j] = byte(r.Uint32())
			}
			// They claim to be IP so the parser goes deep.
			if r.IntN(2) == 0 {
				pkt[12], pkt[13] = 0x08, 0x00
				pkt[14] = 0x40 | pkt[14]&0x0f
			} else {
				pkt[12], pkt[13] = 0x86, 0xdd
				pkt[14] = 0x60
			}
			if !runOrRefused(t, objs.FlowIngress, pkt) {
				refused++
			}
		}
		c := counters(t, objs)
		var accounted uint64
		for _, st := range flowsIn(t, objs) {
			accounted += st.Packets[0] + st.Packets[1]
		}
		// Flows that ended cleanly were reported and removed from the map.
		for _, ev := range drain(t, objs) {
			if ev.Kind == EventFlowEnd {
				accounted += ev.PacketsFwd + ev.PacketsRev
			}
		}
		untracked := c.ParseErrors() + c[CounterNonIP] + c[CounterFragment] + c[CounterMapInsert]
		if accounted+untracked+refused != n {
			t.Errorf("%d packets in flows + %d counted + %d refused by the test runner = %d, want %d (%v)",
				accounted, untracked, refused, accounted+untracked+refused, n, c)
		}
		if c.ParseErrors() == 0 {
			t.Error("no parse errors among random frames")
		}
	})
	t.Run("corrupted valid packets always pass and malformed ones are counted", func(t *testing.T) {
		objs := loadTest(t, loadOptions{ringBufSize: 1 << 20, maxFlows: 1 << 14})
		valid := validPackets()
		for range n {
			pkt := append([]byte(nil), valid[r.IntN(len(valid))]...)
			for range 1 + r.IntN(4) {
				pkt[14+r.IntN(len(pkt)-14)] = byte(r.Uint32())
			}
			runOrRefused(t, objs.FlowIngress, pkt)
		}
		if c := counters(t, objs); c.ParseErrors() == 0 {
			t.Errorf("no parse errors among %d corrupted packets: %v", n, c)
		}
	})
}

// FuzzProgram runs arbitrary frames through the ingress program.
func FuzzProgram(f *testing.F) {
	for _, p := range validPackets() {
		f.Add(p)
	}
	objs := loadTest(f, loadOptions{ringBufSize: 1 << 16, maxFlows: 1 << 14})
	f.Fuzz(func(t *testing.T, pkt []byte) {
		if len(pkt) < 14 {
			return // BPF_PROG_TEST_RUN refuses frames shorter than Ethernet
		}
		runOrRefused(t, objs.FlowIngress, pkt)
	})
}
