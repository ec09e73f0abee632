//go:build linux

package bpf

import (
	"encoding/binary"
	"fmt"
	"testing"
)

// ipOptions returns an IPv4 frame with 4 bytes of IP options (NOPs) after
// the header of frame, so that the fast path leaves it to the full parser.
func ipOptions(frame []byte) []byte {
	out := make([]byte, 0, len(frame)+4)
	out = append(out, frame[:14+20]...)
	out = append(out, 1, 1, 1, 1)
	out = append(out, frame[14+20:]...)
	out[14] = 0x46
	binary.BigEndian.PutUint16(out[14+2:], binary.BigEndian.Uint16(frame[14+2:])+4)
	return out
}

// tcpOptions returns an IPv4 TCP frame with 12 bytes of TCP options
// (NOPs), which the fast path takes.
func tcpOptions(frame []byte) []byte {
	out := make([]byte, 0, len(frame)+12)
	out = append(out, frame[:14+20+20]...)
	out = append(out, make([]byte, 12)...)
	for i := 14 + 20 + 20; i < len(out); i++ {
		out[i] = 1
	}
	out = append(out, frame[14+20+20:]...)
	out[14+20+12] = 8 << 4
	binary.BigEndian.PutUint16(out[14+2:], binary.BigEndian.Uint16(frame[14+2:])+12)
	return out
}

// TestFastPathAccountsAsTheFullPath sends flows whose packets alternate
// between the fast path (IPv4 without options, TCP with only ACK/PSH
// already seen, UDP, on a known flow) and the full path (first packets,
// new flags, IP options, FIN, the closing ACK), and checks that each flow
// is one entry with exact counters per direction: the two paths build the
// same key and account the same way.
func TestFastPathAccountsAsTheFullPath(t *testing.T) {
	type pkt struct {
		frame []byte
		reply bool // sent by the responder
	}
	cases := []struct {
		name      string
		pkts      []pkt
		wantFlags uint32 // of the map entry, 0 if the flow must have ended and left the map
	}{
		{"a TCP connection with fast and full-path packets both ways is one flow with exact counters", []pkt{
			{ipv4("10.0.0.1", "10.0.0.2", tcp(40000, 80, syn, 0)), false},
			{ipv4("10.0.0.2", "10.0.0.1", tcp(80, 40000, syn|ack, 0)), true},
			{ipv4("10.0.0.1", "10.0.0.2", tcp(40000, 80, ack, 0)), false},
			{ipv4("10.0.0.1", "10.0.0.2", tcp(40000, 80, ack|psh, 100)), false},
			{ipv4("10.0.0.1", "10.0.0.2", tcp(40000, 80, ack|psh, 200)), false},
			{ipv4("10.0.0.2", "10.0.0.1", tcp(80, 40000, ack|psh, 300)), true},
			{ipOptions(ipv4("10.0.0.2", "10.0.0.1", tcp(80, 40000, ack|psh, 400))), true},
			{tcpOptions(ipv4("10.0.0.2", "10.0.0.1", tcp(80, 40000, ack, 500))), true},
			{ipOptions(ipv4("10.0.0.1", "10.0.0.2", tcp(40000, 80, ack, 600))), false},
			{ipv4("10.0.0.1", "10.0.0.2", tcp(40000, 80, fin|ack, 0)), false},
			{ipv4("10.0.0.2", "10.0.0.1", tcp(80, 40000, ack, 0)), true},
			{ipv4("10.0.0.2", "10.0.0.1", tcp(80, 40000, fin|ack, 0)), true},
			{ipv4("10.0.0.1", "10.0.0.2", tcp(40000, 80, ack, 0)), false},
		}, 0},
		{"addresses that order differently as bytes and as little-endian words give one flow", []pkt{
			{ipv4("10.0.0.2", "9.0.0.1", tcp(40000, 80, syn, 0)), false},
			{ipv4("9.0.0.1", "10.0.0.2", tcp(80, 40000, syn|ack, 0)), true},
			{ipv4("10.0.0.2", "9.0.0.1", tcp(40000, 80, ack, 10)), false},
			{ipv4("9.0.0.1", "10.0.0.2", tcp(80, 40000, ack, 20)), true},
			{ipOptions(ipv4("9.0.0.1", "10.0.0.2", tcp(80, 40000, ack, 30))), true},
			{ipOptions(ipv4("10.0.0.2", "9.0.0.1", tcp(40000, 80, ack, 40))), false},
		}, uint32(bpfFlowFlagFLOW_TCP_SYN | bpfFlowFlagFLOW_TCP_ACK)},
		{"one address talking to itself is ordered by port on both paths", []pkt{
			{ipv4("10.0.0.1", "10.0.0.1", tcp(50000, 80, syn, 0)), false},
			{ipv4("10.0.0.1", "10.0.0.1", tcp(80, 50000, syn|ack, 0)), true},
			{ipv4("10.0.0.1", "10.0.0.1", tcp(50000, 80, ack, 10)), false},
			{ipv4("10.0.0.1", "10.0.0.1", tcp(80, 50000, ack, 20)), true},
			{ipOptions(ipv4("10.0.0.1", "10.0.0.1", tcp(80, 50000, ack, 30))), true},
			{ipOptions(ipv4("10.0.0.1", "10.0.0.1", tcp(50000, 80, ack, 40))), false},
		}, uint32(bpfFlowFlagFLOW_TCP_SYN | bpfFlowFlagFLOW_TCP_ACK)},
		{"a UDP flow with and without IP options both ways is one flow", []pkt{
			{ipv4("10.0.0.1", "10.0.0.53", l4{proto: 17, sport: 5353, dport: 53, payload: 30}), false},
			{ipv4("10.0.0.53", "10.0.0.1", l4{proto: 17, sport: 53, dport: 5353, payload: 90}), true},
			{ipv4("10.0.0.1", "10.0.0.53", l4{proto: 17, sport: 5353, dport: 53, payload: 31}), false},
			{ipOptions(ipv4("10.0.0.53", "10.0.0.1", l4{proto: 17, sport: 53, dport: 5353, payload: 91})), true},
			{ipOptions(ipv4("10.0.0.1", "10.0.0.53", l4{proto: 17, sport: 5353, dport: 53, payload: 32})), false},
			{ipv4("10.0.0.53", "10.0.0.1", l4{proto: 17, sport: 53, dport: 5353, payload: 92}), true},
		}, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			objs := loadTest(t, loadOptions{ringBufSize: 1 << 16, maxFlows: 64})
			var bytes, packets [2]uint64
			for _, p := range tc.pkts {
				dir := 0
				if p.reply {
					dir = 1
				}
				bytes[dir] += uint64(len(p.frame))
				packets[dir]++
				run(t, objs.FlowIngress, p.frame)
			}
			flows := flowsIn(t, objs)
			evs := drain(t, objs)
			isTCP := tc.pkts[0].frame[14+9] == 6
			if isTCP && tc.wantFlags == 0 {
				// The connection closed: its end event carries the counters
				// and its entry lingers with an empty tail.
				if len(flows) != 1 || len(evs) != 1 || evs[0].Kind != EventFlowEnd {
					t.Fatalf("%d flows left and events %+v, want one lingering and one end", len(flows), evs)
				}
				for _, st := range flows {
					if st.Packets != [2]uint64{} || st.Bytes != [2]uint64{} {
						t.Errorf("lingering entry holds %v bytes, %v packets, want an empty tail", st.Bytes, st.Packets)
					}
				}
				got := fmt.Sprint([2]uint64{evs[0].BytesFwd, evs[0].BytesRev}, [2]uint64{evs[0].PacketsFwd, evs[0].PacketsRev})
				if want := fmt.Sprint(bytes, packets); got != want {
					t.Errorf("end event bytes, packets %s, want %s", got, want)
				}
				return
			}
			if len(flows) != 1 || len(evs) != 0 {
				t.Fatalf("%d flows and %d events, want one flow and no event: %v", len(flows), len(evs), flows)
			}
			for _, st := range flows {
				if st.Bytes != bytes || st.Packets != packets {
					t.Errorf("bytes %v packets %v, want %v %v", st.Bytes, st.Packets, bytes, packets)
				}
				if st.Flags != tc.wantFlags {
					t.Errorf("flags %#x, want %#x", st.Flags, tc.wantFlags)
				}
			}
		})
	}
}
