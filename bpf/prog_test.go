//go:build linux

package bpf

import (
	"errors"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/cilium/ebpf/ringbuf"
)

// drain reads every event in the ring buffer.
func drain(t testing.TB, objs *bpfObjects) []Event {
	t.Helper()
	rd, err := ringbuf.NewReader(objs.Events)
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	rd.SetDeadline(time.Now())
	var out []Event
	var rec ringbuf.Record
	for {
		err := rd.ReadInto(&rec)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		var ev Event
		if decodeEvent(rec.RawSample, &ev, 0) == nil {
			t.Fatalf("undecodable record of %d bytes", len(rec.RawSample))
		}
		out = append(out, ev)
	}
}

func counters(t testing.TB, objs *bpfObjects) Counters {
	t.Helper()
	c, err := readCounters(objs.Counters)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestTCPConnectionLifecycle(t *testing.T) {
	const client, server = "10.1.0.2", "10.1.0.9"
	type pkt = tcpPkt
	cases := []struct {
		name      string
		pkts      []pkt
		wantKinds []EventKind
		wantFlags uint16
		wantTail  [2]uint64 // packets after the end event, each way
	}{
		{
			name: "a graceful close reports start then end with every packet counted",
			pkts: []pkt{
				{true, syn, 0}, {false, syn | ack, 0}, {true, ack, 0},
				{true, psh | ack, 100}, {false, psh | ack, 300}, {true, ack, 0},
				{true, fin | ack, 0}, {false, fin | ack, 0}, {true, ack, 0},
			},
			wantKinds: []EventKind{EventFlowStart, EventFlowEnd},
			wantFlags: TCPFlagFIN | TCPFlagSYN | TCPFlagPSH | TCPFlagACK,
		},
		{
			name: "a server reset reports one reset event with RST among the flags",
			pkts: []pkt{
				{true, syn, 0}, {false, syn | ack, 0}, {true, ack, 0},
				{true, psh | ack, 10}, {false, rst | ack, 0}, {true, psh | ack, 10}, {false, rst, 0},
			},
			wantKinds: []EventKind{EventFlowStart, EventFlowReset},
			wantFlags: TCPFlagSYN | TCPFlagRST | TCPFlagPSH | TCPFlagACK,
			wantTail:  [2]uint64{1, 1},
		},
		{
			name: "a flow first seen at its SYN-ACK is oriented from the SYN's sender",
			pkts: []pkt{
				{false, syn | ack, 0}, {true, ack, 0}, {true, fin | ack, 0}, {false, fin | ack, 0}, {true, ack, 0},
			},
			wantKinds: []EventKind{EventFlowStart, EventFlowEnd},
			wantFlags: TCPFlagFIN | TCPFlagSYN | TCPFlagACK,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			objs := loadTest(t, loadOptions{ringBufSize: 1 << 16, maxFlows: 64, emitStartEvents: true})
			wantFwd, wantRev, wantFwdP, wantRevP := converse(t, objs, client, server, tc.pkts)
			evs := drain(t, objs)
			if len(evs) != len(tc.wantKinds) {
				t.Fatalf("got %d events %+v, want kinds %v", len(evs), evs, tc.wantKinds)
			}
			for i, k := range tc.wantKinds {
				if evs[i].Kind != k {
					t.Errorf("event %d kind %v, want %v", i, evs[i].Kind, k)
				}
			}
			last := evs[len(evs)-1]
			if last.Src != netip.MustParseAddr(client) || last.Dst != netip.MustParseAddr(server) ||
				last.SrcPort != 40000 || last.DstPort != 80 || last.Protocol != 6 || last.IPVersion != 4 {
				t.Errorf("end event oriented %v:%d -> %v:%d proto %d v%d, want client -> server:80 tcp v4",
					last.Src, last.SrcPort, last.Dst, last.DstPort, last.Protocol, last.IPVersion)
			}
			if !last.Ingress {
				t.Error("initiator's packets came through ingress but Ingress is false")
			}
			// A reported end lingers, marked reported, holding only its
			// tail (the packets after the end), and leaves a hint (who
			// opened the flow, what its end carried) for packets after the
			// sweep freed it. The end event and the tail together are
			// every packet, each counted once.
			flows := flowsIn(t, objs)
			if len(flows) != 1 {
				t.Fatalf("%d flows in the map after a reported end, want 1 (lingering)", len(flows))
			}
			var tail bpfFlowStats
			for _, st := range flows {
				tail = st
				want := uint32(bpfFlowFlagFLOW_ENDED | bpfFlowFlagFLOW_REPORTED)
				if st.Flags&want != want || st.InitiatorLo != 1 || st.InitiatorIngress != 1 {
					t.Errorf("tail entry flags %#x, initiator lo %d ingress %d: want ENDED|REPORTED, oriented as the flow", st.Flags, st.InitiatorLo, st.InitiatorIngress)
				}
				if reported := uint16(st.Flags >> uint32(bpfFlowFlagFLOW_REPORTED_FLAGS_SHIFT) & 0x1ff); reported != last.TCPFlags {
					t.Errorf("tail keeps reported flags %#x, want the end event's %#x", reported, last.TCPFlags)
				}
			}
			if got := [4]uint64{last.BytesFwd + tail.Bytes[0], last.BytesRev + tail.Bytes[1], last.PacketsFwd + tail.Packets[0], last.PacketsRev + tail.Packets[1]}; got != [4]uint64{wantFwd, wantRev, wantFwdP, wantRevP} {
				t.Errorf("end event + tail: fwd %d B rev %d B, %d/%d packets, want %d B %d B, %d/%d",
					got[0], got[1], got[2], got[3], wantFwd, wantRev, wantFwdP, wantRevP)
			}
			if tail.Packets != tc.wantTail {
				t.Errorf("tail packets %v, want %v", tail.Packets, tc.wantTail)
			}
			hints := endedIn(t, objs)
			if len(hints) != 1 {
				t.Fatalf("%d end hints, want 1", len(hints))
			}
			for _, h := range hints {
				if h.InitiatorLo != 1 || h.InitiatorIngress != 1 || uint16(h.Flags>>uint32(bpfFlowFlagFLOW_REPORTED_FLAGS_SHIFT)&0x1ff) != last.TCPFlags {
					t.Errorf("hint %+v, want the client as initiator and the end's flags %#x", h, last.TCPFlags)
				}
			}
			if tc.pkts[0].flags == syn && last.HandshakeNs == 0 {
				t.Error("handshake latency not measured")
			}
			if c := counters(t, objs); c.ParseErrors() != 0 || c.RingBufFailures() != 0 || c[CounterMapInsert] != 0 {
				t.Errorf("unexpected counters %v", c)
			}
		})
	}
}

func TestFlowKinds(t *testing.T) {
	cases := []struct {
		name           string
		first, reply   []byte
		proto, version uint8
		src, dst       string
		sport, dport   uint16
		icmpType       uint8
	}{
		{"UDP both ways is one flow", ipv4("10.0.0.1", "10.0.0.2", l4{proto: 17, sport: 5353, dport: 53, payload: 30}),
			ipv4("10.0.0.2", "10.0.0.1", l4{proto: 17, sport: 53, dport: 5353, payload: 90}), 17, 4, "10.0.0.1", "10.0.0.2", 5353, 53, 0},
		{"ICMP echo request and reply are one flow keyed by identifier", ipv4("10.0.0.1", "10.0.0.2", l4{proto: 1, icmpType: 8, icmpID: 77, payload: 56}),
			ipv4("10.0.0.2", "10.0.0.1", l4{proto: 1, icmpType: 0, icmpID: 77, payload: 56}), 1, 4, "10.0.0.1", "10.0.0.2", 77, 77, 8},
		{"ICMPv6 echo is one flow", ipv6("fd00::1", "fd00::2", l4{proto: 58, icmpType: 128, icmpID: 9, payload: 8}),
			ipv6("fd00::2", "fd00::1", l4{proto: 58, icmpType: 129, icmpID: 9, payload: 8}), 58, 6, "fd00::1", "fd00::2", 9, 9, 128},
		{"IPv6 TCP behind hop-by-hop, routing, fragment and destination options headers parses its ports",
			ipv6("fd00::2", "fd00::1", tcp(50000, 443, syn, 0), ext{0, 8}, ext{43, 24}, ext{44, 8}, ext{60, 16}),
			ipv6("fd00::1", "fd00::2", tcp(443, 50000, syn|ack, 0), ext{51, 16}), 6, 6, "fd00::2", "fd00::1", 50000, 443, 0},
		{"an ICMP echo reply seen first is oriented from the request's sender", ipv4("10.0.0.2", "10.0.0.1", l4{proto: 1, icmpType: 0, icmpID: 5}),
			ipv4("10.0.0.1", "10.0.0.2", l4{proto: 1, icmpType: 8, icmpID: 5}), 1, 4, "10.0.0.1", "10.0.0.2", 5, 5, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			objs := loadTest(t, loadOptions{ringBufSize: 1 << 16, maxFlows: 64, emitStartEvents: true})
			run(t, objs.FlowEgress, tc.first)
			run(t, objs.FlowIngress, tc.reply)
			run(t, objs.FlowEgress, tc.first)
			flows := flowsIn(t, objs)
			if len(flows) != 1 {
				t.Fatalf("%d flows, want 1: %v", len(flows), flows)
			}
			var ev Event
			for k, st := range flows {
				ev.fill(EventFlush, &k, &st, 0)
			}
			if ev.Protocol != tc.proto || ev.IPVersion != tc.version || ev.Src != netip.MustParseAddr(tc.src) ||
				ev.Dst != netip.MustParseAddr(tc.dst) || ev.SrcPort != tc.sport || ev.DstPort != tc.dport || ev.ICMPType != tc.icmpType {
				t.Errorf("flow %+v, want proto %d v%d %s:%d -> %s:%d icmp type %d", ev, tc.proto, tc.version, tc.src, tc.sport, tc.dst, tc.dport, tc.icmpType)
			}
			total := uint64(2*len(tc.first) + len(tc.reply))
			if ev.BytesFwd+ev.BytesRev != total || ev.PacketsFwd+ev.PacketsRev != 3 {
				t.Errorf("bytes %d+%d packets %d+%d, want %d bytes 3 packets", ev.BytesFwd, ev.BytesRev, ev.PacketsFwd, ev.PacketsRev, total)
			}
			evs := drain(t, objs)
			if len(evs) != 1 || evs[0].Kind != EventFlowStart {
				t.Errorf("events %+v, want one start", evs)
			}
		})
	}
}
