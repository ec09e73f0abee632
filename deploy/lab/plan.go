package lab

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/flowbus/flowbus/agent/endpoints"
)

// Addresses every pod uses as its default gateways. They are next hops only:
// the pod has a permanent neighbour entry mapping them to the MAC of its
// host-side veth, so no host interface carries them and no ARP or ND is
// needed.
var (
	GatewayIPv4 = netip.MustParseAddr("169.254.1.1")
	GatewayIPv6 = netip.MustParseAddr("fe80::1")
)

// Plan is a topology placed on this host: the names and addresses of every
// pod. It is a pure function of the topology, the prefix and the node name,
// except IfIndex and PID, which Up fills in. It is saved as lab.json in the
// state directory, where the server and client processes read it.
type Plan struct {
	Prefix        string `json:"prefix"`
	Node          string `json:"node"`
	EndpointsFile string `json:"endpoints_file"` // where Up wrote it
	// PoliciesFile is where Up wrote the topology's policies (the agent's
	// --policies); empty when it has none.
	PoliciesFile string `json:"policies_file,omitempty"`
	// Kubeconfig is the API server Up registered the lab in; empty when
	// none.
	Kubeconfig string `json:"kubeconfig,omitempty"`
	// Cgroup is the lab's cgroup v2 directory, the parent of its pods'
	// (an agent's --socket-lb-cgroup); empty without a cgroup v2 hierarchy.
	Cgroup   string    `json:"cgroup,omitempty"`
	Topology Topology  `json:"topology"`
	Pods     []PodPlan `json:"pods"`
}

// PodPlan is one pod placed on the host.
type PodPlan struct {
	Name      string     `json:"name"`
	Namespace string     `json:"namespace"`
	Index     int        `json:"index"`    // 1-based position in the topology
	NetNS     string     `json:"netns"`    // <prefix>-<name>
	HostIf    string     `json:"host_if"`  // <prefix><index>h, in the host namespace
	HostMAC   string     `json:"host_mac"` // MAC of HostIf
	PodMAC    string     `json:"pod_mac"`  // MAC of eth0 in the pod
	IPv4      netip.Addr `json:"ipv4"`
	IPv6      netip.Addr `json:"ipv6"`
	Labels    []string   `json:"labels"` // Hubble form, sorted
	Identity  uint32     `json:"identity"`
	IfIndex   uint32     `json:"ifindex"` // of HostIf; set by Up
	PID       int        `json:"pid"`     // server process; 0 if none or not started
	// Cgroup is the pod's cgroup v2 directory, <Plan.Cgroup>/<namespace>_<name>,
	// which every process of the pod runs in; set by Up.
	Cgroup string `json:"cgroup,omitempty"`
}

// workload returns the pod's workload name from the plan's topology.
func (p *PodPlan) workload(plan *Plan) string {
	if s, ok := plan.Spec(p.Name); ok {
		return s.Workload
	}
	return p.Name
}

var prefixRE = regexp.MustCompile(`^[a-z]{1,8}$`)

// NewPlan places t on the host under prefix. Identities are Identity of each
// distinct label set; a collision inside the topology takes the next free
// number, in sorted order of the label sets, so the result is stable.
func NewPlan(t *Topology, prefix, node string) (*Plan, error) {
	if !prefixRE.MatchString(prefix) {
		return nil, fmt.Errorf("prefix %q: want 1 to 8 lower-case letters", prefix)
	}
	if err := t.Validate(); err != nil {
		return nil, err
	}
	if node == "" {
		node = t.Node
	}
	if node == "" {
		node, _ = os.Hostname()
	}
	v4 := netip.MustParsePrefix(t.Network.IPv4).Masked()
	v6 := netip.MustParsePrefix(t.Network.IPv6).Masked()
	pl := &Plan{Prefix: prefix, Node: node, Topology: *t}
	a4, a6 := v4.Addr(), v6.Addr()
	for i, ps := range t.Pods {
		a4, a6 = a4.Next(), a6.Next()
		b := a4.As4()
		pp := PodPlan{
			Name: ps.Name, Namespace: ps.Namespace, Index: i + 1,
			NetNS:   prefix + "-" + ps.Name,
			HostIf:  fmt.Sprintf("%s%dh", prefix, i+1),
			HostMAC: fmt.Sprintf("06:fb:%02x:%02x:%02x:%02x", b[0], b[1], b[2], b[3]),
			PodMAC:  fmt.Sprintf("02:fb:%02x:%02x:%02x:%02x", b[0], b[1], b[2], b[3]),
			IPv4:    a4, IPv6: a6,
			Labels: hubbleLabels(ps),
		}
		pl.Pods = append(pl.Pods, pp)
	}
	// Identities: one per distinct label set.
	sets := map[string]uint32{}
	for _, p := range pl.Pods {
		sets[strings.Join(p.Labels, "\x00")] = 0
	}
	keys := make([]string, 0, len(sets))
	for k := range sets {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	used := map[uint32]bool{}
	for _, k := range keys {
		id := endpoints.Identity(strings.Split(k, "\x00"))
		for used[id] {
			id++
			if id > 65535 {
				id = 256
			}
		}
		used[id] = true
		sets[k] = id
	}
	for i := range pl.Pods {
		pl.Pods[i].Identity = sets[strings.Join(pl.Pods[i].Labels, "\x00")]
	}
	return pl, nil
}

// hubbleLabels returns the pod's labels as Hubble shows them: "k8s:key=value"
// plus the namespace label Cilium adds, sorted.
func hubbleLabels(p PodSpec) []string {
	out := []string{"k8s:io.kubernetes.pod.namespace=" + p.Namespace}
	for k, v := range p.Labels {
		out = append(out, "k8s:"+k+"="+v)
	}
	sort.Strings(out)
	return out
}

// Pod returns the pod named name.
func (p *Plan) Pod(name string) (*PodPlan, bool) {
	for i := range p.Pods {
		if p.Pods[i].Name == name {
			return &p.Pods[i], true
		}
	}
	return nil, false
}

// Spec returns the topology entry of pod name.
func (p *Plan) Spec(name string) (*PodSpec, bool) {
	for i := range p.Topology.Pods {
		if p.Topology.Pods[i].Name == name {
			return &p.Topology.Pods[i], true
		}
	}
	return nil, false
}

// Endpoints returns the endpoints file of the lab: every pod with its
// addresses, host veth and identity, and every service with the backends its
// selector picks.
func (p *Plan) Endpoints() *endpoints.File {
	f := &endpoints.File{Node: p.Node}
	for i, pp := range p.Pods {
		ps := p.Topology.Pods[i]
		f.Pods = append(f.Pods, endpoints.Pod{
			Namespace: pp.Namespace, Name: pp.Name, Workload: ps.Workload, WorkloadKind: ps.Kind,
			Labels: slices.Clone(pp.Labels), IPs: []netip.Addr{pp.IPv4, pp.IPv6},
			Interface: pp.HostIf, IfIndex: pp.IfIndex, Identity: pp.Identity, Node: p.Node, NetNS: pp.NetNS,
		})
	}
	for _, s := range p.Topology.Services {
		es := endpoints.Service{Namespace: s.Namespace, Name: s.Name}
		for _, ip := range s.ClusterIPs {
			es.ClusterIPs = append(es.ClusterIPs, netip.MustParseAddr(ip))
		}
		for _, port := range s.Ports {
			es.Ports = append(es.Ports, endpoints.ServicePort{Name: port.Name, Port: port.Port, TargetPort: port.TargetPort, Protocol: port.Protocol})
		}
		for i := range p.Topology.Pods {
			ps := &p.Topology.Pods[i]
			if !s.Selects(ps) {
				continue
			}
			pp := p.Pods[i]
			for _, port := range s.Ports {
				for _, ip := range []netip.Addr{pp.IPv4, pp.IPv6} {
					es.Backends = append(es.Backends, endpoints.Backend{Namespace: pp.Namespace, Pod: pp.Name, IP: ip, Port: port.TargetPort, Protocol: port.Protocol})
				}
			}
		}
		f.Services = append(f.Services, es)
	}
	return f
}

// State-directory layout. Every file the lab writes is one of these, so down
// removes exactly these and nothing else a user may have put there.
const (
	planFile      = "lab.json"
	endpointsFile = "endpoints.yaml"
	policiesFile  = "policies.yaml"
	logDir        = "logs"
	readyDir      = "ready"
)

// EndpointsPath returns where Up writes the endpoints file by default.
func EndpointsPath(stateDir string) string { return filepath.Join(stateDir, endpointsFile) }

// ErrNoLab is returned when the state directory holds no lab.
var ErrNoLab = errors.New("no lab in the state directory (run 'flowbus lab up')")

// LoadPlan reads the plan saved in stateDir by Up.
func LoadPlan(stateDir string) (*Plan, error) {
	b, err := os.ReadFile(filepath.Join(stateDir, planFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w", stateDir, ErrNoLab)
	}
	if err != nil {
		return nil, fmt.Errorf("read lab state: %w", err)
	}
	var p Plan
	if err := json.Unmarshal(b, &p); err != nil {
		return nil, fmt.Errorf("lab state %s: %w", filepath.Join(stateDir, planFile), err)
	}
	return &p, nil
}

func savePlan(stateDir string, p *Plan) error {
	b, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return fmt.Errorf("encode lab state: %w", err)
	}
	return writeFileAtomic(filepath.Join(stateDir, planFile), b)
}

func writeFileAtomic(path string, b []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
