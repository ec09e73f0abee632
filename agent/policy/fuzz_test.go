package policy

import (
	"encoding/json"
	"testing"

	networkingv1 "k8s.io/api/networking/v1"

	"github.com/flowbus/flowbus/agent/cluster"
	"github.com/flowbus/flowbus/agent/identity"
)

// FuzzCompile feeds arbitrary Cilium specs and NetworkPolicy specs (as the
// API server's JSON) to the compiler: it must never panic, and a policy it
// does not reject must leave every endpoint it selects either compiled or
// failed closed with a reason.
func FuzzCompile(f *testing.F) {
	for _, s := range []string{
		`{"endpointSelector":{"matchLabels":{"app":"api"}},"ingress":[{"fromEndpoints":[{"matchLabels":{"app":"web"}}],"toPorts":[{"ports":[{"port":"9090","protocol":"TCP"}]}]}]}`,
		`{"endpointSelector":{},"egress":[{"toCIDRSet":[{"cidr":"10.0.0.0/8","except":["10.1.0.0/16"]}]},{"toEntities":["world","cluster"]}]}`,
		`{"endpointSelector":{"matchExpressions":[{"key":"app","operator":"In","values":["a","b"]}]},"ingressDeny":[{"fromCIDR":["1.2.3.4"]}],"enableDefaultDeny":{"egress":false}}`,
		`{"endpointSelector":{},"ingress":[{"toPorts":[{"ports":[{"port":"http"},{"port":"1000","endPort":2000}],"rules":{"http":[{"method":"GET"}]}}]}]}`,
	} {
		f.Add(s, `{"podSelector":{},"ingress":[{"from":[{"ipBlock":{"cidr":"10.0.0.0/24","except":["10.0.0.0/25"]}}],"ports":[{"port":9090,"endPort":9100}]}]}`)
	}
	f.Fuzz(func(t *testing.T, cspec, npspec string) {
		s := shop()
		var spec map[string]any
		if json.Unmarshal([]byte(cspec), &spec) == nil {
			s.CiliumPolicies = []cluster.CiliumPolicy{{Namespace: "shop", Name: "c", Spec: spec}, {Name: "cc", Clusterwide: true, Specs: []map[string]any{spec}}}
		}
		var np networkingv1.NetworkPolicy
		if json.Unmarshal([]byte(npspec), &np.Spec) == nil {
			np.Namespace, np.Name = "shop", "n"
			s.NetworkPolicies = []*networkingv1.NetworkPolicy{&np}
		}
		res, _ := Compile(s, identity.Allocator{})
		for _, ep := range res.Endpoints {
			for _, d := range []*DirectionPolicy{&ep.Ingress, &ep.Egress} {
				if d.FailClosed != "" && (!d.Enforced || len(d.Allow)+len(d.Deny) > 0 || len(d.SelectedBy) == 0) {
					t.Fatalf("%s/%s fails closed without closing: %+v", ep.Namespace, ep.Name, d)
				}
			}
		}
		if res.Stats.Policies+res.Stats.Rejected != len(s.CiliumPolicies)+len(s.NetworkPolicies) {
			t.Fatalf("stats %+v for %d policies", res.Stats, len(s.CiliumPolicies)+len(s.NetworkPolicies))
		}
	})
}
