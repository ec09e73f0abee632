//go:build linux

package ebpf

import (
	"net/netip"
	"time"

	flowpb "github.com/cilium/cilium/api/v1/flow"

	"github.com/flowbus/flowbus/agent/l7"
	"github.com/flowbus/flowbus/agent/l7/fqdn"
	"github.com/flowbus/flowbus/agent/l7/stream"
	"github.com/flowbus/flowbus/bpf"
	"github.com/flowbus/flowbus/schemas"
	"github.com/flowbus/flowbus/schemas/hubble"
)

// kernelL7 is the kernel's half of the L7 config: every followed port
// with its protocol as its class (stream.Protocol values are below
// bpf.L7ClassMax), and the head size.
func kernelL7(c *stream.Config, ring uint32) bpf.L7Config {
	k := bpf.L7Config{HeadBytes: uint32(c.HeadBytes), RingBufSize: ring}
	for p, proto := range c.Ports {
		k.Ports = append(k.Ports, bpf.L7Port{Port: p.Port, Proto: p.Proto, Class: uint8(proto)})
	}
	return k
}

// l7sink follows the kernel's L7 captures on the collector's L7 goroutine:
// captures become segments of the tracker, its exchanges L7 flow records
// (a request, and a response when one came) sent downstream in batches,
// and DNS answers fill the names cache that L3/L4 records read.
type l7sink struct {
	batcher
	tr      *stream.Tracker
	names   *fqdn.Cache
	metrics *stream.Collector
	seg     stream.Segment
	// ports are the followed ports, to turn a mid-stream connection round
	// when the kernel guessed its opener wrong.
	ports stream.Ports
	// cap is the capture being handled (for the records' interface and
	// which side the pod behind it is).
	cap      *bpf.L7Capture
	mono     int64 // CLOCK_MONOTONIC → Unix ns
	nextTick time.Time
}

func newL7Sink(s *Source, out chan<- []schemas.Flow) (*l7sink, error) {
	tr, err := stream.New(*s.cfg.L7)
	if err != nil {
		return nil, err
	}
	return &l7sink{batcher: newBatcher(s, out), tr: tr, names: s.names, metrics: s.l7metrics, ports: s.cfg.L7.Ports,
		mono: bpf.MonoToUnix()}, nil
}

func (k *l7sink) Capture(c *bpf.L7Capture) {
	s := &k.seg
	client, server := netip.AddrPortFrom(c.Src, c.SrcPort), netip.AddrPortFrom(c.Dst, c.DstPort)
	s.Dir = l7.FromClient
	if c.IsReply {
		client, server = server, client
		s.Dir = l7.FromServer
	}
	if _, ok := k.ports[stream.Port{Proto: c.Proto, Port: server.Port()}]; !ok {
		// The kernel marks a mid-stream flow when either port is
		// followed: the followed one is the server.
		if _, ok := k.ports[stream.Port{Proto: c.Proto, Port: client.Port()}]; ok {
			client, server = server, client
			s.Dir ^= 1
		}
	}
	s.Conn = l7.Conn{Client: client, Server: server, Proto: c.Proto}
	s.TimeNs, s.Seq, s.Len, s.Flags, s.Head = c.TimeNs, c.Seq, c.Len, c.TCPFlags, c.Head
	k.cap = c
	k.tr.Feed(s, k.emit)
	k.cap = nil
	if k.full() {
		k.send()
	}
}

// Idle passes the batch on and, once a second, closes idle connections and
// hands the tracker's counters to the metrics.
func (k *l7sink) Idle() {
	now := time.Now()
	if now.After(k.nextTick) {
		k.nextTick = now.Add(time.Second)
		k.mono = bpf.MonoToUnix()
		k.tr.Expire(bpf.MonoNow(), k.emit)
		k.metrics.Update(k.tr.Stats())
	}
	k.send()
}

// close ends every connection (their requests without a response are
// emitted) and sends the last batch.
func (k *l7sink) close() {
	k.tr.Close(k.emit)
	k.metrics.Update(k.tr.Stats())
	k.send()
}

// emit turns an exchange into its records: the request (client → server,
// REQUEST), and the response (server → client, a reply, RESPONSE, with the
// latency) when one came. The response counts as traffic (no bytes: the
// connection's L3/L4 records carry those), which puts it in the route
// rollups without adding a flow to its pair; the request counts nothing.
func (k *l7sink) emit(r *stream.Record) {
	e := r.Exchange
	v := k.src.view.Load()
	req := l7Flow(r, k.cap, k.src.cfg.Node, v)
	req.TimeNs = e.RequestNs + k.mono
	req.FirstSeenNs, req.LastSeenNs = req.TimeNs, req.TimeNs
	req.L7 = requestOnly(&e.L7)
	req.CountAs = schemas.CountNone
	addNames(&req, k.names)
	if e.ResponseNs == 0 {
		k.batch = append(k.batch, req)
		return
	}
	resp := req
	resp.TimeNs = e.ResponseNs + k.mono
	resp.FirstSeenNs, resp.LastSeenNs = resp.TimeNs, resp.TimeNs
	resp.SrcIP, resp.DstIP = req.DstIP, req.SrcIP
	resp.SrcPort, resp.DstPort = req.DstPort, req.SrcPort
	resp.Src, resp.Dst = req.Dst, req.Src
	resp.SrcService, resp.DstService = req.DstService, req.SrcService
	resp.IsReply = schemas.True
	resp.L7 = e.L7
	resp.L7.Type = flowpb.L7FlowType_RESPONSE
	resp.LatencyNs = uint64(e.LatencyNs())
	resp.CountAs = schemas.CountTraffic
	resp.DstNames = nil
	addNames(&resp, k.names)
	if r.Protocol == stream.DNS && k.names != nil {
		// Answers are the cache's at their response's time, on the
		// records' clock (Unix ns).
		ex := *e
		ex.ResponseNs = resp.TimeNs
		k.names.AddExchange(podKey(&req.Src, req.SrcIP), &ex)
	}
	k.batch = append(k.batch, req, resp)
}

// requestOnly is what a request record of exchange fields l says, as a
// Hubble request: the request's fields, none of the response's (status,
// rcode and answers, error code).
func requestOnly(l *schemas.L7) schemas.L7 {
	r := schemas.L7{Type: flowpb.L7FlowType_REQUEST, Protocol: l.Protocol}
	switch l.Protocol {
	case schemas.L7HTTP:
		r.HTTPMethod, r.HTTPURL, r.HTTPProtocol, r.HTTPHeaders = l.HTTPMethod, l.HTTPURL, l.HTTPProtocol, l.HTTPHeaders
	case schemas.L7DNS:
		r.DNSQuery, r.DNSQTypes, r.DNSObservationSource = l.DNSQuery, l.DNSQTypes, l.DNSObservationSource
	case schemas.L7Kafka:
		r.KafkaAPIKey, r.KafkaAPIVersion, r.KafkaCorrelationID, r.KafkaTopic, r.KafkaClientID =
			l.KafkaAPIKey, l.KafkaAPIVersion, l.KafkaCorrelationID, l.KafkaTopic, l.KafkaClientID
	}
	return r
}

// l7Flow is the request record of an exchange of r's connection, as the
// capture c's interface saw it, without its times and L7 fields.
func l7Flow(r *stream.Record, c *bpf.L7Capture, node string, v *view) schemas.Flow {
	client, server := r.Conn.Client, r.Conn.Server
	f := schemas.Flow{
		NodeName: node, Verdict: flowpb.Verdict_FORWARDED, EventType: hubble.MsgTypeAccessLog,
		IsReply: schemas.False, SrcIP: client.Addr(), DstIP: server.Addr(),
		SrcPort: client.Port(), DstPort: server.Port(), L4Protocol: r.Conn.Proto, Count: 1,
		IPVersion: flowpb.IPVersion_IPv4,
	}
	if client.Addr().Is6() {
		f.IPVersion = flowpb.IPVersion_IPv6
	}
	// The pod behind the interface is the client when the client's
	// packets pass ingress there: its egress (Hubble's client-side
	// proxy); otherwise the server's ingress.
	f.Direction = flowpb.TrafficDirection_INGRESS
	behindIsClient := false
	if c != nil {
		f.IfIndex = c.IfIndex
		behindIsClient = c.Ingress != c.IsReply
		if behindIsClient {
			f.Direction = flowpb.TrafficDirection_EGRESS
		}
	}
	if v == nil {
		return f
	}
	if p, ok := v.pod(f.SrcIP); ok {
		f.Src = *p
	}
	if p, ok := v.pod(f.DstIP); ok {
		f.Dst = *p
	}
	if p, ok := v.podBehind(f.IfIndex); ok {
		if behindIsClient && f.Src.PodName == "" {
			f.Src = *p
		} else if !behindIsClient && f.Dst.PodName == "" {
			f.Dst = *p
		}
	}
	if s, ok := v.service(f.DstIP, f.DstPort, f.L4Protocol); ok {
		f.DstService = s
	}
	return f
}

// podKey names a pod in the names cache: namespace/name, or its address
// when it is no known pod.
func podKey(ep *schemas.Endpoint, ip netip.Addr) string {
	if ep.PodName != "" {
		return ep.Namespace + "/" + ep.PodName
	}
	return ip.Unmap().String()
}

// addNames sets the DNS names of f's peer that f's pod resolved and that
// are alive at the record's time: the destination's for a record from the
// opener, the source's for a reply.
func addNames(f *schemas.Flow, c *fqdn.Cache) {
	if c == nil || f.L4Protocol == 1 || f.L4Protocol == 58 {
		return
	}
	if f.IsReply == schemas.True {
		f.SrcNames = c.Names(podKey(&f.Dst, f.DstIP), f.SrcIP, f.TimeNs)
		return
	}
	f.DstNames = c.Names(podKey(&f.Src, f.SrcIP), f.DstIP, f.TimeNs)
}
