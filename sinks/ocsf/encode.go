package ocsf

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	flowpb "github.com/cilium/cilium/api/v1/flow"

	"github.com/flowbus/flowbus/schemas"
)

// SchemaVersion is the OCSF release the events follow; every event carries
// it in metadata.version, and internal/ocsftest/testdata/schema holds
// that release's files.
const SchemaVersion = "1.8.0"

// The OCSF classes the encoder emits (category Network Activity, 4).
const (
	ClassNetworkActivity = 4001
	ClassHTTPActivity    = 4002
	ClassDNSActivity     = 4003
)

// The profiles every event declares in metadata.profiles: security_control
// carries action_id, disposition_id and firewall_rule.
var profiles = []string{"security_control"}

// Errors of Append; a flow that gets one is not written.
var (
	// ErrNoTime: the record has no time (TimeNs 0 or negative), which every
	// OCSF event needs.
	ErrNoTime = errors.New("flow record has no time")
	// ErrNoEndpoint: neither side has a valid address nor a pod name, and
	// OCSF network events need src_endpoint or dst_endpoint.
	ErrNoEndpoint = errors.New("flow record has neither a valid source nor destination address nor pod")
)

// Stats counts what an Encoder did; the fallbacks are documented on Encoder.
type Stats struct {
	Events         uint64 // events appended
	Errors         uint64 // flows refused (ErrNoTime, ErrNoEndpoint)
	MissingIP      uint64 // endpoints without a valid address (ip omitted)
	UnknownVerdict uint64 // verdicts outside Hubble's enum (action and disposition Unknown)
	OtherMethod    uint64 // HTTP methods outside OCSF's enum (activity Other)
	BadURL         uint64 // HTTP URLs that do not parse (url_string only)
}

// Encoder turns flow records into OCSF events. Safe for concurrent use.
//
// Fallbacks, each counted in Stats: an endpoint without a valid address is
// written without ip (and left out when it has no pod or name either); an
// unknown verdict gives action_id and disposition_id 0 (Unknown) and the
// number in unmapped.flowbus.verdict; an HTTP method outside OCSF's enum
// gives activity_id 99 (Other) with the method as activity_name and no
// http_request.http_method; a URL that does not parse is kept whole in
// url.url_string.
type Encoder struct {
	// ProductVersion goes to metadata.product.version when set.
	ProductVersion string

	events, errs, missingIP, unknownVerdict, otherMethod, badURL atomic.Uint64
}

// Stats returns the counters.
func (e *Encoder) Stats() Stats {
	return Stats{
		Events: e.events.Load(), Errors: e.errs.Load(), MissingIP: e.missingIP.Load(),
		UnknownVerdict: e.unknownVerdict.Load(), OtherMethod: e.otherMethod.Load(), BadURL: e.badURL.Load(),
	}
}

var defaultEncoder Encoder

// Append appends f as one OCSF event (a JSON object, no newline) to dst,
// with the package's default Encoder.
func Append(dst []byte, f *schemas.Flow) ([]byte, error) { return defaultEncoder.Append(dst, f) }

// DefaultStats returns the counters of the default Encoder behind Append.
func DefaultStats() Stats { return defaultEncoder.Stats() }

// Captions of the enum values written, exactly as the schema has them.
var (
	networkActivities = map[int]string{0: "Unknown", 1: "Open", 2: "Close", 3: "Reset", 4: "Fail", 5: "Refuse", 6: "Traffic", 99: "Other"}
	httpActivities    = map[int]string{0: "Unknown", 1: "Connect", 2: "Delete", 3: "Get", 4: "Head", 5: "Options", 6: "Post", 7: "Put", 8: "Trace", 9: "Patch", 99: "Other"}
	dnsActivities     = map[int]string{0: "Unknown", 1: "Query", 2: "Response", 6: "Traffic", 99: "Other"}
	httpMethods       = map[string]int{"CONNECT": 1, "DELETE": 2, "GET": 3, "HEAD": 4, "OPTIONS": 5, "POST": 6, "PUT": 7, "TRACE": 8, "PATCH": 9}
	severities        = [...]string{0: "Unknown", 1: "Informational", 2: "Low", 3: "Medium"}
	statuses          = [...]string{0: "Unknown", 1: "Success", 2: "Failure"}
	actions           = [...]string{0: "Unknown", 1: "Allowed", 2: "Denied", 3: "Observed"}
	dispositions      = map[int]string{0: "Unknown", 1: "Allowed", 2: "Blocked", 6: "Dropped", 17: "Logged", 27: "Error"}
	directions        = [...]string{0: "Unknown", 1: "Inbound", 2: "Outbound", 3: "Lateral"}
	rcodes            = map[uint32]string{0: "NoError", 1: "FormError", 2: "ServError", 3: "NXDomain", 4: "NotImp", 5: "Refused", 6: "YXDomain", 7: "YXRRSet", 8: "NXRRSet", 9: "NotAuth", 10: "NotZone", 11: "DSOTYPENI", 16: "BADSIG_VERS", 17: "BADKEY", 18: "BADTIME", 19: "BADMODE", 20: "BADNAME", 21: "BADALG", 22: "BADTRUNC", 23: "BADCOOKIE"}
	protocolNames     = map[uint8]string{1: "icmp", 6: "tcp", 17: "udp", 58: "ipv6-icmp", 132: "sctp"}
)

const (
	activityOther = 99
)

// verdictOutcome is what a verdict means to a security control.
type verdictOutcome struct {
	action, disposition, severity, status int
}

func isPolicyDrop(r flowpb.DropReason) bool {
	return r == flowpb.DropReason_POLICY_DENIED || r == flowpb.DropReason_POLICY_DENY || r == flowpb.DropReason_AUTH_REQUIRED
}

// outcome maps the verdict: see the table in doc.go.
func (e *Encoder) outcome(f *schemas.Flow) verdictOutcome {
	switch f.Verdict {
	case flowpb.Verdict_FORWARDED, flowpb.Verdict_REDIRECTED, flowpb.Verdict_TRANSLATED, flowpb.Verdict_TRACED:
		return verdictOutcome{action: 1, disposition: 1, severity: 1, status: 1}
	case flowpb.Verdict_DROPPED:
		if isPolicyDrop(f.DropReason) {
			return verdictOutcome{action: 2, disposition: 2, severity: 3, status: 2}
		}
		return verdictOutcome{action: 2, disposition: 6, severity: 2, status: 2}
	case flowpb.Verdict_AUDIT:
		return verdictOutcome{action: 3, disposition: 17, severity: 2, status: 1}
	case flowpb.Verdict_ERROR:
		return verdictOutcome{action: 0, disposition: 27, severity: 2, status: 2}
	case flowpb.Verdict_VERDICT_UNKNOWN:
		return verdictOutcome{}
	}
	e.unknownVerdict.Add(1)
	return verdictOutcome{}
}

// Class returns the class_uid of the event Append writes for f:
// ClassHTTPActivity for an HTTP record, ClassDNSActivity for a DNS record,
// else ClassNetworkActivity (Kafka and L3/L4 records).
func Class(f *schemas.Flow) int {
	switch f.L7.Protocol {
	case schemas.L7HTTP:
		return ClassHTTPActivity
	case schemas.L7DNS:
		return ClassDNSActivity
	}
	return ClassNetworkActivity
}

// NetworkActivity returns the Network Activity activity_id of an L3/L4
// record (see doc.go): records that do not count a connection are Traffic,
// a drop is Refuse, an error Fail, then RST Reset, FIN Close, else Open.
func NetworkActivity(f *schemas.Flow) int {
	switch {
	case f.CountAs != schemas.CountFlow:
		return 6
	case f.Verdict == flowpb.Verdict_DROPPED:
		return 5
	case f.Verdict == flowpb.Verdict_ERROR:
		return 4
	case f.L4Protocol == 6 && f.TCPFlags&schemas.FlagRST != 0:
		return 3
	case f.L4Protocol == 6 && f.TCPFlags&schemas.FlagFIN != 0:
		return 2
	}
	return 1
}

func ms(ns int64) int64 { return ns / int64(time.Millisecond) }

func clampInt32(v uint64) int64 { return int64(min(v, math.MaxInt32)) }

func clampInt64(v uint64) int64 { return int64(min(v, math.MaxInt64)) }

// Append appends f as one OCSF event (a JSON object, no newline) to dst. On
// error dst is returned unchanged.
func (e *Encoder) Append(dst []byte, f *schemas.Flow) ([]byte, error) {
	if f.TimeNs <= 0 {
		e.errs.Add(1)
		return dst, fmt.Errorf("ocsf: %w (node %q, %s → %s)", ErrNoTime, f.NodeName, f.SrcIP, f.DstIP)
	}
	hasSrc, hasDst := hasEndpoint(f.SrcIP, &f.Src, f.SrcNames, &f.SrcService), hasEndpoint(f.DstIP, &f.Dst, f.DstNames, &f.DstService)
	if !hasSrc && !hasDst {
		e.errs.Add(1)
		return dst, fmt.Errorf("ocsf: %w (node %q, time %d)", ErrNoEndpoint, f.NodeName, f.TimeNs)
	}
	b := append(dst, '{')

	class, activity, activityName := ClassNetworkActivity, 0, ""
	switch f.L7.Protocol {
	case schemas.L7HTTP:
		class = ClassHTTPActivity
		m := strings.ToUpper(f.L7.HTTPMethod)
		if a, ok := httpMethods[m]; ok {
			activity = a
		} else if m != "" {
			activity, activityName = activityOther, f.L7.HTTPMethod
			e.otherMethod.Add(1)
		}
		if activityName == "" {
			activityName = httpActivities[activity]
		}
	case schemas.L7DNS:
		class = ClassDNSActivity
		switch f.L7.Type {
		case flowpb.L7FlowType_REQUEST:
			activity = 1
		case flowpb.L7FlowType_RESPONSE:
			activity = 2
		default:
			activity = 6
		}
		activityName = dnsActivities[activity]
	case schemas.L7Kafka:
		activity = 6
		activityName = networkActivities[activity]
	default:
		activity = NetworkActivity(f)
		activityName = networkActivities[activity]
	}
	className := "Network Activity"
	switch class {
	case ClassHTTPActivity:
		className = "HTTP Activity"
	case ClassDNSActivity:
		className = "DNS Activity"
	}

	out := e.outcome(f)
	// The L7 result can turn a forwarded record into a failure.
	if out.status == 1 {
		switch {
		case f.L7.Protocol == schemas.L7HTTP && f.L7.HTTPStatus >= 400:
			out.status = 2
		case f.L7.Protocol == schemas.L7DNS && f.L7.Type == flowpb.L7FlowType_RESPONSE && f.L7.DNSRCode != 0:
			out.status = 2
		}
	}

	b = kInt(b, "activity_id", int64(activity))
	b = kStr(b, "activity_name", activityName)
	b = kInt(b, "category_uid", 4)
	b = kStr(b, "category_name", "Network Activity")
	b = kInt(b, "class_uid", int64(class))
	b = kStr(b, "class_name", className)
	b = kInt(b, "type_uid", int64(class*100+activity))
	tn := activityName
	if activity == activityOther {
		tn = "Other"
	}
	b = kStr(b, "type_name", className+": "+tn)
	b = kInt(b, "severity_id", int64(out.severity))
	b = kStr(b, "severity", severities[out.severity])
	b = kInt(b, "status_id", int64(out.status))
	b = kStr(b, "status", statuses[out.status])
	if f.Verdict == flowpb.Verdict_DROPPED {
		b = kStr(b, "status_code", strconv.Itoa(int(f.DropReason)))
		if name, ok := flowpb.DropReason_name[int32(f.DropReason)]; ok {
			b = kStr(b, "status_detail", name)
		}
	}
	b = kInt(b, "action_id", int64(out.action))
	b = kStr(b, "action", actions[out.action])
	b = kInt(b, "disposition_id", int64(out.disposition))
	b = kStr(b, "disposition", dispositions[out.disposition])

	b = kInt(b, "time", ms(f.TimeNs))
	if f.FirstSeenNs > 0 && f.LastSeenNs >= f.FirstSeenNs {
		b = kInt(b, "start_time", ms(f.FirstSeenNs))
		b = kInt(b, "end_time", ms(f.LastSeenNs))
		b = kInt(b, "duration", ms(f.LastSeenNs)-ms(f.FirstSeenNs))
	}
	b = kInt(b, "count", clampInt32(f.FlowCount()))

	b = append(key(b, "metadata"), '{')
	b = kStr(b, "version", SchemaVersion)
	b = append(key(b, "product"), '{')
	b = kStr(b, "name", "flowbus")
	b = kStr(b, "vendor_name", "flowbus")
	if e.ProductVersion != "" {
		b = kStr(b, "version", e.ProductVersion)
	}
	b = append(b, '}')
	b = kStrs(b, "profiles", profiles)
	if f.UUID != "" {
		b = kStr(b, "uid", f.UUID)
	}
	b = append(b, '}')

	if hasSrc {
		b = e.endpoint(b, "src_endpoint", f, f.SrcIP, f.SrcPort, &f.Src, f.SrcNames, &f.SrcService)
	}
	if hasDst {
		b = e.endpoint(b, "dst_endpoint", f, f.DstIP, f.DstPort, &f.Dst, f.DstNames, &f.DstService)
	}
	if class == ClassNetworkActivity && f.IsReply == schemas.False {
		b = kBool(b, "is_src_dst_assignment_known", true)
	}
	switch f.ObservationPoint {
	case flowpb.TraceObservationPoint_FROM_ENDPOINT:
		b = kInt(b, "observation_point_id", 1)
		b = kStr(b, "observation_point", "Source")
	case flowpb.TraceObservationPoint_TO_ENDPOINT:
		b = kInt(b, "observation_point_id", 2)
		b = kStr(b, "observation_point", "Destination")
	}
	if f.L7.Protocol != schemas.L7None {
		b = kStr(b, "app_protocol_name", f.L7.Protocol.String())
	}
	b = connectionInfo(b, f)
	if f.BytesFwd|f.BytesRev|f.PacketsFwd|f.PacketsRev != 0 {
		b = append(key(b, "traffic"), '{')
		b = kInt(b, "bytes", clampInt64(f.BytesFwd+f.BytesRev))
		b = kInt(b, "bytes_out", clampInt64(f.BytesFwd))
		b = kInt(b, "bytes_in", clampInt64(f.BytesRev))
		b = kInt(b, "packets", clampInt64(f.PacketsFwd+f.PacketsRev))
		b = kInt(b, "packets_out", clampInt64(f.PacketsFwd))
		b = kInt(b, "packets_in", clampInt64(f.PacketsRev))
		b = append(b, '}')
	}
	if p := decidingPolicy(f); p != "" {
		b = firewallRule(b, p)
	}

	switch class {
	case ClassHTTPActivity:
		b = e.http(b, f, activity)
	case ClassDNSActivity:
		b = dns(b, f, activity)
	}
	b = unmapped(b, f)
	b = append(b, '}')
	e.events.Add(1)
	return b, nil
}

func hasEndpoint(ip netip.Addr, ep *schemas.Endpoint, names []string, svc *schemas.Service) bool {
	return ip.IsValid() || ep.PodName != "" || len(names) > 0 || svc.Name != ""
}

func (e *Encoder) endpoint(b []byte, k string, f *schemas.Flow, ip netip.Addr, port uint16, ep *schemas.Endpoint, names []string, svc *schemas.Service) []byte {
	b = append(key(b, k), '{')
	if ip.IsValid() {
		b = append(key(b, "ip"), '"')
		b = ip.Unmap().AppendTo(b)
		b = append(b, '"')
	} else {
		e.missingIP.Add(1)
	}
	if hasPorts(f.L4Protocol) {
		b = kInt(b, "port", int64(port))
	}
	if ep.PodName != "" {
		b = kStr(b, "name", ep.PodName)
	}
	if len(names) > 0 {
		b = kStr(b, "hostname", names[0])
	}
	if svc.Name != "" {
		b = kStr(b, "svc_name", svc.Name)
	}
	return append(b, '}')
}

func hasPorts(proto uint8) bool { return proto == 6 || proto == 17 || proto == 132 }

func connectionInfo(b []byte, f *schemas.Flow) []byte {
	b = append(key(b, "connection_info"), '{')
	dir := 0
	switch {
	case f.Src.Namespace != "" && f.Dst.Namespace != "":
		dir = 3
	case f.Direction == flowpb.TrafficDirection_INGRESS:
		dir = 1
	case f.Direction == flowpb.TrafficDirection_EGRESS:
		dir = 2
	}
	b = kInt(b, "direction_id", int64(dir))
	b = kStr(b, "direction", directions[dir])
	if f.L4Protocol != 0 {
		b = kInt(b, "protocol_num", int64(f.L4Protocol))
		if name, ok := protocolNames[f.L4Protocol]; ok {
			b = kStr(b, "protocol_name", name)
		}
	}
	switch f.IPVersion {
	case flowpb.IPVersion_IPv4:
		b = kInt(b, "protocol_ver_id", 4)
	case flowpb.IPVersion_IPv6:
		b = kInt(b, "protocol_ver_id", 6)
	}
	if f.L4Protocol == 6 {
		b = kInt(b, "tcp_flags", int64(f.TCPFlags))
	}
	return append(b, '}')
}

// decidingPolicy is the first policy that decided the verdict: for a drop
// the first that denied it (ingress, then egress), else the first that
// allowed it.
func decidingPolicy(f *schemas.Flow) string {
	lists := [][]string{f.IngressAllowedBy, f.EgressAllowedBy}
	if f.Verdict == flowpb.Verdict_DROPPED {
		lists = [][]string{f.IngressDeniedBy, f.EgressDeniedBy}
	}
	for _, l := range lists {
		if len(l) > 0 {
			return l[0]
		}
	}
	return ""
}

// firewallRule writes a policy "Kind:namespace/name" as firewall_rule: uid
// the whole string, type the kind, name "namespace/name" (or the name of a
// clusterwide policy).
func firewallRule(b []byte, p string) []byte {
	b = append(key(b, "firewall_rule"), '{')
	b = kStr(b, "uid", p)
	kind, ref, ok := strings.Cut(p, ":")
	if !ok {
		return append(kStr(b, "name", p), '}')
	}
	b = kStr(b, "type", kind)
	b = kStr(b, "name", strings.TrimPrefix(ref, "/"))
	return append(b, '}')
}

func (e *Encoder) http(b []byte, f *schemas.Flow, activity int) []byte {
	b = append(key(b, "http_request"), '{')
	if activity != activityOther && f.L7.HTTPMethod != "" {
		b = kStr(b, "http_method", strings.ToUpper(f.L7.HTTPMethod))
	}
	if f.L7.HTTPURL != "" {
		b = e.url(b, f.L7.HTTPURL)
	}
	if f.L7.HTTPProtocol != "" {
		b = kStr(b, "version", f.L7.HTTPProtocol)
	}
	b = append(b, '}')
	if f.L7.HTTPStatus != 0 {
		b = append(key(b, "http_response"), '{')
		b = kInt(b, "code", clampInt32(uint64(f.L7.HTTPStatus)))
		if f.LatencyNs > 0 {
			b = kInt(b, "latency", clampInt32(f.LatencyNs/uint64(time.Millisecond)))
		}
		b = append(b, '}')
		b = kInt(b, "http_status", clampInt32(uint64(f.L7.HTTPStatus)))
	}
	return b
}

func (e *Encoder) url(b []byte, raw string) []byte {
	b = append(key(b, "url"), '{')
	b = kStr(b, "url_string", raw)
	u, err := url.Parse(raw)
	if err != nil {
		e.badURL.Add(1)
		return append(b, '}')
	}
	if u.Scheme != "" {
		b = kStr(b, "scheme", u.Scheme)
	}
	if h := u.Hostname(); h != "" {
		b = kStr(b, "hostname", h)
	}
	if p, err := strconv.ParseUint(u.Port(), 10, 16); err == nil {
		b = kInt(b, "port", int64(p))
	}
	if u.Path != "" {
		b = kStr(b, "path", u.Path)
	}
	if u.RawQuery != "" {
		b = kStr(b, "query_string", u.RawQuery)
	}
	return append(b, '}')
}

func dns(b []byte, f *schemas.Flow, activity int) []byte {
	l := &f.L7
	if l.DNSQuery != "" {
		b = append(key(b, "query"), '{')
		b = kStr(b, "hostname", l.DNSQuery)
		if len(l.DNSQTypes) > 0 {
			b = kStr(b, "type", l.DNSQTypes[0])
		}
		b = append(b, '}')
	}
	if activity != 2 {
		return b
	}
	if len(l.DNSIPs)+len(l.DNSCNAMEs) > 0 {
		b = append(key(b, "answers"), '[')
		ttl := clampInt32(uint64(l.DNSTTL))
		for _, ip := range l.DNSIPs {
			b = append(sep(b), '{')
			b = kStr(b, "rdata", ip)
			if a, err := netip.ParseAddr(ip); err == nil {
				if a.Is4() {
					b = kStr(b, "type", "A")
				} else {
					b = kStr(b, "type", "AAAA")
				}
			}
			b = kInt(b, "ttl", ttl)
			b = append(b, '}')
		}
		for _, c := range l.DNSCNAMEs {
			b = append(sep(b), '{')
			b = kStr(b, "rdata", c)
			b = kStr(b, "type", "CNAME")
			b = kInt(b, "ttl", ttl)
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	if name, ok := rcodes[l.DNSRCode]; ok {
		b = kInt(b, "rcode_id", int64(l.DNSRCode))
		b = kStr(b, "rcode", name)
	} else {
		b = kInt(b, "rcode_id", activityOther)
		b = kStr(b, "rcode", strconv.FormatUint(uint64(l.DNSRCode), 10))
	}
	return b
}

// unmapped writes what OCSF has no attribute for under unmapped.flowbus:
// the Kubernetes context (namespace, workload, labels, identity, cluster),
// the services' namespaces, Hubble's own enum names, the policies, the
// count-once rule and the protocol details OCSF's objects lack.
func unmapped(b []byte, f *schemas.Flow) []byte {
	b = append(key(b, "unmapped"), '{')
	b = append(key(b, "flowbus"), '{')
	if f.NodeName != "" {
		b = kStr(b, "node_name", f.NodeName)
	}
	b = kStr(b, "verdict", enumName(flowpb.Verdict_name, int32(f.Verdict)))
	if f.Verdict == flowpb.Verdict_DROPPED {
		b = kStr(b, "drop_reason", enumName(flowpb.DropReason_name, int32(f.DropReason)))
	}
	b = kStr(b, "traffic_direction", enumName(flowpb.TrafficDirection_name, int32(f.Direction)))
	b = kStr(b, "trace_observation_point", enumName(flowpb.TraceObservationPoint_name, int32(f.ObservationPoint)))
	b = kStr(b, "count_as", f.CountAs.String())
	if f.IsReply != schemas.Unknown {
		b = kBool(b, "is_reply", f.IsReply == schemas.True)
	}
	b = k8sEndpoint(b, "src", &f.Src, &f.SrcService)
	b = k8sEndpoint(b, "dst", &f.Dst, &f.DstService)
	if len(f.SrcNames) > 1 {
		b = kStrs(b, "src_names", f.SrcNames)
	}
	if len(f.DstNames) > 1 {
		b = kStrs(b, "dst_names", f.DstNames)
	}
	for _, p := range []struct {
		k string
		v []string
	}{{"ingress_allowed_by", f.IngressAllowedBy}, {"egress_allowed_by", f.EgressAllowedBy}, {"ingress_denied_by", f.IngressDeniedBy}, {"egress_denied_by", f.EgressDeniedBy}} {
		if len(p.v) > 0 {
			b = kStrs(b, p.k, p.v)
		}
	}
	if f.L4Protocol == 1 || f.L4Protocol == 58 {
		b = kUint(b, "icmp_type", uint64(f.ICMPType))
		b = kUint(b, "icmp_code", uint64(f.ICMPCode))
	}
	if f.LatencyNs > 0 {
		b = kUint(b, "latency_ns", f.LatencyNs)
	}
	switch f.L7.Protocol {
	case schemas.L7DNS:
		if len(f.L7.DNSQTypes) > 1 {
			b = kStrs(b, "dns_qtypes", f.L7.DNSQTypes)
		}
		if f.L7.DNSObservationSource != "" {
			b = kStr(b, "dns_observation_source", f.L7.DNSObservationSource)
		}
	case schemas.L7Kafka:
		b = append(key(b, "kafka"), '{')
		b = kStr(b, "api_key", f.L7.KafkaAPIKey)
		b = kInt(b, "api_version", int64(f.L7.KafkaAPIVersion))
		b = kInt(b, "correlation_id", int64(f.L7.KafkaCorrelationID))
		b = kStr(b, "topic", f.L7.KafkaTopic)
		b = kInt(b, "error_code", int64(f.L7.KafkaErrorCode))
		if f.L7.KafkaClientID != "" {
			b = kStr(b, "client_id", f.L7.KafkaClientID)
		}
		b = append(b, '}')
	}
	return append(b, '}', '}')
}

func enumName(names map[int32]string, v int32) string {
	if n, ok := names[v]; ok {
		return n
	}
	return strconv.Itoa(int(v))
}

func k8sEndpoint(b []byte, k string, ep *schemas.Endpoint, svc *schemas.Service) []byte {
	if ep.Namespace == "" && ep.Identity == 0 && ep.ClusterName == "" && ep.Workload == "" && len(ep.Labels) == 0 && svc.Namespace == "" {
		return b
	}
	b = append(key(b, k), '{')
	if ep.ClusterName != "" {
		b = kStr(b, "cluster", ep.ClusterName)
	}
	if ep.Namespace != "" {
		b = kStr(b, "namespace", ep.Namespace)
	}
	if ep.PodName != "" {
		b = kStr(b, "pod", ep.PodName)
	}
	if ep.Workload != "" {
		b = kStr(b, "workload", ep.Workload)
		b = kStr(b, "workload_kind", ep.WorkloadKind)
	}
	if ep.Identity != 0 {
		b = kUint(b, "identity", uint64(ep.Identity))
	}
	if len(ep.Labels) > 0 {
		b = kStrs(b, "labels", ep.Labels)
	}
	if svc.Namespace != "" {
		b = kStr(b, "service_namespace", svc.Namespace)
	}
	return append(b, '}')
}
