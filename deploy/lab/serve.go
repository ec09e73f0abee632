package lab

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/dns/dnsmessage"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"
)

// serve runs the servers of one pod until ctx ends. It must run inside the
// pod's network namespace. It binds every listener first, then writes the
// pod's ready file, so Up knows the lab answers once it returns.
func serve(ctx context.Context, stateDir, pod string, log *slog.Logger) error {
	plan, err := LoadPlan(stateDir)
	if err != nil {
		return err
	}
	spec, ok := plan.Spec(pod)
	if !ok {
		return fmt.Errorf("pod %q is not in the lab", pod)
	}
	var closers []func()
	defer func() {
		for _, c := range closers {
			c()
		}
	}()
	var wg sync.WaitGroup
	for _, s := range spec.Servers {
		deny := resetSet(plan, s.ResetFrom)
		switch s.Kind {
		case KindHTTP:
			ln, err := listenTCP(s.Port, deny, log)
			if err != nil {
				return err
			}
			srv := &http.Server{Handler: &httpHandler{pod: pod, routes: s.Routes}, ReadHeaderTimeout: 5 * time.Second, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug)}
			wg.Go(func() { _ = srv.Serve(ln) })
			closers = append(closers, func() { _ = srv.Close() })
		case KindGRPC:
			ln, err := listenTCP(s.Port, deny, log)
			if err != nil {
				return err
			}
			srv := newGRPCServer(spec.Workload, s.Latency)
			wg.Go(func() { _ = srv.Serve(ln) })
			closers = append(closers, srv.Stop)
		case KindTCPEcho:
			ln, err := listenTCP(s.Port, deny, log)
			if err != nil {
				return err
			}
			wg.Go(func() { echoServe(ln) })
			closers = append(closers, func() { _ = ln.Close() })
		case KindKafka:
			pp, _ := plan.Pod(pod)
			clusters, err := startKafka([]netip.Addr{pp.IPv4, pp.IPv6}, s.Port, s.Topics, deny, log)
			if err != nil {
				return fmt.Errorf("pod %s: %w", pod, err)
			}
			for _, c := range clusters {
				if s.Latency > 0 {
					kafkaLatency(c, s.Latency)
				}
				closers = append(closers, c.Close)
			}
		case KindDNS:
			pc, err := net.ListenPacket("udp", fmt.Sprintf(":%d", s.Port))
			if err != nil {
				return fmt.Errorf("pod %s: dns server: %w", pod, err)
			}
			d := newDNSServer(plan, s.CNAMEs, log)
			d.latency = s.Latency
			wg.Go(func() { d.serve(pc) })
			closers = append(closers, func() { _ = pc.Close() })
			ln, err := listenTCP(s.Port, nil, log)
			if err != nil {
				return fmt.Errorf("pod %s: dns server: %w", pod, err)
			}
			wg.Go(func() { d.serveTCP(ln) })
			closers = append(closers, func() { _ = ln.Close() })
		}
		log.Info("listening", "pod", pod, "kind", s.Kind, "port", s.Port)
	}
	ready := filepath.Join(stateDir, readyDir, pod)
	if err := writeFileAtomic(ready, []byte(strconv.Itoa(os.Getpid())+"\n")); err != nil {
		return err
	}
	<-ctx.Done()
	for _, c := range closers {
		c()
	}
	closers = nil
	wg.Wait()
	return nil
}

// newGRPCServer returns the lab's gRPC server of a pod of workload: the
// health service (SERVING for "" and workload) and the lab's Stream.
// Each call waits latency before its handler runs.
func newGRPCServer(workload string, latency time.Duration) *grpc.Server {
	// Clients ping every second (see runClients); a server
	// enforces a 5 min minimum by default and would close them.
	opts := []grpc.ServerOption{grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 500 * time.Millisecond, PermitWithoutStream: true})}
	if latency > 0 {
		opts = append(opts,
			grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
				time.Sleep(latency)
				return h(ctx, req)
			}),
			grpc.StreamInterceptor(func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
				time.Sleep(latency)
				return h(srv, ss)
			}))
	}
	srv := grpc.NewServer(opts...)
	hs := health.NewServer()
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	hs.SetServingStatus(workload, healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(srv, hs)
	srv.RegisterService(&labServiceDesc, struct{}{})
	return srv
}

// labServiceDesc is the lab's own gRPC service, registered without
// generated code: flowbus.lab.v1.Lab/Stream is server-streaming, with the
// health service's messages (so the proto codec needs nothing new).
var labServiceDesc = grpc.ServiceDesc{
	ServiceName: "flowbus.lab.v1.Lab",
	HandlerType: (*any)(nil),
	Streams:     []grpc.StreamDesc{{StreamName: "Stream", ServerStreams: true, Handler: labStream}},
	Metadata:    "deploy/lab (no .proto)",
}

// labStream answers a HealthCheckRequest whose service is a count n
// (1..1000) with n SERVING responses, then OK; any other request with
// INVALID_ARGUMENT.
func labStream(_ any, ss grpc.ServerStream) error {
	var req healthpb.HealthCheckRequest
	if err := ss.RecvMsg(&req); err != nil {
		return err
	}
	n, err := strconv.Atoi(req.Service)
	if err != nil || n < 1 || n > 1000 {
		return status.Errorf(codes.InvalidArgument, "want a count of 1..1000 messages, got %q", req.Service)
	}
	for range n {
		if err := ss.SendMsg(&healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING}); err != nil {
			return err
		}
	}
	return nil
}

// resetSet returns the addresses of the pods a server resets.
func resetSet(plan *Plan, pods []string) map[netip.Addr]bool {
	set := map[netip.Addr]bool{}
	for _, name := range pods {
		if p, ok := plan.Pod(name); ok {
			set[p.IPv4], set[p.IPv6] = true, true
		}
	}
	return set
}

// listenTCP listens on port on every address of the pod (IPv4 and IPv6).
// Connections from an address in deny are reset (SO_LINGER 0, then close)
// as soon as they are accepted and never reach the server.
func listenTCP(port uint16, deny map[netip.Addr]bool, log *slog.Logger) (net.Listener, error) {
	ln, err := net.Listen("tcp", fmt.Sprintf(":%d", port))
	if err != nil {
		return nil, fmt.Errorf("listen tcp %d: %w", port, err)
	}
	if len(deny) == 0 {
		return ln, nil
	}
	return &resetListener{Listener: ln, deny: deny, log: log}, nil
}

type resetListener struct {
	net.Listener
	deny map[netip.Addr]bool
	log  *slog.Logger
}

func (l *resetListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		tc, ok := c.(*net.TCPConn)
		if !ok {
			return c, nil
		}
		ap := tc.RemoteAddr().(*net.TCPAddr).AddrPort()
		if !l.deny[ap.Addr().Unmap()] {
			return c, nil
		}
		_ = tc.SetLinger(0)
		_ = tc.Close()
		l.log.Debug("reset connection (reset_from)", "remote", ap)
	}
}

// echoServe answers every line of every connection with the same line.
func echoServe(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			r := bufio.NewReader(c)
			for {
				_ = c.SetDeadline(time.Now().Add(30 * time.Second))
				line, err := r.ReadBytes('\n')
				if len(line) > 0 {
					if _, werr := c.Write(line); werr != nil {
						return
					}
				}
				if err != nil {
					return
				}
			}
		}()
	}
}

// httpHandler serves a pod's routes; see RouteSpec and ExpectedResponse.
type httpHandler struct {
	pod    string
	routes []RouteSpec
}

func (h *httpHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, io.LimitReader(r.Body, 1<<20))
	for _, rt := range h.routes {
		id, ok := matchRoute(rt.Path, r.URL.Path)
		if !ok {
			continue
		}
		if r.Method != rt.Method {
			w.Header().Set("Allow", rt.Method)
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		status, body, err := ExpectedResponse(h.pod, rt, id)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if rt.Latency > 0 {
			time.Sleep(rt.Latency)
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
		return
	}
	http.NotFound(w, r)
}

// matchRoute matches path against pattern, where one segment of pattern may
// be "{id}"; it returns the id ("" when the pattern has none).
func matchRoute(pattern, path string) (string, bool) {
	ps, xs := strings.Split(pattern, "/"), strings.Split(path, "/")
	if len(ps) != len(xs) {
		return "", false
	}
	id := ""
	for i := range ps {
		switch {
		case ps[i] == "{id}" && xs[i] != "":
			id = xs[i]
		case ps[i] != xs[i]:
			return "", false
		}
	}
	return id, true
}

// ExpectedResponse returns the status and body the lab's HTTP server gives
// on pod for route rt and id: ErrorStatus when id is a multiple of
// ErrorEvery, else 200; the body is one JSON line naming pod, route, id and
// status. A non-numeric id on a route with error_every is an error (400).
func ExpectedResponse(pod string, rt RouteSpec, id string) (int, string, error) {
	status := http.StatusOK
	if rt.ErrorEvery > 0 && id != "" {
		n, err := strconv.ParseUint(id, 10, 64)
		if err != nil {
			return 0, "", fmt.Errorf("id %q is not a number", id)
		}
		if n%rt.ErrorEvery == 0 {
			status = rt.ErrorStatus
		}
	}
	body := fmt.Sprintf(`{"pod":%q,"route":%q,"id":%q,"status":%d}`+"\n", pod, rt.Path, id, status)
	return status, body, nil
}

// ClusterDomain is the DNS suffix of service names: <svc>.<ns>.svc.<domain>.
const ClusterDomain = "cluster.local"

// DNSAnswer returns what the lab's DNS server with CNAMEs cnames (alias →
// target, ServerSpec.CNAMEs) answers for name and type: the chain of CNAME
// targets from name (each with its trailing dot), then for A and AAAA the
// cluster IPs of that family of the service the chain ends at,
// "<svc>.<ns>.svc.cluster.local". A service name known but asked for the
// other family (or another type) is RCodeSuccess with no address; a chain
// that ends at an unknown name is RCodeNameError (with the CNAMEs that led
// there). A CNAME question is answered with the first CNAME only.
func DNSAnswer(plan *Plan, cnames map[string]string, name string, qtype dnsmessage.Type) (dnsmessage.RCode, []string, []netip.Addr) {
	name = strings.TrimSuffix(strings.ToLower(name), ".")
	var chain []string
	for range maxCNAMEChain {
		target, ok := cnames[name]
		if !ok {
			break
		}
		target = strings.TrimSuffix(strings.ToLower(target), ".")
		chain = append(chain, target+".")
		if qtype == dnsmessage.TypeCNAME {
			return dnsmessage.RCodeSuccess, chain, nil
		}
		name = target
	}
	for _, s := range plan.Topology.Services {
		if name != s.Name+"."+s.Namespace+".svc."+ClusterDomain {
			continue
		}
		var out []netip.Addr
		want := func(ip netip.Addr) {
			if (qtype == dnsmessage.TypeA && ip.Is4()) || (qtype == dnsmessage.TypeAAAA && ip.Is6()) {
				out = append(out, ip)
			}
		}
		for _, c := range s.ClusterIPs {
			want(netip.MustParseAddr(c))
		}
		if len(s.ClusterIPs) == 0 {
			// A headless service: its backends' addresses, as Kubernetes
			// DNS answers.
			for i := range plan.Pods {
				if i < len(plan.Topology.Pods) && plan.Pods[i].Namespace == s.Namespace && selects(s.Selector, plan.Topology.Pods[i].Labels) {
					want(plan.Pods[i].IPv4)
					want(plan.Pods[i].IPv6)
				}
			}
		}
		return dnsmessage.RCodeSuccess, chain, out
	}
	return dnsmessage.RCodeNameError, chain, nil
}

// selects reports whether every label of selector is one of labels.
func selects(selector, labels map[string]string) bool {
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return len(selector) > 0
}

// maxCNAMEChain bounds a CNAME chain (a loop in a topology's cnames ends
// there).
const maxCNAMEChain = 8

// TTLs of the lab's DNS answers: every address record has DNSTTL, every
// CNAME record DNSCNAMETTL. NXDOMAIN answers carry no SOA.
const (
	DNSTTL      = 30
	DNSCNAMETTL = 60
)

type dnsServer struct {
	plan   *Plan
	cnames map[string]string // normalised: lower case, no trailing dot
	log    *slog.Logger
	// latency is waited before each answer (the server's service time);
	// queries over UDP are answered one after the other.
	latency time.Duration
	// bad counts queries that got no answer because they did not parse as
	// a query (over TCP the connection is closed then); it is logged when
	// the server stops.
	bad atomic.Uint64
}

func newDNSServer(plan *Plan, cnames map[string]string, log *slog.Logger) *dnsServer {
	d := &dnsServer{plan: plan, cnames: map[string]string{}, log: log}
	for k, v := range cnames {
		d.cnames[strings.TrimSuffix(strings.ToLower(k), ".")] = v
	}
	return d
}

func (d *dnsServer) serve(pc net.PacketConn) {
	buf := make([]byte, 1500)
	out := make([]byte, 0, 512)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				d.log.Info("dns server stopped", "bad_queries", d.bad.Load())
				return
			}
			continue
		}
		resp, err := d.answer(buf[:n], out[:0])
		if err != nil {
			d.bad.Add(1)
			d.log.Debug("dns: bad query", "from", from, "err", err)
			continue
		}
		if d.latency > 0 {
			time.Sleep(d.latency)
		}
		_, _ = pc.WriteTo(resp, from)
	}
}

// serveTCP answers DNS over TCP (RFC 1035 4.2.2: every message preceded by
// its length in two bytes), any number of queries per connection, until
// the client closes it or is idle for 10 s. A query that does not parse is
// counted (bad) and the connection closed.
func (d *dnsServer) serveTCP(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			r := bufio.NewReader(c)
			var lenBuf [2]byte
			buf := make([]byte, 65535)
			out := make([]byte, 2, 514)
			for {
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				if _, err := io.ReadFull(r, lenBuf[:]); err != nil {
					return
				}
				n := int(binary.BigEndian.Uint16(lenBuf[:]))
				if _, err := io.ReadFull(r, buf[:n]); err != nil {
					d.bad.Add(1)
					return
				}
				resp, err := d.answer(buf[:n], out[:2])
				if err != nil {
					d.bad.Add(1)
					d.log.Debug("dns: bad query over tcp", "from", c.RemoteAddr(), "err", err)
					return
				}
				binary.BigEndian.PutUint16(resp, uint16(len(resp)-2))
				if d.latency > 0 {
					time.Sleep(d.latency)
				}
				if _, err := c.Write(resp); err != nil {
					return
				}
			}
		}()
	}
}

// answer builds the response to one query, appended to out. A packet that
// does not parse as a query gets no answer (an error).
func (d *dnsServer) answer(pkt, out []byte) ([]byte, error) {
	var p dnsmessage.Parser
	h, err := p.Start(pkt)
	if err != nil {
		return nil, fmt.Errorf("header: %w", err)
	}
	if h.Response {
		return nil, errors.New("not a query")
	}
	q, err := p.Question()
	if err != nil {
		return nil, fmt.Errorf("question: %w", err)
	}
	rcode, chain, ips := DNSAnswer(d.plan, d.cnames, q.Name.String(), q.Type)
	b := dnsmessage.NewBuilder(out, dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true, RecursionDesired: h.RecursionDesired, RCode: rcode})
	b.EnableCompression()
	if err := b.StartQuestions(); err != nil {
		return nil, err
	}
	if err := b.Question(q); err != nil {
		return nil, err
	}
	if err := b.StartAnswers(); err != nil {
		return nil, err
	}
	owner := q.Name
	for _, target := range chain {
		t, err := dnsmessage.NewName(target)
		if err != nil {
			return nil, err
		}
		if err := b.CNAMEResource(dnsmessage.ResourceHeader{Name: owner, Class: dnsmessage.ClassINET, TTL: DNSCNAMETTL}, dnsmessage.CNAMEResource{CNAME: t}); err != nil {
			return nil, err
		}
		owner = t
	}
	for _, ip := range ips {
		rh := dnsmessage.ResourceHeader{Name: owner, Class: dnsmessage.ClassINET, TTL: DNSTTL}
		if ip.Is4() {
			err = b.AResource(rh, dnsmessage.AResource{A: ip.As4()})
		} else {
			err = b.AAAAResource(rh, dnsmessage.AAAAResource{AAAA: ip.As16()})
		}
		if err != nil {
			return nil, err
		}
	}
	return b.Finish()
}
