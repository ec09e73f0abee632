//go:build linux

package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"
	"golang.org/x/sys/unix"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/flowbus/flowbus/agent/cluster"
	"github.com/flowbus/flowbus/agent/endpoints"
	"github.com/flowbus/flowbus/bpf/socklb"
	"github.com/flowbus/flowbus/deploy/lab"
	"github.com/flowbus/flowbus/internal/k8stest"
)

// sockLBTopology: a client pod with no process of its own, three web
// backends behind one ClusterIP, a service that selects nothing, and a
// DNS server behind kube-dns's ClusterIP.
const sockLBTopology = `
node: lab-node
network: {ipv4: 10.211.0.0/24, ipv6: "fd00:fb:211::/64"}
pods:
  - {name: client, namespace: shop, labels: {app: client}}
  - {name: web-0, namespace: shop, workload: web, labels: {app: web}, servers: [{kind: http, port: 8080, routes: [{path: /who}]}]}
  - {name: web-1, namespace: shop, workload: web, labels: {app: web}, servers: [{kind: http, port: 8080, routes: [{path: /who}]}]}
  - {name: web-2, namespace: shop, workload: web, labels: {app: web}, servers: [{kind: http, port: 8080, routes: [{path: /who}]}]}
  - {name: coredns, namespace: kube-system, labels: {k8s-app: kube-dns}, servers: [{kind: dns, port: 53}]}
services:
  - {name: web, namespace: shop, cluster_ips: [10.96.211.10], selector: {app: web}, ports: [{name: http, port: 80, target_port: 8080}]}
  - {name: empty, namespace: shop, cluster_ips: [10.96.211.11], selector: {app: nothing}, ports: [{name: http, port: 80, target_port: 8080}]}
  - {name: kube-dns, namespace: kube-system, cluster_ips: [10.96.211.53], selector: {k8s-app: kube-dns}, ports: [{name: dns, port: 53, target_port: 53, protocol: UDP}]}
`

// sockLBClientEnv carries the client's job to the re-executed test binary.
const sockLBClientEnv = "FLOWBUS_LABLB_CLIENT"

// TestLabSockLBHelperClient is not a test: it is the client pod's process
// that TestLabSocketLB runs, re-executed from the test binary inside the
// pod's network namespace and cgroup (lab.StartInPod). Its job is in
// sockLBClientEnv:
//
//	http ADDR:PORT N       N connections, each a GET /who read to EOF
//	httpfor ADDR:PORT D    the same until D has passed
//	dns ADDR:PORT NAME N   N A queries for NAME from one unconnected UDP socket
//
// A connection's line is "C <start unix ns> <errno> <getpeername> <pod>
// <socket cookie>";
// a query's "D <reply's source> <answer>".
func TestLabSockLBHelperClient(t *testing.T) {
	job := os.Getenv(sockLBClientEnv)
	if job == "" {
		t.Skip("TestLabSocketLB's client process, run by it")
	}
	w := bufio.NewWriter(os.Stdout)
	err := sockLBClient(w, strings.Fields(job))
	w.Flush()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	os.Exit(0)
}

func sockLBClient(w *bufio.Writer, f []string) error {
	if len(f) < 3 {
		return fmt.Errorf("job %q", f)
	}
	ap, err := netip.ParseAddrPort(f[1])
	if err != nil {
		return err
	}
	dst := &unix.SockaddrInet4{Addr: ap.Addr().As4(), Port: int(ap.Port())}
	switch f[0] {
	case "http", "httpfor":
		n, deadline := math.MaxInt, time.Time{}
		if f[0] == "http" {
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
		req := []byte("GET /who HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n")
		buf := make([]byte, 4096)
		for i := 0; i < n && (deadline.IsZero() || time.Now().Before(deadline)); i++ {
			fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				return err
			}
			cookie, err := unix.GetsockoptUint64(fd, unix.SOL_SOCKET, unix.SO_COOKIE)
			if err != nil {
				return err
			}
			unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Sec: 5})
			start := time.Now().UnixNano()
			if err := unix.Connect(fd, dst); err != nil {
				var e syscall.Errno
				errors.As(err, &e)
				fmt.Fprintf(w, "C %d %d - - %d\n", start, int(e), cookie)
				unix.Close(fd)
				continue
			}
			peer := "-"
			if sa, err := unix.Getpeername(fd); err == nil {
				if s4, ok := sa.(*unix.SockaddrInet4); ok {
					peer = netip.AddrPortFrom(netip.AddrFrom4(s4.Addr), uint16(s4.Port)).String()
				}
			}
			if _, err := unix.Write(fd, req); err != nil {
				unix.Close(fd)
				return err
			}
			var got []byte
			for {
				k, err := unix.Read(fd, buf)
				if err == unix.EINTR {
					continue
				}
				if k <= 0 || err != nil {
					break
				}
				got = append(got, buf[:k]...)
			}
			unix.Close(fd)
			pod := "-"
			if i := bytes.Index(got, []byte(`{"pod":"`)); i >= 0 {
				rest := got[i+len(`{"pod":"`):]
				if j := bytes.IndexByte(rest, '"'); j > 0 {
					pod = string(rest[:j])
				}
			}
			fmt.Fprintf(w, "C %d 0 %s %s %d\n", start, peer, pod, cookie)
		}
		return nil
	case "dns":
		if len(f) != 4 {
			return fmt.Errorf("job %q", f)
		}
		n, err := strconv.Atoi(f[3])
		if err != nil {
			return err
		}
		pc, err := net.ListenPacket("udp4", "0.0.0.0:0")
		if err != nil {
			return err
		}
		defer pc.Close()
		name := dnsmessage.MustNewName(f[2])
		buf := make([]byte, 1500)
		for i := range n {
			q := dnsmessage.Message{Header: dnsmessage.Header{ID: uint16(i + 1), RecursionDesired: true},
				Questions: []dnsmessage.Question{{Name: name, Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET}}}
			b, err := q.Pack()
			if err != nil {
				return err
			}
			if _, err := pc.WriteTo(b, net.UDPAddrFromAddrPort(ap)); err != nil {
				return err
			}
			pc.SetReadDeadline(time.Now().Add(3 * time.Second))
			k, from, err := pc.ReadFrom(buf)
			if err != nil {
				fmt.Fprintf(w, "D - timeout\n")
				continue
			}
			var m dnsmessage.Message
			answer := "-"
			if m.Unpack(buf[:k]) == nil && m.ID == uint16(i+1) && len(m.Answers) == 1 {
				if a, ok := m.Answers[0].Body.(*dnsmessage.AResource); ok {
					answer = netip.AddrFrom4(a.A).String()
				}
			}
			fmt.Fprintf(w, "D %s %s\n", from.(*net.UDPAddr).AddrPort(), answer)
		}
		return nil
	}
	return fmt.Errorf("job %q", f)
}

// checkRemovedWeb2 checks the connections a client made while web-2 left
// service web, the agent's view losing it at seen: none failed, web-2 got
// none starting more than 1 s after seen, and from then on web-0 and web-1
// got them. It returns when web-2's last one started (Unix ns) and the
// connections per pod from 1 s after seen.
func checkRemovedWeb2(t *testing.T, conns []sockLBConn, seen time.Time) (last int64, after map[string]int) {
	t.Helper()
	after = map[string]int{}
	for _, c := range conns {
		if c.errno != 0 {
			t.Fatalf("connection during the removal: errno %d", c.errno)
		}
		if c.pod == "web-2" {
			last = max(last, c.start)
		}
		if c.start > seen.Add(time.Second).UnixNano() {
			after[c.pod]++
		}
	}
	if d := time.Duration(last - seen.UnixNano()); d > time.Second {
		t.Errorf("web-2 got a connection %v after the agent's view lost it, want none after 1 s", d)
	}
	if after["web-2"] != 0 || after["web-0"] == 0 || after["web-1"] == 0 {
		t.Errorf("connections from 1 s after the removal on: %v; want web-0 and web-1 only", after)
	}
	return last, after
}

// sockLBConn is one line of the client.
type sockLBConn struct {
	start       int64
	errno       int
	peer, pod   string
	from, found string // dns
	cookie      uint64
}

// runSockLBClient runs the client pod's job and returns its lines; start
// and the rest run it in the background: call wait for the lines.
func runSockLBClient(t *testing.T, plan *lab.Plan, job string) (wait func() []sockLBConn) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestLabSockLBHelperClient$", "-test.count=1")
	cmd.Env = append(os.Environ(), sockLBClientEnv+"="+job)
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := lab.StartInPod(plan, "client", cmd); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			<-done
		}
	})
	return func() []sockLBConn {
		t.Helper()
		if err := <-done; err != nil {
			t.Fatalf("client %q: %v: %s", job, err, stderr.String())
		}
		var conns []sockLBConn
		for _, l := range strings.Split(strings.TrimSpace(out.String()), "\n") {
			f := strings.Fields(l)
			switch {
			case len(f) == 6 && f[0] == "C":
				start, _ := strconv.ParseInt(f[1], 10, 64)
				errno, _ := strconv.Atoi(f[2])
				cookie, _ := strconv.ParseUint(f[5], 10, 64)
				conns = append(conns, sockLBConn{start: start, errno: errno, peer: f[3], pod: f[4], cookie: cookie})
			case len(f) == 3 && f[0] == "D":
				conns = append(conns, sockLBConn{from: f[1], found: f[2]})
			default:
				t.Fatalf("client %q printed %q", job, l)
			}
		}
		return conns
	}
}

// hubbleFlow is what the test reads of a flow hubble observe prints.
type hubbleFlow struct {
	Verdict        string `json:"verdict"`
	DropReasonDesc string `json:"drop_reason_desc"`
	EventType      struct {
		Type    int `json:"type"`
		SubType int `json:"sub_type"`
	} `json:"event_type"`
	IP struct {
		Source      string `json:"source"`
		Destination string `json:"destination"`
	} `json:"IP"`
	L4 struct {
		TCP *struct {
			DestinationPort int `json:"destination_port"`
			Flags           struct {
				SYN bool `json:"SYN"`
				ACK bool `json:"ACK"`
			} `json:"flags"`
		} `json:"TCP"`
		UDP *struct {
			DestinationPort int `json:"destination_port"`
		} `json:"UDP"`
	} `json:"l4"`
	Source struct {
		Namespace string `json:"namespace"`
		PodName   string `json:"pod_name"`
	} `json:"source"`
	Destination struct {
		PodName string `json:"pod_name"`
	} `json:"destination"`
	DestinationService struct {
		Name      string `json:"name"`
		Namespace string `json:"namespace"`
	} `json:"destination_service"`
	TrafficDirection      string `json:"traffic_direction"`
	TraceObservationPoint string `json:"trace_observation_point"`
	IsReply               *bool  `json:"is_reply"`
}

// observeAll returns every flow the agent's Observer API holds.
func observeAll(t *testing.T, server string) []hubbleFlow {
	t.Helper()
	cmd := exec.Command(hubbleCLI(t), "observe", "--server", server, "--last", "1000000", "-o", "json")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	b, err := cmd.Output()
	if err != nil {
		t.Fatalf("hubble observe: %v: %s", err, stderr.String())
	}
	var out []hubbleFlow
	dec := json.NewDecoder(bytes.NewReader(b))
	for {
		var line struct {
			Flow hubbleFlow `json:"flow"`
		}
		if err := dec.Decode(&line); err != nil {
			if err.Error() != "EOF" {
				t.Fatalf("hubble observe output: %v", err)
			}
			return out
		}
		out = append(out, line.Flow)
	}
}

// TestLabSocketLB is issue 19's acceptance in the lab: an agent with
// --socket-lb attached to the lab's cgroup translates the client pod's
// connections to the web Service's ClusterIP.
//   - 10,000 connections reach only web's three ready backends, each
//     within 5 % of an even share; getpeername() returns the ClusterIP.
//   - Every connection has a TRANSLATED record (trace-sock, post-xlate-fwd)
//     from the client pod naming the service and the backend, and a
//     pod-to-backend L3/L4 record at the client's interface (one with SYN
//     per connection, as many per backend as the client counted).
//   - DNS over UDP to kube-dns's ClusterIP is answered from the ClusterIP.
//   - A backend removed from the endpoints file gets no new connection
//     once the agent's view has lost it (within 1 s; the file is polled).
//   - The service with no backend refuses with ECONNREFUSED, and each
//     refusal is a DROPPED record with SERVICE_BACKEND_NOT_FOUND.
//   - With --socket-lb-algorithm maglev (a second agent, web-2 back), every
//     connection reaches the backend that Maglev's table gives its socket
//     cookie.
func TestLabSocketLB(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the lab runs 10,000 connections")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root: network namespaces, cgroups and eBPF programs")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs iproute2's ip command")
	}
	hubbleCLI(t)
	plan, labCfg := sockLBLab(t, "fbsl", 211, "")
	client, _ := plan.Pod("client")
	code, out, errOut := runCommand("lab", "exec", "--data-dir", labCfg.StateDir, "client", "--", "cat", "/proc/self/cgroup")
	if want := "0::/flowbus-lab-fbsl/shop_client\n"; code != 0 || !strings.Contains(out, want) {
		t.Fatalf("flowbus lab exec client -- cat /proc/self/cgroup: exit %d, %q %q; want %q", code, out, errOut, want)
	}
	backendPod := map[string]string{}
	for _, p := range plan.Pods {
		backendPod[p.IPv4.String()] = p.Name
	}

	dir := t.TempDir()
	observer := freeAddr(t)
	agent := startLabAgent(t, "--source", "ebpf", "--interfaces", "fbsl[0-9]*h", "--endpoints", plan.EndpointsFile,
		"--node", plan.Node, "--bus", "stdout", "--observer-address", observer, "--metrics-address", "",
		"--spool-dir", "off", "--data-dir", dir, "--ring-size", "131072", "--active-timeout", "3s", "--linger", "200ms",
		"--socket-lb", "--socket-lb-cgroup", plan.Cgroup)
	waitFor(t, "the agent to attach", 10*time.Second, func() bool {
		return agent.metric("flowbus_bpf_attached_interfaces", "", "") == float64(len(plan.Pods))
	})
	// The services are written with the first snapshot, before the
	// attach is reported; one connection proves it.
	waitFor(t, "the socket LB to translate", 10*time.Second, func() bool {
		c := runSockLBClient(t, plan, "http 10.96.211.10:80 1")()
		return len(c) == 1 && c[0].errno == 0
	})

	const n = 10000
	start := time.Now()
	conns := runSockLBClient(t, plan, fmt.Sprintf("http 10.96.211.10:80 %d", n))()
	took := time.Since(start)
	perPod := map[string]int{}
	for _, c := range conns {
		if c.errno != 0 || c.peer != "10.96.211.10:80" {
			t.Fatalf("connection: errno %d, getpeername %s; want 0 and the ClusterIP 10.96.211.10:80", c.errno, c.peer)
		}
		perPod[c.pod]++
	}
	if len(conns) != n || len(perPod) != 3 || perPod["web-0"]+perPod["web-1"]+perPod["web-2"] != n {
		t.Fatalf("%d connections reached %v; want %d over web-0, web-1 and web-2 only", len(conns), perPod, n)
	}
	for pod, k := range perPod {
		if dev := math.Abs(float64(k)-n/3.0) / (n / 3.0); dev > 0.05 {
			t.Errorf("%s: %d connections, %.1f %% off an even share", pod, k, 100*dev)
		}
	}
	t.Logf("%d connections in %v: %v; getpeername gave 10.96.211.10:80 every time", n, took.Round(time.Millisecond), perPod)

	dnsAnswers := runSockLBClient(t, plan, "dns 10.96.211.53:53 web.shop.svc.cluster.local. 20")()
	for _, d := range dnsAnswers {
		if d.from != "10.96.211.53:53" || d.found != "10.96.211.10" {
			t.Fatalf("DNS reply from %s answering %s; want from 10.96.211.53:53, 10.96.211.10", d.from, d.found)
		}
	}
	if len(dnsAnswers) != 20 {
		t.Fatalf("%d DNS answers, want 20", len(dnsAnswers))
	}

	refused := runSockLBClient(t, plan, "http 10.96.211.11:80 10")()
	for _, c := range refused {
		if c.errno != int(syscall.ECONNREFUSED) {
			t.Fatalf("connect to the empty service: errno %d, want ECONNREFUSED (%d)", c.errno, syscall.ECONNREFUSED)
		}
	}
	if len(refused) != 10 {
		t.Fatalf("%d connects to the empty service, want 10", len(refused))
	}
	// The kernel's counters: the probe, the connections and the queries
	// translated, the refusals, nothing lost; each getpeername() and each
	// answer given the ClusterIP back.
	km := func(c string) float64 { return agent.metric("flowbus_socklb_kernel_events_total", "counter", c) }
	if km("translated") != n+1+20 || km("no_backend") != 10 || km("ringbuf") != 0 || km("revnat_update") != 0 ||
		km("revnat_rewrite") != n+1+20 || agent.metric("flowbus_socklb_frontends", "", "") != 3 {
		t.Errorf("socket LB metrics: translated %v (want %d), no_backend %v (10), ringbuf %v (0), revnat_update %v (0), revnat_rewrite %v (%d), frontends %v (3)",
			km("translated"), n+1+20, km("no_backend"), km("ringbuf"), km("revnat_update"), km("revnat_rewrite"), n+1+20,
			agent.metric("flowbus_socklb_frontends", "", ""))
	}

	// The records: wait until the L3/L4 records of the last connections
	// have lingered out.
	var flows []hubbleFlow
	translated, dropped, l4 := map[string]int{}, 0, map[string]int{}
	count := func() {
		flows = observeAll(t, observer)
		clear(translated)
		clear(l4)
		dropped = 0
		for _, f := range flows {
			switch {
			case f.Verdict == "TRANSLATED":
				if f.EventType.Type != 7 || f.EventType.SubType != 2 || f.Source.PodName != "client" || f.Source.Namespace != "shop" ||
					f.IP.Source != client.IPv4.String() || f.IsReply == nil || *f.IsReply || f.TrafficDirection != "EGRESS" {
					t.Fatalf("TRANSLATED record %+v", f)
				}
				if f.DestinationService.Name == "kube-dns" {
					continue
				}
				if f.DestinationService != (struct {
					Name      string `json:"name"`
					Namespace string `json:"namespace"`
				}{"web", "shop"}) || f.L4.TCP == nil || f.L4.TCP.DestinationPort != 8080 || backendPod[f.IP.Destination] != f.Destination.PodName {
					t.Fatalf("TRANSLATED record %+v: want service shop/web and a backend on 8080", f)
				}
				translated[f.Destination.PodName]++
			case f.Verdict == "DROPPED" && f.DropReasonDesc == "SERVICE_BACKEND_NOT_FOUND":
				if f.EventType.Type != 1 || f.EventType.SubType != 158 || f.Source.PodName != "client" || f.DestinationService.Name != "empty" ||
					f.IP.Destination != "10.96.211.11" || f.L4.TCP == nil || f.L4.TCP.DestinationPort != 80 {
					t.Fatalf("refusal record %+v", f)
				}
				dropped++
			case f.Verdict == "FORWARDED" && f.EventType.Type == 4 && f.Source.PodName == "client" && f.TraceObservationPoint == "FROM_ENDPOINT" &&
				f.L4.TCP != nil && f.L4.TCP.DestinationPort == 8080 && f.L4.TCP.Flags.SYN:
				if f.DestinationService.Name != "web" || backendPod[f.IP.Destination] != f.Destination.PodName {
					t.Fatalf("L3/L4 record %+v: want the backend pod and service web", f)
				}
				l4[f.Destination.PodName]++
			}
		}
	}
	// The probe's connection (one or more, until the first was
	// translated) is in the records too.
	probes := 1
	deadline := time.Now().Add(15 * time.Second)
	for {
		count()
		tr, l := 0, 0
		for _, k := range translated {
			tr += k
		}
		for _, k := range l4 {
			l += k
		}
		if tr >= n+probes && l >= n+probes && dropped >= 10 || time.Now().After(deadline) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	probes = 0
	for pod, k := range translated {
		probes += k - perPod[pod]
	}
	for _, pod := range []string{"web-0", "web-1", "web-2"} {
		if translated[pod] < perPod[pod] || translated[pod]-perPod[pod] > probes || l4[pod] != translated[pod] {
			t.Errorf("%s: the client counted %d connections; %d TRANSLATED records and %d L3/L4 records", pod, perPod[pod], translated[pod], l4[pod])
		}
	}
	if probes != 1 {
		t.Errorf("%d TRANSLATED records beyond the client's connections; want 1 (the probe)", probes)
	}
	if dropped != 10 {
		t.Errorf("%d SERVICE_BACKEND_NOT_FOUND records, want 10 (one per refused connect)", dropped)
	}
	t.Logf("records: TRANSLATED %v, L3/L4 with SYN from the client %v, DROPPED SERVICE_BACKEND_NOT_FOUND %d, of %d flows", translated, l4, dropped, len(flows))

	// Remove web-2 from the endpoints file while the client connects.
	eps, err := endpoints.Read(plan.EndpointsFile)
	if err != nil {
		t.Fatal(err)
	}
	running := runSockLBClient(t, plan, "httpfor 10.96.211.10:80 6s")
	time.Sleep(2 * time.Second)
	for i := range eps.Services {
		s := &eps.Services[i]
		s.Backends = slices.DeleteFunc(s.Backends, func(b endpoints.Backend) bool { return b.Pod == "web-2" })
	}
	store := agent.rt.cluster
	rev := store.Latest().Revision
	written := time.Now()
	if err := endpoints.Write(plan.EndpointsFile, eps); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	snap, err := store.Wait(wctx, rev)
	cancel()
	if err != nil {
		t.Fatalf("the agent did not read the endpoints file again: %v", err)
	}
	seen := time.Now()
	if !withoutWeb2(snap) {
		t.Fatalf("the agent's view still has web-2")
	}
	last, after := checkRemovedWeb2(t, running(), seen)
	t.Logf("removal: the agent's view lost web-2 %v after the file was written (polled every 2 s); its last connection started %v after that; then %v",
		seen.Sub(written).Round(time.Millisecond), time.Duration(last-seen.UnixNano()).Round(time.Microsecond), after)

	// Maglev: web-2 back, a new agent.
	agent.close(t)
	if err := endpoints.Write(plan.EndpointsFile, plan.Endpoints()); err != nil {
		t.Fatal(err)
	}
	agent = startLabAgent(t, "--source", "ebpf", "--interfaces", "fbsl[0-9]*h", "--endpoints", plan.EndpointsFile,
		"--node", plan.Node, "--bus", "stdout", "--observer-address", "", "--metrics-address", "",
		"--spool-dir", "off", "--data-dir", t.TempDir(), "--socket-lb", "--socket-lb-cgroup", plan.Cgroup, "--socket-lb-algorithm", "maglev")
	waitFor(t, "the maglev agent to translate", 10*time.Second, func() bool {
		c := runSockLBClient(t, plan, "http 10.96.211.10:80 1")()
		return len(c) == 1 && c[0].errno == 0
	})
	// The kernel's slots are the snapshot's backends in order, and the
	// table is built over their names in slot order.
	var names []string
	for _, s := range agent.rt.cluster.Latest().Services {
		if s.Name == "web" {
			for _, b := range s.Backends {
				if b.IP.Is4() && b.Port == 8080 {
					names = append(names, netip.AddrPortFrom(b.IP, b.Port).String())
				}
			}
		}
	}
	if len(names) != 3 {
		t.Fatalf("web's IPv4 backends %v, want 3", names)
	}
	table := socklb.MaglevTable(names, socklb.DefaultMaglevM)
	const m = 3000
	conns = runSockLBClient(t, plan, fmt.Sprintf("http 10.96.211.10:80 %d", m))()
	got := map[string]int{}
	for _, c := range conns {
		want := backendPod[strings.Split(names[table[socklb.MaglevIndex(c.cookie, socklb.DefaultMaglevM)]], ":")[0]]
		if c.errno != 0 || c.pod != want || c.peer != "10.96.211.10:80" {
			t.Fatalf("maglev: socket %d reached %s (errno %d, getpeername %s); its table entry says %s", c.cookie, c.pod, c.errno, c.peer, want)
		}
		got[c.pod]++
	}
	if len(conns) != m {
		t.Fatalf("maglev: %d connections, want %d", len(conns), m)
	}
	t.Logf("maglev: %d connections, each to the backend of its cookie's table entry: %v", m, got)
}

// sockLBLab is the lab of sockLBTopology on 10.<octet>.0.0/24 with
// ClusterIPs in 10.96.<octet>.0/24, registered in the API server of
// kubeconfig when it is not empty, torn down when the test ends. Nothing
// untranslated leaves the client pod for the ClusterIPs: they are
// unreachable there.
func sockLBLab(t *testing.T, prefix string, octet int, kubeconfig string) (*lab.Plan, lab.Config) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: network namespaces, cgroups and eBPF programs")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs iproute2's ip command")
	}
	topo, err := lab.ParseTopology([]byte(strings.ReplaceAll(sockLBTopology, "211", strconv.Itoa(octet))))
	if err != nil {
		t.Fatal(err)
	}
	labCfg := lab.Config{Prefix: prefix, StateDir: filepath.Join(t.TempDir(), "lab"), Self: []string{os.Args[0], "lab"},
		Kubeconfig: kubeconfig, Log: slog.New(slog.DiscardHandler)}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	plan, err := lab.Up(ctx, labCfg, topo)
	cancel()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := lab.Down(ctx, labCfg); err != nil {
			t.Errorf("lab down: %v", err)
		}
	})
	if err != nil {
		t.Fatalf("lab up: %v", err)
	}
	if plan.Cgroup == "" {
		t.Skip("no cgroup v2 hierarchy: the lab's pods have no cgroups to load balance")
	}
	client, _ := plan.Pod("client")
	if out, err := exec.Command("ip", "-n", client.NetNS, "route", "add", "unreachable", fmt.Sprintf("10.96.%d.0/24", octet)).CombinedOutput(); err != nil {
		t.Fatalf("ip route: %v %s", err, out)
	}
	return plan, labCfg
}

// TestLabSocketLBKubernetes: with the cluster view from the API server's
// Services and EndpointSlices, connections to a ClusterIP reach its
// backends, and a backend removed from its EndpointSlice gets no new
// connection once the agent's view has lost it (within 1 s).
func TestLabSocketLBKubernetes(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the lab and an API server")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root: network namespaces, cgroups and eBPF programs")
	}
	kube := k8stest.Start(t, k8stest.Options{})
	kubeconfig := kube.Kubeconfig(k8stest.AdminUser)
	plan, _ := sockLBLab(t, "fbsk", 212, kubeconfig)
	agent := startLabAgent(t, "--source", "ebpf", "--interfaces", "fbsk[0-9]*h", "--endpoints-source", "kubernetes",
		"--kubeconfig", kubeconfig, "--node", plan.Node, "--bus", "stdout", "--observer-address", "", "--metrics-address", "",
		"--spool-dir", "off", "--data-dir", t.TempDir(), "--socket-lb", "--socket-lb-cgroup", plan.Cgroup)
	waitFor(t, "the socket LB to translate", 20*time.Second, func() bool {
		c := runSockLBClient(t, plan, "http 10.96.212.10:80 1")()
		return len(c) == 1 && c[0].errno == 0
	})
	perPod := map[string]int{}
	for _, c := range runSockLBClient(t, plan, "http 10.96.212.10:80 3000")() {
		if c.errno != 0 || c.peer != "10.96.212.10:80" {
			t.Fatalf("connection: errno %d, getpeername %s", c.errno, c.peer)
		}
		perPod[c.pod]++
	}
	if len(perPod) != 3 || perPod["web-0"]+perPod["web-1"]+perPod["web-2"] != 3000 {
		t.Fatalf("3000 connections reached %v; want web-0, web-1 and web-2 only", perPod)
	}

	cs := kube.Client()
	ctx := context.Background()
	running := runSockLBClient(t, plan, "httpfor 10.96.212.10:80 6s")
	time.Sleep(2 * time.Second)
	store := agent.rt.cluster
	rev := store.Latest().Revision
	slice, err := cs.DiscoveryV1().EndpointSlices("shop").Get(ctx, "web-ipv4", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	slice.Endpoints = slices.DeleteFunc(slice.Endpoints, func(e discoveryv1.Endpoint) bool {
		return e.TargetRef != nil && e.TargetRef.Name == "web-2"
	})
	written := time.Now()
	if _, err := cs.DiscoveryV1().EndpointSlices("shop").Update(ctx, slice, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	var seen time.Time
	for {
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		snap, err := store.Wait(wctx, rev)
		cancel()
		if err != nil {
			t.Fatalf("the agent's view never lost web-2's IPv4 backend: %v", err)
		}
		rev = snap.Revision
		if !hasBackend(snap, "web", "web-2", true) {
			seen = time.Now()
			break
		}
	}
	last, after := checkRemovedWeb2(t, running(), seen)
	t.Logf("3000 connections: %v; EndpointSlice update → the agent's view %v; web-2's last connection started %v after that; then %v",
		perPod, seen.Sub(written).Round(time.Millisecond), time.Duration(last-seen.UnixNano()).Round(time.Microsecond), after)
}

// hasBackend reports whether service name has a backend of pod (of IPv4
// when v4).
func hasBackend(s *cluster.Snapshot, name, pod string, v4 bool) bool {
	for _, svc := range s.Services {
		if svc.Name != name {
			continue
		}
		for _, b := range svc.Backends {
			if b.Pod == pod && b.IP.Is4() == v4 {
				return true
			}
		}
	}
	return false
}

func withoutWeb2(s *cluster.Snapshot) bool {
	for _, svc := range s.Services {
		for _, b := range svc.Backends {
			if b.Pod == "web-2" {
				return false
			}
		}
	}
	return true
}

// TestSocketLBNeedsTheClusterView: --socket-lb without --endpoints or the
// Kubernetes source is a usage error, before anything is loaded.
func TestSocketLBNeedsTheClusterView(t *testing.T) {
	code, out, errOut := runCommand("agent", "--source", "ebpf", "--socket-lb", "--bus", "stdout", "--data-dir", t.TempDir(),
		"--metrics-address", "", "--observer-address", "")
	want := "flowbus agent: --socket-lb needs the cluster's services: --endpoints or --endpoints-source kubernetes\nRun 'flowbus agent --help' for the flags.\n"
	if code != 2 || errOut != want || out != "" {
		t.Errorf("exit %d, stderr %q, stdout %q; want exit 2 and %q", code, errOut, out, want)
	}
}
