package metrics

import (
	"fmt"
	"slices"
	"strings"

	"github.com/flowbus/flowbus/schemas"
)

// Spec is one enabled metric as in Hubble's --metrics option:
// "name" or "name:option=value;option=value".
type Spec struct {
	Name    string
	Options map[string][]string // option name (lower case) → values
}

// ParseSpecs parses Hubble's --metrics syntax: specs separated by
// whitespace (or given as separate elements), each "name[:options]" where
// options are "key=value" separated by ';', values separated by '|'
// (labelsContext values by ','). Example:
//
//	flow:sourceContext=namespace|pod;destinationContext=workload drop tcp dns:query httpV2:labelsContext=source_namespace,destination_workload
func ParseSpecs(specs ...string) ([]Spec, error) {
	var out []Spec
	for _, s := range specs {
		for _, one := range strings.Fields(s) {
			name, opts, _ := strings.Cut(one, ":")
			spec := Spec{Name: name, Options: map[string][]string{}}
			if _, ok := knownMetrics[name]; !ok {
				return nil, fmt.Errorf("metrics: unknown metric %q (known: %s)", name, strings.Join(metricNames(), ", "))
			}
			for opt := range strings.SplitSeq(opts, ";") {
				if opt == "" {
					continue
				}
				k, v, hasValue := strings.Cut(opt, "=")
				key := strings.ToLower(k)
				var values []string
				sep := "|"
				if key == "labelscontext" {
					sep = ","
				}
				if hasValue {
					for x := range strings.SplitSeq(v, sep) {
						if x != "" {
							values = append(values, x)
						}
					}
				}
				spec.Options[key] = values
			}
			if err := validateOptions(spec); err != nil {
				return nil, err
			}
			out = append(out, spec)
		}
	}
	return out, nil
}

// knownMetrics maps each metric to the options it takes besides the context options.
var knownMetrics = map[string][]string{
	"flow":   nil,
	"drop":   nil,
	"policy": nil,
	"tcp":    nil,
	"http":   {"exemplars"},
	"httpV2": {"exemplars"},
	"dns":    {"query", "ignoreaaaa"},
	"icmp":   nil,
	// kafka is cilium v1.19's (v1.20 has none); context options only.
	"kafka": nil,
	// port-distribution counts destination ports of forwarded requests.
	"port-distribution": nil,
}

func metricNames() []string {
	var ns []string
	for n := range knownMetrics {
		ns = append(ns, n)
	}
	slices.Sort(ns)
	return ns
}

var contextOptionNames = []string{
	"sourcecontext", "destinationcontext",
	"sourceegresscontext", "sourceingresscontext",
	"destinationegresscontext", "destinationingresscontext",
	"labelscontext",
}

func validateOptions(s Spec) error {
	for k, vs := range s.Options {
		switch {
		case k == "labelscontext":
			for _, v := range vs {
				if !slices.Contains(contextLabelsList, v) {
					return fmt.Errorf("metrics: %s: invalid labelsContext value %q (one of %s)", s.Name, v, strings.Join(contextLabelsList, ", "))
				}
			}
		case slices.Contains(contextOptionNames, k):
			for _, v := range vs {
				if _, ok := contextIdentifiers[strings.ToLower(v)]; !ok {
					return fmt.Errorf("metrics: %s: unknown context %q in %s", s.Name, v, k)
				}
			}
		case slices.Contains(knownMetrics[s.Name], k):
		default:
			return fmt.Errorf("metrics: %s: unknown option %q", s.Name, k)
		}
	}
	return nil
}

// contextLabelsList is Hubble's labelsContext label set, in its order.
var contextLabelsList = []string{
	"source_ip", "source_pod", "source_namespace", "source_workload", "source_workload_kind", "source_app",
	"destination_ip", "destination_pod", "destination_namespace", "destination_workload", "destination_workload_kind", "destination_app",
	"traffic_direction",
}

type contextID func(f *schemas.Flow, source bool) string

func endpoint(f *schemas.Flow, source bool) *schemas.Endpoint {
	if source {
		return &f.Src
	}
	return &f.Dst
}

// contextIdentifiers mirrors Hubble's getContextIDLabelValue.
var contextIdentifiers = map[string]contextID{
	"identity":  func(f *schemas.Flow, src bool) string { return strings.Join(endpoint(f, src).Labels, ",") },
	"namespace": func(f *schemas.Flow, src bool) string { return endpoint(f, src).Namespace },
	"pod": func(f *schemas.Flow, src bool) string {
		ep := endpoint(f, src)
		if ep.Namespace != "" {
			return ep.Namespace + "/" + ep.PodName
		}
		return ep.PodName
	},
	"pod-name": func(f *schemas.Flow, src bool) string { return endpoint(f, src).PodName },
	"dns": func(f *schemas.Flow, src bool) string {
		if src {
			return strings.Join(f.SrcNames, ",")
		}
		return strings.Join(f.DstNames, ",")
	},
	"ip": func(f *schemas.Flow, src bool) string {
		if src {
			return addr(f.SrcIP.IsValid(), f.SrcIP.String())
		}
		return addr(f.DstIP.IsValid(), f.DstIP.String())
	},
	"reserved-identity": func(f *schemas.Flow, src bool) string { return reservedIdentity(endpoint(f, src).Labels) },
	"workload": func(f *schemas.Flow, src bool) string {
		ep := endpoint(f, src)
		if ep.Workload != "" && ep.Namespace != "" {
			return ep.Namespace + "/" + ep.Workload
		}
		return ep.Workload
	},
	"workload-name": func(f *schemas.Flow, src bool) string { return endpoint(f, src).Workload },
	"app":           func(f *schemas.Flow, src bool) string { return appLabel(endpoint(f, src).Labels) },
}

func addr(valid bool, s string) string {
	if !valid {
		return ""
	}
	return s
}

func reservedIdentity(labels []string) string {
	if slices.Contains(labels, "reserved:kube-apiserver") {
		return "reserved:kube-apiserver"
	}
	for _, l := range labels {
		if strings.HasPrefix(l, "reserved:") {
			return l
		}
	}
	return ""
}

var podAppLabels = []string{"k8s:app.kubernetes.io/name=", "k8s:k8s-app=", "k8s:app="}

func appLabel(labels []string) string {
	for _, l := range labels {
		for _, p := range podAppLabels {
			if v, ok := strings.CutPrefix(l, p); ok && v != "" {
				return v
			}
		}
	}
	return ""
}

// contextOptions is a parsed set of Hubble context options.
type contextOptions struct {
	labels                              []string // labelsContext, in contextLabelsList order
	source, sourceEgress, sourceIngress []contextID
	dest, destEgress, destIngress       []contextID
	includeSource, includeDest          bool
}

func parseContext(s Spec) contextOptions {
	ids := func(key string) []contextID {
		var out []contextID
		for _, v := range s.Options[key] {
			out = append(out, contextIdentifiers[strings.ToLower(v)])
		}
		return out
	}
	var o contextOptions
	for _, l := range contextLabelsList {
		if slices.Contains(s.Options["labelscontext"], l) {
			o.labels = append(o.labels, l)
		}
	}
	o.source, o.sourceEgress, o.sourceIngress = ids("sourcecontext"), ids("sourceegresscontext"), ids("sourceingresscontext")
	o.dest, o.destEgress, o.destIngress = ids("destinationcontext"), ids("destinationegresscontext"), ids("destinationingresscontext")
	o.includeSource = len(o.source)+len(o.sourceEgress)+len(o.sourceIngress) > 0
	o.includeDest = len(o.dest)+len(o.destEgress)+len(o.destIngress) > 0
	return o
}

// labelNames returns the context label names, in Hubble's order.
func (o contextOptions) labelNames() []string {
	names := slices.Clone(o.labels)
	if o.includeSource {
		names = append(names, "source")
	}
	if o.includeDest {
		names = append(names, "destination")
	}
	return names
}

// values returns the context label values of f; invert swaps source and
// destination (Hubble's httpV2 reports from the requester's side).
func (o contextOptions) values(f *schemas.Flow, invert bool) []string {
	var out []string
	for _, l := range o.labels {
		out = append(out, labelsContextValue(f, l, invert))
	}
	pick := func(def, egress, ingress []contextID) []contextID {
		switch {
		case ingress != nil && f.Direction == flowDirIngress:
			return ingress
		case egress != nil && f.Direction == flowDirEgress:
			return egress
		}
		return def
	}
	first := func(ids []contextID, src bool) string {
		for _, id := range ids {
			if v := id(f, src); v != "" {
				return v
			}
		}
		return ""
	}
	s := first(pick(o.source, o.sourceEgress, o.sourceIngress), true)
	d := first(pick(o.dest, o.destEgress, o.destIngress), false)
	if invert {
		s, d = d, s
	}
	if o.includeSource {
		out = append(out, s)
	}
	if o.includeDest {
		out = append(out, d)
	}
	return out
}

func labelsContextValue(f *schemas.Flow, label string, invert bool) string {
	src, dst := &f.Src, &f.Dst
	srcIP, dstIP := addr(f.SrcIP.IsValid(), f.SrcIP.String()), addr(f.DstIP.IsValid(), f.DstIP.String())
	if invert {
		src, dst, srcIP, dstIP = dst, src, dstIP, srcIP
	}
	switch label {
	case "source_ip":
		return srcIP
	case "source_pod":
		return src.PodName
	case "source_namespace":
		return src.Namespace
	case "source_workload":
		return src.Workload
	case "source_workload_kind":
		return workloadKind(src)
	case "source_app":
		return appLabel(src.Labels)
	case "destination_ip":
		return dstIP
	case "destination_pod":
		return dst.PodName
	case "destination_namespace":
		return dst.Namespace
	case "destination_workload":
		return dst.Workload
	case "destination_workload_kind":
		return workloadKind(dst)
	case "destination_app":
		return appLabel(dst.Labels)
	case "traffic_direction":
		if f.Direction == flowDirUnknown {
			return "unknown"
		}
		return strings.ToLower(f.Direction.String())
	}
	return ""
}

// workloadKind is the kind of the endpoint's workload, empty when it has
// none (Hubble reads both from workloads[0]).
func workloadKind(ep *schemas.Endpoint) string {
	if ep.Workload == "" {
		return ""
	}
	return ep.WorkloadKind
}
