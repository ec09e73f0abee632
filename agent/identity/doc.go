// Package identity gives every pod, every address and every prefix that a
// policy names a numeric security identity, as Cilium numbers them, the same
// on every node and with no coordination between nodes: an identity is a
// function of the cluster snapshot (agent/cluster) and nothing else.
//
// # Label sets
//
// A pod's identity labels are, in Hubble's "source:key=value" form:
//
//   - its Kubernetes labels as k8s:key=value, minus the keys Cilium owns
//     (io.cilium.k8s…);
//   - k8s:io.kubernetes.pod.namespace=<namespace>;
//   - k8s:io.cilium.k8s.namespace.labels.<key>=<value> for each label of its
//     namespace (kubernetes.io/metadata.name=<namespace>, which Kubernetes
//     puts on every namespace, is assumed when the snapshot lacks it);
//   - k8s:io.cilium.k8s.policy.cluster=<cluster> (Allocator.ClusterName,
//     "default" if empty);
//
// each kept only if Cilium's default label filter (pkg/labelsfilter) keeps
// its key: IdentityRelevant. That filter drops, among others,
// pod-template-hash, controller-revision-hash, statefulset.kubernetes.io/
// pod-name and the other io.kubernetes, kubernetes.io and k8s.io keys, so
// two replicas of a workload share an identity. The labels are sorted.
// Cilium also adds io.cilium.k8s.policy.serviceaccount; cluster.Pod does not
// carry the service account, so flowbus's label sets lack it.
//
// # Numbers
//
// Reserved identities are Cilium's, declared once in schemas/hubble (host 1,
// world 2, unmanaged 3, health 4, init 5, remote-node 6, kube-apiserver 7,
// ingress 8, world-ipv4 9, world-ipv6 10, …), with the label
// reserved:<name>.
//
// A label set's identity is in Cilium's cluster-local range 256–65535. Its
// home is slotHash(0, labels) mod 65280 + 256, where slotHash is 64-bit
// FNV-1a over a round number and the labels joined with NUL bytes, finished
// with MurmurHash3's fmix64. Collisions are resolved by rounds: in round r
// every set still without an identity takes slotHash(r, labels) unless a set
// placed before it (in an earlier round, or earlier in byte order in the
// same round) holds it; after 16 rounds the rest probe linearly. So a set
// keeps its identity as long as no new set collides with it in its own or an
// earlier round, and a collision moves only the sets involved, never the
// whole table. Every set that did not get its home is listed in
// Identities.Collisions (with the set that holds its home); sets left
// without a number because the range is full are counted in Unallocated.
//
// A policy prefix (an ipBlock, toCIDR or toCIDRSet prefix) gets a CIDR
// identity in Cilium's node-local scope, 1<<24 | n with n in 1…2^24-1,
// by the same rounds over the prefix's text: a prefix keeps its number
// when others come and go. Its labels are cidr:<prefix> (IPv6 written with
// '-' for ':', as Cilium does) and reserved:world. Unlike Cilium, a
// zero-length prefix gets a CIDR identity too, so that a peer's identity
// never confuses "any address" with "outside the cluster".
//
// # Addresses
//
// The ipcache (Identities.IPCache, Lookup) maps an address to the identity
// of the pod that owns it; the addresses of host-network pods (their node's)
// to host on the node itself and remote-node elsewhere; the backends of the
// service default/kubernetes that no pod owns to kube-apiserver; any other
// address to the identity of the most specific policy prefix containing it,
// or world. Every entry also carries that most specific prefix's identity
// (Peer.CIDR), so that a policy naming a prefix can match pod addresses
// inside it (Kubernetes' ipBlock rule) with one more policy lookup and no
// second LPM lookup; see agent/policy.
//
// Allocate recomputes everything from the snapshot; it is cheap enough to
// run on every snapshot (BenchmarkAllocate: 10,000 pods).
package identity
