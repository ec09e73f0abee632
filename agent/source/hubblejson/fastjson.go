package hubblejson

//lint:file-ignore SA1019 Hubble's deprecated drop_reason and reply fields are read, as hubble.FromProto reads them.

import (
	"net/netip"
	"slices"
	"time"
	"unicode/utf8"

	flowpb "github.com/cilium/cilium/api/v1/flow"
	"github.com/cilium/cilium/api/v1/observer"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/flowbus/flowbus/schemas"
	"github.com/flowbus/flowbus/schemas/hubble"
)

// fastDecoder reads a GetFlowsResponse JSON line holding a flow straight
// into a schemas.Flow: decode gives what protojson (DiscardUnknown) and
// hubble.FromProto give for the line, or declines (returns false), and then
// the caller decodes the line with them. It declines whatever it does not
// read exactly as protojson does: other response types, bare flows, any
// string with an escape, null, numbers in any form but plain decimal
// integers (quoted for 64-bit fields), enums by number or unknown name,
// timestamps in any form but YYYY-MM-DDTHH:MM:SS[.f{1,9}]Z, duplicate
// fields, two members of a oneof, flow.extensions (flowbus's own lines),
// VRRP and IGMP, and any value protojson or FromProto would reject (bad
// JSON, bad UTF-8, an out-of-range number, an unparsable IP address).
// Fields flowbus does not read are checked against their descriptor the
// way protojson checks them (unknown fields: any JSON value), so a line
// accepted here is one protojson accepts. Strings that repeat (node,
// namespaces, pods, workloads, labels, services, methods) are shared, as
// are label lists and parsed addresses (up to 65,536 of each). Not safe for
// concurrent use.
type fastDecoder struct {
	b  []byte
	i  int
	ok bool

	depth int
	strs  map[string]string
	ips   map[string]netip.Addr
	lists hubble.ListCache

	// per flow, reused
	labels, names [2][]string
	policies      [4][]string // ingress allowed, egress allowed, ingress denied, egress denied
	dnsIPs, dnsCN []string
	dnsQT, dnsRR  []string
	headers       []string
	dropReason    uint32
	reply         bool
	hasIsReply    bool
	isReply       bool
}

func newFastDecoder() *fastDecoder {
	return &fastDecoder{strs: map[string]string{}, ips: map[string]netip.Addr{}}
}

const fastCacheMax = 1 << 16

// maxSkipDepth bounds the nesting of values the fast path skips or checks.
const maxSkipDepth = 64

// decode decodes line into f (overwritten) and reports whether it did; on
// false, f holds garbage and the line must be decoded by protojson.
func (d *fastDecoder) decode(line []byte, f *schemas.Flow) bool {
	*f = schemas.Flow{}
	d.b, d.i, d.ok, d.depth = line, 0, true, 0
	for i := range 2 {
		d.labels[i], d.names[i] = d.labels[i][:0], d.names[i][:0]
	}
	for i := range d.policies {
		d.policies[i] = d.policies[i][:0]
	}
	d.dnsIPs, d.dnsCN, d.dnsQT, d.dnsRR, d.headers = d.dnsIPs[:0], d.dnsCN[:0], d.dnsQT[:0], d.dnsRR[:0], d.headers[:0]
	d.dropReason, d.reply, d.hasIsReply, d.isReply = 0, false, false, false

	hasFlow := false
	var seen fieldsSeen
	d.object(func(key []byte) {
		switch string(key) {
		case "flow":
			d.once(&seen, 1)
			hasFlow = true
			d.flow(f)
		case "node_name", "nodeName":
			d.once(&seen, 2)
			d.str()
		case "time":
			d.once(&seen, 4)
			d.timestamp()
		case "node_status", "nodeStatus", "lost_events", "lostEvents":
			d.ok = false
		default:
			d.unknown(responseMD, &seen, key)
		}
	})
	d.ws()
	if !d.ok || !hasFlow || d.i != len(d.b) {
		return false
	}
	f.Src.Labels, f.Dst.Labels = d.shared(d.labels[0]), d.shared(d.labels[1])
	f.SrcNames, f.DstNames = d.shared(d.names[0]), d.shared(d.names[1])
	f.IngressAllowedBy, f.EgressAllowedBy = clone(d.policies[0]), clone(d.policies[1])
	f.IngressDeniedBy, f.EgressDeniedBy = clone(d.policies[2]), clone(d.policies[3])
	f.L7.DNSIPs, f.L7.DNSCNAMEs = clone(d.dnsIPs), clone(d.dnsCN)
	f.L7.DNSQTypes, f.L7.DNSRRTypes = d.shared(d.dnsQT), d.shared(d.dnsRR)
	f.L7.HTTPHeaders = clone(d.headers)
	if f.DropReason == 0 && d.dropReason != 0 {
		f.DropReason = flowpb.DropReason(d.dropReason)
	}
	switch {
	case d.hasIsReply && d.isReply:
		f.IsReply = schemas.True
	case d.hasIsReply:
		f.IsReply = schemas.False
	case d.reply:
		f.IsReply = schemas.True
	}
	return true
}

// The descriptors that fields the fast path does not read are checked against.
var (
	responseMD = (&observer.GetFlowsResponse{}).ProtoReflect().Descriptor()
	flowMD     = (&flowpb.Flow{}).ProtoReflect().Descriptor()
	endpointMD = (&flowpb.Endpoint{}).ProtoReflect().Descriptor()
	workloadMD = (&flowpb.Workload{}).ProtoReflect().Descriptor()
	ipMD       = (&flowpb.IP{}).ProtoReflect().Descriptor()
	layer4MD   = (&flowpb.Layer4{}).ProtoReflect().Descriptor()
	tcpMD      = (&flowpb.TCP{}).ProtoReflect().Descriptor()
	flagsMD    = (&flowpb.TCPFlags{}).ProtoReflect().Descriptor()
	udpMD      = (&flowpb.UDP{}).ProtoReflect().Descriptor()
	icmpMD     = (&flowpb.ICMPv4{}).ProtoReflect().Descriptor()
	layer7MD   = (&flowpb.Layer7{}).ProtoReflect().Descriptor()
	httpMD     = (&flowpb.HTTP{}).ProtoReflect().Descriptor()
	headerMD   = (&flowpb.HTTPHeader{}).ProtoReflect().Descriptor()
	dnsMD      = (&flowpb.DNS{}).ProtoReflect().Descriptor()
	kafkaMD    = (&flowpb.Kafka{}).ProtoReflect().Descriptor()
	serviceMD  = (&flowpb.Service{}).ProtoReflect().Descriptor()
	policyMD   = (&flowpb.Policy{}).ProtoReflect().Descriptor()
	eventMD    = (&flowpb.CiliumEventType{}).ProtoReflect().Descriptor()
	ifaceMD    = (&flowpb.NetworkInterface{}).ProtoReflect().Descriptor()
)

// flow reads a flow.Flow.
func (d *fastDecoder) flow(f *schemas.Flow) {
	var seen fieldsSeen
	d.object(func(key []byte) {
		switch string(key) {
		case "time":
			d.once(&seen, 1<<0)
			sec, nanos := d.timestamp()
			f.TimeNs = time.Unix(sec, int64(nanos)).UnixNano()
		case "uuid":
			d.once(&seen, 1<<1)
			f.UUID = string(d.str())
		case "verdict":
			d.once(&seen, 1<<2)
			f.Verdict = flowpb.Verdict(d.enum(flowpb.Verdict_value))
		case "drop_reason", "dropReason":
			d.once(&seen, 1<<3)
			d.dropReason = d.u32()
		case "IP":
			d.once(&seen, 1<<4)
			d.ip(f)
		case "l4":
			d.once(&seen, 1<<5)
			d.layer4(f)
		case "source":
			d.once(&seen, 1<<6)
			d.endpoint(&f.Src, 0)
		case "destination":
			d.once(&seen, 1<<7)
			d.endpoint(&f.Dst, 1)
		case "node_name", "nodeName":
			d.once(&seen, 1<<8)
			f.NodeName = d.istr()
		case "source_names", "sourceNames":
			d.once(&seen, 1<<9)
			d.names[0] = d.strList(d.names[0])
		case "destination_names", "destinationNames":
			d.once(&seen, 1<<10)
			d.names[1] = d.strList(d.names[1])
		case "l7":
			d.once(&seen, 1<<11)
			d.layer7(f)
		case "reply":
			d.once(&seen, 1<<12)
			d.reply = d.boolean()
		case "event_type", "eventType":
			d.once(&seen, 1<<13)
			var s2 fieldsSeen
			d.object(func(key []byte) {
				switch string(key) {
				case "type":
					d.once(&s2, 1)
					f.EventType = d.i32()
				case "sub_type", "subType":
					d.once(&s2, 2)
					f.EventSubType = d.i32()
				default:
					d.unknown(eventMD, &s2, key)
				}
			})
		case "source_service", "sourceService":
			d.once(&seen, 1<<14)
			d.service(&f.SrcService)
		case "destination_service", "destinationService":
			d.once(&seen, 1<<15)
			d.service(&f.DstService)
		case "traffic_direction", "trafficDirection":
			d.once(&seen, 1<<16)
			f.Direction = flowpb.TrafficDirection(d.enum(flowpb.TrafficDirection_value))
		case "policy_match_type", "policyMatchType":
			d.once(&seen, 1<<17)
			f.PolicyMatchType = uint8(min(d.u32(), 255))
		case "trace_observation_point", "traceObservationPoint":
			d.once(&seen, 1<<18)
			f.ObservationPoint = flowpb.TraceObservationPoint(d.enum(flowpb.TraceObservationPoint_value))
		case "drop_reason_desc", "dropReasonDesc":
			d.once(&seen, 1<<19)
			f.DropReason = flowpb.DropReason(d.enum(flowpb.DropReason_value))
		case "is_reply", "isReply":
			d.once(&seen, 1<<20)
			d.hasIsReply = true
			d.isReply = d.boolean()
		case "interface":
			d.once(&seen, 1<<21)
			var s2 fieldsSeen
			d.object(func(key []byte) {
				switch string(key) {
				case "index":
					d.once(&s2, 1)
					f.IfIndex = d.u32()
				case "name":
					d.once(&s2, 2)
					f.IfName = d.istr()
				default:
					d.unknown(ifaceMD, &s2, key)
				}
			})
		case "ingress_allowed_by", "ingressAllowedBy":
			d.once(&seen, 1<<22)
			d.policyList(0)
		case "egress_allowed_by", "egressAllowedBy":
			d.once(&seen, 1<<23)
			d.policyList(1)
		case "ingress_denied_by", "ingressDeniedBy":
			d.once(&seen, 1<<24)
			d.policyList(2)
		case "egress_denied_by", "egressDeniedBy":
			d.once(&seen, 1<<25)
			d.policyList(3)
		case "extensions":
			d.ok = false // flowbus's own lines: the reference path reads the Any
		default:
			d.unknown(flowMD, &seen, key)
		}
	})
}

func (d *fastDecoder) ip(f *schemas.Flow) {
	var seen fieldsSeen
	var src, dst []byte
	d.object(func(key []byte) {
		switch string(key) {
		case "source":
			d.once(&seen, 1)
			src = d.str()
		case "destination":
			d.once(&seen, 2)
			dst = d.str()
		case "ipVersion":
			d.once(&seen, 4)
			f.IPVersion = flowpb.IPVersion(d.enum(flowpb.IPVersion_value))
		default:
			d.unknown(ipMD, &seen, key)
		}
	})
	f.SrcIP, f.DstIP = d.addr(src), d.addr(dst)
}

func (d *fastDecoder) layer4(f *schemas.Flow) {
	members := 0
	d.object(func(key []byte) {
		var proto uint8
		switch string(key) {
		case "TCP":
			proto = 6
		case "UDP":
			proto = 17
		case "SCTP":
			proto = 132
		case "ICMPv4":
			proto = 1
		case "ICMPv6":
			proto = 58
		default:
			if layer4MD.Fields().ByJSONName(string(key)) != nil || layer4MD.Fields().ByTextName(string(key)) != nil {
				d.ok = false // VRRP, IGMP (FromProto carries neither), or a new member
				return
			}
			d.unknown(layer4MD, new(fieldsSeen), key)
			return
		}
		if members++; members > 1 {
			d.ok = false // protojson rejects a second member of a oneof
			return
		}
		f.L4Protocol = proto
		var seen fieldsSeen
		switch proto {
		case 1, 58:
			d.object(func(key []byte) {
				switch string(key) {
				case "type":
					d.once(&seen, 1)
					f.ICMPType = uint8(d.u32())
				case "code":
					d.once(&seen, 2)
					f.ICMPCode = uint8(d.u32())
				default:
					d.unknown(icmpMD, &seen, key)
				}
			})
		default:
			md := udpMD
			if proto == 6 {
				md = tcpMD
			}
			d.object(func(key []byte) {
				switch string(key) {
				case "source_port", "sourcePort":
					d.once(&seen, 1)
					f.SrcPort = uint16(d.u32())
				case "destination_port", "destinationPort":
					d.once(&seen, 2)
					f.DstPort = uint16(d.u32())
				case "flags":
					if proto != 6 {
						d.unknown(md, &seen, key)
						return
					}
					d.once(&seen, 4)
					d.tcpFlags(f)
				default:
					d.unknown(md, &seen, key)
				}
			})
		}
	})
}

func (d *fastDecoder) tcpFlags(f *schemas.Flow) {
	var seen fieldsSeen
	d.object(func(key []byte) {
		var bit int
		switch string(key) {
		case "FIN":
			bit = 0
		case "SYN":
			bit = 1
		case "RST":
			bit = 2
		case "PSH":
			bit = 3
		case "ACK":
			bit = 4
		case "URG":
			bit = 5
		case "ECE":
			bit = 6
		case "CWR":
			bit = 7
		case "NS":
			bit = 8
		default:
			d.unknown(flagsMD, &seen, key)
			return
		}
		d.once(&seen, 1<<bit)
		if d.boolean() {
			f.TCPFlags |= tcpFlagBits[bit]
		}
	})
}

var tcpFlagBits = [...]schemas.TCPFlags{schemas.FlagFIN, schemas.FlagSYN, schemas.FlagRST, schemas.FlagPSH, schemas.FlagACK, schemas.FlagURG, schemas.FlagECE, schemas.FlagCWR, schemas.FlagNS}

func (d *fastDecoder) endpoint(e *schemas.Endpoint, side int) {
	var seen fieldsSeen
	d.object(func(key []byte) {
		switch string(key) {
		case "ID":
			d.once(&seen, 1)
			e.ID = d.u32()
		case "identity":
			d.once(&seen, 2)
			e.Identity = d.u32()
		case "cluster_name", "clusterName":
			d.once(&seen, 4)
			e.ClusterName = d.istr()
		case "namespace":
			d.once(&seen, 8)
			e.Namespace = d.istr()
		case "labels":
			d.once(&seen, 16)
			d.labels[side] = d.strList(d.labels[side])
		case "pod_name", "podName":
			d.once(&seen, 32)
			e.PodName = d.istr()
		case "workloads":
			d.once(&seen, 64)
			first := true
			d.array(func() {
				var s2 fieldsSeen
				d.object(func(key []byte) {
					switch string(key) {
					case "name":
						d.once(&s2, 1)
						if v := d.istr(); first {
							e.Workload = v
						}
					case "kind":
						d.once(&s2, 2)
						if v := d.istr(); first {
							e.WorkloadKind = v
						}
					default:
						d.unknown(workloadMD, &s2, key)
					}
				})
				first = false
			})
		default:
			d.unknown(endpointMD, &seen, key)
		}
	})
}

func (d *fastDecoder) service(sv *schemas.Service) {
	var seen fieldsSeen
	d.object(func(key []byte) {
		switch string(key) {
		case "name":
			d.once(&seen, 1)
			sv.Name = d.istr()
		case "namespace":
			d.once(&seen, 2)
			sv.Namespace = d.istr()
		default:
			d.unknown(serviceMD, &seen, key)
		}
	})
}

// policyList reads a list of flow.Policy, named as FromProto names them.
func (d *fastDecoder) policyList(i int) {
	d.array(func() {
		var seen fieldsSeen
		var name, ns, kind string
		d.object(func(key []byte) {
			switch string(key) {
			case "name":
				d.once(&seen, 1)
				name = d.istr()
			case "namespace":
				d.once(&seen, 2)
				ns = d.istr()
			case "kind":
				d.once(&seen, 4)
				kind = d.istr()
			default:
				d.unknown(policyMD, &seen, key)
			}
		})
		if kind == "" && ns == "" {
			d.policies[i] = append(d.policies[i], name)
		} else {
			d.policies[i] = append(d.policies[i], hubble.PolicyName(kind, ns, name))
		}
	})
}

func (d *fastDecoder) layer7(f *schemas.Flow) {
	l := &f.L7
	var seen fieldsSeen
	members := 0
	d.object(func(key []byte) {
		switch string(key) {
		case "type":
			d.once(&seen, 1)
			l.Type = flowpb.L7FlowType(d.enum(flowpb.L7FlowType_value))
			return
		case "latency_ns", "latencyNs":
			d.once(&seen, 2)
			f.LatencyNs = d.u64()
			return
		case "dns", "http", "kafka":
		default:
			d.unknown(layer7MD, &seen, key)
			return
		}
		if members++; members > 1 {
			d.ok = false // protojson rejects a second member of a oneof
			return
		}
		var s2 fieldsSeen
		switch string(key) {
		case "dns":
			l.Protocol = schemas.L7DNS
			d.object(func(key []byte) {
				switch string(key) {
				case "query":
					d.once(&s2, 1)
					l.DNSQuery = d.istr()
				case "ips":
					d.once(&s2, 2)
					d.dnsIPs = d.strList(d.dnsIPs)
				case "ttl":
					d.once(&s2, 4)
					l.DNSTTL = d.u32()
				case "cnames":
					d.once(&s2, 8)
					d.dnsCN = d.strList(d.dnsCN)
				case "observation_source", "observationSource":
					d.once(&s2, 16)
					l.DNSObservationSource = d.istr()
				case "rcode":
					d.once(&s2, 32)
					l.DNSRCode = d.u32()
				case "qtypes":
					d.once(&s2, 64)
					d.dnsQT = d.strList(d.dnsQT)
				case "rrtypes":
					d.once(&s2, 128)
					d.dnsRR = d.strList(d.dnsRR)
				default:
					d.unknown(dnsMD, &s2, key)
				}
			})
		case "http":
			l.Protocol = schemas.L7HTTP
			d.object(func(key []byte) {
				switch string(key) {
				case "code":
					d.once(&s2, 1)
					l.HTTPStatus = d.u32()
				case "method":
					d.once(&s2, 2)
					l.HTTPMethod = d.istr()
				case "url":
					d.once(&s2, 4)
					l.HTTPURL = string(d.str())
				case "protocol":
					d.once(&s2, 8)
					l.HTTPProtocol = d.istr()
				case "headers":
					d.once(&s2, 16)
					d.array(func() {
						var s3 fieldsSeen
						var k, v []byte
						d.object(func(key []byte) {
							switch string(key) {
							case "key":
								d.once(&s3, 1)
								k = d.str()
							case "value":
								d.once(&s3, 2)
								v = d.str()
							default:
								d.unknown(headerMD, &s3, key)
							}
						})
						d.headers = append(d.headers, string(k)+": "+string(v))
					})
				default:
					d.unknown(httpMD, &s2, key)
				}
			})
		case "kafka":
			l.Protocol = schemas.L7Kafka
			d.object(func(key []byte) {
				switch string(key) {
				case "error_code", "errorCode":
					d.once(&s2, 1)
					l.KafkaErrorCode = d.i32()
				case "api_version", "apiVersion":
					d.once(&s2, 2)
					l.KafkaAPIVersion = d.i32()
				case "api_key", "apiKey":
					d.once(&s2, 4)
					l.KafkaAPIKey = d.istr()
				case "correlation_id", "correlationId":
					d.once(&s2, 8)
					l.KafkaCorrelationID = d.i32()
				case "topic":
					d.once(&s2, 16)
					l.KafkaTopic = d.istr()
				default:
					d.unknown(kafkaMD, &s2, key)
				}
			})
		}
	})
}

// ---- the JSON scanner ----

func (d *fastDecoder) ws() {
	for d.i < len(d.b) {
		switch d.b[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return
		}
	}
}

// once marks a field seen (bit) and declines a duplicate, as protojson
// rejects one.
func (d *fastDecoder) once(seen *fieldsSeen, bit uint64) {
	if seen.own&bit != 0 {
		d.ok = false
	}
	seen.own |= bit
}

// fieldsSeen is the fields of an object read so far: own the fast path's
// bits for the fields it reads, gen the others by descriptor index.
type fieldsSeen struct {
	own uint64
	gen [2]uint64
}

// object reads an object at the cursor, calling member with each key and
// the cursor at its value, which member consumes. Keys with escapes decline.
func (d *fastDecoder) object(member func(key []byte)) {
	d.seq('{', '}', func() {
		key := d.key()
		d.ws()
		if !d.ok || d.i >= len(d.b) || d.b[d.i] != ':' {
			d.ok = false
			return
		}
		d.i++
		d.ws()
		member(key)
	})
}

// array reads an array at the cursor, calling elem with the cursor at each element.
func (d *fastDecoder) array(elem func()) {
	d.seq('[', ']', func() {
		d.ws()
		elem()
	})
}

// seq reads what object and array share: open, then items separated by
// commas (each read by item, which fails d.ok when it cannot), then close,
// with whitespace anywhere between and the nesting bounded by maxSkipDepth.
func (d *fastDecoder) seq(open, close byte, item func()) {
	if !d.ok {
		return
	}
	d.ws()
	if d.i >= len(d.b) || d.b[d.i] != open {
		d.ok = false
		return
	}
	if d.depth++; d.depth > maxSkipDepth {
		d.ok = false
		return
	}
	defer func() { d.depth-- }()
	d.i++
	d.ws()
	if d.i < len(d.b) && d.b[d.i] == close {
		d.i++
		return
	}
	for d.ok {
		item()
		if !d.ok {
			return
		}
		d.ws()
		if d.i >= len(d.b) {
			d.ok = false
			return
		}
		switch d.b[d.i] {
		case ',':
			d.i++
			d.ws()
		case close:
			d.i++
			return
		default:
			d.ok = false
		}
	}
}

// str reads a string and returns its bytes: in the line, or for a string
// with escapes in a buffer of its own. It declines control characters,
// invalid UTF-8 and escaped UTF-16 surrogates (protojson's rules but for
// surrogate pairs, which it takes).
func (d *fastDecoder) str() []byte {
	if !d.ok || d.i >= len(d.b) || d.b[d.i] != '"' {
		d.ok = false
		return nil
	}
	start := d.i + 1
	ascii := true
	for j := start; j < len(d.b); j++ {
		c := d.b[j]
		switch {
		case c == '"':
			s := d.b[start:j]
			if !ascii && !utf8.Valid(s) {
				d.ok = false
				return nil
			}
			d.i = j + 1
			return s
		case c == '\\':
			d.i = start
			return d.unescape(d.b[start:j])
		case c < 0x20:
			d.ok = false
			return nil
		case c >= 0x80:
			ascii = false
		}
	}
	d.ok = false
	return nil
}

// key reads an object's key, a string; keys with escapes decline.
func (d *fastDecoder) key() []byte {
	if d.i >= len(d.b) || d.b[d.i] != '"' {
		d.ok = false
		return nil
	}
	for j := d.i + 1; j < len(d.b); j++ {
		switch c := d.b[j]; {
		case c == '"':
			k := d.b[d.i+1 : j]
			d.i = j + 1
			return k
		case c == '\\' || c < 0x20 || c >= 0x80:
			d.ok = false // escapes, control characters, non-ASCII keys: the reference path
			return nil
		}
	}
	d.ok = false
	return nil
}

// unescape reads the rest of a string with escapes from d.i, its plain
// prefix already known, into a new buffer.
func (d *fastDecoder) unescape(prefix []byte) []byte {
	out := append(make([]byte, 0, len(prefix)+32), prefix...)
	b := d.b
	for j := d.i + len(prefix); j < len(b); {
		c := b[j]
		switch {
		case c == '"':
			if !utf8.Valid(out) {
				d.ok = false
				return nil
			}
			d.i = j + 1
			return out
		case c < 0x20:
			d.ok = false
			return nil
		case c != '\\':
			out = append(out, c)
			j++
			continue
		}
		if j+1 >= len(b) {
			d.ok = false
			return nil
		}
		switch e := b[j+1]; e {
		case '"', '\\', '/':
			out = append(out, e)
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			if j+6 > len(b) {
				d.ok = false
				return nil
			}
			var r rune
			for _, h := range b[j+2 : j+6] {
				switch {
				case h >= '0' && h <= '9':
					r = r<<4 | rune(h-'0')
				case h >= 'a' && h <= 'f':
					r = r<<4 | rune(h-'a'+10)
				case h >= 'A' && h <= 'F':
					r = r<<4 | rune(h-'A'+10)
				default:
					d.ok = false
					return nil
				}
			}
			if r >= 0xd800 && r < 0xe000 {
				d.ok = false // surrogates: the reference path
				return nil
			}
			out = utf8.AppendRune(out, r)
			j += 6
			continue
		default:
			d.ok = false
			return nil
		}
		j += 2
	}
	d.ok = false
	return nil
}

// istr reads a string, shared with earlier equal ones.
func (d *fastDecoder) istr() string {
	b := d.str()
	if !d.ok {
		return ""
	}
	if s, ok := d.strs[string(b)]; ok {
		return s
	}
	if len(d.strs) >= fastCacheMax {
		clear(d.strs)
	}
	s := string(b)
	d.strs[s] = s
	return s
}

// strList appends the strings of a list to l.
func (d *fastDecoder) strList(l []string) []string {
	d.array(func() {
		if s := d.istr(); d.ok {
			l = append(l, s)
		}
	})
	return l
}

func (d *fastDecoder) boolean() bool {
	if !d.ok {
		return false
	}
	switch {
	case len(d.b)-d.i >= 4 && string(d.b[d.i:d.i+4]) == "true":
		d.i += 4
		return true
	case len(d.b)-d.i >= 5 && string(d.b[d.i:d.i+5]) == "false":
		d.i += 5
		return false
	}
	d.ok = false
	return false
}

// digits reads a plain decimal integer (no sign, no leading zero, no
// fraction or exponent) of at most 20 digits.
func (d *fastDecoder) digits() (v uint64) {
	start := d.i
	for d.i < len(d.b) && d.b[d.i] >= '0' && d.b[d.i] <= '9' {
		c := uint64(d.b[d.i] - '0')
		if v > (1<<64-1-c)/10 {
			d.ok = false
			return 0
		}
		v = v*10 + c
		d.i++
	}
	n := d.i - start
	if n == 0 || (n > 1 && d.b[start] == '0') {
		d.ok = false
		return 0
	}
	if d.i < len(d.b) {
		switch d.b[d.i] {
		case '.', 'e', 'E':
			d.ok = false // protojson takes 1.0 and 1e2; the fast path does not
		}
	}
	return v
}

func (d *fastDecoder) u32() uint32 {
	if !d.ok {
		return 0
	}
	v := d.digits()
	if v > 1<<32-1 {
		d.ok = false
	}
	return uint32(v)
}

func (d *fastDecoder) i32() int32 {
	if !d.ok {
		return 0
	}
	neg := d.i < len(d.b) && d.b[d.i] == '-'
	if neg {
		d.i++
	}
	v := d.digits()
	switch {
	case neg && (v == 0 || v > 1<<31):
		d.ok = false
	case neg:
		return int32(-int64(v))
	case v > 1<<31-1:
		d.ok = false
	}
	return int32(v)
}

// u64 reads a uint64: a quoted decimal, as protojson writes it, or a bare one.
func (d *fastDecoder) u64() uint64 {
	if !d.ok || d.i >= len(d.b) {
		d.ok = false
		return 0
	}
	if d.b[d.i] != '"' {
		return d.digits()
	}
	d.i++
	v := d.digits()
	if d.i >= len(d.b) || d.b[d.i] != '"' {
		d.ok = false
		return 0
	}
	d.i++
	return v
}

// enum reads an enum by name; numbers and unknown names decline.
func (d *fastDecoder) enum(values map[string]int32) int32 {
	b := d.str()
	if !d.ok {
		return 0
	}
	v, ok := values[string(b)]
	if !ok {
		d.ok = false
	}
	return v
}

// timestamp reads a google.protobuf.Timestamp in the form
// YYYY-MM-DDTHH:MM:SS[.f{1,9}]Z, years 0001–9999 (all of which protojson takes).
func (d *fastDecoder) timestamp() (sec int64, nanos int32) {
	s := d.str()
	if !d.ok {
		return 0, 0
	}
	if len(s) < 20 || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':' || s[len(s)-1] != 'Z' {
		d.ok = false
		return 0, 0
	}
	num := func(b []byte) int {
		n := 0
		for _, c := range b {
			if c < '0' || c > '9' {
				d.ok = false
				return 0
			}
			n = n*10 + int(c-'0')
		}
		return n
	}
	year, month, day := num(s[0:4]), num(s[5:7]), num(s[8:10])
	hour, minute, second := num(s[11:13]), num(s[14:16]), num(s[17:19])
	if frac := s[19 : len(s)-1]; len(frac) > 0 {
		if frac[0] != '.' || len(frac) < 2 || len(frac) > 10 {
			d.ok = false
			return 0, 0
		}
		n := num(frac[1:])
		for range 10 - len(frac) {
			n *= 10
		}
		nanos = int32(n)
	}
	if !d.ok || year < 1 || month < 1 || month > 12 || day < 1 || hour > 23 || minute > 59 || second > 59 ||
		day > time.Date(year, time.Month(month)+1, 0, 0, 0, 0, 0, time.UTC).Day() {
		d.ok = false
		return 0, 0
	}
	return time.Date(year, time.Month(month), day, hour, minute, second, 0, time.UTC).Unix(), nanos
}

// addr parses an IP address, remembering it ("" is the zero Addr).
func (d *fastDecoder) addr(b []byte) netip.Addr {
	if !d.ok || len(b) == 0 {
		return netip.Addr{}
	}
	if a, ok := d.ips[string(b)]; ok {
		return a
	}
	a, err := netip.ParseAddr(string(b))
	if err != nil {
		d.ok = false // FromProto rejects it; the reference path says why
		return netip.Addr{}
	}
	if len(d.ips) >= fastCacheMax {
		clear(d.ips)
	}
	d.ips[string(b)] = a
	return a
}

// shared returns a list equal to l, shared with earlier equal lists (nil when empty).
func (d *fastDecoder) shared(l []string) []string { return d.lists.Shared(l) }

func clone(l []string) []string {
	if len(l) == 0 {
		return nil
	}
	return slices.Clone(l)
}

// ---- fields the fast path does not read ----

// unknown handles a key of md the fast path does not read: a field of md
// (by JSON or proto name) is checked as protojson checks its value, once;
// any other key's value is skipped as any JSON value (DiscardUnknown).
func (d *fastDecoder) unknown(md protoreflect.MessageDescriptor, seen *fieldsSeen, key []byte) {
	if !d.ok {
		return
	}
	if len(key) > 0 && (key[0] == '[' || key[0] == '@') {
		d.ok = false // extension and type-URL syntax: the reference path
		return
	}
	fds := md.Fields()
	fd := fds.ByJSONName(string(key))
	if fd == nil {
		fd = fds.ByTextName(string(key))
	}
	if fd == nil {
		d.skip()
		return
	}
	i := fd.Index()
	if i >= 128 || seen.gen[i/64]&(1<<(i%64)) != 0 {
		d.ok = false // a duplicate, which protojson rejects
		return
	}
	seen.gen[i/64] |= 1 << (i % 64)
	d.check(fd)
}

// check reads a value of field fd as protojson would, keeping nothing.
// Maps, bytes, floats, well-known types and null decline.
func (d *fastDecoder) check(fd protoreflect.FieldDescriptor) {
	switch {
	case fd.IsMap():
		d.ok = false
	case fd.IsList():
		d.array(func() { d.checkOne(fd) })
	default:
		d.checkOne(fd)
	}
}

func (d *fastDecoder) checkOne(fd protoreflect.FieldDescriptor) {
	switch fd.Kind() {
	case protoreflect.StringKind:
		d.str()
	case protoreflect.BoolKind:
		d.boolean()
	case protoreflect.EnumKind:
		if b := d.str(); d.ok && fd.Enum().Values().ByName(protoreflect.Name(b)) == nil {
			d.ok = false
		}
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		d.u32()
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		d.i32()
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		d.u64()
	case protoreflect.MessageKind:
		md := fd.Message()
		if md.ParentFile().Package() == "google.protobuf" {
			d.ok = false
			return
		}
		var seen fieldsSeen
		oneofs := map[protoreflect.Name]bool{}
		d.object(func(key []byte) {
			fds := md.Fields()
			sub := fds.ByJSONName(string(key))
			if sub == nil {
				sub = fds.ByTextName(string(key))
			}
			if sub != nil {
				if o := sub.ContainingOneof(); o != nil {
					if oneofs[o.Name()] {
						d.ok = false
						return
					}
					oneofs[o.Name()] = true
				}
			}
			d.unknown(md, &seen, key)
		})
	default:
		d.ok = false // signed 64-bit, floats, bytes, groups
	}
}

// skip reads any JSON value, as protojson skips an unknown field's.
func (d *fastDecoder) skip() {
	if !d.ok || d.i >= len(d.b) {
		d.ok = false
		return
	}
	switch c := d.b[d.i]; {
	case c == '"':
		d.str()
	case c == '{':
		d.object(func([]byte) { d.skip() })
	case c == '[':
		d.array(d.skip)
	case c == 't' || c == 'f':
		d.boolean()
	case c == 'n':
		if len(d.b)-d.i >= 4 && string(d.b[d.i:d.i+4]) == "null" {
			d.i += 4
			return
		}
		d.ok = false
	case c == '-' || (c >= '0' && c <= '9'):
		d.number()
	default:
		d.ok = false
	}
}

// number reads a JSON number: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func (d *fastDecoder) number() {
	b, i := d.b, d.i
	if i < len(b) && b[i] == '-' {
		i++
	}
	run := func() int {
		n := 0
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i, n = i+1, n+1
		}
		return n
	}
	start := i
	if n := run(); n == 0 || (n > 1 && b[start] == '0') {
		d.ok = false
		return
	}
	if i < len(b) && b[i] == '.' {
		i++
		if run() == 0 {
			d.ok = false
			return
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if run() == 0 {
			d.ok = false
			return
		}
	}
	d.i = i
}
