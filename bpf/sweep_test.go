package bpf

import (
	"log/slog"
	"testing"
	"time"

	"github.com/cilium/ebpf"
)

// testCollector wraps loaded objects in a Collector without attaching.
func testCollector(t *testing.T, cfg Config) *Collector {
	t.Helper()
	objs := loadTest(t, loadOptions{ringBufSize: 1 << 16, maxFlows: 64, emitStartEvents: false})
	cfg.Interfaces = []string{"none"}
	return &Collector{cfg: cfg.withDefaults(), log: slog.New(slog.DiscardHandler), objs: objs,
		attached: map[int]*attachment{}, names: map[uint32]string{}, reported: map[bpfFlowKey]bpfFlowStats{}}
}

func TestSweep(t *testing.T) {
	udpOut := ipv4("10.0.0.1", "10.0.0.2", l4{proto: 17, sport: 1000, dport: 53, payload: 10})
	udpBack := ipv4("10.0.0.2", "10.0.0.1", l4{proto: 17, sport: 53, dport: 1000, payload: 10})

	t.Run("a long-lived flow gets active-timeout records with the counts since the last one, then idles out silently", func(t *testing.T) {
		c := testCollector(t, Config{ActiveTimeout: 60 * time.Millisecond, IdleTimeout: 300 * time.Millisecond, EndLinger: time.Millisecond})
		rec := &recorder{}
		var ev Event
		run(t, c.objs.FlowIngress, udpOut)
		run(t, c.objs.FlowEgress, udpBack)
		time.Sleep(80 * time.Millisecond)
		run(t, c.objs.FlowIngress, udpOut)
		if err := c.sweep(rec, &ev, 0); err != nil {
			t.Fatal(err)
		}
		run(t, c.objs.FlowEgress, udpBack)
		run(t, c.objs.FlowEgress, udpBack)
		time.Sleep(80 * time.Millisecond)
		if err := c.sweep(rec, &ev, 0); err != nil {
			t.Fatal(err)
		}
		time.Sleep(350 * time.Millisecond)
		if err := c.sweep(rec, &ev, 0); err != nil {
			t.Fatal(err)
		}
		if len(rec.events) != 2 {
			t.Fatalf("%d records, want 2 active-timeout records: %+v", len(rec.events), rec.events)
		}
		for i, want := range [][2]uint64{{2, 1}, {0, 2}} {
			e := rec.events[i]
			if e.Kind != EventActiveTimeout || e.PacketsFwd != want[0] || e.PacketsRev != want[1] {
				t.Errorf("record %d: %v fwd %d rev %d packets, want active_timeout %d/%d", i, e.Kind, e.PacketsFwd, e.PacketsRev, want[0], want[1])
			}
		}
		if n := len(flowsIn(t, c.objs)); n != 0 || len(c.reported) != 0 {
			t.Errorf("%d flows left in the map, %d remembered; want none", n, len(c.reported))
		}
	})
	t.Run("an idle flow is reported once with all its counts and removed", func(t *testing.T) {
		c := testCollector(t, Config{IdleTimeout: 50 * time.Millisecond})
		rec := &recorder{}
		var ev Event
		run(t, c.objs.FlowIngress, udpOut)
		run(t, c.objs.FlowEgress, udpBack)
		time.Sleep(70 * time.Millisecond)
		c.sweep(rec, &ev, 0)
		c.sweep(rec, &ev, 0)
		if len(rec.events) != 1 || rec.events[0].Kind != EventIdleTimeout || rec.events[0].PacketsFwd != 1 || rec.events[0].PacketsRev != 1 {
			t.Fatalf("records %+v, want one idle_timeout with 1/1 packets", rec.events)
		}
		if n := len(flowsIn(t, c.objs)); n != 0 {
			t.Errorf("%d flows left", n)
		}
	})
	t.Run("an ended flow whose end event was lost is recovered from the map", func(t *testing.T) {
		c := testCollector(t, Config{EndLinger: 10 * time.Millisecond})
		rec := &recorder{}
		var ev Event
		for _, p := range []struct {
			out   bool
			flags uint8
		}{{true, syn}, {false, syn | ack}, {true, ack}, {true, fin | ack}, {false, fin | ack}} {
			if p.out {
				run(t, c.objs.FlowIngress, ipv4("10.0.0.1", "10.0.0.2", tcp(1000, 80, p.flags, 0)))
			} else {
				run(t, c.objs.FlowEgress, ipv4("10.0.0.2", "10.0.0.1", tcp(80, 1000, p.flags, 0)))
			}
		}
		// Mark it ended but unreported, as a refused end reservation leaves it.
		for k, st := range flowsIn(t, c.objs) {
			st.Flags |= uint32(bpfFlowFlagFLOW_ENDED)
			if err := updateFlow(c.objs, &k, &st, ebpf.UpdateAny); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(30 * time.Millisecond)
		c.sweep(rec, &ev, 0)
		if len(rec.events) != 1 || rec.events[0].Kind != EventRecovered || rec.events[0].PacketsFwd != 3 || rec.events[0].PacketsRev != 2 ||
			rec.events[0].TCPFlags != TCPFlagSYN|TCPFlagACK|TCPFlagFIN {
			t.Fatalf("records %+v, want one recovered flow with 3/2 packets", rec.events)
		}
		if n := len(flowsIn(t, c.objs)); n != 0 {
			t.Errorf("%d flows left", n)
		}
	})
	t.Run("a reset flow lingers, then leaves silently because it was reported", func(t *testing.T) {
		c := testCollector(t, Config{EndLinger: 30 * time.Millisecond})
		rec := &recorder{}
		var ev Event
		run(t, c.objs.FlowIngress, ipv4("10.0.0.1", "10.0.0.2", tcp(1000, 80, syn, 0)))
		run(t, c.objs.FlowEgress, ipv4("10.0.0.2", "10.0.0.1", tcp(80, 1000, rst|ack, 0)))
		c.sweep(rec, &ev, 0)
		if n := len(flowsIn(t, c.objs)); n != 1 {
			t.Fatalf("%d flows during the linger, want 1", n)
		}
		time.Sleep(50 * time.Millisecond)
		c.sweep(rec, &ev, 0)
		if n := len(flowsIn(t, c.objs)); n != 0 || len(rec.events) != 0 {
			t.Fatalf("%d flows and records %+v after the linger, want none", n, rec.events)
		}
	})
}
