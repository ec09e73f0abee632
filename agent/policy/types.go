package policy

import (
	"cmp"
	"fmt"
	"slices"

	"github.com/flowbus/flowbus/agent/identity"
)

// Direction is the direction of traffic relative to an endpoint, numbered
// as Cilium's trafficdirection: Ingress 0, Egress 1.
type Direction uint8

// The two directions.
const (
	Ingress Direction = 0
	Egress  Direction = 1
)

func (d Direction) String() string {
	if d == Egress {
		return "egress"
	}
	return "ingress"
}

// Kind is the kind of a policy object, as Hubble's flow.Policy.Kind names
// it.
type Kind string

// The kinds of policy objects the compiler reads.
const (
	KindNetworkPolicy                  Kind = "NetworkPolicy"
	KindCiliumNetworkPolicy            Kind = "CiliumNetworkPolicy"
	KindCiliumClusterwideNetworkPolicy Kind = "CiliumClusterwideNetworkPolicy"
)

// PolicyRef names a policy object: the kind, namespace (empty for a
// CiliumClusterwideNetworkPolicy) and name of Hubble's flow.Policy.
type PolicyRef struct {
	Kind      Kind
	Namespace string
	Name      string
}

func (r PolicyRef) String() string {
	if r.Namespace == "" {
		return string(r.Kind) + " " + r.Name
	}
	return string(r.Kind) + " " + r.Namespace + "/" + r.Name
}

func comparePolicyRef(a, b PolicyRef) int {
	return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name), cmp.Compare(a.Kind, b.Kind))
}

// Key is the key of one entry of an endpoint's policy map in one
// direction: a peer identity, an IP protocol and a range of destination
// ports written as a prefix, as the kernel's LPM key holds them (see the
// package doc). A zero field is a wildcard: Peer 0 is any peer, Proto 0
// any protocol (and then Port and PortBits are 0), PortBits 0 any port.
type Key struct {
	Peer     identity.ID
	Proto    uint8  // IANA protocol number: 6 TCP, 17 UDP, 132 SCTP, ...
	Port     uint16 // the first port of the range, host order
	PortBits uint8  // leading bits of the destination port that must equal Port's: 16 one port, 0 every port
}

// FixedPrefixBits is the length, in bits, of the part of the kernel's LPM
// key that is always matched exactly: endpoint id (32), peer identity
// (32) and direction (8).
const FixedPrefixBits = 72

// PrefixLen is the prefix length of k's kernel LPM key: FixedPrefixBits,
// plus 8 for the protocol and PortBits for the port when Proto is set.
func (k Key) PrefixLen() uint32 {
	if k.Proto == 0 {
		return FixedPrefixBits
	}
	return FixedPrefixBits + 8 + uint32(k.PortBits)
}

// PortRange returns the first and last destination port k covers.
func (k Key) PortRange() (lo, hi uint16) {
	if k.Proto == 0 || k.PortBits == 0 {
		return 0, 65535
	}
	span := uint16(1)<<(16-k.PortBits) - 1
	return k.Port, k.Port | span
}

func (k Key) String() string {
	peer := "any"
	if k.Peer != 0 {
		peer = fmt.Sprint(uint32(k.Peer))
	}
	if k.Proto == 0 {
		return peer + " any"
	}
	lo, hi := k.PortRange()
	if lo == hi {
		return fmt.Sprintf("%s %s/%d", peer, ProtoName(k.Proto), lo)
	}
	return fmt.Sprintf("%s %s/%d-%d", peer, ProtoName(k.Proto), lo, hi)
}

func compareKey(a, b Key) int {
	return cmp.Or(cmp.Compare(a.Peer, b.Peer), cmp.Compare(a.Proto, b.Proto), cmp.Compare(a.Port, b.Port), cmp.Compare(a.PortBits, b.PortBits))
}

func portMask(bits uint8) uint16 {
	if bits == 0 {
		return 0
	}
	return ^uint16(0) << (16 - bits)
}

// Entry is one policy map entry: what it covers and the policies that
// allow (or, in a deny list, deny) it. Policies also names the policies of
// every entry that covers at least as much (a wider port range, any
// protocol, and the same or any peer), since the kernel's LPM lookup
// returns only the most specific entry: the entry found names every policy
// whose rule covers the packet at least as widely.
type Entry struct {
	Key
	Policies []PolicyRef // sorted; shared between results, never modified
}

// DirectionPolicy is an endpoint's policy in one direction.
type DirectionPolicy struct {
	// Enforced is set when some policy puts the endpoint in default deny
	// in this direction: a packet no Allow entry covers is dropped.
	Enforced bool
	// Allow and Deny are the policy map's entries, sorted by Key. A Deny
	// entry drops what it covers whatever Allow says, enforced or not.
	Allow, Deny []Entry
	// SelectedBy names the policies that select the endpoint and put it in
	// default deny in this direction (including those that failed), sorted.
	// They are the *_denied_by of a packet that nothing allows.
	SelectedBy []PolicyRef
	// FailClosed, when not empty, says why this direction's policy could
	// not be computed: it is then enforced with no entries, so every
	// packet is dropped, denied by SelectedBy.
	FailClosed string
}

// EndpointPolicy is the compiled policy of one endpoint (a pod that is not
// host-network).
type EndpointPolicy struct {
	Namespace string
	Name      string
	Identity  identity.ID
	Ingress   DirectionPolicy
	Egress    DirectionPolicy
}

// Direction returns the endpoint's policy in d.
func (e *EndpointPolicy) Direction(d Direction) *DirectionPolicy {
	if d == Egress {
		return &e.Egress
	}
	return &e.Ingress
}

// Error is a policy object the compiler rejected: the object, the field
// (a path into the object, "spec.ingress[0].ports[1].port") and what is
// wrong with it.
type Error struct {
	Policy PolicyRef
	Field  string
	Err    error
}

func (e *Error) Error() string {
	if e.Field == "" {
		return fmt.Sprintf("%s: %v", e.Policy, e.Err)
	}
	return fmt.Sprintf("%s: %s: %v", e.Policy, e.Field, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// Note is something of a policy that is parsed but not enforced (an L7
// rule): the object, the field and what the datapath does instead.
type Note struct {
	Policy PolicyRef
	Field  string
	What   string
	Rules  int // how many L7 rules the note covers
}

func (n Note) String() string { return fmt.Sprintf("%s: %s: %s", n.Policy, n.Field, n.What) }

// Stats counts what one compilation did.
type Stats struct {
	Policies      int // policy objects compiled
	Rejected      int // policy objects rejected (Result.Errors)
	L7NotEnforced int // L7 rules parsed and not enforced (the Rules of Result.Notes)
	Endpoints     int // endpoints compiled
	FailedClosed  int // endpoint directions that failed closed
	Entries       int // allow and deny entries over all endpoints
}

// Result is the compiled policy of every endpoint of a snapshot. It is
// immutable and safe for concurrent use; its slices are shared between
// endpoints and results and must not be modified.
type Result struct {
	Endpoints []EndpointPolicy // sorted by namespace, then name
	Errors    []*Error         // rejected policies, sorted by policy
	Notes     []Note           // what is parsed but not enforced, sorted by policy
	Stats     Stats
}

// Endpoint returns the compiled policy of the pod namespace/name.
func (r *Result) Endpoint(namespace, name string) (*EndpointPolicy, bool) {
	i, ok := slices.BinarySearchFunc(r.Endpoints, [2]string{namespace, name}, func(e EndpointPolicy, k [2]string) int {
		return cmp.Or(cmp.Compare(e.Namespace, k[0]), cmp.Compare(e.Name, k[1]))
	})
	if !ok {
		return nil, false
	}
	return &r.Endpoints[i], true
}

// Protocol numbers.
const (
	ProtoICMP   = 1
	ProtoIGMP   = 2
	ProtoTCP    = 6
	ProtoUDP    = 17
	ProtoICMPv6 = 58
	ProtoVRRP   = 112
	ProtoSCTP   = 132
)

var protoNames = map[uint8]string{ProtoICMP: "ICMP", ProtoIGMP: "IGMP", ProtoTCP: "TCP", ProtoUDP: "UDP",
	ProtoICMPv6: "ICMPv6", ProtoVRRP: "VRRP", ProtoSCTP: "SCTP"}

// ProtoName names an IP protocol number ("TCP"), or gives the number.
func ProtoName(p uint8) string {
	if n, ok := protoNames[p]; ok {
		return n
	}
	return fmt.Sprint(p)
}
