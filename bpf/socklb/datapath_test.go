//go:build linux

package socklb

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/flowbus/flowbus/bpf/nettest"
	"golang.org/x/sys/unix"
)

// helperEnv carries the client's job to the re-executed test binary.
const helperEnv = "FLOWBUS_SOCKLB_CLIENT"

// TestSockLBHelperClient is not a test: it is the client that the datapath
// tests run, re-executed from the test binary, inside the client pod's
// network namespace and the test's cgroup. Its job is in helperEnv:
//
//	tcp ADDR:PORT N      N connects, each followed by getpeername and a read to EOF
//	tcp6 ADDR:PORT N     the same from IPv6 sockets, to the v4-mapped ADDR
//	tcpfor ADDR:PORT D   the same until D (a duration) has passed
//	tcphold ADDR:PORT N  N connects held open together, then each one's
//	                     getpeername and read, then all closed
//	udp ADDR:PORT N      N sendto/recvfrom on one unconnected socket
//
// It writes one line per connect or datagram (see runClient) and exits.
func TestSockLBHelperClient(t *testing.T) {
	job := os.Getenv(helperEnv)
	if job == "" {
		t.Skip("the datapath tests' client process, run by them")
	}
	w := bufio.NewWriter(os.Stdout)
	err := clientJob(w, job)
	w.Flush()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	os.Exit(0)
}

func errnoOf(err error) int {
	var e syscall.Errno
	if errors.As(err, &e) {
		return int(e)
	}
	if err != nil {
		return -1
	}
	return 0
}

func sockaddrString(sa unix.Sockaddr) string {
	switch s := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(s.Addr), uint16(s.Port)).String()
	case *unix.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(s.Addr), uint16(s.Port)).String()
	}
	return "-"
}

func clientJob(w *bufio.Writer, job string) error {
	f := strings.Fields(job)
	if len(f) != 3 {
		return fmt.Errorf("job %q", job)
	}
	ap, err := netip.ParseAddrPort(f[1])
	if err != nil {
		return err
	}
	var dst unix.Sockaddr = &unix.SockaddrInet4{Addr: ap.Addr().As4(), Port: int(ap.Port())}
	family := unix.AF_INET
	if f[0] == "tcp6" { // an IPv6 socket to the v4-mapped address
		dst = &unix.SockaddrInet6{Addr: netip.AddrFrom16(ap.Addr().As16()).As16(), Port: int(ap.Port())}
		family = unix.AF_INET6
		f[0] = "tcp"
	}
	buf := make([]byte, 256)
	switch f[0] {
	case "tcp", "tcpfor":
		n, deadline := 0, time.Time{}
		if f[0] == "tcp" {
			if n, err = strconv.Atoi(f[2]); err != nil {
				return err
			}
		} else {
			d, err := time.ParseDuration(f[2])
			if err != nil {
				return err
			}
			deadline = time.Now().Add(d)
		}
		for i := 0; (f[0] == "tcp" && i < n) || (f[0] == "tcpfor" && time.Now().Before(deadline)); i++ {
			fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				return err
			}
			cookie, err := unix.GetsockoptUint64(fd, unix.SOL_SOCKET, unix.SO_COOKIE)
			if err != nil {
				return err
			}
			unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Sec: 5})
			if err := unix.Connect(fd, dst); err != nil {
				fmt.Fprintf(w, "T %d %d - -\n", cookie, errnoOf(err))
				unix.Close(fd)
				continue
			}
			peer := "-"
			if sa, err := unix.Getpeername(fd); err == nil {
				peer = sockaddrString(sa)
			}
			var got []byte
			for {
				k, err := unix.Read(fd, buf)
				if err == unix.EINTR {
					continue
				}
				if err != nil {
					got = fmt.Appendf(got, "(read-errno-%d)", errnoOf(err))
				}
				if k <= 0 || err != nil {
					break
				}
				got = append(got, buf[:k]...)
			}
			// Reset, not closed: no TIME_WAIT on the server, whose next
			// connection from a reused client port it could refuse.
			unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
			unix.Close(fd)
			fmt.Fprintf(w, "T %d 0 %s %s\n", cookie, peer, orDash(got))
		}
	case "tcphold":
		n, err := strconv.Atoi(f[2])
		if err != nil {
			return err
		}
		type held struct {
			fd     int
			cookie uint64
		}
		var open []held
		defer func() {
			for _, h := range open {
				unix.Close(h.fd)
			}
		}()
		for range n {
			fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				return err
			}
			cookie, err := unix.GetsockoptUint64(fd, unix.SOL_SOCKET, unix.SO_COOKIE)
			if err != nil {
				unix.Close(fd)
				return err
			}
			unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Sec: 5})
			if err := unix.Connect(fd, dst); err != nil {
				fmt.Fprintf(w, "T %d %d - -\n", cookie, errnoOf(err))
				unix.Close(fd)
				continue
			}
			open = append(open, held{fd, cookie})
		}
		for _, h := range open {
			peer := "-"
			if sa, err := unix.Getpeername(h.fd); err == nil {
				peer = sockaddrString(sa)
			}
			k, _ := unix.Read(h.fd, buf)
			fmt.Fprintf(w, "T %d 0 %s %s\n", h.cookie, peer, orDash(buf[:max(k, 0)]))
		}
	case "udp":
		n, err := strconv.Atoi(f[2])
		if err != nil {
			return err
		}
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		cookie, err := unix.GetsockoptUint64(fd, unix.SOL_SOCKET, unix.SO_COOKIE)
		if err != nil {
			return err
		}
		unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Sec: 2})
		for i := range n {
			if err := unix.Sendto(fd, []byte("q"+strconv.Itoa(i)), 0, dst); err != nil {
				fmt.Fprintf(w, "U %d %d - -\n", cookie, errnoOf(err))
				continue
			}
			k, from, err := unix.Recvfrom(fd, buf, 0)
			if err != nil {
				fmt.Fprintf(w, "U %d %d - -\n", cookie, errnoOf(err))
				continue
			}
			fmt.Fprintf(w, "U %d 0 %s %s\n", cookie, sockaddrString(from), orDash(buf[:k]))
		}
	default:
		return fmt.Errorf("job %q", job)
	}
	return nil
}

func orDash(b []byte) string {
	if len(b) == 0 {
		return "-"
	}
	return string(b)
}

// result is one line of the client: a connect or a datagram.
type result struct {
	Cookie   uint64
	Errno    int
	Peer     string // getpeername, or the reply's source
	Identity string // what the server said it is: its address:port
}

type clientRun struct {
	PID     uint32
	Results []result
}

// startClient runs the client job in ns and cg; wait returns its lines.
func startClient(t *testing.T, cg testCgroup, ns, job string) (pid uint32, wait func() clientRun) {
	t.Helper()
	fd, err := unix.Open(cg.Path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	cmd := exec.Command("ip", "netns", "exec", ns, os.Args[0], "-test.run=^TestSockLBHelperClient$", "-test.count=1")
	// No preemption signals: they would interrupt the client's raw
	// syscalls (EINTR).
	cmd.Env = append(os.Environ(), helperEnv+"="+job, "GODEBUG=asyncpreemptoff=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: fd}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waited := false
	t.Cleanup(func() { // a test that failed before wait: the cgroup must empty
		if !waited {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	return uint32(cmd.Process.Pid), func() clientRun {
		waited = true
		t.Helper()
		if err := cmd.Wait(); err != nil {
			t.Fatalf("client %q: %v: %s", job, err, stderr.String())
		}
		run := clientRun{PID: uint32(cmd.Process.Pid)}
		for line := range strings.Lines(stdout.String()) {
			f := strings.Fields(line)
			if len(f) == 5 && (f[0] == "T" || f[0] == "U") {
				c, _ := strconv.ParseUint(f[1], 10, 64)
				e, _ := strconv.Atoi(f[2])
				run.Results = append(run.Results, result{Cookie: c, Errno: e, Peer: f[3], Identity: f[4]})
			}
		}
		return run
	}
}

func runClient(t *testing.T, cg testCgroup, ns, job string) clientRun {
	t.Helper()
	_, wait := startClient(t, cg, ns, job)
	return wait()
}

// collector keeps every decision the LB reports.
type collector struct {
	mu  sync.Mutex
	evs []Event
}

func collect(t *testing.T, lb *LB) *collector {
	c := &collector{}
	go func() {
		for {
			var ev Event
			if err := lb.ReadEvent(&ev); err != nil {
				return
			}
			c.mu.Lock()
			c.evs = append(c.evs, ev)
			c.mu.Unlock()
		}
	}()
	return c
}

// take waits until n events arrived (5 s at most), then 100 ms more for any
// extra, and returns and forgets them all.
func (c *collector) take(n int) []Event {
	deadline := time.Now().Add(5 * time.Second)
	for {
		c.mu.Lock()
		k := len(c.evs)
		c.mu.Unlock()
		if k >= n || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond)
	c.mu.Lock()
	defer c.mu.Unlock()
	out := c.evs
	c.evs = nil
	return out
}

// serve runs, in pod p, a TCP server on tcpPort that sends its own
// address:port and closes, and a UDP server on udpPort that answers every
// datagram with its address:port.
func serve(t *testing.T, p nettest.Pod, tcpPort, udpPort uint16) {
	t.Helper()
	var ln net.Listener
	var pc net.PacketConn
	err := nettest.In(p.NS, func() error {
		var err error
		if ln, err = net.Listen("tcp4", netip.AddrPortFrom(p.Addr, tcpPort).String()); err != nil {
			return err
		}
		pc, err = net.ListenPacket("udp4", netip.AddrPortFrom(p.Addr, udpPort).String())
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close(); pc.Close() })
	tcpID := []byte(netip.AddrPortFrom(p.Addr, tcpPort).String())
	udpID := []byte(netip.AddrPortFrom(p.Addr, udpPort).String())
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Write(tcpID)
			c.Close()
		}
	}()
	go func() {
		buf := make([]byte, 512)
		for {
			_, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo(udpID, from)
		}
	}()
}

func counterDelta(t testing.TB, lb *LB, before Counters) Counters {
	t.Helper()
	now, err := lb.Counters()
	if err != nil {
		t.Fatal(err)
	}
	for i := range now {
		now[i] -= before[i]
	}
	return now
}

func mustCounters(t testing.TB, lb *LB) Counters {
	t.Helper()
	c, err := lb.Counters()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// checkEvents requires exactly one event per result, by cookie for TCP
// (one socket per connect), in order for UDP (one socket), each with the
// fields want gives and, when translated, the backend the server named.
func checkEvents(t *testing.T, evs []Event, run clientRun, cg testCgroup, want Event) {
	t.Helper()
	if len(evs) != len(run.Results) {
		t.Fatalf("%d decision events for %d client calls", len(evs), len(run.Results))
	}
	byCookie := map[uint64][]Event{}
	for _, ev := range evs {
		byCookie[ev.Cookie] = append(byCookie[ev.Cookie], ev)
	}
	seen := map[uint64]int{}
	for i, r := range run.Results {
		list := byCookie[r.Cookie]
		k := seen[r.Cookie]
		seen[r.Cookie]++
		if k >= len(list) {
			t.Fatalf("call %d (cookie %d): no decision event", i, r.Cookie)
		}
		ev := list[k]
		w := want
		w.Time, w.MonoNs, w.Cookie, w.Backend, w.BackendID = ev.Time, ev.MonoNs, r.Cookie, ev.Backend, ev.BackendID
		w.CgroupID, w.PID = cg.ID, run.PID
		if ev != w {
			t.Fatalf("call %d: event\n%+v, want\n%+v", i, ev, w)
		}
		if want.Verdict == Translated {
			if ev.Backend.String() != r.Identity {
				t.Fatalf("call %d (cookie %d): event names backend %s, the server was %s", i, r.Cookie, ev.Backend, r.Identity)
			}
		} else if ev.Backend.IsValid() || ev.BackendID != 0 {
			t.Fatalf("call %d: refused, yet event names backend %v (id %d)", i, ev.Backend, ev.BackendID)
		}
	}
	for c, list := range byCookie {
		if len(list) != seen[c] {
			t.Fatalf("cookie %d: %d events for %d calls", c, len(list), seen[c])
		}
	}
}

// TestSockLBDatapath runs clients in a cgroup with the socket LB attached,
// in a pod of a five-pod LAN: pods 1-3 are a service's ready backends,
// pod 4 serves the same ports but is not ready (not a backend).
func TestSockLBDatapath(t *testing.T) {
	lb := loadTest(t, Config{MaglevM: 1021})
	cg := newCgroup(t)
	lan := nettest.NewLAN(t, 5)
	if err := lb.AttachCgroup(cg.Path); err != nil {
		t.Fatal(err)
	}
	events := collect(t, lb)
	client := lan.Pods[0].NS
	var tcpBackends, udpBackends []Backend
	for i, p := range lan.Pods[1:] {
		serve(t, p, 8080, 5353)
		if i < 3 {
			tcpBackends = append(tcpBackends, Backend{ID: uint32(101 + i), Addr: p.Addr, Port: 8080})
			udpBackends = append(udpBackends, Backend{ID: uint32(201 + i), Addr: p.Addr, Port: 5353})
		}
	}
	ids := map[string]uint32{}
	for _, b := range append(append([]Backend{}, tcpBackends...), udpBackends...) {
		ids[b.Name()] = b.ID
	}
	clusterIP := netip.MustParseAddr("10.96.0.10")
	web := Service{Frontend: Frontend{Addr: clusterIP, Port: 80, Proto: unix.IPPROTO_TCP}, ID: 1, Backends: tcpBackends}
	dns := Service{Frontend: Frontend{Addr: clusterIP, Port: 53, Proto: unix.IPPROTO_UDP}, ID: 2, Backends: udpBackends}
	for _, s := range []Service{web, dns} {
		if err := lb.SetService(s); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("random", func(t *testing.T) {
		const n = 10000
		before := mustCounters(t, lb)
		run := runClient(t, cg, client, fmt.Sprintf("tcp %s:80 %d", clusterIP, n))
		if len(run.Results) != n {
			t.Fatalf("%d connects, want %d", len(run.Results), n)
		}
		counts := map[string]int{}
		for i, r := range run.Results {
			if r.Errno != 0 {
				t.Fatalf("connect %d: errno %d", i, r.Errno)
			}
			if r.Peer != "10.96.0.10:80" {
				t.Fatalf("connect %d: getpeername %s, want the ClusterIP 10.96.0.10:80", i, r.Peer)
			}
			counts[r.Identity]++
		}
		t.Logf("%d connects over 3 backends: %d %d %d", n, counts[tcpBackends[0].Name()], counts[tcpBackends[1].Name()], counts[tcpBackends[2].Name()])
		share := float64(n) / float64(len(tcpBackends))
		for _, b := range tcpBackends {
			c := counts[b.Name()]
			if math.Abs(float64(c)-share) > 0.05*share {
				t.Errorf("backend %s: %d connections, not within 5 %% of %.1f", b.Name(), c, share)
			}
			delete(counts, b.Name())
		}
		if len(counts) != 0 {
			t.Errorf("connections to what is not a ready backend: %v", counts)
		}
		checkEvents(t, events.take(n), run, cg, Event{ServiceID: 1, Frontend: netip.MustParseAddrPort("10.96.0.10:80"),
			Proto: unix.IPPROTO_TCP, Family: 4, Verdict: Translated, Hook: HookConnect})
		d := counterDelta(t, lb, before)
		if d != (Counters{CounterTranslated: n, CounterRevNATRewrite: n}) {
			t.Fatalf("counters moved by %v, want %d translated and %d getpeername rewrites, nothing else", d, n, n)
		}
	})

	t.Run("v4_mapped", func(t *testing.T) {
		// IPv6 sockets that dial the v4-mapped ClusterIP go through
		// connect6 and getpeername6 and find the IPv4 service.
		const n = 300
		run := runClient(t, cg, client, fmt.Sprintf("tcp6 %s:80 %d", clusterIP, n))
		if len(run.Results) != n {
			t.Fatalf("%d connects, want %d", len(run.Results), n)
		}
		for i, r := range run.Results {
			if r.Errno != 0 || r.Peer != "[::ffff:10.96.0.10]:80" || ids[r.Identity] == 0 || ids[r.Identity] > 103 {
				t.Fatalf("connect %d: %+v, want errno 0, peer [::ffff:10.96.0.10]:80 and a ready TCP backend", i, r)
			}
		}
		checkEvents(t, events.take(n), run, cg, Event{ServiceID: 1, Frontend: netip.MustParseAddrPort("10.96.0.10:80"),
			Proto: unix.IPPROTO_TCP, Family: 6, Verdict: Translated, Hook: HookConnect})
	})

	t.Run("udp", func(t *testing.T) {
		const n = 300
		before := mustCounters(t, lb)
		run := runClient(t, cg, client, fmt.Sprintf("udp %s:53 %d", clusterIP, n))
		if len(run.Results) != n {
			t.Fatalf("%d datagrams, want %d", len(run.Results), n)
		}
		counts := map[string]int{}
		for i, r := range run.Results {
			if r.Errno != 0 {
				t.Fatalf("datagram %d: errno %d", i, r.Errno)
			}
			if r.Peer != "10.96.0.10:53" {
				t.Fatalf("datagram %d: the reply came from %s, want the ClusterIP 10.96.0.10:53", i, r.Peer)
			}
			counts[r.Identity]++
		}
		for _, b := range udpBackends {
			if counts[b.Name()] == 0 {
				t.Errorf("backend %s answered none of %d queries (random choice per sendmsg)", b.Name(), n)
			}
			delete(counts, b.Name())
		}
		if len(counts) != 0 {
			t.Errorf("answers from what is not a ready backend: %v", counts)
		}
		checkEvents(t, events.take(n), run, cg, Event{ServiceID: 2, Frontend: netip.MustParseAddrPort("10.96.0.10:53"),
			Proto: unix.IPPROTO_UDP, Family: 4, Verdict: Translated, Hook: HookSendmsg})
		if d := counterDelta(t, lb, before); d != (Counters{CounterTranslated: n, CounterRevNATRewrite: n}) {
			t.Fatalf("counters moved by %v, want %d translated and %d recvmsg rewrites, nothing else", d, n, n)
		}
	})

	t.Run("maglev", func(t *testing.T) {
		const n = 2000
		f := Frontend{Addr: netip.MustParseAddr("10.96.0.11"), Port: 80, Proto: unix.IPPROTO_TCP}
		if err := lb.SetService(Service{Frontend: f, ID: 3, Algorithm: Maglev, Backends: tcpBackends}); err != nil {
			t.Fatal(err)
		}
		run := runClient(t, cg, client, fmt.Sprintf("tcp %s:80 %d", f.Addr, n))
		if len(run.Results) != n {
			t.Fatalf("%d connects, want %d", len(run.Results), n)
		}
		counts := map[string]int{}
		for i, r := range run.Results {
			want, ok := lb.MaglevBackend(f, r.Cookie)
			if !ok {
				t.Fatal("no Maglev table")
			}
			if r.Errno != 0 || r.Peer != "10.96.0.11:80" || r.Identity != want.Name() {
				t.Fatalf("connect %d (cookie %d, entry %d): errno %d, peer %s, server %s; want 0, 10.96.0.11:80, %s (the table's)",
					i, r.Cookie, MaglevIndex(r.Cookie, 1021), r.Errno, r.Peer, r.Identity, want.Name())
			}
			counts[r.Identity]++
		}
		t.Logf("%d connects by the Maglev table: %v", n, counts)
		if len(counts) != 3 {
			t.Errorf("%d backends reached, want 3", len(counts))
		}
		checkEvents(t, events.take(n), run, cg, Event{ServiceID: 3, Frontend: netip.MustParseAddrPort("10.96.0.11:80"),
			Proto: unix.IPPROTO_TCP, Family: 4, Verdict: Translated, Hook: HookConnect})
	})

	t.Run("remove_backend", func(t *testing.T) {
		// A client connects for 3 s; after 1 s the third backend leaves the
		// service. No connect the kernel decides after the update returned
		// may reach it.
		pid, wait := startClient(t, cg, client, fmt.Sprintf("tcpfor %s:80 3s", clusterIP))
		time.Sleep(time.Second)
		removed := tcpBackends[2]
		t0 := monoNow()
		if err := lb.SetService(Service{Frontend: web.Frontend, ID: 1, Backends: tcpBackends[:2]}); err != nil {
			t.Fatal(err)
		}
		t1 := monoNow()
		run := wait()
		if run.PID != pid {
			t.Fatal("pid changed")
		}
		evs := events.take(len(run.Results))
		checkEvents(t, evs, run, cg, Event{ServiceID: 1, Frontend: netip.MustParseAddrPort("10.96.0.10:80"),
			Proto: unix.IPPROTO_TCP, Family: 4, Verdict: Translated, Hook: HookConnect})
		var beforeN, toRemovedBefore, afterN int
		for _, ev := range evs {
			switch {
			case ev.MonoNs < t0:
				beforeN++
				if ev.Backend.String() == removed.Name() {
					toRemovedBefore++
				}
			case ev.MonoNs > t1:
				afterN++
				if ev.Backend.String() == removed.Name() {
					t.Fatalf("connect decided %v after the update returned reached the removed backend %s", time.Duration(ev.MonoNs-t1), removed.Name())
				}
			}
		}
		t.Logf("update took %v; before it %d connects (%d to %s), after it %d connects, none to it", time.Duration(t1-t0), beforeN, toRemovedBefore, removed.Name(), afterN)
		if toRemovedBefore == 0 || afterN == 0 {
			t.Fatalf("the test saw %d connects to the removed backend before the update and %d connects after: it proves nothing", toRemovedBefore, afterN)
		}
		if err := lb.SetService(web); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("no_backend", func(t *testing.T) {
		f := Frontend{Addr: netip.MustParseAddr("10.96.0.12"), Port: 80, Proto: unix.IPPROTO_TCP}
		fu := Frontend{Addr: f.Addr, Port: 53, Proto: unix.IPPROTO_UDP}
		for i, s := range []Service{{Frontend: f, ID: 4}, {Frontend: fu, ID: 5, Algorithm: Maglev}} {
			if err := lb.SetService(s); err != nil {
				t.Fatalf("service %d: %v", i, err)
			}
		}
		before := mustCounters(t, lb)
		run := runClient(t, cg, client, "tcp 10.96.0.12:80 5")
		for i, r := range run.Results {
			if r.Errno != int(unix.ECONNREFUSED) {
				t.Fatalf("connect %d to an empty service: errno %d, want ECONNREFUSED (%d)", i, r.Errno, unix.ECONNREFUSED)
			}
		}
		checkEvents(t, events.take(5), run, cg, Event{ServiceID: 4, Frontend: netip.MustParseAddrPort("10.96.0.12:80"),
			Proto: unix.IPPROTO_TCP, Family: 4, Verdict: NoBackend, Hook: HookConnect})
		runU := runClient(t, cg, client, "udp 10.96.0.12:53 3")
		for i, r := range runU.Results {
			if r.Errno != int(unix.ECONNREFUSED) {
				t.Fatalf("sendto %d to an empty service: errno %d, want ECONNREFUSED (%d)", i, r.Errno, unix.ECONNREFUSED)
			}
		}
		checkEvents(t, events.take(3), runU, cg, Event{ServiceID: 5, Frontend: netip.MustParseAddrPort("10.96.0.12:53"),
			Proto: unix.IPPROTO_UDP, Family: 4, Verdict: NoBackend, Hook: HookSendmsg})
		if d := counterDelta(t, lb, before); d != (Counters{CounterNoBackend: 8}) {
			t.Fatalf("counters moved by %v, want 8 refusals, nothing else", d)
		}
		for _, s := range []Frontend{f, fu} {
			if err := lb.RemoveService(s); err != nil {
				t.Fatal(err)
			}
		}
		// Removed, the frontend is an address like any other: nothing
		// answers there, and the kernel decides nothing.
		run = runClient(t, cg, client, "udp 10.96.0.12:53 1")
		if len(run.Results) != 1 || run.Results[0].Errno != int(unix.EAGAIN) {
			t.Fatalf("a datagram to a removed service: %+v, want no answer (EAGAIN at the receive timeout)", run.Results)
		}
		if evs := events.take(0); len(evs) != 0 {
			t.Fatalf("%d events for a removed service", len(evs))
		}
	})

	t.Run("not_a_service", func(t *testing.T) {
		pod := lan.Pods[4] // serves, but is no backend: reached by its own address only
		before := mustCounters(t, lb)
		run := runClient(t, cg, client, fmt.Sprintf("tcp %s:8080 5", pod.Addr))
		for i, r := range run.Results {
			want := netip.AddrPortFrom(pod.Addr, 8080).String()
			if r.Errno != 0 || r.Peer != want || r.Identity != want {
				t.Fatalf("connect %d straight to a pod: %+v, want errno 0 and peer and server %s", i, r, want)
			}
		}
		if evs := events.take(0); len(evs) != 0 {
			t.Fatalf("%d events for connects to no service", len(evs))
		}
		if d := counterDelta(t, lb, before); d != (Counters{}) {
			t.Fatalf("counters moved by %v for connects to no service", d)
		}
	})
}

func monoNow() int64 {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return ts.Nano()
}

// oneBackend is a two-pod LAN, lb loaded with cfg and attached to a fresh
// cgroup, and the second pod serving as the one backend of 10.96.0.10:80
// (TCP, backend id 11) and :53 (UDP, id 12).
type oneBackend struct {
	lb        *LB
	cg        testCgroup
	events    *collector
	client    string // the first pod's network namespace
	backend   nettest.Pod
	clusterIP netip.Addr
}

func newOneBackend(t *testing.T, cfg Config) *oneBackend {
	o := &oneBackend{lb: loadTest(t, cfg), cg: newCgroup(t), clusterIP: netip.MustParseAddr("10.96.0.10")}
	lan := nettest.NewLAN(t, 2)
	if err := o.lb.AttachCgroup(o.cg.Path); err != nil {
		t.Fatal(err)
	}
	o.events = collect(t, o.lb)
	o.client, o.backend = lan.Pods[0].NS, lan.Pods[1]
	serve(t, o.backend, 8080, 5353)
	for _, s := range []Service{
		{Frontend: Frontend{Addr: o.clusterIP, Port: 80, Proto: unix.IPPROTO_TCP}, ID: 1, Backends: []Backend{{ID: 11, Addr: o.backend.Addr, Port: 8080}}},
		{Frontend: Frontend{Addr: o.clusterIP, Port: 53, Proto: unix.IPPROTO_UDP}, ID: 2, Backends: []Backend{{ID: 12, Addr: o.backend.Addr, Port: 5353}}},
	} {
		if err := o.lb.SetService(s); err != nil {
			t.Fatal(err)
		}
	}
	return o
}

// TestSockLBPeerSlots runs with four lb_peer slots: connections held open
// together take the slot their cookie selects, and the rest keep their
// translation in socket storage (counted); every getpeername() gives the
// ClusterIP either way. Once they are closed, sock_release has freed the
// slots: connections one after another each take one, none falls back.
func TestSockLBPeerSlots(t *testing.T) {
	o := newOneBackend(t, Config{PeerSlots: 4})
	lb, cg, events, clusterIP := o.lb, o.cg, o.events, o.clusterIP
	want := Event{ServiceID: 1, Frontend: netip.MustParseAddrPort("10.96.0.10:80"), Proto: unix.IPPROTO_TCP, Family: 4,
		Verdict: Translated, Hook: HookConnect}
	const n = 24
	before := mustCounters(t, lb)
	run := runClient(t, cg, o.client, fmt.Sprintf("tcphold %s:80 %d", clusterIP, n))
	if len(run.Results) != n {
		t.Fatalf("%d connects, want %d", len(run.Results), n)
	}
	slots := map[uint64]bool{}
	for i, r := range run.Results {
		if r.Errno != 0 || r.Peer != "10.96.0.10:80" {
			t.Fatalf("held connection %d: errno %d, getpeername %s; want 0 and the ClusterIP", i, r.Errno, r.Peer)
		}
		slots[r.Cookie&3] = true
	}
	checkEvents(t, events.take(n), run, cg, want)
	stored := uint64(n - len(slots))
	if d := counterDelta(t, lb, before); d != (Counters{CounterTranslated: n, CounterRevNATRewrite: n, CounterPeerStorage: stored}) {
		t.Fatalf("counters moved by %v, want %d translated and rewritten, %d in socket storage (%d slots taken)", d, n, stored, len(slots))
	}
	const m = 40
	before = mustCounters(t, lb)
	run = runClient(t, cg, o.client, fmt.Sprintf("tcp %s:80 %d", clusterIP, m))
	if len(run.Results) != m {
		t.Fatalf("%d connects, want %d", len(run.Results), m)
	}
	for i, r := range run.Results {
		if r.Errno != 0 || r.Peer != "10.96.0.10:80" {
			t.Fatalf("connect %d: errno %d, getpeername %s; want 0 and the ClusterIP", i, r.Errno, r.Peer)
		}
	}
	checkEvents(t, events.take(m), run, cg, want)
	if d := counterDelta(t, lb, before); d != (Counters{CounterTranslated: m, CounterRevNATRewrite: m}) {
		t.Fatalf("counters moved by %v, want %d translated and rewritten and none in socket storage: the closed connections' slots were not freed", d, m)
	}
}

// TestSockLBNoTCPPeer: with Config.NoTCPPeer a translated TCP socket's
// peer is its backend (nothing stored, nothing rewritten), while UDP
// replies still come from the ClusterIP.
func TestSockLBNoTCPPeer(t *testing.T) {
	o := newOneBackend(t, Config{NoTCPPeer: true})
	lb, cg, events, clusterIP, backend := o.lb, o.cg, o.events, o.clusterIP, o.backend
	const n = 200
	before := mustCounters(t, lb)
	run := runClient(t, cg, o.client, fmt.Sprintf("tcp %s:80 %d", clusterIP, n))
	if len(run.Results) != n {
		t.Fatalf("%d connects, want %d", len(run.Results), n)
	}
	wantPeer := netip.AddrPortFrom(backend.Addr, 8080).String()
	for i, r := range run.Results {
		if r.Errno != 0 || r.Peer != wantPeer {
			t.Fatalf("connect %d: errno %d, getpeername %s; want 0 and the backend %s", i, r.Errno, r.Peer, wantPeer)
		}
	}
	checkEvents(t, events.take(n), run, cg, Event{ServiceID: 1, Frontend: netip.MustParseAddrPort("10.96.0.10:80"),
		Proto: unix.IPPROTO_TCP, Family: 4, Verdict: Translated, Hook: HookConnect})
	if d := counterDelta(t, lb, before); d != (Counters{CounterTranslated: n}) {
		t.Fatalf("counters moved by %v, want %d translated and nothing else (no getpeername rewrite)", d, n)
	}
	const m = 20
	runU := runClient(t, cg, o.client, fmt.Sprintf("udp %s:53 %d", clusterIP, m))
	if len(runU.Results) != m {
		t.Fatalf("%d datagrams, want %d", len(runU.Results), m)
	}
	for i, r := range runU.Results {
		if r.Errno != 0 || r.Peer != "10.96.0.10:53" {
			t.Fatalf("datagram %d: errno %d, reply from %s; want 0 and the ClusterIP 10.96.0.10:53", i, r.Errno, r.Peer)
		}
	}
}
