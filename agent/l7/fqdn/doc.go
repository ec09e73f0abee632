// Package fqdn is the agent's IP → names cache, as Cilium's FQDN cache
// (pkg/fqdn DNSCache): per source pod, the addresses its DNS answers gave,
// each with the names it asked for, until their TTL runs out. Flows take
// destination_names from it (Names of the flow's source pod and its
// destination IP) and, for a reply, source_names (Names of the destination
// pod and the source IP).
//
// # What an answer adds
//
// AddExchange takes an answered DNS exchange of agent/l7/dns (RESPONSE,
// rcode 0, with addresses; NXDOMAIN, unanswered queries and answers without
// addresses add nothing) at its response's time: every address of the
// answer maps to the queried name and to every CNAME of its chain (a flow
// to the CDN's address is named by what the pod asked for and by the names
// in between; Cilium keeps the queried name only, for its policies, but a
// name the flow can be searched by is what the annotation is for). Names
// are lower-cased and keep their trailing dot, as Hubble prints them.
//
// # Expiry
//
// An entry is alive from its answer's time until that time + TTL + Grace,
// that instant included (Cilium's isExpiredBy: expired only after it), and
// gone 1 ns later. The TTL is the answer's (agent/l7/dns: the minimum over
// the A, AAAA and CNAME records, the chain's), raised to Options.MinTTL.
//
// Decision: MinTTL and Grace default to 0, as Cilium's --tofqdns-min-ttl
// and --tofqdns-idle-connection-grace-period do. Cilium does not drop an
// expired name while a connection to its address is alive (its "zombies",
// kept by conntrack); this cache has no connection liveness, so a
// connection that outlives its answer's TTL loses its names unless Grace
// covers it (a long-lived connection re-resolves rarely: give Grace the
// length of the connections to be named, e.g. 5m, at the cost of names
// kept after an address moved). An answer for a (pod, IP, name) already
// held keeps the later expiry.
//
// Times are the caller's monotonic nanoseconds (the kernel times of the
// exchanges; every now of the cache on that clock): no clock is read, so
// tests drive it.
//
// # Bounds
//
// At most Options.MaxPerPod entries (a (pod, IP, name) each, default 5,000,
// Cilium's --tofqdns-endpoint-max-ip-per-hostname is 1,000 per name) per
// pod and Options.MaxEntries (default 200,000) overall. Add first removes
// what has expired (Stats.Expired), then, over a cap, the entry expiring
// soonest, of the pod or of the whole cache (Stats.Evicted): two heaps by
// expiry, so each is O(log n). Expire removes expired entries without an
// Add (for a caller that wants memory back on a quiet node).
//
// # Cost
//
// BenchmarkNames (a hit with two names: a lock, two map lookups, one sorted
// slice) and BenchmarkNamesMiss beside BenchmarkFloorMaps (the same two
// lookups in plain maps of ready lists); BenchmarkAdd refreshing and
// evicting. The cache is safe for concurrent use: Names takes a read lock.
package fqdn
