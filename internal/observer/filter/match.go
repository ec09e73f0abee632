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

	"github.com/flowbus/flowbus/schemas"
	"github.com/flowbus/flowbus/schemas/hubble"
)

// The matchers of the FlowFilter fields, each answering as the filter of
// cilium's pkg/hubble/filters for that field does on the flow.Flow
// hubble.ToProto makes of the flow.

// emptyEndpoint reports whether a flow has no endpoint on that side: the
// flow.Flow it is sent as (hubble.ToProto) has none, and Hubble's identity
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
				k, v, _ := strings.Cut(h, ": ") // as hubble.ToProto splits it
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
