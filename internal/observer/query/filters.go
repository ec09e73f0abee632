package query

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	flowpb "github.com/cilium/cilium/api/v1/flow"
	"google.golang.org/protobuf/proto"

	"github.com/flowbus/flowbus/schemas/hubble"
)

// The filter flags of `hubble observe` build FlowFilters as the hubble CLI
// does (cilium v1.20 hubble/cmd/observe/flows_filter.go): each
// filter flag adds to a "left" and a "right" FlowFilter (either-side flags
// like --pod put the source side left and the destination side right), the
// result is one filter (or two ORed ones); --not sends the next filter flag
// to the blacklist; --namespace style flags fold into pod/service names.

// filterTracker accumulates one list (whitelist or blacklist).
type filterTracker struct {
	left, right      *flowpb.FlowFilter
	ns, srcNs, dstNs namespaceModifier
	changed          []string
}

func (f *filterTracker) add(name string) bool {
	if slices.Contains(f.changed, name) {
		return false
	}
	f.changed = append(f.changed, name)
	return true
}

func (f *filterTracker) apply(update func(*flowpb.FlowFilter)) {
	f.applyLeft(update)
	f.applyRight(update)
}

func (f *filterTracker) applyLeft(update func(*flowpb.FlowFilter)) {
	if f.left == nil {
		f.left = &flowpb.FlowFilter{}
	}
	update(f.left)
}

func (f *filterTracker) applyRight(update func(*flowpb.FlowFilter)) {
	if f.right == nil {
		f.right = &flowpb.FlowFilter{}
	}
	update(f.right)
}

type namespaceModifier []string

func (nm namespaceModifier) applySrc(ff *flowpb.FlowFilter) {
	if len(ff.GetSourcePod()) == 0 && len(ff.GetSourceService()) == 0 {
		ff.SourcePod = []string{""}
	}
	ff.SourcePod = addNamespaces(ff.GetSourcePod(), nm)
	ff.SourceService = addNamespaces(ff.GetSourceService(), nm)
}

func (nm namespaceModifier) applyDest(ff *flowpb.FlowFilter) {
	if len(ff.GetDestinationPod()) == 0 && len(ff.GetDestinationService()) == 0 {
		ff.DestinationPod = []string{""}
	}
	ff.DestinationPod = addNamespaces(ff.GetDestinationPod(), nm)
	ff.DestinationService = addNamespaces(ff.GetDestinationService(), nm)
}

func (nm namespaceModifier) conflicts(names []string) error {
	for _, ns := range nm {
		for _, name := range names {
			if nn := namespaceOf(name); nn != "" && nn != ns {
				return fmt.Errorf("namespace conflict: %q does not contain %q", ns, name)
			}
		}
	}
	return nil
}

func namespaceOf(name string) string {
	if parts := strings.Split(name, "/"); len(parts) > 1 {
		return parts[0]
	}
	return ""
}

func addNamespaces(filter, ns []string) []string {
	if len(ns) == 0 || len(filter) == 0 {
		return filter
	}
	res := []string{}
	for _, f := range filter {
		if strings.Contains(f, "/") {
			res = append(res, f)
			continue
		}
		for _, n := range ns {
			res = append(res, n+"/"+f)
		}
	}
	return res
}

func (f *filterTracker) flowFilters() []*flowpb.FlowFilter {
	if f.left == nil && f.right == nil && len(f.ns) == 0 && len(f.dstNs) == 0 && len(f.srcNs) == 0 {
		return nil
	}
	if f.left == nil {
		f.left = &flowpb.FlowFilter{}
	}
	if f.right == nil {
		f.right = &flowpb.FlowFilter{}
	}
	if len(f.dstNs) > 0 {
		f.dstNs.applyDest(f.left)
		f.dstNs.applyDest(f.right)
	}
	if len(f.srcNs) > 0 {
		f.srcNs.applySrc(f.left)
		f.srcNs.applySrc(f.right)
	}
	if len(f.ns) > 0 {
		f.ns.applySrc(f.left)
		f.ns.applyDest(f.right)
	}
	if proto.Equal(f.left, f.right) {
		return []*flowpb.FlowFilter{f.left}
	}
	return []*flowpb.FlowFilter{f.left, f.right}
}

func (f *filterTracker) checkNamespaceConflicts(ff *flowpb.FlowFilter) error {
	if ff == nil {
		return nil
	}
	incons := func(pods, svcs []string) error {
		for _, p := range pods {
			pns := namespaceOf(p)
			if pns == "" {
				continue
			}
			for _, s := range svcs {
				if namespaceOf(s) != pns {
					return fmt.Errorf("namespace of service %q conflict with pod %q", s, pns)
				}
			}
		}
		return nil
	}
	return errors.Join(f.ns.conflicts(ff.GetSourcePod()), f.ns.conflicts(ff.GetSourceService()),
		f.ns.conflicts(ff.GetDestinationPod()), f.ns.conflicts(ff.GetDestinationService()),
		f.srcNs.conflicts(ff.GetSourcePod()), f.srcNs.conflicts(ff.GetSourceService()),
		f.dstNs.conflicts(ff.GetDestinationPod()), f.dstNs.conflicts(ff.GetDestinationService()),
		incons(ff.GetSourcePod(), ff.GetSourceService()), incons(ff.GetDestinationPod(), ff.GetDestinationService()))
}

// Filters is the state behind every filter flag of one command line: the
// whitelist and the blacklist they build. The zero value is ready to use.
type Filters struct {
	whitelist, blacklist *filterTracker
	blacklisting         bool
}

var filterConflicts = [][]string{
	{"from-fqdn", "from-ip", "ip", "fqdn", "from-namespace", "namespace", "from-all-namespaces", "all-namespaces"},
	{"from-fqdn", "from-ip", "ip", "fqdn", "from-pod", "pod"},
	{"to-fqdn", "to-ip", "ip", "fqdn", "to-namespace", "namespace", "to-all-namespaces", "all-namespaces"},
	{"to-fqdn", "to-ip", "ip", "fqdn", "to-pod", "pod"},
	{"to-pod", "namespace", "all-namespaces"},
	{"from-pod", "namespace", "all-namespaces"},
	{"to-service", "namespace", "all-namespaces"},
	{"from-service", "namespace", "all-namespaces"},
	{"snat-ip"}, {"label", "from-label"}, {"label", "to-label"},
	{"service", "from-service"}, {"service", "to-service"},
	{"verdict"}, {"drop-reason-desc"}, {"type"}, {"http-status"}, {"http-method"}, {"http-path"}, {"http-url"}, {"http-header"},
	{"protocol"}, {"port", "to-port"}, {"port", "from-port"},
	{"identity", "to-identity"}, {"identity", "from-identity"},
	{"workload", "to-workload"}, {"workload", "from-workload"},
	{"node-label"}, {"tcp-flags"}, {"uuid"}, {"traffic-direction"}, {"cel-expression"},
	{"encrypted", "unencrypted"}, {"reply", "not-reply"},
}

func checkConflict(t *filterTracker) error {
	for _, group := range filterConflicts {
		for _, flag := range group {
			if !slices.Contains(t.changed, flag) {
				continue
			}
			for _, other := range group {
				if flag != other && slices.Contains(t.changed, other) {
					return fmt.Errorf("filters --%s and --%s cannot be combined", flag, other)
				}
			}
		}
	}
	return nil
}

// Set applies one occurrence of the filter flag name (without dashes).
func (of *Filters) Set(name, val string) error {
	if name == "not" {
		if of.blacklisting {
			return errors.New("consecutive --not statements")
		}
		of.blacklisting = true
		return nil
	}
	if of.blacklisting {
		of.blacklisting = false
		if of.blacklist == nil {
			of.blacklist = &filterTracker{}
		}
		return of.set(of.blacklist, name, val)
	}
	if of.whitelist == nil {
		of.whitelist = &filterTracker{}
	}
	return of.set(of.whitelist, name, val)
}

func parseIdentity(s string) (uint32, error) {
	if id, ok := hubble.ReservedIdentity(s); ok {
		return id, nil
	}
	n, err := strconv.ParseUint(s, 0, 32)
	if err != nil {
		return 0, fmt.Errorf("invalid security identity %q, expected a reserved identity name (host, world, ...) or a numeric value", s)
	}
	return uint32(n), nil
}

func parseWorkload(s string) *flowpb.Workload {
	kind, name, ok := strings.Cut(s, "/")
	if !ok {
		return &flowpb.Workload{Name: s}
	}
	return &flowpb.Workload{Kind: kind, Name: name}
}

func parseTCPFlags(val string) (*flowpb.TCPFlags, error) {
	flags := &flowpb.TCPFlags{}
	for f := range strings.SplitSeq(val, ",") {
		switch strings.ToUpper(f) {
		case "SYN":
			flags.SYN = true
		case "FIN":
			flags.FIN = true
		case "RST":
			flags.RST = true
		case "PSH":
			flags.PSH = true
		case "ACK":
			flags.ACK = true
		case "URG":
			flags.URG = true
		case "ECE":
			flags.ECE = true
		case "CWR":
			flags.CWR = true
		case "NS":
			flags.NS = true
		default:
			return nil, fmt.Errorf("unknown tcp flag: %s", f)
		}
	}
	return flags, nil
}

func (of *Filters) set(f *filterTracker, name, val string) error {
	wipe := f.add(name)
	if err := checkConflict(f); err != nil {
		return err
	}
	both := func(l, r func(*flowpb.FlowFilter)) { f.applyLeft(l); f.applyRight(r) }
	switch name {
	case "uuid":
		f.apply(func(f *flowpb.FlowFilter) { f.Uuid = append(f.Uuid, val) })
	case "fqdn":
		both(func(f *flowpb.FlowFilter) { f.SourceFqdn = append(f.SourceFqdn, val) }, func(f *flowpb.FlowFilter) { f.DestinationFqdn = append(f.DestinationFqdn, val) })
	case "from-fqdn":
		f.apply(func(f *flowpb.FlowFilter) { f.SourceFqdn = append(f.SourceFqdn, val) })
	case "to-fqdn":
		f.apply(func(f *flowpb.FlowFilter) { f.DestinationFqdn = append(f.DestinationFqdn, val) })
	case "pod":
		both(func(f *flowpb.FlowFilter) { f.SourcePod = append(f.SourcePod, val) }, func(f *flowpb.FlowFilter) { f.DestinationPod = append(f.DestinationPod, val) })
	case "from-pod":
		f.apply(func(f *flowpb.FlowFilter) { f.SourcePod = append(f.SourcePod, val) })
	case "to-pod":
		f.apply(func(f *flowpb.FlowFilter) { f.DestinationPod = append(f.DestinationPod, val) })
	case "ip":
		both(func(f *flowpb.FlowFilter) { f.SourceIp = append(f.SourceIp, val) }, func(f *flowpb.FlowFilter) { f.DestinationIp = append(f.DestinationIp, val) })
	case "from-ip":
		f.apply(func(f *flowpb.FlowFilter) { f.SourceIp = append(f.SourceIp, val) })
	case "to-ip":
		f.apply(func(f *flowpb.FlowFilter) { f.DestinationIp = append(f.DestinationIp, val) })
	case "snat-ip":
		f.apply(func(f *flowpb.FlowFilter) { f.SourceIpXlated = append(f.SourceIpXlated, val) })
	case "ipv4":
		f.apply(func(f *flowpb.FlowFilter) { f.IpVersion = append(f.IpVersion, flowpb.IPVersion_IPv4) })
	case "ipv6":
		f.apply(func(f *flowpb.FlowFilter) { f.IpVersion = append(f.IpVersion, flowpb.IPVersion_IPv6) })
	case "ip-version":
		v := flowpb.IPVersion_IP_NOT_USED
		switch strings.ToLower(val) {
		case "4", "v4", "ipv4", "ip4":
			v = flowpb.IPVersion_IPv4
		case "6", "v6", "ipv6", "ip6":
			v = flowpb.IPVersion_IPv6
		}
		f.apply(func(f *flowpb.FlowFilter) { f.IpVersion = append(f.IpVersion, v) })
	case "label":
		both(func(f *flowpb.FlowFilter) { f.SourceLabel = append(f.SourceLabel, val) }, func(f *flowpb.FlowFilter) { f.DestinationLabel = append(f.DestinationLabel, val) })
	case "from-label":
		f.apply(func(f *flowpb.FlowFilter) { f.SourceLabel = append(f.SourceLabel, val) })
	case "to-label":
		f.apply(func(f *flowpb.FlowFilter) { f.DestinationLabel = append(f.DestinationLabel, val) })
	case "namespace":
		f.ns = append(f.ns, val)
	case "from-namespace":
		f.srcNs = append(f.srcNs, val)
	case "to-namespace":
		f.dstNs = append(f.dstNs, val)
	case "all-namespaces":
		f.ns = append(f.ns, "")
	case "from-all-namespaces":
		f.srcNs = append(f.srcNs, "")
	case "to-all-namespaces":
		f.dstNs = append(f.dstNs, "")
	case "service":
		both(func(f *flowpb.FlowFilter) { f.SourceService = append(f.SourceService, val) }, func(f *flowpb.FlowFilter) { f.DestinationService = append(f.DestinationService, val) })
	case "from-service":
		f.apply(func(f *flowpb.FlowFilter) { f.SourceService = append(f.SourceService, val) })
	case "to-service":
		f.apply(func(f *flowpb.FlowFilter) { f.DestinationService = append(f.DestinationService, val) })
	case "port":
		both(func(f *flowpb.FlowFilter) { f.SourcePort = append(f.SourcePort, val) }, func(f *flowpb.FlowFilter) { f.DestinationPort = append(f.DestinationPort, val) })
	case "from-port":
		f.apply(func(f *flowpb.FlowFilter) { f.SourcePort = append(f.SourcePort, val) })
	case "to-port":
		f.apply(func(f *flowpb.FlowFilter) { f.DestinationPort = append(f.DestinationPort, val) })
	case "trace-id":
		f.apply(func(f *flowpb.FlowFilter) { f.TraceId = append(f.TraceId, val) })
	case "ip-trace-id":
		id, err := strconv.ParseUint(val, 10, 64)
		if err != nil || id == 0 {
			return fmt.Errorf("invalid --ip-trace-id value %q; must be a number greater than 0", val)
		}
		f.apply(func(f *flowpb.FlowFilter) { f.IpTraceId = append(f.IpTraceId, id) })
	case "verdict":
		if wipe {
			f.apply(func(f *flowpb.FlowFilter) { f.Verdict = nil })
		}
		v, ok := flowpb.Verdict_value[val]
		if !ok {
			return fmt.Errorf("invalid --verdict value: %v", val)
		}
		f.apply(func(f *flowpb.FlowFilter) { f.Verdict = append(f.Verdict, flowpb.Verdict(v)) })
	case "drop-reason-desc":
		v, ok := flowpb.DropReason_value[val]
		if val == "" || !ok {
			return fmt.Errorf("invalid --drop-reason-desc value: %q", val)
		}
		f.apply(func(f *flowpb.FlowFilter) { f.DropReasonDesc = append(f.DropReasonDesc, flowpb.DropReason(v)) })
	case "http-status":
		f.apply(func(f *flowpb.FlowFilter) { f.HttpStatusCode = append(f.HttpStatusCode, val) })
	case "http-method":
		f.apply(func(f *flowpb.FlowFilter) { f.HttpMethod = append(f.HttpMethod, val) })
	case "http-path":
		f.apply(func(f *flowpb.FlowFilter) { f.HttpPath = append(f.HttpPath, val) })
	case "http-url":
		f.apply(func(f *flowpb.FlowFilter) { f.HttpUrl = append(f.HttpUrl, val) })
	case "http-header":
		k, v, ok := strings.Cut(val, ":")
		if !ok {
			return fmt.Errorf("invalid http-header value %q, expected name:value", val)
		}
		f.apply(func(f *flowpb.FlowFilter) { f.HttpHeader = append(f.HttpHeader, &flowpb.HTTPHeader{Key: k, Value: v}) })
	case "dns-query":
		f.apply(func(f *flowpb.FlowFilter) { f.DnsQuery = append(f.DnsQuery, val) })
	case "type":
		if wipe {
			f.apply(func(f *flowpb.FlowFilter) { f.EventType = nil })
		}
		tf, err := parseEventType(val)
		if err != nil {
			return err
		}
		f.apply(func(f *flowpb.FlowFilter) { f.EventType = append(f.EventType, tf) })
	case "protocol":
		f.apply(func(f *flowpb.FlowFilter) { f.Protocol = append(f.Protocol, val) })
	case "workload":
		w := parseWorkload(val)
		both(func(f *flowpb.FlowFilter) { f.SourceWorkload = append(f.SourceWorkload, w) }, func(f *flowpb.FlowFilter) { f.DestinationWorkload = append(f.DestinationWorkload, w) })
	case "from-workload":
		w := parseWorkload(val)
		f.apply(func(f *flowpb.FlowFilter) { f.SourceWorkload = append(f.SourceWorkload, w) })
	case "to-workload":
		w := parseWorkload(val)
		f.apply(func(f *flowpb.FlowFilter) { f.DestinationWorkload = append(f.DestinationWorkload, w) })
	case "identity", "from-identity", "to-identity":
		id, err := parseIdentity(val)
		if err != nil {
			return err
		}
		src := func(f *flowpb.FlowFilter) { f.SourceIdentity = append(f.SourceIdentity, id) }
		dst := func(f *flowpb.FlowFilter) { f.DestinationIdentity = append(f.DestinationIdentity, id) }
		switch name {
		case "identity":
			both(src, dst)
		case "from-identity":
			f.apply(src)
		default:
			f.apply(dst)
		}
	case "node-name":
		f.apply(func(f *flowpb.FlowFilter) { f.NodeName = append(f.NodeName, val) })
	case "node-label":
		f.apply(func(f *flowpb.FlowFilter) { f.NodeLabels = append(f.NodeLabels, val) })
	case "cluster":
		both(func(f *flowpb.FlowFilter) { f.SourceClusterName = append(f.SourceClusterName, val) }, func(f *flowpb.FlowFilter) { f.DestinationClusterName = append(f.DestinationClusterName, val) })
	case "from-cluster":
		f.apply(func(f *flowpb.FlowFilter) { f.SourceClusterName = append(f.SourceClusterName, val) })
	case "to-cluster":
		f.apply(func(f *flowpb.FlowFilter) { f.DestinationClusterName = append(f.DestinationClusterName, val) })
	case "tcp-flags":
		flags, err := parseTCPFlags(val)
		if err != nil {
			return err
		}
		f.apply(func(f *flowpb.FlowFilter) { f.TcpFlags = append(f.TcpFlags, flags) })
	case "traffic-direction":
		var d flowpb.TrafficDirection
		switch strings.ToLower(val) {
		case "ingress":
			d = flowpb.TrafficDirection_INGRESS
		case "egress":
			d = flowpb.TrafficDirection_EGRESS
		default:
			return fmt.Errorf("%s: invalid traffic direction, expected ingress or egress", val)
		}
		f.apply(func(f *flowpb.FlowFilter) { f.TrafficDirection = append(f.TrafficDirection, d) })
	case "cel-expression":
		f.apply(func(f *flowpb.FlowFilter) {
			if f.Experimental == nil {
				f.Experimental = &flowpb.FlowFilter_Experimental{}
			}
			f.Experimental.CelExpression = append(f.Experimental.CelExpression, val)
		})
	case "interface":
		f.apply(func(f *flowpb.FlowFilter) { f.Interface = append(f.Interface, &flowpb.NetworkInterface{Name: val}) })
	case "encrypted":
		f.apply(func(f *flowpb.FlowFilter) { f.Encrypted = append(f.Encrypted, true) })
	case "unencrypted":
		f.apply(func(f *flowpb.FlowFilter) { f.Encrypted = append(f.Encrypted, false) })
	case "reply":
		f.apply(func(f *flowpb.FlowFilter) { f.Reply = append(f.Reply, true) })
	case "not-reply":
		f.apply(func(f *flowpb.FlowFilter) { f.Reply = append(f.Reply, false) })
	default:
		return fmt.Errorf("unknown filter %q", name)
	}
	if err := f.checkNamespaceConflicts(f.left); err != nil {
		return err
	}
	return f.checkNamespaceConflicts(f.right)
}

func parseEventType(val string) (*flowpb.EventTypeFilter, error) {
	tf := &flowpb.EventTypeFilter{}
	typ, sub, hasSub := strings.Cut(val, ":")
	t, ok := hubble.MessageType(typ)
	if !ok {
		n, err := strconv.ParseUint(typ, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("unable to parse type '%s', not a known type name and unable to parse as numeric value: %w", typ, err)
		}
		t = int32(n)
	}
	tf.Type = t
	if hasSub {
		switch t {
		case hubble.MsgTypeTrace:
			tf.SubType, tf.MatchSubType = hubble.TraceObservationPointByName(sub)
		case hubble.MsgTypeAgent:
			tf.SubType, tf.MatchSubType = hubble.AgentEventSubType(sub)
		}
		if !tf.MatchSubType {
			n, err := strconv.ParseUint(sub, 10, 32)
			if err != nil {
				return nil, fmt.Errorf("unable to parse event sub-type '%s', not a known sub-type name and unable to parse as numeric value: %w", sub, err)
			}
			tf.MatchSubType, tf.SubType = true, int32(n)
		}
	}
	return tf, nil
}

// Lists returns the whitelist and the blacklist the flags set so far built
// (nil when none); a --not that no filter flag followed is an error.
func (of *Filters) Lists() (white, black []*flowpb.FlowFilter, err error) {
	if of.blacklisting {
		return nil, nil, errors.New("trailing --not found in the arguments")
	}
	if of.whitelist != nil {
		white = of.whitelist.flowFilters()
	}
	if of.blacklist != nil {
		black = of.blacklist.flowFilters()
	}
	return white, black, nil
}

// Value returns the flag value (a pflag.Value) of the filter flag name:
// every occurrence on the command line calls Set in command-line order, so
// --not applies to the next filter flag.
func (of *Filters) Value(name string) *FlagValue { return &FlagValue{of: of, name: name} }

// FlagValue is the value of one filter flag (see Filters.Value).
type FlagValue struct {
	of   *Filters
	name string
	vals []string
}

// Set applies one occurrence of the flag.
func (v *FlagValue) Set(s string) error {
	if err := v.of.Set(v.name, s); err != nil {
		return err
	}
	v.vals = append(v.vals, s)
	return nil
}

// String returns the values set, comma-separated.
func (v *FlagValue) String() string { return strings.Join(v.vals, ",") }

// Type names the kind of value in flag usage.
func (v *FlagValue) Type() string { return "filter" }
