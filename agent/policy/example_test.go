package policy_test

import (
	"fmt"
	"net/netip"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/flowbus/flowbus/agent/cluster"
	"github.com/flowbus/flowbus/agent/identity"
	"github.com/flowbus/flowbus/agent/policy"
)

// A policy compiled, its entries as the kernel's LPM keys, and one flow
// decided as the kernel decides it.
func Example() {
	port := intstr.FromInt32(9090)
	end := int32(9095)
	snap := &cluster.Snapshot{
		Pods: []cluster.Pod{
			{Namespace: "shop", Name: "web", Labels: map[string]string{"app": "web"}, IPs: []netip.Addr{netip.MustParseAddr("10.0.0.1")}},
			{Namespace: "shop", Name: "api", Labels: map[string]string{"app": "api"}, IPs: []netip.Addr{netip.MustParseAddr("10.0.0.2")}},
		},
		NetworkPolicies: []*networkingv1.NetworkPolicy{{
			ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "api-from-web"},
			Spec: networkingv1.NetworkPolicySpec{
				PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "api"}},
				Ingress: []networkingv1.NetworkPolicyIngressRule{{
					From:  []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}}},
					Ports: []networkingv1.NetworkPolicyPort{{Port: &port, EndPort: &end}},
				}},
			},
		}},
	}
	res, ids := policy.Compile(snap, identity.Allocator{})
	api, _ := res.Endpoint("shop", "api")
	web, _ := ids.Pod("shop", "web")
	fmt.Println("ingress enforced:", api.Ingress.Enforced, "selected by:", api.Ingress.SelectedBy)
	for _, e := range api.Ingress.Allow {
		lo, hi := e.PortRange()
		fmt.Printf("peer is web: %v, proto=%d port=%d/%d (%d-%d) prefixlen=%d\n", e.Peer == web, e.Proto, e.Port, e.PortBits, lo, hi, e.PrefixLen())
	}
	v := policy.Evaluate(res, ids, policy.Flow{Src: netip.MustParseAddr("10.0.0.1"), Dst: netip.MustParseAddr("10.0.0.2"), Proto: policy.ProtoTCP, Port: 9093})
	fmt.Println("web -> api:9093 allowed:", v.Allowed, "by", v.Ingress.AllowedBy, "in lookup", v.Ingress.Lookup)
	v = policy.Evaluate(res, ids, policy.Flow{Src: netip.MustParseAddr("10.0.0.1"), Dst: netip.MustParseAddr("10.0.0.2"), Proto: policy.ProtoTCP, Port: 80})
	fmt.Println("web -> api:80 allowed:", v.Allowed, "denied by", v.Ingress.DeniedBy)
	// Output:
	// ingress enforced: true selected by: [NetworkPolicy shop/api-from-web]
	// peer is web: true, proto=6 port=9090/15 (9090-9091) prefixlen=95
	// peer is web: true, proto=6 port=9092/14 (9092-9095) prefixlen=94
	// web -> api:9093 allowed: true by [NetworkPolicy shop/api-from-web] in lookup 1
	// web -> api:80 allowed: false denied by [NetworkPolicy shop/api-from-web]
}
