package policy

import (
	"testing"

	"github.com/flowbus/flowbus/agent/cluster"
)

const (
	cnpAPI   = "CiliumNetworkPolicy shop/api"
	cnpWeb   = "CiliumNetworkPolicy shop/web-out"
	ccnpName = "CiliumClusterwideNetworkPolicy "
)

func TestCiliumPolicies(t *testing.T) {
	for _, c := range []struct {
		name     string
		policies []cluster.CiliumPolicy
		probes   []probe
	}{
		{"fromEndpoints is limited to the policy's namespace, toPorts to its ports", []cluster.CiliumPolicy{cnp(t, "shop", "api", `
endpointSelector: {matchLabels: {app: api}}
ingress:
- fromEndpoints: [{matchLabels: {app: web}}, {matchLabels: {app: prometheus}}]
  toPorts: [{ports: [{port: "9090", protocol: TCP}]}]`)}, []probe{
			{"web", "api", ProtoTCP, 9090, true, cnpAPI},
			{"web", "api", ProtoTCP, 9000, false, cnpAPI},
			{"web", "api", ProtoUDP, 9090, false, cnpAPI},
			{"prom", "api", ProtoTCP, 9090, false, cnpAPI},
			{"db", "api", ProtoTCP, 9090, false, cnpAPI},
			{"api", "web", ProtoTCP, 8080, true, "-"},
		}},
		{"a namespace label or io.kubernetes.pod.namespace reaches other namespaces", []cluster.CiliumPolicy{cnp(t, "shop", "api", `
endpointSelector: {matchLabels: {app: api}}
ingress:
- fromEndpoints:
  - matchLabels: {k8s:io.kubernetes.pod.namespace: ops}
  - matchLabels: {io.cilium.k8s.namespace.labels.team: shop, app: db}`)}, []probe{
			{"prom", "api", ProtoTCP, 9000, true, cnpAPI},
			{"db", "api", ProtoUDP, 53, true, cnpAPI},
			{"web", "api", ProtoTCP, 9000, false, cnpAPI},
		}},
		{"toCIDRSet allows its prefix minus its exceptions, pods included", []cluster.CiliumPolicy{cnp(t, "shop", "web-out", `
endpointSelector: {matchLabels: {app: web}}
egress:
- toCIDRSet: [{cidr: 8.8.0.0/16, except: [8.8.8.0/24]}, {cidr: 10.0.0.0/30}]`)}, []probe{
			{"web", "8.8.4.4", ProtoUDP, 53, true, cnpWeb},
			{"web", "8.8.8.8", ProtoUDP, 53, false, cnpWeb},
			{"web", "1.1.1.1", ProtoUDP, 53, false, cnpWeb},
			{"web", "api", ProtoTCP, 9090, true, cnpWeb},
			{"web", "prom", ProtoTCP, 9090, false, cnpWeb},
		}},
		{"toEntities world matches addresses outside the cluster, never pods inside a policy prefix", []cluster.CiliumPolicy{
			cnp(t, "shop", "web-out", `
endpointSelector: {matchLabels: {app: web}}
egress: [{toEntities: [world]}]`),
			cnp(t, "ops", "prefixes", `
endpointSelector: {}
egress: [{toCIDR: [10.0.0.0/8, 203.0.113.0/24, "2001:db8::/32"]}]`)}, []probe{
			{"web", "1.1.1.1", ProtoTCP, 443, true, cnpWeb},
			{"web", "203.0.113.5", ProtoTCP, 443, true, cnpWeb},
			{"web", "2001:db8::1", ProtoTCP, 443, true, cnpWeb},
			{"web", "api", ProtoTCP, 9090, false, cnpWeb},
			{"web", "node-1", ProtoTCP, 9100, false, cnpWeb},
		}},
		{"toEntities cluster is every pod, node and the API server, not the world", []cluster.CiliumPolicy{cnp(t, "shop", "web-out", `
endpointSelector: {matchLabels: {app: web}}
egress: [{toEntities: [cluster]}]`)}, []probe{
			{"web", "prom", ProtoTCP, 9090, true, cnpWeb},
			{"web", "node-1", ProtoTCP, 9100, true, cnpWeb},
			{"web", "node-2", ProtoTCP, 9100, true, cnpWeb},
			{"web", "apiserver", ProtoTCP, 6443, true, cnpWeb},
			{"web", "1.1.1.1", ProtoTCP, 443, false, cnpWeb},
		}},
		{"toEntities host is the endpoint's own node; kube-apiserver the API server", []cluster.CiliumPolicy{cnp(t, "shop", "web-out", `
endpointSelector: {matchLabels: {app: web}}
egress: [{toEntities: [host, kube-apiserver]}]`)}, []probe{
			{"web", "node-1", ProtoTCP, 9100, true, cnpWeb},
			{"web", "node-2", ProtoTCP, 9100, false, cnpWeb},
			{"web", "apiserver", ProtoTCP, 6443, true, cnpWeb},
		}},
		{"a reserved label selects that reserved identity", []cluster.CiliumPolicy{cnp(t, "shop", "api", `
endpointSelector: {matchLabels: {app: api}}
ingress: [{fromEndpoints: [{matchLabels: {"reserved:host": ""}}]}]`)}, []probe{
			{"node-1", "api", ProtoTCP, 9090, true, cnpAPI},
			{"node-2", "api", ProtoTCP, 9090, false, cnpAPI},
		}},
		{"a deny rule wins over any allow, with its own policy as denied_by", []cluster.CiliumPolicy{
			cnp(t, "shop", "api", `
endpointSelector: {matchLabels: {app: api}}
ingress: [{fromEntities: [all]}]
ingressDeny: [{fromEndpoints: [{matchLabels: {app: web}}], toPorts: [{ports: [{port: "9000"}]}]}]`)}, []probe{
			{"web", "api", ProtoTCP, 9000, false, cnpAPI},
			{"web", "api", ProtoUDP, 9000, false, cnpAPI},
			{"web", "api", ProtoTCP, 9090, true, cnpAPI},
			{"db", "api", ProtoTCP, 9000, true, cnpAPI},
		}},
		{"enableDefaultDeny false adds allows without isolating", []cluster.CiliumPolicy{cnp(t, "shop", "api", `
endpointSelector: {matchLabels: {app: api}}
enableDefaultDeny: {ingress: false}
ingress: [{fromEndpoints: [{matchLabels: {app: web}}]}]`)}, []probe{
			{"db", "api", ProtoTCP, 9090, true, "-"},
		}},
		{"an empty ingress rule isolates and allows nothing", []cluster.CiliumPolicy{cnp(t, "shop", "api", `
endpointSelector: {matchLabels: {app: api}}
ingress: [{}]`)}, []probe{
			{"web", "api", ProtoTCP, 9090, false, cnpAPI},
		}},
		{"an explicitly empty fromEndpoints selects nothing", []cluster.CiliumPolicy{cnp(t, "shop", "api", `
endpointSelector: {matchLabels: {app: api}}
ingress: [{fromEndpoints: [], toPorts: [{ports: [{port: "9090"}]}]}]`)}, []probe{
			{"web", "api", ProtoTCP, 9090, false, cnpAPI},
		}},
		{"toPorts without peers allows every peer on them; ANY is TCP, UDP and SCTP; endPort a range", []cluster.CiliumPolicy{cnp(t, "shop", "api", `
endpointSelector: {matchLabels: {app: api}}
ingress: [{toPorts: [{ports: [{port: "53", protocol: ANY}, {port: "9000", endPort: 9099, protocol: TCP}, {port: grpc}]}]}]`)}, []probe{
			{"prom", "api", ProtoUDP, 53, true, cnpAPI},
			{"1.2.3.4", "api", ProtoSCTP, 53, true, cnpAPI},
			{"web", "api", ProtoTCP, 9050, true, cnpAPI},
			{"web", "api", ProtoTCP, 9100, false, cnpAPI},
			{"web", "api", ProtoICMP, 0, false, cnpAPI},
		}},
		{"a clusterwide policy selects in every namespace; its peers are pods of any namespace", []cluster.CiliumPolicy{cnp(t, "", "lockdown", `
endpointSelector: {}
ingress: [{fromEndpoints: [{matchLabels: {app: prometheus}}]}]`)}, []probe{
			{"prom", "api", ProtoTCP, 9090, true, ccnpName + "lockdown"},
			{"web", "api", ProtoTCP, 9090, false, ccnpName + "lockdown"},
			{"api", "prom", ProtoTCP, 9090, false, ccnpName + "lockdown"},
			{"node-1", "web", ProtoTCP, 8080, false, ccnpName + "lockdown"},
		}},
		{"a namespaced policy's subject stays in its namespace whatever its selector says", []cluster.CiliumPolicy{cnp(t, "shop", "api", `
endpointSelector: {matchLabels: {k8s:io.kubernetes.pod.namespace: ops}}
ingress: [{}]`)}, []probe{
			{"web", "prom", ProtoTCP, 9090, true, "-"},
			{"prom", "web", ProtoTCP, 8080, false, cnpAPI},
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			res, ids := compileShop(t, nil, c.policies...)
			if len(res.Errors) > 0 {
				t.Fatalf("rejected: %v", res.Errors)
			}
			checkProbes(t, res, ids, c.probes)
		})
	}
}

func TestL7RulesAreParsedAndNotedAsNotEnforced(t *testing.T) {
	res, ids := compileShop(t, nil, cnp(t, "shop", "api", `
endpointSelector: {matchLabels: {app: api}}
ingress:
- fromEndpoints: [{matchLabels: {app: web}}]
  toPorts:
  - ports: [{port: "9090", protocol: TCP}]
    rules:
      http: [{method: GET, path: "/v1/.*"}, {method: POST, path: /v1/orders, headers: ["X-Tenant: a"]}]
  - ports: [{port: "9000", protocol: TCP}]
    serverNames: [api.shop]`))
	if len(res.Errors) > 0 {
		t.Fatalf("rejected: %v", res.Errors)
	}
	if res.Stats.L7NotEnforced != 3 || len(res.Notes) != 2 {
		t.Fatalf("L7NotEnforced %d, notes %v; want 3 rules in 2 notes", res.Stats.L7NotEnforced, res.Notes)
	}
	if n := res.Notes[0]; n.Field != "spec.ingress[0].toPorts[0].rules" || n.Rules != 2 ||
		n.What != "2 L7 rule(s) (http) not enforced: the datapath allows the port at L4" {
		t.Errorf("note %+v", n)
	}
	if n := res.Notes[1]; n.Field != "spec.ingress[0].toPorts[1].serverNames" {
		t.Errorf("note %+v", n)
	}
	checkProbes(t, res, ids, []probe{{"web", "api", ProtoTCP, 9090, true, cnpAPI}, {"web", "api", ProtoTCP, 9000, true, cnpAPI}})
}

func TestARejectedPolicyHasNoNotes(t *testing.T) {
	res, _ := compileShop(t, nil, cnp(t, "shop", "api", `
endpointSelector: {matchLabels: {app: api}}
ingress:
- toPorts:
  - ports: [{port: htp, protocol: TCP}]
    rules: {http: [{method: GET}]}`))
	if len(res.Errors) != 1 || len(res.Notes) != 0 || res.Stats.L7NotEnforced != 0 {
		t.Errorf("errors %v, notes %v, stats %+v; want the error alone", res.Errors, res.Notes, res.Stats)
	}
}
