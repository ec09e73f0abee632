//go:build linux

package bpf

import (
	"slices"
	"testing"

	"github.com/cilium/ebpf"
)

// TestSYNOnExistingFlow checks the paths a SYN takes when its flow is
// already in the map (the program tries the insert first for a SYN): a
// retransmitted SYN is counted on its flow, and a SYN on the tuple of an
// ended flow starts a new flow in the same entry, reporting the old one
// first if its end event was lost, or its tail if packets came after its
// end.
func TestSYNOnExistingFlow(t *testing.T) {
	const client, server = "10.1.0.2", "10.1.0.9"
	type pkt = tcpPkt
	reset := []pkt{{true, syn, 0}, {false, syn | ack, 0}, {true, psh | ack, 10}, {false, rst, 0}}
	graceful := []pkt{{true, syn, 0}, {false, syn | ack, 0}, {true, ack, 0}, {true, psh | ack, 100},
		{false, psh | ack, 300}, {true, fin | ack, 0}, {false, fin | ack, 0}, {true, ack, 0}}
	cases := []struct {
		name string
		// before runs first; if loseEnd, the flow's REPORTED flag is then
		// cleared, as when its end event could not be reserved.
		before    []pkt
		loseEnd   bool
		pkts      []pkt
		wantKinds []EventKind
		wantTail  [2]uint64 // packets of the tail event, if any
	}{
		{
			name:      "a retransmitted SYN is counted on its flow, not opened as a new one",
			pkts:      append([]pkt{{true, syn, 0}}, graceful...),
			wantKinds: []EventKind{EventFlowStart, EventFlowEnd},
		},
		{
			name:      "a SYN on the tuple of a reported reset flow starts a new flow with only its own packets",
			before:    reset,
			pkts:      graceful,
			wantKinds: []EventKind{EventFlowStart, EventFlowReset, EventFlowStart, EventFlowEnd},
		},
		{
			name:      "a SYN on the tuple of an ended flow with packets after its end reports that tail first",
			before:    append(slices.Clone(graceful), pkt{false, ack, 0}, pkt{false, fin | ack, 0}),
			pkts:      graceful,
			wantKinds: []EventKind{EventFlowStart, EventFlowEnd, EventFlowTail, EventFlowStart, EventFlowEnd},
			wantTail:  [2]uint64{0, 2},
		},
		{
			name:      "a SYN on the tuple of a reset flow whose end was lost reports that flow first",
			before:    reset,
			loseEnd:   true,
			pkts:      graceful,
			wantKinds: []EventKind{EventFlowStart, EventFlowReset, EventFlowReset, EventFlowStart, EventFlowEnd},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			objs := loadTest(t, loadOptions{ringBufSize: 1 << 16, maxFlows: 64, emitStartEvents: true})
			send := func(ps []pkt) (fwd, rev, fwdP, revP uint64) {
				return converse(t, objs, client, server, ps)
			}
			oldFwd, oldRev, oldFwdP, oldRevP := send(tc.before)
			if tc.loseEnd {
				// What a refused end event leaves: the entry ended, not
				// reported, with every counter (and no hint).
				hints, flows := endedIn(t, objs), flowsIn(t, objs)
				if len(hints) != 1 || len(flows) != 1 {
					t.Fatalf("%d hints and %d flows after the reset connection, want 1 and 1 (a reset lingers)", len(hints), len(flows))
				}
				for k, st := range flows {
					st.Flags &^= uint32(bpfFlowFlagFLOW_REPORTED) | 0x1ff<<uint32(bpfFlowFlagFLOW_REPORTED_FLAGS_SHIFT)
					st.Bytes, st.Packets = [2]uint64{oldFwd, oldRev}, [2]uint64{oldFwdP, oldRevP}
					if err := deleteEnded(objs, &k); err != nil {
						t.Fatal(err)
					}
					if err := updateFlow(objs, &k, &st, ebpf.UpdateAny); err != nil {
						t.Fatal(err)
					}
				}
			}
			wantFwd, wantRev, wantFwdP, wantRevP := send(tc.pkts)

			evs := drain(t, objs)
			var kinds []EventKind
			for _, ev := range evs {
				kinds = append(kinds, ev.Kind)
			}
			if !slices.Equal(kinds, tc.wantKinds) {
				t.Fatalf("event kinds %v, want %v", kinds, tc.wantKinds)
			}
			if tc.loseEnd {
				if old := evs[2]; old.BytesFwd != oldFwd || old.BytesRev != oldRev || old.TCPFlags&TCPFlagRST == 0 {
					t.Errorf("recovered reset: fwd %d B rev %d B flags %#x, want %d B %d B with RST", old.BytesFwd, old.BytesRev, old.TCPFlags, oldFwd, oldRev)
				}
			}
			for _, ev := range evs {
				if ev.Kind == EventFlowTail && ([2]uint64{ev.PacketsFwd, ev.PacketsRev} != tc.wantTail || !ev.Continued ||
					ev.TCPFlags != TCPFlagACK|TCPFlagPSH || ev.HandshakeNs != 0) {
					t.Errorf("tail event %+v, want packets %v, continued, flags ACK|PSH (not the SYN and FIN its end carried), no handshake", ev, tc.wantTail)
				}
			}
			last := evs[len(evs)-1]
			if last.BytesFwd != wantFwd || last.BytesRev != wantRev || last.PacketsFwd != wantFwdP || last.PacketsRev != wantRevP {
				t.Errorf("end counters fwd %d B/%d p rev %d B/%d p, want %d/%d %d/%d",
					last.BytesFwd, last.PacketsFwd, last.BytesRev, last.PacketsRev, wantFwd, wantFwdP, wantRev, wantRevP)
			}
			if want := uint16(TCPFlagFIN | TCPFlagSYN | TCPFlagPSH | TCPFlagACK); last.TCPFlags != want {
				t.Errorf("end flags %#x, want %#x (no RST of the earlier flow)", last.TCPFlags, want)
			}
			if last.HandshakeNs == 0 {
				t.Error("handshake latency not measured")
			}
			for _, st := range flowsIn(t, objs) {
				if st.Packets != [2]uint64{} {
					t.Errorf("entry after a reported graceful end holds %v packets, want an empty tail", st.Packets)
				}
			}
			if c := counters(t, objs); c.ParseErrors() != 0 || c.RingBufFailures() != 0 || c[CounterMapInsert] != 0 {
				t.Errorf("unexpected counters %v", c)
			}
		})
	}
}
