// Package relay is flowbus's Hubble relay service: it serves cilium's
// observer.Observer API on :4245 over every agent's Observer server
// (:4244), so that `hubble observe --server relay:4245`, `flowbus observe`
// and Hubble's gRPC clients see the cluster as one stream. It keeps what is
// the service: its configuration, the schedule that resolves agent names
// again, ServerStatus, GetNodes and GetNamespaces summed over the agents,
// and GetFlows answered by merging the agents' streams. Reading many agents
// as one (clients, DNS resolution, the time-ordered merge, node status
// events) is package internal/observer/relayclient; the decisions (order,
// windows, unreachable agents, TLS) are written down in package
// internal/observer.
package relay
