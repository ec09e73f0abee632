//go:build linux

package socklb

import (
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// enterCgroup moves this process into cg until the end of the benchmark.
func enterCgroup(b *testing.B, cg testCgroup) {
	b.Helper()
	data, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		b.Fatal(err)
	}
	home := ""
	for line := range strings.Lines(string(data)) {
		if p, ok := strings.CutPrefix(strings.TrimSpace(line), "0::"); ok {
			home = p
		}
	}
	if home == "" {
		b.Skip("this process is in no cgroup v2")
	}
	root := cgroup2Root(b)
	pid := []byte(strconv.Itoa(os.Getpid()))
	if err := os.WriteFile(cg.Path+"/cgroup.procs", pid, 0o644); err != nil {
		b.Fatalf("enter cgroup: %v", err)
	}
	b.Cleanup(func() {
		if err := os.WriteFile(strings.TrimSuffix(root+home, "/")+"/cgroup.procs", pid, 0o644); err != nil {
			b.Errorf("leave cgroup: %v", err)
		}
	})
}

// drainEvents reads lb's decisions until it is closed, as the agent would.
func drainEvents(lb *LB) {
	go func() {
		var ev Event
		for lb.ReadEvent(&ev) == nil {
		}
	}()
}

// BenchmarkSockLBConnect measures what the connect4 program costs a
// connect(), in one run, beside no program and the floor (an empty
// cgroup/connect4 program, sock_floor): this process moves into a fresh
// cgroup, and each case attaches its program there.
//
// udp_* cases re-connect one UDP socket in a loop, to 127.0.0.1:port
// (none, floor, miss: the LB attached, the address no service's) or to a
// ClusterIP that the LB translates to it (translate: random over one
// backend; translate_maglev: a Maglev table of three). A UDP connect() is
// a route lookup and no packet, so the program's cost shows. tcp_* cases
// open a TCP connection to a local listener and reset it, per iteration:
// the whole connect as an application sees it. Every decision's event is
// read by a goroutine, as the agent would; lost/op counts events the ring
// refused.
func BenchmarkSockLBConnect(b *testing.B) {
	lb := loadTest(b, Config{})
	cg := newCgroup(b)
	enterCgroup(b, cg)
	drainEvents(lb)

	udpLn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer udpLn.Close()
	tcpLn, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer tcpLn.Close()
	go func() {
		for {
			c, err := tcpLn.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	udpPort := uint16(udpLn.LocalAddr().(*net.UDPAddr).Port)
	tcpPort := uint16(tcpLn.Addr().(*net.TCPAddr).Port)
	lo := netip.MustParseAddr("127.0.0.1")
	cip := netip.MustParseAddr("10.96.0.10")
	cip2 := netip.MustParseAddr("10.96.0.11")
	for _, s := range []Service{
		{Frontend: Frontend{Addr: cip, Port: 53, Proto: unix.IPPROTO_UDP}, ID: 1, Backends: []Backend{{ID: 1, Addr: lo, Port: udpPort}}},
		{Frontend: Frontend{Addr: cip2, Port: 53, Proto: unix.IPPROTO_UDP}, ID: 2, Algorithm: Maglev, Backends: []Backend{
			{ID: 1, Addr: lo, Port: udpPort}, {ID: 2, Addr: lo, Port: udpPort + 1}, {ID: 3, Addr: lo, Port: udpPort + 2}}},
		{Frontend: Frontend{Addr: cip, Port: 80, Proto: unix.IPPROTO_TCP}, ID: 3, Backends: []Backend{{ID: 1, Addr: lo, Port: tcpPort}}},
	} {
		if err := lb.SetService(s); err != nil {
			b.Fatal(err)
		}
	}

	// The kernel's own run time of the attached program (bpf_stats):
	// prog-ns/op, beside the whole syscall's ns/op.
	stats, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	if err != nil {
		b.Fatalf("enable BPF run-time stats: %v", err)
	}
	defer stats.Close()
	var running, releasing *ebpf.Program
	statsOf := func(p *ebpf.Program) (time.Duration, uint64) {
		if p == nil {
			return 0, 0
		}
		st, err := p.Stats()
		if err != nil {
			b.Fatal(err)
		}
		return st.Runtime, st.RunCount
	}
	progNs := func() (time.Duration, uint64) { return statsOf(running) }
	report := func(b *testing.B, before Counters, rt0 time.Duration, n0 uint64) {
		rt, n := progNs()
		if n > n0 {
			b.ReportMetric(float64(rt-rt0)/float64(n-n0), "prog-ns/op")
		}
		d := counterDelta(b, lb, before)
		b.ReportMetric(float64(d[CounterRingBuf])/float64(b.N), "lost/op")
		b.ReportMetric(float64(d[CounterPeerStorage])/float64(b.N), "storage/op")
	}

	udp := func(b *testing.B, dst netip.Addr, port uint16) {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			b.Fatal(err)
		}
		defer unix.Close(fd)
		sa := &unix.SockaddrInet4{Addr: dst.As4(), Port: int(port)}
		before := mustCounters(b, lb)
		rt0, n0 := progNs()
		for b.Loop() {
			if err := unix.Connect(fd, sa); err != nil {
				b.Fatal(err)
			}
		}
		report(b, before, rt0, n0)
	}
	tcp := func(b *testing.B, dst netip.Addr, port uint16) {
		sa := &unix.SockaddrInet4{Addr: dst.As4(), Port: int(port)}
		linger := &unix.Linger{Onoff: 1, Linger: 0}
		before := mustCounters(b, lb)
		rt0, n0 := progNs()
		relRt0, relN0 := statsOf(releasing)
		for b.Loop() {
			fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				b.Fatal(err)
			}
			for {
				err = unix.Connect(fd, sa)
				if err != unix.EINTR {
					break
				}
			}
			if err != nil && err != unix.EISCONN {
				b.Fatal(err)
			}
			unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, linger)
			unix.Close(fd)
		}
		report(b, before, rt0, n0)
		// sock_release's run time per closed socket (the client's; the
		// listener's accepted sockets close in the cgroup too).
		if rt, n := statsOf(releasing); n > relN0 {
			b.ReportMetric(float64(rt-relRt0)/float64(n-relN0), "release-ns/op")
		}
	}
	attachAs := func(b *testing.B, prog *ebpf.Program, at ebpf.AttachType) link.Link {
		l, err := link.AttachCgroup(link.CgroupOptions{Path: cg.Path, Attach: at, Program: prog})
		if err != nil {
			b.Fatal(err)
		}
		return l
	}
	attach := func(b *testing.B, prog *ebpf.Program) link.Link {
		return attachAs(b, prog, ebpf.AttachCGroupInet4Connect)
	}

	b.Run("udp/none", func(b *testing.B) { udp(b, lo, udpPort) })
	b.Run("tcp/none", func(b *testing.B) { tcp(b, lo, tcpPort) })
	floor := attach(b, lb.objs.SockFloor)
	running = lb.objs.SockFloor
	b.Run("udp/floor", func(b *testing.B) { udp(b, lo, udpPort) })
	b.Run("tcp/floor", func(b *testing.B) { tcp(b, lo, tcpPort) })
	floor.Close()
	prog := attach(b, lb.objs.Sock4Connect)
	running = lb.objs.Sock4Connect
	// sock_release frees the lb_peer slots of closed sockets, as
	// AttachCgroup attaches it: without it every slot would stay taken.
	release := attachAs(b, lb.objs.SockRelease, ebpf.AttachCgroupInetSockRelease)
	releasing = lb.objs.SockRelease
	b.Run("udp/miss", func(b *testing.B) { udp(b, lo, udpPort) })
	b.Run("udp/translate", func(b *testing.B) { udp(b, cip, 53) })
	b.Run("udp/translate_maglev", func(b *testing.B) { udp(b, cip2, 53) })
	b.Run("tcp/miss", func(b *testing.B) { tcp(b, lo, tcpPort) })
	b.Run("tcp/translate", func(b *testing.B) { tcp(b, cip, 80) })
	prog.Close()
	release.Close()
	releasing = nil

	// The same translation with Config.NoTCPPeer: no socket storage.
	np := loadTest(b, Config{NoTCPPeer: true})
	drainEvents(np)
	if err := np.SetService(Service{Frontend: Frontend{Addr: cip, Port: 80, Proto: unix.IPPROTO_TCP}, ID: 3,
		Backends: []Backend{{ID: 1, Addr: lo, Port: tcpPort}}}); err != nil {
		b.Fatal(err)
	}
	lb = np // report reads this LB's counters
	npProg := attach(b, np.objs.Sock4Connect)
	running = np.objs.Sock4Connect
	defer npProg.Close()
	b.Run("tcp/translate_nopeer", func(b *testing.B) { tcp(b, cip, 80) })
	if testing.Verbose() {
		fmt.Fprintln(os.Stderr, "cgroup", cg.Path)
	}
}

// BenchmarkSockLBEstablished shows that the socket LB leaves an
// established connection's packets alone: a 64-byte request and its echo
// over loopback, per iteration, on a connection dialled to the backend
// with no program attached (none) beside one dialled to a ClusterIP that
// the LB translated (translated), in one run. TCP has no hook after
// connect(); a UDP socket's every recvmsg() runs recvmsg4 (the reply's
// source rewritten to the ClusterIP), whose own time is prog-ns/op.
func BenchmarkSockLBEstablished(b *testing.B) {
	lb := loadTest(b, Config{})
	cg := newCgroup(b)
	enterCgroup(b, cg)
	drainEvents(lb)
	tcpLn, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer tcpLn.Close()
	go func() {
		for {
			c, err := tcpLn.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 64)
				for {
					if _, err := io.ReadFull(c, buf); err != nil {
						return
					}
					if _, err := c.Write(buf); err != nil {
						return
					}
				}
			}()
		}
	}()
	udpLn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer udpLn.Close()
	go func() {
		buf := make([]byte, 64)
		for {
			n, from, err := udpLn.ReadFrom(buf)
			if err != nil {
				return
			}
			udpLn.WriteTo(buf[:n], from)
		}
	}()
	lo := netip.MustParseAddr("127.0.0.1")
	cip := netip.MustParseAddr("10.96.0.10")
	tcpPort := uint16(tcpLn.Addr().(*net.TCPAddr).Port)
	udpPort := uint16(udpLn.LocalAddr().(*net.UDPAddr).Port)
	for _, s := range []Service{
		{Frontend: Frontend{Addr: cip, Port: 80, Proto: unix.IPPROTO_TCP}, ID: 1, Backends: []Backend{{ID: 1, Addr: lo, Port: tcpPort}}},
		{Frontend: Frontend{Addr: cip, Port: 53, Proto: unix.IPPROTO_UDP}, ID: 2, Backends: []Backend{{ID: 1, Addr: lo, Port: udpPort}}},
	} {
		if err := lb.SetService(s); err != nil {
			b.Fatal(err)
		}
	}
	stats, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	if err != nil {
		b.Fatalf("enable BPF run-time stats: %v", err)
	}
	defer stats.Close()

	pingPong := func(b *testing.B, network string, dst netip.Addr, port uint16, prog *ebpf.Program) {
		c, err := net.Dial(network, netip.AddrPortFrom(dst, port).String())
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		buf := make([]byte, 64)
		var rt0 time.Duration
		var n0 uint64
		if prog != nil {
			st, err := prog.Stats()
			if err != nil {
				b.Fatal(err)
			}
			rt0, n0 = st.Runtime, st.RunCount
		}
		for b.Loop() {
			if _, err := c.Write(buf); err != nil {
				b.Fatal(err)
			}
			if _, err := io.ReadFull(c, buf); err != nil {
				b.Fatal(err)
			}
		}
		if prog != nil {
			st, err := prog.Stats()
			if err != nil {
				b.Fatal(err)
			}
			if st.RunCount > n0 {
				b.ReportMetric(float64(st.Runtime-rt0)/float64(st.RunCount-n0), "prog-ns/op")
			}
		}
	}
	b.Run("tcp/none", func(b *testing.B) { pingPong(b, "tcp4", lo, tcpPort, nil) })
	b.Run("udp/none", func(b *testing.B) { pingPong(b, "udp4", lo, udpPort, nil) })
	if err := lb.AttachCgroup(cg.Path); err != nil {
		b.Fatal(err)
	}
	b.Run("tcp/translated", func(b *testing.B) { pingPong(b, "tcp4", cip, 80, nil) })
	b.Run("udp/translated", func(b *testing.B) { pingPong(b, "udp4", cip, 53, lb.objs.Sock4Recvmsg) })
}
