package lab

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kversion"
	"go.yaml.in/yaml/v3"

	"github.com/flowbus/flowbus/agent/cluster/filesource"
)

//go:embed examples/payments.yaml
var paymentsYAML []byte

// Topology is what a lab is made of: pods, the servers they run, the clients
// that generate traffic between them, and services over them. It is read
// from YAML (see examples/payments.yaml); every key is snake_case.
type Topology struct {
	Node     string        `yaml:"node" json:"node"` // node name in the endpoints file; default the host name
	Network  Network       `yaml:"network" json:"network"`
	Pods     []PodSpec     `yaml:"pods" json:"pods"`
	Services []ServiceSpec `yaml:"services" json:"services"`
	// Policies are the lab's network policies: Kubernetes NetworkPolicy,
	// CiliumNetworkPolicy and CiliumClusterwideNetworkPolicy manifests, as
	// kubectl would apply them. Up writes them to policies.yaml in the
	// state directory for the agent's --policies. The lab enforces
	// nothing itself: an agent with the eBPF source does, in the program
	// that observes.
	Policies []map[string]any `yaml:"policies" json:"policies,omitempty"`
}

// Network holds the pod address ranges. Pod i (1-based, in file order) gets
// the i-th address of each range.
type Network struct {
	IPv4 string `yaml:"ipv4" json:"ipv4"` // default 10.200.0.0/24
	IPv6 string `yaml:"ipv6" json:"ipv6"` // default fd00:fb::/64
}

// PodSpec is one pod. Pod names are unique in a topology (the network
// namespace is named after the pod alone).
type PodSpec struct {
	Name      string            `yaml:"name" json:"name"`
	Namespace string            `yaml:"namespace" json:"namespace"`
	Workload  string            `yaml:"workload" json:"workload"` // default the pod name
	Kind      string            `yaml:"kind" json:"kind"`         // workload kind; default Deployment
	Labels    map[string]string `yaml:"labels" json:"labels"`
	Servers   []ServerSpec      `yaml:"servers" json:"servers"`
	Clients   []ClientSpec      `yaml:"clients" json:"clients"`
}

// Server and client kinds.
const (
	KindHTTP    = "http"     // HTTP/1.1 server with routes / client
	KindGRPC    = "grpc"     // gRPC health service and the lab's stream service / Check or Stream calls
	KindTCPEcho = "tcp-echo" // line echo over TCP / client sending lines
	KindDNS     = "dns"      // DNS over UDP / client asking A and AAAA
	KindPing    = "ping"     // client only: ICMP and ICMPv6 echo
	KindKafka   = "kafka"    // Kafka broker (kfake) / kgo client producing or consuming
)

// ServerSpec is one server a pod runs, on both its IPv4 and IPv6 address.
type ServerSpec struct {
	Kind   string      `yaml:"kind" json:"kind"`
	Port   uint16      `yaml:"port" json:"port"`
	Routes []RouteSpec `yaml:"routes" json:"routes"` // http only
	// CNAMEs (dns only) maps alias names to their targets: a query for an
	// alias is answered with the CNAME chain and then the target's
	// records (see DNSAnswer).
	CNAMEs map[string]string `yaml:"cnames" json:"cnames,omitempty"`
	// Topics (kafka only) are the topics the broker is seeded with, one
	// partition each; default port 9092.
	Topics []string `yaml:"topics" json:"topics,omitempty"`
	// ResetFrom lists pods whose TCP connections the server resets (RST) as
	// soon as they are accepted: the lab's stand-in for a policy deny until
	// enforcement exists.
	ResetFrom []string `yaml:"reset_from" json:"reset_from"`
	// Latency (dns, grpc, kafka) is the server's service time: it waits
	// this long before answering each request (an http server's routes have
	// their own). Real services take milliseconds; the lab's answer in tens
	// of microseconds without it.
	Latency time.Duration `yaml:"latency" json:"latency,omitempty"`
}

// maxLatency bounds a server's or route's latency: a request must be
// answered well within the clients' timeouts (2 s).
const maxLatency = time.Second

// RouteSpec is one HTTP route. Path may hold one "{id}" segment; a request
// whose id is a multiple of ErrorEvery is answered ErrorStatus, every other
// one 200, so errors are deterministic and clients can check each answer.
type RouteSpec struct {
	Path        string        `yaml:"path" json:"path"`
	Method      string        `yaml:"method" json:"method"`             // default GET
	ErrorEvery  uint64        `yaml:"error_every" json:"error_every"`   // 0: never
	ErrorStatus int           `yaml:"error_status" json:"error_status"` // default 503
	Latency     time.Duration `yaml:"latency" json:"latency"`           // added before answering
}

// ClientSpec is one edge of traffic from the pod that holds it to pod To.
type ClientSpec struct {
	To     string   `yaml:"to" json:"to"`
	Kind   string   `yaml:"kind" json:"kind"`
	Port   uint16   `yaml:"port" json:"port"`     // default 53 for dns; unused for ping
	Method string   `yaml:"method" json:"method"` // http; default GET
	Paths  []string `yaml:"paths" json:"paths"`   // http; "{id}" is replaced by a random id
	Names  []string `yaml:"names" json:"names"`   // dns; asked in turn, A then AAAA
	// Transport (dns) is "udp" (default: a socket per query) or "tcp" (a
	// connection per query, the message length-prefixed, RFC 1035 4.2.2).
	Transport string `yaml:"transport" json:"transport,omitempty"`
	// Topics (kafka) are the topics the edge produces to (in turn) or
	// consumes; Role is "produce" (default) or "consume".
	Topics []string `yaml:"topics" json:"topics,omitempty"`
	Role   string   `yaml:"role" json:"role,omitempty"`
	// KafkaVersion (kafka) caps the request versions the client uses at
	// those of a Kafka release ("3.0", as kversion.FromString reads it);
	// default the newest kgo and the broker share. Produce and Fetch name
	// topics by ID from version 13 (Kafka 3.1 for Fetch, 4.0 for
	// Produce); an older release keeps the names on the wire.
	KafkaVersion string `yaml:"kafka_version" json:"kafka_version,omitempty"`
	NewConn      bool   `yaml:"new_conn" json:"new_conn"` // http: one connection per request
	// Pipeline (http), when above 1, makes each tick open a connection and
	// send Pipeline requests back to back on it before reading the
	// responses, which are read and checked in order (HTTP/1.1
	// pipelining); the connection is closed after the last.
	Pipeline int `yaml:"pipeline" json:"pipeline,omitempty"`
	// Services (grpc) are the service names the health Check calls ask
	// for, in turn; default [""] (the server). The server knows "" and
	// its workload's name (SERVING) and answers NOT_FOUND for any other.
	Services []string `yaml:"services" json:"services,omitempty"`
	// Stream (grpc), when above 0, makes the edge's calls the lab's
	// server-streaming /flowbus.lab.v1.Lab/Stream instead of Check: the
	// server answers Stream messages and ends with OK.
	Stream   int    `yaml:"stream" json:"stream,omitempty"`
	Messages int    `yaml:"messages" json:"messages"` // tcp-echo: lines per connection; default 3
	Family   string `yaml:"family" json:"family"`     // ipv4, ipv6 or both (default: alternate)
}

// ServiceSpec is a service: a name and cluster IPs over the pods its
// selector matches in its namespace. The lab itself does no service
// translation: its clients dial backends directly, as a socket load
// balancer would have; the services are there for enrichment, for the DNS
// server's answers, and for an agent's --socket-lb, attached to the lab's
// cgroup, to translate a pod's connections to a cluster IP.
type ServiceSpec struct {
	Name       string            `yaml:"name" json:"name"`
	Namespace  string            `yaml:"namespace" json:"namespace"`
	ClusterIPs []string          `yaml:"cluster_ips" json:"cluster_ips"`
	Selector   map[string]string `yaml:"selector" json:"selector"`
	Ports      []PortSpec        `yaml:"ports" json:"ports"`
}

// PortSpec is one service port.
type PortSpec struct {
	Name       string `yaml:"name" json:"name"`
	Port       uint16 `yaml:"port" json:"port"`
	TargetPort uint16 `yaml:"target_port" json:"target_port"` // default Port
	Protocol   string `yaml:"protocol" json:"protocol"`       // TCP (default) or UDP
}

// DefaultTopology returns the payments fleet (examples/payments.yaml).
func DefaultTopology() (*Topology, error) {
	t, err := ParseTopology(paymentsYAML)
	if err != nil {
		return nil, fmt.Errorf("built-in payments topology: %w", err)
	}
	return t, nil
}

// LoadTopology reads and validates a topology file.
func LoadTopology(path string) (*Topology, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read topology: %w", err)
	}
	t, err := ParseTopology(b)
	if err != nil {
		return nil, fmt.Errorf("topology %s: %w", path, err)
	}
	return t, nil
}

// ParseTopology decodes a topology, fills defaults and validates it.
// Unknown keys are an error, so a typo does not silently do nothing.
func ParseTopology(b []byte) (*Topology, error) {
	var t Topology
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&t); err != nil {
		return nil, fmt.Errorf("decode: %w", err)
	}
	t.defaults()
	if err := t.Validate(); err != nil {
		return nil, err
	}
	return &t, nil
}

func (t *Topology) defaults() {
	if t.Network.IPv4 == "" {
		t.Network.IPv4 = "10.200.0.0/24"
	}
	if t.Network.IPv6 == "" {
		t.Network.IPv6 = "fd00:fb::/64"
	}
	for i := range t.Pods {
		p := &t.Pods[i]
		if p.Workload == "" {
			p.Workload = p.Name
		}
		if p.Kind == "" {
			p.Kind = "Deployment"
		}
		for j := range p.Servers {
			s := &p.Servers[j]
			if s.Kind == KindDNS && s.Port == 0 {
				s.Port = 53
			}
			if s.Kind == KindKafka && s.Port == 0 {
				s.Port = 9092
			}
			for k := range s.Routes {
				r := &s.Routes[k]
				r.Method = strings.ToUpper(r.Method)
				if r.Method == "" {
					r.Method = "GET"
				}
				if r.ErrorStatus == 0 {
					r.ErrorStatus = 503
				}
			}
		}
		for j := range p.Clients {
			c := &p.Clients[j]
			c.Method = strings.ToUpper(c.Method)
			if c.Kind == KindHTTP && c.Method == "" {
				c.Method = "GET"
			}
			if c.Kind == KindDNS && c.Port == 0 {
				c.Port = 53
			}
			if c.Kind == KindDNS && c.Transport == "" {
				c.Transport = "udp"
			}
			if c.Kind == KindKafka && c.Port == 0 {
				c.Port = 9092
			}
			if c.Kind == KindKafka && c.Role == "" {
				c.Role = KafkaProduce
			}
			if c.Kind == KindTCPEcho && c.Messages == 0 {
				c.Messages = 3
			}
			if c.Family == "" {
				c.Family = "both"
			}
		}
	}
	for i := range t.Services {
		for j := range t.Services[i].Ports {
			p := &t.Services[i].Ports[j]
			p.Protocol = strings.ToUpper(p.Protocol)
			if p.Protocol == "" {
				p.Protocol = "TCP"
			}
			if p.TargetPort == 0 {
				p.TargetPort = p.Port
			}
		}
	}
}

var podName = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// Validate checks the topology: names, address ranges large enough, servers
// on distinct ports, every client aimed at a pod that serves its kind on its
// port, every reset_from naming a pod, services well formed, and every
// policy one the agent accepts.
func (t *Topology) Validate() error {
	v4, err := netip.ParsePrefix(t.Network.IPv4)
	if err != nil || !v4.Addr().Is4() {
		return fmt.Errorf("network.ipv4 %q: want an IPv4 CIDR", t.Network.IPv4)
	}
	v6, err := netip.ParsePrefix(t.Network.IPv6)
	if err != nil || !v6.Addr().Is6() || v6.Addr().Is4In6() {
		return fmt.Errorf("network.ipv6 %q: want an IPv6 CIDR", t.Network.IPv6)
	}
	if len(t.Pods) == 0 {
		return fmt.Errorf("no pods")
	}
	if _, err := t.PoliciesYAML(); err != nil {
		return err
	}
	if max := 1<<(32-v4.Bits()) - 2; len(t.Pods) > max || len(t.Pods) > 250 {
		return fmt.Errorf("%d pods do not fit in network.ipv4 %s (at most %d, and 250 in all)", len(t.Pods), v4, min(max, 250))
	}
	if v6.Bits() > 120 {
		return fmt.Errorf("network.ipv6 %s: want a prefix of /120 or shorter", v6)
	}
	byName := map[string]*PodSpec{}
	for i := range t.Pods {
		p := &t.Pods[i]
		if !podName.MatchString(p.Name) {
			return fmt.Errorf("pod %d: name %q: want a DNS label (a-z, 0-9, '-')", i+1, p.Name)
		}
		if _, dup := byName[p.Name]; dup {
			return fmt.Errorf("pod %s: listed twice (pod names are unique in a lab)", p.Name)
		}
		if p.Namespace == "" {
			return fmt.Errorf("pod %s: namespace is required", p.Name)
		}
		byName[p.Name] = p
	}
	for _, p := range t.Pods {
		ports := map[string]bool{}
		for _, s := range p.Servers {
			where := fmt.Sprintf("pod %s: server %s:%d", p.Name, s.Kind, s.Port)
			switch s.Kind {
			case KindHTTP, KindGRPC, KindTCPEcho, KindDNS, KindKafka:
			default:
				return fmt.Errorf("pod %s: server kind %q: want http, grpc, tcp-echo, dns or kafka", p.Name, s.Kind)
			}
			if s.Port == 0 {
				return fmt.Errorf("%s: port is required", where)
			}
			transports := []string{"tcp"}
			if s.Kind == KindDNS {
				transports = append(transports, "udp") // DNS listens on both
			}
			for _, transport := range transports {
				key := fmt.Sprintf("%s/%d", transport, s.Port)
				if ports[key] {
					return fmt.Errorf("%s: port %s already used by another server of the pod", where, key)
				}
				ports[key] = true
			}
			if len(s.Topics) > 0 && s.Kind != KindKafka {
				return fmt.Errorf("%s: topics are for kafka servers only", where)
			}
			if len(s.CNAMEs) > 0 && s.Kind != KindDNS {
				return fmt.Errorf("%s: cnames are for dns servers only", where)
			}
			if len(s.Routes) > 0 && s.Kind != KindHTTP {
				return fmt.Errorf("%s: routes are for http servers only", where)
			}
			if s.Kind == KindHTTP && len(s.Routes) == 0 {
				return fmt.Errorf("%s: an http server needs at least one route", where)
			}
			if s.Latency != 0 && s.Kind != KindDNS && s.Kind != KindGRPC && s.Kind != KindKafka {
				return fmt.Errorf("%s: latency is for dns, grpc and kafka servers (an http server's routes have their own)", where)
			}
			if s.Latency < 0 || s.Latency > maxLatency {
				return fmt.Errorf("%s: latency %v: want 0 to %v", where, s.Latency, maxLatency)
			}
			if len(s.ResetFrom) > 0 && s.Kind == KindDNS {
				return fmt.Errorf("%s: reset_from is for TCP servers", where)
			}
			for _, r := range s.Routes {
				if !strings.HasPrefix(r.Path, "/") || strings.Count(r.Path, "{id}") > 1 {
					return fmt.Errorf("%s: route %q: want a path starting with '/' with at most one {id}", where, r.Path)
				}
				if r.ErrorStatus < 100 || r.ErrorStatus > 599 {
					return fmt.Errorf("%s: route %s: error_status %d is not an HTTP status", where, r.Path, r.ErrorStatus)
				}
				if r.Latency < 0 || r.Latency > maxLatency {
					return fmt.Errorf("%s: route %s: latency %v: want 0 to %v", where, r.Path, r.Latency, maxLatency)
				}
			}
			for _, from := range s.ResetFrom {
				if byName[from] == nil {
					return fmt.Errorf("%s: reset_from %q is not a pod of the topology", where, from)
				}
			}
		}
		for _, c := range p.Clients {
			where := fmt.Sprintf("pod %s: client %s to %s", p.Name, c.Kind, c.To)
			to := byName[c.To]
			if to == nil {
				return fmt.Errorf("%s: %q is not a pod of the topology", where, c.To)
			}
			switch c.Family {
			case "ipv4", "ipv6", "both":
			default:
				return fmt.Errorf("%s: family %q: want ipv4, ipv6 or both", where, c.Family)
			}
			switch c.Kind {
			case KindPing:
				continue
			case KindHTTP, KindGRPC, KindTCPEcho, KindDNS, KindKafka:
			default:
				return fmt.Errorf("%s: kind %q: want http, grpc, tcp-echo, dns, kafka or ping", where, c.Kind)
			}
			if !slices.ContainsFunc(to.Servers, func(s ServerSpec) bool { return s.Kind == c.Kind && s.Port == c.Port }) {
				return fmt.Errorf("%s: pod %s has no %s server on port %d", where, c.To, c.Kind, c.Port)
			}
			if c.Kind == KindHTTP && len(c.Paths) == 0 {
				return fmt.Errorf("%s: an http client needs paths", where)
			}
			for _, path := range c.Paths {
				if !strings.HasPrefix(path, "/") {
					return fmt.Errorf("%s: path %q must start with '/'", where, path)
				}
			}
			if c.Transport != "" && (c.Kind != KindDNS || (c.Transport != "udp" && c.Transport != "tcp")) {
				return fmt.Errorf("%s: transport %q: want udp or tcp, on a dns edge", where, c.Transport)
			}
			if c.Kind == KindKafka {
				if c.Role != KafkaProduce && c.Role != KafkaConsume {
					return fmt.Errorf("%s: role %q: want produce or consume", where, c.Role)
				}
				if len(c.Topics) == 0 {
					return fmt.Errorf("%s: a kafka client needs topics", where)
				}
				for _, s := range to.Servers {
					for _, tp := range c.Topics {
						if s.Kind == KindKafka && s.Port == c.Port && !slices.Contains(s.Topics, tp) {
							return fmt.Errorf("%s: topic %q is not one pod %s's kafka server has", where, tp, c.To)
						}
					}
				}
				if c.KafkaVersion != "" && kversion.FromString(c.KafkaVersion) == nil {
					return fmt.Errorf("%s: kafka_version %q: want a Kafka release such as 3.0", where, c.KafkaVersion)
				}
			} else if len(c.Topics) > 0 || c.Role != "" || c.KafkaVersion != "" {
				return fmt.Errorf("%s: topics, role and kafka_version are for kafka edges", where)
			}
			if c.Kind == KindDNS && len(c.Names) == 0 {
				return fmt.Errorf("%s: a dns client needs names", where)
			}
			if c.Pipeline != 0 && (c.Kind != KindHTTP || c.NewConn || c.Pipeline < 2 || c.Pipeline > 100) {
				return fmt.Errorf("%s: pipeline %d: want 2..100 on an http edge without new_conn", where, c.Pipeline)
			}
			if (c.Stream != 0 || len(c.Services) > 0) && c.Kind != KindGRPC {
				return fmt.Errorf("%s: stream and services are for grpc edges", where)
			}
			if c.Stream < 0 || c.Stream > 1000 {
				return fmt.Errorf("%s: stream %d: want 0..1000 messages", where, c.Stream)
			}
			if c.Messages < 0 || c.Messages > 1000 {
				return fmt.Errorf("%s: messages %d: want 1..1000", where, c.Messages)
			}
		}
	}
	svcs := map[string]bool{}
	for _, s := range t.Services {
		key := s.Namespace + "/" + s.Name
		if s.Name == "" || s.Namespace == "" {
			return fmt.Errorf("service %q: name and namespace are required", key)
		}
		if svcs[key] {
			return fmt.Errorf("service %s: listed twice", key)
		}
		svcs[key] = true
		for _, ip := range s.ClusterIPs {
			if _, err := netip.ParseAddr(ip); err != nil {
				return fmt.Errorf("service %s: cluster ip: %w", key, err)
			}
		}
		if len(s.Selector) == 0 {
			return fmt.Errorf("service %s: selector is required", key)
		}
		for _, p := range s.Ports {
			if p.Port == 0 {
				return fmt.Errorf("service %s: port %q: port is required", key, p.Name)
			}
			if p.Protocol != "TCP" && p.Protocol != "UDP" {
				return fmt.Errorf("service %s: port %q: protocol %q: want TCP or UDP", key, p.Name, p.Protocol)
			}
		}
	}
	return nil
}

// Selects reports whether the service selects pod p.
func (s *ServiceSpec) Selects(p *PodSpec) bool {
	if p.Namespace != s.Namespace || len(s.Selector) == 0 {
		return false
	}
	for k, v := range s.Selector {
		if p.Labels[k] != v {
			return false
		}
	}
	return true
}

// PoliciesYAML returns the topology's policies as the agent's policies
// file (YAML documents separated by "---"), or nil when it has none. A
// policy the agent would reject (agent/cluster/filesource) is an error
// naming it: a lab's policies are all enforced or the lab does not start.
func (t *Topology) PoliciesYAML() ([]byte, error) {
	if len(t.Policies) == 0 {
		return nil, nil
	}
	var b bytes.Buffer
	for i, p := range t.Policies {
		doc, err := yaml.Marshal(p)
		if err != nil {
			return nil, fmt.Errorf("policy %d: %w", i+1, err)
		}
		if i > 0 {
			b.WriteString("---\n")
		}
		b.Write(doc)
	}
	parsed, err := filesource.ParsePolicies(bytes.NewReader(b.Bytes()))
	if err != nil {
		return nil, err
	}
	if len(parsed.Rejected) > 0 {
		r := parsed.Rejected[0]
		return nil, fmt.Errorf("policy %d: %w", r.Document, errors.New(strings.TrimPrefix(r.Error(), fmt.Sprintf("document %d (line %d) ", r.Document, r.Line))))
	}
	return b.Bytes(), nil
}
