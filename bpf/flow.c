//go:build ignore

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//
// flow.c: tcx ingress/egress flow accounting. See doc.go for the decisions
// (map type, event policy, struct layout, attach mode).

#include "flow.h"
#include "kernel_types.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_core_read.h>

char __license[] SEC("license") = "Dual BSD/GPL";

// Feature switches, set from Go before load (spec.Variables).
//
// naive_per_packet_events: emit one ring buffer event per packet and keep no
// flow state (the per-event design this program exists to avoid; used by the
// storm comparison).
volatile const __u8 naive_per_packet_events = 0;
// emit_start_events: emit EVENT_FLOW_START for every new flow. Off by
// default: the reservation costs about as much as the map insert (doc.go).
volatile const __u8 emit_start_events = 0;
// wakeup_bytes: 0 lets the kernel wake the reader for every event it finds
// idle; otherwise an event is submitted with a forced wakeup once this many
// bytes wait in the ring, and else with the default, which wakes the reader
// only when the ring held nothing unread before it: the first event of a
// batch. The reader then gathers the batch for its poll interval without
// listening (doc.go, "Wakeups"): one wakeup per batch, none when idle.
volatile const __u32 wakeup_bytes = 0;

// The established path stamps last_seen from jiffies, which the verifier
// inlines on 64-bit (no helper call), converted to CLOCK_MONOTONIC ns:
// jiffies * tick_ns + jiffies_base_ns. tick_ns is the kernel's tick, set
// from Go before load; jiffies_base_ns is set by clock_calibrate, which Go
// runs once after load (doc.go, "Clocks").
volatile const __u64 tick_ns = 0;
// end_linger_ns: how long an ended, reported flow's entry stays to gather
// its tail (Config.EndLinger); sweep_husks frees it once quiet that long.
volatile const __u64 end_linger_ns = 0;
__u64 jiffies_base_ns = 0;

// L7 capture (doc.go, "L7 capture"). l7_enabled 0 leaves the capture out
// of the program the verifier sees: flows pay nothing for it. Otherwise a
// flow whose server port has a class in l7_ports is marked at its first
// packet (flow_stats.l7) at the one interface that captures it, and each of
// its segments with payload, and its SYN, FIN and RST, is copied to
// l7_events with the first l7_head_bytes of its payload. l7_wakeup_bytes
// is wakeup_bytes for that ring.
volatile const __u8 l7_enabled = 0;
volatile const __u32 l7_head_bytes = 0;
volatile const __u32 l7_wakeup_bytes = 0;

// policy_revision changes (userspace sets it) whenever policy or identities
// change anywhere; a flow decided under another revision is decided again
// on its next packet (doc.go, "Policy"). 0: no policy was ever loaded.
__u32 policy_revision = 0;

// One flows map per family, so that an IPv4 packet's lookup hashes and
// compares a 20-byte key (doc.go). Sizes are defaults; Go overrides
// max_entries before load.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct flow_key4);
	__type(value, struct flow_stats);
} flows4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct flow_key);
	__type(value, struct flow_stats);
} flows6 SEC(".maps");

// ended4 and ended6 remember, for a while after a flow's end was reported
// and its entry freed, who opened it and what its end carried, so that a
// packet after the end starts the flow's tail instead of a new flow
// oriented from whoever sent it (doc.go, "Ends and tails"). LRU: these are
// hints, not counts; an evicted hint only makes such a packet mid-stream.
// 16384 per family outlive a second of ends at 16,000 connections/s, and
// late packets come within a retransmission timeout of the end.
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct flow_key4);
	__type(value, struct ended);
} ended4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct flow_key);
	__type(value, struct ended);
} ended6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} events SEC(".maps");

// ipcache: address prefix → security identity (doc.go, "Policy").
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct ipcache_key);
	__type(value, struct ipcache_value);
} ipcache SEC(".maps");

// endpoints: ifindex of a pod's host-side interface → the pod's endpoint.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct endpoint);
} endpoints SEC(".maps");

// policy_allow and policy_deny: the allow and deny rules of every
// endpoint, by generation. Apart, so that a narrower allow never hides a
// wider deny in one longest-prefix lookup.
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 262144);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct policy_key);
	__type(value, struct policy_value);
} policy_allow SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct policy_key);
	__type(value, struct policy_value);
} policy_deny SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, COUNTER_MAX);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

// l7_ports: server port → its class per transport (struct l7_port). Go
// sizes it to the highest enabled port + 1 before load; a lookup beyond
// is a port not enabled.
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct l7_port);
} l7_ports SEC(".maps");

// l7_events: the captures, in their own ring so that a burst of payload
// never takes the room of flow records. Go sets its size before load.
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 22);
} l7_events SEC(".maps");

// l7_scratch: one capture being built per CPU (it is too big for the
// stack); only its header and head bytes go to the ring.
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct l7_event);
} l7_scratch SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, L7_CLASS_MAX * L7_COUNTER_MAX);
	__type(key, __u32);
	__type(value, __u64);
} l7_counters SEC(".maps");

// btf_anchor puts the enums shared with Go into BTF so that bpf2go generates
// them (-type) with the event struct; it costs one pointer in .bss.
struct btf_anchor {
	enum event_type type;
	enum flow_flag flag;
	enum counter counter;
	enum verdict verdict;
	enum drop_reason drop_reason;
	enum kdrop kdrop;
	struct flow_event event;
	struct ipcache_key ipcache_key;
	struct ipcache_value ipcache_value;
	struct endpoint endpoint;
	struct policy_key policy_key;
	struct policy_value policy_value;
	enum l7_limits l7_limits;
	enum l7_counter l7_counter;
	struct l7_event l7_event;
	struct l7_port l7_port;
	__u32 pad;
};
struct btf_anchor *unused_btf_anchor __attribute__((unused));

// Upper bound of IPv6 extension headers walked before giving up.
#define MAX_IPV6_EXT 8
// Linear bytes wanted before parsing (headers of every supported packet fit).
#define PULL_LEN 128

struct packet {
	__u64 src[2];
	__u64 dst[2];
	__u16 sport;
	__u16 dport;
	__u16 tcp_flags;
	__u8 proto;
	__u8 family;
	__u8 icmp_type;
	__u8 icmp_code;
	__u16 l4_off; /* where the L4 header starts in the skb */
	__u32 l3_end; /* where the IP packet ends */
};

static __always_inline void count(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&counters, &idx);
	if (v)
		*v += 1;
}

// parse fills p from the packet and returns 0, or the counter of the reason
// the packet is not tracked (a parse error, non-IP, a later fragment).
static __always_inline int parse(struct __sk_buff *skb, struct packet *p)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	__u32 len = skb->len;

	if (data + ETH_HLEN > data_end)
		return COUNTER_ETH_TRUNCATED;
	struct ethhdr *eth = data;
	__u16 l3 = bpf_ntohs(eth->h_proto);
	__u32 off = ETH_HLEN;
	__u32 l3_end; // end of the IP packet as its header states it
	__u8 nh;

	if (l3 == ETH_P_IP) {
		struct iphdr *ip = data + off;
		if ((void *)(ip + 1) > data_end)
			return COUNTER_IPV4_TRUNCATED;
		__u32 ihl = (ip->ihl_version & 0x0f) * 4;
		__u32 tot = bpf_ntohs(ip->tot_len);
		if ((ip->ihl_version >> 4) != 4 || ihl < sizeof(*ip) || tot < ihl)
			return COUNTER_IPV4_MALFORMED;
		if (off + tot > len || data + off + ihl > data_end)
			return COUNTER_IPV4_TRUNCATED;
		if (bpf_ntohs(ip->frag_off) & 0x1fff)
			return COUNTER_FRAGMENT;
		p->family = 4;
		p->src[0] = 0;
		p->dst[0] = 0;
		p->src[1] = ((__u64)ip->saddr << 32) | bpf_htonl(0xffff);
		p->dst[1] = ((__u64)ip->daddr << 32) | bpf_htonl(0xffff);
		nh = ip->protocol;
		l3_end = off + tot;
		off += ihl;
	} else if (l3 == ETH_P_IPV6) {
		struct ipv6hdr *ip6 = data + off;
		if ((void *)(ip6 + 1) > data_end)
			return COUNTER_IPV6_TRUNCATED;
		__u32 plen = bpf_ntohs(ip6->payload_len);
		if ((ip6->ver_prio >> 4) != 6 || plen == 0)
			return COUNTER_IPV6_MALFORMED;
		if (off + sizeof(*ip6) + plen > len)
			return COUNTER_IPV6_TRUNCATED;
		p->family = 6;
		__builtin_memcpy(p->src, ip6->saddr, 16);
		__builtin_memcpy(p->dst, ip6->daddr, 16);
		nh = ip6->nexthdr;
		off += sizeof(*ip6);
		l3_end = off + plen;

		int i;
		for (i = 0; i < MAX_IPV6_EXT; i++) {
			__u8 *h = data + off;
			if (nh != IPPROTO_HOPOPTS && nh != IPPROTO_ROUTING && nh != IPPROTO_DSTOPTS &&
			    nh != IPPROTO_FRAGMENT && nh != IPPROTO_AH)
				break;
			// Every extension header starts with next header and a length byte;
			// the fragment header is 8 bytes.
			if ((void *)(h + 8) > data_end || off + 8 > l3_end)
				return COUNTER_IPV6_EXT_TRUNCATED;
			__u32 hlen;
			if (nh == IPPROTO_FRAGMENT) {
				if (((h[2] << 8) | h[3]) & 0xfff8)
					return COUNTER_FRAGMENT;
				hlen = 8;
			} else if (nh == IPPROTO_AH) {
				hlen = ((__u32)h[1] + 2) * 4;
			} else {
				hlen = ((__u32)h[1] + 1) * 8;
			}
			nh = h[0];
			off += hlen;
			if (off > l3_end)
				return COUNTER_IPV6_EXT_TRUNCATED;
		}
		if (i == MAX_IPV6_EXT)
			return COUNTER_IPV6_EXT_LIMIT;
	} else {
		return COUNTER_NON_IP;
	}

	p->proto = nh;
	p->l3_end = l3_end;
	// off and l3_end are bounded by len (< 64 KiB); the mask lets the
	// verifier see it.
	off &= 0xffff;
	p->l4_off = off;
	void *l4 = data + off;
	if (nh == IPPROTO_TCP) {
		struct tcphdr *tcp = l4;
		if ((void *)(tcp + 1) > data_end || off + sizeof(*tcp) > l3_end)
			return COUNTER_L4_TRUNCATED;
		__u32 doff = (tcp->doff_res >> 4) * 4;
		if (doff < sizeof(*tcp))
			return COUNTER_TCP_MALFORMED;
		if (off + doff > l3_end)
			return COUNTER_L4_TRUNCATED;
		p->sport = bpf_ntohs(tcp->source);
		p->dport = bpf_ntohs(tcp->dest);
		p->tcp_flags = tcp->flags | ((__u16)(tcp->doff_res & 1) << 8);

	} else if (nh == IPPROTO_UDP || nh == IPPROTO_SCTP) {
		// SCTP's common header starts with the ports as UDP's does; the
		// first 8 bytes are checked for both (one branch keeps the
		// verifier's state count down).
		struct udphdr *udp = l4;
		if ((void *)(udp + 1) > data_end || off + sizeof(*udp) > l3_end)
			return COUNTER_L4_TRUNCATED;
		p->sport = bpf_ntohs(udp->source);
		p->dport = bpf_ntohs(udp->dest);
	} else if (nh == IPPROTO_ICMP || nh == IPPROTO_ICMPV6) {
		struct icmphdr *icmp = l4;
		if ((void *)(icmp + 1) > data_end || off + sizeof(*icmp) > l3_end)
			return COUNTER_L4_TRUNCATED;
		p->icmp_type = icmp->type;
		p->icmp_code = icmp->code;
		// Echo request/reply: key by identifier so both directions match.
		if ((nh == IPPROTO_ICMP && (icmp->type == 8 || icmp->type == 0)) ||
		    (nh == IPPROTO_ICMPV6 && (icmp->type == 128 || icmp->type == 129))) {
			p->sport = bpf_ntohs(icmp->id);
			p->dport = p->sport;
		}
	}
	return 0;
}

// is_reply_first reports whether a flow's first packet is a reply, so that
// the receiver opened the flow: a SYN-ACK or an ICMP echo reply.
static __always_inline int is_reply_first(struct packet *p)
{
	if (p->proto == IPPROTO_TCP)
		return (p->tcp_flags & (FLOW_TCP_SYN | FLOW_TCP_ACK)) == (FLOW_TCP_SYN | FLOW_TCP_ACK);
	if (p->proto == IPPROTO_ICMP)
		return p->icmp_type == 0;
	if (p->proto == IPPROTO_ICMPV6)
		return p->icmp_type == 129;
	return 0;
}

// keys is a flow's key: v4 for IPv4 (flows4), full for IPv6 (flows6).
struct keys {
	struct flow_key full;
	struct flow_key4 v4;
};

static __always_inline struct flow_stats *flow_lookup(struct keys *k, __u8 family)
{
	if (family == 4)
		return bpf_map_lookup_elem(&flows4, &k->v4);
	return bpf_map_lookup_elem(&flows6, &k->full);
}

static __always_inline long flow_update(struct keys *k, __u8 family, struct flow_stats *st, __u64 flags)
{
	if (family == 4)
		return bpf_map_update_elem(&flows4, &k->v4, st, flags);
	return bpf_map_update_elem(&flows6, &k->full, st, flags);
}

static __always_inline struct ended *ended_lookup(struct keys *k, __u8 family)
{
	if (family == 4)
		return bpf_map_lookup_elem(&ended4, &k->v4);
	return bpf_map_lookup_elem(&ended6, &k->full);
}

static __always_inline void ended_update(struct keys *k, __u8 family, struct ended *e)
{
	if (family == 4)
		bpf_map_update_elem(&ended4, &k->v4, e, BPF_ANY);
	else
		bpf_map_update_elem(&ended6, &k->full, e, BPF_ANY);
}

// ended_of returns what a reported end leaves behind for its tail.
static __always_inline struct ended ended_of(struct flow_stats *st)
{
	struct ended e = {
		.flags = FLOW_ENDED | FLOW_REPORTED | ((st->flags & 0x1ff) << FLOW_REPORTED_FLAGS_SHIFT),
		.initiator_lo = st->initiator_lo,
		.initiator_ingress = st->initiator_ingress,
	};
	return e;
}

static __always_inline int emit(__u8 type, struct keys *k, __u8 family, struct flow_stats *st,
				__u8 is_reply, __u8 ingress, __u32 fail_counter)
{
	struct flow_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count(fail_counter);
		return -1;
	}
	if (family == 4) {
		// IPv4-mapped, as userspace reads every key.
		__builtin_memset(&e->key, 0, sizeof(e->key));
		e->key.addr_lo[10] = 0xff;
		e->key.addr_lo[11] = 0xff;
		__builtin_memcpy(&e->key.addr_lo[12], &k->v4.addr_lo, 4);
		e->key.addr_hi[10] = 0xff;
		e->key.addr_hi[11] = 0xff;
		__builtin_memcpy(&e->key.addr_hi[12], &k->v4.addr_hi, 4);
		e->key.port_lo = k->v4.port_lo;
		e->key.port_hi = k->v4.port_hi;
		e->key.ifindex = k->v4.ifindex;
		e->key.proto = k->v4.proto;
		e->key.family = 4;
	} else {
		e->key = k->full;
	}
	e->type = type;
	e->is_reply = is_reply;
	e->ingress = ingress;
	e->pad = 0;
	e->stats = *st;
	__u64 flags = 0;
	if (wakeup_bytes && bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) >= wakeup_bytes)
		flags = BPF_RB_FORCE_WAKEUP;
	bpf_ringbuf_submit(e, flags);
	return 0;
}

// report_end emits the end (or reset) of a flow, takes the counters it
// reported off the entry with atomic adds (a packet racing it on another
// CPU stays counted) and marks it reported: the entry lingers as the flow's
// tail, for the sweep to report (if packets came after the end) and free.
// It also leaves a hint (ended4/ended6), so that a packet after the sweep
// freed the entry still starts a tail, not a new flow (doc.go, "Ends and
// tails"). It returns 0, or -1 if the ring buffer refused the event:
// the entry then stays ended and unreported, with every counter, for the
// sweep.
static __always_inline int report_end(__u8 type, struct keys *k, __u8 family, struct flow_stats *st, __u8 reply,
				      __u8 ingress)
{
	struct flow_stats snap = *st;
	if (emit(type, k, family, &snap, reply, ingress, COUNTER_RINGBUF_END))
		return -1;
	struct ended e = ended_of(&snap);
	ended_update(k, family, &e);
	__sync_fetch_and_add(&st->bytes[0], -snap.bytes[0]);
	__sync_fetch_and_add(&st->bytes[1], -snap.bytes[1]);
	__sync_fetch_and_add(&st->packets[0], -snap.packets[0]);
	__sync_fetch_and_add(&st->packets[1], -snap.packets[1]);
	__sync_fetch_and_or(&st->flags, e.flags);
	// The entry lingers, reported, as the flow's tail: the sweep frees it
	// once quiet. Freeing it here lost packets: in a simultaneous close or a
	// reset the peer's packet is often being accounted on another CPU at
	// this instant, into an entry a delete would take away.
	return 0;
}

#define IDENTITY_WORLD 2

// flow_peer fills ik with the address (prefixlen 128, IPv4 mapped) of the
// side of flow st that is not the pod behind the interface, and sets the
// ports of the flow's initiator and responder.
static __always_inline void flow_peer(struct keys *k, __u8 family, struct flow_stats *st, struct ipcache_key *ik,
				      __u16 *init_port, __u16 *resp_port)
{
	// The pod opened the flow if its packets pass ingress: the peer is then
	// the responder.
	__u8 peer_lo = st->initiator_ingress ? !st->initiator_lo : st->initiator_lo;
	ik->prefixlen = 128;
	if (family == 4) {
		__builtin_memset(ik->addr, 0, 10);
		ik->addr[10] = 0xff;
		ik->addr[11] = 0xff;
		__u32 a = peer_lo ? k->v4.addr_lo : k->v4.addr_hi;
		__builtin_memcpy(&ik->addr[12], &a, 4);
		*init_port = st->initiator_lo ? k->v4.port_lo : k->v4.port_hi;
		*resp_port = st->initiator_lo ? k->v4.port_hi : k->v4.port_lo;
		return;
	}
	if (peer_lo)
		__builtin_memcpy(ik->addr, k->full.addr_lo, 16);
	else
		__builtin_memcpy(ik->addr, k->full.addr_hi, 16);
	*init_port = st->initiator_lo ? k->full.port_lo : k->full.port_hi;
	*resp_port = st->initiator_lo ? k->full.port_hi : k->full.port_lo;
}

#define IDENTITY_WORLD_IPV4 9
#define IDENTITY_WORLD_IPV6 10
#define IDENTITY_CIDR_MIN (1 << 24)

// policy_match looks up endpoint ep's rules in map m (policy_allow or
// policy_deny) for direction dir, protocol and destination port, over the
// peers in order (0 ends the list early: "any peer" is always last); each
// lookup is a longest-prefix match on (protocol, port). It returns the
// first rule found.
static __always_inline struct policy_value *policy_match(void *m, struct endpoint *ep, __u8 dir, __u32 peers[4],
							  __u8 proto, __u16 port)
{
	struct policy_key key;
	__builtin_memset(&key, 0, sizeof(key));
	key.prefixlen = 96;
	key.slot = (ep->id << 1) | (ep->gen & 1);
	key.direction = dir;
	key.proto = proto;
	key.port = bpf_htons(port);
	for (int i = 0; i < 4; i++) {
		key.peer = peers[i];
		struct policy_value *v = bpf_map_lookup_elem(m, &key);
		if (v)
			return v;
		if (peers[i] == 0)
			break;
	}
	return 0;
}

// policy_allows decides one direction of endpoint ep for a peer (identity
// and CIDR identity from the ipcache), the protocol and the destination
// port: a deny rule drops; a direction no policy selects passes; an allow
// rule passes; else the default deny drops. The peers looked up, in order:
// the peer's identity; the world identity of its address family if it is
// outside the cluster (world or a CIDR identity); its CIDR identity if that
// differs (a pod inside an ipBlock); any peer. It returns 1 if allowed, and
// sets *id to the policy_id of what decided (0 if nothing did).
static __always_inline int policy_allows(struct endpoint *ep, __u8 dir, __u32 peer, __u32 cidr, __u8 family,
					 __u8 proto, __u16 port, __u32 *id)
{
	__u32 peers[4] = {peer, 0, 0, 0};
	int n = 1;
	if (peer == IDENTITY_WORLD || peer == IDENTITY_WORLD_IPV4 || peer == IDENTITY_WORLD_IPV6 ||
	    peer >= IDENTITY_CIDR_MIN)
		peers[n++] = family == 4 ? IDENTITY_WORLD_IPV4 : IDENTITY_WORLD_IPV6;
	if (cidr && cidr != peer)
		peers[n++ & 3] = cidr;
	(void)n;
	struct policy_value *v;
	if (ep->has_deny[dir & 1] && (v = policy_match(&policy_deny, ep, dir, peers, proto, port))) {
		*id = v->policy_id;
		return 0;
	}
	if (!ep->enforce[dir & 1]) {
		*id = 0;
		return 1;
	}
	if ((v = policy_match(&policy_allow, ep, dir, peers, proto, port))) {
		*id = v->policy_id;
		return 1;
	}
	*id = ep->deny_id[dir & 1];
	return 0;
}

// decide_in is what a policy decision needs of a flow; decide_out what it
// decides.
struct decide_in {
	struct ipcache_key peer; /* the side that is not the pod behind the interface */
	__u32 ifindex;
	__u16 init_port;
	__u16 resp_port;
	__u8 family;
	__u8 proto;
	__u8 dir;       /* the pod's direction: 1 egress when it opened the flow */
	__u8 midstream; /* the opener is a guess */
};

struct decide_out {
	__u32 peer_identity;
	__u32 policy_id;
	__u8 verdict;
	__u8 pad[3];
};

// decide is policy_decide's work, a global function so that the verifier
// checks it once, apart from the three paths that call it (as one inlined
// body it multiplied their states toward the verifier's limit).
__attribute__((noinline)) int decide(struct decide_in *in, struct decide_out *out)
{
	if (!in || !out)
		return 0;
	out->verdict = VERDICT_FORWARDED;
	out->policy_id = 0;
	// The keys are looked up where the caller put them (no copy on this
	// frame: the caller's stack and this one share 512 bytes).
	struct ipcache_value *iv = bpf_map_lookup_elem(&ipcache, &in->peer);
	__u32 peer = iv ? iv->identity : IDENTITY_WORLD;
	__u32 cidr = iv ? iv->cidr_identity : 0;
	out->peer_identity = peer;
	struct endpoint *ep = bpf_map_lookup_elem(&endpoints, &in->ifindex);
	if (!ep)
		return 0;
	__u32 id = 0;
	if (policy_allows(ep, in->dir & 1, peer, cidr, in->family, in->proto, in->resp_port, &id)) {
		out->policy_id = id;
		return 0;
	}
	if (in->midstream) {
		// The other way round: the other side opened it, toward the port
		// the guessed opener used.
		__u32 rid = 0;
		if (policy_allows(ep, (in->dir & 1) ^ 1, peer, cidr, in->family, in->proto, in->init_port, &rid)) {
			out->policy_id = rid;
			return 0;
		}
	}
	out->verdict = VERDICT_DROPPED;
	out->policy_id = id;
	return 0;
}

// policy_decide decides flow st's verdict at interface ifindex under the
// current policy_revision (doc.go, "Policy"): the egress policy of the pod
// behind the interface when the pod opened the flow, else its ingress
// policy, for the peer's identity (from the ipcache; the world if absent),
// the protocol and the responder's port. A mid-stream flow, whose opener is
// a guess, is allowed if either way round is.
static __always_inline void policy_decide(struct keys *k, __u8 family, struct flow_stats *st, __u32 ifindex,
					  __u8 proto)
{
	struct decide_in in;
	struct decide_out out;
	__builtin_memset(&in, 0, sizeof(in));
	__builtin_memset(&out, 0, sizeof(out));
	flow_peer(k, family, st, &in.peer, &in.init_port, &in.resp_port);
	in.ifindex = ifindex;
	in.family = family;
	in.proto = proto;
	in.dir = st->initiator_ingress & 1;
	in.midstream = (st->flags & FLOW_MIDSTREAM) != 0;
	decide(&in, &out);
	st->policy_rev = policy_revision;
	st->verdict = out.verdict;
	st->drop_reason = out.verdict == VERDICT_DROPPED ? DROP_POLICY_DENIED : 0;
	st->policy_id = out.policy_id;
	st->peer_identity = out.peer_identity;
}

// report_part emits the counters of flow st so far (snap, taken before
// they changed meaning: a first drop, a verdict change) as event type, takes
// them off the entry with atomic adds and marks it continued, so that its
// later records count as its traffic. If the ring buffer refuses the event
// the counters stay, for the flow's next record.
static __always_inline void report_part(__u8 type, struct keys *k, __u8 family, struct flow_stats *st,
					struct flow_stats *snap, __u8 reply, __u8 ingress)
{
	if (emit(type, k, family, snap, reply, ingress, COUNTER_RINGBUF_END))
		return;
	__sync_fetch_and_add(&st->bytes[0], -snap->bytes[0]);
	__sync_fetch_and_add(&st->bytes[1], -snap->bytes[1]);
	__sync_fetch_and_add(&st->packets[0], -snap->packets[0]);
	__sync_fetch_and_add(&st->packets[1], -snap->packets[1]);
	__sync_fetch_and_or(&st->flags, FLOW_CONTINUED);
}

// inserted finishes the insert of a new flow n: a flow policy denies is
// reported at once (EVENT_FLOW_DROP, its first packet) and the packet
// dropped; otherwise the start event if enabled.
static __always_inline int inserted(struct keys *k, __u8 family, struct flow_stats *n, __u8 reply, __u8 ingress)
{
	if (n->verdict == VERDICT_DROPPED) {
		struct flow_stats *st = flow_lookup(k, family);
		if (st)
			report_part(EVENT_FLOW_DROP, k, family, st, n, reply, ingress);
		return TC_ACT_SHOT;
	}
	if (emit_start_events)
		emit(EVENT_FLOW_START, k, family, n, reply, ingress, COUNTER_RINGBUF_START);
	return TCX_NEXT;
}

// account adds one packet of len bytes to a known flow: atomic adds, so two
// CPUs updating one flow lose nothing.
static __always_inline void account(struct flow_stats *st, __u8 reply, __u32 len)
{
	reply &= 1;
	__sync_fetch_and_add(&st->bytes[reply], len);
	__sync_fetch_and_add(&st->packets[reply], 1);
	// One tick of resolution, no helper call (see tick_ns); first_seen and
	// the handshake use the precise clock. Userspace clamps last_seen to
	// first_seen.
	st->last_seen_ns = bpf_jiffies64() * tick_ns + jiffies_base_ns;
}

// l7_count adds one to counter of class's L7 counters.
static __always_inline void l7_count(__u8 class, __u32 counter)
{
	__u32 idx = (__u32)(class & (L7_CLASS_MAX - 1)) * L7_COUNTER_MAX + counter;
	__u64 *v = bpf_map_lookup_elem(&l7_counters, &idx);
	if (v)
		*v += 1;
}

// l7_capture copies the capture of the TCP or UDP packet in skb whose L4
// header starts at l4_off and whose IP packet ends at l3_end (its header,
// and the first l7_head_bytes of its payload) to l7_events, if it carries
// payload or is a SYN, FIN or RST, and counts it by class: captured,
// refused by the ring buffer (its segment is then missing from the stream
// userspace follows, which sees the gap), or sent without its head because
// the payload could not be read. meta is the class, is_reply << 8 and
// ingress << 16. A global function: the verifier checks it once, it reads
// what it needs from the packet again, and the capture is built in a
// per-CPU buffer, so that it takes no room on the caller's stack (which
// the policy decision needs).
__attribute__((noinline)) int l7_capture(struct __sk_buff *skb, __u32 l4_off, __u32 l3_end, __u32 meta)
{
	if (!skb)
		return 0;
	__u32 zero = 0;
	struct l7_event *e = bpf_map_lookup_elem(&l7_scratch, &zero);
	if (!e)
		return 0;
	__u8 class = meta & 0xff;
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	if (data + ETH_HLEN > data_end)
		return 0;
	// parse() checked these headers: only the bounds are checked again.
	if (*(__u16 *)(data + 12) == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = data + ETH_HLEN;
		if ((void *)(ip + 1) > data_end)
			return 0;
		__builtin_memset(e->src, 0, 10);
		__builtin_memset(e->dst, 0, 10);
		e->src[10] = e->src[11] = e->dst[10] = e->dst[11] = 0xff;
		__builtin_memcpy(&e->src[12], &ip->saddr, 4);
		__builtin_memcpy(&e->dst[12], &ip->daddr, 4);
	} else {
		struct ipv6hdr *ip6 = data + ETH_HLEN;
		if ((void *)(ip6 + 1) > data_end)
			return 0;
		__builtin_memcpy(e->src, ip6->saddr, 16);
		__builtin_memcpy(e->dst, ip6->daddr, 16);
	}
	struct tcphdr l4;
	__u8 proto = (meta >> 24) & 0xff;
	__u32 hlen = proto == IPPROTO_TCP ? sizeof(struct tcphdr) : sizeof(struct udphdr);
	if (bpf_skb_load_bytes(skb, l4_off, &l4, hlen))
		return 0;
	e->sport = bpf_ntohs(l4.source);
	e->dport = bpf_ntohs(l4.dest);
	e->seq = 0;
	e->tcp_flags = 0;
	if (proto == IPPROTO_TCP) {
		hlen = (l4.doff_res >> 4) * 4;
		e->seq = bpf_ntohl(l4.seq);
		e->tcp_flags = l4.flags;
	}
	__u32 off = l4_off + hlen;
	if (off > l3_end)
		return 0;
	__u32 len = l3_end - off;
	if (!len && !(e->tcp_flags & (FLOW_TCP_SYN | FLOW_TCP_FIN | FLOW_TCP_RST)))
		return 0;
	e->ifindex = skb->ifindex;
	e->ts_ns = bpf_ktime_get_ns();
	e->len = len;
	e->proto = proto;
	e->is_reply = (meta >> 8) & 1;
	e->class = class;
	e->ingress = (meta >> 16) & 1;
	e->pad = 0;
	__u32 hl = len;
	if (hl > l7_head_bytes)
		hl = l7_head_bytes;
	if (hl > L7_HEAD_MAX)
		hl = L7_HEAD_MAX;
	if (hl && bpf_skb_load_bytes(skb, off, e->head, hl)) {
		l7_count(class, L7_COUNTER_LOAD);
		hl = 0;
	}
	e->head_len = hl;
	__u64 flags = 0;
	if (l7_wakeup_bytes)
		flags = bpf_ringbuf_query(&l7_events, BPF_RB_AVAIL_DATA) >= l7_wakeup_bytes ? BPF_RB_FORCE_WAKEUP
											   : BPF_RB_NO_WAKEUP;
	if (bpf_ringbuf_output(&l7_events, e, __builtin_offsetof(struct l7_event, head) + hl, flags)) {
		l7_count(class, L7_COUNTER_RINGBUF);
		return 0;
	}
	l7_count(class, L7_COUNTER_CAPTURED);
	return 1;
}

// l7_packet captures packet p of a flow of class (l7_capture).
static __always_inline void l7_packet(struct __sk_buff *skb, struct packet *p, __u8 class, __u8 reply, __u8 ingress)
{
	l7_capture(skb, p->l4_off, p->l3_end,
		   class | (__u32)(reply & 1) << 8 | (__u32)(ingress & 1) << 16 | (__u32)p->proto << 24);
}

// l7_class is the class flow n gets at this interface from its first
// packet p: its server port's, or 0 when the port is not enabled (for a
// mid-stream flow, whose opener is a guess, either port's) or when
// another interface captures it. Count once, as the flow records do
// (agent/source/ebpf doc.go): the server pod's interface captures; the
// client pod's only when the server is not an endpoint of the cluster
// (its identity, known once the ipcache is filled, is not a pod's).
static __always_inline __u8 l7_class(struct packet *p, struct flow_stats *n, int reply)
{
	if (p->proto != IPPROTO_TCP && p->proto != IPPROTO_UDP)
		return 0;
	__u32 t = p->proto == IPPROTO_UDP;
	__u32 port = reply ? p->sport : p->dport;
	struct l7_port *lp = bpf_map_lookup_elem(&l7_ports, &port);
	__u8 c = lp ? lp->class[t & 1] : 0;
	if (!c && (n->flags & FLOW_MIDSTREAM)) {
		port = reply ? p->dport : p->sport;
		lp = bpf_map_lookup_elem(&l7_ports, &port);
		c = lp ? lp->class[t & 1] : 0;
	}
	if (!c)
		return 0;
	if (n->initiator_ingress && policy_revision && n->peer_identity >= 256 && n->peer_identity < IDENTITY_CIDR_MIN)
		return 0;
	return c;
}

// established_ipv4 is the fast path of the most common packet: IPv4
// without options, TCP or UDP, of a flow already in flows4, that changes
// nothing but the flow's counters (TCP: no flags but ACK and PSH, each
// already seen on the flow, and not the ACK that closes it after both
// FINs). It
// accounts the packet exactly as the rest of handle() would and returns 1;
// for any other packet it returns 0, having changed nothing, and handle()
// takes the packet from the start (doc.go, "Fast path"). If it looked the
// flow up, it sets *looked and *found (NULL if absent), which handle()
// then uses instead of looking the same key up again.
static __always_inline int established_ipv4(struct __sk_buff *skb, __u32 len, int *looked,
					    struct flow_stats **found)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct iphdr *ip = data + ETH_HLEN;
	if ((void *)(ip + 1) > data_end)
		return 0;
	// h_proto read as one (unaligned) load: struct ethhdr is packed.
	if (*(__u16 *)(data + 12) != bpf_htons(ETH_P_IP) || ip->ihl_version != 0x45 ||
	    (ip->frag_off & bpf_htons(0x1fff)))
		return 0;
	__u32 tot = bpf_ntohs(ip->tot_len);
	if (ETH_HLEN + tot > len)
		return 0;
	// The checks of parse() for these headers, which they pass.
	struct udphdr *ports = (void *)(ip + 1);
	__u8 flags = 0;
	__u32 l4_hlen = sizeof(*ports);
	if (ip->protocol == IPPROTO_TCP) {
		struct tcphdr *tcp = (void *)(ip + 1);
		if ((void *)(tcp + 1) > data_end)
			return 0;
		__u32 doff = (tcp->doff_res >> 4) * 4;
		l4_hlen = doff;
		if (doff < sizeof(*tcp) || sizeof(*ip) + doff > tot || (tcp->doff_res & 1))
			return 0;
		flags = tcp->flags;
		if (flags & ~(FLOW_TCP_ACK | FLOW_TCP_PSH))
			return 0;
	} else if (ip->protocol == IPPROTO_UDP) {
		if ((void *)(ports + 1) > data_end || sizeof(*ip) + sizeof(*ports) > tot)
			return 0;
	} else {
		return 0;
	}

	// The key as handle() builds it: parse() puts each address in the
	// upper half of a u64, so handle() orders them as these u32 loads.
	__u32 saddr = ip->saddr, daddr = ip->daddr;
	__u16 sport = bpf_ntohs(ports->source), dport = bpf_ntohs(ports->dest);
	int from_lo = saddr != daddr ? saddr < daddr : sport <= dport;
	struct flow_key4 k;
	__builtin_memset(&k, 0, sizeof(k));
	k.addr_lo = from_lo ? saddr : daddr;
	k.addr_hi = from_lo ? daddr : saddr;
	k.port_lo = from_lo ? sport : dport;
	k.port_hi = from_lo ? dport : sport;
	k.ifindex = skb->ifindex;
	k.proto = ip->protocol;

	struct flow_stats *st = bpf_map_lookup_elem(&flows4, &k);
	*looked = 1;
	*found = st;
	if (!st)
		return 0;
	__u32 old = st->flags;
	if ((old & flags) != flags || (old & (FLOW_FIN_FWD | FLOW_FIN_REV)) == (FLOW_FIN_FWD | FLOW_FIN_REV))
		return 0;
	// A verdict to decide again, or a drop, takes the full path.
	if (st->policy_rev != policy_revision || st->verdict == VERDICT_DROPPED)
		return 0;
	// A packet with payload of a flow L7 captures takes the full path,
	// which has the packet parsed for the capture.
	if (l7_enabled && st->l7 && tot > sizeof(*ip) + l4_hlen)
		return 0;
	account(st, from_lo != st->initiator_lo, len);
	return 1;
}

static __always_inline int handle(struct __sk_buff *skb, __u8 ingress)
{
	__u32 len = skb->len;
	if (skb->data_end - skb->data < PULL_LEN && skb->data_end - skb->data < len)
		bpf_skb_pull_data(skb, len < PULL_LEN ? len : PULL_LEN);
	int looked = 0;
	struct flow_stats *found = 0;
	if (!naive_per_packet_events && established_ipv4(skb, len, &looked, &found))
		return TCX_NEXT;
	// Make parse() load skb->data again: a copy of the fast path's load can
	// come out as a 32-bit move, which the verifier no longer sees as a
	// packet pointer.
	asm volatile("" ::: "memory");

	struct packet p;
	__builtin_memset(&p, 0, sizeof(p));
	int reason = parse(skb, &p);
	if (reason) {
		count(reason);
		return TCX_NEXT;
	}

	// Normalise: the (address, port) that compares lower is "lo".
	int from_lo;
	if (p.src[0] != p.dst[0])
		from_lo = p.src[0] < p.dst[0];
	else if (p.src[1] != p.dst[1])
		from_lo = p.src[1] < p.dst[1];
	else
		from_lo = p.sport <= p.dport;

	struct keys key;
	__u8 family = p.family;
	if (family == 4) {
		// parse put the IPv4 address in the upper half of src[1]/dst[1].
		__builtin_memset(&key.v4, 0, sizeof(key.v4));
		key.v4.addr_lo = (from_lo ? p.src[1] : p.dst[1]) >> 32;
		key.v4.addr_hi = (from_lo ? p.dst[1] : p.src[1]) >> 32;
		key.v4.port_lo = from_lo ? p.sport : p.dport;
		key.v4.port_hi = from_lo ? p.dport : p.sport;
		key.v4.ifindex = skb->ifindex;
		key.v4.proto = p.proto;
	} else {
		__builtin_memset(&key.full, 0, sizeof(key.full));
		if (from_lo) {
			__builtin_memcpy(key.full.addr_lo, p.src, 16);
			__builtin_memcpy(key.full.addr_hi, p.dst, 16);
			key.full.port_lo = p.sport;
			key.full.port_hi = p.dport;
		} else {
			__builtin_memcpy(key.full.addr_lo, p.dst, 16);
			__builtin_memcpy(key.full.addr_hi, p.src, 16);
			key.full.port_lo = p.dport;
			key.full.port_hi = p.sport;
		}
		key.full.ifindex = skb->ifindex;
		key.full.proto = p.proto;
		key.full.family = family;
	}

	__u16 tf = p.tcp_flags;
	int syn_only = (tf & (FLOW_TCP_SYN | FLOW_TCP_ACK)) == FLOW_TCP_SYN;
	int syn_ack = (tf & (FLOW_TCP_SYN | FLOW_TCP_ACK)) == (FLOW_TCP_SYN | FLOW_TCP_ACK);

	if (naive_per_packet_events) {
		__u64 now = bpf_ktime_get_ns();
		struct flow_stats one;
		__builtin_memset(&one, 0, sizeof(one));
		one.first_seen_ns = now;
		one.last_seen_ns = now;
		one.bytes[0] = len;
		one.packets[0] = 1;
		one.flags = tf;
		one.initiator_lo = from_lo;
		one.initiator_ingress = ingress;
		one.icmp_type = p.icmp_type;
		one.icmp_code = p.icmp_code;
		emit(EVENT_PACKET, &key, family, &one, 0, ingress, COUNTER_RINGBUF_LOST);
		return TCX_NEXT;
	}

	// A SYN without ACK almost always opens a new flow: it skips the
	// lookup and goes straight to the insert, which says if the entry
	// exists (one hash and bucket walk instead of two). Any other packet
	// looks its flow up first.
	int syn_first = syn_only && !(tf & FLOW_TCP_RST);
	struct flow_stats *st = 0;
	if (looked)
		st = found; // the fast path looked this key up (same key, see there)
	else if (!syn_first)
		st = flow_lookup(&key, family);
	if (!st) {
		__u64 now = bpf_ktime_get_ns();
		struct flow_stats n;
		__builtin_memset(&n, 0, sizeof(n));
		n.first_seen_ns = now;
		n.last_seen_ns = now;
		// A packet after a reported end (a late ACK, a retransmitted FIN, a
		// reset after the close) starts the flow's tail, oriented as the
		// flow was. A SYN opens a new connection, whatever ended before.
		struct ended *h = syn_only ? 0 : ended_lookup(&key, family);
		if (h) {
			n.flags = h->flags | tf;
			n.initiator_lo = h->initiator_lo;
			n.initiator_ingress = h->initiator_ingress;
			__u8 r = (from_lo != n.initiator_lo) & 1;
			n.bytes[r] = len;
			n.packets[r] = 1;
			n.verdict = VERDICT_FORWARDED;
			if (policy_revision)
				policy_decide(&key, family, &n, skb->ifindex, p.proto);
			int ret = n.verdict == VERDICT_DROPPED ? TC_ACT_SHOT : TCX_NEXT;
			if (flow_update(&key, family, &n, BPF_NOEXIST) == 0)
				return ret;
			st = flow_lookup(&key, family);
			if (st)
				goto account; // another CPU started the tail first
			count(COUNTER_MAP_INSERT);
			emit(EVENT_INSERT_FAILED, &key, family, &n, r, ingress, COUNTER_RINGBUF_LOST);
			return ret;
		}
		int reply = is_reply_first(&p);
		if (reply) {
			n.bytes[1] = len;
			n.packets[1] = 1;
		} else {
			n.bytes[0] = len;
			n.packets[0] = 1;
		}
		n.flags = tf;
		// A TCP packet that opens nothing (no SYN, no SYN-ACK) starts an
		// entry for a connection whose opening this interface did not see:
		// its sender is only a guess at the initiator.
		if (p.proto == IPPROTO_TCP && !syn_only && !syn_ack)
			n.flags |= FLOW_MIDSTREAM;
		n.initiator_lo = reply ? !from_lo : from_lo;
		n.initiator_ingress = reply ? !ingress : ingress;
		n.icmp_type = p.icmp_type;
		n.icmp_code = p.icmp_code;
		if (syn_only)
			n.syn_ns = now;
		n.verdict = VERDICT_FORWARDED;
		if (policy_revision)
			policy_decide(&key, family, &n, skb->ifindex, p.proto);
		if (l7_enabled)
			n.l7 = l7_class(&p, &n, reply);
		int ret = n.verdict == VERDICT_DROPPED ? TC_ACT_SHOT : TCX_NEXT;
		if (tf & FLOW_TCP_RST) {
			// A flow whose first packet is a reset: report it, and leave
			// the hint so that later packets are its tail, not a new
			// flow. If the event is refused, the entry keeps it for the
			// sweep.
			n.flags |= FLOW_ENDED;
			if (!emit(EVENT_FLOW_RESET, &key, family, &n, reply, ingress, COUNTER_RINGBUF_END)) {
				struct ended e = ended_of(&n);
				ended_update(&key, family, &e);
				return ret;
			}
			if (flow_update(&key, family, &n, BPF_NOEXIST) == 0)
				return ret;
			st = flow_lookup(&key, family);
			if (!st)
				count(COUNTER_MAP_INSERT);
			return ret;
		}
		int err = flow_update(&key, family, &n, BPF_NOEXIST);
		if (err == -EEXIST) {
			// The flow exists: a retransmitted SYN, another CPU inserted
			// it first, or a new connection on the tuple of an ended one.
			st = flow_lookup(&key, family);
			if (!st)
				return ret;
			__u32 f = st->flags;
			if (!syn_only || !(f & FLOW_ENDED))
				goto account;
			// A new connection on the tuple of an ended one (its end event
			// was lost, or packets after its end made a tail). Claim the
			// old entry first (FLOW_FREEING): sweep_husks, freeing ended
			// entries on another CPU, then leaves it alone, and a free it
			// already claimed cannot take the new connection with it.
			if (!(f & FLOW_FREEING) && __sync_val_compare_and_swap(&st->flags, f, f | FLOW_FREEING) == f) {
				// Report the old one if nobody did, else its tail if it
				// has one, and start over in the same entry.
				if (!(f & FLOW_REPORTED))
					emit((f & FLOW_TCP_RST) ? EVENT_FLOW_RESET : EVENT_FLOW_END, &key, family, st, 0, ingress,
					     COUNTER_RINGBUF_LOST);
				else if (st->packets[0] | st->packets[1])
					emit(EVENT_FLOW_TAIL, &key, family, st, 0, ingress, COUNTER_RINGBUF_LOST);
				err = flow_update(&key, family, &n, BPF_ANY);
			} else {
				// sweep_husks claimed it and is deleting it this instant:
				// insert anew once it has gone. Should it not go in time,
				// the packet is reported alone and counted as a refused
				// insert (below), as when the map is full.
				for (int i = 0; i < 16; i++) {
					err = flow_update(&key, family, &n, BPF_NOEXIST);
					if (err != -EEXIST)
						break;
				}
			}
		}
		if (err == 0) {
			ret = inserted(&key, family, &n, reply, ingress);
			if (l7_enabled && n.l7 && ret == TCX_NEXT)
				l7_packet(skb, &p, n.l7, reply, ingress);
			return ret;
		}
		count(COUNTER_MAP_INSERT);
		emit(EVENT_INSERT_FAILED, &key, family, &n, reply, ingress, COUNTER_RINGBUF_LOST);
		return ret;
	}

account:;

	__u8 reply = from_lo != st->initiator_lo;
	// Policy changed since the flow's verdict: decide again (one CPU: the
	// one that moves policy_rev), and report what was counted under the old
	// verdict if the new one differs.
	__u32 rev = st->policy_rev;
	if (rev != policy_revision && __sync_val_compare_and_swap(&st->policy_rev, rev, policy_revision) == rev) {
		struct flow_stats snap = *st;
		policy_decide(&key, family, st, skb->ifindex, p.proto);
		if (snap.verdict != st->verdict && (snap.packets[0] | snap.packets[1]))
			report_part(EVENT_FLOW_VERDICT, &key, family, st, &snap, reply, ingress);
	}
	account(st, reply, len);
	if (st->verdict == VERDICT_DROPPED) {
		if ((st->flags & tf) != tf)
			__sync_fetch_and_or(&st->flags, tf);
		return TC_ACT_SHOT;
	}
	if (l7_enabled && st->l7)
		l7_packet(skb, &p, st->l7, reply, ingress);
	if (p.proto != IPPROTO_TCP)
		return TCX_NEXT;

	if (syn_only && !reply && st->syn_ns == 0)
		st->syn_ns = bpf_ktime_get_ns();
	else if (syn_ack && reply && st->syn_ns && !st->handshake_ns)
		st->handshake_ns = bpf_ktime_get_ns() - st->syn_ns;

	__u32 bits = tf;
	if (tf & FLOW_TCP_FIN)
		bits |= reply ? FLOW_FIN_REV : FLOW_FIN_FWD;
	__u32 old = st->flags;
	__u8 end = 0;
	if (tf & FLOW_TCP_RST) {
		bits |= FLOW_ENDED;
		end = EVENT_FLOW_RESET;
	} else if (!(tf & FLOW_TCP_FIN) && (tf & FLOW_TCP_ACK) &&
		   (old & (FLOW_FIN_FWD | FLOW_FIN_REV)) == (FLOW_FIN_FWD | FLOW_FIN_REV)) {
		// The ACK after both FINs: the connection is closed.
		bits |= FLOW_ENDED;
		end = EVENT_FLOW_END;
	}
	if ((old & bits) == bits)
		return TCX_NEXT;
	old = __sync_fetch_and_or(&st->flags, bits);
	if (!end || (old & FLOW_ENDED))
		return TCX_NEXT;
	// Reported, the entry goes and its hint stays: late ACKs, retransmitted
	// FINs and resets after the close become its tail instead of a new,
	// reversed flow. If the ring buffer refuses the event, the entry stays
	// ended and unreported, and the sweep reports it.
	report_end(end, &key, family, st, reply, ingress);
	return TCX_NEXT;
}

SEC("tcx/ingress")
int flow_ingress(struct __sk_buff *skb)
{
	return handle(skb, 1);
}

SEC("tcx/egress")
int flow_egress(struct __sk_buff *skb)
{
	return handle(skb, 0);
}

// sweep_husks frees, in the kernel, the entries of ended and reported flows
// with no packet since their end that have been quiet for end_linger_ns:
// the bulk of all entries, which the Collector's sweep would otherwise copy
// out and delete by key. Each is claimed with FLOW_FREEING first, by a
// compare-and-swap of its flags, which a packet changing them or a new
// connection on the tuple (the restart in handle, which claims it the same
// way) makes fail: neither loses its entry to a delete meant for the old
// flow. A tail packet counted into the entry between the check and the
// delete is reported as the entry's tail, from the deleted entry (still
// readable in this RCU section). Run from Go with BPF_PROG_TEST_RUN; it
// returns how many entries it freed.
struct husk_sweep {
	__u64 now;
	__u32 freed;
	__u32 pad;
};

static __always_inline long free_husk(struct keys *k, __u8 family, struct flow_stats *st, struct husk_sweep *c)
{
	__u32 f = st->flags;
	if ((f & (FLOW_ENDED | FLOW_REPORTED | FLOW_FREEING)) != (FLOW_ENDED | FLOW_REPORTED))
		return 0;
	if (st->packets[0] | st->packets[1])
		return 0;
	__u64 last = st->last_seen_ns;
	if (last > c->now || c->now - last < end_linger_ns)
		return 0;
	if (__sync_val_compare_and_swap(&st->flags, f, f | FLOW_FREEING) != f)
		return 0;
	if (family == 4)
		bpf_map_delete_elem(&flows4, &k->v4);
	else
		bpf_map_delete_elem(&flows6, &k->full);
	c->freed++;
	if (st->packets[0] | st->packets[1])
		emit(EVENT_FLOW_TAIL, k, family, st, 0, st->initiator_ingress, COUNTER_RINGBUF_LOST);
	return 0;
}

static long husk4(void *map, struct flow_key4 *key, struct flow_stats *st, struct husk_sweep *c)
{
	struct keys k;
	k.v4 = *key;
	return free_husk(&k, 4, st, c);
}

static long husk6(void *map, struct flow_key *key, struct flow_stats *st, struct husk_sweep *c)
{
	struct keys k;
	k.full = *key;
	return free_husk(&k, 6, st, c);
}

SEC("tc")
int sweep_husks(struct __sk_buff *skb)
{
	struct husk_sweep c = {.now = bpf_ktime_get_ns()};
	bpf_for_each_map_elem(&flows4, husk4, &c, 0);
	bpf_for_each_map_elem(&flows6, husk6, &c, 0);
	return c.freed;
}

// clock_calibrate sets jiffies_base_ns so that jiffies * tick_ns +
// jiffies_base_ns is the coarse CLOCK_MONOTONIC time (the start of the
// current tick, as bpf_ktime_get_coarse_ns). It returns 1, or 0 if a tick
// came between its reads (run it again).
SEC("tc")
int clock_calibrate(struct __sk_buff *skb)
{
	__u64 j = bpf_jiffies64();
	__u64 coarse = bpf_ktime_get_coarse_ns();
	if (bpf_jiffies64() != j)
		return 0;
	jiffies_base_ns = coarse - j * tick_ns;
	return 1;
}

// tc_floor is the cheapest tc program: the baseline of BenchmarkProgram.
SEC("tc")
int tc_floor(struct __sk_buff *skb)
{
	return TC_ACT_OK;
}

// # Kernel drops
//
// kfree_skb_drop runs at the kfree_skb tracepoint (tp_btf: the kernel
// frees an skb it drops, with its enum skb_drop_reason). It never runs on
// the tcx path: the flow programs' per-packet cost is unchanged. It takes
// only drops of pod traffic: an skb whose device is an attached interface
// (kdrop_ifaces, ifindexes in the agent's network namespace, filled by the
// Collector), or the veth peer of one (a packet dropped inside the pod's
// namespace, on the pod's eth0). It counts every such drop by reason and
// reports the ones it can parse (IPv4 or IPv6 without extension headers,
// TCP or UDP, not a later fragment) as EVENT_KERNEL_DROP, keyed as the tcx
// programs key the flow on the host-side interface (doc.go, "Kernel
// drops").

// agent_netns_inum is the inode of the agent's network namespace, where
// the ifindexes of kdrop_ifaces are valid. Set from Go before load.
volatile const __u32 agent_netns_inum = 0;

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, __u8);
} kdrop_ifaces SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, KDROP_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
} kdrop_counters SEC(".maps");

// kdrop_hubble: kernel reason → Hubble drop reason (0: DROP_REASON_UNKNOWN;
// KDROP_NO_EVENT: counted, no record). Filled from Go by reason name.
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, KDROP_MAX);
	__type(key, __u32);
	__type(value, __u8);
} kdrop_hubble SEC(".maps");

#define NETDEV_ALIGN 32

static __always_inline __u32 dev_netns(struct net_device *dev)
{
	return BPF_CORE_READ(dev, nd_net.net, ns.inum);
}

// veth_peer returns the peer of a veth device, or NULL for another kind.
static __always_inline struct net_device *veth_peer(struct net_device *dev)
{
	const char *kind = BPF_CORE_READ(dev, rtnl_link_ops, kind);
	char k[5] = {};
	if (!kind || bpf_probe_read_kernel(k, sizeof(k), kind))
		return 0;
	if (k[0] != 'v' || k[1] != 'e' || k[2] != 't' || k[3] != 'h' || k[4] != 0)
		return 0;
	// netdev_priv(dev): the private area follows struct net_device,
	// aligned to NETDEV_ALIGN.
	__u32 off = (bpf_core_type_size(struct net_device) + NETDEV_ALIGN - 1) & ~(NETDEV_ALIGN - 1);
	struct veth_priv *priv = (void *)dev + off;
	return BPF_CORE_READ(priv, peer);
}

SEC("tp_btf/kfree_skb")
int kfree_skb_drop(__u64 *ctx)
{
	struct sk_buff *skb = (void *)ctx[0];
	__u32 reason = (__u32)ctx[2];
	if (reason == bpf_core_enum_value(enum skb_drop_reason, SKB_NOT_DROPPED_YET) ||
	    reason == bpf_core_enum_value(enum skb_drop_reason, SKB_CONSUMED) ||
	    reason == bpf_core_enum_value(enum skb_drop_reason, SKB_DROP_REASON_NOT_SPECIFIED))
		return 0;
	struct net_device *dev = BPF_CORE_READ(skb, dev);
	if (!dev)
		return 0;
	int devidx = BPF_CORE_READ(dev, ifindex);
	int iif = BPF_CORE_READ(skb, skb_iif);
	__u32 ifindex;
	__u8 from_pod;
	if (dev_netns(dev) == agent_netns_inum) {
		// The host side of a pod's interface: the packet came from the
		// pod if it was received there.
		ifindex = devidx;
		from_pod = iif == devidx;
	} else {
		// Maybe the pod's side: its peer is then in the agent's namespace.
		struct net_device *peer = veth_peer(dev);
		if (!peer || dev_netns(peer) != agent_netns_inum)
			return 0;
		ifindex = BPF_CORE_READ(peer, ifindex);
		// Received on the pod's eth0: it came from outside the pod.
		from_pod = iif != devidx;
	}
	if (!bpf_map_lookup_elem(&kdrop_ifaces, &ifindex))
		return 0;

	__u32 slot = reason < KDROP_MAX ? reason : KDROP_OTHER;
	__u64 *n = bpf_map_lookup_elem(&kdrop_counters, &slot);
	if (n)
		*n += 1;
	__u8 hubble = 0;
	if (reason < KDROP_MAX) {
		__u8 *h = bpf_map_lookup_elem(&kdrop_hubble, &reason);
		if (h)
			hubble = *h;
	}
	if (hubble == KDROP_NO_EVENT)
		return 0;

	unsigned char *head = BPF_CORE_READ(skb, head);
	__u16 nh = BPF_CORE_READ(skb, network_header);
	__be16 proto = BPF_CORE_READ(skb, protocol);
	if (nh == 0xffff)
		return 0;
	struct packet p;
	__builtin_memset(&p, 0, sizeof(p));
	__u32 l3len, l4off;
	if (proto == bpf_htons(ETH_P_IP)) {
		struct iphdr ip;
		if (bpf_probe_read_kernel(&ip, sizeof(ip), head + nh))
			return 0;
		__u32 ihl = (ip.ihl_version & 0x0f) * 4;
		if ((ip.ihl_version >> 4) != 4 || ihl < sizeof(ip) || (bpf_ntohs(ip.frag_off) & 0x1fff))
			return 0;
		p.family = 4;
		p.src[1] = ((__u64)ip.saddr << 32) | bpf_htonl(0xffff);
		p.dst[1] = ((__u64)ip.daddr << 32) | bpf_htonl(0xffff);
		p.proto = ip.protocol;
		l3len = bpf_ntohs(ip.tot_len);
		l4off = nh + ihl;
	} else if (proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr ip6;
		if (bpf_probe_read_kernel(&ip6, sizeof(ip6), head + nh))
			return 0;
		if ((ip6.ver_prio >> 4) != 6)
			return 0;
		p.family = 6;
		__builtin_memcpy(p.src, ip6.saddr, 16);
		__builtin_memcpy(p.dst, ip6.daddr, 16);
		p.proto = ip6.nexthdr;
		l3len = sizeof(ip6) + bpf_ntohs(ip6.payload_len);
		l4off = nh + sizeof(ip6);
	} else {
		return 0;
	}
	if (p.proto == IPPROTO_TCP) {
		struct tcphdr tcp;
		if (bpf_probe_read_kernel(&tcp, sizeof(tcp), head + (l4off & 0x1ffff)))
			return 0;
		p.sport = bpf_ntohs(tcp.source);
		p.dport = bpf_ntohs(tcp.dest);
		p.tcp_flags = tcp.flags | ((__u16)(tcp.doff_res & 1) << 8);
	} else if (p.proto == IPPROTO_UDP) {
		struct udphdr udp;
		if (bpf_probe_read_kernel(&udp, sizeof(udp), head + (l4off & 0x1ffff)))
			return 0;
		p.sport = bpf_ntohs(udp.source);
		p.dport = bpf_ntohs(udp.dest);
	} else {
		return 0;
	}

	int from_lo;
	if (p.src[0] != p.dst[0])
		from_lo = p.src[0] < p.dst[0];
	else if (p.src[1] != p.dst[1])
		from_lo = p.src[1] < p.dst[1];
	else
		from_lo = p.sport <= p.dport;
	struct keys key;
	if (p.family == 4) {
		__builtin_memset(&key.v4, 0, sizeof(key.v4));
		key.v4.addr_lo = (from_lo ? p.src[1] : p.dst[1]) >> 32;
		key.v4.addr_hi = (from_lo ? p.dst[1] : p.src[1]) >> 32;
		key.v4.port_lo = from_lo ? p.sport : p.dport;
		key.v4.port_hi = from_lo ? p.dport : p.sport;
		key.v4.ifindex = ifindex;
		key.v4.proto = p.proto;
	} else {
		__builtin_memset(&key.full, 0, sizeof(key.full));
		__builtin_memcpy(key.full.addr_lo, from_lo ? p.src : p.dst, 16);
		__builtin_memcpy(key.full.addr_hi, from_lo ? p.dst : p.src, 16);
		key.full.port_lo = from_lo ? p.sport : p.dport;
		key.full.port_hi = from_lo ? p.dport : p.sport;
		key.full.ifindex = ifindex;
		key.full.proto = p.proto;
		key.full.family = 6;
	}
	// One packet, from its sender; its length as the tcx programs count
	// it (the Ethernet frame), which the skb's length no longer is once
	// the stack pulled headers.
	__u64 now = bpf_ktime_get_ns();
	struct flow_stats st;
	__builtin_memset(&st, 0, sizeof(st));
	st.first_seen_ns = now;
	st.last_seen_ns = now;
	st.bytes[0] = ETH_HLEN + l3len;
	st.packets[0] = 1;
	st.flags = p.tcp_flags;
	st.initiator_lo = from_lo;
	st.initiator_ingress = from_pod;
	st.verdict = VERDICT_DROPPED;
	st.drop_reason = hubble;
	emit(EVENT_KERNEL_DROP, &key, p.family, &st, 0, from_pod, COUNTER_RINGBUF_LOST);
	return 0;
}
