package hubble

//lint:file-ignore SA1019 Hubble's deprecated DropReason, Reply and Kafka fields are still filled and read, as Cilium does, for the clients that use them.

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	flowpb "github.com/cilium/cilium/api/v1/flow"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/flowbus/flowbus/schemas"
)

// Keys of the google.protobuf.Struct that ToProto puts in Flow.extensions
// (as a google.protobuf.Any) for fields Hubble's flow.Flow has no place for.
// A key is present only when its value is not zero. 64-bit integers are
// decimal strings (as protojson writes int64), so no value loses precision
// to a JSON double; times are RFC 3339 with nanoseconds, UTC.
const (
	ExtBytesFwd      = "flowbus.bytes_fwd"       // string, uint64
	ExtBytesRev      = "flowbus.bytes_rev"       // string, uint64
	ExtPacketsFwd    = "flowbus.packets_fwd"     // string, uint64
	ExtPacketsRev    = "flowbus.packets_rev"     // string, uint64
	ExtCount         = "flowbus.count"           // string, uint64: flows folded into the record
	ExtCountAs       = "flowbus.count_as"        // string: "traffic" or "none" (absent: "flow")
	ExtFirstSeen     = "flowbus.first_seen"      // string, RFC 3339 nanoseconds
	ExtLastSeen      = "flowbus.last_seen"       // string, RFC 3339 nanoseconds
	ExtLatencyNs     = "flowbus.latency_ns"      // string, uint64: latency of a flow without L7
	ExtLatencyHist   = "flowbus.latency_hist"    // list of {"bucket": number, "count": string}
	ExtKafkaClientID = "flowbus.kafka_client_id" // string
	ExtL4Protocol    = "flowbus.l4_protocol"     // number: IANA protocol Hubble's Layer4 cannot name
)

// ToProto converts f to Hubble's flow.Flow. Fields Hubble has no place for
// (bytes, packets, count, count_as, first/last seen, L4 latency, histogram,
// Kafka client ID) travel in Flow.Extensions, so FromProto(ToProto(f)) == f for every f.
//
// The mapping is the one Hubble itself uses: Type is L7 when an L7 block is
// present, else L3_L4; is_reply and the deprecated reply are both set;
// drop_reason_desc and the deprecated numeric drop_reason are both set; the
// workload is Endpoint.workloads[0]. Summary is left empty (deprecated).
// Lossless within these limits: L4 fields other than the protocol's own
// (ports of ICMP, ICMP type of TCP, TCP flags of UDP) are not carried, nor
// L7 fields of another protocol than L7.Protocol, nor IPv6 zones; HTTP
// headers must have the documented "Key: value" form; empty slices come
// back nil (protobuf has no empty-versus-absent distinction).
func ToProto(f *schemas.Flow) *flowpb.Flow {
	p := &flowpb.Flow{
		Uuid:                  f.UUID,
		NodeName:              f.NodeName,
		Verdict:               f.Verdict,
		DropReason:            uint32(f.DropReason),
		DropReasonDesc:        f.DropReason,
		TrafficDirection:      f.Direction,
		TraceObservationPoint: f.ObservationPoint,
		SourceNames:           f.SrcNames,
		DestinationNames:      f.DstNames,
		Source:                endpointToProto(&f.Src),
		Destination:           endpointToProto(&f.Dst),
		SourceService:         serviceToProto(f.SrcService),
		DestinationService:    serviceToProto(f.DstService),
		Type:                  flowpb.FlowType_L3_L4,
		IngressAllowedBy:      policiesToProto(f.IngressAllowedBy),
		EgressAllowedBy:       policiesToProto(f.EgressAllowedBy),
		IngressDeniedBy:       policiesToProto(f.IngressDeniedBy),
		EgressDeniedBy:        policiesToProto(f.EgressDeniedBy),
		PolicyMatchType:       uint32(f.PolicyMatchType),
	}
	if f.TimeNs != 0 {
		p.Time = timestamppb.New(time.Unix(0, f.TimeNs))
	}
	if f.EventType != 0 || f.EventSubType != 0 {
		p.EventType = &flowpb.CiliumEventType{Type: f.EventType, SubType: f.EventSubType}
	}
	switch f.IsReply {
	case schemas.True:
		p.IsReply, p.Reply = wrapperspb.Bool(true), true
	case schemas.False:
		p.IsReply = wrapperspb.Bool(false)
	}
	if f.SrcIP.IsValid() || f.DstIP.IsValid() || f.IPVersion != 0 {
		p.IP = &flowpb.IP{IpVersion: f.IPVersion}
		if f.SrcIP.IsValid() {
			p.IP.Source = f.SrcIP.String()
		}
		if f.DstIP.IsValid() {
			p.IP.Destination = f.DstIP.String()
		}
	}
	switch f.L4Protocol {
	case 0:
	case 6:
		p.L4 = &flowpb.Layer4{Protocol: &flowpb.Layer4_TCP{TCP: &flowpb.TCP{
			SourcePort: uint32(f.SrcPort), DestinationPort: uint32(f.DstPort), Flags: tcpFlagsToProto(f.TCPFlags)}}}
	case 17:
		p.L4 = &flowpb.Layer4{Protocol: &flowpb.Layer4_UDP{UDP: &flowpb.UDP{SourcePort: uint32(f.SrcPort), DestinationPort: uint32(f.DstPort)}}}
	case 132:
		p.L4 = &flowpb.Layer4{Protocol: &flowpb.Layer4_SCTP{SCTP: &flowpb.SCTP{SourcePort: uint32(f.SrcPort), DestinationPort: uint32(f.DstPort)}}}
	case 1:
		p.L4 = &flowpb.Layer4{Protocol: &flowpb.Layer4_ICMPv4{ICMPv4: &flowpb.ICMPv4{Type: uint32(f.ICMPType), Code: uint32(f.ICMPCode)}}}
	case 58:
		p.L4 = &flowpb.Layer4{Protocol: &flowpb.Layer4_ICMPv6{ICMPv6: &flowpb.ICMPv6{Type: uint32(f.ICMPType), Code: uint32(f.ICMPCode)}}}
	}
	if f.IfIndex != 0 || f.IfName != "" {
		p.Interface = &flowpb.NetworkInterface{Index: f.IfIndex, Name: f.IfName}
	}
	if l7 := l7ToProto(&f.L7); l7 != nil {
		l7.LatencyNs = f.LatencyNs
		p.L7, p.Type = l7, flowpb.FlowType_L7
	}
	p.Extensions = extensions(f, p.L7 != nil)
	return p
}

// extensions returns the flowbus extension of f (nil when every extension
// field is zero): a google.protobuf.Struct in an Any, marshalled by hand
// (extwire.go) with its keys in sorted order, byte for byte what
// deterministic protobuf marshalling of the same Struct gives, and an order
// of magnitude cheaper than building a structpb.Struct.
func extensions(f *schemas.Flow, hasL7 bool) *anypb.Any {
	var w structWriter
	if f.BytesFwd != 0 {
		w.u64(ExtBytesFwd, f.BytesFwd)
	}
	if f.BytesRev != 0 {
		w.u64(ExtBytesRev, f.BytesRev)
	}
	if f.Count != 0 {
		w.u64(ExtCount, f.Count)
	}
	if f.CountAs != schemas.CountFlow {
		w.str(ExtCountAs, f.CountAs.String())
	}
	if f.FirstSeenNs != 0 {
		w.str(ExtFirstSeen, formatNs(f.FirstSeenNs))
	}
	if f.L7.Protocol == schemas.L7Kafka && f.L7.KafkaClientID != "" {
		w.str(ExtKafkaClientID, f.L7.KafkaClientID)
	}
	switch f.L4Protocol {
	case 0, 1, 6, 17, 58, 132:
	default:
		w.num(ExtL4Protocol, float64(f.L4Protocol))
	}
	if f.LastSeenNs != 0 {
		w.str(ExtLastSeen, formatNs(f.LastSeenNs))
	}
	if f.LatencyHist != nil {
		w.hist(ExtLatencyHist, f.LatencyHist)
	}
	if !hasL7 && f.LatencyNs != 0 {
		w.u64(ExtLatencyNs, f.LatencyNs)
	}
	if f.PacketsFwd != 0 {
		w.u64(ExtPacketsFwd, f.PacketsFwd)
	}
	if f.PacketsRev != 0 {
		w.u64(ExtPacketsRev, f.PacketsRev)
	}
	if len(w.b) == 0 {
		return nil
	}
	return &anypb.Any{TypeUrl: structTypeURL, Value: w.b}
}

func formatNs(ns int64) string { return time.Unix(0, ns).UTC().Format(time.RFC3339Nano) }

func endpointToProto(e *schemas.Endpoint) *flowpb.Endpoint {
	if e.ID == 0 && e.Identity == 0 && e.ClusterName == "" && e.Namespace == "" && e.PodName == "" &&
		e.Workload == "" && e.WorkloadKind == "" && len(e.Labels) == 0 {
		return nil
	}
	p := &flowpb.Endpoint{
		ID: e.ID, Identity: e.Identity, ClusterName: e.ClusterName, Namespace: e.Namespace,
		Labels: e.Labels, PodName: e.PodName,
	}
	if e.Workload != "" || e.WorkloadKind != "" {
		p.Workloads = []*flowpb.Workload{{Name: e.Workload, Kind: e.WorkloadKind}}
	}
	return p
}

func serviceToProto(s schemas.Service) *flowpb.Service {
	if s == (schemas.Service{}) {
		return nil
	}
	return &flowpb.Service{Namespace: s.Namespace, Name: s.Name}
}

var tcpFlagBits = [...]schemas.TCPFlags{schemas.FlagFIN, schemas.FlagSYN, schemas.FlagRST, schemas.FlagPSH, schemas.FlagACK, schemas.FlagURG, schemas.FlagECE, schemas.FlagCWR, schemas.FlagNS}

func tcpFlagsToProto(t schemas.TCPFlags) *flowpb.TCPFlags {
	if t == 0 {
		return nil
	}
	return &flowpb.TCPFlags{
		FIN: t&schemas.FlagFIN != 0, SYN: t&schemas.FlagSYN != 0, RST: t&schemas.FlagRST != 0, PSH: t&schemas.FlagPSH != 0, ACK: t&schemas.FlagACK != 0,
		URG: t&schemas.FlagURG != 0, ECE: t&schemas.FlagECE != 0, CWR: t&schemas.FlagCWR != 0, NS: t&schemas.FlagNS != 0,
	}
}

func tcpFlagsFromProto(p *flowpb.TCPFlags) schemas.TCPFlags {
	if p == nil {
		return 0
	}
	var t schemas.TCPFlags
	for i, set := range [...]bool{p.FIN, p.SYN, p.RST, p.PSH, p.ACK, p.URG, p.ECE, p.CWR, p.NS} {
		if set {
			t |= tcpFlagBits[i]
		}
	}
	return t
}

func l7ToProto(l *schemas.L7) *flowpb.Layer7 {
	if l.Protocol == schemas.L7None && l.Type == 0 {
		return nil
	}
	p := &flowpb.Layer7{Type: l.Type}
	switch l.Protocol {
	case schemas.L7HTTP:
		h := &flowpb.HTTP{Code: l.HTTPStatus, Method: l.HTTPMethod, Url: l.HTTPURL, Protocol: l.HTTPProtocol}
		for _, kv := range l.HTTPHeaders {
			k, v, _ := strings.Cut(kv, ": ")
			h.Headers = append(h.Headers, &flowpb.HTTPHeader{Key: k, Value: v})
		}
		p.Record = &flowpb.Layer7_Http{Http: h}
	case schemas.L7DNS:
		p.Record = &flowpb.Layer7_Dns{Dns: &flowpb.DNS{
			Query: l.DNSQuery, Ips: l.DNSIPs, Ttl: l.DNSTTL, Cnames: l.DNSCNAMEs, ObservationSource: l.DNSObservationSource,
			Rcode: l.DNSRCode, Qtypes: l.DNSQTypes, Rrtypes: l.DNSRRTypes,
		}}
	case schemas.L7Kafka:
		p.Record = &flowpb.Layer7_Kafka{Kafka: &flowpb.Kafka{
			ErrorCode: l.KafkaErrorCode, ApiVersion: l.KafkaAPIVersion, ApiKey: l.KafkaAPIKey,
			CorrelationId: l.KafkaCorrelationID, Topic: l.KafkaTopic,
		}}
	}
	return p
}

// ErrBadProto is wrapped by FromProto's errors.
var ErrBadProto = errors.New("malformed Hubble flow")

// FromProto converts a Hubble flow.Flow into a schemas.Flow. Fields we do not carry
// are ignored. It fails only on values that cannot be represented (a
// malformed IP address, a malformed extension).
//
// Flows from Hubble itself (no flowbus extensions) get Count 0 (read as 1),
// no byte or packet counters, and LatencyNs from l7.latency_ns. The
// deprecated fields reply and drop_reason are read only when is_reply and
// drop_reason_desc are unset.
func FromProto(p *flowpb.Flow) (schemas.Flow, error) {
	if p == nil {
		return schemas.Flow{}, fmt.Errorf("%w: nil flow", ErrBadProto)
	}
	f := schemas.Flow{
		UUID:             p.GetUuid(),
		NodeName:         p.GetNodeName(),
		Verdict:          p.GetVerdict(),
		DropReason:       p.GetDropReasonDesc(),
		Direction:        p.GetTrafficDirection(),
		ObservationPoint: p.GetTraceObservationPoint(),
		EventType:        p.GetEventType().GetType(),
		EventSubType:     p.GetEventType().GetSubType(),
		SrcNames:         nilIfEmpty(p.GetSourceNames()),
		DstNames:         nilIfEmpty(p.GetDestinationNames()),
		Src:              endpointFromProto(p.GetSource()),
		Dst:              endpointFromProto(p.GetDestination()),
		IfIndex:          p.GetInterface().GetIndex(),
		IfName:           p.GetInterface().GetName(),
		IngressAllowedBy: policiesFromProto(p.GetIngressAllowedBy()),
		EgressAllowedBy:  policiesFromProto(p.GetEgressAllowedBy()),
		IngressDeniedBy:  policiesFromProto(p.GetIngressDeniedBy()),
		EgressDeniedBy:   policiesFromProto(p.GetEgressDeniedBy()),
		PolicyMatchType:  uint8(min(p.GetPolicyMatchType(), 255)),
	}
	if f.DropReason == 0 && p.GetDropReason() != 0 {
		f.DropReason = flowpb.DropReason(p.GetDropReason())
	}
	if t := p.GetTime(); t != nil {
		if err := t.CheckValid(); err != nil {
			return schemas.Flow{}, fmt.Errorf("%w: time: %v", ErrBadProto, err)
		}
		f.TimeNs = t.AsTime().UnixNano()
	}
	switch {
	case p.GetIsReply() != nil && p.GetIsReply().GetValue():
		f.IsReply = schemas.True
	case p.GetIsReply() != nil:
		f.IsReply = schemas.False
	case p.GetReply():
		f.IsReply = schemas.True
	}
	if s := p.GetSourceService(); s != nil {
		f.SrcService = schemas.Service{Namespace: s.GetNamespace(), Name: s.GetName()}
	}
	if s := p.GetDestinationService(); s != nil {
		f.DstService = schemas.Service{Namespace: s.GetNamespace(), Name: s.GetName()}
	}
	if ip := p.GetIP(); ip != nil {
		f.IPVersion = ip.GetIpVersion()
		var err error
		if f.SrcIP, err = parseIP(ip.GetSource()); err != nil {
			return schemas.Flow{}, fmt.Errorf("%w: source IP: %v", ErrBadProto, err)
		}
		if f.DstIP, err = parseIP(ip.GetDestination()); err != nil {
			return schemas.Flow{}, fmt.Errorf("%w: destination IP: %v", ErrBadProto, err)
		}
	}
	l4FromProto(&f, p.GetL4())
	if l7 := p.GetL7(); l7 != nil {
		l7FromProto(&f.L7, l7)
		f.LatencyNs = l7.GetLatencyNs()
	}
	if err := extensionsFromProto(&f, p.GetExtensions()); err != nil {
		return schemas.Flow{}, err
	}
	return f, nil
}

func nilIfEmpty(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	return s
}

func parseIP(s string) (netip.Addr, error) {
	if s == "" {
		return netip.Addr{}, nil
	}
	return netip.ParseAddr(s)
}

func endpointFromProto(p *flowpb.Endpoint) schemas.Endpoint {
	if p == nil {
		return schemas.Endpoint{}
	}
	e := schemas.Endpoint{
		ID: p.GetID(), Identity: p.GetIdentity(), ClusterName: p.GetClusterName(), Namespace: p.GetNamespace(),
		PodName: p.GetPodName(), Labels: nilIfEmpty(p.GetLabels()),
	}
	if w := p.GetWorkloads(); len(w) > 0 {
		e.Workload, e.WorkloadKind = w[0].GetName(), w[0].GetKind()
	}
	return e
}

func l4FromProto(f *schemas.Flow, l4 *flowpb.Layer4) {
	switch p := l4.GetProtocol().(type) {
	case *flowpb.Layer4_TCP:
		f.L4Protocol = 6
		f.SrcPort, f.DstPort = uint16(p.TCP.GetSourcePort()), uint16(p.TCP.GetDestinationPort())
		f.TCPFlags = tcpFlagsFromProto(p.TCP.GetFlags())
	case *flowpb.Layer4_UDP:
		f.L4Protocol = 17
		f.SrcPort, f.DstPort = uint16(p.UDP.GetSourcePort()), uint16(p.UDP.GetDestinationPort())
	case *flowpb.Layer4_SCTP:
		f.L4Protocol = 132
		f.SrcPort, f.DstPort = uint16(p.SCTP.GetSourcePort()), uint16(p.SCTP.GetDestinationPort())
	case *flowpb.Layer4_ICMPv4:
		f.L4Protocol = 1
		f.ICMPType, f.ICMPCode = uint8(p.ICMPv4.GetType()), uint8(p.ICMPv4.GetCode())
	case *flowpb.Layer4_ICMPv6:
		f.L4Protocol = 58
		f.ICMPType, f.ICMPCode = uint8(p.ICMPv6.GetType()), uint8(p.ICMPv6.GetCode())
	}
}

func l7FromProto(l *schemas.L7, p *flowpb.Layer7) {
	l.Type = p.GetType()
	switch r := p.GetRecord().(type) {
	case *flowpb.Layer7_Http:
		l.Protocol = schemas.L7HTTP
		h := r.Http
		l.HTTPMethod, l.HTTPURL, l.HTTPStatus, l.HTTPProtocol = h.GetMethod(), h.GetUrl(), h.GetCode(), h.GetProtocol()
		for _, kv := range h.GetHeaders() {
			l.HTTPHeaders = append(l.HTTPHeaders, kv.GetKey()+": "+kv.GetValue())
		}
	case *flowpb.Layer7_Dns:
		l.Protocol = schemas.L7DNS
		d := r.Dns
		l.DNSQuery, l.DNSRCode, l.DNSTTL, l.DNSObservationSource = d.GetQuery(), d.GetRcode(), d.GetTtl(), d.GetObservationSource()
		l.DNSQTypes, l.DNSRRTypes = nilIfEmpty(d.GetQtypes()), nilIfEmpty(d.GetRrtypes())
		l.DNSIPs, l.DNSCNAMEs = nilIfEmpty(d.GetIps()), nilIfEmpty(d.GetCnames())
	case *flowpb.Layer7_Kafka:
		l.Protocol = schemas.L7Kafka
		k := r.Kafka
		l.KafkaAPIKey, l.KafkaAPIVersion, l.KafkaCorrelationID = k.GetApiKey(), k.GetApiVersion(), k.GetCorrelationId()
		l.KafkaTopic, l.KafkaErrorCode = k.GetTopic(), k.GetErrorCode()
	}
}

// extensionsFromProto reads the flowbus keys of Flow.extensions; an absent
// extension, or one that is not a google.protobuf.Struct, is ignored, and so
// are unknown keys.
func extensionsFromProto(f *schemas.Flow, a *anypb.Any) error {
	if a == nil || !a.MessageIs((*structpb.Struct)(nil)) {
		return nil
	}
	var s structpb.Struct
	if err := a.UnmarshalTo(&s); err != nil {
		return fmt.Errorf("%w: extensions: %v", ErrBadProto, err)
	}
	var err error
	u64 := func(key string, dst *uint64) {
		v, ok := s.Fields[key]
		if !ok || err != nil {
			return
		}
		sv, isStr := v.GetKind().(*structpb.Value_StringValue)
		if !isStr {
			err = fmt.Errorf("%w: extension %s: want a decimal string", ErrBadProto, key)
			return
		}
		if *dst, err = strconv.ParseUint(sv.StringValue, 10, 64); err != nil {
			err = fmt.Errorf("%w: extension %s: %v", ErrBadProto, key, err)
		}
	}
	ts := func(key string, dst *int64) {
		v, ok := s.Fields[key]
		if !ok || err != nil {
			return
		}
		t, perr := time.Parse(time.RFC3339Nano, v.GetStringValue())
		if perr != nil {
			err = fmt.Errorf("%w: extension %s: %v", ErrBadProto, key, perr)
			return
		}
		*dst = t.UnixNano()
	}
	u64(ExtBytesFwd, &f.BytesFwd)
	u64(ExtBytesRev, &f.BytesRev)
	u64(ExtPacketsFwd, &f.PacketsFwd)
	u64(ExtPacketsRev, &f.PacketsRev)
	u64(ExtCount, &f.Count)
	if f.L7.Protocol == schemas.L7None && f.L7.Type == 0 {
		u64(ExtLatencyNs, &f.LatencyNs)
	}
	ts(ExtFirstSeen, &f.FirstSeenNs)
	ts(ExtLastSeen, &f.LastSeenNs)
	if err != nil {
		return err
	}
	if v, ok := s.Fields[ExtKafkaClientID]; ok {
		f.L7.KafkaClientID = v.GetStringValue()
	}
	if v, ok := s.Fields[ExtCountAs]; ok {
		c, known := schemas.ParseCountAs(v.GetStringValue())
		if !known {
			return fmt.Errorf("%w: extension %s: %q is not flow, traffic or none", ErrBadProto, ExtCountAs, v.GetStringValue())
		}
		f.CountAs = c
	}
	if v, ok := s.Fields[ExtL4Protocol]; ok {
		n := v.GetNumberValue()
		if n < 0 || n > 255 || n != float64(uint8(n)) {
			return fmt.Errorf("%w: extension %s: %v is not a protocol number", ErrBadProto, ExtL4Protocol, n)
		}
		f.L4Protocol = uint8(n)
	}
	if v, ok := s.Fields[ExtLatencyHist]; ok {
		l := v.GetListValue()
		if l == nil {
			return fmt.Errorf("%w: extension %s: want a list", ErrBadProto, ExtLatencyHist)
		}
		h := make(schemas.Histogram, 0, len(l.GetValues()))
		for _, e := range l.GetValues() {
			st := e.GetStructValue()
			b, c := st.GetFields()["bucket"].GetNumberValue(), st.GetFields()["count"].GetStringValue()
			n, perr := strconv.ParseInt(c, 10, 64)
			if st == nil || perr != nil || b < 0 || b > schemas.HistOverflow || b != float64(int16(b)) {
				return fmt.Errorf("%w: extension %s: malformed bucket %v", ErrBadProto, ExtLatencyHist, e)
			}
			h = append(h, schemas.Bucket{Index: int16(b), Count: n})
		}
		f.LatencyHist = h
	}
	return nil
}

// PolicyName is how a flow record names a policy: "Kind:namespace/name",
// the namespace empty for a clusterwide policy. Kind is never empty (a
// name without a kind travels whole, as the Policy's name).
func PolicyName(kind, namespace, name string) string { return kind + ":" + namespace + "/" + name }

// policiesToProto converts "Kind:namespace/name" names into Hubble's
// Policy messages (a name not in that form is carried whole as the name).
func policiesToProto(names []string) []*flowpb.Policy {
	if len(names) == 0 {
		return nil
	}
	out := make([]*flowpb.Policy, len(names))
	for i, n := range names {
		kind, rest, ok := strings.Cut(n, ":")
		ns, name, ok2 := strings.Cut(rest, "/")
		if !ok || !ok2 {
			out[i] = &flowpb.Policy{Name: n}
			continue
		}
		out[i] = &flowpb.Policy{Kind: kind, Namespace: ns, Name: name}
	}
	return out
}

func policiesFromProto(ps []*flowpb.Policy) []string {
	if len(ps) == 0 {
		return nil
	}
	out := make([]string, len(ps))
	for i, p := range ps {
		if p.GetKind() == "" && p.GetNamespace() == "" {
			out[i] = p.GetName()
			continue
		}
		out[i] = PolicyName(p.GetKind(), p.GetNamespace(), p.GetName())
	}
	return out
}
