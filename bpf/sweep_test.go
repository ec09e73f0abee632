//go:build linux

package bpf

import (
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"
)

// testCollector wraps loaded objects in a Collector without attaching.
func testCollector(t *testing.T, cfg Config) *Collector {
	t.Helper()
	cfg.Interfaces = []string{"none"}
	cfg = cfg.withDefaults()
	objs := loadTest(t, loadOptions{ringBufSize: 1 << 16, maxFlows: 64, emitStartEvents: false, endLinger: cfg.EndLinger})
	return &Collector{cfg: cfg, log: slog.New(slog.DiscardHandler), objs: objs,
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
		if k := kernelEvents(t, c); len(k) != 1 || k[0].Kind != EventFlowReset {
			t.Fatalf("kernel events %+v, want one reset", k)
		}
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
	t.Run("packets after a reported end are its tail, reported once the entry has been quiet for the linger", func(t *testing.T) {
		c := testCollector(t, Config{EndLinger: 30 * time.Millisecond})
		rec := &recorder{}
		var ev Event
		out := func(flags uint8) { run(t, c.objs.FlowIngress, ipv4("10.0.0.1", "10.0.0.2", tcp(1000, 80, flags, 0))) }
		back := func(flags uint8) { run(t, c.objs.FlowEgress, ipv4("10.0.0.2", "10.0.0.1", tcp(80, 1000, flags, 0))) }
		out(syn)
		back(syn | ack)
		out(ack)
		back(fin | ack)
		out(fin | ack)
		back(ack) // the close: the end event
		kernel := kernelEvents(t, c)
		if len(kernel) != 1 || kernel[0].Kind != EventFlowEnd || kernel[0].Continued {
			t.Fatalf("kernel events %+v, want one end", kernel)
		}
		out(fin | ack) // a retransmitted FIN and its ACK after the close
		back(ack)
		c.sweep(rec, &ev, 0)
		if len(rec.events) != 0 {
			t.Fatalf("records %+v during the linger, want none", rec.events)
		}
		time.Sleep(50 * time.Millisecond)
		c.sweep(rec, &ev, 0)
		if len(rec.events) != 1 {
			t.Fatalf("records %+v, want one tail", rec.events)
		}
		e := rec.events[0]
		if e.Kind != EventFlowTail || !e.Continued || e.PacketsFwd != 1 || e.PacketsRev != 1 || e.TCPFlags != TCPFlagACK ||
			e.Src.String() != "10.0.0.1" || e.SrcPort != 1000 || !e.Ingress || e.HandshakeNs != 0 {
			t.Errorf("tail %+v, want a continued tail of the client's connection with 1/1 packets, flags ACK only", e)
		}
		if n := len(flowsIn(t, c.objs)); n != 0 {
			t.Errorf("%d flows left", n)
		}
	})
	t.Run("a long-lived TCP connection's later records are continued, without SYN or handshake again", func(t *testing.T) {
		c := testCollector(t, Config{ActiveTimeout: 40 * time.Millisecond, EndLinger: 10 * time.Millisecond})
		rec := &recorder{}
		var ev Event
		out := func(flags uint8, n int) {
			run(t, c.objs.FlowIngress, ipv4("10.0.0.1", "10.0.0.2", tcp(1000, 80, flags, n)))
		}
		back := func(flags uint8, n int) {
			run(t, c.objs.FlowEgress, ipv4("10.0.0.2", "10.0.0.1", tcp(80, 1000, flags, n)))
		}
		out(syn, 0)
		back(syn|ack, 0)
		out(psh|ack, 100)
		time.Sleep(50 * time.Millisecond)
		c.sweep(rec, &ev, 0) // first record: SYN, handshake
		back(psh|ack, 200)
		time.Sleep(50 * time.Millisecond)
		c.sweep(rec, &ev, 0) // second: continued
		out(fin|ack, 0)
		back(fin|ack, 0)
		out(ack, 0)
		all := append(rec.events, kernelEvents(t, c)...)
		if len(all) != 3 {
			t.Fatalf("records %+v, want two active-timeout records and the end", all)
		}
		want := []struct {
			kind      EventKind
			continued bool
			flags     uint16
			packets   [2]uint64
		}{
			{EventActiveTimeout, false, TCPFlagSYN | TCPFlagACK | TCPFlagPSH, [2]uint64{2, 1}},
			{EventActiveTimeout, true, TCPFlagACK | TCPFlagPSH, [2]uint64{0, 1}},
			{EventFlowEnd, true, TCPFlagACK | TCPFlagPSH | TCPFlagFIN, [2]uint64{2, 1}},
		}
		for i, w := range want {
			e := all[i]
			if e.Kind != w.kind || e.Continued != w.continued || e.TCPFlags != w.flags || [2]uint64{e.PacketsFwd, e.PacketsRev} != w.packets ||
				(e.HandshakeNs != 0) != (i == 0) {
				t.Errorf("record %d: %v continued %v flags %#x packets %d/%d handshake %d, want %v %v %#x %v, handshake only on the first",
					i, e.Kind, e.Continued, e.TCPFlags, e.PacketsFwd, e.PacketsRev, e.HandshakeNs, w.kind, w.continued, w.flags, w.packets)
			}
		}
	})
	t.Run("a TCP flow first seen mid-stream is marked: its initiator is a guess", func(t *testing.T) {
		c := testCollector(t, Config{IdleTimeout: 20 * time.Millisecond})
		rec := &recorder{}
		var ev Event
		run(t, c.objs.FlowEgress, ipv4("10.0.0.2", "10.0.0.1", tcp(80, 1000, psh|ack, 50)))
		run(t, c.objs.FlowIngress, ipv4("10.0.0.1", "10.0.0.2", tcp(1000, 80, ack, 0)))
		time.Sleep(40 * time.Millisecond)
		c.sweep(rec, &ev, 0)
		if len(rec.events) != 1 || !rec.events[0].Midstream || rec.events[0].Src.String() != "10.0.0.2" || rec.events[0].Continued {
			t.Fatalf("records %+v, want one mid-stream idle record oriented from the first packet's sender", rec.events)
		}
	})
	t.Run("flushing reports the tails of lingering flows and nothing for empty ones", func(t *testing.T) {
		c := testCollector(t, Config{EndLinger: time.Hour})
		rec := &recorder{}
		var ev Event
		for i, port := range []uint16{1000, 1001} {
			out := func(flags uint8) { run(t, c.objs.FlowIngress, ipv4("10.0.0.1", "10.0.0.2", tcp(port, 80, flags, 0))) }
			back := func(flags uint8) { run(t, c.objs.FlowEgress, ipv4("10.0.0.2", "10.0.0.1", tcp(80, port, flags, 0))) }
			out(syn)
			back(syn | ack)
			out(rst)
			if i == 0 {
				back(rst) // a reset after the reset: 1001's tail stays empty
			}
		}
		if k := kernelEvents(t, c); len(k) != 2 {
			t.Fatalf("kernel events %+v, want two resets", k)
		}
		c.flushAll(rec, &ev, 0)
		if len(rec.events) != 1 || rec.events[0].Kind != EventFlowTail || rec.events[0].SrcPort != 1000 ||
			rec.events[0].PacketsRev != 1 || rec.events[0].PacketsFwd != 0 || rec.events[0].TCPFlags&TCPFlagRST != 0 {
			t.Fatalf("flushed %+v, want the one tail of port 1000: 1 reverse packet, RST not repeated", rec.events)
		}
	})
}

// kernelEvents reads the ring buffer as Run does (kernelEvent).
func kernelEvents(t *testing.T, c *Collector) []Event {
	t.Helper()
	rd, err := ringbuf.NewReader(c.objs.Events)
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	rd.SetDeadline(time.Now())
	var out []Event
	var rec ringbuf.Record
	for {
		if err := rd.ReadInto(&rec); err != nil {
			return out
		}
		var ev Event
		if !c.kernelEvent(rec.RawSample, &ev, 0) {
			t.Fatalf("undecodable record of %d bytes", len(rec.RawSample))
		}
		out = append(out, ev)
	}
}

// TestSweepDue: the maps are scanned every MaxSweepInterval while they are
// not busy, and at the next SweepInterval tick once the last scan found
// MaxFlows/2 flows, MaxFlows/4 events came since, or the kernel refused an
// end event or a new flow since.
func TestSweepDue(t *testing.T) {
	c := testCollector(t, Config{MaxFlows: 64, SweepInterval: time.Second})
	if c.cfg.MaxSweepInterval != 4*time.Second {
		t.Fatalf("MaxSweepInterval %v, want 4 × SweepInterval", c.cfg.MaxSweepInterval)
	}
	rec := &recorder{}
	var ev Event
	t0 := time.Now()
	scan := func(at time.Time) {
		t.Helper()
		if err := c.sweep(rec, &ev, 0); err != nil {
			t.Fatal(err)
		}
		c.scanned(at)
	}
	due := func(at time.Time, want bool, why string) {
		t.Helper()
		if got := c.sweepDue(at); got != want {
			t.Errorf("%s: sweepDue %v, want %v", why, got, want)
		}
	}
	due(t0, true, "never scanned")
	scan(t0)
	due(t0.Add(time.Second), false, "empty maps, nothing since")
	due(t0.Add(4*time.Second-time.Millisecond), false, "just before MaxSweepInterval")
	due(t0.Add(4*time.Second), true, "MaxSweepInterval")

	c.events.Add(15)
	due(t0.Add(time.Second), false, "15 events since (MaxFlows/4 is 16)")
	c.events.Add(1)
	due(t0.Add(time.Second), true, "16 events since")
	scan(t0.Add(time.Second))
	due(t0.Add(2*time.Second), false, "scanned after the events")

	ncpu, err := ebpf.PossibleCPU()
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range []Counter{CounterRingBufEnd, CounterMapInsert} {
		per := make([]uint64, ncpu)
		per[0] = 1
		if err := c.objs.Counters.Put(uint32(i), per); err != nil {
			t.Fatal(err)
		}
		due(t0.Add(2*time.Second), true, fmt.Sprintf("%s counted since", i))
		scan(t0.Add(2 * time.Second))
		due(t0.Add(3*time.Second), false, fmt.Sprintf("scanned after %s", i))
	}

	now := uint64(MonoNow())
	for i := range 32 {
		k := bpfFlowKey4{AddrLo: uint32(i + 1), AddrHi: 2, PortLo: 3, PortHi: 4, Ifindex: 5, Proto: 17}
		st := bpfFlowStats{FirstSeenNs: now, LastSeenNs: now, Packets: [2]uint64{1, 0}}
		if err := c.objs.Flows4.Put(&k, &st); err != nil {
			t.Fatal(err)
		}
	}
	scan(t0.Add(3 * time.Second))
	if c.last.flows != 32 {
		t.Fatalf("scan counted %d flows, want 32", c.last.flows)
	}
	due(t0.Add(4*time.Second), true, "the last scan found 32 flows (MaxFlows/2)")
}

// TestSweepHusks: the kernel frees reported ends once quiet for the linger
// (and nothing else), and a new connection on the tuple of one never goes
// with it: the SYN claims the entry first; if the free claimed it first,
// the SYN waits for the delete and, should it not come, is reported alone
// and counted.
func TestSweepHusks(t *testing.T) {
	const linger = 40 * time.Millisecond
	closeConn := func(c *Collector, sport uint16) {
		out := func(flags uint8) { run(t, c.objs.FlowIngress, ipv4("10.0.0.1", "10.0.0.2", tcp(sport, 80, flags, 0))) }
		back := func(flags uint8) { run(t, c.objs.FlowEgress, ipv4("10.0.0.2", "10.0.0.1", tcp(80, sport, flags, 0))) }
		out(syn)
		back(syn | ack)
		out(fin | ack)
		back(fin | ack)
		out(ack)
	}
	t.Run("only quiet reported ends are freed", func(t *testing.T) {
		c := testCollector(t, Config{EndLinger: linger})
		closeConn(c, 1000)
		closeConn(c, 1001)
		run(t, c.objs.FlowIngress, ipv4("10.0.0.1", "10.0.0.2", tcp(1002, 80, syn, 0))) // open
		if k := kernelEvents(t, c); len(k) != 2 || k[0].Kind != EventFlowEnd || k[1].Kind != EventFlowEnd {
			t.Fatalf("kernel events %+v, want two ends", k)
		}
		if n, err := freeHusks(c.objs.SweepHusks); err != nil || n != 0 {
			t.Fatalf("freed %d (%v) during the linger, want 0", n, err)
		}
		time.Sleep(linger + 10*time.Millisecond)
		if n, err := freeHusks(c.objs.SweepHusks); err != nil || n != 2 {
			t.Fatalf("freed %d (%v) after the linger, want the 2 ended flows", n, err)
		}
		flows := flowsIn(t, c.objs)
		if len(flows) != 1 {
			t.Fatalf("%d flows left, want the open one", len(flows))
		}
		for k := range flows {
			if k.PortLo != 1002 || k.PortHi != 80 {
				t.Fatalf("left %+v, want the open flow 1002->80", k)
			}
		}
	})
	t.Run("a new connection claims the ended entry and the free leaves it", func(t *testing.T) {
		c := testCollector(t, Config{EndLinger: linger})
		closeConn(c, 1000)
		kernelEvents(t, c)
		time.Sleep(linger + 10*time.Millisecond)
		run(t, c.objs.FlowIngress, ipv4("10.0.0.1", "10.0.0.2", tcp(1000, 80, syn, 0)))
		if n, err := freeHusks(c.objs.SweepHusks); err != nil || n != 0 {
			t.Fatalf("freed %d (%v), want 0: the entry is a new connection's", n, err)
		}
		flows := flowsIn(t, c.objs)
		if len(flows) != 1 {
			t.Fatalf("%d flows, want the new connection's", len(flows))
		}
		for _, st := range flows {
			if st.Packets != [2]uint64{1, 0} || st.Flags&0x1ff != uint32(TCPFlagSYN) || st.Flags&uint32(bpfFlowFlagFLOW_FREEING) != 0 {
				t.Fatalf("entry %+v, want the new SYN alone, unclaimed", st)
			}
		}
	})
	t.Run("a SYN on an entry the free claimed is reported alone if the delete does not come", func(t *testing.T) {
		c := testCollector(t, Config{EndLinger: linger})
		closeConn(c, 1000)
		kernelEvents(t, c)
		// Claim it as sweep_husks does, without the delete that follows.
		for k, st := range flowsIn(t, c.objs) {
			st.Flags |= uint32(bpfFlowFlagFLOW_FREEING)
			if err := updateFlow(c.objs, &k, &st, ebpf.UpdateAny); err != nil {
				t.Fatal(err)
			}
		}
		before := counters(t, c.objs)
		run(t, c.objs.FlowIngress, ipv4("10.0.0.1", "10.0.0.2", tcp(1000, 80, syn, 0)))
		k := kernelEvents(t, c)
		if len(k) != 1 || k[0].Kind != EventInsertFailed || k[0].PacketsFwd != 1 || k[0].TCPFlags != TCPFlagSYN {
			t.Fatalf("kernel events %+v, want the SYN reported alone", k)
		}
		if d := counters(t, c.objs)[CounterMapInsert] - before[CounterMapInsert]; d != 1 {
			t.Fatalf("map_insert moved by %d, want 1", d)
		}
	})
}
