package identity

import (
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"reflect"
	"slices"
	"testing"

	ciliumlabels "github.com/cilium/cilium/pkg/labels"
	"github.com/cilium/cilium/pkg/labelsfilter"

	"github.com/flowbus/flowbus/agent/cluster"
	"github.com/flowbus/flowbus/schemas/hubble"
)

// TestLabelFilterIsCiliums checks IdentityRelevant against Cilium's own
// default label filter on the keys Kubernetes, Helm and Cilium put on pods.
func TestLabelFilterIsCiliums(t *testing.T) {
	if err := labelsfilter.ParseLabelPrefixCfg(slog.New(slog.DiscardHandler), nil, nil, ""); err != nil {
		t.Fatal(err)
	}
	keys := []string{
		"app", "pod", "tier", "version", "app.kubernetes.io/name", "app.kubernetes.io/part-of",
		"io.kubernetes.pod.namespace", "io.kubernetes.pod.name", "io.kubernetes.container.name",
		"io.cilium.k8s.namespace.labels.team", "io.cilium.k8s.namespace.labels.kubernetes.io/metadata.name",
		"io.cilium.k8s.namespace.labels.beta.kubernetes.io/arch", "io.cilium.k8s.policy.cluster",
		"io.cilium.k8s.policy.serviceaccount", "kubernetes.io/os", "beta.kubernetes.io/arch",
		"node.beta.kubernetes.io/instance-type", "statefulset.kubernetes.io/pod-name", "apps.kubernetes.io/pod-index",
		"batch.kubernetes.io/job-completion-index", "batch.kubernetes.io/controller-uid", "batch.kubernetes.io/job-name",
		"k8s.io/foo", "pod-template-generation", "pod-template-hash", "controller-revision-hash", "controller-uid",
		"annotation.foo", "annotations", "etcd_node", "topology.kubernetes.io/zone", "job-name", "k8s-app",
		"kubernetes.io-like", "io.kubernetes", "app.kubernetes.io", "helm.sh/chart", "security.istio.io/tlsMode",
	}
	for _, k := range keys {
		in, _ := labelsfilter.Filter(ciliumlabels.Labels{k: ciliumlabels.NewLabel(k, "v", ciliumlabels.LabelSourceK8s)})
		if got, want := IdentityRelevant(k), len(in) == 1; got != want {
			t.Errorf("IdentityRelevant(%q) = %v, cilium %v", k, got, want)
		}
	}
}

func TestPodLabelsAreCiliumsIdentityLabels(t *testing.T) {
	p := &cluster.Pod{Namespace: "payments", Name: "ledger-7d9f-x2", Labels: map[string]string{
		"app": "ledger", "pod-template-hash": "7d9f", "io.cilium.k8s.policy.cluster": "forged",
		"app.kubernetes.io/name": "ledger", "kubernetes.io/os": "linux",
	}}
	ns := &cluster.Namespace{Name: "payments", Labels: map[string]string{"team": "money"}}
	want := []string{
		"k8s:app.kubernetes.io/name=ledger",
		"k8s:app=ledger",
		"k8s:io.cilium.k8s.namespace.labels.kubernetes.io/metadata.name=payments",
		"k8s:io.cilium.k8s.namespace.labels.team=money",
		"k8s:io.cilium.k8s.policy.cluster=lab",
		"k8s:io.kubernetes.pod.namespace=payments",
	}
	if got := PodLabels(p, ns, "lab"); !reflect.DeepEqual(got, want) {
		t.Errorf("PodLabels = %q\nwant %q", got, want)
	}
}

// fleet is a snapshot of n pods: namespaces of deployments of replicas, as
// a cluster has them.
func fleet(n int) *cluster.Snapshot {
	s := &cluster.Snapshot{}
	for ns := 0; len(s.Pods) < n; ns++ {
		name := fmt.Sprintf("ns-%03d", ns)
		s.Namespaces = append(s.Namespaces, cluster.Namespace{Name: name, Labels: map[string]string{
			"kubernetes.io/metadata.name": name, "team": fmt.Sprintf("team-%d", ns%7)}})
		for d := 0; d < 10 && len(s.Pods) < n; d++ {
			for r := 0; r < 10 && len(s.Pods) < n; r++ {
				i := len(s.Pods)
				s.Pods = append(s.Pods, cluster.Pod{
					Namespace: name, Name: fmt.Sprintf("app-%d-%x-%d", d, ns*31+d, r), Node: fmt.Sprintf("node-%d", i%50),
					Labels: map[string]string{"app": fmt.Sprintf("app-%d", d), "tier": []string{"web", "api", "db"}[d%3],
						"pod-template-hash": fmt.Sprintf("%x", ns*31+d), "app.kubernetes.io/part-of": "shop"},
					IPs: []netip.Addr{netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})},
				})
			}
		}
	}
	return s
}

func TestAllocateIsAFunctionOfTheSnapshot(t *testing.T) {
	s := fleet(2000)
	prefixes := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.168.1.7/24"), netip.MustParsePrefix("fd00::/64")}
	a := Allocator{Node: "node-1"}.Allocate(s, prefixes)

	shuffled := *s
	shuffled.Pods = slices.Clone(s.Pods)
	shuffled.Namespaces = slices.Clone(s.Namespaces)
	r := rand.New(rand.NewPCG(1, 2))
	r.Shuffle(len(shuffled.Pods), func(i, j int) { shuffled.Pods[i], shuffled.Pods[j] = shuffled.Pods[j], shuffled.Pods[i] })
	r.Shuffle(len(shuffled.Namespaces), func(i, j int) {
		shuffled.Namespaces[i], shuffled.Namespaces[j] = shuffled.Namespaces[j], shuffled.Namespaces[i]
	})
	reversed := slices.Clone(prefixes)
	slices.Reverse(reversed)
	b := Allocator{Node: "node-1"}.Allocate(&shuffled, reversed)
	if !reflect.DeepEqual(a.pods, b.pods) || !reflect.DeepEqual(a.labels, b.labels) || !reflect.DeepEqual(a.byPrefix, b.byPrefix) {
		t.Fatal("the same snapshot in another order gave other identities")
	}
	if got := len(a.PodIdentities()); got != 200 {
		t.Errorf("%d pod identities for 200 deployments, want 200 (replicas share one)", got)
	}
	id, _ := a.Pod("ns-000", "app-0-0-0")
	id2, _ := a.Pod("ns-000", "app-0-0-9")
	if id != id2 || id < MinLocal || id > MaxLocal {
		t.Errorf("replicas have identities %d and %d, want one in [256, 65535]", id, id2)
	}
	wantLabels := []string{"k8s:app.kubernetes.io/part-of=shop", "k8s:app=app-0",
		"k8s:io.cilium.k8s.namespace.labels.kubernetes.io/metadata.name=ns-000", "k8s:io.cilium.k8s.namespace.labels.team=team-0",
		"k8s:io.cilium.k8s.policy.cluster=default", "k8s:io.kubernetes.pod.namespace=ns-000", "k8s:tier=web"}
	if got := a.Labels(id); !reflect.DeepEqual(got, wantLabels) {
		t.Errorf("Labels(%d) = %q, want %q", id, got, wantLabels)
	}
	c, ok := a.CIDR(netip.MustParsePrefix("192.168.1.0/24"))
	if !ok || !c.IsCIDR() {
		t.Fatalf("CIDR(192.168.1.0/24) = %d, %v; want a CIDR identity", c, ok)
	}
	if got, want := a.Labels(c), []string{"cidr:192.168.1.0/24", "reserved:world"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Labels(%d) = %q, want %q", c, got, want)
	}
	v6, _ := a.CIDR(netip.MustParsePrefix("fd00::/64"))
	if got, want := a.Labels(v6), []string{"cidr:fd00--0/64", "reserved:world"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Labels(%d) = %q, want %q", v6, got, want)
	}
}

func TestReservedIdentitiesAreHubbles(t *testing.T) {
	ids := Allocator{}.Allocate(&cluster.Snapshot{}, nil)
	for id, want := range map[ID]string{hubble.IdentityHost: "reserved:host", hubble.IdentityWorld: "reserved:world",
		hubble.IdentityKubeAPIServer: "reserved:kube-apiserver", hubble.IdentityWorldIPv6: "reserved:world-ipv6"} {
		if got := ids.Labels(id); !reflect.DeepEqual(got, []string{want}) {
			t.Errorf("Labels(%d) = %q, want [%s]", id, got, want)
		}
	}
	if ids.Labels(0) != nil || ID(0).IsReserved() || !ID(hubble.IdentityHost).IsReserved() {
		t.Error("identity 0 is reserved")
	}
}

// TestCollisionsMoveOnlyTheSetsInvolved finds two label sets with the same
// home identity and checks the tie-break: the set first in byte order keeps
// its home, the other moves to its next round's slot and is listed, and
// nothing else moves.
func TestCollisionsMoveOnlyTheSetsInvolved(t *testing.T) {
	home := map[ID]string{}
	var a, b string
	for i := 0; a == ""; i++ {
		app := fmt.Sprintf("app-%d", i)
		k := "k8s:app=" + app + "\x00k8s:io.cilium.k8s.namespace.labels.kubernetes.io/metadata.name=x\x00" +
			"k8s:io.cilium.k8s.policy.cluster=default\x00k8s:io.kubernetes.pod.namespace=x\x00"
		h := MinLocal + ID(slotHash(0, k)%uint64(MaxLocal-MinLocal+1))
		if other, ok := home[h]; ok {
			a, b = other, app
		}
		home[h] = app
		if i > 100000 {
			t.Fatal("no collision in 100000 label sets")
		}
	}
	snap := func(apps ...string) *cluster.Snapshot {
		s := &cluster.Snapshot{Namespaces: []cluster.Namespace{{Name: "x"}}}
		for _, app := range apps {
			s.Pods = append(s.Pods, cluster.Pod{Namespace: "x", Name: app, Labels: map[string]string{"app": app}})
		}
		return s
	}
	alone := Allocator{}.Allocate(snap(b, "bystander"), nil)
	both := Allocator{}.Allocate(snap(a, b, "bystander"), nil)
	idA, _ := both.Pod("x", a)
	idB, _ := both.Pod("x", b)
	homeB, _ := alone.Pod("x", b)
	first, second, firstID, secondID := a, b, idA, idB
	if b < a { // "app-10" sorts before "app-9"
		first, second, firstID, secondID = b, a, idB, idA
	}
	if firstID != homeB || secondID == homeB || secondID < MinLocal {
		t.Errorf("%s got %d and %s got %d; want %s to keep the home %d", first, firstID, second, secondID, first, homeB)
	}
	if len(both.Collisions) != 1 || both.Collisions[0].Home != homeB || both.Collisions[0].Got != secondID ||
		both.Collisions[0].Labels[0] != "k8s:app="+second || both.Collisions[0].Holder[0] != "k8s:app="+first {
		t.Errorf("collisions %+v, want one: %s moved from %d to %d, held by %s", both.Collisions, second, homeB, secondID, first)
	}
	x, _ := alone.Pod("x", "bystander")
	y, _ := both.Pod("x", "bystander")
	if x != y {
		t.Errorf("the bystander moved from %d to %d", x, y)
	}
}

// TestPlaceKeepsSlotsWhenKeysArrive: adding a key to a crowded range moves
// at most the keys that collide with it.
func TestPlaceKeepsSlotsWhenKeysArrive(t *testing.T) {
	var keys []string
	for i := range 5000 {
		keys = append(keys, fmt.Sprintf("key-%05d", i))
	}
	before, _, _ := place(keys, 0, 9999)
	if len(before) != len(keys) {
		t.Fatalf("placed %d of %d keys", len(before), len(keys))
	}
	seen := map[ID]bool{}
	for _, id := range before {
		if seen[id] || id > 9999 {
			t.Fatalf("slot %d given twice or out of range", id)
		}
		seen[id] = true
	}
	for _, extra := range []string{"key-new-1", "key-new-2", "key-new-3"} {
		withExtra := append(slices.Clone(keys), extra)
		slices.Sort(withExtra)
		after, _, _ := place(withExtra, 0, 9999)
		moved := 0
		for k, id := range before {
			if after[k] != id {
				moved++
			}
		}
		if moved > 2 {
			t.Errorf("adding %s moved %d keys, want at most the 2 it can collide with", extra, moved)
		}
	}
	full, _, unallocated := place(keys[:20], 0, 9)
	if len(full) != 10 || unallocated != 10 {
		t.Errorf("20 keys in 10 slots: %d placed, %d unallocated; want 10 and 10", len(full), unallocated)
	}
}

func TestLookupIsTheIPCache(t *testing.T) {
	s := &cluster.Snapshot{
		Namespaces: []cluster.Namespace{{Name: "x"}},
		Pods: []cluster.Pod{
			{Namespace: "x", Name: "a", Node: "n1", Labels: map[string]string{"pod": "a"}, IPs: []netip.Addr{netip.MustParseAddr("10.1.0.1"), netip.MustParseAddr("fd00::1")}},
			{Namespace: "x", Name: "b", Node: "n2", Labels: map[string]string{"pod": "b"}, IPs: []netip.Addr{netip.MustParseAddr("10.1.0.2")}},
			{Namespace: "kube-system", Name: "proxy-n1", Node: "n1", HostNetwork: true, IPs: []netip.Addr{netip.MustParseAddr("192.168.0.1")}},
			{Namespace: "kube-system", Name: "proxy-n2", Node: "n2", HostNetwork: true, IPs: []netip.Addr{netip.MustParseAddr("192.168.0.2")}},
			{Namespace: "x", Name: "zz-thief", Node: "n2", Labels: map[string]string{"pod": "a"}, IPs: []netip.Addr{netip.MustParseAddr("10.1.0.2")}},
		},
		Services: []cluster.Service{{Namespace: "default", Name: "kubernetes",
			Backends: []cluster.Backend{{IP: netip.MustParseAddr("192.168.0.100"), Port: 6443}}}},
	}
	ids := Allocator{Node: "n1"}.Allocate(s, []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("10.1.0.2/32"), netip.MustParsePrefix("8.8.0.0/16")})
	a, _ := ids.Pod("x", "a")
	b, _ := ids.Pod("x", "b")
	wide, _ := ids.CIDR(netip.MustParsePrefix("10.0.0.0/8"))
	host32, _ := ids.CIDR(netip.MustParsePrefix("10.1.0.2/32"))
	google, _ := ids.CIDR(netip.MustParsePrefix("8.8.0.0/16"))
	if _, ok := ids.Pod("kube-system", "proxy-n1"); ok {
		t.Error("a host-network pod has an identity of its own")
	}
	if ids.AddressConflicts != 1 {
		t.Errorf("AddressConflicts = %d, want 1 (zz-thief claims b's address)", ids.AddressConflicts)
	}
	for _, c := range []struct {
		addr string
		want Peer
	}{
		{"10.1.0.1", Peer{ID: a, CIDR: wide, Pod: "x/a", Node: "n1"}},
		{"fd00::1", Peer{ID: a, Pod: "x/a", Node: "n1"}},
		{"10.1.0.2", Peer{ID: b, CIDR: host32, Pod: "x/b", Node: "n2"}},
		{"192.168.0.1", Peer{ID: hubble.IdentityHost, Pod: "kube-system/proxy-n1", Node: "n1", HostNetwork: true}},
		{"192.168.0.2", Peer{ID: hubble.IdentityRemoteNode, Pod: "kube-system/proxy-n2", Node: "n2", HostNetwork: true}},
		{"192.168.0.100", Peer{ID: hubble.IdentityKubeAPIServer}},
		{"10.9.9.9", Peer{ID: wide, CIDR: wide}},
		{"8.8.8.8", Peer{ID: google, CIDR: google}},
		{"1.1.1.1", Peer{ID: hubble.IdentityWorld}},
	} {
		if got := ids.Lookup(netip.MustParseAddr(c.addr)); got != c.want {
			t.Errorf("Lookup(%s) = %+v, want %+v", c.addr, got, c.want)
		}
	}
	if got := ids.LookupFrom(netip.MustParseAddr("192.168.0.2"), "n2").ID; got != hubble.IdentityHost {
		t.Errorf("n2's own address seen from n2 has identity %d, want host", got)
	}
	var got []string
	for _, e := range ids.IPCache() {
		got = append(got, fmt.Sprintf("%s %d %d", e.Prefix, e.ID, e.CIDR))
	}
	want := []string{
		fmt.Sprintf("8.8.0.0/16 %d %d", google, google),
		fmt.Sprintf("10.0.0.0/8 %d %d", wide, wide),
		fmt.Sprintf("10.1.0.1/32 %d %d", a, wide),
		fmt.Sprintf("10.1.0.2/32 %d %d", b, host32),
		"192.168.0.1/32 1 0", "192.168.0.2/32 6 0", "192.168.0.100/32 7 0",
		fmt.Sprintf("fd00::1/128 %d 0", a),
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("IPCache:\n%q\nwant\n%q", got, want)
	}
}
