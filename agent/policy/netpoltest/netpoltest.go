package netpoltest

import (
	"bytes"
	"embed"
	"encoding/json"
	"fmt"
	"net/netip"
	"path"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
	networkingv1 "k8s.io/api/networking/v1"

	"github.com/flowbus/flowbus/agent/cluster"
	"github.com/flowbus/flowbus/agent/identity"
)

//go:embed testdata/*.yaml
var files embed.FS

// Namespaces are the model's namespaces.
var Namespaces = []string{"x", "y", "z"}

// Scenario is one upstream test.
type Scenario struct {
	File      string   `yaml:"-"`
	Name      string   `yaml:"name"`
	Pods      []string `yaml:"pods"`
	Protocols []string `yaml:"protocols"`
	Ports     []uint16 `yaml:"ports"`
	Steps     []Step   `yaml:"steps"`
}

// Step changes the cluster, then probes it.
type Step struct {
	Create             []Manifest                   `yaml:"create"`
	Update             []Manifest                   `yaml:"update"`
	DeleteAllPolicies  bool                         `yaml:"deleteAllPolicies"`
	AddNamespaceLabels map[string]map[string]string `yaml:"addNamespaceLabels"`
	AddPodLabels       map[string]map[string]string `yaml:"addPodLabels"`
	Probes             []Probe                      `yaml:"probes"`
}

// Manifest is a policy object as kubectl would apply it.
type Manifest map[string]any

// UnmarshalYAML decodes a manifest into plain maps and lists, as JSON
// would.
func (m *Manifest) UnmarshalYAML(n *yaml.Node) error {
	var v map[string]any
	if err := n.Decode(&v); err != nil {
		return err
	}
	*m = v
	return nil
}

// Probe is a connection attempt from every pod to every pod on one port and
// protocol, with the expected outcome.
type Probe struct {
	Port     uint16   `yaml:"port"`
	Protocol string   `yaml:"protocol"`
	Default  bool     `yaml:"default"`
	Expect   []Expect `yaml:"expect"`
}

// Expect overrides the expectation of the pairs its patterns match.
type Expect struct {
	From      string `yaml:"from"`
	To        string `yaml:"to"`
	Connected bool   `yaml:"connected"`
}

// Scenarios returns every scenario, in file order.
func Scenarios() ([]*Scenario, error) {
	names, err := files.ReadDir("testdata")
	if err != nil {
		return nil, err
	}
	var out []*Scenario
	for _, n := range names {
		b, err := files.ReadFile(path.Join("testdata", n.Name()))
		if err != nil {
			return nil, err
		}
		s, err := Parse(b)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", n.Name(), err)
		}
		s.File = n.Name()
		out = append(out, s)
	}
	return out, nil
}

// Parse decodes and checks one scenario file; unknown keys are an error.
func Parse(b []byte) (*Scenario, error) {
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	var s Scenario
	if err := dec.Decode(&s); err != nil {
		return nil, err
	}
	if s.Name == "" || len(s.Pods) == 0 || len(s.Steps) == 0 {
		return nil, fmt.Errorf("a scenario needs a name, pods and steps")
	}
	for _, p := range s.Pods {
		ns, name, ok := strings.Cut(p, "/")
		if !ok || !slices.Contains(Namespaces, ns) || name == "" {
			return nil, fmt.Errorf("pod %q: want <x|y|z>/<name>", p)
		}
	}
	for i, st := range s.Steps {
		for _, pr := range st.Probes {
			if !slices.Contains(s.Protocols, pr.Protocol) || !slices.Contains(s.Ports, pr.Port) {
				return nil, fmt.Errorf("step %d: probe %s/%d: no server listens there", i, pr.Protocol, pr.Port)
			}
			for _, e := range pr.Expect {
				if !validPattern(e.From) || !validPattern(e.To) {
					return nil, fmt.Errorf("step %d: expect %+v: want patterns *, <ns>/* or <ns>/<pod>", i, e)
				}
			}
		}
	}
	return &s, nil
}

func validPattern(p string) bool {
	if p == "*" {
		return true
	}
	ns, pod, ok := strings.Cut(p, "/")
	return ok && slices.Contains(Namespaces, ns) && pod != ""
}

func matches(pattern, pod string) bool {
	if pattern == "*" {
		return true
	}
	pns, ppod, _ := strings.Cut(pattern, "/")
	ns, name, _ := strings.Cut(pod, "/")
	return pns == ns && (ppod == "*" || ppod == name)
}

// Table is a truth table: Table[from][to] is whether from connects to to.
type Table map[string]map[string]bool

// Expected returns the truth table the probe expects over pods.
func (p *Probe) Expected(pods []string) Table {
	t := Table{}
	for _, from := range pods {
		t[from] = map[string]bool{}
		for _, to := range pods {
			t[from][to] = p.Default
		}
	}
	for _, e := range p.Expect {
		for _, from := range pods {
			for _, to := range pods {
				if matches(e.From, from) && matches(e.To, to) {
					t[from][to] = e.Connected
				}
			}
		}
	}
	return t
}

// Format prints t as upstream does: a row per source, a column per
// destination, "." for connected and "X" for blocked.
func (t Table) Format(pods []string) string {
	var b strings.Builder
	b.WriteString("-")
	for _, to := range pods {
		b.WriteString("\t" + to)
	}
	for _, from := range pods {
		b.WriteString("\n" + from)
		for _, to := range pods {
			if t[from][to] {
				b.WriteString("\t.")
			} else {
				b.WriteString("\tX")
			}
		}
	}
	return b.String()
}

// DefaultIPs gives the model's pods addresses in 10.244.0.0/16, x/a first.
func DefaultIPs(pods []string) map[string]netip.Addr {
	out := map[string]netip.Addr{}
	for i, p := range pods {
		out[p] = netip.AddrFrom4([4]byte{10, 244, byte(i / 250), byte(i%250 + 1)})
	}
	return out
}

// State is the cluster as a scenario's steps have left it.
type State struct {
	s         *Scenario
	ips       map[string]netip.Addr
	policies  []Manifest // in creation order
	nsLabels  map[string]map[string]string
	podLabels map[string]map[string]string
}

// NewState starts a scenario with no policies; ips gives each pod its
// address (DefaultIPs, or the lab's).
func NewState(s *Scenario, ips map[string]netip.Addr) *State {
	st := &State{s: s, ips: ips, nsLabels: map[string]map[string]string{}, podLabels: map[string]map[string]string{}}
	for _, ns := range Namespaces {
		st.nsLabels[ns] = map[string]string{identity.LabelNamespaceName: ns}
	}
	for _, p := range s.Pods {
		_, name, _ := strings.Cut(p, "/")
		st.podLabels[p] = map[string]string{"pod": name}
	}
	return st
}

// Step applies a step's changes and returns the cluster it leaves, what a
// replay publishes before it probes.
func (st *State) Step(step *Step) (*cluster.Snapshot, error) {
	if err := st.Apply(step); err != nil {
		return nil, err
	}
	return st.Snapshot()
}

// Apply applies a step's changes (not its probes).
func (st *State) Apply(step *Step) error {
	if step.DeleteAllPolicies {
		st.policies = nil
	}
	for _, m := range step.Create {
		if i := st.find(m); i >= 0 {
			return fmt.Errorf("create %s: already exists", key(m))
		}
		st.policies = append(st.policies, m)
	}
	for _, m := range step.Update {
		i := st.find(m)
		if i < 0 {
			return fmt.Errorf("update %s: not found", key(m))
		}
		st.policies[i] = m
	}
	for ns, l := range step.AddNamespaceLabels {
		if st.nsLabels[ns] == nil {
			return fmt.Errorf("label namespace %s: not in the model", ns)
		}
		for k, v := range l {
			st.nsLabels[ns][k] = v
		}
	}
	for p, l := range step.AddPodLabels {
		if st.podLabels[p] == nil {
			return fmt.Errorf("label pod %s: not in the model", p)
		}
		for k, v := range l {
			st.podLabels[p][k] = v
		}
	}
	return nil
}

func key(m Manifest) string {
	md, _ := m["metadata"].(map[string]any)
	return fmt.Sprintf("%v %v/%v", m["kind"], md["namespace"], md["name"])
}

func (st *State) find(m Manifest) int {
	return slices.IndexFunc(st.policies, func(o Manifest) bool { return key(o) == key(m) })
}

// NamespaceLabels returns the namespaces' labels now.
func (st *State) NamespaceLabels() map[string]map[string]string { return st.nsLabels }

// PodLabels returns the pods' labels now.
func (st *State) PodLabels() map[string]map[string]string { return st.podLabels }

// Manifests returns the policies now, with their placeholders replaced.
func (st *State) Manifests() ([]Manifest, error) {
	out := make([]Manifest, len(st.policies))
	for i, m := range st.policies {
		v, err := st.substitute(map[string]any(m))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", key(m), err)
		}
		out[i] = Manifest(v.(map[string]any))
	}
	return out, nil
}

func (st *State) substitute(v any) (any, error) {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			s, err := st.substitute(e)
			if err != nil {
				return nil, err
			}
			out[k] = s
		}
		return out, nil
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			s, err := st.substitute(e)
			if err != nil {
				return nil, err
			}
			out[i] = s
		}
		return out, nil
	case string:
		return st.expand(x)
	}
	return v, nil
}

func (st *State) expand(s string) (string, error) {
	for {
		i := strings.Index(s, "${")
		if i < 0 {
			return s, nil
		}
		j := strings.Index(s[i:], "}")
		if j < 0 {
			return "", fmt.Errorf("unterminated placeholder in %q", s)
		}
		fn, pod, _ := strings.Cut(s[i+2:i+j], ":")
		ip, ok := st.ips[pod]
		if !ok {
			return "", fmt.Errorf("placeholder %q: no address for pod %q", s[i:i+j+1], pod)
		}
		var r string
		switch fn {
		case "ip":
			r = ip.String()
		case "host":
			r = netip.PrefixFrom(ip, ip.BitLen()).String()
		case "large":
			r = netip.PrefixFrom(ip, 4).Masked().String()
		default:
			return "", fmt.Errorf("placeholder %q: unknown function %q", s[i:i+j+1], fn)
		}
		s = s[:i] + r + s[i+j+1:]
	}
}

// NetworkPolicies decodes the policies now (every manifest of kind
// NetworkPolicy; unknown fields are an error).
func (st *State) NetworkPolicies() ([]*networkingv1.NetworkPolicy, error) {
	ms, err := st.Manifests()
	if err != nil {
		return nil, err
	}
	var out []*networkingv1.NetworkPolicy
	for _, m := range ms {
		if m["kind"] != "NetworkPolicy" {
			return nil, fmt.Errorf("%s: only NetworkPolicy manifests are supported", key(m))
		}
		b, err := json.Marshal(m)
		if err != nil {
			return nil, err
		}
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		var np networkingv1.NetworkPolicy
		if err := dec.Decode(&np); err != nil {
			return nil, fmt.Errorf("%s: %w", key(m), err)
		}
		out = append(out, &np)
	}
	return out, nil
}

// Snapshot returns the cluster now, as a source would publish it: the
// namespaces, the pods (on one node) with their labels, addresses and
// container ports, and the policies.
func (st *State) Snapshot() (*cluster.Snapshot, error) {
	nps, err := st.NetworkPolicies()
	if err != nil {
		return nil, err
	}
	snap := &cluster.Snapshot{Source: "netpoltest", NetworkPolicies: nps}
	for _, ns := range Namespaces {
		snap.Namespaces = append(snap.Namespaces, cluster.Namespace{Name: ns, Labels: clone(st.nsLabels[ns])})
	}
	for _, p := range st.s.Pods {
		ns, name, _ := strings.Cut(p, "/")
		ip, ok := st.ips[p]
		if !ok {
			return nil, fmt.Errorf("no address for pod %s", p)
		}
		pod := cluster.Pod{Namespace: ns, Name: name, Labels: clone(st.podLabels[p]), IPs: []netip.Addr{ip}, Node: "node-1"}
		for _, proto := range st.s.Protocols {
			for _, port := range st.s.Ports {
				pod.Ports = append(pod.Ports, cluster.ContainerPort{
					Name: fmt.Sprintf("serve-%d-%s", port, strings.ToLower(proto)), Port: port, Protocol: proto})
			}
		}
		snap.Pods = append(snap.Pods, pod)
	}
	return snap, nil
}

func clone(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
