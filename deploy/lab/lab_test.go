//go:build linux

package lab

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/flowbus/flowbus/agent/cluster/filesource"
	"github.com/flowbus/flowbus/agent/endpoints"
	"github.com/flowbus/flowbus/internal/cgroupv2"
)

// The test binary is also the lab's child program: Up and Traffic re-run it
// as "<test binary> lab-child serve|client ...". "lab-child-failing" is the
// same except that the server of fraud-detector fails at start, to test
// that a failure halfway through Up is cleaned up.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && (os.Args[1] == "lab-child" || os.Args[1] == "lab-child-failing") {
		if os.Args[1] == "lab-child-failing" && strings.Contains(strings.Join(os.Args, " "), "--pod=fraud-detector") {
			fmt.Fprintln(os.Stderr, "failing on purpose")
			os.Exit(1)
		}
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		err := Child(ctx, os.Args[2:], os.Stdout, slog.New(slog.NewTextHandler(os.Stderr, nil)))
		stop()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	if len(os.Args) == 5 && os.Args[1] == "lab-up" {
		// A process that runs Up and is then killed by the test: a crash.
		var octet int
		fmt.Sscan(os.Args[4], &octet)
		topo, _ := DefaultTopology()
		topo.Network = Network{IPv4: fmt.Sprintf("10.%d.0.0/24", octet), IPv6: fmt.Sprintf("fd00:fb:%d::/64", octet)}
		cfg := Config{Prefix: os.Args[2], StateDir: os.Args[3], Self: []string{os.Args[0], "lab-child"}}
		if _, err := Up(context.Background(), cfg, topo); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		time.Sleep(time.Hour) // until the test kills it
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// testTopology is the payments fleet on ranges of its own, so that the
// tests never meet a user's lab (10.200.0.0/24) or another test's.
func testTopology(t *testing.T, octet int) *Topology {
	t.Helper()
	topo, err := DefaultTopology()
	if err != nil {
		t.Fatal(err)
	}
	topo.Network = Network{IPv4: fmt.Sprintf("10.%d.0.0/24", octet), IPv6: fmt.Sprintf("fd00:fb:%d::/64", octet)}
	topo.Node = "test-node"
	// The fleet's rewards-cron → ledger-svc edge is denied by a policy that
	// only an enforcing agent applies; here, with no agent, the server
	// resets it, which tests the lab's own RST path.
	for i := range topo.Pods {
		if topo.Pods[i].Name == "ledger-svc" {
			topo.Pods[i].Servers[0].ResetFrom = []string{"rewards-cron"}
		}
	}
	if err := topo.Validate(); err != nil {
		t.Fatal(err)
	}
	return topo
}

func requireLab(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: network namespaces and veths")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs iproute2's ip command")
	}
	if err := exec.Command("ip", "netns", "add", "fbprobe-netns").Run(); err != nil {
		t.Skipf("network namespaces unsupported here: %v", err)
	}
	_ = exec.Command("ip", "netns", "del", "fbprobe-netns").Run()
}

func testConfig(t *testing.T, prefix string, child string) Config {
	return Config{
		Prefix:   prefix,
		StateDir: filepath.Join(t.TempDir(), "state"),
		Self:     []string{os.Args[0], child},
		Log:      slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
}

// cleanupLab removes the lab even when the test failed halfway.
func cleanupLab(t *testing.T, cfg Config) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := Down(ctx, cfg); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
}

// inNetns runs fn inside pod namespace ns (InNetNS); fn reports with t.Errorf.
func inNetns(t *testing.T, ns string, fn func()) {
	t.Helper()
	if err := InNetNS(ns, func() error { fn(); return nil }); err != nil {
		t.Error(err)
	}
}

func httpGet(addr netip.AddrPort, method, path string) (int, string, error) {
	c, err := net.DialTimeout("tcp", addr.String(), 2*time.Second)
	if err != nil {
		return 0, "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := fmt.Fprintf(c, "%s %s HTTP/1.1\r\nHost: lab\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", method, path); err != nil {
		return 0, "", err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

func dnsQuery(server netip.AddrPort, name string, qtype dnsmessage.Type) (dnsmessage.RCode, []string, error) {
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: 4711, RecursionDesired: true})
	_ = b.StartQuestions()
	_ = b.Question(dnsmessage.Question{Name: dnsmessage.MustNewName(name), Type: qtype, Class: dnsmessage.ClassINET})
	pkt, err := b.Finish()
	if err != nil {
		return 0, nil, err
	}
	c, err := net.Dial("udp", server.String())
	if err != nil {
		return 0, nil, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write(pkt); err != nil {
		return 0, nil, err
	}
	buf := make([]byte, 1500)
	n, err := c.Read(buf)
	if err != nil {
		return 0, nil, err
	}
	var m dnsmessage.Message
	if err := m.Unpack(buf[:n]); err != nil {
		return 0, nil, err
	}
	if m.ID != 4711 {
		return 0, nil, fmt.Errorf("answer id %d, want 4711", m.ID)
	}
	var ips []string
	for _, a := range m.Answers {
		switch r := a.Body.(type) {
		case *dnsmessage.AResource:
			ips = append(ips, fmt.Sprintf("%s ttl=%d", netip.AddrFrom4(r.A), a.Header.TTL))
		case *dnsmessage.AAAAResource:
			ips = append(ips, fmt.Sprintf("%s ttl=%d", netip.AddrFrom16(r.AAAA), a.Header.TTL))
		}
	}
	return m.RCode, ips, nil
}

func echo(addr netip.AddrPort, line string) (string, error) {
	c, err := net.DialTimeout("tcp", addr.String(), 2*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := io.WriteString(c, line); err != nil {
		return "", err
	}
	return bufio.NewReader(c).ReadString('\n')
}

func TestLabUpAnswersEveryPeerWritesEndpointsMakesTrafficAndDownLeavesNothing(t *testing.T) {
	requireLab(t)
	cfg := testConfig(t, "fblt", "lab-child")
	cfg.EndpointsFile = filepath.Join(t.TempDir(), "agent-endpoints.yaml") // outside the state dir: down must remove it too
	cleanupLab(t, cfg)
	ctx := context.Background()
	start := time.Now()
	plan, err := Up(ctx, cfg, testTopology(t, 201))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("up took %s", time.Since(start))
	pod := func(name string) *PodPlan {
		p, ok := plan.Pod(name)
		if !ok {
			t.Fatalf("no pod %s", name)
		}
		return p
	}

	t.Run("every server runs in its pod's cgroup", func(t *testing.T) {
		root, err := cgroupv2.Root()
		if err != nil {
			t.Skip(err)
		}
		if plan.Cgroup != filepath.Join(root, "flowbus-lab-fblt") {
			t.Errorf("lab cgroup %q, want %s/flowbus-lab-fblt", plan.Cgroup, root)
		}
		for _, p := range plan.Pods {
			if p.Cgroup != filepath.Join(plan.Cgroup, p.Namespace+"_"+p.Name) {
				t.Errorf("pod %s: cgroup %q", p.Name, p.Cgroup)
			}
			if p.PID == 0 {
				continue
			}
			b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", p.PID))
			want := "0::/flowbus-lab-fblt/" + p.Namespace + "_" + p.Name + "\n"
			if err != nil || !strings.Contains(string(b), want) {
				t.Errorf("pod %s: server %d in %q (%v), want %q", p.Name, p.PID, b, err, want)
			}
		}
	})

	t.Run("a second up with the same prefix is refused", func(t *testing.T) {
		cfg2 := cfg
		cfg2.StateDir = filepath.Join(t.TempDir(), "other")
		_, err := Up(ctx, cfg2, testTopology(t, 201))
		if err == nil || !strings.Contains(err.Error(), `a lab with prefix "fblt" already exists`) {
			t.Fatalf("second Up: %v; want refusal", err)
		}
	})

	t.Run("every server answers every other pod over IPv4 and IPv6", func(t *testing.T) {
		for _, from := range plan.Pods {
			inNetns(t, from.NetNS, func() {
				for _, to := range plan.Pods {
					if to.Name == from.Name {
						continue
					}
					spec, _ := plan.Spec(to.Name)
					for _, s := range spec.Servers {
						for _, ip := range []netip.Addr{to.IPv4, to.IPv6} {
							addr := netip.AddrPortFrom(ip, s.Port)
							where := fmt.Sprintf("%s → %s %s %s", from.Name, to.Name, s.Kind, addr)
							switch s.Kind {
							case KindHTTP:
								rt := s.Routes[0]
								path := strings.Replace(rt.Path, "{id}", "7", 1)
								status, body, err := httpGet(addr, rt.Method, path)
								if from.Name == "rewards-cron" && to.Name == "ledger-svc" {
									if !errors.Is(err, syscall.ECONNRESET) {
										t.Errorf("%s: got %d %q %v; want connection reset", where, status, body, err)
									}
									continue
								}
								want := fmt.Sprintf(`{"pod":%q,"route":%q,"id":"7","status":200}`+"\n", to.Name, rt.Path)
								if rt.Path == "/healthz" {
									want = `{"pod":"checkout-api","route":"/healthz","id":"","status":200}` + "\n"
								}
								if err != nil || status != 200 || body != want {
									t.Errorf("%s: got %d %q %v; want 200 %q", where, status, body, err, want)
								}
							case KindTCPEcho, KindGRPC, KindKafka:
								line := "hello " + from.Name + "\n"
								if s.Kind == KindGRPC || s.Kind == KindKafka {
									c, err := net.DialTimeout("tcp", addr.String(), 2*time.Second)
									if err != nil {
										t.Errorf("%s: %v", where, err)
									} else {
										c.Close()
									}
									continue
								}
								got, err := echo(addr, line)
								if err != nil || got != line {
									t.Errorf("%s: echo got %q %v; want %q", where, got, err, line)
								}
							case KindDNS:
								rcode, ips, err := dnsQuery(addr, "ledger-svc.payments.svc.cluster.local.", dnsmessage.TypeA)
								if err != nil || rcode != dnsmessage.RCodeSuccess || !reflect.DeepEqual(ips, []string{"10.96.200.11 ttl=30"}) {
									t.Errorf("%s: A ledger-svc got %v %v %v; want success [10.96.200.11 ttl=30]", where, rcode, ips, err)
								}
								rcode, ips, err = dnsQuery(addr, "ledger-svc.payments.svc.cluster.local.", dnsmessage.TypeAAAA)
								if err != nil || rcode != dnsmessage.RCodeSuccess || !reflect.DeepEqual(ips, []string{"fd00:fb:96::11 ttl=30"}) {
									t.Errorf("%s: AAAA ledger-svc got %v %v %v; want success [fd00:fb:96::11 ttl=30]", where, rcode, ips, err)
								}
								rcode, ips, err = dnsQuery(addr, "nosuch.payments.svc.cluster.local.", dnsmessage.TypeA)
								if err != nil || rcode != dnsmessage.RCodeNameError || len(ips) != 0 {
									t.Errorf("%s: nosuch got %v %v %v; want NXDomain", where, rcode, ips, err)
								}
							}
						}
					}
				}
			})
		}
	})

	t.Run("the server sees the pod's own address as source, so traffic is routed and not NATed", func(t *testing.T) {
		// The echo server answers what it receives; the source check is the
		// connection's local address inside the client pod.
		from, to := pod("ledger-svc"), pod("postgres-primary")
		counters := func() [4]uint64 {
			var c [4]uint64
			for i, f := range []string{from.HostIf + "/statistics/rx_packets", from.HostIf + "/statistics/tx_packets", to.HostIf + "/statistics/rx_packets", to.HostIf + "/statistics/tx_packets"} {
				b, err := os.ReadFile("/sys/class/net/" + f)
				if err != nil {
					t.Fatal(err)
				}
				fmt.Sscan(string(b), &c[i])
			}
			return c
		}
		before := counters()
		inNetns(t, from.NetNS, func() {
			for _, ip := range []netip.Addr{to.IPv4, to.IPv6} {
				c, err := net.DialTimeout("tcp", netip.AddrPortFrom(ip, 5432).String(), 2*time.Second)
				if err != nil {
					t.Errorf("dial %s: %v", ip, err)
					continue
				}
				local := c.LocalAddr().(*net.TCPAddr).AddrPort().Addr().Unmap()
				_ = c.SetDeadline(time.Now().Add(3 * time.Second))
				if _, err := io.WriteString(c, "ping\n"); err != nil {
					t.Errorf("write %s: %v", ip, err)
				}
				if got, err := bufio.NewReader(c).ReadString('\n'); got != "ping\n" {
					t.Errorf("echo %s: %q %v", ip, got, err)
				}
				c.Close()
				if want := from.IPv4; ip.Is6() {
					want = from.IPv6
					if local != want {
						t.Errorf("local address %s; want %s", local, want)
					}
				} else if local != want {
					t.Errorf("local address %s; want %s", local, want)
				}
			}
		})
		// Two connections with one echo each: at least SYN-ACK and the echo
		// back per connection, and more the other way, counted on both host
		// veths: pod-to-pod traffic crosses the host, through two veths.
		after := counters()
		for i, name := range []string{"client veth rx", "client veth tx", "server veth rx", "server veth tx"} {
			if d := after[i] - before[i]; d < 4 {
				t.Errorf("%s: %d packets; want >= 4", name, d)
			}
		}
	})

	t.Run("the endpoints file lists every pod with its veth, addresses and identity", func(t *testing.T) {
		f, err := endpoints.Read(cfg.EndpointsFile)
		if err != nil {
			t.Fatal(err)
		}
		// The whole file: the plan of the same topology, with the ifindexes the host has.
		wantPlan, err := NewPlan(testTopology(t, 201), "fblt", "")
		if err != nil {
			t.Fatal(err)
		}
		for i := range wantPlan.Pods {
			if wantPlan.Pods[i].IfIndex, err = ifIndex(wantPlan.Pods[i].HostIf); err != nil {
				t.Fatal(err)
			}
		}
		wantBytes, _ := wantPlan.Endpoints().Marshal()
		gotBytes, _ := os.ReadFile(cfg.EndpointsFile)
		if string(gotBytes) != string(wantBytes) {
			t.Fatalf("endpoints file:\n%s\nwant:\n%s", gotBytes, wantBytes)
		}
		if len(f.Pods) != 10 || len(f.Services) != 7 || f.Node != "test-node" {
			t.Fatalf("pods %d services %d node %q; want 10, 7, test-node", len(f.Pods), len(f.Services), f.Node)
		}
		idx, err := ifIndex("fblt2h")
		if err != nil {
			t.Fatal(err)
		}
		want := endpoints.Pod{
			Namespace: "payments", Name: "checkout-api", Workload: "checkout-api", WorkloadKind: "Deployment",
			Labels:    []string{"k8s:app=checkout-api", "k8s:io.kubernetes.pod.namespace=payments"},
			IPs:       []netip.Addr{netip.MustParseAddr("10.201.0.2"), netip.MustParseAddr("fd00:fb:201::2")},
			Interface: "fblt2h", IfIndex: idx, Node: "test-node", NetNS: "fblt-checkout-api",
			Identity: endpoints.Identity([]string{"k8s:app=checkout-api", "k8s:io.kubernetes.pod.namespace=payments"}),
		}
		got, ok := f.PodByIfIndex(idx)
		if !ok || !reflect.DeepEqual(*got, want) {
			t.Fatalf("pod at ifindex %d:\n got %+v\nwant %+v", idx, got, want)
		}
		dns, _ := f.PodByIP(netip.MustParseAddr("10.201.0.6"))
		if dns == nil || dns.Name != "kube-dns" || dns.Namespace != "kube-system" || dns.Workload != "coredns" || dns.Interface != "fblt6h" {
			t.Fatalf("10.201.0.6 = %+v; want kube-system/kube-dns on fblt6h", dns)
		}
		svc, ok := f.ServiceByBackend(netip.MustParseAddr("fd00:fb:201::6"), 53, "UDP")
		if !ok || svc.Name != "kube-dns" || !reflect.DeepEqual(svc.ClusterIPs, []netip.Addr{netip.MustParseAddr("10.96.0.10"), netip.MustParseAddr("fd00:fb:96::a")}) {
			t.Fatalf("service of [fd00:fb:201::6]:53/UDP = %+v; want kube-system/kube-dns", svc)
		}
		pg, _ := f.ServiceByBackend(netip.MustParseAddr("10.201.0.7"), 5432, "TCP")
		if pg == nil || pg.Name != "postgres-primary" || len(pg.Backends) != 2 {
			t.Fatalf("service of 10.201.0.7:5432 = %+v; want postgres-primary with 2 backends", pg)
		}
		for _, p := range f.Pods {
			i, err := ifIndex(p.Interface)
			if err != nil || i != p.IfIndex {
				t.Errorf("pod %s: ifindex %d in file, %d (%v) on the host", p.Name, p.IfIndex, i, err)
			}
		}
	})

	t.Run("traffic for 2 s sends requests on every edge with the expected outcomes", func(t *testing.T) {
		var progress strings.Builder
		rep, err := Traffic(ctx, cfg, TrafficOptions{Duration: 2 * time.Second, Rate: 20, Seed: 7, Progress: &progress})
		if err != nil {
			t.Fatal(err)
		}
		if len(rep.Edges) != 16 {
			t.Fatalf("%d edges; want 16", len(rep.Edges))
		}
		for _, e := range rep.Edges {
			if e.Sent < 10 || e.Sent != e.OK+e.Status5xx+e.Resets+e.Timeouts+e.Errors {
				t.Errorf("%s: %+v; want >= 10 sent, each counted once", e.Name(), e)
			}
			if e.Errors != 0 {
				t.Errorf("%s: %d errors, the last: %s", e.Name(), e.Errors, e.LastError)
			}
			if e.From == "rewards-cron" {
				if e.Resets != e.Sent {
					t.Errorf("%s: %d resets of %d; want every request reset", e.Name(), e.Resets, e.Sent)
				}
			} else if e.Resets != 0 || e.OK == 0 {
				t.Errorf("%s: %+v; want answers and no resets", e.Name(), e)
			}
		}
		// The ground truth: one line per L7 request of every http, grpc
		// and dns edge, answered or not, and Kafka's requests as kgo made
		// them.
		truth, err := ReadTruth(cfg.StateDir)
		if err != nil {
			t.Fatal(err)
		}
		lines := map[string]uint64{}
		methods := map[string]int{}
		for _, r := range truth {
			lines[r.From+" "+r.To+" "+r.Proto+" "+r.Transport] += 1
			methods[r.Proto+" "+r.Method]++
		}
		for _, e := range rep.Edges {
			if e.Kind == KindHTTP || e.Kind == KindGRPC || e.Kind == KindDNS {
				lines[e.From+" "+e.To+" "+e.Kind+" "+e.Transport] -= e.Sent
			}
		}
		for k, n := range lines {
			if !strings.Contains(k, " kafka ") && n != 0 {
				t.Errorf("%s: %d more ground-truth lines than requests sent", k, int64(n))
			}
		}
		for _, m := range []string{"http GET", "http POST", "grpc " + GRPCCheck, "grpc " + GRPCStream, "dns A", "dns AAAA", "kafka Produce", "kafka Fetch", "kafka Metadata"} {
			if methods[m] == 0 {
				t.Errorf("no %s in the ground truth: %v", m, methods)
			}
		}
		if !strings.Contains(progress.String(), "1s  sent") {
			t.Errorf("progress %q; want a line per second", progress.String())
		}
		for _, e := range rep.Edges {
			t.Logf("%-50s %+v", e.Name(), e)
		}
		t.Logf("progress:\n%s", progress.String())
	})

	t.Run("an interrupted traffic stops its clients and leaves the lab up", func(t *testing.T) {
		ictx, cancel := context.WithCancel(ctx)
		time.AfterFunc(700*time.Millisecond, cancel)
		start := time.Now()
		rep, err := Traffic(ictx, cfg, TrafficOptions{Duration: time.Minute, Rate: 5})
		if !errors.Is(err, context.Canceled) || time.Since(start) > 10*time.Second {
			t.Fatalf("Traffic = %v after %s; want context.Canceled soon after 0.7 s", err, time.Since(start))
		}
		if rep.Total().Sent == 0 {
			t.Errorf("interrupted traffic reported nothing sent: %+v", rep.Total())
		}
		marked, err := markedProcesses("fblt")
		if err != nil || len(marked) != 7 {
			t.Fatalf("lab processes after the interrupt: %v %v; want the 7 servers only", marked, err)
		}
	})

	t.Run("the policies file holds the fleet's policies as the agent reads them", func(t *testing.T) {
		if want := filepath.Join(cfg.StateDir, "policies.yaml"); plan.PoliciesFile != want {
			t.Fatalf("policies file %q; want %q", plan.PoliciesFile, want)
		}
		snap, rej, err := filesource.Load(cfg.EndpointsFile, plan.PoliciesFile)
		if err != nil || len(rej) != 0 {
			t.Fatalf("load: %v, rejected %v", err, rej)
		}
		var names []string
		for _, np := range snap.NetworkPolicies {
			names = append(names, np.Namespace+"/"+np.Name)
		}
		if want := []string{"payments/ledger-svc-ingress", "payments/postgres-ingress"}; !reflect.DeepEqual(names, want) {
			t.Fatalf("policies %v; want %v", names, want)
		}
	})

	t.Run("down leaves no namespace, link, process or state file, and a second down does nothing", func(t *testing.T) {
		pids := []int{}
		for _, p := range plan.Pods {
			if p.PID != 0 {
				pids = append(pids, p.PID)
			}
		}
		if len(pids) != 7 {
			t.Fatalf("%d server pids; want 7", len(pids))
		}
		removed, err := Down(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		if len(removed.NetNS) != 10 || len(removed.Links) != 10 || len(removed.Processes) < 7 || len(removed.Files) < 10 {
			t.Fatalf("removed %s; want 10 netns, 10 links, >= 7 processes, >= 10 state files", removed)
		}
		assertNothingLeft(t, "fblt", cfg.StateDir, pids)
		for _, f := range []string{cfg.EndpointsFile, plan.PoliciesFile} {
			if _, err := os.Stat(f); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("%s left: %v", f, err)
			}
		}
		again, err := Down(ctx, cfg)
		if err != nil || !again.Empty() {
			t.Fatalf("second Down: %s, %v; want nothing, no error", again, err)
		}
	})
}

// assertNothingLeft checks with the tools a person would use that nothing of
// the lab is left.
func assertNothingLeft(t *testing.T, prefix, stateDir string, pids []int) {
	t.Helper()
	ns, err := exec.Command("ip", "netns", "list").CombinedOutput()
	if err != nil {
		t.Fatalf("ip netns list: %v %s", err, ns)
	}
	for _, l := range strings.Split(string(ns), "\n") {
		if strings.HasPrefix(l, prefix+"-") {
			t.Errorf("netns left: %s", l)
		}
	}
	links, err := exec.Command("ip", "-o", "link", "show").CombinedOutput()
	if err != nil {
		t.Fatalf("ip link: %v %s", err, links)
	}
	for _, l := range strings.Split(string(links), "\n") {
		f := strings.Fields(l)
		if len(f) > 1 && strings.HasPrefix(f[1], prefix) && strings.HasSuffix(strings.SplitN(f[1], "@", 2)[0], "h") {
			t.Errorf("link left: %s", l)
		}
	}
	for _, pid := range pids {
		if alive(pid) {
			t.Errorf("process %d left", pid)
		}
	}
	if marked, _ := markedProcesses(prefix); len(marked) != 0 {
		t.Errorf("processes with the lab's marker left: %v", marked)
	}
	if root, err := cgroupv2.Root(); err == nil {
		if _, err := os.Stat(filepath.Join(root, "flowbus-lab-"+prefix)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("cgroup %s left (%v)", filepath.Join(root, "flowbus-lab-"+prefix), err)
		}
	}
	if _, err := os.Stat(stateDir); !errors.Is(err, os.ErrNotExist) {
		ents, _ := os.ReadDir(stateDir)
		t.Errorf("state dir %s left (%v) holding %v", stateDir, err, ents)
	}
}

func TestUpThatFailsHalfwayRemovesWhatItMade(t *testing.T) {
	requireLab(t)
	cfg := testConfig(t, "fblu", "lab-child-failing")
	cleanupLab(t, cfg)
	_, err := Up(context.Background(), cfg, testTopology(t, 202))
	if err == nil || !strings.Contains(err.Error(), "pod fraud-detector: server exited before it was ready") {
		t.Fatalf("Up = %v; want the fraud-detector server failure", err)
	}
	assertNothingLeft(t, "fblu", cfg.StateDir, nil)
}

func TestUpInterruptedRemovesWhatItMade(t *testing.T) {
	requireLab(t)
	cfg := testConfig(t, "fblv", "lab-child")
	cleanupLab(t, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	// Cancel as soon as the third pod's namespace exists: halfway through.
	go func() {
		for ctx.Err() == nil {
			if _, err := os.Stat(filepath.Join(netnsDir, "fblv-ledger-svc")); err == nil {
				cancel()
				return
			}
			time.Sleep(time.Millisecond)
		}
	}()
	_, err := Up(ctx, cfg, testTopology(t, 203))
	cancel()
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Up = %v; want context.Canceled", err)
	}
	assertNothingLeft(t, "fblv", cfg.StateDir, nil)
}

func TestDownAfterUpWasKilledRemovesEverything(t *testing.T) {
	requireLab(t)
	cfg := testConfig(t, "fblw", "lab-child")
	cleanupLab(t, cfg)
	up := exec.Command(os.Args[0], "lab-up", cfg.Prefix, cfg.StateDir, "204")
	var stderr strings.Builder
	up.Stderr = &stderr
	if err := up.Start(); err != nil {
		t.Fatal(err)
	}
	// Kill it once servers run, so that orphaned processes are left too.
	deadline := time.Now().Add(15 * time.Second)
	for {
		if _, err := os.Stat(filepath.Join(cfg.StateDir, readyDir, "checkout-api")); err == nil {
			break
		}
		if time.Now().After(deadline) {
			up.Process.Kill()
			up.Wait()
			t.Fatalf("up never started servers: %s", stderr.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	up.Process.Kill()
	up.Wait()
	left, err := findLeftovers(context.Background(), cfg.Prefix)
	if err != nil || len(left.NetNS) != 10 || len(left.Processes) == 0 || len(left.Cgroups) != 11 {
		t.Fatalf("after the crash: %s %v; want 10 namespaces, 11 cgroups (the lab's and its pods') and server processes", left, err)
	}
	// A down that knows only the prefix, as after losing the state dir.
	nostate := cfg
	nostate.StateDir = filepath.Join(t.TempDir(), "none")
	if _, err := Down(context.Background(), nostate); err != nil {
		t.Fatal(err)
	}
	assertNothingLeft(t, cfg.Prefix, nostate.StateDir, left.Processes)
	if _, err := Down(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	assertNothingLeft(t, cfg.Prefix, cfg.StateDir, nil)
}
