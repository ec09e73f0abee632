//go:build linux

package ebpf

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	flowpb "github.com/cilium/cilium/api/v1/flow"
	cebpf "github.com/cilium/ebpf"
	"github.com/cilium/ebpf/rlimit"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/flowbus/flowbus/agent/cluster"
	"github.com/flowbus/flowbus/agent/policy/netpoltest"
	"github.com/flowbus/flowbus/bpf"
	"github.com/flowbus/flowbus/bpf/nettest"
	"github.com/flowbus/flowbus/internal/promtest"
	"github.com/flowbus/flowbus/schemas"
	"github.com/flowbus/flowbus/schemas/hubble"
)

// The conformance lab's figures.
const (
	// npProbeTimeout bounds one probe: a TCP connect, a UDP echo, an SCTP
	// INIT's arrival. On veths an allowed probe answers in well under a
	// millisecond; a denied one is dropped and waits this long.
	npProbeTimeout = 300 * time.Millisecond
	// npParallel bounds the probes in flight.
	npParallel = 64
	// npFirstPort is the first client port; every probe of the test gets
	// its own (per client pod), so every probe is a flow of its own in the
	// kernel map, and its records are found by 5-tuple.
	npFirstPort = 10000
)

// npPods are the model's nine pods, x/a … z/c.
var npPods = func() []string {
	var out []string
	for _, ns := range netpoltest.Namespaces {
		for _, p := range []string{"a", "b", "c"} {
			out = append(out, ns+"/"+p)
		}
	}
	return out
}()

// TestNetworkPolicyConformanceInNetns replays the upstream Kubernetes
// NetworkPolicy e2e scenarios (agent/policy/netpoltest) on real packets
// through the source's tc programs: nine pods x/a … z/c in network
// namespaces, their host-side veths on one bridge and attached, each
// serving TCP and UDP (an echo) on 80 and 81 and watching for SCTP. For
// every step the cluster snapshot is published and, once the datapath has
// applied it (the sync counter and the policy revision moved on), every
// pair of the scenario's pods is probed on every (port, protocol) of the
// step; the outcome must be upstream's truth table, and every probe must be
// in the flow records with the verdict it met: a connected probe forwarded
// at both pods' interfaces, a blocked one dropped (POLICY_DENIED, and the
// policies that denied it) at the client's interface or, if its egress let
// it out, at the server's.
//
// SCTP: the lab's kernel may have no SCTP module, so SCTP is probed
// without it: the client sends an INIT chunk (valid CRC32c) on a raw
// IPPROTO_SCTP socket, and the server's raw IPPROTO_SCTP socket sees it
// arrive (a raw socket for the protocol also keeps the kernel from
// answering "protocol unreachable"). Connected means the INIT reached the
// server's namespace: that is where the policy decides, in both the
// kernel's SCTP stack and this one's absence. The datapath reads SCTP's
// ports from its common header (bpf/flow.c, parse) and its policy keys on
// protocol 132.
//
// A pod's connection to itself is not probed: upstream does not compare
// it, and it never leaves the pod's namespace (no veth, no flow).
func TestNetworkPolicyConformanceInNetns(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to load BPF programs and create namespaces")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs iproute2 (ip) to build network namespaces")
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		t.Skipf("cannot lift memlock limit for BPF: %v", err)
	}
	began := time.Now()
	scenarios, err := netpoltest.Scenarios()
	if err != nil {
		t.Fatal(err)
	}
	if len(scenarios) < 40 {
		t.Fatalf("%d scenarios, want at least 40", len(scenarios))
	}
	lab := newNetpolLab(t)
	lab.start(t)
	t.Logf("lab up in %v", time.Since(began).Round(time.Millisecond))
	ran := 0
	for _, s := range scenarios {
		t.Run(s.Name, func(t *testing.T) { ran++; lab.run(t, s) })
	}
	lab.stop(t)
	if lost := lab.lost.Load(); lost != 0 {
		t.Errorf("the ring buffer lost %d events", lost)
	}
	t.Logf("%d scenarios, %d steps, %d probes (%d blocked) in %v",
		ran, lab.steps, lab.probes, lab.blocked, time.Since(began).Round(time.Millisecond))
}

// npPod is one pod of the lab.
type npPod struct {
	name    string // "x/a"
	netns   string
	host    string // host-side veth
	ifindex uint32
	ip      netip.Addr
	port    atomic.Uint32 // the last client port taken

	mu   sync.Mutex
	sctp map[npSCTPKey]chan struct{} // INITs awaited (open) or arrived (closed)
}

type npSCTPKey struct {
	src          netip.Addr
	sport, dport uint16
}

// npFlowKey is a probe's 5-tuple at one interface.
type npFlowKey struct {
	proto    uint8
	src, dst netip.AddrPort
	ifindex  uint32
}

// npRecords is what the flow records of one 5-tuple at one interface said.
type npRecords struct {
	forwarded, dropped  int
	reasons             []flowpb.DropReason
	egress, ingress     int        // records observed as the pod's egress / ingress
	deniedBy            [][]string // of each dropped record: egress_denied_by or ingress_denied_by, as its direction says
	otherDeniedBy       int        // dropped records naming policies of the other direction
	unexpectedDirection bool
}

type netpolLab struct {
	id     string
	bridge string
	pods   map[string]*npPod
	ips    map[string]netip.Addr

	store  *cluster.Store
	reg    *prometheus.Registry
	src    *Source
	cancel context.CancelFunc
	done   chan error
	out    chan []schemas.Flow
	closed chan struct{}
	lost   atomic.Uint64

	mu      sync.Mutex
	records map[npFlowKey]*npRecords

	stopOnce               sync.Once
	steps, probes, blocked int
}

// newNetpolLab builds the nine pods and their servers; everything is
// removed in t.Cleanup, also when the test fails.
func newNetpolLab(t *testing.T) *netpolLab {
	t.Helper()
	var rb [3]byte
	rand.Read(rb[:])
	id := hex.EncodeToString(rb[:])
	l := &netpolLab{id: id, bridge: "fbnp" + id + "br", pods: map[string]*npPod{}, ips: map[string]netip.Addr{},
		records: map[npFlowKey]*npRecords{}}
	// 10.100.0.0/16 … 10.149.0.0/16: apart from nettest's 10.200-249.
	subnet := [3]byte{10, 100 + rb[0]%50, rb[1]}
	for i, name := range npPods {
		ns, pod, _ := strings.Cut(name, "/")
		p := &npPod{name: name, netns: "fbnp-" + id + "-" + ns + "-" + pod, host: "fbnp" + id + ns + pod,
			ip: netip.AddrFrom4([4]byte{subnet[0], subnet[1], subnet[2], byte(i + 1)}), sctp: map[npSCTPKey]chan struct{}{}}
		p.port.Store(npFirstPort - 1)
		l.pods[name] = p
		l.ips[name] = p.ip
	}
	t.Cleanup(func() {
		// Deleting a namespace deletes its veth end and so the pair.
		for _, name := range npPods {
			exec.Command("ip", "link", "del", l.pods[name].host).Run()
			exec.Command("ip", "netns", "del", l.pods[name].netns).Run()
		}
		exec.Command("ip", "link", "del", l.bridge).Run()
	})
	ipBatch := func(netns string, lines ...string) {
		t.Helper()
		args := []string{"-batch", "-"}
		if netns != "" {
			args = append([]string{"-n", netns}, args...)
		}
		cmd := exec.Command("ip", args...)
		cmd.Stdin = strings.NewReader(strings.Join(lines, "\n") + "\n")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s\n%s", strings.Join(args, " "), err, out, strings.Join(lines, "\n"))
		}
	}
	mac := func(i int) string { return fmt.Sprintf("02:fb:%02x:%02x:00:%02x", rb[0], rb[1], i+1) }
	var host []string
	for _, name := range npPods {
		host = append(host, "netns add "+l.pods[name].netns)
	}
	host = append(host, "link add "+l.bridge+" type bridge mcast_snooping 0", "link set "+l.bridge+" multicast off")
	ipBatch("", host...)
	npSysctl(t, "", "net/ipv6/conf/"+l.bridge+"/disable_ipv6", "1")
	host = nil
	for i, name := range npPods {
		p := l.pods[name]
		// No IPv6 in the pods (no router solicitations, no MLD): the
		// test's traffic is the only traffic.
		npSysctl(t, p.netns, "net/ipv6/conf/all/disable_ipv6", "1")
		npSysctl(t, p.netns, "net/ipv6/conf/default/disable_ipv6", "1")
		host = append(host, fmt.Sprintf("link add %s type veth peer name eth0 address %s netns %s", p.host, mac(i), p.netns))
	}
	ipBatch("", host...)
	host = nil
	for i, name := range npPods {
		p := l.pods[name]
		npSysctl(t, "", "net/ipv6/conf/"+p.host+"/disable_ipv6", "1")
		host = append(host, "link set "+p.host+" multicast off", "link set "+p.host+" master "+l.bridge, "link set "+p.host+" up")
		lines := []string{"addr add " + p.ip.String() + "/24 dev eth0", "link set lo up", "link set eth0 multicast off", "link set eth0 up"}
		// Static neighbours: no ARP during the test.
		for j, other := range npPods {
			if j != i {
				lines = append(lines, fmt.Sprintf("neigh add %s lladdr %s dev eth0 nud permanent", l.pods[other].ip, mac(j)))
			}
		}
		ipBatch(p.netns, lines...)
	}
	host = append(host, "link set "+l.bridge+" up")
	ipBatch("", host...)
	for _, name := range npPods {
		p := l.pods[name]
		ifc, err := net.InterfaceByName(p.host)
		if err != nil {
			t.Fatal(err)
		}
		p.ifindex = uint32(ifc.Index)
		l.serve(t, p)
	}
	return l
}

// npSysctl writes a sysctl (slash form under /proc/sys) in a namespace ("" the test's own).
func npSysctl(t *testing.T, netns, key, val string) {
	t.Helper()
	write := func() error { return os.WriteFile("/proc/sys/"+key, []byte(val), 0o644) }
	var err error
	if netns == "" {
		err = write()
	} else {
		err = nettest.In(netns, write)
	}
	if err != nil {
		t.Fatalf("sysctl %s in %q: %v", key, netns, err)
	}
}

// serve starts p's servers on 80 and 81: TCP (reads to the end, then
// closes), UDP (echoes) and a raw SCTP socket that records INITs.
func (l *netpolLab) serve(t *testing.T, p *npPod) {
	t.Helper()
	var closers []io.Closer
	t.Cleanup(func() {
		for _, c := range closers {
			c.Close()
		}
	})
	err := nettest.In(p.netns, func() error {
		for _, port := range []uint16{80, 81} {
			addr := netip.AddrPortFrom(p.ip, port).String()
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				return err
			}
			closers = append(closers, ln)
			go func() {
				for {
					c, err := ln.Accept()
					if err != nil {
						return
					}
					go func() {
						io.Copy(io.Discard, c)
						c.Close()
					}()
				}
			}()
			pc, err := net.ListenPacket("udp", addr)
			if err != nil {
				return err
			}
			closers = append(closers, pc)
			go func() {
				buf := make([]byte, 1500)
				for {
					n, from, err := pc.ReadFrom(buf)
					if err != nil {
						return
					}
					pc.WriteTo(buf[:n], from)
				}
			}()
		}
		raw, err := net.ListenPacket("ip4:132", p.ip.String())
		if err != nil {
			return fmt.Errorf("raw SCTP socket: %w", err)
		}
		closers = append(closers, raw)
		go func() {
			buf := make([]byte, 1500)
			for {
				n, from, err := raw.ReadFrom(buf)
				if err != nil {
					return
				}
				ip, ok := netip.AddrFromSlice(from.(*net.IPAddr).IP)
				if !ok || n < 12 || !sctpChecksumOK(buf[:n]) {
					continue
				}
				k := npSCTPKey{ip.Unmap(), binary.BigEndian.Uint16(buf[0:]), binary.BigEndian.Uint16(buf[2:])}
				p.mu.Lock()
				if ch, ok := p.sctp[k]; ok {
					select {
					case <-ch:
					default:
						close(ch)
					}
				}
				p.mu.Unlock()
			}
		}()
		return nil
	})
	if err != nil {
		t.Fatalf("servers of %s: %v", p.name, err)
	}
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// sctpInit returns an SCTP packet of one INIT chunk (RFC 9260 3.3.2) from
// sport to dport, with its CRC32c.
func sctpInit(sport, dport uint16, tag uint32) []byte {
	b := make([]byte, 12+20)
	binary.BigEndian.PutUint16(b[0:], sport)
	binary.BigEndian.PutUint16(b[2:], dport)
	// Verification tag 0 (an INIT's), checksum last.
	b[12] = 1                                 // INIT
	binary.BigEndian.PutUint16(b[14:], 20)    // chunk length
	binary.BigEndian.PutUint32(b[16:], tag)   // initiate tag, not 0
	binary.BigEndian.PutUint32(b[20:], 65536) // a_rwnd
	binary.BigEndian.PutUint16(b[24:], 1)     // outbound streams
	binary.BigEndian.PutUint16(b[26:], 1)     // inbound streams
	binary.BigEndian.PutUint32(b[28:], tag)   // initial TSN
	// The CRC32c goes in as Linux and every other stack put it: its
	// little-endian bytes.
	binary.LittleEndian.PutUint32(b[8:], crc32.Checksum(b, castagnoli))
	return b
}

func sctpChecksumOK(b []byte) bool {
	c := slices.Clone(b)
	want := binary.LittleEndian.Uint32(c[8:])
	clear(c[8:12])
	return crc32.Checksum(c, castagnoli) == want
}

// start runs the source on the lab's veths with an empty cluster (the nine
// pods, no policy) and waits until it has attached to all nine and made
// them endpoints.
func (l *netpolLab) start(t *testing.T) {
	t.Helper()
	l.store = cluster.NewStore()
	first, err := netpoltest.NewState(&netpoltest.Scenario{Pods: npPods}, l.ips).Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	l.store.Publish(l.placed(first))
	l.reg = prometheus.NewRegistry()
	l.src, err = New(Config{
		Kernel: bpf.Config{Interfaces: []string{"fbnp" + l.id + "[xyz]?"},
			// Allowed UDP and SCTP flows, and TCP flows their server's
			// ingress denied, end only by going idle: short timeouts and
			// sweeps report them soon after the probe.
			IdleTimeout: 300 * time.Millisecond, SweepInterval: 50 * time.Millisecond,
			EndLinger: 200 * time.Millisecond, PollInterval: 10 * time.Millisecond},
		Node:          "node-1",
		Cluster:       l.store,
		EnforcePolicy: true,
	}, nil, l.reg)
	if err != nil {
		t.Fatal(err)
	}
	var ctx context.Context
	ctx, l.cancel = context.WithCancel(context.Background())
	l.out = make(chan []schemas.Flow, 64)
	l.closed = make(chan struct{})
	go l.collect()
	l.done = make(chan error, 1)
	go func() {
		l.done <- l.src.Run(ctx, l.out, func(_ flowpb.LostEventSource, n uint64) { l.lost.Add(n) })
	}()
	t.Cleanup(func() { l.stop(t) })
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case err := <-l.done:
			l.done <- err
			if errors.Is(err, cebpf.ErrNotSupported) || errors.Is(err, unix.EPERM) || errors.Is(err, os.ErrPermission) {
				t.Skipf("cannot load BPF programs: %v", err)
			}
			t.Fatalf("source ended before it attached: %v", err)
		default:
		}
		if len(l.attached()) == len(npPods) && l.metric("flowbus_policy_endpoints") == float64(len(npPods)) &&
			l.metric("flowbus_policy_revision") > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("within 10s: attached to %v, %v endpoints", l.attached(), l.metric("flowbus_policy_endpoints"))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (l *netpolLab) attached() []string {
	c := l.src.coll.Load()
	if c == nil {
		return nil
	}
	var out []string
	for _, i := range c.Attached() {
		out = append(out, i.Name)
	}
	return out
}

// stop ends the source and waits for its last records.
func (l *netpolLab) stop(t *testing.T) {
	l.stopOnce.Do(func() {
		l.cancel()
		err := <-l.done
		close(l.out)
		<-l.closed
		if err != nil {
			t.Errorf("source: %v", err)
		}
	})
}

// collect files every TCP, UDP and SCTP record by 5-tuple and interface.
func (l *netpolLab) collect() {
	defer close(l.closed)
	for b := range l.out {
		l.mu.Lock()
		for i := range b {
			f := &b[i]
			if f.L4Protocol != 6 && f.L4Protocol != 17 && f.L4Protocol != 132 {
				continue
			}
			k := npFlowKey{f.L4Protocol, netip.AddrPortFrom(f.SrcIP.Unmap(), f.SrcPort), netip.AddrPortFrom(f.DstIP.Unmap(), f.DstPort), f.IfIndex}
			r := l.records[k]
			if r == nil {
				r = &npRecords{}
				l.records[k] = r
			}
			switch f.Direction {
			case flowpb.TrafficDirection_EGRESS:
				r.egress++
			case flowpb.TrafficDirection_INGRESS:
				r.ingress++
			default:
				r.unexpectedDirection = true
			}
			if f.Verdict == flowpb.Verdict_DROPPED {
				r.dropped++
				r.reasons = append(r.reasons, f.DropReason)
				if f.Direction == flowpb.TrafficDirection_EGRESS {
					r.deniedBy = append(r.deniedBy, f.EgressDeniedBy)
					r.otherDeniedBy += len(f.IngressDeniedBy)
				} else {
					r.deniedBy = append(r.deniedBy, f.IngressDeniedBy)
					r.otherDeniedBy += len(f.EgressDeniedBy)
				}
			} else if f.Verdict == flowpb.Verdict_FORWARDED {
				r.forwarded++
			}
		}
		l.mu.Unlock()
	}
}

// metric returns the value of a metric of the source's registry, the
// series with the given label pairs if any.
func (l *netpolLab) metric(name string, labels ...string) float64 {
	v, found, err := promtest.Value(l.reg, name, labels...)
	if err != nil || !found {
		return -1
	}
	return v
}

// placed puts the snapshot's pods behind their host-side veths.
func (l *netpolLab) placed(s *cluster.Snapshot) *cluster.Snapshot {
	for i := range s.Pods {
		p := l.pods[s.Pods[i].Namespace+"/"+s.Pods[i].Name]
		s.Pods[i].Interface, s.Pods[i].IfIndex = p.host, p.ifindex
	}
	return s
}

// publish publishes snap and waits until the datapath has applied it: one
// more sync (none other runs: the attached interfaces do not change), the
// policy revision moved on, no write failed, every policy compiled, and
// every pod of the snapshot an endpoint.
func (l *netpolLab) publish(t *testing.T, snap *cluster.Snapshot) {
	t.Helper()
	syncs := l.metric("flowbus_policy_syncs_total", "result", "ok")
	errs := l.metric("flowbus_policy_syncs_total", "result", "error")
	rev := l.metric("flowbus_policy_revision")
	l.store.Publish(l.placed(snap))
	deadline := time.Now().Add(10 * time.Second)
	for l.metric("flowbus_policy_syncs_total", "result", "ok")+l.metric("flowbus_policy_syncs_total", "result", "error") < syncs+errs+1 ||
		l.metric("flowbus_policy_revision") <= rev {
		if time.Now().After(deadline) {
			t.Fatalf("snapshot %d not applied within 10s", snap.Revision)
		}
		time.Sleep(2 * time.Millisecond)
	}
	if got := l.metric("flowbus_policy_syncs_total", "result", "error"); got != errs {
		t.Fatalf("snapshot %d: a map write failed (%v sync errors, were %v)", snap.Revision, got, errs)
	}
	for _, m := range []string{"flowbus_policy_rejected_policies", "flowbus_policy_fail_closed_endpoints"} {
		if got := l.metric(m); got != 0 {
			t.Fatalf("snapshot %d: %s = %v, want 0", snap.Revision, m, got)
		}
	}
	if got := l.metric("flowbus_policy_endpoints"); got != float64(len(snap.Pods)) {
		t.Fatalf("snapshot %d: %v endpoints, want %d", snap.Revision, got, len(snap.Pods))
	}
}

// npProbe is one connection attempt and what came of it.
type npProbe struct {
	step     int
	from, to *npPod
	proto    string
	port     uint16
	sport    uint16
	want     bool
	// The policies that select the client for egress and the server for
	// ingress: a drop names them.
	egressBy, ingressBy []string
	connected           bool
	err                 error
}

func (p *npProbe) key(ifindex uint32) npFlowKey {
	n := map[string]uint8{"TCP": 6, "UDP": 17, "SCTP": 132}[p.proto]
	return npFlowKey{n, netip.AddrPortFrom(p.from.ip, p.sport), netip.AddrPortFrom(p.to.ip, p.port), ifindex}
}

func (p *npProbe) String() string {
	return fmt.Sprintf("step %d %s %s:%d → %s %s:%d", p.step, p.from.name, p.from.ip, p.sport, p.to.name, p.proto, p.port)
}

// run replays one scenario.
func (l *netpolLab) run(t *testing.T, s *netpoltest.Scenario) {
	st := netpoltest.NewState(s, l.ips)
	var all []*npProbe
	for i := range s.Steps {
		step := &s.Steps[i]
		snap, err := st.Step(step)
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		l.publish(t, snap)
		l.steps++
		selecting, err := npSelecting(snap)
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		var probes []*npProbe
		wants := make([]netpoltest.Table, len(step.Probes))
		for j, pr := range step.Probes {
			wants[j] = pr.Expected(s.Pods)
			for _, from := range s.Pods {
				for _, to := range s.Pods {
					if from == to {
						continue
					}
					fp := l.pods[from]
					sport := fp.port.Add(1)
					if sport > 65535 {
						t.Fatalf("pod %s ran out of client ports", from)
					}
					probes = append(probes, &npProbe{step: i, from: fp, to: l.pods[to], proto: pr.Protocol, port: pr.Port,
						sport: uint16(sport), want: wants[j][from][to],
						egressBy: selecting[from][networkingv1.PolicyTypeEgress], ingressBy: selecting[to][networkingv1.PolicyTypeIngress]})
				}
			}
		}
		l.probeAll(probes)
		l.probes += len(probes)
		l.waitClosed(t, i, probes)
		for j, pr := range step.Probes {
			got := netpoltest.Table{}
			for _, from := range s.Pods {
				got[from] = map[string]bool{from: wants[j][from][from]}
			}
			wrong := 0
			var errs []string
			for _, p := range probes {
				if p.proto != pr.Protocol || p.port != pr.Port {
					continue
				}
				got[p.from.name][p.to.name] = p.connected
				if p.connected != p.want {
					wrong++
				}
				if p.err != nil {
					errs = append(errs, fmt.Sprintf("%v: %v", p, p.err))
				}
			}
			if len(errs) > 0 {
				t.Errorf("step %d, %s/%d: probes failed to run:\n%s", i, pr.Protocol, pr.Port, strings.Join(errs, "\n"))
			}
			if wrong > 0 {
				t.Errorf("step %d, %s/%d: %d wrong probes (a pod to itself is not probed: shown as expected)\nexpected:\n%s\nobserved:\n%s", i, pr.Protocol, pr.Port, wrong,
					wants[j].Format(s.Pods), got.Format(s.Pods))
			}
		}
		all = append(all, probes...)
	}
	for _, p := range all {
		if !p.connected {
			l.blocked++
		}
	}
	l.checkFlows(t, all)
}

// probeAll runs the probes, npParallel at a time, each in its client's
// namespace.
func (l *netpolLab) probeAll(probes []*npProbe) {
	sem := make(chan struct{}, npParallel)
	var wg sync.WaitGroup
	for _, p := range probes {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			var connected bool
			p.err = nettest.In(p.from.netns, func() (err error) {
				connected, err = l.probe(p)
				return err
			})
			p.connected = connected
		}()
	}
	wg.Wait()
}

// probe makes one connection attempt from the current namespace.
func (l *netpolLab) probe(p *npProbe) (bool, error) {
	dst := netip.AddrPortFrom(p.to.ip, p.port).String()
	deadline := time.Now().Add(npProbeTimeout)
	switch p.proto {
	case "TCP":
		d := net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(p.from.ip, p.sport)), Deadline: deadline}
		c, err := d.Dial("tcp", dst)
		if err != nil {
			if isTimeout(err) {
				return false, nil
			}
			return false, err
		}
		return true, c.Close()
	case "UDP":
		c, err := net.DialUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(p.from.ip, p.sport)),
			net.UDPAddrFromAddrPort(netip.AddrPortFrom(p.to.ip, p.port)))
		if err != nil {
			return false, err
		}
		defer c.Close()
		c.SetDeadline(deadline)
		msg := []byte(p.String())
		if _, err := c.Write(msg); err != nil {
			return false, err
		}
		buf := make([]byte, 1500)
		n, err := c.Read(buf)
		if err != nil {
			if isTimeout(err) {
				return false, nil
			}
			return false, err
		}
		if string(buf[:n]) != string(msg) {
			return false, fmt.Errorf("echo %q, want %q", buf[:n], msg)
		}
		return true, nil
	case "SCTP":
		k := npSCTPKey{p.from.ip, p.sport, p.port}
		arrived := make(chan struct{})
		p.to.mu.Lock()
		p.to.sctp[k] = arrived
		p.to.mu.Unlock()
		defer func() {
			p.to.mu.Lock()
			delete(p.to.sctp, k)
			p.to.mu.Unlock()
		}()
		c, err := net.DialIP("ip4:132", &net.IPAddr{IP: p.from.ip.AsSlice()}, &net.IPAddr{IP: p.to.ip.AsSlice()})
		if err != nil {
			return false, err
		}
		defer c.Close()
		if _, err := c.Write(sctpInit(p.sport, p.port, uint32(p.sport)<<16|uint32(p.port))); err != nil {
			return false, err
		}
		select {
		case <-arrived:
			return true, nil
		case <-time.After(time.Until(deadline)):
			return false, nil
		}
	}
	return false, fmt.Errorf("protocol %q", p.proto)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// waitClosed waits until the step's TCP connections are over in the
// datapath: each connected probe's flow reported at both interfaces (it
// ends there with the ACK of the last FIN). Until then its last packets may
// still be on the way, and the next step's policy would decide them again
// (and may drop them: the datapath decides every flow again on its next
// packet when the policy changes). UDP and SCTP probes are over when they
// return: the echo, or the INIT, was their last packet.
func (l *netpolLab) waitClosed(t *testing.T, step int, probes []*npProbe) {
	t.Helper()
	open := func() []string {
		l.mu.Lock()
		defer l.mu.Unlock()
		var out []string
		for _, p := range probes {
			if p.proto == "TCP" && p.connected && (l.records[p.key(p.from.ifindex)] == nil || l.records[p.key(p.to.ifindex)] == nil) {
				out = append(out, p.String())
			}
		}
		return out
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		left := open()
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("step %d: %d connections not reported at both interfaces within 5s:\n%s", step, len(left), strings.Join(left, "\n"))
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// checkFlows waits until every probe is in the flow records as far as its
// packets went, and checks the verdicts: a connected probe forwarded at the
// client's interface (its egress) and the server's (its ingress), never
// dropped; a blocked one dropped for POLICY_DENIED, by policies of the
// client's namespace at its egress (and then not seen at the server), or
// forwarded there and dropped by policies of the server's namespace at its
// ingress.
func (l *netpolLab) checkFlows(t *testing.T, probes []*npProbe) {
	t.Helper()
	get := func(p *npProbe) (from, to npRecords, okFrom, okTo bool) {
		l.mu.Lock()
		defer l.mu.Unlock()
		if r := l.records[p.key(p.from.ifindex)]; r != nil {
			from, okFrom = *r, true
		}
		if r := l.records[p.key(p.to.ifindex)]; r != nil {
			to, okTo = *r, true
		}
		return
	}
	complete := func(p *npProbe) bool {
		from, _, okFrom, okTo := get(p)
		return okFrom && (from.dropped > 0 || okTo)
	}
	deadline := time.Now().Add(5 * time.Second)
	for _, p := range probes {
		for !complete(p) && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
	}
	var bad []string
	for _, p := range probes {
		from, to, okFrom, okTo := get(p)
		var why string
		denied := func(r npRecords, want []string) string {
			if slices.ContainsFunc(r.reasons, func(d flowpb.DropReason) bool { return d != flowpb.DropReason_POLICY_DENIED }) {
				return fmt.Sprintf("drop reasons %v, want POLICY_DENIED", r.reasons)
			}
			if r.otherDeniedBy > 0 || slices.ContainsFunc(r.deniedBy, func(n []string) bool { return !slices.Equal(n, want) }) {
				return fmt.Sprintf("denied by %q, want %q (the policies that select the pod in that direction)", r.deniedBy, want)
			}
			return ""
		}
		switch {
		case !okFrom:
			why = "no record at the client's interface"
		case from.unexpectedDirection || from.ingress > 0 || (okTo && (to.unexpectedDirection || to.egress > 0)):
			why = fmt.Sprintf("records in the wrong direction: client %+v server %+v", from, to)
		case p.connected && (from.dropped > 0 || to.dropped > 0):
			why = fmt.Sprintf("connected but dropped: client %+v server %+v", from, to)
		case p.connected && (!okTo || from.forwarded == 0 || to.forwarded == 0):
			why = fmt.Sprintf("connected but not forwarded at both interfaces: client %+v server %+v (seen %v)", from, to, okTo)
		case !p.connected && from.dropped > 0:
			if from.forwarded > 0 || okTo {
				why = fmt.Sprintf("dropped at the client's egress, yet forwarded or seen at the server: client %+v server %+v", from, to)
			} else {
				why = denied(from, p.egressBy)
			}
		case !p.connected && !okTo:
			why = "blocked, forwarded by the client's interface, and missing at the server's"
		case !p.connected && to.dropped == 0:
			why = fmt.Sprintf("blocked but no record dropped it: client %+v server %+v", from, to)
		case !p.connected:
			if to.forwarded > 0 {
				why = fmt.Sprintf("dropped at the server's ingress but also forwarded there: %+v", to)
			} else {
				why = denied(to, p.ingressBy)
			}
		}
		if why != "" {
			bad = append(bad, fmt.Sprintf("%v (connected %v): %s", p, p.connected, why))
		}
	}
	if len(bad) > 0 {
		t.Errorf("%d of %d probes not in the flows as they went:\n%s", len(bad), len(probes), strings.Join(bad, "\n"))
	}
}

// npSelecting returns, for every pod of snap ("ns/name") and direction, the
// names (hubble.PolicyName, sorted) of the NetworkPolicies that select it
// for that direction, computed with apimachinery's selectors: a policy
// selects the pods of its namespace its podSelector matches, for its
// policyTypes (none given: Ingress, and Egress if it has egress rules).
func npSelecting(snap *cluster.Snapshot) (map[string]map[networkingv1.PolicyType][]string, error) {
	out := map[string]map[networkingv1.PolicyType][]string{}
	for _, np := range snap.NetworkPolicies {
		sel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
		if err != nil {
			return nil, fmt.Errorf("%s/%s: %w", np.Namespace, np.Name, err)
		}
		types := np.Spec.PolicyTypes
		if len(types) == 0 {
			types = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}
			if len(np.Spec.Egress) > 0 {
				types = append(types, networkingv1.PolicyTypeEgress)
			}
		}
		for _, p := range snap.Pods {
			if p.Namespace != np.Namespace || !sel.Matches(labels.Set(p.Labels)) {
				continue
			}
			k := p.Namespace + "/" + p.Name
			if out[k] == nil {
				out[k] = map[networkingv1.PolicyType][]string{}
			}
			for _, ty := range types {
				out[k][ty] = append(out[k][ty], hubble.PolicyName("NetworkPolicy", np.Namespace, np.Name))
			}
		}
	}
	for _, dirs := range out {
		for _, names := range dirs {
			slices.Sort(names)
		}
	}
	return out, nil
}
