// Package inspect reads what a running agent holds in the kernel, from the
// maps it pins (agent --bpf-pin-dir, internal/bpfpin), and compares two
// readings: the model behind `flowbus bpf` and `flowbus audit`.
//
// A Snapshot is every map at one time, decoded with the maps' own types
// (package bpf and bpf/socklb): the connections of the flow maps, the
// socket LB's services and backends, each endpoint with the policy entries
// of its generation in force, and the ipcache. It is written as one JSON
// document with a kind and a version; Read refuses another kind, another
// version, a truncated or corrupt file, naming which.
//
// Compare says what changed from one snapshot to the next: connections new
// and ended (entries of the flow maps, so a connection between two
// attached pods is one per interface; an ended connection is one the sweep
// has freed, not one whose FIN was seen), services new, removed, or that
// gained or lost backends (by address and port), policy entries added or
// removed per endpoint, ipcache entries added, removed or moved, and
// identities new or gone. A connection whose counters moved is not a
// change. Lists of connections are capped; the counts are not.
//
// Decision: the labels behind an identity are not in the snapshot. The
// kernel holds numbers only, and the agent's identity table lives in its
// memory, not in a pinned map; a pod's name needs the cluster view.
package inspect
