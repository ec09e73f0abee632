package query

// FilterFlag is one filter flag of `hubble observe`.
type FilterFlag struct {
	Name, Shorthand, Usage string
	// NoOptDefault is the value of the flag given without one ("" when it
	// needs a value).
	NoOptDefault string
}

// FilterFlags are hubble observe's filter flags with their usage, in
// hubble's order; "dns-query" is a flowbus addition. Each is applied by
// Filters.Set.
func FilterFlags() []FilterFlag {
	fs := make([]FilterFlag, 0, len(filterFlags))
	for _, f := range filterFlags {
		fs = append(fs, FilterFlag{Name: f.name, Shorthand: f.short, Usage: f.help, NoOptDefault: noOptDefault[f.name]})
	}
	return fs
}

var filterFlags = []struct{ name, short, help string }{
	{"not", "", "Reverses the next filter to be blacklist i.e. --not --from-ip 2.2.2.2"},
	{"uuid", "", "Show the only flow matching this unique flow identifier, if any"},
	{"node-name", "", `Show all flows which match the given node names (e.g. "k8s*", "test-cluster/*.company.com")`},
	{"node-label", "", "Show only flows observed on nodes matching the given label filter (not supported by flowbus servers)"},
	{"from-cluster", "", "Show all flows originating from endpoints known to be in the given cluster name"},
	{"cluster", "", "Show all flows which match the cluster names"},
	{"to-cluster", "", "Show all flows destined to endpoints known to be in the given cluster name"},
	{"protocol", "", `Show only flows which match the given L4/L7 flow protocol (e.g. "udp", "http", "kafka")`},
	{"tcp-flags", "", `Show only flows which match the given TCP flags (e.g. "syn", "ack", "fin")`},
	{"type", "t", "Filter by event types TYPE[:SUBTYPE] (drop, trace[:to-endpoint|from-endpoint|...], l7, policy-verdict, capture, trace-sock, or numbers)"},
	{"verdict", "", "Show only flows with this verdict [FORWARDED, DROPPED, AUDIT, REDIRECTED, ERROR, TRACED, TRANSLATED]"},
	{"drop-reason-desc", "", `Show only flows which match this drop reason describe (e.g. "POLICY_DENIED", "UNSUPPORTED_L3_PROTOCOL")`},
	{"http-status", "", `Show only flows which match this HTTP status code prefix (e.g. "404", "5+")`},
	{"http-method", "", `Show only flows which match this HTTP method (e.g. "get", "post")`},
	{"http-path", "", `Show only flows which match this HTTP path regular expressions (e.g. "/page/\\d+")`},
	{"http-url", "", `Show only flows which match this HTTP URL regular expressions (e.g. "http://.*cilium\.io/page/\\d+")`},
	{"http-header", "", `Show only flows which match this HTTP header key:value pairs (e.g. "foo:bar")`},
	{"dns-query", "", `Show only DNS flows whose query matches this regular expression (flowbus addition)`},
	{"trace-id", "", "Show only flows which match this trace ID (not supported by flowbus servers)"},
	{"ip-trace-id", "", "Show only flows which match this IP trace ID (not supported by flowbus servers)"},
	{"from-fqdn", "", `Show all flows originating at the given fully qualified domain name (e.g. "*.cilium.io").`},
	{"fqdn", "", `Show all flows related to the given fully qualified domain name (e.g. "*.cilium.io").`},
	{"to-fqdn", "", `Show all flows terminating at the given fully qualified domain name (e.g. "*.cilium.io").`},
	{"from-ip", "", "Show all flows originating at the given IP address (exact, or CIDR e.g. '1.1.1.0/24')"},
	{"snat-ip", "", "Show all flows SNATed with the given IP address (not supported by flowbus servers)"},
	{"ip", "", "Show all flows originating or terminating at the given IP address (exact, or CIDR)"},
	{"to-ip", "", "Show all flows terminating at the given IP address (exact, or CIDR)"},
	{"ipv4", "4", "Show only IPv4 flows"},
	{"ipv6", "6", "Show only IPv6 flows"},
	{"ip-version", "", `Show only IPv4, IPv6 flows or non IP flows (e.g. ARP packets) (ie: "none", "v4", "v6")`},
	{"from-pod", "", "Show all flows originating in the given pod name prefix([namespace/]<pod-name>). If namespace is not provided, 'default' is used"},
	{"pod", "", "Show all flows related to the given pod name prefix ([namespace/]<pod-name>). If namespace is not provided, 'default' is used."},
	{"to-pod", "", "Show all flows terminating in the given pod name prefix([namespace/]<pod-name>). If namespace is not provided, 'default' is used"},
	{"from-namespace", "", "Show all flows originating in the given Kubernetes namespace."},
	{"namespace", "n", "Show all flows related to the given Kubernetes namespace."},
	{"to-namespace", "", "Show all flows terminating in the given Kubernetes namespace."},
	{"from-all-namespaces", "", "Show flows originating in any Kubernetes namespace."},
	{"all-namespaces", "A", "Show all flows in any Kubernetes namespace."},
	{"to-all-namespaces", "", "Show flows terminating in any Kubernetes namespace."},
	{"from-label", "", `Show only flows originating in an endpoint with the given labels (e.g. "key1=value1", "reserved:world")`},
	{"label", "l", `Show only flows related to an endpoint with the given labels (e.g. "key1=value1", "reserved:world")`},
	{"to-label", "", `Show only flows terminating in an endpoint with given labels (e.g. "key1=value1", "reserved:world")`},
	{"from-service", "", "Shows flows from the given service name prefix ([namespace/]<svc-name>). If namespace is not provided, 'default' is used"},
	{"service", "", "Shows flows from or to the given service name prefix ([namespace/]<svc-name>). If namespace is not provided, 'default' is used."},
	{"to-service", "", "Shows flows to the given service name prefix ([namespace/]<svc-name>). If namespace is not provided, 'default' is used"},
	{"from-port", "", "Show only flows with the given source port (e.g. 8080)"},
	{"port", "", "Show only flows with given port in either source or destination (e.g. 8080)"},
	{"to-port", "", "Show only flows with the given destination port (e.g. 8080)"},
	{"from-workload", "", "Show all flows originating at an endpoint with the given workload ([kind/]name)"},
	{"workload", "", "Show all flows related to an endpoint with the given workload ([kind/]name)"},
	{"to-workload", "", "Show all flows terminating at an endpoint with the given workload ([kind/]name)"},
	{"from-identity", "", "Show all flows originating at an endpoint with the given security identity"},
	{"identity", "", "Show all flows related to an endpoint with the given security identity"},
	{"to-identity", "", "Show all flows terminating at an endpoint with the given security identity"},
	{"traffic-direction", "", "Show all flows in the given traffic direction (either ingress or egress)"},
	{"cel-expression", "", "Filter flows using the given CEL expression (not supported by flowbus servers)"},
	{"interface", "", "Show all flows observed at the given interface name (e.g. eth0)"},
	{"encrypted", "", "Show only encrypted flows (not supported by flowbus servers)"},
	{"unencrypted", "", "Show only unencrypted flows (not supported by flowbus servers)"},
	{"reply", "", "Show only reply flows"},
	{"not-reply", "", "Show only non-reply flows"},
}

// noOptDefault are the filter flags usable without a value, with hubble's defaults.
var noOptDefault = map[string]string{
	"not": "true", "ipv4": "v4", "ipv6": "v6", "all-namespaces": "true", "from-all-namespaces": "true",
	"to-all-namespaces": "true", "encrypted": "true", "unencrypted": "true", "reply": "true", "not-reply": "true",
}
