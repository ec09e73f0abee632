//go:build linux

package bpf

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"
)

// BenchmarkProgram measures the kernel time per packet (BPF_PROG_TEST_RUN,
// reported as the custom metric ns/pkt) of the flow program for a packet of
// an established flow and for the first packet of a new flow, beside the
// floor: a program that only returns TC_ACT_OK, in the same run.
//
// "single" sub-benchmarks run one packet per syscall (the kernel times that
// one run), as the new-flow case needs a fresh tuple each time; "batched"
// ones let the kernel repeat the same packet 1000 times per syscall.
func BenchmarkProgram(b *testing.B) {
	objs := loadTest(b, loadOptions{ringBufSize: DefaultRingBufSize, maxFlows: DefaultMaxFlows})
	established := ipv4("10.0.0.1", "10.0.0.2", tcp(40000, 80, ack, 100))
	run(b, objs.FlowIngress, ipv4("10.0.0.1", "10.0.0.2", tcp(40000, 80, syn, 0)))

	single := func(b *testing.B, prog *ebpf.Program, next func(i int) []byte, reset func(int)) {
		var total time.Duration
		for i := 0; b.Loop(); i++ {
			if reset != nil && i > 0 && i%resetEvery == 0 {
				b.StopTimer()
				reset(i)
				b.StartTimer()
			}
			_, d, err := prog.Benchmark(next(i), 1, nil)
			if err != nil {
				b.Fatal(err)
			}
			total += d
		}
		b.ReportMetric(float64(total.Nanoseconds())/float64(b.N), "ns/pkt")
	}
	batched := func(b *testing.B, prog *ebpf.Program, pkt []byte) {
		var total time.Duration
		for b.Loop() {
			_, d, err := prog.Benchmark(pkt, 1000, nil)
			if err != nil {
				b.Fatal(err)
			}
			total += d
		}
		b.ReportMetric(float64(total.Nanoseconds())/float64(b.N), "ns/pkt")
	}

	b.Run("floor/single", func(b *testing.B) {
		single(b, objs.TcFloor, func(int) []byte { return established }, nil)
	})
	b.Run("established/single", func(b *testing.B) {
		single(b, objs.FlowIngress, func(int) []byte { return established }, nil)
	})
	// New flows, "warm": the map is emptied every resetEvery packets, so at
	// most that many flows are live and freed entries are reused, as in a
	// steady state where the kernel frees flows at their end. "cold": the map
	// fills up to 16×resetEvery fresh entries, so most inserts touch memory
	// no recent insert touched. new_flow opens TCP flows with a SYN (which
	// goes straight to the insert); new_udp_flow opens UDP flows, whose first
	// packet the fast path looks up in vain before the insert.
	// With policy: the pod behind the interface has 200 egress rules and
	// the ipcache 1,000 pod addresses; its flows to 10.0.0.2:80 are
	// allowed, so each new flow pays the ipcache, endpoint and four policy
	// lookups of its decision, and an established packet the revision check.
	withPolicy := func(b *testing.B, objs *bpfObjects) {
		m := newPolicyMaps(objs)
		ips := map[netip.Prefix]IPCacheEntry{netip.MustParsePrefix("10.0.0.2/32"): {Identity: 1000}}
		for i := range 1000 {
			ips[netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}), 32)] = IPCacheEntry{Identity: uint32(2000 + i%50)}
		}
		rules := []Rule{{Direction: Egress, Peer: 1000, Proto: 6, Port: 80, PortBits: 16, PolicyID: 1}}
		for i := range 199 {
			rules = append(rules, Rule{Direction: Egress, Peer: uint32(2000 + i%50), Proto: 6, Port: uint16(1024 + i*8), PortBits: uint8(13 + i%4), PolicyID: uint32(i)})
		}
		if err := m.SetIPCache(ips); err != nil {
			b.Fatal(err)
		}
		if err := m.SetEndpoint(Endpoint{IfIndex: 1, ID: 5, Identity: 1001, Enforce: [2]bool{true, true}}, rules); err != nil {
			b.Fatal(err)
		}
		if _, err := m.Commit(); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("established_with_policy/single", func(b *testing.B) {
		objs := loadTest(b, loadOptions{ringBufSize: DefaultRingBufSize, maxFlows: DefaultMaxFlows})
		withPolicy(b, objs)
		run(b, objs.FlowIngress, ipv4("10.0.0.1", "10.0.0.2", tcp(40000, 80, syn, 0)))
		single(b, objs.FlowIngress, func(int) []byte { return established }, nil)
	})
	// L7 capture: "l7_off" is established/single's program (no capture in
	// it); "l7_on_port_not_enabled" loads the capture for port 8080 and
	// sends an established packet of a flow to port 80 (the cost of the
	// feature on a port it does not follow); "l7_captured" a 100-byte
	// payload of a flow to 8080 (the L7-enabled packet: the full path and
	// the capture of its head into the ring, which the timer-stopped reset
	// drains every resetEvery packets).
	l7opts := loadOptions{ringBufSize: DefaultRingBufSize, maxFlows: DefaultMaxFlows,
		l7: L7Config{Ports: []L7Port{{Port: 8080, Proto: 6, Class: 1}}, HeadBytes: DefaultL7HeadBytes, RingBufSize: DefaultL7RingBuf}}
	b.Run("l7_on_port_not_enabled/single", func(b *testing.B) {
		objs := loadTest(b, l7opts)
		run(b, objs.FlowIngress, ipv4("10.0.0.1", "10.0.0.2", tcp(40000, 80, syn, 0)))
		single(b, objs.FlowIngress, func(int) []byte { return established }, nil)
	})
	b.Run("l7_captured/single", func(b *testing.B) {
		objs := loadTest(b, l7opts)
		rd, err := ringbuf.NewReader(objs.L7Events)
		if err != nil {
			b.Fatal(err)
		}
		defer rd.Close()
		run(b, objs.FlowIngress, ipv4("10.0.0.1", "10.0.0.2", tcp(40000, 8080, syn, 0)))
		pkt := ipv4("10.0.0.1", "10.0.0.2", tcp(40000, 8080, ack, 100))
		drain := func(int) {
			// The captures were submitted without a wakeup: a read past
			// its deadline takes what is there.
			var rec ringbuf.Record
			rd.SetDeadline(time.Now())
			for rd.AvailableBytes() > 0 {
				if err := rd.ReadInto(&rec); err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
					b.Fatal(err)
				}
			}
		}
		single(b, objs.FlowIngress, func(int) []byte { return pkt }, drain)
		drain(0)
		var per []uint64
		if err := objs.L7Counters.Lookup(uint32(1*L7CounterMax+1), &per); err == nil {
			var refused uint64
			for _, v := range per {
				refused += v
			}
			b.ReportMetric(float64(refused), "refused")
		}
	})
	for _, nf := range []struct {
		name       string
		clearEvery int
		start      bool
		udp        bool
		policy     bool
	}{
		{"new_flow/single", resetEvery, false, false, false},
		{"new_flow_cold_map/single", resetEvery * 16, false, false, false},
		{"new_flow_with_start_event/single", resetEvery, true, false, false},
		{"new_udp_flow/single", resetEvery, false, true, false},
		{"new_flow_with_policy/single", resetEvery, false, false, true},
	} {
		b.Run(nf.name, func(b *testing.B) {
			objs := loadTest(b, loadOptions{ringBufSize: DefaultRingBufSize, maxFlows: DefaultMaxFlows, emitStartEvents: nf.start})
			if nf.policy {
				withPolicy(b, objs)
			}
			rd, err := ringbuf.NewReader(objs.Events)
			if err != nil {
				b.Fatal(err)
			}
			defer rd.Close()
			pkt := ipv4("10.0.0.1", "10.0.0.2", tcp(0, 80, syn, 0))
			if nf.udp {
				pkt = ipv4("10.0.0.1", "10.0.0.2", l4{proto: 17, dport: 53, payload: 20})
			}
			gen := 0
			next := func(i int) []byte {
				// A fresh (source address, port) for every packet.
				binary.BigEndian.PutUint16(pkt[34:], uint16(i))
				pkt[14+12+2] = byte(i >> 16)
				pkt[14+12+1] = byte(gen)
				return pkt
			}
			// The agent drains the ring buffer continuously: read it every
			// resetEvery packets (a quarter of the default 1 MiB ring).
			reset := func(i int) {
				drainReader(b, rd)
				if i%nf.clearEvery == 0 {
					gen++
					clearFlows(b, objs)
				}
			}
			single(b, objs.FlowIngress, next, reset)
			c := counters(b, objs)
			if c[CounterMapInsert] != 0 || c.RingBufFailures() != 0 {
				b.Fatalf("benchmark hit a full map or ring buffer: %v", c)
			}
		})
	}
	b.Run("floor/batched", func(b *testing.B) { batched(b, objs.TcFloor, established) })
	b.Run("established/batched", func(b *testing.B) { batched(b, objs.FlowIngress, established) })
	b.Run("established_with_policy/batched", func(b *testing.B) {
		objs := loadTest(b, loadOptions{ringBufSize: DefaultRingBufSize, maxFlows: DefaultMaxFlows})
		withPolicy(b, objs)
		run(b, objs.FlowIngress, ipv4("10.0.0.1", "10.0.0.2", tcp(40000, 80, syn, 0)))
		batched(b, objs.FlowIngress, established)
	})
}

const resetEvery = 2000

func clearFlows(b *testing.B, objs *bpfObjects) {
	if err := scanFlows(objs, true, func(*bpfFlowKey, *bpfFlowStats) {}); err != nil {
		b.Fatal(err)
	}
}

func drainReader(b *testing.B, rd *ringbuf.Reader) {
	rd.SetDeadline(time.Now())
	var rec ringbuf.Record
	for rd.ReadInto(&rec) == nil {
	}
}
