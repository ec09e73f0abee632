//go:build linux

package bpf

import (
	"fmt"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/flowbus/flowbus/bpf/nettest"
)

// storm opens as many TCP connections per second as it can from A to B for
// d: workers connect, the server accepts and closes at once, the client reads
// EOF and closes. It returns the number of completed connections per
// (client port, server port), keyed port<<16|port.
func storm(t testing.TB, f *nettest.Fixture, ports []int, d time.Duration, workers int) map[uint32]uint64 {
	t.Helper()
	// Listeners in B, one blocking accept thread each.
	var lfds []int
	var wg sync.WaitGroup
	err := nettest.In(f.NSB, func() error {
		for _, p := range ports {
			fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				return err
			}
			unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
			if err := unix.Bind(fd, &unix.SockaddrInet4{Port: p, Addr: f.B.As4()}); err != nil {
				return err
			}
			if err := unix.Listen(fd, 4096); err != nil {
				return err
			}
			lfds = append(lfds, fd)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, fd := range lfds {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				c, _, err := unix.Accept4(fd, unix.SOCK_CLOEXEC)
				if err == unix.EINTR || err == unix.ECONNABORTED {
					continue
				}
				if err != nil {
					return
				}
				unix.Close(c)
			}
		}()
	}
	defer func() {
		for _, fd := range lfds {
			unix.Shutdown(fd, unix.SHUT_RDWR)
		}
		wg.Wait()
		for _, fd := range lfds {
			unix.Close(fd)
		}
	}()

	var failed atomic.Uint64
	var mu sync.Mutex
	done := map[uint32]uint64{}
	end := time.Now().Add(d)
	var cw sync.WaitGroup
	for w := range workers {
		cw.Add(1)
		go func() {
			defer cw.Done()
			mine := map[uint32]uint64{}
			defer func() {
				mu.Lock()
				for k, v := range mine {
					done[k] += v
				}
				mu.Unlock()
			}()
			nettest.In(f.NSA, func() error {
				buf := make([]byte, 16)
				for i := w; time.Now().Before(end); i++ {
					fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
					if err != nil {
						failed.Add(1)
						continue
					}
					sa := &unix.SockaddrInet4{Port: ports[i%len(ports)], Addr: f.B.As4()}
					if err := unix.Connect(fd, sa); err != nil {
						failed.Add(1)
						unix.Close(fd)
						continue
					}
					local, err := unix.Getsockname(fd)
					if err != nil {
						failed.Add(1)
						unix.Close(fd)
						continue
					}
					for {
						n, err := unix.Read(fd, buf)
						if err == unix.EINTR {
							continue
						}
						if n <= 0 {
							break
						}
					}
					unix.Close(fd)
					mine[uint32(local.(*unix.SockaddrInet4).Port)<<16|uint32(sa.Port)]++
				}
				return nil
			})
		}()
	}
	cw.Wait()
	if n := failed.Load(); n > 0 {
		t.Logf("%d connection attempts failed (not counted as connections)", n)
	}
	return done
}

func total(m map[uint32]uint64) uint64 {
	var n uint64
	for _, v := range m {
		n += v
	}
	return n
}

// stormCounter counts a storm's connections as the collector reports them.
type stormCounter struct {
	server     [4]byte
	lo, hi     uint16
	flows      uint64   // final records with a SYN
	complete   []uint32 // client port<<16|server port of each record with SYN and FIN
	syns       uint64   // naive mode: SYN packet events
	strays     uint64   // records without a SYN
	strayKinds []string
	events     uint64
}

func (s *stormCounter) Event(ev *Event) {
	s.events++
	if ev.Protocol != 6 || ev.Dst.As4() != s.server || ev.DstPort < s.lo || ev.DstPort > s.hi {
		return
	}
	switch {
	case ev.Kind == EventPacket:
		if ev.TCPFlags&(TCPFlagSYN|TCPFlagACK) == TCPFlagSYN {
			s.syns++
		}
	case ev.Kind.Final() && ev.TCPFlags&TCPFlagSYN != 0:
		s.flows++
		if ev.TCPFlags&TCPFlagFIN != 0 {
			s.complete = append(s.complete, uint32(ev.SrcPort)<<16|uint32(ev.DstPort))
		}
	case ev.Kind.Final():
		// Packets of a tuple seen without its SYN (e.g. after its end was
		// reported and its entry freed): a record without a SYN.
		s.strays++
		s.strayKinds = append(s.strayKinds, fmt.Sprintf("%v %d->%d flags %#x fwd %d rev %d", ev.Kind, ev.SrcPort, ev.DstPort, ev.TCPFlags, ev.PacketsFwd, ev.PacketsRev))
	}
}
func (s *stormCounter) Flush() {}

// TestConnectStorm opens TCP connections as fast as this machine can for
// FLOWBUS_STORM_SECONDS (default 10) with the flow design, then the same
// with the naive per-packet-event build and the same small ring buffer, and
// reports both losses. With the flow design every connection must be in the
// output (ring buffer overflow only delays end records to the sweep).
func TestConnectStorm(t *testing.T) {
	if testing.Short() {
		t.Skip("connect storm takes ~25 s; skipped in -short")
	}
	secs := 10
	if s := os.Getenv("FLOWBUS_STORM_SECONDS"); s != "" {
		secs, _ = strconv.Atoi(s)
	}
	d := time.Duration(secs) * time.Second
	const ringBuf = 16 << 10
	ports := []int{20001, 20002, 20003, 20004, 20005, 20006, 20007, 20008}
	requireBPF(t)
	f := nettest.New(t, false)
	nettest.Sysctl(t, f.NSA, "net.ipv4.ip_local_port_range", "1024 65535")

	type result struct {
		conns, flows, syns, strays uint64
		missing, extra             uint64
		strayKinds                 []string
		rate                       float64
		c                          Counters
		s                          Stats
	}
	runOne := func(naive bool) result {
		sc := &stormCounter{server: f.B.As4(), lo: 20001, hi: 20008, complete: make([]uint32, 0, 1<<18)}
		cfg := Config{Interfaces: []string{f.HostA}, RingBufSize: ringBuf, MaxFlows: 1 << 17,
			NaivePerPacketEvents: naive, SweepInterval: 500 * time.Millisecond, EndLinger: 500 * time.Millisecond}
		c, stop := startCollector(t, cfg, sc)
		perTuple := storm(t, f, ports, d, 4)
		conns := total(perTuple)
		time.Sleep(1500 * time.Millisecond) // let the last ends arrive and the sweep run
		cnt, err := c.Counters()
		if err != nil {
			t.Fatal(err)
		}
		var per []uint64 // the one-counter read agrees (the storm is over)
		for i := range Counter(numCounters) {
			if n, err := c.Counter(i, &per); err != nil || n != cnt[i] {
				t.Errorf("naive=%v: Counter(%s) = %d, %v; Counters has %d", naive, i, n, err, cnt[i])
			}
		}
		st := c.Stats()
		stop()
		st2 := c.Stats()
		st.ReaderCPU = st2.ReaderCPU
		// Matched after the run, so the reader's CPU figure is the source's,
		// not this test's bookkeeping.
		complete := map[uint32]uint64{}
		for _, k := range sc.complete {
			complete[k]++
		}
		var missing, extra uint64
		for k, n := range perTuple {
			if r := complete[k]; r < n {
				if !naive && missing < 10 {
					t.Logf("connection %d->%d: %d completed, %d complete records", k>>16, k&0xffff, n, r)
				}
				missing += n - r
			}
		}
		for k, r := range complete {
			if n := perTuple[k]; r > n {
				extra += r - n
			}
		}
		return result{conns: conns, missing: missing, extra: extra, flows: sc.flows, syns: sc.syns, strays: sc.strays, strayKinds: sc.strayKinds, rate: float64(conns) / d.Seconds(), c: cnt, s: st}
	}

	ours := runOne(false)
	cpuPerFlow := time.Duration(0)
	if ours.flows > 0 {
		cpuPerFlow = ours.s.ReaderCPU / time.Duration(ours.flows)
	}
	t.Logf("flow design: %d connections in %v (%.0f/s); %d flow records with a SYN, %d connections without a complete record, %d complete records without a connection; ring buffer %d KiB: %d end events refused (recovered by the sweep), %d lost packet events, %d map insert failures; reader CPU %v = %v per flow",
		ours.conns, d, ours.rate, ours.flows, ours.missing, ours.extra, ringBuf>>10, ours.c[CounterRingBufEnd], ours.c.Lost(), ours.c[CounterMapInsert], ours.s.ReaderCPU, cpuPerFlow)
	if ours.strays > 0 {
		t.Logf("%d records without a SYN (packets of a tuple seen without its SYN, e.g. after its end was reported): %v", ours.strays, ours.strayKinds[:min(len(ours.strayKinds), 20)])
	}
	// Every connection the client completed has a record with its SYN and
	// FIN, matched by tuple, unless the loss counter says otherwise: none
	// is missing uncounted. (Until the kernel freed ended entries itself,
	// claiming each, a new connection on a reused 4-tuple could be freed
	// with its predecessor's entry by the Collector's batch delete: 8 of
	// 189,061 uncounted in one run, 34 of 230,111 under CI's load.)
	if ours.missing > ours.c.Lost() {
		t.Errorf("flow design: %d of %d connections have no complete record and only %d are counted lost",
			ours.missing, ours.conns, ours.c.Lost())
	}

	naive := runOne(true)
	missing := int64(naive.conns) - int64(naive.syns)
	t.Logf("naive per-packet events: %d connections in %v (%.0f/s); %d SYN events received, %d connections missing; %d packet events lost (ringbuf reserve failures); %d events delivered",
		naive.conns, d, naive.rate, naive.syns, max(missing, 0), naive.c.Lost(), naive.s.Events)
	if naive.c.Lost() == 0 && missing > 0 {
		t.Errorf("naive design lost %d connections without counting them", missing)
	}
	// The comparison means something only if the naive design, with the
	// same ring, does lose: a packet event per packet overflows it where
	// the flow design's per-connection records do not.
	if naive.c.Lost() == 0 || missing <= 0 {
		t.Errorf("the naive per-packet build lost nothing (%d packet events lost, %d connections missing): the storm did not overflow its ring, so it shows nothing about the flow design",
			naive.c.Lost(), missing)
	}

	// The same storm with no program attached, last so that it changes
	// neither measurement above: the rate the generator and this machine's
	// TCP stack reach alone, and the CPU each connection costs them. When
	// the rate with the datapath is close to this one, the limit is not the
	// datapath (on the 2-core development machine: ~130 µs of CPU per
	// connection in the kernel's TCP, bridge and veth paths; the flow
	// program, map and reader are ~3% of the storm's CPU in a perf profile).
	bd := min(d, 3*time.Second)
	var r0, r1 unix.Rusage
	unix.Getrusage(unix.RUSAGE_SELF, &r0)
	bare := total(storm(t, f, ports, bd, 4))
	unix.Getrusage(unix.RUSAGE_SELF, &r1)
	cpu := time.Duration(r1.Utime.Nano() - r0.Utime.Nano() + r1.Stime.Nano() - r0.Stime.Nano())
	if bare > 0 {
		bareRate := float64(bare) / bd.Seconds()
		t.Logf("no program attached: %d connections in %v (%.0f/s), %v of this process's CPU per connection (%.2f cores); the flow design ran at %.0f%% of that rate",
			bare, bd, bareRate, cpu/time.Duration(bare), cpu.Seconds()/bd.Seconds(), 100*ours.rate/bareRate)
	}
}
