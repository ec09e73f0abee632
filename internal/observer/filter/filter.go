package filter

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"

	flowpb "github.com/cilium/cilium/api/v1/flow"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/flowbus/flowbus/schemas"
	"github.com/flowbus/flowbus/schemas/hubble"
)

// Match reports whether a flow passes a compiled filter.
type Match func(f *schemas.Flow) bool

// Filters is a compiled whitelist + blacklist pair, with Hubble's semantics:
// a flow passes when it matches at least one whitelist filter (or the
// whitelist is empty) and no blacklist filter. Within one FlowFilter every
// set field must match (AND); within one field any value may match (OR).
type Filters struct {
	white, black []Match
}

// Pass reports whether f passes the whitelist and the blacklist.
func (fs *Filters) Pass(f *schemas.Flow) bool {
	if len(fs.white) > 0 && !slices.ContainsFunc(fs.white, func(m Match) bool { return m(f) }) {
		return false
	}
	return !slices.ContainsFunc(fs.black, func(m Match) bool { return m(f) })
}

// ErrUnsupportedField is wrapped by Compile when a FlowFilter sets a field
// that flowbus records cannot answer; such a filter is refused, never
// silently ignored.
var ErrUnsupportedField = errors.New("unsupported filter field")

// ErrInvalidFilter is wrapped by Compile for a malformed filter value (a bad
// IP, regexp, port, pattern or label selector).
var ErrInvalidFilter = errors.New("invalid filter")

// unsupported lists the FlowFilter fields flowbus records cannot answer, with
// the reason given to the client.
var unsupported = map[protoreflect.Name]string{
	"source_ip_xlated": "flows carry no SNAT address",
	"node_labels":      "flows carry no node labels",
	"trace_id":         "flows carry no trace context",
	"ip_trace_id":      "flows carry no IP trace ID",
	"encrypted":        "flows carry no encryption status",
	"experimental":     "CEL expressions are not supported",
}

// CompileFilters compiles a whitelist and a blacklist (see Compile).
func CompileFilters(whitelist, blacklist []*flowpb.FlowFilter) (*Filters, error) {
	fs := &Filters{}
	for _, ff := range whitelist {
		m, err := Compile(ff)
		if err != nil {
			return nil, fmt.Errorf("whitelist: %w", err)
		}
		fs.white = append(fs.white, m)
	}
	for _, ff := range blacklist {
		m, err := Compile(ff)
		if err != nil {
			return nil, fmt.Errorf("blacklist: %w", err)
		}
		fs.black = append(fs.black, m)
	}
	return fs, nil
}

// Compile turns one FlowFilter into a Match that is true when every set
// field matches, mirroring Hubble's pkg/hubble/filters field by field. An
// empty FlowFilter matches every flow. A set field flowbus cannot answer, or
// an unknown field (from a newer client), yields an error wrapping
// ErrUnsupportedField that names it.
func Compile(ff *flowpb.FlowFilter) (Match, error) {
	if ff == nil {
		return func(*schemas.Flow) bool { return true }, nil
	}
	var err error
	ff.ProtoReflect().Range(func(fd protoreflect.FieldDescriptor, _ protoreflect.Value) bool {
		if why, ok := unsupported[fd.Name()]; ok {
			err = fmt.Errorf("%w: %s (%s)", ErrUnsupportedField, fd.Name(), why)
			return false
		}
		return true
	})
	if err != nil {
		return nil, err
	}
	if u := ff.ProtoReflect().GetUnknown(); len(u) > 0 {
		return nil, fmt.Errorf("%w: unknown FlowFilter field in %d bytes of unrecognised data", ErrUnsupportedField, len(u))
	}

	var ms []Match
	add := func(m Match, err error) error {
		if err != nil {
			return err
		}
		ms = append(ms, m)
		return nil
	}
	steps := []func() error{
		func() error {
			if ids := ff.GetUuid(); len(ids) > 0 {
				ms = append(ms, func(f *schemas.Flow) bool { return slices.Contains(ids, f.UUID) })
			}
			return nil
		},
		func() error {
			if ts := ff.GetEventType(); len(ts) > 0 {
				ms = append(ms, eventTypeMatch(ts))
			}
			return nil
		},
		func() error {
			if vs := ff.GetVerdict(); len(vs) > 0 {
				ms = append(ms, func(f *schemas.Flow) bool { return slices.Contains(vs, f.Verdict) })
			}
			return nil
		},
		func() error {
			if rs := ff.GetDropReasonDesc(); len(rs) > 0 {
				ms = append(ms, func(f *schemas.Flow) bool {
					return f.Verdict == flowpb.Verdict_DROPPED && slices.Contains(rs, f.DropReason)
				})
			}
			return nil
		},
		func() error {
			if rs := ff.GetReply(); len(rs) > 0 {
				ms = append(ms, func(f *schemas.Flow) bool {
					// Hubble reads an unknown reply flag of a dropped flow as false.
					if f.IsReply == schemas.Unknown && f.Verdict != flowpb.Verdict_DROPPED {
						return false
					}
					return slices.Contains(rs, f.IsReply == schemas.True)
				})
			}
			return nil
		},
		func() error {
			if ids := ff.GetSourceIdentity(); len(ids) > 0 {
				ms = append(ms, func(f *schemas.Flow) bool { return !emptyEndpoint(&f.Src) && slices.Contains(ids, f.Src.Identity) })
			}
			if ids := ff.GetDestinationIdentity(); len(ids) > 0 {
				ms = append(ms, func(f *schemas.Flow) bool { return !emptyEndpoint(&f.Dst) && slices.Contains(ids, f.Dst.Identity) })
			}
			return nil
		},
		func() error {
			if ps := ff.GetProtocol(); len(ps) > 0 {
				return add(protocolMatch(ps))
			}
			return nil
		},
		func() error {
			if ips := ff.GetSourceIp(); len(ips) > 0 {
				if err := add(ipMatch(ips, func(f *schemas.Flow) netip.Addr { return f.SrcIP })); err != nil {
					return fmt.Errorf("source_ip: %w", err)
				}
			}
			if ips := ff.GetDestinationIp(); len(ips) > 0 {
				if err := add(ipMatch(ips, func(f *schemas.Flow) netip.Addr { return f.DstIP })); err != nil {
					return fmt.Errorf("destination_ip: %w", err)
				}
			}
			return nil
		},
		func() error {
			if vs := ff.GetIpVersion(); len(vs) > 0 {
				ms = append(ms, func(f *schemas.Flow) bool { return slices.Contains(vs, f.IPVersion) })
			}
			return nil
		},
		func() error {
			if ns := ff.GetSourcePod(); len(ns) > 0 {
				if err := add(namespacedMatch(ns, func(f *schemas.Flow) (string, string) { return f.Src.Namespace, f.Src.PodName })); err != nil {
					return fmt.Errorf("source_pod: %w", err)
				}
			}
			if ns := ff.GetDestinationPod(); len(ns) > 0 {
				if err := add(namespacedMatch(ns, func(f *schemas.Flow) (string, string) { return f.Dst.Namespace, f.Dst.PodName })); err != nil {
					return fmt.Errorf("destination_pod: %w", err)
				}
			}
			if ns := ff.GetSourceService(); len(ns) > 0 {
				if err := add(namespacedMatch(ns, func(f *schemas.Flow) (string, string) { return f.SrcService.Namespace, f.SrcService.Name })); err != nil {
					return fmt.Errorf("source_service: %w", err)
				}
			}
			if ns := ff.GetDestinationService(); len(ns) > 0 {
				if err := add(namespacedMatch(ns, func(f *schemas.Flow) (string, string) { return f.DstService.Namespace, f.DstService.Name })); err != nil {
					return fmt.Errorf("destination_service: %w", err)
				}
			}
			return nil
		},
		func() error {
			if ws := ff.GetSourceWorkload(); len(ws) > 0 {
				ms = append(ms, workloadMatch(ws, func(f *schemas.Flow) *schemas.Endpoint { return &f.Src }))
			}
			if ws := ff.GetDestinationWorkload(); len(ws) > 0 {
				ms = append(ms, workloadMatch(ws, func(f *schemas.Flow) *schemas.Endpoint { return &f.Dst }))
			}
			return nil
		},
		func() error {
			if ps := ff.GetSourceFqdn(); len(ps) > 0 {
				if err := add(fqdnMatch(ps, func(f *schemas.Flow) []string { return f.SrcNames })); err != nil {
					return fmt.Errorf("source_fqdn: %w", err)
				}
			}
			if ps := ff.GetDestinationFqdn(); len(ps) > 0 {
				if err := add(fqdnMatch(ps, func(f *schemas.Flow) []string { return f.DstNames })); err != nil {
					return fmt.Errorf("destination_fqdn: %w", err)
				}
			}
			if qs := ff.GetDnsQuery(); len(qs) > 0 {
				res, err := compileRegexps(qs)
				if err != nil {
					return fmt.Errorf("dns_query: %w", err)
				}
				ms = append(ms, func(f *schemas.Flow) bool {
					return f.L7.Protocol == schemas.L7DNS && slices.ContainsFunc(res, func(re *regexp.Regexp) bool { return re.MatchString(f.L7.DNSQuery) })
				})
			}
			return nil
		},
		func() error {
			if ss := ff.GetSourceLabel(); len(ss) > 0 {
				if err := add(labelMatch(ss, func(f *schemas.Flow) []string { return f.Src.Labels })); err != nil {
					return fmt.Errorf("source_label: %w", err)
				}
			}
			if ss := ff.GetDestinationLabel(); len(ss) > 0 {
				if err := add(labelMatch(ss, func(f *schemas.Flow) []string { return f.Dst.Labels })); err != nil {
					return fmt.Errorf("destination_label: %w", err)
				}
			}
			return nil
		},
		func() error {
			if ps := ff.GetSourcePort(); len(ps) > 0 {
				if err := add(portMatch(ps, func(f *schemas.Flow) uint16 { return f.SrcPort })); err != nil {
					return fmt.Errorf("source_port: %w", err)
				}
			}
			if ps := ff.GetDestinationPort(); len(ps) > 0 {
				if err := add(portMatch(ps, func(f *schemas.Flow) uint16 { return f.DstPort })); err != nil {
					return fmt.Errorf("destination_port: %w", err)
				}
			}
			return nil
		},
		func() error { return httpMatches(ff, &ms) },
		func() error {
			if fl := ff.GetTcpFlags(); len(fl) > 0 {
				ms = append(ms, tcpFlagsMatch(fl))
			}
			return nil
		},
		func() error {
			if ns := ff.GetNodeName(); len(ns) > 0 {
				re, err := compileNodeNamePattern(ns)
				if err != nil {
					return fmt.Errorf("node_name: %w", err)
				}
				ms = append(ms, func(f *schemas.Flow) bool {
					n := f.NodeName
					if n == "" {
						return false
					}
					if !strings.Contains(n, "/") {
						n = hubble.DefaultClusterName + "/" + n
					}
					return re.MatchString(n)
				})
			}
			return nil
		},
		func() error {
			if ns := ff.GetSourceClusterName(); len(ns) > 0 {
				if slices.Contains(ns, "") {
					return errors.New("source_cluster_name: name must not be empty")
				}
				ms = append(ms, func(f *schemas.Flow) bool { return slices.Contains(ns, f.Src.ClusterName) })
			}
			if ns := ff.GetDestinationClusterName(); len(ns) > 0 {
				if slices.Contains(ns, "") {
					return errors.New("destination_cluster_name: name must not be empty")
				}
				ms = append(ms, func(f *schemas.Flow) bool { return slices.Contains(ns, f.Dst.ClusterName) })
			}
			return nil
		},
		func() error {
			if ds := ff.GetTrafficDirection(); len(ds) > 0 {
				ms = append(ms, func(f *schemas.Flow) bool { return slices.Contains(ds, f.Direction) })
			}
			return nil
		},
		func() error {
			if is := ff.GetInterface(); len(is) > 0 {
				ms = append(ms, func(f *schemas.Flow) bool {
					if f.IfIndex == 0 && f.IfName == "" {
						return false
					}
					return slices.ContainsFunc(is, func(i *flowpb.NetworkInterface) bool {
						return (i.GetIndex() == 0 || i.GetIndex() == f.IfIndex) && (i.GetName() == "" || i.GetName() == f.IfName)
					})
				})
			}
			return nil
		},
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalidFilter, err)
		}
	}
	return func(f *schemas.Flow) bool {
		for _, m := range ms {
			if !m(f) {
				return false
			}
		}
		return true
	}, nil
}

// emptyEndpoint reports whether a flow has no endpoint on that side: the
// flow.Flow it is sent as (schemas.ToProto) has none, and Hubble's identity
// filter matches no identity, not even 0.
func emptyEndpoint(e *schemas.Endpoint) bool {
	return e.ID == 0 && e.Identity == 0 && e.ClusterName == "" && e.Namespace == "" && e.PodName == "" &&
		e.Workload == "" && e.WorkloadKind == "" && len(e.Labels) == 0
}

// eventTypeMatch matches the event type and sub-type; a flow without
// either has no CiliumEventType as a flow.Flow, and matches no event type
// filter, as in Hubble.
func eventTypeMatch(ts []*flowpb.EventTypeFilter) Match {
	return func(f *schemas.Flow) bool {
		if f.EventType == 0 && f.EventSubType == 0 {
			return false
		}
		return slices.ContainsFunc(ts, func(t *flowpb.EventTypeFilter) bool {
			if t.GetType() != 0 && t.GetType() != f.EventType {
				return false
			}
			return !t.GetMatchSubType() || t.GetSubType() == f.EventSubType
		})
	}
}

func protocolMatch(protocols []string) (Match, error) {
	type check func(f *schemas.Flow) bool
	var checks []check
	l4 := func(nums ...uint8) check {
		return func(f *schemas.Flow) bool { return slices.Contains(nums, f.L4Protocol) }
	}
	l7 := func(p schemas.L7Protocol) check {
		return func(f *schemas.Flow) bool { return f.L7.Protocol == p }
	}
	for _, p := range protocols {
		switch strings.ToLower(p) {
		case "icmp":
			checks = append(checks, l4(1, 58))
		case "icmpv4":
			checks = append(checks, l4(1))
		case "icmpv6":
			checks = append(checks, l4(58))
		case "tcp":
			checks = append(checks, l4(6))
		case "udp":
			checks = append(checks, l4(17))
		case "sctp":
			checks = append(checks, l4(132))
		case "vrrp":
			checks = append(checks, l4(112))
		case "igmp":
			checks = append(checks, l4(2))
		case "http":
			checks = append(checks, l7(schemas.L7HTTP))
		case "dns":
			checks = append(checks, l7(schemas.L7DNS))
		case "kafka":
			checks = append(checks, l7(schemas.L7Kafka))
		default:
			return nil, fmt.Errorf("protocol: unknown protocol %q", p)
		}
	}
	return func(f *schemas.Flow) bool {
		return slices.ContainsFunc(checks, func(c check) bool { return c(f) })
	}, nil
}

func ipMatch(ips []string, get func(*schemas.Flow) netip.Addr) (Match, error) {
	var addrs []netip.Addr
	var prefixes []netip.Prefix
	for _, s := range ips {
		if strings.Contains(s, "/") {
			p, err := netip.ParsePrefix(s)
			if err != nil {
				return nil, fmt.Errorf("invalid IP prefix %q: %w", s, err)
			}
			prefixes = append(prefixes, p)
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("invalid IP address %q: %w", s, err)
		}
		// Hubble compares an address as text with the flow's, which is in
		// canonical form: "fd00:0::1" matches no flow, as there.
		if a.String() == s {
			addrs = append(addrs, a)
		}
	}
	return func(f *schemas.Flow) bool {
		a := get(f)
		if !a.IsValid() {
			return false
		}
		return slices.Contains(addrs, a) || slices.ContainsFunc(prefixes, func(p netip.Prefix) bool { return p.Contains(a) })
	}, nil
}

// parseNamespaceName mirrors Hubble's k8s.ParseNamespaceName: "ns/prefix",
// "ns/" (every name in ns), "prefix" (in namespace "default"), "" (any).
func parseNamespaceName(s string) (ns, prefix string) {
	parts := strings.Split(s, "/")
	switch {
	case len(parts) > 1:
		return parts[0], parts[1]
	case parts[0] == "":
		return "", ""
	default:
		return "default", parts[0]
	}
}

func namespacedMatch(names []string, get func(*schemas.Flow) (ns, name string)) (Match, error) {
	type nameFilter struct{ ns, prefix string }
	fs := make([]nameFilter, 0, len(names))
	for _, n := range names {
		if n == "" {
			return nil, errors.New("name must not be empty")
		}
		ns, prefix := parseNamespaceName(n)
		fs = append(fs, nameFilter{ns, prefix})
	}
	return func(f *schemas.Flow) bool {
		ns, name := get(f)
		if ns == "" && name == "" {
			return false
		}
		return slices.ContainsFunc(fs, func(nf nameFilter) bool {
			return (nf.prefix == "" || strings.HasPrefix(name, nf.prefix)) && (nf.ns == "" || nf.ns == ns)
		})
	}, nil
}

func workloadMatch(ws []*flowpb.Workload, get func(*schemas.Flow) *schemas.Endpoint) Match {
	return func(f *schemas.Flow) bool {
		ep := get(f)
		if ep.Workload == "" && ep.WorkloadKind == "" {
			return false
		}
		return slices.ContainsFunc(ws, func(w *flowpb.Workload) bool {
			return (w.GetName() == "" || w.GetName() == ep.Workload) && (w.GetKind() == "" || w.GetKind() == ep.WorkloadKind)
		})
	}
}

func fqdnMatch(patterns []string, get func(*schemas.Flow) []string) (Match, error) {
	re, err := compileFQDNPattern(patterns)
	if err != nil {
		return nil, err
	}
	return func(f *schemas.Flow) bool {
		return slices.ContainsFunc(get(f), re.MatchString)
	}, nil
}

func labelMatch(selectors []string, get func(*schemas.Flow) []string) (Match, error) {
	sels := make([]selector, 0, len(selectors))
	for _, s := range selectors {
		sel, err := parseSelector(s)
		if err != nil {
			return nil, err
		}
		sels = append(sels, sel)
	}
	return func(f *schemas.Flow) bool {
		ls := flowLabels(get(f))
		return slices.ContainsFunc(sels, func(s selector) bool { return s.matches(ls) })
	}, nil
}

func portMatch(ports []string, get func(*schemas.Flow) uint16) (Match, error) {
	ps := make([]uint16, 0, len(ports))
	for _, p := range ports {
		n, err := strconv.ParseUint(p, 10, 16)
		if err != nil {
			return nil, fmt.Errorf("invalid port %q: %w", p, err)
		}
		ps = append(ps, uint16(n))
	}
	return func(f *schemas.Flow) bool {
		switch f.L4Protocol {
		case 6, 17, 132: // ports exist only for TCP, UDP and SCTP, as in Hubble
			return slices.Contains(ps, get(f))
		}
		return false
	}, nil
}

func tcpFlagsMatch(want []*flowpb.TCPFlags) Match {
	return func(f *schemas.Flow) bool {
		if f.L4Protocol != 6 || f.TCPFlags == 0 {
			return false
		}
		have := f.TCPFlags
		return slices.ContainsFunc(want, func(w *flowpb.TCPFlags) bool {
			need := flagsOf(w)
			return have&need == need
		})
	}
}

func flagsOf(w *flowpb.TCPFlags) schemas.TCPFlags {
	var s schemas.TCPFlags
	for _, b := range []struct {
		on   bool
		flag schemas.TCPFlags
	}{
		{w.GetFIN(), schemas.FlagFIN}, {w.GetSYN(), schemas.FlagSYN}, {w.GetRST(), schemas.FlagRST},
		{w.GetPSH(), schemas.FlagPSH}, {w.GetACK(), schemas.FlagACK}, {w.GetURG(), schemas.FlagURG},
		{w.GetECE(), schemas.FlagECE}, {w.GetCWR(), schemas.FlagCWR}, {w.GetNS(), schemas.FlagNS},
	} {
		if b.on {
			s |= b.flag
		}
	}
	return s
}

var (
	httpStatusFull   = regexp.MustCompile(`^[1-5][0-9]{2}$`)
	httpStatusPrefix = regexp.MustCompile(`^[1-5][0-9]?\+$`)
)

func httpMatches(ff *flowpb.FlowFilter, ms *[]Match) error {
	set := len(ff.GetHttpStatusCode()) > 0 || len(ff.GetHttpMethod()) > 0 || len(ff.GetHttpPath()) > 0 ||
		len(ff.GetHttpUrl()) > 0 || len(ff.GetHttpHeader()) > 0
	if !set {
		return nil
	}
	if ts := ff.GetEventType(); len(ts) > 0 && !slices.ContainsFunc(ts, func(t *flowpb.EventTypeFilter) bool { return t.GetType() == hubble.MsgTypeAccessLog }) {
		return errors.New("filtering by http fields requires the event type filter to match 'l7' events")
	}
	isHTTP := func(f *schemas.Flow) bool { return f.L7.Protocol == schemas.L7HTTP }
	if codes := ff.GetHttpStatusCode(); len(codes) > 0 {
		var full, prefix []string
		for _, c := range codes {
			switch {
			case httpStatusFull.MatchString(c):
				full = append(full, c)
			case httpStatusPrefix.MatchString(c):
				prefix = append(prefix, strings.TrimSuffix(c, "+"))
			default:
				return fmt.Errorf("http_status_code: invalid status code prefix %q", c)
			}
		}
		*ms = append(*ms, func(f *schemas.Flow) bool {
			if !isHTTP(f) || f.L7.HTTPStatus == 0 {
				return false
			}
			code := fmt.Sprintf("%03d", f.L7.HTTPStatus)
			return slices.Contains(full, code) || slices.ContainsFunc(prefix, func(p string) bool { return strings.HasPrefix(code, p) })
		})
	}
	if methods := ff.GetHttpMethod(); len(methods) > 0 {
		*ms = append(*ms, func(f *schemas.Flow) bool {
			if !isHTTP(f) || f.L7.HTTPMethod == "" {
				return false
			}
			return slices.ContainsFunc(methods, func(m string) bool { return strings.EqualFold(m, f.L7.HTTPMethod) })
		})
	}
	if paths := ff.GetHttpPath(); len(paths) > 0 {
		res, err := compileRegexps(paths)
		if err != nil {
			return fmt.Errorf("http_path: %w", err)
		}
		*ms = append(*ms, func(f *schemas.Flow) bool {
			if !isHTTP(f) || f.L7.HTTPURL == "" {
				return false
			}
			u, err := url.ParseRequestURI(f.L7.HTTPURL)
			if err != nil {
				return false
			}
			return slices.ContainsFunc(res, func(re *regexp.Regexp) bool { return re.MatchString(u.Path) })
		})
	}
	if urls := ff.GetHttpUrl(); len(urls) > 0 {
		res, err := compileRegexps(urls)
		if err != nil {
			return fmt.Errorf("http_url: %w", err)
		}
		*ms = append(*ms, func(f *schemas.Flow) bool {
			if !isHTTP(f) || f.L7.HTTPURL == "" {
				return false
			}
			return slices.ContainsFunc(res, func(re *regexp.Regexp) bool { return re.MatchString(f.L7.HTTPURL) })
		})
	}
	if hs := ff.GetHttpHeader(); len(hs) > 0 {
		*ms = append(*ms, func(f *schemas.Flow) bool {
			if !isHTTP(f) {
				return false
			}
			for _, h := range f.L7.HTTPHeaders {
				k, v, _ := strings.Cut(h, ": ") // as schemas.ToProto splits it
				if slices.ContainsFunc(hs, func(w *flowpb.HTTPHeader) bool { return w.GetKey() == k && w.GetValue() == v }) {
					return true
				}
			}
			return false
		})
	}
	return nil
}

func compileRegexps(ss []string) ([]*regexp.Regexp, error) {
	res := make([]*regexp.Regexp, 0, len(ss))
	for _, s := range ss {
		re, err := regexp.Compile(s)
		if err != nil {
			return nil, fmt.Errorf("%q: %w", s, err)
		}
		res = append(res, re)
	}
	return res, nil
}
