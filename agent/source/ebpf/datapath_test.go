//go:build linux

package ebpf

import (
	"net/netip"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/flowbus/flowbus/agent/cluster"
	"github.com/flowbus/flowbus/agent/identity"
	"github.com/flowbus/flowbus/bpf"
)

// fakeMaps records what the datapath writes.
type fakeMaps struct {
	ipcache map[netip.Prefix]bpf.IPCacheEntry
	eps     map[uint32]bpf.Endpoint
	rules   map[uint32][]bpf.Rule
	commits int
}

func newFakeMaps() *fakeMaps {
	return &fakeMaps{eps: map[uint32]bpf.Endpoint{}, rules: map[uint32][]bpf.Rule{}}
}

func (f *fakeMaps) SetIPCache(m map[netip.Prefix]bpf.IPCacheEntry) error { f.ipcache = m; return nil }
func (f *fakeMaps) SetEndpoint(ep bpf.Endpoint, r []bpf.Rule) error {
	f.eps[ep.IfIndex], f.rules[ep.IfIndex] = ep, r
	return nil
}
func (f *fakeMaps) RemoveEndpoint(i uint32) error { delete(f.eps, i); delete(f.rules, i); return nil }
func (f *fakeMaps) Endpoints() []uint32 {
	var out []uint32
	for i := range f.eps {
		out = append(out, i)
	}
	slices.Sort(out)
	return out
}
func (f *fakeMaps) Commit() (uint32, error) { f.commits++; return uint32(f.commits), nil }

func labPods() *cluster.Snapshot {
	tcp := corev1.ProtocolTCP
	port := intstr.FromInt32(8080)
	return &cluster.Snapshot{
		Namespaces: []cluster.Namespace{{Name: "payments", Labels: map[string]string{"kubernetes.io/metadata.name": "payments"}}},
		Pods: []cluster.Pod{
			{Namespace: "payments", Name: "checkout-api", Labels: map[string]string{"app": "checkout-api"},
				IPs: []netip.Addr{netip.MustParseAddr("10.9.0.2")}, Interface: "fbx2h", IfIndex: 12},
			{Namespace: "payments", Name: "ledger-svc", Labels: map[string]string{"app": "ledger-svc"},
				IPs: []netip.Addr{netip.MustParseAddr("10.9.0.3")}, Interface: "fbx3h", IfIndex: 13},
			{Namespace: "payments", Name: "rewards-cron", Labels: map[string]string{"app": "rewards-cron"},
				IPs: []netip.Addr{netip.MustParseAddr("10.9.0.8")}, Interface: "fbx8h", IfIndex: 18},
		},
		NetworkPolicies: []*networkingv1.NetworkPolicy{{
			ObjectMeta: metav1.ObjectMeta{Namespace: "payments", Name: "ledger-from-checkout"},
			Spec: networkingv1.NetworkPolicySpec{
				PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "ledger-svc"}},
				Ingress: []networkingv1.NetworkPolicyIngressRule{{
					From:  []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "checkout-api"}}}},
					Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: &port}},
				}},
				PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
			},
		}},
	}
}

// The datapath writes the ipcache and, for the pods behind attached
// interfaces only, their endpoints and rules: ledger-svc's ingress is
// enforced and allows checkout-api's identity on TCP 8080, naming the
// policy; a default-deny drop names it too.
func TestDatapathWritesIdentitiesEndpointsAndRules(t *testing.T) {
	maps := newFakeMaps()
	d := newDatapath(maps, identity.Allocator{Node: "lab-node"})
	snap := labPods()
	got, err := d.apply(snap, map[uint32]string{12: "fbx2h", 13: "fbx3h", 99: "other"})
	if err != nil {
		t.Fatal(err)
	}
	if got.Endpoints != 2 || len(maps.eps) != 2 || maps.commits != 1 {
		t.Fatalf("%d endpoints written (%v), %d commits; want checkout-api and ledger-svc, one commit", got.Endpoints, maps.Endpoints(), maps.commits)
	}
	checkout, _ := got.IDs.Pod("payments", "checkout-api")
	ledger, _ := got.IDs.Pod("payments", "ledger-svc")
	if e := maps.ipcache[netip.MustParsePrefix("10.9.0.2/32")]; e.Identity != uint32(checkout) || checkout < identity.MinLocal {
		t.Errorf("ipcache of checkout-api %+v, want its identity %d", e, checkout)
	}
	if e := maps.ipcache[netip.MustParsePrefix("10.9.0.8/32")]; e.Identity == 0 {
		t.Errorf("ipcache lacks rewards-cron (a pod on no attached interface is still a known peer)")
	}
	ep := maps.eps[13]
	if !ep.Enforce[bpf.Ingress] || ep.Enforce[bpf.Egress] || ep.Identity != uint32(ledger) || ep.ID == 0 {
		t.Errorf("ledger-svc endpoint %+v, want ingress enforced with its identity", ep)
	}
	want := []string{"NetworkPolicy:payments/ledger-from-checkout"}
	if names := d.policyNames(ep.DenyID[bpf.Ingress]); !slices.Equal(names, want) {
		t.Errorf("default-deny names %v, want %v", names, want)
	}
	rules := maps.rules[13]
	if len(rules) != 1 || rules[0].Peer != uint32(checkout) || rules[0].Proto != 6 || rules[0].Port != 8080 || rules[0].PortBits != 16 ||
		rules[0].Direction != bpf.Ingress || rules[0].Deny || !slices.Equal(d.policyNames(rules[0].PolicyID), want) {
		t.Errorf("ledger-svc rules %+v, want one allow from checkout-api's identity on TCP 8080 by the policy", rules)
	}
	if e := maps.eps[12]; e.Enforce != [2]bool{} || len(maps.rules[12]) != 0 {
		t.Errorf("checkout-api %+v with %d rules, want nothing enforced", e, len(maps.rules[12]))
	}

	// The interface goes: its endpoint goes; the ids of live pods stay.
	before := maps.eps[12].ID
	if _, err := d.apply(snap, map[uint32]string{12: "fbx2h"}); err != nil {
		t.Fatal(err)
	}
	if len(maps.eps) != 1 || maps.eps[12].ID != before {
		t.Errorf("endpoints %v after ledger-svc's interface left (id %d, was %d)", maps.Endpoints(), maps.eps[12].ID, before)
	}
	// An interface of another name at the same ifindex is not the pod's.
	if _, err := d.apply(snap, map[uint32]string{12: "eth0"}); err != nil {
		t.Fatal(err)
	}
	if len(maps.eps) != 0 {
		t.Errorf("endpoints %v for an ifindex whose interface is not the pod's", maps.Endpoints())
	}
}

// The view names pods by address and by the interface they are behind,
// with their identity and labels; services by backend; and gives other
// peers (the world) their identity's labels.
func TestViewOfASnapshot(t *testing.T) {
	snap := labPods()
	snap.Pods[0].Workload, snap.Pods[0].WorkloadKind = "checkout-api", "Deployment"
	snap.Services = []cluster.Service{{Namespace: "payments", Name: "ledger", Backends: []cluster.Backend{
		{Namespace: "payments", Pod: "ledger-svc", IP: netip.MustParseAddr("10.9.0.3"), Port: 8080, Protocol: "TCP"}}}}
	ids := identity.Allocator{}.Allocate(snap, nil)
	v := newView(snap, ids, map[uint32]string{12: "fbx2h", 13: "other-name"})
	ep, ok := v.pod(netip.MustParseAddr("10.9.0.2"))
	want, _ := ids.Pod("payments", "checkout-api")
	if !ok || ep.PodName != "checkout-api" || ep.Workload != "checkout-api" || ep.Identity != uint32(want) ||
		!slices.Contains(ep.Labels, "k8s:app=checkout-api") {
		t.Errorf("pod at 10.9.0.2 = %+v, %v; want checkout-api with identity %d and its labels", ep, ok, want)
	}
	if ep, ok := v.podBehind(12); !ok || ep.PodName != "checkout-api" {
		t.Errorf("behind ifindex 12: %+v, %v", ep, ok)
	}
	if _, ok := v.podBehind(13); ok {
		t.Error("ledger-svc is behind ifindex 13 although the interface there has another name")
	}
	if s, ok := v.service(netip.MustParseAddr("10.9.0.3"), 8080, 6); !ok || s.Name != "ledger" {
		t.Errorf("service of 10.9.0.3:8080/TCP = %+v, %v", s, ok)
	}
	if _, ok := v.service(netip.MustParseAddr("10.9.0.3"), 8080, 17); ok {
		t.Error("a UDP backend where only TCP is one")
	}
	if w := v.peer(bpf.IdentityWorld); w.Identity != bpf.IdentityWorld || !slices.Equal(w.Labels, []string{"reserved:world"}) {
		t.Errorf("world peer %+v, want identity 2 labelled reserved:world", w)
	}
}
