package filter

import (
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
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
