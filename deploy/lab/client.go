package lab

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/net/dns/dnsmessage"
	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"
)

// EdgeStats counts the requests of one client edge. Every request sent ends
// in exactly one of OK, Status5xx, Resets, Timeouts, Errors, so
// Sent = OK + Status5xx + Resets + Timeouts + Errors once the edge has stopped.
type EdgeStats struct {
	From      string `json:"from"`
	To        string `json:"to"`
	Kind      string `json:"kind"`
	Port      uint16 `json:"port"`
	Transport string `json:"transport"`        // "tcp", "udp" (dns over udp) or "icmp" (ping)
	Detail    string `json:"detail,omitempty"` // http: method, paths, pipeline; grpc: Check services or Stream; kafka: role and topics
	Sent      uint64 `json:"sent"`
	OK        uint64 `json:"ok"`         // answered as expected (2xx/4xx, DNS answer, echo, ping reply)
	Status5xx uint64 `json:"status_5xx"` // the expected 5xx of a route's error_every
	Resets    uint64 `json:"resets"`     // connection reset by the server (reset_from)
	// Timeouts are requests that got no answer in time: what a client
	// sees of packets a policy drops (a SYN, a query, an echo).
	Timeouts uint64 `json:"timeouts"`
	Errors   uint64 `json:"errors"`  // anything else: refused connections, wrong answers
	Skipped  uint64 `json:"skipped"` // ticks not sent because too many requests were in flight
	// Connections is the ground truth of flows: the connections the edge
	// opened (TCP connects, failed ones included; a UDP socket per DNS
	// query; an ICMP echo socket per ping).
	Connections uint64 `json:"connections"`
	// LastError is the text of the last request counted in Errors.
	LastError string `json:"last_error,omitempty"`
}

// Name is "from → to kind:port".
func (e EdgeStats) Name() string {
	if e.Kind == KindPing {
		return fmt.Sprintf("%s → %s ping", e.From, e.To)
	}
	if e.Kind == KindDNS && e.Transport == "tcp" {
		return fmt.Sprintf("%s → %s %s:%d tcp", e.From, e.To, e.Kind, e.Port)
	}
	if e.Detail != "" {
		return fmt.Sprintf("%s → %s %s:%d %s", e.From, e.To, e.Kind, e.Port, e.Detail)
	}
	return fmt.Sprintf("%s → %s %s:%d", e.From, e.To, e.Kind, e.Port)
}

// clientReport is one line a client process writes on stdout.
type clientReport struct {
	Pod   string      `json:"pod"`
	Final bool        `json:"final"`
	Edges []EdgeStats `json:"edges"`
}

const maxInFlight = 16

type edge struct {
	spec        ClientSpec
	target      *PodPlan
	plan        *Plan
	from        string
	n           atomic.Uint64 // request counter, picks the family
	rngMu       sync.Mutex
	rng         *rand.Rand
	httpc       *http.Client
	grpcConns   map[netip.Addr]*grpc.ClientConn
	grpcSeq     atomic.Uint64              // numbers the gRPC calls (their lab-call header)
	grpcCalls   sync.Map                   // call number -> *wireTimes, from the connections' grpcWire
	kafka       map[netip.Addr]*kgo.Client // one client per family
	kafkaTopics *kafkaTopicNames
	pollMu      sync.Mutex // kafka consume: one poll at a time
	closers     []func()
	truth       *truthWriter // ground truth of the L7 requests

	sent, ok, s5xx, resets, timeouts, errs, skipped atomic.Uint64
	conns                                           atomic.Uint64
	inflight                                        atomic.Int64
	lastErr                                         atomic.Value // string
}

func (e *edge) stats() EdgeStats {
	detail := ""
	if e.spec.Kind == KindHTTP {
		detail = e.spec.Method + " " + strings.Join(e.spec.Paths, ",")
		if e.spec.Pipeline > 1 {
			detail += fmt.Sprintf(" pipeline %d", e.spec.Pipeline)
		}
	}
	if e.spec.Kind == KindKafka {
		detail = e.spec.Role + " " + strings.Join(e.spec.Topics, ",")
	}
	if e.spec.Kind == KindGRPC && e.spec.Stream > 0 {
		detail = fmt.Sprintf("Stream of %d", e.spec.Stream)
	} else if e.spec.Kind == KindGRPC && len(e.spec.Services) > 0 {
		detail = fmt.Sprintf("Check %q", e.spec.Services)
	}
	lastErr, _ := e.lastErr.Load().(string)
	transport := "tcp"
	switch {
	case e.spec.Kind == KindPing:
		transport = "icmp"
	case e.spec.Kind == KindDNS && e.spec.Transport != "tcp":
		transport = "udp"
	}
	return EdgeStats{From: e.from, To: e.spec.To, Kind: e.spec.Kind, Port: e.spec.Port, Transport: transport, Detail: detail,
		Sent: e.sent.Load(), OK: e.ok.Load(), Status5xx: e.s5xx.Load(), Resets: e.resets.Load(), Timeouts: e.timeouts.Load(),
		Errors: e.errs.Load(), Skipped: e.skipped.Load(), Connections: e.conns.Load(), LastError: lastErr}
}

// addr returns the target address for request n: alternating IPv4 and IPv6
// for family "both".
func (e *edge) addr(n uint64) netip.Addr {
	switch e.spec.Family {
	case "ipv4":
		return e.target.IPv4
	case "ipv6":
		return e.target.IPv6
	}
	if n%2 == 0 {
		return e.target.IPv4
	}
	return e.target.IPv6
}

func (e *edge) id() uint64 {
	e.rngMu.Lock()
	defer e.rngMu.Unlock()
	return e.rng.Uint64N(100000)
}

// runClients runs the clients of one pod (inside its namespace) for
// duration, rate requests per second per edge, writing a clientReport line
// on out every 250 ms and a final one when done.
func runClients(ctx context.Context, stateDir, pod string, duration time.Duration, rate float64, seed uint64, out io.Writer, log *slog.Logger) error {
	plan, err := LoadPlan(stateDir)
	if err != nil {
		return err
	}
	spec, ok := plan.Spec(pod)
	if !ok {
		return fmt.Errorf("pod %q is not in the lab", pod)
	}
	if rate <= 0 {
		return fmt.Errorf("rate %v: want > 0", rate)
	}
	// Datagram ICMP sockets for ping; the sysctl is per network namespace.
	_ = os.WriteFile("/proc/sys/net/ipv4/ping_group_range", []byte("0 2147483647\n"), 0o644)
	// Receive timestamps on before the first request (stampConn).
	if release, err := holdRxStamps(); err == nil {
		defer release()
		time.Sleep(10 * time.Millisecond)
	} else {
		log.Warn("no receive timestamps: latencies end when reads return", "err", err)
	}
	truth, err := openTruth(stateDir, plan, pod)
	if err != nil {
		return err
	}
	defer func() {
		if err := truth.Close(); err != nil {
			log.Error("ground truth", "err", err)
		}
	}()
	h := fnv.New64a()
	h.Write([]byte(pod))
	var edges []*edge
	for i, cs := range spec.Clients {
		target, _ := plan.Pod(cs.To)
		e := &edge{spec: cs, target: target, plan: plan, from: pod, truth: truth, rng: rand.New(rand.NewPCG(seed, h.Sum64()+uint64(i)))}
		if err := e.setup(); err != nil {
			for _, e := range append(edges, e) {
				for _, c := range e.closers {
					c()
				}
			}
			return err
		}
		edges = append(edges, e)
	}
	defer func() {
		for _, e := range edges {
			for _, c := range e.closers {
				c()
			}
		}
	}()
	report := func(final bool) {
		if err := truth.Flush(); err != nil {
			log.Error("ground truth", "err", err)
		}
		r := clientReport{Pod: pod, Final: final}
		for _, e := range edges {
			r.Edges = append(r.Edges, e.stats())
		}
		b, _ := json.Marshal(r)
		fmt.Fprintf(out, "%s\n", b)
	}
	ctx, cancel := context.WithTimeout(ctx, duration)
	defer cancel()
	var wg sync.WaitGroup
	interval := time.Duration(float64(time.Second) / rate)
	for _, e := range edges {
		wg.Go(func() {
			tick := time.NewTicker(interval)
			defer tick.Stop()
			var reqs sync.WaitGroup
			defer reqs.Wait()
			for {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
				if e.inflight.Load() >= maxInFlight {
					e.skipped.Add(1)
					continue
				}
				e.inflight.Add(1)
				e.sent.Add(1)
				reqs.Go(func() {
					defer e.inflight.Add(-1)
					e.do()
				})
			}
		})
	}
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	for {
		select {
		case <-done:
			for _, e := range edges {
				for _, c := range e.closers {
					c()
				}
				e.closers = nil
			}
			report(true)
			for _, e := range edges {
				if s, _ := e.lastErr.Load().(string); s != "" {
					log.Info("last error", "edge", e.stats().Name(), "err", s)
				}
			}
			return nil
		case <-tick.C:
			report(false)
		}
	}
}

// setup makes what the edge's requests share: an HTTP client, gRPC
// connections, Kafka clients.
func (e *edge) setup() error {
	cs, target := e.spec, e.target
	switch cs.Kind {
	case KindHTTP:
		tr := &http.Transport{DisableKeepAlives: cs.NewConn, MaxIdleConnsPerHost: maxInFlight, ResponseHeaderTimeout: 2 * time.Second,
			DialContext: e.dialTCP}
		e.httpc = &http.Client{Transport: tr, Timeout: 3 * time.Second}
		e.closers = append(e.closers, tr.CloseIdleConnections)
	case KindGRPC:
		// One HTTP/2 connection per family, as a gRPC client keeps.
		// Keepalive pings find a connection whose packets are dropped
		// (a policy edit) within ~2 s, and reconnects back off to
		// 500 ms at most, so a reverted edit is followed within a
		// second by a new connection, as a tuned production client.
		conns := map[netip.Addr]*grpc.ClientConn{}
		for _, a := range []netip.Addr{target.IPv4, target.IPv6} {
			cc, err := grpc.NewClient(netip.AddrPortFrom(a, cs.Port).String(), grpc.WithTransportCredentials(insecure.NewCredentials()),
				grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: time.Second, Timeout: time.Second, PermitWithoutStream: true}),
				grpc.WithConnectParams(grpc.ConnectParams{MinConnectTimeout: time.Second,
					Backoff: backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 500 * time.Millisecond}}),
				grpc.WithStatsHandler(grpcTimer{}),
				grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
					c, err := e.dialTCP(ctx, "tcp", addr)
					if err != nil {
						return nil, err
					}
					sc := c.(*stampConn)
					// gRPC sets TCP_USER_TIMEOUT to the keepalive timeout
					// on a *net.TCPConn only, which the stampConn hides:
					// set as gRPC would, so that a connection whose
					// packets are dropped fails as fast as without it.
					setTCPUserTimeout(sc.Conn, time.Second)
					w := newGRPCWire(&e.grpcCalls)
					sc.onWrite, sc.onRead, sc.readLimit = w.wrote, w.read, w.readLimit
					return sc, nil
				}))
			if err != nil {
				return fmt.Errorf("grpc client to %s: %w", cs.To, err)
			}
			conns[a] = cc
			e.closers = append(e.closers, func() { _ = cc.Close() })
		}
		e.grpcConns = conns
	case KindKafka:
		return e.setupKafka()
	}
	return nil
}

// do sends one request and counts its outcome.
func (e *edge) do() {
	n := e.n.Add(1) - 1
	addr := e.addr(n)
	var err error
	var is5xx bool
	switch e.spec.Kind {
	case KindHTTP:
		if e.spec.Pipeline > 1 {
			e.doPipeline(addr)
			return
		}
		is5xx, err = e.doHTTP(addr)
	case KindGRPC:
		err = e.doGRPC(addr, n)
	case KindTCPEcho:
		err = e.doEcho(addr, n)
	case KindDNS:
		err = e.doDNS(addr, n)
	case KindPing:
		err = e.doPing(addr, n)
	case KindKafka:
		err = e.doKafka(addr, n)
	default:
		err = fmt.Errorf("unknown kind %q", e.spec.Kind)
	}
	e.count(is5xx, err)
}

// count counts the outcome of one request.
func (e *edge) count(is5xx bool, err error) {
	switch {
	case err == nil && is5xx:
		e.s5xx.Add(1)
	case err == nil:
		e.ok.Add(1)
	case errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		// A server that resets a connection (reset_from) can be seen as a
		// reset, a broken pipe, or an end of stream before any response,
		// depending on when the client's read or write meets the RST.
		e.resets.Add(1)
	case isTimeout(err):
		e.timeouts.Add(1)
	default:
		e.errs.Add(1)
		e.lastErr.Store(err.Error())
	}
}

// isTimeout reports whether err is a request that got no answer in time:
// a dial, read or deadline timeout, whichever layer noticed it first.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) ||
		status.Code(err) == codes.DeadlineExceeded || (errors.As(err, &ne) && ne.Timeout())
}

// httpPath picks the next request's path, its id filled in.
func (e *edge) httpPath() (path, id string) {
	e.rngMu.Lock()
	path = e.spec.Paths[e.rng.IntN(len(e.spec.Paths))]
	e.rngMu.Unlock()
	id = strconv.FormatUint(e.id(), 10)
	return strings.Replace(path, "{id}", id, 1), id
}

func (e *edge) doHTTP(addr netip.Addr) (bool, error) {
	path, id := e.httpPath()
	url := "http://" + netip.AddrPortFrom(addr, e.spec.Port).String() + path
	var body io.Reader
	if e.spec.Method == http.MethodPost || e.spec.Method == http.MethodPut {
		body = strings.NewReader(`{"id":` + id + `}`)
	}
	rec := TruthRecord{To: e.spec.To, Family: familyOf(addr), Transport: "tcp", ServerPort: e.spec.Port, Proto: ProtoHTTP,
		Method: e.spec.Method, Path: path, Status: -1}
	// Request start, end of its write and first response byte, from the
	// transport's goroutines.
	// The connection (a stampConn) notes when the request's write began
	// and when the response's first byte arrived; GotFirstResponseByte
	// reads them while the connection is still this request's.
	var (
		mu           sync.Mutex
		conn         *stampConn
		start, first = time.Now(), time.Time{}
	)
	trace := &httptrace.ClientTrace{
		GotConn: func(i httptrace.GotConnInfo) {
			mu.Lock()
			defer mu.Unlock()
			start = time.Now()
			conn, _ = i.Conn.(*stampConn)
			if ta, ok := i.Conn.LocalAddr().(*net.TCPAddr); ok {
				rec.LocalPort = uint16(ta.Port)
			}
		},
		GotFirstResponseByte: func() {
			mu.Lock()
			defer mu.Unlock()
			first = time.Now()
			if conn != nil {
				if s, f := conn.exchange(); !s.IsZero() && !f.IsZero() {
					start, first = s, f
				}
			}
		},
	}
	is5xx, err := func() (bool, error) {
		req, err := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), e.spec.Method, url, body)
		if err != nil {
			return false, err
		}
		resp, err := e.httpc.Do(req)
		if err != nil {
			return false, err
		}
		defer resp.Body.Close()
		rec.Status = resp.StatusCode
		got, err := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
		if err != nil {
			return false, err
		}
		return e.checkHTTP(url, path, resp.StatusCode, got)
	}()
	mu.Lock()
	rec.Time = start.UnixNano()
	if !first.IsZero() {
		rec.LatencyNs = int64(first.Sub(start))
	}
	mu.Unlock()
	if err != nil {
		rec.Error = err.Error()
	}
	e.truth.write(rec)
	return is5xx, err
}

// doPipeline opens a connection, writes Pipeline requests on it in one
// write, then reads and checks the responses in order (net/http does not
// pipeline, so this is raw HTTP/1.1 on a net.Conn). It counts every
// request: one tick sent Pipeline of them.
func (e *edge) doPipeline(addr netip.Addr) {
	n := e.spec.Pipeline
	e.sent.Add(uint64(n - 1))
	host := netip.AddrPortFrom(addr, e.spec.Port).String()
	recs := make([]TruthRecord, n)
	reqs := make([]*http.Request, n)
	var buf bytes.Buffer
	for i := range n {
		path, id := e.httpPath()
		recs[i] = TruthRecord{To: e.spec.To, Family: familyOf(addr), Transport: "tcp", ServerPort: e.spec.Port, Proto: ProtoHTTP,
			Method: e.spec.Method, Path: path, Status: -1, Pipelined: i + 1}
		reqs[i] = &http.Request{Method: e.spec.Method, URL: &url.URL{Path: path}}
		fmt.Fprintf(&buf, "%s %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: flowbus-lab\r\n", e.spec.Method, path, host)
		if e.spec.Method == http.MethodPost || e.spec.Method == http.MethodPut {
			body := `{"id":` + id + `}`
			fmt.Fprintf(&buf, "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
		} else {
			buf.WriteString("\r\n")
		}
	}
	done := 0
	finish := func(is5xx bool, err error) {
		if err != nil {
			recs[done].Error = err.Error()
		}
		e.truth.write(recs[done])
		e.count(is5xx, err)
		done++
	}
	defer func() {
		for done < n { // the requests after a failure fail with it
			finish(false, fmt.Errorf("pipelined request %d of %d: an earlier one failed: %s", done+1, n, recs[done-1].Error))
		}
	}()
	start := time.Now()
	for i := range recs {
		recs[i].Time = start.UnixNano()
	}
	c, err := e.dialTCP(context.Background(), "tcp", host)
	if err != nil {
		finish(false, err)
		return
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	local := uint16(c.LocalAddr().(*net.TCPAddr).Port)
	start = time.Now()
	for i := range recs {
		recs[i].Time, recs[i].LocalPort = start.UnixNano(), local
	}
	if _, err := c.Write(buf.Bytes()); err != nil {
		finish(false, err)
		return
	}
	tr := &timedReader{r: c}
	br := bufio.NewReader(tr)
	for i := range n {
		off := tr.total - int64(br.Buffered()) // where response i starts in the stream
		resp, err := http.ReadResponse(br, reqs[i])
		if err != nil {
			finish(false, err)
			return
		}
		recs[i].Status = resp.StatusCode
		recs[i].LatencyNs = int64(tr.at(off).Sub(start))
		got, err := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
		resp.Body.Close()
		if err != nil {
			finish(false, err)
			return
		}
		finish(e.checkHTTP("http://"+host+reqs[i].URL.Path, reqs[i].URL.Path, resp.StatusCode, got))
	}
}

// timedReader notes when each read's first byte arrived (a stampConn's
// receive timestamp; else when the read returned) and the stream offset it
// reached, so that the arrival of any byte read can be looked up.
type timedReader struct {
	r     io.Reader
	total int64
	reads []timedRead
}

type timedRead struct {
	end int64 // stream offset after the read
	t   time.Time
}

func (t *timedReader) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	if n > 0 {
		t.total += int64(n)
		at := time.Now()
		if s, ok := t.r.(*stampConn); ok {
			at = s.lastArrival()
		}
		t.reads = append(t.reads, timedRead{t.total, at})
	}
	return n, err
}

// at returns when the byte at offset off was read (zero if not yet).
func (t *timedReader) at(off int64) time.Time {
	for _, r := range t.reads {
		if r.end > off {
			return r.t
		}
	}
	return time.Time{}
}

// checkHTTP checks an HTTP answer against what the server must have
// answered; it reports whether the answer is a 5xx.
func (e *edge) checkHTTP(url, path string, status int, got []byte) (bool, error) {
	wantStatus, wantBody := http.StatusNotFound, "404 page not found\n"
	if spec, ok := e.plan.Spec(e.spec.To); ok {
		for _, s := range spec.Servers {
			if s.Kind != KindHTTP || s.Port != e.spec.Port {
				continue
			}
			for _, rt := range s.Routes {
				rid, ok := matchRoute(rt.Path, path)
				if !ok {
					continue
				}
				if rt.Method != e.spec.Method {
					wantStatus, wantBody = http.StatusMethodNotAllowed, "method not allowed\n"
				} else if st, b, err := ExpectedResponse(e.spec.To, rt, rid); err == nil {
					wantStatus, wantBody = st, b
				}
				break
			}
		}
	}
	if status != wantStatus || string(got) != wantBody {
		return false, fmt.Errorf("%s %s: got %d %q, want %d %q", e.spec.Method, url, status, got, wantStatus, wantBody)
	}
	return status >= 500, nil
}

// The gRPC methods the lab's clients call.
const (
	GRPCCheck  = "/grpc.health.v1.Health/Check" // unary
	GRPCStream = "/flowbus.lab.v1.Lab/Stream"   // server-streaming
)

func (e *edge) doGRPC(addr netip.Addr, n uint64) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	call := e.grpcSeq.Add(1)
	t := &rpcTimes{start: time.Now(), call: call}
	ctx = context.WithValue(ctx, rpcTimesKey{}, t)
	ctx = metadata.AppendToOutgoingContext(ctx, grpcCallHeader, strconv.FormatUint(call, 10))
	var p peer.Peer
	if e.spec.Stream > 0 {
		err := e.grpcStream(ctx, addr, &p)
		e.truth.write(t.record(e, addr, GRPCStream, true, &p, err))
		return err
	}
	svc := ""
	if len(e.spec.Services) > 0 {
		svc = e.spec.Services[(n/2)%uint64(len(e.spec.Services))]
	}
	resp, err := healthpb.NewHealthClient(e.grpcConns[addr]).Check(ctx, &healthpb.HealthCheckRequest{Service: svc}, grpc.Peer(&p))
	e.truth.write(t.record(e, addr, GRPCCheck, false, &p, err))
	// What the server must have answered: SERVING for itself and its
	// workload, NOT_FOUND for any other service.
	known := svc == "" || svc == e.target.workload(e.plan)
	switch {
	case err == nil && known && resp.Status == healthpb.HealthCheckResponse_SERVING:
		return nil
	case !known && status.Code(err) == codes.NotFound:
		return nil
	case err == nil:
		return fmt.Errorf("grpc health of %s service %q: %s", e.spec.To, svc, resp.Status)
	case isTimeout(err) || known:
		return err
	}
	return fmt.Errorf("grpc health of %s service %q: %w; want NOT_FOUND", e.spec.To, svc, err)
}

// grpcStream makes one Stream call and checks that it brings Stream
// messages and ends OK.
func (e *edge) grpcStream(ctx context.Context, addr netip.Addr, p *peer.Peer) error {
	cs, err := e.grpcConns[addr].NewStream(ctx, &grpc.StreamDesc{StreamName: "Stream", ServerStreams: true}, GRPCStream, grpc.Peer(p))
	if err != nil {
		return err
	}
	if err := cs.SendMsg(&healthpb.HealthCheckRequest{Service: strconv.Itoa(e.spec.Stream)}); err != nil {
		return err
	}
	if err := cs.CloseSend(); err != nil {
		return err
	}
	got := 0
	for {
		var resp healthpb.HealthCheckResponse
		err := cs.RecvMsg(&resp)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		got++
	}
	if got != e.spec.Stream {
		return fmt.Errorf("grpc stream from %s: %d messages, want %d", e.spec.To, got, e.spec.Stream)
	}
	return nil
}

// rpcTimes is what grpcTimer notes of one RPC.
type rpcTimes struct {
	mu                 sync.Mutex
	call               uint64    // its number, in its lab-call header
	start              time.Time // the call
	wrote, header, end time.Time // request message written, response headers, end status
	messages           int       // response messages
}

type rpcTimesKey struct{}

// record is the ground truth of one finished RPC: status code (-1 when no
// response header came back), latency from the request message's write to
// the response headers, duration to the end status.
func (t *rpcTimes) record(e *edge, addr netip.Addr, method string, stream bool, p *peer.Peer, err error) TruthRecord {
	t.mu.Lock()
	defer t.mu.Unlock()
	rec := TruthRecord{Time: t.start.UnixNano(), To: e.spec.To, Family: familyOf(addr), Transport: "tcp", ServerPort: e.spec.Port,
		Proto: ProtoGRPC, Method: method, Path: method, Status: -1, Stream: stream, Messages: t.messages}
	if !t.wrote.IsZero() {
		rec.Time = t.wrote.UnixNano()
	}
	if ta, ok := p.LocalAddr.(*net.TCPAddr); ok {
		rec.LocalPort = uint16(ta.Port)
	}
	// The call's times on the wire (grpcWire) when its connection saw
	// them, else the stats handler's.
	wrote, header := t.wrote, t.header
	if v, ok := e.grpcCalls.LoadAndDelete(t.call); ok {
		if s, f := v.(*wireTimes).get(); !f.IsZero() {
			wrote, header = s, f
			rec.Time = s.UnixNano()
		}
	}
	if !t.header.IsZero() {
		rec.Status = int(status.Code(err))
		rec.LatencyNs = int64(header.Sub(wrote))
		if !t.end.IsZero() {
			rec.DurationNs = int64(t.end.Sub(wrote))
		}
	}
	if err != nil {
		rec.Error = err.Error()
	}
	return rec
}

// grpcTimer is the clients' gRPC stats handler: it notes, in the RPC's
// rpcTimes, when the request message was written, when the response
// headers came, how many messages followed, and when the RPC ended.
type grpcTimer struct{}

func (grpcTimer) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context   { return ctx }
func (grpcTimer) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context { return ctx }
func (grpcTimer) HandleConn(context.Context, stats.ConnStats)                       {}
func (grpcTimer) HandleRPC(ctx context.Context, s stats.RPCStats) {
	t, ok := ctx.Value(rpcTimesKey{}).(*rpcTimes)
	if !ok {
		return
	}
	now := time.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	switch s := s.(type) {
	case *stats.OutPayload:
		if t.wrote.IsZero() {
			t.wrote = s.SentTime
		}
	case *stats.InHeader:
		t.header = now
	case *stats.InTrailer:
		if t.header.IsZero() { // a trailers-only response: its first byte
			t.header = now
		}
	case *stats.InPayload:
		t.messages++
	case *stats.End:
		t.end = s.EndTime
	}
}

// dialTCP opens a TCP connection and counts it, failed or not.
func (e *edge) dialTCP(ctx context.Context, network, addr string) (net.Conn, error) {
	e.conns.Add(1)
	d := net.Dialer{Timeout: 2 * time.Second}
	c, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return newStampConn(c), nil
}

// dnsPorts hands out the DNS client's source ports in sequence, from
// dnsPortMin up to just below the kernel's ephemeral range: each query is
// then its own flow unless the pod sends more than ~1,200 queries per
// second (a port reused within the flow idle timeout is the same flow to
// any conntrack), which the tests' ground truth relies on. Random ephemeral
// ports would come back within seconds at the lab's rates.
var dnsPorts atomic.Uint32

const dnsPortMin, dnsPortEnd = 20000, 32768

func (e *edge) dialUDP(addr netip.AddrPort) (net.Conn, error) {
	var err error
	for range 16 {
		port := dnsPortMin + int(dnsPorts.Add(1)-1)%(dnsPortEnd-dnsPortMin)
		d := net.Dialer{LocalAddr: &net.UDPAddr{Port: port}}
		var c net.Conn
		if c, err = d.Dial("udp", addr.String()); err == nil {
			return c, nil
		}
		if !errors.Is(err, syscall.EADDRINUSE) {
			break
		}
	}
	return nil, err
}

func (e *edge) doEcho(addr netip.Addr, n uint64) error {
	c, err := e.dialTCP(context.Background(), "tcp", netip.AddrPortFrom(addr, e.spec.Port).String())
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	r := bufio.NewReader(c)
	for i := range e.spec.Messages {
		line := fmt.Sprintf("SELECT %d, %d FROM %s\n", n, i, e.from)
		if _, err := io.WriteString(c, line); err != nil {
			return err
		}
		got, err := r.ReadString('\n')
		if err != nil {
			return err
		}
		if got != line {
			return fmt.Errorf("echo from %s: got %q, want %q", e.spec.To, got, line)
		}
	}
	return nil
}

func (e *edge) doDNS(addr netip.Addr, n uint64) error {
	name := e.spec.Names[(n/2)%uint64(len(e.spec.Names))]
	qtype := dnsmessage.TypeA
	if (n/2/uint64(len(e.spec.Names)))%2 == 1 {
		qtype = dnsmessage.TypeAAAA
	}
	qname, err := dnsmessage.NewName(strings.TrimSuffix(name, ".") + ".")
	if err != nil {
		return fmt.Errorf("dns name %q: %w", name, err)
	}
	id := uint16(e.id())
	b := dnsmessage.NewBuilder(make([]byte, 0, 512), dnsmessage.Header{ID: id, RecursionDesired: true})
	if err := b.StartQuestions(); err != nil {
		return err
	}
	if err := b.Question(dnsmessage.Question{Name: qname, Type: qtype, Class: dnsmessage.ClassINET}); err != nil {
		return err
	}
	pkt, err := b.Finish()
	if err != nil {
		return err
	}
	rec := TruthRecord{To: e.spec.To, Family: familyOf(addr), Transport: e.spec.Transport, ServerPort: e.spec.Port, Proto: ProtoDNS,
		Method: strings.TrimPrefix(qtype.String(), "Type"), Path: qname.String(), Status: -1}
	exchange := e.exchangeDNS
	if e.spec.Transport == "tcp" {
		exchange = e.exchangeDNSTCP
	}
	msg, err := exchange(addr, pkt, id, &rec)
	if err == nil {
		rec.Status = int(msg.RCode)
		err = e.checkDNS(msg, name, qtype, &rec)
	} else {
		err = fmt.Errorf("dns %s %s: %w", qtype, name, err)
	}
	if err != nil {
		rec.Error = err.Error()
	}
	e.truth.write(rec)
	return err
}

// exchangeDNS sends one query over UDP and returns its answer. It fills
// rec's time (before the write), local port and latency (end of the write
// to the read that returned the answer).
func (e *edge) exchangeDNS(addr netip.Addr, pkt []byte, id uint16, rec *TruthRecord) (*dnsmessage.Message, error) {
	rec.Time = time.Now().UnixNano()
	c, err := e.dialUDP(netip.AddrPortFrom(addr, e.spec.Port))
	if err != nil {
		return nil, err
	}
	defer c.Close()
	rec.LocalPort = uint16(c.LocalAddr().(*net.UDPAddr).Port)
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	uc := c.(*net.UDPConn)
	enableRxStamps(uc)
	start := time.Now()
	rec.Time = start.UnixNano()
	if _, err := c.Write(pkt); err != nil {
		return nil, err
	}
	e.conns.Add(1) // a socket (source port) of its own per query
	resp := make([]byte, 1500)
	for {
		m, at, err := readStampedUDP(uc, resp)
		if err != nil {
			return nil, err
		}
		var msg dnsmessage.Message
		if err := msg.Unpack(resp[:m]); err != nil || msg.ID != id {
			continue // not our answer
		}
		rec.LatencyNs = int64(at.Sub(start))
		return &msg, nil
	}
}

// exchangeDNSTCP sends one query over a TCP connection of its own
// (length-prefixed, RFC 1035 4.2.2) and returns its answer, filling rec as
// exchangeDNS does.
func (e *edge) exchangeDNSTCP(addr netip.Addr, pkt []byte, id uint16, rec *TruthRecord) (*dnsmessage.Message, error) {
	rec.Time = time.Now().UnixNano()
	c, err := e.dialTCP(context.Background(), "tcp", netip.AddrPortFrom(addr, e.spec.Port).String())
	if err != nil {
		return nil, err
	}
	defer c.Close()
	rec.LocalPort = uint16(c.LocalAddr().(*net.TCPAddr).Port)
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	framed := binary.BigEndian.AppendUint16(make([]byte, 0, len(pkt)+2), uint16(len(pkt)))
	framed = append(framed, pkt...)
	start := time.Now()
	rec.Time = start.UnixNano()
	if _, err := c.Write(framed); err != nil {
		return nil, err
	}
	tr := &timedReader{r: c}
	r := bufio.NewReader(tr)
	var lenBuf [2]byte
	if _, err := io.ReadFull(r, lenBuf[:]); err != nil {
		return nil, err
	}
	rec.LatencyNs = int64(tr.at(0).Sub(start))
	resp := make([]byte, binary.BigEndian.Uint16(lenBuf[:]))
	if _, err := io.ReadFull(r, resp); err != nil {
		return nil, err
	}
	var msg dnsmessage.Message
	if err := msg.Unpack(resp); err != nil {
		return nil, fmt.Errorf("answer: %w", err)
	}
	if msg.ID != id {
		return nil, fmt.Errorf("answer id %d, want %d", msg.ID, id)
	}
	return &msg, nil
}

// checkDNS checks an answer against what the lab's DNS server must have
// answered, and notes its records in rec.
func (e *edge) checkDNS(msg *dnsmessage.Message, name string, qtype dnsmessage.Type, rec *TruthRecord) error {
	var got []netip.Addr
	for i, a := range msg.Answers {
		if i == 0 || a.Header.TTL < rec.TTL {
			rec.TTL = a.Header.TTL
		}
		switch r := a.Body.(type) {
		case *dnsmessage.AResource:
			got = append(got, netip.AddrFrom4(r.A))
			rec.Answers = append(rec.Answers, netip.AddrFrom4(r.A).String())
		case *dnsmessage.AAAAResource:
			got = append(got, netip.AddrFrom16(r.AAAA))
			rec.Answers = append(rec.Answers, netip.AddrFrom16(r.AAAA).String())
		case *dnsmessage.CNAMEResource:
			rec.CNAMEs = append(rec.CNAMEs, r.CNAME.String())
		}
	}
	var cnames map[string]string
	if spec, ok := e.plan.Spec(e.spec.To); ok {
		for _, s := range spec.Servers {
			if s.Kind == KindDNS && s.Port == e.spec.Port {
				cnames = newDNSServer(e.plan, s.CNAMEs, nil).cnames
			}
		}
	}
	wantRCode, wantChain, wantIPs := DNSAnswer(e.plan, cnames, name, qtype)
	if msg.RCode != wantRCode || fmt.Sprint(got) != fmt.Sprint(wantIPs) || fmt.Sprint(rec.CNAMEs) != fmt.Sprint(wantChain) {
		return fmt.Errorf("dns %s %s: got %s %v %v, want %s %v %v", qtype, name, msg.RCode, rec.CNAMEs, got, wantRCode, wantChain, wantIPs)
	}
	return nil
}

func (e *edge) doPing(addr netip.Addr, n uint64) error {
	network, proto := "udp4", 1
	var typ icmp.Type = ipv4.ICMPTypeEcho
	if addr.Is6() {
		network, proto, typ = "udp6", 58, ipv6.ICMPTypeEchoRequest
	}
	c, err := icmp.ListenPacket(network, "")
	if err != nil {
		return fmt.Errorf("ping socket: %w", err)
	}
	defer c.Close()
	msg := icmp.Message{Type: typ, Body: &icmp.Echo{ID: 0, Seq: int(n & 0xffff), Data: []byte("flowbus-lab")}}
	b, err := msg.Marshal(nil)
	if err != nil {
		return err
	}
	if _, err := c.WriteTo(b, &net.UDPAddr{IP: addr.AsSlice()}); err != nil {
		return err
	}
	e.conns.Add(1) // a socket of its own: its echo identifier keys the flow
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 1500)
	for {
		m, _, err := c.ReadFrom(buf)
		if err != nil {
			return fmt.Errorf("ping %s: %w", addr, err)
		}
		rm, err := icmp.ParseMessage(proto, buf[:m])
		if err != nil {
			continue
		}
		if echo, ok := rm.Body.(*icmp.Echo); ok && (rm.Type == ipv4.ICMPTypeEchoReply || rm.Type == ipv6.ICMPTypeEchoReply) && echo.Seq == int(n&0xffff) {
			return nil
		}
	}
}
