// Package relay is flowbus's Hubble relay: it connects to every agent's
// Observer server (:4244) and serves the same cilium observer.Observer API on
// :4245, merged over the cluster, so that `hubble observe --server
// relay:4245`, `flowbus observe` and Hubble's gRPC clients see one stream.
//
// Decisions:
//
//   - Agents are a static list of host:port targets; a host that is a DNS
//     name is resolved to all of its addresses (a headless Service gives one
//     per agent pod) and resolved again every ResolveInterval. New addresses
//     join, vanished ones are closed; a failed resolution keeps the last
//     known set rather than dropping every agent on a DNS hiccup.
//   - GetFlows sends the client's request unchanged to every agent (number,
//     first, since and until therefore apply per agent, as with Hubble relay:
//     --last N prints N flows per node) and merges the streams by time. Each
//     agent's stream is time-ordered, so the merger emits the oldest queued
//     response once every live stream has one queued: exact order while all
//     agents keep up. A stream that has nothing to say holds the others back
//     at most SortWindow (follow, default 500 ms) or BatchWindow (requests
//     that end, default 5 s), after which order is best-effort, as Hubble
//     relay's sort buffer is.
//   - Agents that cannot be reached are reported once as a NODE_UNAVAILABLE
//     node status event, agents that fail mid-stream as NODE_ERROR, and the
//     stream goes on with the others; with follow, lost and new agents are
//     (re)joined every RetryInterval from their newest flow on, and a
//     returning agent is reported NODE_CONNECTED. A request an agent refuses
//     as InvalidArgument (an unsupported filter field) is refused to the
//     client with the agent's message. Filtering happens in the agents only.
//   - ServerStatus sums the reachable agents' counters and names the
//     unreachable ones; GetNodes lists every agent as NODE_CONNECTED or
//     NODE_UNAVAILABLE with its counters; GetNamespaces merges the agents'.
//     Node names are learned from the agents (GetNodes, or the node_name of
//     their flows); an agent never reached is named by its address.
//   - TLS towards clients and towards agents is configured separately
//     (observe.ServerTLS, observe.ClientTLS), mTLS included.
package relay
