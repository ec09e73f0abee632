//go:build ignore

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//
// sock.c: socket-layer load balancing, as Cilium's socket LB. cgroup
// connect and sendmsg programs rewrite a ClusterIP:port destination to one
// of the service's backends and report the decision; recvmsg and
// getpeername programs give the application the ClusterIP back. See
// doc.go, "Socket load balancing".

#include "sock.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

char __license[] SEC("license") = "Dual BSD/GPL";

// maglev_m is the size of every Maglev table (a prime), set from Go before
// load; the inner map template of lb_maglev has as many entries.
volatile const __u32 maglev_m = 1;
// wakeup_bytes: 0 lets the kernel wake the reader for every event it finds
// idle; otherwise events are submitted without a wakeup until this many
// bytes wait in the ring, and the reader polls on a short timer for the
// rest (flow.c does the same).
volatile const __u32 wakeup_bytes = 0;
// tcp_peer: 1 keeps a TCP socket's translation in its storage so that
// getpeername() gives the ClusterIP back; 0 skips it (the socket's peer is
// the backend, as with Cilium's socket LB peer hooks off), which saves the
// storage's allocation: the larger part of a translated connect()'s cost.
volatile const __u32 tcp_peer = 1;

// Sizes are defaults; Go sets max_entries before load.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, struct lb_svc_key);
	__type(value, struct lb_svc);
} lb_services SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct lb_backend_key);
	__type(value, struct lb_backend);
} lb_backends SEC(".maps");

// lb_maglev holds, by service id, the service's Maglev table: maglev_m
// backend slots. Go builds a whole new table and swaps it in with one
// update, so a lookup sees the old table or the new one, never a mix.
struct lb_maglev_inner {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__array(values, struct lb_maglev_inner);
} lb_maglev SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct lb_revnat_key);
	__type(value, struct lb_revnat);
} lb_revnat SEC(".maps");

// lb_peer: the translations of connected TCP sockets, by cookie &
// peer_mask (Config.PeerSlots, a power of two; Go sets max_entries). A
// slot is claimed at connect() with a compare-and-swap of its cookie from
// 0 and freed by sock_release when its socket closes; a socket whose slot
// is taken by another open socket keeps its translation in lb_revnat_sk.
volatile const __u32 peer_mask = 0;

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct lb_peer_slot);
} lb_peer SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct lb_revnat_sk);
} lb_revnat_sk SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} sock_events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SOCK_COUNTER_MAX);
	__type(key, __u32);
	__type(value, __u64);
} sock_counters SEC(".maps");

// Force the enums and the event type into BTF for bpf2go.
const enum sock_verdict *unused_sock_verdict __attribute__((unused));
const enum sock_hook *unused_sock_hook __attribute__((unused));
const enum sock_counter *unused_sock_counter __attribute__((unused));
const enum lb_algo *unused_lb_algo __attribute__((unused));
const struct sock_event4 *unused_sock_event4 __attribute__((unused));
const struct sock_event6 *unused_sock_event6 __attribute__((unused));

// count adds one to a per-CPU counter and returns its new value (0 if the
// lookup failed, which it cannot for an index below SOCK_COUNTER_MAX).
static __always_inline __u64 count(__u32 idx)
{
	__u64 *c = bpf_map_lookup_elem(&sock_counters, &idx);
	if (!c)
		return 0;
	*c += 1;
	return *c;
}

// QUERY_EVERY: emit reads the ring's fill (bpf_ringbuf_query, which reads
// the reader's position from a cache line the reader's CPU writes: tens of
// ns) for one decision in this many on a CPU, not for every one. The
// reader's wakeup can come up to QUERY_EVERY-1 events per CPU after the
// ring reached wakeup_bytes: a few KiB against a quarter of the ring.
#define QUERY_EVERY 64

// mix64 is MurmurHash3's 64-bit finalizer: the socket cookie's hash that
// picks a Maglev table entry (socklb.go's maglevIndex is the same).
static __always_inline __u64 mix64(__u64 k)
{
	k ^= k >> 33;
	k *= 0xff51afd7ed558ccdULL;
	k ^= k >> 33;
	k *= 0xc4ceb9fe1a85ec53ULL;
	k ^= k >> 33;
	return k;
}

static __always_inline void read_dst(struct bpf_sock_addr *ctx, int v6, __u32 addr[4])
{
	if (v6) {
		addr[0] = ctx->user_ip6[0];
		addr[1] = ctx->user_ip6[1];
		addr[2] = ctx->user_ip6[2];
		addr[3] = ctx->user_ip6[3];
	} else {
		addr[0] = 0;
		addr[1] = 0;
		addr[2] = bpf_htonl(0xffff);
		addr[3] = ctx->user_ip4;
	}
}

static __always_inline void write_dst(struct bpf_sock_addr *ctx, int v6, const __u32 addr[4], __be16 port)
{
	if (v6) {
		ctx->user_ip6[0] = addr[0];
		ctx->user_ip6[1] = addr[1];
		ctx->user_ip6[2] = addr[2];
		ctx->user_ip6[3] = addr[3];
	} else {
		ctx->user_ip4 = addr[3];
	}
	ctx->user_port = (__u32)port;
}

// FILL_EVENT sets the fields sock_event4 and sock_event6 share. The time
// is the coarse clock's (the last tick's, a few ns to read), not
// bpf_ktime_get_ns: a clock read costs 100-150 ns on a VM whose only
// clocksource is kvm-clock; ReadEvent bounds the decision's time by the
// read and one tick after the stamp (doc.go, "Decisions").
#define FILL_EVENT(ev, cookie, hook, verdict, key, svc_id, be)                                                         \
	do {                                                                                                            \
		(ev)->ts_ns = bpf_ktime_get_coarse_ns();                                                                 \
		(ev)->cookie = (cookie);                                                                                 \
		(ev)->cgroup_id = bpf_get_current_cgroup_id();                                                           \
		(ev)->pid = (__u32)(bpf_get_current_pid_tgid() >> 32);                                                   \
		(ev)->svc_id = (svc_id);                                                                                 \
		(ev)->backend_id = (be) ? (be)->id : 0;                                                                  \
		(ev)->orig_port = (key)->port;                                                                           \
		(ev)->backend_port = (be) ? (be)->port : 0;                                                              \
		(ev)->protocol = (key)->proto;                                                                           \
		(ev)->verdict = (verdict);                                                                               \
		(ev)->hook = (hook);                                                                                     \
	} while (0)

// emit reports a decision; nth is the per-CPU count of decisions like it
// (count's value), which paces the ring fill check.
static __always_inline void emit(struct bpf_sock_addr *ctx, __u64 cookie, int v6, __u8 hook, __u8 verdict,
				 const struct lb_svc_key *key, __u32 svc_id, const struct lb_backend *be, __u64 nth)
{
	void *rec;
	if (v6) {
		struct sock_event6 *ev = bpf_ringbuf_reserve(&sock_events, sizeof(*ev), 0);
		if (!ev) {
			count(SOCK_COUNTER_RINGBUF);
			return;
		}
		FILL_EVENT(ev, cookie, hook, verdict, key, svc_id, be);
		ev->family = 6;
		__builtin_memcpy(ev->orig_addr, key->addr, sizeof(ev->orig_addr));
		if (be)
			__builtin_memcpy(ev->backend_addr, be->addr, sizeof(ev->backend_addr));
		else
			__builtin_memset(ev->backend_addr, 0, sizeof(ev->backend_addr));
		__builtin_memset(ev->pad, 0, sizeof(ev->pad));
		rec = ev;
	} else {
		struct sock_event4 *ev = bpf_ringbuf_reserve(&sock_events, sizeof(*ev), 0);
		if (!ev) {
			count(SOCK_COUNTER_RINGBUF);
			return;
		}
		FILL_EVENT(ev, cookie, hook, verdict, key, svc_id, be);
		ev->family = 4;
		ev->orig_addr = key->addr[3];
		ev->backend_addr = be ? be->addr[3] : 0;
		ev->pad = 0;
		rec = ev;
	}
	__u64 flags = 0;
	if (wakeup_bytes) {
		flags = BPF_RB_NO_WAKEUP;
		if (nth % QUERY_EVERY == 0 && bpf_ringbuf_query(&sock_events, BPF_RB_AVAIL_DATA) >= wakeup_bytes)
			flags = BPF_RB_FORCE_WAKEUP;
	}
	bpf_ringbuf_submit(rec, flags);
}

// xlate_fwd translates a connect() or sendmsg() to a service's frontend.
// It returns 1 (proceed: not a service, or translated) or 0 with the
// syscall's error set to ECONNREFUSED (no ready backend).
static __always_inline int xlate_fwd(struct bpf_sock_addr *ctx, int v6, __u8 hook)
{
	struct lb_svc_key key;
	__builtin_memset(&key, 0, sizeof(key));
	read_dst(ctx, v6, key.addr);
	key.port = (__be16)ctx->user_port;
	key.proto = (__u8)ctx->protocol;

	struct lb_svc *svc = bpf_map_lookup_elem(&lb_services, &key);
	if (!svc)
		return 1;
	__u32 svc_id = svc->id;
	__u32 n = svc->count;
	__u64 cookie = bpf_get_socket_cookie(ctx);
	struct lb_backend *be = 0;
	if (n == 0) {
		count(SOCK_COUNTER_NO_BACKEND);
		goto refuse;
	}

	struct lb_backend_key bk = {.svc_id = svc_id};
	if (svc->algo == LB_ALGO_MAGLEV) {
		void *table = bpf_map_lookup_elem(&lb_maglev, &svc_id);
		if (!table) {
			count(SOCK_COUNTER_MAGLEV_MISSING);
			goto refuse;
		}
		__u32 idx = (__u32)(mix64(cookie) % maglev_m);
		__u32 *slot = bpf_map_lookup_elem(table, &idx);
		if (!slot) {
			count(SOCK_COUNTER_MAGLEV_MISSING);
			goto refuse;
		}
		bk.slot = *slot;
	} else {
		bk.slot = bpf_get_prandom_u32() % n + 1;
	}
	be = bpf_map_lookup_elem(&lb_backends, &bk);
	if (!be) {
		count(SOCK_COUNTER_BACKEND_MISSING);
		goto refuse;
	}
	if (!v6 && be->family != 4) {
		count(SOCK_COUNTER_FAMILY_MISMATCH);
		be = 0;
		goto refuse;
	}

	if (ctx->type == SOCK_STREAM) {
		if (!tcp_peer)
			goto translated;
		// A TCP socket has one peer: its translation goes in its slot
		// of lb_peer, or if another open socket holds that slot, in the
		// socket's own storage (an allocation: most of the cost).
		__u32 idx = (__u32)cookie & peer_mask;
		struct lb_peer_slot *ps = bpf_map_lookup_elem(&lb_peer, &idx);
		if (ps && (ps->cookie == cookie || __sync_val_compare_and_swap(&ps->cookie, 0, cookie) == 0)) {
			__builtin_memcpy(ps->backend, be->addr, sizeof(ps->backend));
			__builtin_memcpy(ps->addr, key.addr, sizeof(ps->addr));
			ps->backend_port = be->port;
			ps->port = key.port;
			ps->svc_id = svc_id;
			goto translated;
		}
		count(SOCK_COUNTER_PEER_STORAGE);
		struct bpf_sock *sk = ctx->sk;
		struct lb_revnat_sk *rs = sk ? bpf_sk_storage_get(&lb_revnat_sk, sk, 0, BPF_SK_STORAGE_GET_F_CREATE) : 0;
		if (rs) {
			__builtin_memcpy(rs->backend, be->addr, sizeof(rs->backend));
			__builtin_memcpy(rs->addr, key.addr, sizeof(rs->addr));
			rs->backend_port = be->port;
			rs->port = key.port;
			rs->svc_id = svc_id;
		} else {
			count(SOCK_COUNTER_REVNAT_UPDATE);
		}
	} else {
		struct lb_revnat_key rk;
		__builtin_memset(&rk, 0, sizeof(rk));
		rk.cookie = cookie;
		__builtin_memcpy(rk.addr, be->addr, sizeof(rk.addr));
		rk.port = be->port;
		// Written only when it is not there yet: an unconnected UDP
		// socket's sendmsg() is translated per datagram and a connected
		// one's connect() may repeat, and an LRU update replaces the
		// element (a pop from the free list, a link, a free) where a
		// lookup only marks it used (as Cilium's sock4_update_revnat).
		struct lb_revnat *cur = bpf_map_lookup_elem(&lb_revnat, &rk);
		if (!cur || cur->svc_id != svc_id || cur->port != key.port || cur->addr[0] != key.addr[0] ||
		    cur->addr[1] != key.addr[1] || cur->addr[2] != key.addr[2] || cur->addr[3] != key.addr[3]) {
			struct lb_revnat rv;
			__builtin_memset(&rv, 0, sizeof(rv));
			__builtin_memcpy(rv.addr, key.addr, sizeof(rv.addr));
			rv.port = key.port;
			rv.svc_id = svc_id;
			if (bpf_map_update_elem(&lb_revnat, &rk, &rv, BPF_ANY))
				count(SOCK_COUNTER_REVNAT_UPDATE);
		}
	}

translated:
	write_dst(ctx, v6, be->addr, be->port);
	__u64 nth = count(SOCK_COUNTER_TRANSLATED);
	emit(ctx, cookie, v6, hook, SOCK_TRANSLATED, &key, svc_id, be, nth);
	return 1;

refuse:
	// A refusal always checks the ring's fill (nth 0): refusals are rare.
	emit(ctx, cookie, v6, hook, SOCK_NO_BACKEND, &key, svc_id, 0, 0);
	// Returning 0 alone fails the syscall with EPERM; the error set here
	// (bpf_set_retval, Linux 5.18+) is what the caller sees instead.
	bpf_set_retval(-ECONNREFUSED);
	return 0;
}

// xlate_rev gives a translated socket's application the ClusterIP back as
// the peer (getpeername) or a datagram's source (recvmsg).
static __always_inline int xlate_rev(struct bpf_sock_addr *ctx, int v6)
{
	__u32 peer[4];
	read_dst(ctx, v6, peer);
	__be16 peer_port = (__be16)ctx->user_port;
	if (ctx->type == SOCK_STREAM) {
		if (!tcp_peer)
			return 1;
		__u64 cookie = bpf_get_socket_cookie(ctx);
		__u32 idx = (__u32)cookie & peer_mask;
		struct lb_peer_slot *ps = bpf_map_lookup_elem(&lb_peer, &idx);
		if (ps && ps->cookie == cookie) {
			if (ps->backend_port != peer_port || ps->backend[0] != peer[0] || ps->backend[1] != peer[1] ||
			    ps->backend[2] != peer[2] || ps->backend[3] != peer[3])
				return 1;
			write_dst(ctx, v6, ps->addr, ps->port);
			count(SOCK_COUNTER_REVNAT_REWRITE);
			return 1;
		}
		struct bpf_sock *sk = ctx->sk;
		struct lb_revnat_sk *rs = sk ? bpf_sk_storage_get(&lb_revnat_sk, sk, 0, 0) : 0;
		if (!rs || rs->backend_port != peer_port || rs->backend[0] != peer[0] || rs->backend[1] != peer[1] ||
		    rs->backend[2] != peer[2] || rs->backend[3] != peer[3])
			return 1;
		write_dst(ctx, v6, rs->addr, rs->port);
		count(SOCK_COUNTER_REVNAT_REWRITE);
		return 1;
	}
	struct lb_revnat_key rk;
	__builtin_memset(&rk, 0, sizeof(rk));
	rk.cookie = bpf_get_socket_cookie(ctx);
	read_dst(ctx, v6, rk.addr);
	rk.port = (__be16)ctx->user_port;
	struct lb_revnat *rv = bpf_map_lookup_elem(&lb_revnat, &rk);
	if (!rv)
		return 1;
	write_dst(ctx, v6, rv->addr, rv->port);
	count(SOCK_COUNTER_REVNAT_REWRITE);
	return 1;
}

SEC("cgroup/connect4")
int sock4_connect(struct bpf_sock_addr *ctx)
{
	return xlate_fwd(ctx, 0, SOCK_HOOK_CONNECT);
}

SEC("cgroup/connect6")
int sock6_connect(struct bpf_sock_addr *ctx)
{
	return xlate_fwd(ctx, 1, SOCK_HOOK_CONNECT);
}

SEC("cgroup/sendmsg4")
int sock4_sendmsg(struct bpf_sock_addr *ctx)
{
	return xlate_fwd(ctx, 0, SOCK_HOOK_SENDMSG);
}

SEC("cgroup/sendmsg6")
int sock6_sendmsg(struct bpf_sock_addr *ctx)
{
	return xlate_fwd(ctx, 1, SOCK_HOOK_SENDMSG);
}

SEC("cgroup/recvmsg4")
int sock4_recvmsg(struct bpf_sock_addr *ctx)
{
	return xlate_rev(ctx, 0);
}

SEC("cgroup/recvmsg6")
int sock6_recvmsg(struct bpf_sock_addr *ctx)
{
	return xlate_rev(ctx, 1);
}

SEC("cgroup/getpeername4")
int sock4_getpeername(struct bpf_sock_addr *ctx)
{
	return xlate_rev(ctx, 0);
}

SEC("cgroup/getpeername6")
int sock6_getpeername(struct bpf_sock_addr *ctx)
{
	return xlate_rev(ctx, 1);
}

// sock_release frees a closing TCP socket's slot of lb_peer, if it holds
// one. It runs for every socket of the cgroup that closes.
SEC("cgroup/sock_release")
int sock_release(struct bpf_sock *ctx)
{
	if (!tcp_peer || ctx->protocol != IPPROTO_TCP)
		return 1;
	__u64 cookie = bpf_get_socket_cookie(ctx);
	__u32 idx = (__u32)cookie & peer_mask;
	struct lb_peer_slot *ps = bpf_map_lookup_elem(&lb_peer, &idx);
	if (ps && ps->cookie == cookie)
		__sync_val_compare_and_swap(&ps->cookie, cookie, 0);
	return 1;
}

// sock_floor is the cheapest cgroup/connect4 program: the baseline of
// BenchmarkSockLBConnect.
SEC("cgroup/connect4")
int sock_floor(struct bpf_sock_addr *ctx)
{
	return 1;
}
