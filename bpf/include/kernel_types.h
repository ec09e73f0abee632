/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The few kernel-internal types the kfree_skb program reads (flow.c,
 * "Kernel drops"), declared by hand with preserve_access_index: every
 * field access is a CO-RE relocation that the loader resolves against the
 * running kernel's BTF, so only the names below must exist there, not this
 * layout. A hand-written subset instead of a generated vmlinux.h (several
 * MB, tied to one kernel build).
 */
#ifndef FLOWBUS_KERNEL_TYPES_H
#define FLOWBUS_KERNEL_TYPES_H

#include "flowbus_types.h"

/* Layouts here are the kernel's, found by CO-RE: padding is irrelevant. */
#pragma clang diagnostic push
#pragma clang diagnostic ignored "-Wpadded"

struct ns_common {
	unsigned int inum;
} __attribute__((preserve_access_index));

struct net {
	struct ns_common ns;
} __attribute__((preserve_access_index));

typedef struct {
	struct net *net;
} __attribute__((preserve_access_index)) possible_net_t;

struct rtnl_link_ops {
	const char *kind;
} __attribute__((preserve_access_index));

struct net_device {
	int ifindex;
	possible_net_t nd_net;
	const struct rtnl_link_ops *rtnl_link_ops;
} __attribute__((preserve_access_index));

/* drivers/net/veth.c: the private area (netdev_priv) of a veth device. */
struct veth_priv {
	struct net_device *peer;
} __attribute__((preserve_access_index));

struct sk_buff {
	struct net_device *dev;
	unsigned int len;
	unsigned char *head;
	__u16 network_header;
	int skb_iif;
	__be16 protocol;
} __attribute__((preserve_access_index));

#pragma clang diagnostic pop

/*
 * enum skb_drop_reason (include/net/dropreason-core.h): only the values the
 * program compares with, relocated by name (bpf_core_enum_value), since
 * the numbering changes between kernels.
 */
enum skb_drop_reason {
	SKB_NOT_DROPPED_YET = 0,
	SKB_CONSUMED = 1,
	SKB_DROP_REASON_NOT_SPECIFIED = 2,
};

#endif
