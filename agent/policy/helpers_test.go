package policy

import (
	"encoding/json"
	"net/netip"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
	networkingv1 "k8s.io/api/networking/v1"

	"github.com/flowbus/flowbus/agent/cluster"
	"github.com/flowbus/flowbus/agent/identity"
)

// shop is a small cluster: namespace shop (web, api, db), namespace ops
// (prom), a host-network pod on each of two nodes and the API server.
func shop() *cluster.Snapshot {
	ip := netip.MustParseAddr
	return &cluster.Snapshot{
		Namespaces: []cluster.Namespace{{Name: "shop", Labels: map[string]string{"team": "shop"}},
			{Name: "ops", Labels: map[string]string{"team": "ops"}}},
		Pods: []cluster.Pod{
			{Namespace: "shop", Name: "web", Node: "node-1", Labels: map[string]string{"app": "web"}, IPs: []netip.Addr{ip("10.0.0.1")},
				Ports: []cluster.ContainerPort{{Name: "http", Port: 8080, Protocol: "TCP"}}},
			{Namespace: "shop", Name: "api", Node: "node-1", Labels: map[string]string{"app": "api"}, IPs: []netip.Addr{ip("10.0.0.2")},
				Ports: []cluster.ContainerPort{{Name: "http", Port: 9090, Protocol: "TCP"}, {Name: "grpc", Port: 9000, Protocol: "TCP"}}},
			{Namespace: "shop", Name: "db", Node: "node-2", Labels: map[string]string{"app": "db"}, IPs: []netip.Addr{ip("10.0.0.3")},
				Ports: []cluster.ContainerPort{{Name: "pg", Port: 5432}}},
			{Namespace: "ops", Name: "prom", Node: "node-2", Labels: map[string]string{"app": "prometheus"}, IPs: []netip.Addr{ip("10.0.1.1")}},
			{Namespace: "kube-system", Name: "exporter-1", Node: "node-1", HostNetwork: true, IPs: []netip.Addr{ip("192.168.0.1")}},
			{Namespace: "kube-system", Name: "exporter-2", Node: "node-2", HostNetwork: true, IPs: []netip.Addr{ip("192.168.0.2")}},
		},
		Services: []cluster.Service{{Namespace: "default", Name: "kubernetes",
			Backends: []cluster.Backend{{IP: ip("192.168.0.100"), Port: 6443}}}},
	}
}

// addresses of shop's pods and of the world, by name.
var addr = map[string]netip.Addr{
	"web": netip.MustParseAddr("10.0.0.1"), "api": netip.MustParseAddr("10.0.0.2"), "db": netip.MustParseAddr("10.0.0.3"),
	"prom": netip.MustParseAddr("10.0.1.1"), "node-1": netip.MustParseAddr("192.168.0.1"), "node-2": netip.MustParseAddr("192.168.0.2"),
	"apiserver": netip.MustParseAddr("192.168.0.100"),
}

func at(name string) netip.Addr {
	if a, ok := addr[name]; ok {
		return a
	}
	return netip.MustParseAddr(name)
}

// netpol decodes a NetworkPolicy manifest written in YAML.
func netpol(t *testing.T, manifest string) *networkingv1.NetworkPolicy {
	t.Helper()
	var m map[string]any
	if err := yaml.Unmarshal([]byte(manifest), &m); err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	var np networkingv1.NetworkPolicy
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&np); err != nil {
		t.Fatal(err)
	}
	return &np
}

// cnp makes a Cilium policy (clusterwide when namespace is empty) of a
// spec written in YAML.
func cnp(t *testing.T, namespace, name, spec string) cluster.CiliumPolicy {
	t.Helper()
	var m map[string]any
	if err := yaml.Unmarshal([]byte(spec), &m); err != nil {
		t.Fatal(err)
	}
	return cluster.CiliumPolicy{Namespace: namespace, Name: name, Clusterwide: namespace == "", Spec: m}
}

func compileShop(t *testing.T, nps []*networkingv1.NetworkPolicy, cps ...cluster.CiliumPolicy) (*Result, *identity.Identities) {
	t.Helper()
	s := shop()
	s.NetworkPolicies, s.CiliumPolicies = nps, cps
	return Compile(s, identity.Allocator{Node: "node-1"})
}

// probe is one flow and the verdict and policies it should get.
type probe struct {
	from, to string
	proto    uint8
	port     uint16
	allowed  bool
	by       string // the policies that allowed or denied it, as "Kind ns/name, ..."; "-" for none
}

func checkProbes(t *testing.T, res *Result, ids *identity.Identities, probes []probe) {
	t.Helper()
	for _, p := range probes {
		v := Evaluate(res, ids, Flow{Src: at(p.from), Dst: at(p.to), Proto: p.proto, Port: p.port})
		var by []PolicyRef
		for _, d := range []Decision{v.Egress, v.Ingress} {
			if v.Allowed {
				by = append(by, d.AllowedBy...)
			} else {
				by = append(by, d.DeniedBy...)
			}
		}
		got := refsString(by)
		if v.Allowed != p.allowed || got != p.by {
			t.Errorf("%s -> %s %s/%d: allowed %v by %s; want %v by %s", p.from, p.to, ProtoName(p.proto), p.port, v.Allowed, got, p.allowed, p.by)
		}
	}
}

func refsString(refs []PolicyRef) string {
	if len(refs) == 0 {
		return "-"
	}
	s := make([]string, len(refs))
	for i, r := range refs {
		s[i] = r.String()
	}
	return strings.Join(s, ", ")
}
