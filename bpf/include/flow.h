/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Structures shared between bpf/flow.c and the Go package bpf. Every one of
 * them is fixed-width and explicitly padded (the build uses -Wpadded), and
 * bpf/layout_test.go checks the Go side against this object's BTF.
 */
#ifndef FLOWBUS_FLOW_H
#define FLOWBUS_FLOW_H

#include "flowbus_types.h"

/*
 * flow_key identifies one flow on one interface, the same for both
 * directions: the (address, port) pair that compares lower is always "lo".
 * IPv4 addresses are stored IPv4-mapped (::ffff:a.b.c.d). For ICMP echo both
 * ports carry the echo identifier; for other ICMP messages and protocols
 * without ports they are zero.
 */
struct flow_key {
	__u8 addr_lo[16];
	__u8 addr_hi[16];
	__u16 port_lo;
	__u16 port_hi;
	__u32 ifindex;
	__u8 proto;  /* IANA protocol number */
	__u8 family; /* 4 or 6 */
	__u8 pad[2];
};

/*
 * flow_key4 is the key of the IPv4 flows map (flows4): the same fields as
 * flow_key with 4-byte addresses (network order), so the kernel hashes and
 * compares 20 bytes instead of 44 on every packet. Events and userspace
 * see IPv4 flows as flow_key (IPv4-mapped, family 4).
 */
struct flow_key4 {
	__u32 addr_lo;
	__u32 addr_hi;
	__u16 port_lo;
	__u16 port_hi;
	__u32 ifindex;
	__u8 proto;
	__u8 pad[3];
};

/* flow_stats.flags: TCP flags in header bit order, then state bits. */
enum flow_flag {
	FLOW_TCP_FIN = 1 << 0,
	FLOW_TCP_SYN = 1 << 1,
	FLOW_TCP_RST = 1 << 2,
	FLOW_TCP_PSH = 1 << 3,
	FLOW_TCP_ACK = 1 << 4,
	FLOW_TCP_URG = 1 << 5,
	FLOW_TCP_ECE = 1 << 6,
	FLOW_TCP_CWR = 1 << 7,
	FLOW_TCP_NS = 1 << 8,
	FLOW_FREEING = 1 << 15,  /* claimed: sweep_husks is freeing it, or a new connection is replacing it */
	FLOW_FIN_FWD = 1 << 16,  /* the initiator sent FIN */
	FLOW_FIN_REV = 1 << 17,  /* the responder sent FIN */
	FLOW_ENDED = 1 << 18,    /* closed by FIN handshake or RST */
	FLOW_REPORTED = 1 << 19, /* its end event reached the ring buffer: the entry holds its tail */
	FLOW_MIDSTREAM = 1 << 20, /* opened by a TCP packet that opens nothing: the initiator is a guess */
	FLOW_CONTINUED = 1 << 30, /* the kernel already reported part of it (a drop, a verdict change) */
	/* Bits 21-29 hold the TCP flags (bits 0-8) the end event reported. */
	FLOW_REPORTED_FLAGS_SHIFT = 21,
};

/*
 * flow_stats is the per-flow state (the value of flows4 and flows6). Index 0 of
 * bytes/packets is the initiator→responder direction ("forward"), index 1
 * the reverse. Times are CLOCK_MONOTONIC ns: bpf_ktime_get_ns, except
 * last_seen after a flow's first packet, which is the coarse (jiffies) clock
 * of one tick's resolution (flow.c, tick_ns).
 */
struct flow_stats {
	__u64 first_seen_ns;
	__u64 last_seen_ns;
	__u64 bytes[2];
	__u64 packets[2];
	__u64 syn_ns;       /* first SYN of the initiator, 0 if none seen */
	__u64 handshake_ns; /* SYN → SYN-ACK, 0 if not measured */
	__u32 flags;        /* enum flow_flag */
	__u8 initiator_lo;  /* 1 if the initiator is the key's lo side */
	__u8 initiator_ingress; /* 1 if the initiator's packets pass tc ingress */
	__u8 icmp_type;     /* of the flow's first packet */
	__u8 icmp_code;
	/* Policy (doc.go, "Policy"): decided for the flow's initiator→responder
	 * direction at this interface, under policy_revision. */
	__u32 policy_rev;    /* policy_revision the verdict was decided under */
	__u32 policy_id;     /* the policies that allowed (or denied) it: a userspace table's key */
	__u32 peer_identity; /* security identity of the other side, from the ipcache */
	__u8 verdict;        /* enum verdict */
	__u8 drop_reason;    /* Hubble's drop reason code when dropped */
	/* L7 capture (doc.go, "L7 capture"): the class of the server's port
	 * (l7_ports) when this interface captures the flow's payload heads,
	 * decided at the flow's first packet; 0 for none. */
	__u8 l7;
	__u8 pad[1];
};

/* flow_stats.verdict, in Hubble's numbering (flow.Verdict). */
enum verdict {
	VERDICT_FORWARDED = 1,
	VERDICT_DROPPED = 2,
};

/* Hubble's drop reason codes (flow.DropReason) the program sets. */
enum drop_reason {
	DROP_POLICY_DENIED = 133,
};

/*
 * ipcache_key is an address prefix (IPv4 as IPv4-mapped IPv6: a /24 is
 * prefixlen 96 + 24) of the ipcache LPM trie; ipcache_value its security
 * identity, and the CIDR identity of the most specific prefix a policy
 * names that contains it (0 if none; a pod inside an ipBlock).
 */
struct ipcache_key {
	__u32 prefixlen;
	__u8 addr[16];
};

struct ipcache_value {
	__u32 identity;
	__u32 cidr_identity;
};

/*
 * endpoint is what the program knows of the pod behind an interface (the
 * value of the endpoints map, keyed by ifindex): its endpoint ID and
 * identity, the generation of its policy entries in force, and by
 * direction (0 ingress, 1 egress): whether some policy selects it (default
 * deny), whether it has deny rules, and the policy_id a default-deny drop
 * reports (the policies that select it).
 */
struct endpoint {
	__u32 id;
	__u32 identity;
	__u32 deny_id[2];
	__u8 enforce[2];
	__u8 has_deny[2];
	__u8 gen;
	__u8 pad[3];
};

/*
 * policy_key is one allow (policy_allow) or deny (policy_deny) rule of one
 * endpoint, in an LPM trie: slot (endpoint id << 1 | generation), peer
 * identity (0: any peer) and direction are matched exactly (72 bits); then
 * the protocol (8 bits) and the destination port by prefix, so that a port
 * range is a few entries. A rule for every protocol and port is prefixlen
 * 72, for one protocol and every port 80, for one port 96. The port is in
 * network byte order, so that its prefixes are its high bits.
 */
struct policy_key {
	__u32 prefixlen;
	__u32 slot;
	__u32 peer;
	__u8 direction;
	__u8 proto;
	__be16 port;
};

struct policy_value {
	__u32 policy_id; /* the policies this rule comes from */
};

/*
 * ended is what a flow's end leaves behind (the value of ended4 and ended6,
 * keyed like the flows maps) so that packets after the end are accounted as
 * its tail, in its orientation: the flags of a reported end (FLOW_ENDED |
 * FLOW_REPORTED | the TCP flags it carried << FLOW_REPORTED_FLAGS_SHIFT)
 * and who opened the flow.
 */
struct ended {
	__u32 flags;
	__u8 initiator_lo;
	__u8 initiator_ingress;
	__u8 pad[2];
};

enum event_type {
	EVENT_FLOW_START = 1,
	EVENT_FLOW_END = 2,     /* FIN in both directions, then the last ACK */
	EVENT_FLOW_RESET = 3,   /* a RST closed the flow */
	EVENT_INSERT_FAILED = 4, /* the flows map refused a new flow: this packet alone */
	EVENT_PACKET = 5,       /* naive_per_packet_events: one event per packet */
	EVENT_FLOW_TAIL = 6,    /* packets after a reported end, before a new connection took the entry */
	EVENT_FLOW_DROP = 7,    /* the first packet of a flow that policy denies: dropped, reported now */
	EVENT_FLOW_VERDICT = 8, /* a policy change turned the flow's verdict: the counters under the old one */
	EVENT_KERNEL_DROP = 9,  /* the kernel dropped this packet of a pod interface (kfree_skb): it alone */
};

/*
 * flow_event is one ring buffer record. stats is a copy of the flow's state
 * after the packet that caused the event (for EVENT_PACKET and
 * EVENT_INSERT_FAILED: that packet alone; for EVENT_FLOW_TAIL: the counters
 * since the end event).
 */
struct flow_event {
	struct flow_key key;
	__u8 type;     /* enum event_type */
	__u8 is_reply; /* the packet that caused the event came from the responder */
	__u8 ingress;  /* that packet passed tc ingress (else egress) */
	__u8 pad;
	struct flow_stats stats;
};

/* Indexes of the per-CPU counters array. */
enum counter {
	COUNTER_ETH_TRUNCATED = 0,
	COUNTER_IPV4_TRUNCATED = 1,
	COUNTER_IPV4_MALFORMED = 2,
	COUNTER_IPV6_TRUNCATED = 3,
	COUNTER_IPV6_MALFORMED = 4,
	COUNTER_IPV6_EXT_TRUNCATED = 5,
	COUNTER_IPV6_EXT_LIMIT = 6,
	COUNTER_L4_TRUNCATED = 7,
	COUNTER_TCP_MALFORMED = 8,
	COUNTER_NON_IP = 9,           /* not an error: ARP, LLDP, ... */
	COUNTER_FRAGMENT = 10,        /* not an error: non-first fragments carry no ports */
	COUNTER_RINGBUF_START = 11,   /* start events lost: nothing else is lost */
	COUNTER_RINGBUF_END = 12,     /* end events lost: the flow stays in the map for the sweep */
	COUNTER_RINGBUF_LOST = 13,    /* packet, insert-failed or superseded end events lost: data lost */
	COUNTER_MAP_INSERT = 14,      /* new flows the map refused (full) */
	COUNTER_MAX = 15,
};

/*
 * Kernel drops (flow.c, kfree_skb_drop): kdrop_counters counts drops by the
 * kernel's enum skb_drop_reason value below KDROP_MAX; KDROP_OTHER counts
 * the rest (subsystem reasons, which carry their subsystem in the high 16
 * bits). kdrop_hubble gives the Hubble drop reason of each kernel reason,
 * or KDROP_NO_EVENT for a drop counted but not reported as a flow record.
 */
enum kdrop {
	KDROP_MAX = 256,
	KDROP_OTHER = 256,
	KDROP_SLOTS = 257,
	KDROP_NO_EVENT = 255,
};

/*
 * L7 capture (flow.c, l7_capture). l7_port is the value of the l7_ports
 * array (key: a server port): the class userspace gave the port per
 * transport ([0] TCP, [1] UDP), 0 when not enabled. A class is a small
 * number below L7_CLASS_MAX that userspace maps to a protocol; the kernel
 * only counts by it.
 */
struct l7_port {
	__u8 class[2];
	__u8 pad[2];
};

enum l7_limits {
	L7_CLASS_MAX = 8,
	L7_HEAD_MAX = 1024, /* most payload bytes one capture carries */
};

/* l7_counters: per-CPU array indexed class * L7_COUNTER_MAX + counter. */
enum l7_counter {
	L7_COUNTER_CAPTURED = 0, /* captures the ring buffer took */
	L7_COUNTER_RINGBUF = 1,  /* captures the ring buffer refused: their segments are lost */
	L7_COUNTER_LOAD = 2,     /* payload bytes that could not be read: the capture went without its head */
	L7_COUNTER_MAX = 3,
};

/*
 * l7_event is one capture: a TCP segment or UDP datagram of a flow whose
 * server port is enabled, as seen at one interface, with the first
 * head_len bytes of its payload (head_len <= len, l7_head_bytes,
 * L7_HEAD_MAX). Only the header and head_len bytes of head are in the ring
 * buffer record. Addresses are IPv4-mapped for IPv4.
 */
struct l7_event {
	__u8 src[16];
	__u8 dst[16];
	__u16 sport;
	__u16 dport;
	__u32 ifindex;
	__u64 ts_ns;    /* bpf_ktime_get_ns when seen */
	__u32 seq;      /* TCP: sequence number of the first payload byte (a SYN's: its ISN); UDP: 0 */
	__u32 len;      /* payload bytes in the packet */
	__u16 head_len; /* bytes of head that follow */
	__u8 proto;     /* 6 TCP, 17 UDP */
	__u8 tcp_flags; /* FIN 1, SYN 2, RST 4, PSH 8, ACK 16, ... */
	__u8 is_reply;  /* sent by the flow's responder */
	__u8 class;     /* the server port's class */
	__u8 ingress;   /* passed tc ingress (else egress) */
	__u8 pad;
	__u8 head[L7_HEAD_MAX];
};

#endif
