// Package observer is the agent's Hubble-compatible flow observer: a Ring of
// the last N flows, fed by the agent pipeline before aggregation (as Hubble's
// ring is), and a Server for cilium's observer.Observer gRPC service
// (github.com/cilium/cilium/api/v1/observer) on :4244, so that the hubble
// CLI, Hubble's Go and Python clients, `flowbus observe` and the relay read
// it unchanged.
//
// Decisions:
//
//   - The ring stores schemas.Flow values, not protobufs: the pipeline pays a
//     struct copy per flow under a mutex, never a conversion or an
//     allocation. Readers copy bounded chunks (64 events) under the read
//     lock and convert with schemas.ToProto only the flows they send. A
//     writer never waits for a reader: a reader that falls behind by more
//     than the ring size is told how many events it lost, as a LostEvent with
//     source HUBBLE_RING_BUFFER (exactly as Hubble's ring reader), and the
//     loss is counted in flowbus_observer_reader_lost_total. So a stalled
//     `--follow` client cannot slow the pipeline.
//   - Filters are evaluated on schemas.Flow, mirroring pkg/hubble/filters of
//     cilium v1.20 field by field (same matching rules, same error cases),
//     rather than importing it: DESIGN.md allows only cilium's API packages,
//     and evaluating on our record spares a conversion per ring entry.
//     Semantics: OR between FlowFilters, AND between the fields of one,
//     OR between the values of one field; blacklist excludes.
//     Pods and services: "ns/prefix", "ns/" (whole namespace), "prefix"
//     (namespace "default"). FQDN and node name patterns with '*'. Node names
//     without a cluster part are matched as "default/<node>". Label
//     selectors use Kubernetes syntax (=, ==, !=, in, notin, key, !key) with
//     Cilium source prefixes ("k8s:app", "reserved:world"; no prefix = any
//     source), parsed by our own small parser instead of k8s apimachinery.
//     protocol accepts Hubble's names plus "kafka" (a flowbus extension:
//     flowbus records Kafka as an L7 protocol).
//   - A FlowFilter field our records cannot answer (source_ip_xlated,
//     node_labels, trace_id, ip_trace_id, encrypted, experimental.cel_expression)
//     or a field unknown to cilium v1.20 (a newer client) is refused with
//     codes.InvalidArgument naming it, found by protoreflect, never ignored.
//     Malformed values (bad IP, regexp, port, pattern) are InvalidArgument
//     too, where Hubble answers Unknown.
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
//     node; GetNodes returns this node; GetNamespaces scans the ring.
//     GetAgentEvents and GetDebugEvents answer Unimplemented: flowbus has no
//     Cilium agent or datapath debug events.
//   - TLS is optional (ServerTLS); with a client CA it requires client
//     certificates (mTLS).
package observer
