package identity

import (
	"cmp"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/flowbus/flowbus/agent/cluster"
	"github.com/flowbus/flowbus/schemas/hubble"
)

// ID is a numeric security identity, as Cilium numbers them.
type ID uint32

// The identity ranges (Cilium's pkg/identity).
const (
	// MinLocal and MaxLocal bound the cluster-local identities of label
	// sets.
	MinLocal ID = 256
	MaxLocal ID = 65535
	// CIDRScope is the scope bit of identities local to a node, which
	// Cilium gives CIDRs; flowbus derives them from the prefix so that
	// every node agrees. MinCIDR and MaxCIDR bound them.
	CIDRScope ID = 1 << 24
	MinCIDR   ID = CIDRScope | 1
	MaxCIDR   ID = CIDRScope | 0xFFFFFF
)

// IsCIDR reports whether id is a CIDR identity.
func (id ID) IsCIDR() bool { return id >= MinCIDR && id <= MaxCIDR }

// IsReserved reports whether id is one of Cilium's reserved identities.
func (id ID) IsReserved() bool {
	_, ok := hubble.ReservedIdentityName(uint32(id))
	return ok && id != hubble.IdentityUnknown
}

// IsWorld reports whether an address with identity id is outside the
// cluster: the reserved world identities and the CIDR identities.
func (id ID) IsWorld() bool {
	return id == hubble.IdentityWorld || id == hubble.IdentityWorldIPv4 || id == hubble.IdentityWorldIPv6 || id.IsCIDR()
}

// ReservedLabels returns the labels of a reserved identity
// ("reserved:host"), nil if id is not reserved.
func ReservedLabels(id ID) []string {
	if !id.IsReserved() {
		return nil
	}
	name, _ := hubble.ReservedIdentityName(uint32(id))
	return []string{SourceReserved + ":" + name}
}

// Allocator turns cluster snapshots into identities. Its zero value is
// ready to use (cluster "default", no local node). Allocate depends only on
// its arguments and these fields, so every agent given the same snapshot
// computes the same identities.
type Allocator struct {
	// ClusterName is the value of every pod's io.cilium.k8s.policy.cluster
	// label; "" means Cilium's default, "default".
	ClusterName string
	// Node is the node the result is for: addresses of host-network pods
	// on it get the host identity, those on other nodes remote-node.
	Node string
}

// Peer is what the ipcache knows of an address.
type Peer struct {
	// ID is the address's identity: a pod's, host or remote-node for a
	// host-network pod's (the node's) address, kube-apiserver, the CIDR
	// identity of the most specific policy prefix containing it, or world.
	ID ID
	// CIDR is the identity of the most specific policy prefix containing
	// the address, 0 if none does. For an address outside the cluster it
	// equals ID.
	CIDR ID
	// Pod is the "namespace/name" of the pod that owns the address.
	Pod string
	// Node is that pod's node.
	Node string
	// HostNetwork is set when the pod shares its node's addresses.
	HostNetwork bool
}

// IPCacheEntry is one entry of the kernel's ipcache: an address or a
// policy prefix and its identities (see Peer).
type IPCacheEntry struct {
	Prefix netip.Prefix
	ID     ID
	CIDR   ID
}

// Collision is a label set (or prefix) whose hash gave it an identity
// that a label set ordered before it already held.
type Collision struct {
	Labels []string // the set that moved
	Home   ID       // the identity its hash gave it
	Holder []string // the set that holds Home
	Got    ID       // the identity it was given instead, 0 if none was free
}

// Identities is the result of one allocation. It is immutable and safe for
// concurrent use.
type Identities struct {
	node       string
	pods       map[string]ID // "namespace/name" → identity
	labels     map[ID][]string
	podIDs     []ID
	prefixes   []netip.Prefix // sorted
	byPrefix   map[netip.Prefix]ID
	prefixLens [2][]int // distinct prefix lengths, longest first, IPv4 and IPv6
	addrs      map[netip.Addr]addrEntry

	// Collisions lists the label sets and prefixes that did not get the
	// identity their hash gave them, in the order they were resolved.
	Collisions []Collision
	// Unallocated counts the label sets and prefixes left without an
	// identity because their range was full.
	Unallocated int
	// AddressConflicts counts pod addresses claimed by a second pod (the
	// first, by namespace/name, keeps them).
	AddressConflicts int
}

type addrEntry struct {
	id          ID // 0 for a host-network pod: host or remote-node by node
	pod         string
	node        string
	hostNetwork bool
}

// Allocate computes the identities of every pod of snap and of every
// prefix in prefixes (the CIDRs that policies name; duplicates and
// unmasked prefixes are fine).
func (a Allocator) Allocate(snap *cluster.Snapshot, prefixes []netip.Prefix) *Identities {
	clusterName := a.ClusterName
	if clusterName == "" {
		clusterName = hubble.DefaultClusterName
	}
	ids := &Identities{
		node:     a.Node,
		pods:     make(map[string]ID, len(snap.Pods)),
		labels:   map[ID][]string{},
		byPrefix: map[netip.Prefix]ID{},
		addrs:    make(map[netip.Addr]addrEntry, len(snap.Pods)),
	}
	for id := ID(1); id < MinLocal; id++ {
		if l := ReservedLabels(id); l != nil {
			ids.labels[id] = l
		}
	}

	// Label sets of the pods that are endpoints.
	f := keyFilter{}
	namespaces := make(map[string]*cluster.Namespace, len(snap.Namespaces))
	for i := range snap.Namespaces {
		namespaces[snap.Namespaces[i].Name] = &snap.Namespaces[i]
	}
	fromNS := map[string][]string{}
	sets := map[string][]string{} // joined labels → labels
	podSet := make([]string, len(snap.Pods))
	var b strings.Builder
	for i := range snap.Pods {
		p := &snap.Pods[i]
		if p.HostNetwork {
			continue
		}
		nl, ok := fromNS[p.Namespace]
		if !ok {
			nl = nsLabels(namespaces[p.Namespace], p.Namespace, f)
			fromNS[p.Namespace] = nl
		}
		l := podLabels(p, nl, clusterName, f)
		b.Reset()
		for _, s := range l {
			b.WriteString(s)
			b.WriteByte(0)
		}
		k := b.String()
		if _, ok := sets[k]; !ok {
			sets[k] = l
		}
		podSet[i] = k
	}
	keys := make([]string, 0, len(sets))
	for k := range sets {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	got, coll, unalloc := place(keys, MinLocal, MaxLocal)
	ids.Unallocated += unalloc
	for _, c := range coll {
		ids.Collisions = append(ids.Collisions, Collision{Labels: sets[c.key], Home: c.home, Holder: sets[c.holder], Got: c.got})
	}
	for k, id := range got {
		ids.labels[id] = sets[k]
		ids.podIDs = append(ids.podIDs, id)
	}
	slices.Sort(ids.podIDs)

	// Pods and their addresses, in namespace/name order so that a
	// conflict resolves the same way everywhere.
	order := make([]int, len(snap.Pods))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(x, y int) int {
		return cmp.Or(cmp.Compare(snap.Pods[x].Namespace, snap.Pods[y].Namespace), cmp.Compare(snap.Pods[x].Name, snap.Pods[y].Name))
	})
	for _, i := range order {
		p := &snap.Pods[i]
		key := p.Namespace + "/" + p.Name
		e := addrEntry{pod: key, node: p.Node, hostNetwork: p.HostNetwork}
		if !p.HostNetwork {
			e.id = got[podSet[i]]
			ids.pods[key] = e.id
		}
		for _, ip := range p.IPs {
			ip = ip.Unmap()
			if old, dup := ids.addrs[ip]; dup {
				if !(old.hostNetwork && p.HostNetwork) {
					ids.AddressConflicts++
				}
				continue
			}
			ids.addrs[ip] = e
		}
	}
	// The API server's addresses: the backends of default/kubernetes that
	// no pod owns.
	for _, s := range snap.Services {
		if s.Namespace != "default" || s.Name != "kubernetes" {
			continue
		}
		for _, be := range s.Backends {
			if ip := be.IP.Unmap(); ip.IsValid() {
				if _, owned := ids.addrs[ip]; !owned {
					ids.addrs[ip] = addrEntry{id: hubble.IdentityKubeAPIServer}
				}
			}
		}
	}

	ids.allocateCIDRs(prefixes)
	return ids
}

// allocateCIDRs gives each distinct masked prefix its CIDR identity.
func (ids *Identities) allocateCIDRs(prefixes []netip.Prefix) {
	byKey := map[string]netip.Prefix{}
	for _, p := range prefixes {
		if !p.IsValid() {
			continue
		}
		p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-unmapShift(p)).Masked()
		byKey[p.String()] = p
	}
	keys := make([]string, 0, len(byKey))
	for k := range byKey {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	got, coll, unalloc := place(keys, MinCIDR, MaxCIDR)
	ids.Unallocated += unalloc
	for _, c := range coll {
		ids.Collisions = append(ids.Collisions, Collision{Labels: cidrLabels(byKey[c.key]), Home: c.home, Holder: cidrLabels(byKey[c.holder]), Got: c.got})
	}
	lens := [2]map[int]bool{{}, {}}
	for k, id := range got {
		p := byKey[k]
		ids.byPrefix[p] = id
		ids.labels[id] = cidrLabels(p)
		ids.prefixes = append(ids.prefixes, p)
		lens[family(p.Addr())][p.Bits()] = true
	}
	slices.SortFunc(ids.prefixes, comparePrefix)
	for fam := range lens {
		for l := range lens[fam] {
			ids.prefixLens[fam] = append(ids.prefixLens[fam], l)
		}
		slices.SortFunc(ids.prefixLens[fam], func(x, y int) int { return y - x })
	}
}

// unmapShift is how many prefix bits an IPv4-mapped IPv6 prefix loses when
// its address is unmapped.
func unmapShift(p netip.Prefix) int {
	if p.Addr().Is4In6() {
		return 96
	}
	return 0
}

func family(a netip.Addr) int {
	if a.Is4() {
		return 0
	}
	return 1
}

func comparePrefix(x, y netip.Prefix) int {
	return cmp.Or(x.Addr().Compare(y.Addr()), cmp.Compare(x.Bits(), y.Bits()))
}

// cidrLabels are the labels of a prefix's identity: "cidr:<prefix>" (an
// IPv6 prefix with '-' for ':', as Cilium writes it) and reserved:world.
func cidrLabels(p netip.Prefix) []string {
	s := p.Masked().Addr().String()
	if p.Addr().Is6() {
		s = strings.ReplaceAll(s, ":", "-")
		if strings.HasPrefix(s, "-") {
			s = "0" + s
		}
		if strings.HasSuffix(s, "-") {
			s += "0"
		}
	}
	return []string{SourceCIDR + ":" + s + "/" + strconv.Itoa(p.Bits()), hubble.LabelReservedWorld}
}
