package metrics

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"

	flowpb "github.com/cilium/cilium/api/v1/flow"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/flowbus/flowbus/schemas"
	"github.com/flowbus/flowbus/schemas/hubble"
)

const (
	flowDirUnknown = flowpb.TrafficDirection_TRAFFIC_DIRECTION_UNKNOWN
	flowDirIngress = flowpb.TrafficDirection_INGRESS
	flowDirEgress  = flowpb.TrafficDirection_EGRESS
)

// DefaultMaxLabelSets caps the label combinations of one metric.
const DefaultMaxLabelSets = 2000

// Config configures the Hubble metrics.
type Config struct {
	// Metrics enables metrics in Hubble's --metrics syntax (see ParseSpecs);
	// empty enables none but hubble_lost_events_total.
	Metrics []string
	// MaxLabelSets caps the label-value combinations per metric (default
	// DefaultMaxLabelSets); flows that would create more are not counted in
	// that metric but in flowbus_metrics_label_overflow_total{metric}.
	MaxLabelSets int
}

// Validate checks the configuration and fills defaults.
func (c *Config) Validate() error {
	if c.MaxLabelSets == 0 {
		c.MaxLabelSets = DefaultMaxLabelSets
	}
	if c.MaxLabelSets < 0 {
		return errors.New("metrics: max label sets must be positive")
	}
	_, err := ParseSpecs(c.Metrics...)
	return err
}

// Metrics computes Hubble's flow metrics from raw flows. It implements the
// agent pipeline's Tap: Observe and Lost only update counters, without
// blocking on anything but a short mutex. Safe for concurrent use.
type Metrics struct {
	handlers []handler
	lost     *prometheus.CounterVec
	overflow *prometheus.CounterVec
}

type handler interface {
	process(f *schemas.Flow, n float64)
}

// New registers Hubble's metric vectors selected by cfg on reg, with
// Hubble's names, help and label sets (cilium v1.20 pkg/hubble/metrics;
// kafka's from v1.19, the last cilium with a kafka metric).
func New(cfg Config, reg prometheus.Registerer) (*Metrics, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	specs, _ := ParseSpecs(cfg.Metrics...)
	m := &Metrics{
		lost: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hubble_lost_events_total", Help: "Number of lost events",
		}, []string{"source"}),
		overflow: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flowbus_metrics_label_overflow_total",
			Help: "Flows not counted in a Hubble metric because it reached its cap of label combinations.",
		}, []string{"metric"}),
	}
	// Every place Hubble loses events has its series from the start, at 0
	// until a loss: the kernel ring buffer and the observer's events queue
	// (Hubble's monitor consumer registers both at startup) and the
	// Observer ring's readers (Hubble adds it at the first loss).
	for _, src := range []flowpb.LostEventSource{flowpb.LostEventSource_PERF_EVENT_RING_BUFFER,
		flowpb.LostEventSource_OBSERVER_EVENTS_QUEUE, flowpb.LostEventSource_HUBBLE_RING_BUFFER} {
		m.lost.WithLabelValues(strings.ToLower(src.String()))
	}
	cs := []prometheus.Collector{m.lost, m.overflow}
	seen := map[string]bool{}
	for _, s := range specs {
		base := s.Name
		if base == "httpV2" {
			base = "http"
		}
		if seen[base] {
			return nil, fmt.Errorf("metrics: %s enabled twice", s.Name)
		}
		seen[base] = true
		h, vecs := newHandler(s, cfg.MaxLabelSets, m.overflow)
		m.handlers = append(m.handlers, h)
		cs = append(cs, vecs...)
	}
	if reg != nil {
		for _, c := range cs {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("register hubble metrics: %w", err)
			}
		}
	}
	return m, nil
}

// Observe updates the metrics with flows (a folded record counts Count times).
func (m *Metrics) Observe(flows []schemas.Flow) {
	for i := range flows {
		n := float64(flows[i].FlowCount())
		for _, h := range m.handlers {
			h.process(&flows[i], n)
		}
	}
}

// Lost counts n lost events in hubble_lost_events_total{source}, the source
// in lower case as Hubble names it ("perf_event_ring_buffer").
func (m *Metrics) Lost(source flowpb.LostEventSource, n uint64) {
	m.lost.WithLabelValues(strings.ToLower(source.String())).Add(float64(n))
}

// capped guards one metric's label cardinality, and keeps each label
// set's child metric: one map lookup per flow, without building a key
// string, instead of a joined key, a lookup here and the vector's own
// hashing and lookup in WithLabelValues.
type capped struct {
	name     string
	max      int
	overflow prometheus.Counter
	mu       sync.Mutex
	seen     map[string]any // the child of each label set
	key      []byte         // scratch, under mu
}

func newCapped(name string, max int, overflow *prometheus.CounterVec) *capped {
	return &capped{name: name, max: max, overflow: overflow.WithLabelValues(name), seen: map[string]any{}}
}

// child returns the metric of values, made by mk on the first use of the
// set, or nil when the set is new and the cap is reached (n is then counted
// as overflow).
func (c *capped) child(values []string, n float64, mk func(...string) any) any {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.key = c.key[:0]
	for i, v := range values {
		if i > 0 {
			c.key = append(c.key, 0xff)
		}
		c.key = append(c.key, v...)
	}
	if m, ok := c.seen[string(c.key)]; ok {
		return m
	}
	if len(c.seen) >= c.max {
		c.overflow.Add(n)
		return nil
	}
	m := mk(slices.Clone(values)...)
	c.seen[string(c.key)] = m
	return m
}

type counter struct {
	vec *prometheus.CounterVec
	cap *capped
	mk  func(...string) any
}

func newCounter(vec *prometheus.CounterVec, cap *capped) counter {
	return counter{vec: vec, cap: cap, mk: func(v ...string) any { return vec.WithLabelValues(v...) }}
}

func (c counter) add(n float64, values ...string) {
	if m := c.cap.child(values, n, c.mk); m != nil {
		m.(prometheus.Counter).Add(n)
	}
}

type histogram struct {
	vec *prometheus.HistogramVec
	cap *capped
	mk  func(...string) any
}

func newHistogram(vec *prometheus.HistogramVec, cap *capped) histogram {
	return histogram{vec: vec, cap: cap, mk: func(v ...string) any { return vec.WithLabelValues(v...) }}
}

func (h histogram) observe(v float64, n float64, values ...string) {
	if m := h.cap.child(values, n, h.mk); m != nil {
		o := m.(prometheus.Observer)
		for i := 0.0; i < n; i++ {
			o.Observe(v)
		}
	}
}

func newHandler(s Spec, max int, overflow *prometheus.CounterVec) (handler, []prometheus.Collector) {
	ctx := parseContext(s)
	names := ctx.labelNames()
	cv := func(name, help string, labels []string) counter {
		v := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
		return newCounter(v, newCapped(name, max, overflow))
	}
	hv := func(name, help string, labels []string) histogram {
		v := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help}, labels)
		return newHistogram(v, newCapped(name, max, overflow))
	}
	join := func(a []string, b ...string) []string { return append(append([]string{}, a...), b...) }
	switch s.Name {
	case "flow":
		h := &flowHandler{ctx: ctx, flows: cv("hubble_flows_processed_total", "Total number of flows processed", join([]string{"protocol", "type", "subtype", "verdict"}, names...))}
		return h, []prometheus.Collector{h.flows.vec}
	case "drop":
		h := &dropHandler{ctx: ctx, drops: cv("hubble_drop_total", "Number of drops", join(names, "reason", "protocol"))}
		return h, []prometheus.Collector{h.drops.vec}
	case "policy":
		h := &policyHandler{ctx: ctx, verdicts: cv("hubble_policy_verdicts_total", "Total number of Cilium network policy verdicts", join([]string{"direction", "match", "action"}, names...))}
		return h, []prometheus.Collector{h.verdicts.vec}
	case "tcp":
		h := &tcpHandler{ctx: ctx, flags: cv("hubble_tcp_flags_total", "TCP flag occurrences", join([]string{"flag", "family"}, names...))}
		return h, []prometheus.Collector{h.flags.vec}
	case "http":
		h := &httpHandler{ctx: ctx,
			requests:  cv("hubble_http_requests_total", "Count of HTTP requests", join(names, "method", "protocol", "reporter")),
			responses: cv("hubble_http_responses_total", "Count of HTTP responses", join(names, "method", "protocol", "status", "reporter")),
			duration:  hv("hubble_http_request_duration_seconds", "Quantiles of HTTP request duration in seconds", join(names, "method", "reporter")),
		}
		return h, []prometheus.Collector{h.requests.vec, h.responses.vec, h.duration.vec}
	case "httpV2":
		h := &httpHandler{ctx: ctx, v2: true,
			requests: cv("hubble_http_requests_total", "Count of HTTP requests", join(names, "method", "protocol", "status", "reporter")),
			duration: hv("hubble_http_request_duration_seconds", "Quantiles of HTTP request duration in seconds", join(names, "method", "reporter")),
		}
		return h, []prometheus.Collector{h.requests.vec, h.duration.vec}
	case "kafka":
		// Cilium's last kafka handler (v1.19; v1.20 removed it) names both
		// vectors so, its duration help text included.
		h := &kafkaHandler{ctx: ctx,
			requests: cv("hubble_kafka_requests_total", "Count of Kafka requests", join(names, "topic", "api_key", "error_code", "reporter")),
			duration: hv("hubble_kafka_request_duration_seconds", "Quantiles of HTTP request duration in seconds", join(names, "topic", "api_key", "reporter")),
		}
		return h, []prometheus.Collector{h.requests.vec, h.duration.vec}
	case "icmp":
		h := &icmpHandler{ctx: ctx, icmp: cv("hubble_icmp_total", "Number of ICMP messages", join([]string{"family", "type"}, names...))}
		return h, []prometheus.Collector{h.icmp.vec}
	case "port-distribution":
		h := &portHandler{ctx: ctx, ports: cv("hubble_port_distribution_total", "Numbers of packets distributed by destination port", join([]string{"protocol", "port"}, names...))}
		return h, []prometheus.Collector{h.ports.vec}
	default: // "dns"
		_, query := s.Options["query"]
		_, ignoreAAAA := s.Options["ignoreaaaa"]
		qr := join(names, "rcode", "qtypes", "ips_returned")
		rt := join(names, "type", "qtypes")
		if query {
			qr, rt = append(qr, "query"), append(rt, "query")
		}
		h := &dnsHandler{ctx: ctx, query: query, ignoreAAAA: ignoreAAAA,
			queries:       cv("hubble_dns_queries_total", "Number of DNS queries observed", qr),
			responses:     cv("hubble_dns_responses_total", "Number of DNS responses observed", qr),
			responseTypes: cv("hubble_dns_response_types_total", "Number of DNS response types observed", rt),
		}
		return h, []prometheus.Collector{h.queries.vec, h.responses.vec, h.responseTypes.vec}
	}
}

// flowProtocol mirrors Hubble's v1.FlowProtocol.
func flowProtocol(f *schemas.Flow) string {
	switch f.EventType {
	case hubble.MsgTypeAccessLog:
		switch f.L7.Protocol {
		case schemas.L7DNS:
			return "DNS"
		case schemas.L7HTTP:
			return "HTTP"
		}
		return "Unknown L7"
	case hubble.MsgTypeDrop, hubble.MsgTypeTrace, hubble.MsgTypePolicyVerdict, hubble.MsgTypeCapture:
		switch f.L4Protocol {
		case 6:
			return "TCP"
		case 17:
			return "UDP"
		case 1:
			return "ICMPv4"
		case 58:
			return "ICMPv6"
		case 132:
			return "SCTP"
		case 112:
			return "VRRP"
		case 2:
			return "IGMP"
		}
		return "Unknown L4"
	}
	return "Unknown flow"
}

type flowHandler struct {
	ctx   contextOptions
	flows counter
}

func (h *flowHandler) process(f *schemas.Flow, n float64) {
	var typ, sub string
	switch f.EventType {
	case hubble.MsgTypeAccessLog:
		typ = "L7"
		switch f.L7.Protocol {
		case schemas.L7DNS:
			sub = "DNS"
		case schemas.L7HTTP:
			sub = "HTTP"
		}
	case hubble.MsgTypeDrop:
		typ = "Drop"
	case hubble.MsgTypeCapture:
		typ = "Capture"
	case hubble.MsgTypeTrace:
		typ = "Trace"
		sub, _ = hubble.TraceObservationPoint(int32(uint8(f.EventSubType)))
	case hubble.MsgTypePolicyVerdict:
		typ = "PolicyVerdict"
	default:
		typ, sub = "Unknown", strconv.Itoa(int(f.EventType))
	}
	h.flows.add(n, append([]string{flowProtocol(f), typ, sub, f.Verdict.String()}, h.ctx.values(f, false)...)...)
}

type dropHandler struct {
	ctx   contextOptions
	drops counter
}

// process counts a dropped record as Hubble's drop handler counts drop
// events: every flow whose verdict is DROPPED, whatever its event type, but
// the eBPF source's policy verdict events (type 5 and CountNone: each
// repeats the decision of a drop record counted already, where Cilium's
// policy verdict event is counted by Hubble beside its drop event), by
// the drop_reason_desc enum name (DROP_REASON_UNKNOWN when none, the number
// for a code the enum does not name) and FlowProtocol. Hubble adds one per
// event, and Cilium sends one drop event per dropped packet; a flowbus
// record carries all the packets its flow dropped since its last record, so
// it adds its packets (PacketsFwd+PacketsRev), or, when it carries no packet
// counts (flows from a Hubble source: one event each), its Count as every
// other metric does.
func (h *dropHandler) process(f *schemas.Flow, n float64) {
	if f.Verdict != flowpb.Verdict_DROPPED || (f.EventType == hubble.MsgTypePolicyVerdict && f.CountAs == schemas.CountNone) {
		return
	}
	if p := f.PacketsFwd + f.PacketsRev; p > 0 {
		n = float64(p)
	}
	h.drops.add(n, append(h.ctx.values(f, false), f.DropReason.String(), flowProtocol(f))...)
}

type policyHandler struct {
	ctx      contextOptions
	verdicts counter
}

// process mirrors Hubble's policy handler: it counts policy verdict events
// (event type 5) but those whose source is the host (identity 1), with
// match the policy match type in lower case (none, l3-only, l3-l4, l4-only,
// all, l3-proto, proto-only), and L7 records (event type 129, a proxy's
// verdict) with match "l7/dns", "l7/http" or "l7/" (Kafka, none);
// direction and action are the traffic direction and the verdict in lower
// case. Trace and drop events do not count (a policy drop is in
// hubble_drop_total); the eBPF source emits a policy verdict event beside a
// connection's first record where a policy decided it.
func (h *policyHandler) process(f *schemas.Flow, n float64) {
	var match string
	switch f.EventType {
	case hubble.MsgTypePolicyVerdict:
		if f.Src.Identity == hubble.IdentityHost {
			return
		}
		match = strings.ToLower(hubble.PolicyMatchTypeName(uint32(f.PolicyMatchType)))
	case hubble.MsgTypeAccessLog:
		switch f.L7.Protocol {
		case schemas.L7DNS:
			match = "l7/dns"
		case schemas.L7HTTP:
			match = "l7/http"
		default:
			match = "l7/"
		}
	default:
		return
	}
	direction := strings.ToLower(f.Direction.String())
	action := strings.ToLower(f.Verdict.String())
	h.verdicts.add(n, append([]string{direction, match, action}, h.ctx.values(f, false)...)...)
}

type tcpHandler struct {
	ctx   contextOptions
	flags counter
}

func (h *tcpHandler) process(f *schemas.Flow, n float64) {
	if f.Verdict != flowpb.Verdict_FORWARDED && f.Verdict != flowpb.Verdict_REDIRECTED {
		return
	}
	if f.L4Protocol != 6 || f.TCPFlags == 0 || f.IPVersion == flowpb.IPVersion_IP_NOT_USED {
		return
	}
	labels := append([]string{"", f.IPVersion.String()}, h.ctx.values(f, false)...)
	emit := func(flag string) {
		labels[0] = flag
		h.flags.add(n, labels...)
	}
	if f.TCPFlags&schemas.FlagFIN != 0 {
		emit("FIN")
	}
	if f.TCPFlags&schemas.FlagSYN != 0 {
		if f.TCPFlags&schemas.FlagACK != 0 {
			emit("SYN-ACK")
		} else {
			emit("SYN")
		}
	}
	if f.TCPFlags&schemas.FlagRST != 0 {
		emit("RST")
	}
}

type httpHandler struct {
	ctx                 contextOptions
	v2                  bool
	requests, responses counter
	duration            histogram
}

func reporter(f *schemas.Flow) string {
	switch f.Direction {
	case flowDirEgress:
		return "client"
	case flowDirIngress:
		return "server"
	}
	return "unknown"
}

func (h *httpHandler) process(f *schemas.Flow, n float64) {
	if f.L7.Protocol != schemas.L7HTTP {
		return
	}
	l7, rep := &f.L7, reporter(f)
	seconds := float64(f.LatencyNs) / 1e9
	if h.v2 {
		if l7.Type != flowpb.L7FlowType_RESPONSE {
			return
		}
		ctx := h.ctx.values(f, true)
		h.requests.add(n, append(ctx, l7.HTTPMethod, l7.HTTPProtocol, strconv.Itoa(int(l7.HTTPStatus)), rep)...)
		h.duration.observe(seconds, n, append(ctx, l7.HTTPMethod, rep)...)
		return
	}
	ctx := h.ctx.values(f, false)
	switch l7.Type {
	case flowpb.L7FlowType_REQUEST:
		h.requests.add(n, append(ctx, l7.HTTPMethod, l7.HTTPProtocol, rep)...)
	case flowpb.L7FlowType_RESPONSE:
		h.responses.add(n, append(slicesClone(ctx), l7.HTTPMethod, l7.HTTPProtocol, strconv.Itoa(int(l7.HTTPStatus)), rep)...)
		h.duration.observe(seconds, n, append(ctx, l7.HTTPMethod, rep)...)
	}
}

func slicesClone(s []string) []string { return append([]string(nil), s...) }

type dnsHandler struct {
	ctx                               contextOptions
	query, ignoreAAAA                 bool
	queries, responses, responseTypes counter
}

func (h *dnsHandler) process(f *schemas.Flow, n float64) {
	d := &f.L7
	if d.Protocol != schemas.L7DNS {
		return
	}
	if h.ignoreAAAA && len(d.DNSQTypes) == 1 && d.DNSQTypes[0] == "AAAA" {
		return
	}
	ctx := h.ctx.values(f, false)
	qtypes := strings.Join(d.DNSQTypes, ",")
	ips := strconv.Itoa(len(d.DNSIPs))
	withQuery := func(l []string) []string {
		if h.query {
			return append(l, d.DNSQuery)
		}
		return l
	}
	switch {
	case f.Verdict == flowpb.Verdict_DROPPED:
		h.queries.add(n, withQuery(append(slicesClone(ctx), hubble.DNSRCodeLabelPolicyDenied, qtypes, ips))...)
	case f.IsReply != schemas.True:
		h.queries.add(n, withQuery(append(slicesClone(ctx), "", qtypes, ips))...)
	default:
		h.responses.add(n, withQuery(append(slicesClone(ctx), hubble.DNSRCodeLabel(d.DNSRCode), qtypes, ips))...)
		for _, t := range d.DNSRRTypes {
			h.responseTypes.add(n, withQuery(append(slicesClone(ctx), t, qtypes))...)
		}
	}
}

type kafkaHandler struct {
	ctx      contextOptions
	requests counter
	duration histogram
}

// process mirrors Hubble's kafka handler (cilium v1.19
// pkg/hubble/metrics/kafka): only Kafka REQUEST records count, each in
// hubble_kafka_requests_total by topic, api key, error code (decimal) and
// reporter, and in hubble_kafka_request_duration_seconds with the record's
// L7 latency. Responses are not counted. The error code and latency are
// the request record's own: the eBPF source puts both on the response
// record, so its requests count with error_code "0" and a latency of 0.
func (h *kafkaHandler) process(f *schemas.Flow, n float64) {
	l7 := &f.L7
	if l7.Protocol != schemas.L7Kafka || l7.Type != flowpb.L7FlowType_REQUEST {
		return
	}
	ctx, rep := h.ctx.values(f, false), reporter(f)
	h.requests.add(n, append(slicesClone(ctx), l7.KafkaTopic, l7.KafkaAPIKey, strconv.Itoa(int(l7.KafkaErrorCode)), rep)...)
	h.duration.observe(float64(f.LatencyNs)/1e9, n, append(ctx, l7.KafkaTopic, l7.KafkaAPIKey, rep)...)
}

type icmpHandler struct {
	ctx  contextOptions
	icmp counter
}

func (h *icmpHandler) process(f *schemas.Flow, n float64) {
	switch f.L4Protocol {
	case 1:
		h.icmp.add(n, append([]string{"IPv4", hubble.ICMPTypeName(false, f.ICMPType, f.ICMPCode)}, h.ctx.values(f, false)...)...)
	case 58:
		h.icmp.add(n, append([]string{"IPv6", hubble.ICMPTypeName(true, f.ICMPType, f.ICMPCode)}, h.ctx.values(f, false)...)...)
	}
}

type portHandler struct {
	ctx   contextOptions
	ports counter
}

func (h *portHandler) process(f *schemas.Flow, n float64) {
	if (f.Verdict != flowpb.Verdict_FORWARDED && f.Verdict != flowpb.Verdict_REDIRECTED) || f.IsReply != schemas.False {
		return
	}
	var proto, port string
	switch f.L4Protocol {
	case 6:
		proto, port = "TCP", strconv.Itoa(int(f.DstPort))
	case 17:
		proto, port = "UDP", strconv.Itoa(int(f.DstPort))
	case 132:
		proto, port = "SCTP", strconv.Itoa(int(f.DstPort))
	case 1:
		proto, port = "ICMPv4", "0"
	case 58:
		proto, port = "ICMPv6", "0"
	case 112:
		proto, port = "VRRP", "0"
	case 2:
		proto, port = "IGMP", "0"
	default:
		return
	}
	h.ports.add(n, append([]string{proto, port}, h.ctx.values(f, false)...)...)
}
