package policy

import (
	"fmt"
	"net/netip"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/flowbus/flowbus/agent/cluster"
	"github.com/flowbus/flowbus/agent/identity"
)

// benchCluster is 1,000 pods in 50 namespaces (5 deployments of 4
// replicas each, one namespace "monitoring") and 200 policies, four per
// namespace as clusters write them: default-deny ingress, allow from the
// same namespace, allow the monitoring namespace on the metrics port, and a
// per-app allow with ports (named and numeric); every tenth namespace also
// limits egress with ipBlocks.
func benchCluster() *cluster.Snapshot {
	s := &cluster.Snapshot{}
	tcp := corev1.ProtocolTCP
	port := func(p int) *intstr.IntOrString { v := intstr.FromInt32(int32(p)); return &v }
	for n := range 50 {
		ns := fmt.Sprintf("team-%02d", n)
		if n == 0 {
			ns = "monitoring"
		}
		s.Namespaces = append(s.Namespaces, cluster.Namespace{Name: ns, Labels: map[string]string{
			"kubernetes.io/metadata.name": ns, "tier": []string{"gold", "silver"}[n%2]}})
		for d := range 5 {
			for r := range 4 {
				i := len(s.Pods)
				s.Pods = append(s.Pods, cluster.Pod{Namespace: ns, Name: fmt.Sprintf("app-%d-%d", d, r), Node: fmt.Sprintf("node-%d", i%20),
					Labels: map[string]string{"app": fmt.Sprintf("app-%d", d), "pod-template-hash": fmt.Sprintf("h%d%d", n, d)},
					IPs:    []netip.Addr{netip.AddrFrom4([4]byte{10, 8, byte(i >> 8), byte(i)})},
					Ports: []cluster.ContainerPort{{Name: "http", Port: uint16(8080 + d), Protocol: "TCP"},
						{Name: "metrics", Port: 9090, Protocol: "TCP"}}})
			}
		}
		meta := func(name string) metav1.ObjectMeta { return metav1.ObjectMeta{Namespace: ns, Name: name} }
		s.NetworkPolicies = append(s.NetworkPolicies,
			&networkingv1.NetworkPolicy{ObjectMeta: meta("default-deny"), Spec: networkingv1.NetworkPolicySpec{
				PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}}},
			&networkingv1.NetworkPolicy{ObjectMeta: meta("allow-same-namespace"), Spec: networkingv1.NetworkPolicySpec{
				Ingress: []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{}}}}}}},
			&networkingv1.NetworkPolicy{ObjectMeta: meta("allow-monitoring"), Spec: networkingv1.NetworkPolicySpec{
				Ingress: []networkingv1.NetworkPolicyIngressRule{{
					From:  []networkingv1.NetworkPolicyPeer{{NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": "monitoring"}}}},
					Ports: []networkingv1.NetworkPolicyPort{{Port: &intstr.IntOrString{Type: intstr.String, StrVal: "metrics"}}}}}}},
		)
		app := &networkingv1.NetworkPolicy{ObjectMeta: meta("app-1-from-app-0"), Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "app-1"}},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{
				From: []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "app-0"}}},
					{NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"tier": "gold"}},
						PodSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "app", Operator: metav1.LabelSelectorOpIn, Values: []string{"app-3", "app-4"}}}}}},
				Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: &intstr.IntOrString{Type: intstr.String, StrVal: "http"}},
					{Protocol: &tcp, Port: port(8443)}, {Protocol: &tcp, Port: port(30000), EndPort: ptr(int32(32767))}}}}}}
		if n%10 == 5 {
			app.Spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress}
			app.Spec.Egress = []networkingv1.NetworkPolicyEgressRule{
				{To: []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "10.0.0.0/8", Except: []string{"10.9.0.0/16"}}}}},
				{To: []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "0.0.0.0/0",
					Except: []string{"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"}}}},
					Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: port(443)}}},
			}
		}
		s.NetworkPolicies = append(s.NetworkPolicies, app)
	}
	return s
}

// BenchmarkCompile compiles 1,000 pods × 200 policies. Beside it, the
// parts: Parse (policies alone) and Allocate (identities alone, the floor
// Compile cannot go below).
func BenchmarkCompile(b *testing.B) {
	s := benchCluster()
	ps := Parse(s)
	res, _ := Compile(s, identity.Allocator{})
	if len(res.Errors) > 0 || len(s.NetworkPolicies) != 200 || len(s.Pods) != 1000 {
		b.Fatalf("%d pods, %d policies, errors %v", len(s.Pods), len(s.NetworkPolicies), res.Errors)
	}
	b.Run("floor=Allocate", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			identity.Allocator{}.Allocate(s, ps.Prefixes())
		}
	})
	b.Run("Parse", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			Parse(s)
		}
	})
	b.Run("Compile", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			Compile(s, identity.Allocator{})
		}
		b.ReportMetric(float64(res.Stats.Entries), "entries")
	})
}

// BenchmarkDiff diffs two compilations of benchCluster that differ by one
// edited policy (one more port for one app), beside the floor of reading
// every entry of both once.
func BenchmarkDiff(b *testing.B) {
	s := benchCluster()
	old, _ := Compile(s, identity.Allocator{})
	edited := *s
	edited.NetworkPolicies = append([]*networkingv1.NetworkPolicy(nil), s.NetworkPolicies...)
	np := edited.NetworkPolicies[7].DeepCopy()
	tcp := corev1.ProtocolTCP
	p := intstr.FromInt32(9443)
	np.Spec.Ingress[0].Ports = append(np.Spec.Ingress[0].Ports, networkingv1.NetworkPolicyPort{Protocol: &tcp, Port: &p})
	edited.NetworkPolicies[7] = np
	cur, _ := Compile(&edited, identity.Allocator{})
	changes := Diff(old, cur)
	if len(changes) != 4 {
		b.Fatalf("%d endpoints change, want the 4 replicas of app-1 in %s", len(changes), np.Namespace)
	}
	b.Run("floor=scan", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			n := 0
			for _, r := range []*Result{old, cur} {
				for i := range r.Endpoints {
					for _, d := range []*DirectionPolicy{&r.Endpoints[i].Ingress, &r.Endpoints[i].Egress} {
						for j := range d.Allow {
							n += int(d.Allow[j].PortBits)
						}
					}
				}
			}
			_ = n
		}
	})
	b.Run("Diff", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			Diff(old, cur)
		}
	})
}
