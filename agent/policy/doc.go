// Package policy compiles the cluster's network policies (Kubernetes
// NetworkPolicy, and the L3/L4 part of CiliumNetworkPolicy and
// CiliumClusterwideNetworkPolicy) into per-endpoint policy maps that the tc
// program looks up on a flow's first packet, and holds the reference model
// of that lookup (Evaluate).
//
// Compile takes a cluster snapshot and an identity.Allocator and gives, for
// every endpoint (a pod that is not host-network) and each direction:
// whether it is enforced (default deny), its Allow and Deny entries, the
// policies that select it (SelectedBy), and, when its policy could not be
// computed, why it fails closed. Diff turns two results into the map
// writes and deletes that take the kernel from one to the other.
//
// # The kernel's maps and lookup
//
// An Entry's Key is the key of an LPM trie, in one map for Allow entries
// and one for Deny entries (all endpoints, both directions):
//
//	struct policy_key {
//		__u32  prefixlen; // Key.PrefixLen(): 72, or 80 + PortBits
//		__u32  endpoint;  // the loader's id for the endpoint (its host-side ifindex is at hand in both directions)
//		__u32  peer;      // Key.Peer, 0 for any
//		__u8   direction; // 0 ingress, 1 egress
//		__u8   proto;     // Key.Proto, 0 for any
//		__be16 dport;     // Key.Port, big-endian so that a port range is a bit prefix
//	};
//
// The value names the entry's policies: an index into a table of policy
// sets the agent keeps (Entry.Policies), which also gives Hubble's
// *_allowed_by and *_denied_by. Per endpoint and direction the kernel also
// needs the enforced flag, whether any Deny entry exists, and SelectedBy's
// index (a small hash map keyed by endpoint).
//
// On a flow's first packet at endpoint E in direction D (egress at the
// source's interface, ingress at the destination's), with peer address A
// (the destination for egress, the source for ingress), protocol P and
// destination port T (0 for a protocol without ports):
//
//  1. ipcache LPM lookup of A: identity I and CIDR identity C (see
//     agent/identity: the most specific policy prefix containing A).
//  2. The peers to try, in order (LookupOrder): I; the world identity of
//     A's family (world-ipv4 9 or world-ipv6 10) if I is world or a CIDR
//     identity; C if it is set and differs from I (a pod inside an
//     ipBlock); 0 (any peer).
//  3. If E has Deny entries in D: an LPM lookup {E, peer, D, P, T} per
//     peer; a hit drops the packet (POLICY_DENIED), denied by the entry's
//     policies.
//  4. If E is not enforced in D: the packet passes (no policy).
//  5. An LPM lookup {E, peer, D, P, T} per peer in the Allow map; the first
//     hit passes the packet, allowed by the entry's policies.
//  6. Otherwise the packet is dropped (POLICY_DENIED), denied by SelectedBy.
//
// That is one ipcache lookup and at most four policy lookups (eight with
// deny entries), on new flows only; established packets follow their flow
// entry. Evaluate does exactly this on the compiled Result.
//
// Decision: LPM keys with port prefixes, not exact hash keys with ranges
// expanded. An endPort range such as 1024–65535 is tens of thousands of
// exact ports per peer but at most 30 prefixes (portPrefixes splits a range
// into the fewest aligned ones); any protocol and any port are just shorter
// prefixes; Cilium's own policy map is an LPM trie for the same reasons. The
// endpoint, peer and direction come first and are always matched whole, so
// one lookup is one (peer) question. A hash map would need a lookup per
// wildcard combination (peer × protocol × port) instead. Because an LPM
// lookup returns only the most specific entry, an entry's Policies also
// name the policies of every entry that covers it in the same lookup or in
// the any-peer lookup, so the entry found names every policy whose rule
// covers the packet at least as widely. (A narrower rule of a later lookup,
// any peer on one port where the peer's own entry allows every port, is not
// named: the kernel never looks it up.)
//
// Deny entries live in their own map and are looked up first, over every
// peer, so that a deny always wins (as in Cilium) without the compiler
// splitting allow entries around denies.
//
// Decision: a packet that nothing allows is reported denied by the policies
// that select the endpoint in that direction (SelectedBy) in Hubble's
// ingress_denied_by / egress_denied_by. Cilium fills those fields only from
// deny rules and leaves them empty on a default-deny drop, so a user of
// Hubble sees POLICY_DENIED with no policy; the question during an incident
// is which policy put the endpoint in default deny, and that is SelectedBy.
// A drop by a deny rule is reported with that rule's policies, as in Cilium.
//
// Diff gives, per endpoint and direction, the entries to upsert and the keys
// to delete; applied in the order DirectionChange documents (upserts, the
// enforced flag, deletes), no state in between allows or denies what
// neither the old nor the new policy does.
//
// # Semantics
//
// Kubernetes NetworkPolicy: in full. policyTypes (defaulted as the API server
// does: Ingress, plus Egress when egress rules exist) decides which
// directions a policy enforces; rules of a direction it does not name are
// ignored. An empty or absent from/to allows every peer, an empty or absent
// ports list every port; a peer is a podSelector (in the policy's
// namespace), a namespaceSelector, both (pods so labelled in namespaces so
// labelled) or an ipBlock with except. Ports: TCP (the default), UDP, SCTP;
// a numeric port with endPort, or a named port, resolved on the endpoint's
// own container ports for ingress and on each peer identity's pods' for
// egress (on every pod's for a peer that is not a pod identity, as Cilium
// does).
//
// CiliumNetworkPolicy and CiliumClusterwideNetworkPolicy: spec and specs,
// each with endpointSelector (a namespaced policy's always within its
// namespace), ingress/egress with fromEndpoints/toEndpoints (matchLabels and
// matchExpressions; keys with source k8s:, reserved: or any:; a peer
// selector that names no namespace is limited to the policy's namespace, or
// for a clusterwide policy to pods, as in Cilium), fromCIDR/toCIDR,
// fromCIDRSet/toCIDRSet with except, fromEntities/toEntities (all, world,
// world-ipv4, world-ipv6, cluster, host, remote-node, kube-apiserver,
// health, init, ingress, unmanaged, none), toPorts with port, endPort and
// protocol (ANY is TCP, UDP and SCTP, as in Cilium), ingressDeny and
// egressDeny, and enableDefaultDeny. As in Cilium, a direction is enforced
// when the rule has rules for it (allow or deny) unless enableDefaultDeny
// says otherwise; an explicitly empty peer list selects nothing; a rule with
// neither peers nor ports allows nothing; one rule names one kind of peer.
// L7 rules (rules.http, kafka, dns, l7proto/l7) and TLS/listener settings
// are parsed and checked, then noted in Result.Notes as not enforced and
// counted (Stats.L7NotEnforced): the datapath allows their ports at L4.
// Fields flowbus does not enforce (nodeSelector, fromRequires/toRequires,
// toServices, toFQDNs, fromGroups/toGroups, fromNodes/toNodes, icmps,
// authentication, cidrGroupRef/cidrGroupSelector) reject the policy, so
// that a policy never quietly means less than it says.
//
// Decision: selectors choose identities, not pods, as in Cilium: they see a
// pod's identity labels (agent/identity), so a selector on a label the
// identity filter drops (pod-template-hash, statefulset.kubernetes.io/
// pod-name) selects nothing, and all pods of an identity get the same
// policy. This is what lets the kernel decide by identity alone.
//
// Decision: a CIDR peer (ipBlock, toCIDR, toCIDRSet) matches every address
// inside it, pods' included: Kubernetes' ipBlock rule, which the upstream
// conformance suite tests (a pod's /32 in an ipBlock). Cilium matches CIDR
// rules only against addresses outside the cluster; flowbus applies the
// Kubernetes rule to both kinds, so one lookup order serves both. A CIDR
// peer is compiled to the identities of the policy prefixes inside it and
// outside its exceptions; since an address's CIDR identity is the most
// specific policy prefix containing it, that is exactly the CIDR minus the
// exceptions.
//
// # Bad input and failing closed
//
// A policy with bad input (a bad selector, a named port no pod declares, a
// malformed CIDR, an unknown or unsupported field of a Cilium spec, ...) is
// rejected with an Error naming the object and the field, counted in
// Stats.Rejected; every other policy compiles as usual. Each endpoint the
// rejected policy would select, in each direction it would enforce, fails
// closed: enforced with no entries, FailClosed saying why, and the policy in
// SelectedBy. When the subject selector itself is what is wrong, the whole
// namespace (the whole cluster for a clusterwide policy) fails closed in
// the directions the policy names.
//
// A pod's traffic to itself never crosses its interface and is not
// policed. An endpoint that a Result does not know (a pod newer than the
// snapshot) is treated by Evaluate as selected by nothing.
package policy
