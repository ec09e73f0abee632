package hubble

import (
	"fmt"
	"net/netip"
	"slices"
	"unicode/utf8"

	flowpb "github.com/cilium/cilium/api/v1/flow"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/flowbus/flowbus/schemas"
)

// Decoder reads Hubble's flow.Flow from its protobuf wire form straight
// into a schemas.Flow: DecodeFlow(b) gives what FromProto gives for the
// message proto.Unmarshal makes of b, without building that message (the
// Hubble source's hot path: decoding the protobuf message was half of its
// CPU). Strings that repeat from flow to flow (node, namespaces, pods,
// workloads, labels, services, methods) are validated once and shared, as
// are whole label lists and parsed IP addresses (up to 65,536 of each;
// then the caches start again). Not safe for concurrent use.
type Decoder struct {
	strs  map[string]string
	ips   map[string]netip.Addr
	lists ListCache
	st    decodeState
}

// NewDecoder returns a Decoder with empty caches.
func NewDecoder() *Decoder {
	return &Decoder{strs: map[string]string{}, ips: map[string]netip.Addr{}}
}

// cacheMax bounds each of a Decoder's caches.
const cacheMax = 1 << 16

// decodeState is what a flow accumulates until its end: repeated fields,
// fields FromProto reads only once the message is whole, and which member
// of each oneof is set. Its slices are reused from flow to flow.
type decodeState struct {
	labels, names        [2][]string // source, destination
	workload             [2]bool     // the endpoint's first workload was read
	policies             [4][]string // ingress allowed, egress allowed, ingress denied, egress denied
	dnsIPs, dnsCNAMEs    []string
	dnsQTypes, dnsRRType []string
	headers              []string
	ip                   [2][]byte // source, destination address text
	timeSec              int64
	timeNanos            int32
	hasTime, hasL7       bool
	hasIsReply, isReply  bool
	reply                bool
	dropReason           uint32
	l4, l7               protowire.Number // member of Layer4.protocol, Layer7.record
	hasAny               bool
	anyURL               string
	anyValue             []byte
}

func (s *decodeState) reset() {
	for i := range 2 {
		s.labels[i], s.names[i], s.ip[i], s.workload[i] = s.labels[i][:0], s.names[i][:0], nil, false
	}
	for i := range s.policies {
		s.policies[i] = s.policies[i][:0]
	}
	s.dnsIPs, s.dnsCNAMEs, s.dnsQTypes, s.dnsRRType, s.headers = s.dnsIPs[:0], s.dnsCNAMEs[:0], s.dnsQTypes[:0], s.dnsRRType[:0], s.headers[:0]
	s.timeSec, s.timeNanos, s.hasTime, s.hasL7, s.hasIsReply, s.isReply, s.reply = 0, 0, false, false, false, false, false
	s.dropReason, s.l4, s.l7, s.hasAny, s.anyURL, s.anyValue = 0, 0, 0, false, "", nil
}

// DecodeFlow decodes the wire form of a flow.Flow into f (overwritten).
// servedByFlowbus reports whether the flow carries flowbus's extension (a
// google.protobuf.Struct in Flow.extensions), as CountAs needs. It fails
// where proto.Unmarshal or FromProto fails on the fields flowbus reads
// (truncated or malformed wire data, invalid UTF-8, a malformed IP, time
// or extension), wrapping ErrBadProto. f's slices may be shared with other
// flows the Decoder returned: they must not be modified.
func (d *Decoder) DecodeFlow(b []byte, f *schemas.Flow) (servedByFlowbus bool, err error) {
	*f = schemas.Flow{}
	s := &d.st
	s.reset()
	if err := d.flow(b, f); err != nil {
		return false, fmt.Errorf("%w: %v", ErrBadProto, err)
	}
	for i, ep := range [2]*schemas.Endpoint{&f.Src, &f.Dst} {
		ep.Labels = d.shared(s.labels[i])
		var err error
		if *[2]*netip.Addr{&f.SrcIP, &f.DstIP}[i], err = d.ip(s.ip[i]); err != nil {
			return false, fmt.Errorf("%w: %s IP: %v", ErrBadProto, [2]string{"source", "destination"}[i], err)
		}
	}
	f.SrcNames, f.DstNames = d.shared(s.names[0]), d.shared(s.names[1])
	f.IngressAllowedBy, f.EgressAllowedBy = slices.Clip(clone(s.policies[0])), slices.Clip(clone(s.policies[1]))
	f.IngressDeniedBy, f.EgressDeniedBy = slices.Clip(clone(s.policies[2])), slices.Clip(clone(s.policies[3]))
	f.L7.DNSIPs, f.L7.DNSCNAMEs = clone(s.dnsIPs), clone(s.dnsCNAMEs)
	f.L7.DNSQTypes, f.L7.DNSRRTypes = d.shared(s.dnsQTypes), d.shared(s.dnsRRType)
	f.L7.HTTPHeaders = clone(s.headers)
	if f.DropReason == 0 && s.dropReason != 0 {
		f.DropReason = flowpb.DropReason(s.dropReason)
	}
	if s.hasTime {
		t := timestamppb.Timestamp{Seconds: s.timeSec, Nanos: s.timeNanos}
		if err := t.CheckValid(); err != nil {
			return false, fmt.Errorf("%w: time: %v", ErrBadProto, err)
		}
		f.TimeNs = t.AsTime().UnixNano()
	}
	switch {
	case s.hasIsReply && s.isReply:
		f.IsReply = schemas.True
	case s.hasIsReply:
		f.IsReply = schemas.False
	case s.reply:
		f.IsReply = schemas.True
	}
	if !s.hasAny {
		return false, nil
	}
	a := &anypb.Any{TypeUrl: s.anyURL, Value: s.anyValue}
	if err := extensionsFromProto(f, a); err != nil {
		return false, err
	}
	return a.MessageIs((*structpb.Struct)(nil)), nil
}

// clone returns a copy of l, nil when empty.
func clone(l []string) []string {
	if len(l) == 0 {
		return nil
	}
	return slices.Clone(l)
}

// fields calls fn for each field of the message in b, with its varint
// value or its bytes (other wire types are skipped). A field with the wire
// type fn does not expect must be ignored by fn, as protobuf keeps it as an
// unknown field.
func fields(b []byte, fn func(num protowire.Number, typ protowire.Type, v uint64, data []byte) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		var v uint64
		var data []byte
		switch typ {
		case protowire.VarintType:
			v, n = protowire.ConsumeVarint(b)
		case protowire.BytesType:
			data, n = protowire.ConsumeBytes(b)
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		if err := fn(num, typ, v, data); err != nil {
			return err
		}
	}
	return nil
}

const (
	wireVarint = protowire.VarintType
	wireBytes  = protowire.BytesType
)

// str returns b as a string shared with earlier equal ones.
func (d *Decoder) str(b []byte) (string, error) {
	if s, ok := d.strs[string(b)]; ok {
		return s, nil
	}
	if !utf8.Valid(b) {
		return "", errUTF8
	}
	if len(d.strs) >= cacheMax {
		clear(d.strs)
	}
	s := string(b)
	d.strs[s] = s
	return s, nil
}

var errUTF8 = fmt.Errorf("string field contains invalid UTF-8")

// unique returns b as a new string (UUIDs, URLs: seldom repeated).
func unique(b []byte) (string, error) {
	if !utf8.Valid(b) {
		return "", errUTF8
	}
	return string(b), nil
}

// ip parses an address, remembering it.
func (d *Decoder) ip(b []byte) (netip.Addr, error) {
	if len(b) == 0 {
		return netip.Addr{}, nil
	}
	if a, ok := d.ips[string(b)]; ok {
		return a, nil
	}
	a, err := netip.ParseAddr(string(b))
	if err != nil {
		return netip.Addr{}, err
	}
	if len(d.ips) >= cacheMax {
		clear(d.ips)
	}
	d.ips[string(b)] = a
	return a, nil
}

// shared returns a list equal to l, shared with earlier equal lists (nil
// when empty).
func (d *Decoder) shared(l []string) []string { return d.lists.Shared(l) }

// ListCache shares equal string lists (label lists, DNS names) between
// decoded flows: Shared returns the first list it was given equal to l.
// It holds up to 65,536 lists, then starts again. The zero value is ready;
// not safe for concurrent use. The hubble-json source's decoder uses it
// too.
type ListCache struct {
	lists map[uint64][]string
}

// Shared returns a list equal to l, shared with earlier equal lists (nil
// when l is empty). The caller may reuse l.
func (c *ListCache) Shared(l []string) []string {
	if len(l) == 0 {
		return nil
	}
	const prime = 1099511628211
	h := uint64(14695981039346656037) // FNV-1a over the strings, each ended by 0xff
	for _, s := range l {
		for i := 0; i < len(s); i++ {
			h = (h ^ uint64(s[i])) * prime
		}
		h = (h ^ 0xff) * prime
	}
	if old, ok := c.lists[h]; ok && slices.Equal(old, l) {
		return old
	}
	if c.lists == nil || len(c.lists) >= cacheMax {
		c.lists = make(map[uint64][]string)
	}
	kept := slices.Clone(l)
	c.lists[h] = kept
	return kept
}

// flow decodes the fields of a Flow message.
func (d *Decoder) flow(b []byte, f *schemas.Flow) error {
	s := &d.st
	return fields(b, func(num protowire.Number, typ protowire.Type, v uint64, data []byte) (err error) {
		switch {
		case typ == wireVarint:
			switch num {
			case 2:
				f.Verdict = flowpb.Verdict(int32(v))
			case 3:
				s.dropReason = uint32(v)
			case 16:
				s.reply = v != 0
			case 22:
				f.Direction = flowpb.TrafficDirection(int32(v))
			case 23:
				f.PolicyMatchType = uint8(min(uint32(v), 255))
			case 24:
				f.ObservationPoint = flowpb.TraceObservationPoint(int32(v))
			case 25:
				f.DropReason = flowpb.DropReason(int32(v))
			}
		case typ == wireBytes:
			switch num {
			case 1:
				s.hasTime = true
				err = fields(data, func(num protowire.Number, typ protowire.Type, v uint64, _ []byte) error {
					switch {
					case typ == wireVarint && num == 1:
						s.timeSec = int64(v)
					case typ == wireVarint && num == 2:
						s.timeNanos = int32(v)
					}
					return nil
				})
			case 34:
				f.UUID, err = unique(data)
			case 11:
				f.NodeName, err = d.str(data)
			case 5:
				err = d.ipFields(data, f)
			case 6:
				err = d.layer4(data, f)
			case 8:
				err = d.endpoint(data, &f.Src, 0)
			case 9:
				err = d.endpoint(data, &f.Dst, 1)
			case 13, 14:
				var n string
				if n, err = d.str(data); err == nil {
					s.names[num-13] = append(s.names[num-13], n)
				}
			case 15:
				err = d.layer7(data, f)
			case 19:
				err = fields(data, func(num protowire.Number, typ protowire.Type, v uint64, _ []byte) error {
					switch {
					case typ == wireVarint && num == 1:
						f.EventType = int32(v)
					case typ == wireVarint && num == 2:
						f.EventSubType = int32(v)
					}
					return nil
				})
			case 20:
				err = d.service(data, &f.SrcService)
			case 21:
				err = d.service(data, &f.DstService)
			case 26:
				s.hasIsReply = true
				err = fields(data, func(num protowire.Number, typ protowire.Type, v uint64, _ []byte) error {
					if typ == wireVarint && num == 1 {
						s.isReply = v != 0
					}
					return nil
				})
			case 28:
				err = fields(data, func(num protowire.Number, typ protowire.Type, v uint64, data []byte) (err error) {
					switch {
					case typ == wireVarint && num == 1:
						f.IfIndex = uint32(v)
					case typ == wireBytes && num == 2:
						f.IfName, err = d.str(data)
					}
					return err
				})
			case 150000:
				s.hasAny = true
				err = fields(data, func(num protowire.Number, typ protowire.Type, _ uint64, data []byte) (err error) {
					switch {
					case typ == wireBytes && num == 1:
						s.anyURL, err = d.str(data)
					case typ == wireBytes && num == 2:
						s.anyValue = data
					}
					return err
				})
			case 21002, 21001, 21005, 21004:
				i := 0 // s.policies' order: ingress allowed, egress allowed, ingress denied, egress denied
				switch num {
				case 21001:
					i = 1
				case 21005:
					i = 2
				case 21004:
					i = 3
				}
				var p string
				if p, err = d.policy(data); err == nil {
					s.policies[i] = append(s.policies[i], p)
				}
			}
		}
		return err
	})
}

func (d *Decoder) ipFields(b []byte, f *schemas.Flow) error {
	return fields(b, func(num protowire.Number, typ protowire.Type, v uint64, data []byte) error {
		switch {
		case typ == wireBytes && (num == 1 || num == 2):
			if !utf8.Valid(data) {
				return errUTF8
			}
			d.st.ip[num-1] = data
		case typ == wireVarint && num == 3:
			f.IPVersion = flowpb.IPVersion(int32(v))
		}
		return nil
	})
}

func (d *Decoder) endpoint(b []byte, e *schemas.Endpoint, side int) error {
	s := &d.st
	return fields(b, func(num protowire.Number, typ protowire.Type, v uint64, data []byte) (err error) {
		switch {
		case typ == wireVarint && num == 1:
			e.ID = uint32(v)
		case typ == wireVarint && num == 2:
			e.Identity = uint32(v)
		case typ != wireBytes:
		case num == 7:
			e.ClusterName, err = d.str(data)
		case num == 3:
			e.Namespace, err = d.str(data)
		case num == 5:
			e.PodName, err = d.str(data)
		case num == 4:
			var l string
			if l, err = d.str(data); err == nil {
				s.labels[side] = append(s.labels[side], l)
			}
		case num == 6:
			first := !s.workload[side]
			s.workload[side] = true
			err = fields(data, func(num protowire.Number, typ protowire.Type, _ uint64, data []byte) (err error) {
				var v string
				if typ != wireBytes || (num != 1 && num != 2) {
					return nil
				}
				if v, err = d.str(data); err == nil && first {
					if num == 1 {
						e.Workload = v
					} else {
						e.WorkloadKind = v
					}
				}
				return err
			})
		}
		return err
	})
}

func (d *Decoder) service(b []byte, sv *schemas.Service) error {
	return fields(b, func(num protowire.Number, typ protowire.Type, _ uint64, data []byte) (err error) {
		switch {
		case typ == wireBytes && num == 1:
			sv.Name, err = d.str(data)
		case typ == wireBytes && num == 2:
			sv.Namespace, err = d.str(data)
		}
		return err
	})
}

// policy reads a flow.Policy as FromProto names it.
func (d *Decoder) policy(b []byte) (string, error) {
	var name, ns, kind string
	err := fields(b, func(num protowire.Number, typ protowire.Type, _ uint64, data []byte) (err error) {
		if typ != wireBytes {
			return nil
		}
		switch num {
		case 1:
			name, err = d.str(data)
		case 2:
			ns, err = d.str(data)
		case 5:
			kind, err = d.str(data)
		case 3:
			_, err = d.str(data)
		}
		return err
	})
	if err != nil || (kind == "" && ns == "") {
		return name, err
	}
	return PolicyName(kind, ns, name), nil
}
