// Package observer is flowbus's one home for Hubble's Observer API
// (cilium's observer.Observer gRPC service, github.com/cilium/cilium/api/v1/
// observer), so that the hubble CLI, Hubble's Go and Python clients and
// `flowbus observe` read flowbus unchanged. The agent serves it on :4244
// from a Ring of its last N flows; the relay (aggregator/relay) serves it on
// :4245 over every agent.
//
// Where things are:
//
//	observer              Ring (the agent's Tap), Server (GetFlows, ServerStatus, GetNodes,
//	                      GetNamespaces), field masks, Summary, ServerTLS/ClientTLS,
//	                      ServeObserver/ListenAndServe (the agent's and the relay's gRPC server)
//	observer/filter       FlowFilter whitelist/blacklist evaluated on schemas.Flow
//	observer/relayclient  many Observer servers read as one: peers, resolution, time-ordered merge
//	observer/query        the client side of `hubble observe`: filter flags, request, stream
//	observer/printer      hubble's printer: compact, dict, jsonpb, table
//	observer/observertest flows and filter cases the tests share
//
// Cilium's vocabulary (monitor message types, trace observation points,
// drop reason texts, reserved identities, DNS rcode and ICMP names) is not
// here but in schemas/hubble, the one declaration every package reads;
// TestVocabularyIsCiliums checks it against cilium's and gopacket's code.
//
// Decisions:
//
//   - The ring stores schemas.Flow values, not protobufs: the pipeline pays a
//     struct copy per flow under a mutex, never a conversion or an
//     allocation. Readers copy bounded chunks (64 events) under the read
//     lock and convert with hubble.ToProto only the flows they send. A
//     writer never waits for a reader: a reader that falls behind by more
//     than the ring size is told how many events it lost, as a LostEvent with
//     source HUBBLE_RING_BUFFER (exactly as Hubble's ring reader), and the
//     loss is counted in flowbus_observer_reader_lost_total and passed to
//     Config.Lost (the agent's hubble_lost_events_total{source=
//     "hubble_ring_buffer"}, as Hubble's ring counts it). So a stalled
//     `--follow` client cannot slow the pipeline.
//   - Filters (package filter) are evaluated on schemas.Flow, which spares
//     a conversion per ring entry, by our own code rather than cilium's
//     pkg/hubble/filters: flowbus's code depends on cilium's API packages
//     only (its tests import more). Our code answers as cilium's does on the flow.Flow we send
//     for the same flow, and a test holds it to that: it runs cilium's
//     filters (imported by the test only) and ours over 24,000 seeded
//     random (flow, whitelist + blacklist) pairs covering every field we
//     support, valid and invalid values. Semantics: OR between FlowFilters,
//     AND between the fields of one, OR between the values of one field;
//     blacklist excludes. Pods and services: "ns/prefix", "ns/" (whole
//     namespace), "prefix" (namespace "default"). FQDN and node name
//     patterns with '*'; node names without a cluster part are matched as
//     "default/<node>". Label selectors are Kubernetes selectors with
//     Cilium source prefixes ("k8s:app", "reserved:world"; no prefix = any
//     source), parsed and matched by a port of the code Hubble runs
//     (translation of the keys, Kubernetes' lexer, parser and validation,
//     Cilium's label lookup). An exact IP is compared as text with the
//     flow's canonical address, as Hubble does. protocol accepts Hubble's
//     names plus "kafka" (a flowbus extension: flowbus records Kafka as an
//     L7 protocol); it is the one value Hubble refuses that we accept.
//   - A FlowFilter field our records cannot answer (source_ip_xlated,
//     node_labels, trace_id, ip_trace_id, encrypted, experimental.cel_expression)
//     or a field unknown to cilium v1.20 (a newer client) is refused with
//     codes.InvalidArgument naming it, found by protoreflect, never ignored.
//     Malformed values (bad IP, regexp, port, pattern, label selector) are
//     refused exactly where Hubble refuses them, as InvalidArgument where
//     Hubble answers Unknown.
//   - GetFlows follows Hubble's local observer: first → from the oldest
//     flow; follow without number/since → from the next flow; otherwise walk
//     back until `number` matching flows (or a matching flow older than
//     since). Lost events bypass filters and time bounds and do not count
//     towards number. A non-follow request ends at the ring head as of the
//     request. field_mask is honoured (the hubble CLI sends a default mask in
//     its non-JSON modes); an invalid path is InvalidArgument.
//   - Tap.Lost records a lost-events entry in the ring; it reaches readers in
//     order, as GetFlowsResponse{lost_events}. ServerStatus has no field for
//     lost events in the cilium API; the counts are in Prometheus
//     (hubble_lost_events_total, package agent/metrics).
//   - ServerStatus reports num/max/seen flows, uptime, version, the flow rate
//     over the last minute (or the time the ring covers) and one connected
//     node; GetNodes returns this node; GetNamespaces scans the ring. When
//     the ring holds the flows of other nodes (an agent whose source is
//     Hubble), Config.Nodes lists them with their state: ServerStatus counts
//     them as connected or unavailable and names the unavailable ones (so
//     `hubble status` shows a node lost behind Hubble Relay), GetNodes lists
//     them. GetAgentEvents and GetDebugEvents answer Unimplemented: flowbus has no
//     Cilium agent or datapath debug events.
//   - Summary fills flow.summary (deprecated, but the hubble CLI prints it)
//     in the wording of Hubble's parsers; hubble.ToProto leaves it empty, the
//     server fills it, the relay passes it through.
//   - TLS is optional (ServerTLS); with a client CA it requires client
//     certificates (mTLS). The relay configures TLS towards clients
//     (ServerTLS) and towards agents (ClientTLS) separately, mTLS included.
//   - The relay (relayclient, served by aggregator/relay): agents are a
//     static list of host:port targets; a host that is a DNS name is
//     resolved to all of its addresses (a headless Service gives one per
//     agent pod) and resolved again every ResolveInterval. New addresses
//     join, vanished ones are closed; a failed resolution keeps the last
//     known set rather than dropping every agent on a DNS hiccup.
//   - The relay's GetFlows sends the client's request unchanged to every
//     agent (number, first, since and until therefore apply per agent, as
//     with Hubble relay: --last N prints N flows per node) and merges the
//     streams by time. Each agent's stream is time-ordered, so the merger
//     emits the oldest queued response once every live stream has one
//     queued: exact order while all agents keep up. A stream that has
//     nothing to say holds the others back at most SortWindow (follow,
//     default 500 ms) or BatchWindow (requests that end, default 5 s), after
//     which order is best-effort, as Hubble relay's sort buffer is.
//   - As Hubble Relay, the relay's GetFlows starts with one NODE_CONNECTED
//     node status event naming the agents it reads and one NODE_UNAVAILABLE
//     naming those it cannot reach (an agent whose connection is still being
//     made is given StatusTimeout), stamped with the relay's node name, then
//     the flows. The relay keeps a connection to every agent, as Hubble
//     Relay's peer pool does. Agents that cannot be reached are reported
//     once, agents that fail mid-stream as NODE_ERROR, and the
//     stream goes on with the others; with follow, lost and new agents are
//     (re)joined every RetryInterval from their newest flow on (gRPC's
//     reconnect backoff is capped at RetryInterval and reset at every
//     retry, so a restarted agent is read again within one RetryInterval,
//     not after a backoff grown to two minutes), and a
//     returning agent is reported NODE_CONNECTED. A request an agent refuses
//     as InvalidArgument (an unsupported filter field) is refused to the
//     client with the agent's message. Filtering happens in the agents only.
//   - The relay's ServerStatus aggregates as Hubble Relay does: num, max and
//     seen flows and the flow rate summed over the reachable agents, uptime
//     the oldest agent's (not the relay's own), the unreachable agents
//     counted and the first 10 named; GetNodes lists every agent as NODE_CONNECTED or
//     NODE_UNAVAILABLE with its counters; GetNamespaces merges the agents'.
//     Node names are learned from the agents (GetNodes, or the node_name of
//     their flows); an agent never reached is named by its address.
//   - `flowbus observe` (query, printer) builds its request from hubble
//     observe's flags as the hubble CLI does and prints as hubble's printer
//     does, line for line, terminal escapes neutralised; colors are not
//     implemented (hubble prints none when its output is not a terminal). A
//     test runs the real hubble CLI and flowbus observe side by side in
//     every output mode, where the CLI is built (make hubble).
package observer
