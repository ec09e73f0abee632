package policy

import (
	"strings"
	"testing"

	networkingv1 "k8s.io/api/networking/v1"

	"github.com/flowbus/flowbus/agent/cluster"
)

// goodAllowWeb is a valid policy beside every bad one: it must keep being
// enforced.
const goodAllowWeb = `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web-from-ops, namespace: shop}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress: [{from: [{namespaceSelector: {matchLabels: {team: ops}}}]}]`

func TestBadInputRejectsOnePolicyAndFailsItsEndpointsClosed(t *testing.T) {
	for _, c := range []struct {
		name    string
		np      string
		cp      *cluster.CiliumPolicy
		err     string   // the Error, in full
		closed  []string // "pod ingress|egress" that fail closed
		allowed []probe  // still decided as usual
	}{
		{name: "bad selector key", np: `
metadata: {name: bad, namespace: shop}
spec: {podSelector: {matchLabels: {"app/": api}}, policyTypes: [Ingress]}`,
			err:    `NetworkPolicy shop/bad: spec.podSelector.matchLabels: key "app/"`,
			closed: []string{"web ingress", "api ingress", "db ingress"}},
		{name: "bad operator", np: `
metadata: {name: bad, namespace: shop}
spec:
  podSelector: {matchLabels: {app: api}}
  ingress: [{from: [{podSelector: {matchExpressions: [{key: app, operator: Equals, values: [web]}]}}]}]`,
			err:    `NetworkPolicy shop/bad: spec.ingress[0].from[0].podSelector.matchExpressions[0].operator: unknown operator "Equals" (want In, NotIn, Exists or DoesNotExist)`,
			closed: []string{"api ingress"}},
		{name: "unknown named port", np: `
metadata: {name: bad, namespace: shop}
spec:
  podSelector: {matchLabels: {app: api}}
  ingress: [{ports: [{port: htp}]}]`,
			err:    `NetworkPolicy shop/bad: spec.ingress[0].ports[0].port: named port "htp" is declared by no pod`,
			closed: []string{"api ingress"}},
		{name: "malformed CIDR", np: `
metadata: {name: bad, namespace: shop}
spec:
  podSelector: {matchLabels: {app: api}}
  policyTypes: [Egress]
  egress: [{to: [{ipBlock: {cidr: 10.0.0.300/8}}]}]`,
			err:    `NetworkPolicy shop/bad: spec.egress[0].to[0].ipBlock.cidr: malformed CIDR "10.0.0.300/8"`,
			closed: []string{"api egress"}},
		{name: "except outside the CIDR", np: `
metadata: {name: bad, namespace: shop}
spec:
  podSelector: {matchLabels: {app: api}}
  policyTypes: [Egress]
  egress: [{to: [{ipBlock: {cidr: 10.0.0.0/16, except: [10.1.0.0/24]}}]}]`,
			err:    `NetworkPolicy shop/bad: spec.egress[0].to[0].ipBlock.except[0]: 10.1.0.0/24 is not inside 10.0.0.0/16`,
			closed: []string{"api egress"}},
		{name: "endPort on a named port", np: `
metadata: {name: bad, namespace: shop}
spec:
  podSelector: {matchLabels: {app: api}}
  ingress: [{ports: [{port: http, endPort: 9999}]}]`,
			err:    `NetworkPolicy shop/bad: spec.ingress[0].ports[0].endPort: endPort needs a numeric port, not the named port "http"`,
			closed: []string{"api ingress"}},
		{name: "unknown protocol", np: `
metadata: {name: bad, namespace: shop}
spec:
  podSelector: {matchLabels: {app: api}}
  ingress: [{ports: [{protocol: ICMP}]}]`,
			err:    `NetworkPolicy shop/bad: spec.ingress[0].ports[0].protocol: unknown protocol "ICMP" (want TCP, UDP or SCTP)`,
			closed: []string{"api ingress"}},
		{name: "Cilium: unknown field", cp: ptr(cnp(t, "shop", "bad", `
endpointSelector: {matchLabels: {app: api}}
ingress: [{fromEndpointz: [{}]}]`)),
			err:    `CiliumNetworkPolicy shop/bad: spec.ingress[0].fromEndpointz: unknown field "fromEndpointz"`,
			closed: []string{"web ingress", "api ingress", "db ingress"}},
		{name: "Cilium: unsupported field", cp: ptr(cnp(t, "shop", "bad", `
endpointSelector: {matchLabels: {app: api}}
egress: [{toFQDNs: [{matchName: example.com}]}]`)),
			err:    `CiliumNetworkPolicy shop/bad: spec.egress[0].toFQDNs: toFQDNs is not supported by flowbus`,
			closed: []string{"web egress", "api egress", "db egress"}},
		{name: "Cilium: unknown entity", cp: ptr(cnp(t, "shop", "bad", `
endpointSelector: {matchLabels: {app: api}}
egress: [{toEntities: [wrld]}]`)),
			err:    `CiliumNetworkPolicy shop/bad: spec.egress[0].toEntities[0]: unknown entity "wrld"`,
			closed: []string{"web egress", "api egress", "db egress"}},
		{name: "Cilium: two kinds of peer in one rule", cp: ptr(cnp(t, "shop", "bad", `
endpointSelector: {matchLabels: {app: api}}
ingress: [{fromEndpoints: [{}], fromCIDR: [10.0.0.0/8]}]`)),
			err:    `CiliumNetworkPolicy shop/bad: spec.ingress[0]: combining fromEndpoints and fromCIDR is not supported (as in Cilium)`,
			closed: []string{"web ingress", "api ingress", "db ingress"}},
		{name: "Cilium: malformed toCIDR", cp: ptr(cnp(t, "shop", "bad", `
endpointSelector: {matchLabels: {app: api}}
egress: [{toCIDR: [300.1.1.1/32]}]`)),
			err:    `CiliumNetworkPolicy shop/bad: spec.egress[0].toCIDR[0]: malformed CIDR "300.1.1.1/32"`,
			closed: []string{"web egress", "api egress", "db egress"}},
		{name: "Cilium: clusterwide with a bad endpointSelector", cp: ptr(cnp(t, "", "bad", `
endpointSelector: {matchLabels: {app: [api]}}
ingress: [{}]`)),
			err:    `CiliumClusterwideNetworkPolicy bad: spec.endpointSelector.matchLabels.app: want a string, got a list`,
			closed: []string{"web ingress", "api ingress", "db ingress", "prom ingress"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			var nps []*networkingv1.NetworkPolicy
			var cps []cluster.CiliumPolicy
			nps = append(nps, netpol(t, goodAllowWeb))
			if c.np != "" {
				nps = append(nps, netpol(t, "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n"+strings.TrimSpace(c.np)))
			}
			if c.cp != nil {
				cps = append(cps, *c.cp)
			}
			res, ids := compileShop(t, nps, cps...)
			if len(res.Errors) != 1 || !strings.HasPrefix(res.Errors[0].Error(), c.err) {
				t.Fatalf("errors %v, want one starting %q", res.Errors, c.err)
			}
			if res.Stats.Rejected != 1 || res.Stats.Policies != 1 || res.Stats.FailedClosed != len(c.closed) {
				t.Errorf("stats %+v, want 1 rejected, 1 compiled, %d failed closed", res.Stats, len(c.closed))
			}
			bad := res.Errors[0].Policy
			for _, ep := range res.Endpoints {
				for _, d := range []Direction{Ingress, Egress} {
					dp := ep.Direction(d)
					want := contains(c.closed, ep.Name+" "+d.String())
					if got := dp.FailClosed != ""; got != want {
						t.Errorf("%s %s fails closed: %v, want %v", ep.Name, d, got, want)
					}
					if want && (!dp.Enforced || len(dp.Allow) != 0 || !strings.Contains(dp.FailClosed, c.err) || !containsRef(dp.SelectedBy, bad)) {
						t.Errorf("%s %s: %+v, want enforced, no entries, the error as reason and %s in SelectedBy", ep.Name, d, dp, bad)
					}
				}
			}
			// The good policy keeps working where the bad one does not reach.
			if !contains(c.closed, "web ingress") {
				checkProbes(t, res, ids, []probe{
					{"prom", "web", ProtoTCP, 8080, true, "NetworkPolicy shop/web-from-ops"},
					{"8.8.8.8", "web", ProtoTCP, 8080, false, "NetworkPolicy shop/web-from-ops"},
				})
			}
			// A closed endpoint drops everything, denied by the bad policy.
			for _, cl := range c.closed {
				pod, dir, _ := strings.Cut(cl, " ")
				from, to := "8.8.8.8", pod
				if dir == "egress" {
					from, to = pod, "8.8.8.8"
				}
				v := Evaluate(res, ids, Flow{Src: at(from), Dst: at(to), Proto: ProtoTCP, Port: 80})
				d := v.Ingress
				if dir == "egress" {
					d = v.Egress
				}
				if v.Allowed || !containsRef(d.DeniedBy, bad) || d.FailClosed == "" {
					t.Errorf("%s: %+v, want dropped, denied by %s, fail-closed", cl, v, bad)
				}
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

func containsRef(l []PolicyRef, r PolicyRef) bool {
	for _, x := range l {
		if x == r {
			return true
		}
	}
	return false
}
