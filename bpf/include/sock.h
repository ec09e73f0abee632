/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Structures shared between bpf/sock.c (socket-layer load balancing) and
 * the Go package bpf (socklb.go). Fixed-width and explicitly padded (the
 * build uses -Wpadded). Addresses are four __u32 words holding the 16
 * bytes of an IPv6 address in network order, IPv4 stored IPv4-mapped
 * (::ffff:a.b.c.d); ports are in network order.
 */
#ifndef FLOWBUS_SOCK_H
#define FLOWBUS_SOCK_H

#include "flowbus_types.h"

/* struct bpf_sock_addr, the context of cgroup/connect, sendmsg, recvmsg and
 * getpeername programs (include/uapi/linux/bpf.h). Its layout must be the
 * uapi's exactly: the verifier rewrites the offsets. */
#pragma clang diagnostic push
#pragma clang diagnostic ignored "-Wpadded"
struct bpf_sock_addr {
	__u32 user_family;
	__u32 user_ip4;    /* network order */
	__u32 user_ip6[4]; /* network order */
	__u32 user_port;   /* network order, in the low 16 bits */
	__u32 family;
	__u32 type;
	__u32 protocol;
	__u32 msg_src_ip4;
	__u32 msg_src_ip6[4];
	__bpf_md_ptr(struct bpf_sock *, sk);
};
#pragma clang diagnostic pop

/* struct bpf_sock, the context of cgroup/sock_release (and what
 * bpf_sock_addr's sk points to): its first fields as in the uapi, which is
 * all sock_release reads. */
struct bpf_sock {
	__u32 bound_dev_if;
	__u32 family;
	__u32 type;
	__u32 protocol;
};

#define BPF_MAP_TYPE_ARRAY_OF_MAPS 12
#define ECONNREFUSED 111

/* lb_services key: a service's frontend, the ClusterIP, port and protocol a
 * client connects to. */
struct lb_svc_key {
	__u32 addr[4];
	__be16 port;
	__u8 proto; /* IPPROTO_TCP or IPPROTO_UDP */
	__u8 pad;
};

enum lb_algo {
	LB_ALGO_RANDOM = 0, /* bpf_get_prandom_u32() over the ready backends */
	LB_ALGO_MAGLEV = 1, /* the service's Maglev table, by the socket cookie's hash */
};

/* lb_services value. count is the number of ready backends, in slots
 * 1..count of lb_backends; 0 refuses the connection. */
struct lb_svc {
	__u32 id; /* 1..max_services-1; the key of lb_backends and lb_maglev */
	__u16 count;
	__u8 algo;  /* enum lb_algo */
	__u8 flags; /* none defined yet: 0 */
};

struct lb_backend_key {
	__u32 svc_id;
	__u32 slot; /* 1..count */
};

struct lb_backend {
	__u32 addr[4];
	__be16 port;
	__u8 family; /* 4 or 6 */
	__u8 pad;
	__u32 id; /* the caller's backend id, reported on events */
};

/* lb_revnat: what a socket was translated to, so that recvmsg and
 * getpeername give its application the ClusterIP back. */
struct lb_revnat_key {
	__u64 cookie; /* bpf_get_socket_cookie */
	__u32 addr[4]; /* the backend */
	__be16 port;
	__u8 pad[6];
};

struct lb_revnat {
	__u32 addr[4]; /* the ClusterIP */
	__be16 port;
	__u8 pad[2];
	__u32 svc_id;
};

/* lb_revnat_sk: a connected TCP socket's translation, in the socket's own
 * storage (freed with it). */
struct lb_revnat_sk {
	__u32 backend[4];
	__u32 addr[4]; /* the ClusterIP */
	__be16 backend_port;
	__be16 port;
	__u32 svc_id;
};

/* lb_peer: a connected TCP socket's translation in a slot of a table
 * indexed by its cookie (cookie & (slots - 1)); cookie 0 is a free slot.
 * 48 bytes. */
struct lb_peer_slot {
	__u64 cookie;
	__u32 backend[4];
	__u32 addr[4]; /* the ClusterIP */
	__be16 backend_port;
	__be16 port;
	__u32 svc_id;
};

#define BPF_MAP_TYPE_SK_STORAGE 24
#define BPF_SK_STORAGE_GET_F_CREATE 1
#define SOCK_STREAM 1

enum sock_verdict {
	SOCK_TRANSLATED = 1, /* the destination was rewritten to a backend */
	SOCK_NO_BACKEND = 2, /* the service has no ready backend: refused (ECONNREFUSED) */
};

enum sock_hook {
	SOCK_HOOK_CONNECT = 1,
	SOCK_HOOK_SENDMSG = 2,
};

/* One decision, in the sock_events ring buffer: sock_event4 for an IPv4
 * socket, sock_event6 for an IPv6 one. Their sizes (56 and 120 bytes: 64
 * and 128 with the ring's 8-byte record header) keep every record on whole
 * cache lines: an IPv4 decision writes one line of the ring, which the
 * reader's CPU last held (a record of 96 bytes, as before, touched two and
 * cost a connect() about 85 ns more). The first 44 bytes are the same. */
struct sock_event4 {
	__u64 ts_ns;     /* bpf_ktime_get_coarse_ns (CLOCK_MONOTONIC_COARSE) */
	__u64 cookie;    /* the socket's cookie */
	__u64 cgroup_id; /* the calling task's cgroup v2 id */
	__u32 pid;       /* the calling task's thread group id */
	__u32 svc_id;
	__u32 backend_id;
	__be16 orig_port;
	__be16 backend_port;
	__u8 protocol;
	__u8 family;  /* of the socket: 4 */
	__u8 verdict; /* enum sock_verdict */
	__u8 hook;    /* enum sock_hook */
	__be32 orig_addr;    /* the ClusterIP */
	__be32 backend_addr; /* zero when refused */
	__u32 pad;
};

struct sock_event6 {
	__u64 ts_ns;
	__u64 cookie;
	__u64 cgroup_id;
	__u32 pid;
	__u32 svc_id;
	__u32 backend_id;
	__be16 orig_port;
	__be16 backend_port;
	__u8 protocol;
	__u8 family; /* of the socket: 6 (the addresses may be IPv4-mapped) */
	__u8 verdict;
	__u8 hook;
	__u32 orig_addr[4];
	__u32 backend_addr[4];
	__u8 pad[44];
};

/* Per-CPU counters (sock_counters). */
enum sock_counter {
	SOCK_COUNTER_TRANSLATED = 0,   /* connect/sendmsg rewritten to a backend */
	SOCK_COUNTER_NO_BACKEND,       /* refused: no ready backend */
	SOCK_COUNTER_RINGBUF,          /* decision events the ring buffer refused */
	SOCK_COUNTER_REVNAT_UPDATE,    /* translations lb_revnat or lb_revnat_sk refused */
	SOCK_COUNTER_REVNAT_REWRITE,   /* recvmsg/getpeername answers given the ClusterIP */
	SOCK_COUNTER_BACKEND_MISSING,  /* a slot below count had no backend (refused) */
	SOCK_COUNTER_MAGLEV_MISSING,   /* a Maglev service had no table (refused) */
	SOCK_COUNTER_FAMILY_MISMATCH,  /* an IPv6 backend for an IPv4 socket (refused) */
	SOCK_COUNTER_PEER_STORAGE,     /* TCP translations kept in socket storage: their slot was taken */
	SOCK_COUNTER_MAX,
};

#endif
