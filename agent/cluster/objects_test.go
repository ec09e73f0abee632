package cluster

import (
	"net/netip"
	"reflect"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func cnp(kind, ns, name string, fields map[string]any) map[string]any {
	meta := map[string]any{"name": name}
	if ns != "" {
		meta["namespace"] = ns
	}
	o := map[string]any{"apiVersion": "cilium.io/v2", "kind": kind, "metadata": meta}
	for k, v := range fields {
		o[k] = v
	}
	return o
}

func TestParseCiliumPolicyKeepsWellFormedPolicies(t *testing.T) {
	spec := map[string]any{"endpointSelector": map[string]any{}, "ingress": []any{map[string]any{}}}
	p, err := ParseCiliumPolicy(cnp(KindCiliumNetworkPolicy, "chat", "allow", map[string]any{"spec": spec}))
	if err != nil {
		t.Fatal(err)
	}
	want := CiliumPolicy{Namespace: "chat", Name: "allow", Spec: spec}
	if !reflect.DeepEqual(p, want) {
		t.Fatalf("got %+v, want %+v", p, want)
	}
	p, err = ParseCiliumPolicy(cnp(KindCiliumClusterwideNetworkPolicy, "ignored", "world", map[string]any{"specs": []any{spec, spec}}))
	if err != nil {
		t.Fatal(err)
	}
	want = CiliumPolicy{Name: "world", Clusterwide: true, Specs: []map[string]any{spec, spec}}
	if !reflect.DeepEqual(p, want) {
		t.Fatalf("got %+v, want %+v", p, want)
	}
}

func TestParseCiliumPolicyRejectsMalformedShapes(t *testing.T) {
	for _, c := range []struct {
		name string
		obj  map[string]any
		want string
	}{
		{"an unknown kind", cnp("NetworkPolicy", "a", "p", map[string]any{"spec": map[string]any{}}),
			`kind "NetworkPolicy": want CiliumNetworkPolicy or CiliumClusterwideNetworkPolicy`},
		{"no name", cnp(KindCiliumNetworkPolicy, "a", "", map[string]any{"spec": map[string]any{}}), "metadata.name is missing"},
		{"no namespace", cnp(KindCiliumNetworkPolicy, "", "p", map[string]any{"spec": map[string]any{}}), "metadata.namespace is missing"},
		{"no spec", cnp(KindCiliumNetworkPolicy, "a", "p", nil), "neither spec nor specs is set"},
		{"a string spec", cnp(KindCiliumNetworkPolicy, "a", "p", map[string]any{"spec": "allow all"}), "spec is a string, want an object"},
		{"specs not a list", cnp(KindCiliumNetworkPolicy, "a", "p", map[string]any{"specs": map[string]any{}}), "specs is an object, want a list of objects"},
		{"a number in specs", cnp(KindCiliumNetworkPolicy, "a", "p", map[string]any{"specs": []any{map[string]any{}, 3.0}}), "specs[1] is a number, want an object"},
		{"a list selector", cnp(KindCiliumNetworkPolicy, "a", "p", map[string]any{"spec": map[string]any{"endpointSelector": []any{}}}),
			"spec: endpointSelector is a list, want an object"},
		{"ingress an object", cnp(KindCiliumNetworkPolicy, "a", "p", map[string]any{"spec": map[string]any{"ingress": map[string]any{}}}),
			"spec: ingress is an object, want a list"},
		{"a string egress rule", cnp(KindCiliumNetworkPolicy, "a", "p", map[string]any{"specs": []any{map[string]any{"egress": []any{"x"}}}}),
			"specs[0]: egress[0] is a string, want an object"},
	} {
		t.Run(c.name+" is rejected", func(t *testing.T) {
			_, err := ParseCiliumPolicy(c.obj)
			if err == nil || err.Error() != c.want {
				t.Fatalf("error %v, want %q", err, c.want)
			}
		})
	}
}

func TestSortObjectsOrdersEveryList(t *testing.T) {
	np := func(ns, name string) *networkingv1.NetworkPolicy {
		return &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	}
	ip := netip.MustParseAddr
	s := &Snapshot{
		Pods:       []Pod{{Namespace: "b", Name: "a"}, {Namespace: "a", Name: "z"}, {Namespace: "a", Name: "b"}},
		Namespaces: []Namespace{{Name: "b"}, {Name: "a"}},
		Services: []Service{{Namespace: "b", Name: "s"}, {Namespace: "a", Name: "s", Backends: []Backend{
			{IP: ip("10.0.0.2"), Port: 80, Protocol: "TCP"}, {IP: ip("10.0.0.1"), Port: 81, Protocol: "TCP"},
			{IP: ip("10.0.0.1"), Port: 80, Protocol: "UDP"}, {IP: ip("10.0.0.1"), Port: 80, Protocol: "TCP"}}}},
		NetworkPolicies: []*networkingv1.NetworkPolicy{np("b", "a"), np("a", "b"), np("a", "a")},
		CiliumPolicies:  []CiliumPolicy{{Name: "c", Clusterwide: true}, {Namespace: "b", Name: "a"}, {Namespace: "a", Name: "x"}},
	}
	s.SortObjects()
	want := &Snapshot{
		Pods:       []Pod{{Namespace: "a", Name: "b"}, {Namespace: "a", Name: "z"}, {Namespace: "b", Name: "a"}},
		Namespaces: []Namespace{{Name: "a"}, {Name: "b"}},
		Services: []Service{{Namespace: "a", Name: "s", Backends: []Backend{
			{IP: ip("10.0.0.1"), Port: 80, Protocol: "TCP"}, {IP: ip("10.0.0.1"), Port: 80, Protocol: "UDP"},
			{IP: ip("10.0.0.1"), Port: 81, Protocol: "TCP"}, {IP: ip("10.0.0.2"), Port: 80, Protocol: "TCP"}}}, {Namespace: "b", Name: "s"}},
		NetworkPolicies: []*networkingv1.NetworkPolicy{np("a", "a"), np("a", "b"), np("b", "a")},
		CiliumPolicies:  []CiliumPolicy{{Namespace: "a", Name: "x"}, {Namespace: "b", Name: "a"}, {Name: "c", Clusterwide: true}},
	}
	if !reflect.DeepEqual(s, want) {
		t.Fatalf("sorted:\n%+v\nwant:\n%+v", s, want)
	}
}

func TestRejectedObjectsIsRegisteredOnce(t *testing.T) {
	reg := prometheus.NewRegistry()
	a, b := RejectedObjects(reg), RejectedObjects(reg)
	a.WithLabelValues("file", "NetworkPolicy").Inc()
	b.WithLabelValues("file", "NetworkPolicy").Inc()
	if n := testutil.ToFloat64(a.WithLabelValues("file", "NetworkPolicy")); n != 2 {
		t.Fatalf("counted %v, want 2 through either handle", n)
	}
}
