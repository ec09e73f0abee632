package policy

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"reflect"
	"slices"
	"testing"

	networkingv1 "k8s.io/api/networking/v1"

	"github.com/flowbus/flowbus/agent/cluster"
	"github.com/flowbus/flowbus/agent/identity"
	"github.com/flowbus/flowbus/schemas/hubble"
)

func TestPortPrefixesCoverExactlyTheRange(t *testing.T) {
	ranges := [][2]uint16{{1, 65535}, {0, 65535}, {80, 80}, {1024, 65535}, {8000, 8999}, {1, 1}, {65535, 65535}, {32768, 32769}}
	r := rand.New(rand.NewPCG(3, 4))
	for range 300 {
		lo := uint16(r.IntN(65536))
		ranges = append(ranges, [2]uint16{lo, lo + uint16(r.IntN(65536-int(lo)))})
	}
	for _, rg := range ranges {
		keys := portPrefixes(rg[0], rg[1])
		if len(keys) > 30 {
			t.Errorf("%v: %d prefixes, want at most 30", rg, len(keys))
		}
		next := uint32(rg[0])
		if rg == [2]uint16{0, 65535} {
			if len(keys) != 1 || keys[0] != (Key{}) {
				t.Errorf("every port: %v, want the any-port key", keys)
			}
			continue
		}
		for _, k := range keys {
			k.Proto = ProtoTCP
			lo, hi := k.PortRange()
			if uint32(lo) != next || lo&^portMask(k.PortBits) != 0 {
				t.Fatalf("%v: prefix %v starts at %d, want %d and aligned", rg, k, lo, next)
			}
			next = uint32(hi) + 1
		}
		if next != uint32(rg[1])+1 {
			t.Errorf("%v: prefixes end at %d", rg, next-1)
		}
	}
}

// TestEntriesNameEveryPolicyThatCoversThem: an entry names the policies of
// the wider entries the kernel would not reach.
func TestEntriesNameEveryPolicyThatCoversThem(t *testing.T) {
	res, ids := compileShop(t, []*networkingv1.NetworkPolicy{
		netpol(t, `
metadata: {name: a-web-9090, namespace: shop}
spec:
  podSelector: {matchLabels: {app: api}}
  ingress: [{from: [{podSelector: {matchLabels: {app: web}}}], ports: [{port: 9090}]}]`),
		netpol(t, `
metadata: {name: b-any-9000s, namespace: shop}
spec:
  podSelector: {matchLabels: {app: api}}
  ingress: [{ports: [{port: 9000, endPort: 9999}]}]`),
		netpol(t, `
metadata: {name: c-web-all, namespace: shop}
spec:
  podSelector: {matchLabels: {app: api}}
  ingress: [{from: [{podSelector: {matchLabels: {app: web}}}], ports: [{protocol: TCP}]}]`),
	})
	a, b, c := "NetworkPolicy shop/a-web-9090", "NetworkPolicy shop/b-any-9000s", "NetworkPolicy shop/c-web-all"
	checkProbes(t, res, ids, []probe{
		{"web", "api", ProtoTCP, 9090, true, a + ", " + b + ", " + c},
		// b's any-peer prefix around 9100 is narrower than web's own
		// any-port entry, which the kernel finds first: b is not named.
		{"web", "api", ProtoTCP, 9100, true, c},
		{"web", "api", ProtoTCP, 80, true, c},
		{"db", "api", ProtoTCP, 9090, true, b},
		{"db", "api", ProtoTCP, 80, false, a + ", " + b + ", " + c},
	})
	ep, _ := res.Endpoint("shop", "api")
	web, _ := ids.Pod("shop", "web")
	want := []string{fmt.Sprintf("%d TCP/9090 [%s %s %s]", web, a, b, c), fmt.Sprintf("%d TCP/0-65535 [%s]", web, c)}
	var got []string
	for _, e := range ep.Ingress.Allow {
		if e.Peer == web && (e.Port == 9090 || e.PortBits == 0) {
			got = append(got, fmt.Sprintf("%v %v", e.Key, e.Policies))
		}
	}
	slices.Sort(got)
	slices.Sort(want)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("web's entries %q, want %q", got, want)
	}
}

func TestNamedPortsResolveOnTheRightPods(t *testing.T) {
	s := shop()
	s.Pods[2].Ports = append(s.Pods[2].Ports, cluster.ContainerPort{Name: "http", Port: 7000, Protocol: "TCP"})
	s.NetworkPolicies = []*networkingv1.NetworkPolicy{netpol(t, `
metadata: {name: web-out, namespace: shop}
spec:
  podSelector: {matchLabels: {app: web}}
  policyTypes: [Egress]
  egress: [{to: [{podSelector: {matchExpressions: [{key: app, operator: In, values: [api, db]}]}}], ports: [{port: http}]}]`),
		netpol(t, `
metadata: {name: api-in, namespace: shop}
spec:
  podSelector: {matchLabels: {app: api}}
  ingress: [{ports: [{port: http}, {port: pg}]}]`)}
	res, ids := Compile(s, identity.Allocator{Node: "node-1"})
	if len(res.Errors) > 0 {
		t.Fatal(res.Errors)
	}
	out, in := "NetworkPolicy shop/web-out", "NetworkPolicy shop/api-in"
	checkProbes(t, res, ids, []probe{
		{"web", "api", ProtoTCP, 9090, true, out + ", " + in},
		{"web", "db", ProtoTCP, 7000, true, out},
		{"web", "db", ProtoTCP, 9090, false, out},
		{"web", "api", ProtoTCP, 7000, false, out},
		{"db", "api", ProtoTCP, 5432, false, in}, // pg is db's port, not api's
	})
}

func TestCompileIsAFunctionOfTheSnapshot(t *testing.T) {
	s := shop()
	s.NetworkPolicies = []*networkingv1.NetworkPolicy{netpol(t, goodAllowWeb), netpol(t, `
metadata: {name: z, namespace: shop}
spec: {podSelector: {}, policyTypes: [Ingress, Egress], egress: [{to: [{ipBlock: {cidr: 10.0.0.0/8, except: [10.0.1.0/24]}}]}]}`)}
	s.CiliumPolicies = []cluster.CiliumPolicy{cnp(t, "ops", "p", `
endpointSelector: {}
egress: [{toEntities: [world]}, {toPorts: [{ports: [{port: "53", protocol: ANY}]}]}]`)}
	a, _ := Compile(s, identity.Allocator{})
	r := rand.New(rand.NewPCG(5, 6))
	for range 5 {
		o := *s
		o.Pods = slices.Clone(s.Pods)
		o.NetworkPolicies = slices.Clone(s.NetworkPolicies)
		r.Shuffle(len(o.Pods), func(i, j int) { o.Pods[i], o.Pods[j] = o.Pods[j], o.Pods[i] })
		r.Shuffle(len(o.NetworkPolicies), func(i, j int) {
			o.NetworkPolicies[i], o.NetworkPolicies[j] = o.NetworkPolicies[j], o.NetworkPolicies[i]
		})
		if b, _ := Compile(&o, identity.Allocator{}); !reflect.DeepEqual(a, b) {
			t.Fatal("the same snapshot in another order compiled differently")
		}
	}
}

func TestDiffAfterOnePolicyEdit(t *testing.T) {
	before := netpol(t, `
metadata: {name: api-in, namespace: shop}
spec:
  podSelector: {matchLabels: {app: api}}
  ingress: [{from: [{podSelector: {matchLabels: {app: web}}}], ports: [{port: 9090}]}]`)
	after := netpol(t, `
metadata: {name: api-in, namespace: shop}
spec:
  podSelector: {matchLabels: {app: api}}
  ingress: [{from: [{podSelector: {matchLabels: {app: db}}}], ports: [{port: 9090}]}]`)
	old, ids := compileShop(t, []*networkingv1.NetworkPolicy{netpol(t, goodAllowWeb), before})
	cur, _ := compileShop(t, []*networkingv1.NetworkPolicy{netpol(t, goodAllowWeb), after})
	web, _ := ids.Pod("shop", "web")
	db, _ := ids.Pod("shop", "db")
	ref := []PolicyRef{{Kind: KindNetworkPolicy, Namespace: "shop", Name: "api-in"}}
	want := []EndpointChange{{Namespace: "shop", Name: "api",
		Ingress: DirectionChange{Enforced: true, SelectedBy: ref,
			Upsert: []Entry{{Key: Key{Peer: db, Proto: ProtoTCP, Port: 9090, PortBits: 16}, Policies: ref}},
			Delete: []Key{{Peer: web, Proto: ProtoTCP, Port: 9090, PortBits: 16}}}}}
	if got := Diff(old, cur); !reflect.DeepEqual(got, want) {
		t.Errorf("Diff = %+v\nwant %+v", got, want)
	}
	if got := Diff(cur, cur); len(got) != 0 {
		t.Errorf("Diff of a result with itself = %+v", got)
	}
	removed := Diff(cur, nil)
	if len(removed) != len(cur.Endpoints) || !removed[0].Removed {
		t.Errorf("Diff to nothing: %+v", removed)
	}
}

func TestLookupOrder(t *testing.T) {
	v4, v6 := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("fd00::1")
	for _, c := range []struct {
		peer identity.Peer
		addr netip.Addr
		want []identity.ID
	}{
		{identity.Peer{ID: 300}, v4, []identity.ID{300, 0}},
		{identity.Peer{ID: 300, CIDR: identity.MinCIDR}, v4, []identity.ID{300, identity.MinCIDR, 0}},
		{identity.Peer{ID: identity.MinCIDR, CIDR: identity.MinCIDR}, v4, []identity.ID{identity.MinCIDR, hubble.IdentityWorldIPv4, 0}},
		{identity.Peer{ID: hubble.IdentityWorld}, v6, []identity.ID{hubble.IdentityWorld, hubble.IdentityWorldIPv6, 0}},
		{identity.Peer{ID: hubble.IdentityHost, CIDR: identity.MinCIDR + 1}, v4, []identity.ID{hubble.IdentityHost, identity.MinCIDR + 1, 0}},
	} {
		if got := LookupOrder(c.peer, c.addr); !reflect.DeepEqual(got, c.want) {
			t.Errorf("LookupOrder(%+v) = %v, want %v", c.peer, got, c.want)
		}
	}
}
