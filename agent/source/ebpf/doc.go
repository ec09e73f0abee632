// Package ebpf is the agent source that reads flows from the kernel: it runs
// a bpf.Collector on the configured interfaces and turns its events into
// schemas.Flow batches for the agent pipeline (agent.Source).
//
// Decisions:
//   - One record per flow and interface: a flow is sent when it ends (FIN or
//     RST), when the sweep removes it (idle, recovered after a lost end
//     event, flushed at shutdown), as an active-timeout record every
//     ActiveTimeout for long-lived flows (counts since the previous record),
//     and as a tail for packets after its end (bpf/doc.go, "Ends and
//     tails"). Start events, if enabled in the kernel, are not exported.
//   - Records are oriented from the side that opened the connection, and a
//     connection record is never a reply: IsReply is False whatever packet
//     ended the flow. A TCP flow the interface saw only mid-stream is turned
//     around when its first packet came from the server, as the endpoints
//     file tells (the (address, port) of a service backend); failing that, a
//     port below 32768 facing one at or above it is taken for the server's,
//     and IsReply is Unknown because the opener is a guess. Single-packet
//     records (map full, naive mode) carry the packet's own reply flag.
//   - The programs sit on the host side of pod interfaces, so every record is
//     one endpoint's: the sender's when the pod behind the interface opened
//     the flow (Direction EGRESS, observation point FROM_ENDPOINT, Cilium
//     "from-endpoint" in the hubble CLI), the receiver's otherwise (INGRESS,
//     TO_ENDPOINT, "to-endpoint"), as Hubble marks its events at
//     those points; a same-node connection is thus reported at both pods'
//     interfaces. A forwarded flow is a trace event (hubble.MsgTypeTrace)
//     whose sub-type is the observation point in Cilium's numbering
//     (hubble.TraceFromLxc, hubble.TraceToLxc); a flow the policy dropped is
//     a drop event (hubble.MsgTypeDrop, sub-type its drop reason), Verdict
//     DROPPED, DropReasonDesc POLICY_DENIED, and names the policy that denied
//     it in EgressDeniedBy or IngressDeniedBy; a forwarded flow a policy
//     allowed names it in EgressAllowedBy or IngressAllowedBy.
//   - Policy verdict events (verdict.go): beside the first record of a
//     connection that a policy decided at this interface (a rule allowed
//     or denied it, or the endpoint's default deny dropped it), a copy as
//     Hubble's policy verdict event (type 5): the verdict, the direction,
//     the policies, the kind of rule (PolicyMatchType), the opening
//     packet's time and flags, no counts, CountNone. Cilium sends one when
//     the connection's first packet is decided; here it comes with that
//     record: at once for a drop, at the end or first active timeout for a
//     forwarded connection. The kind of rule rides in the top 4 bits of the
//     policy id that the kernel's policy maps hold and copy into the flow
//     (datapath.go); the 28 others name the set of policies.
//   - Count once (Flow.CountAs): the receiver's record carries a connection
//     between two endpoints, on one node or across nodes, without any
//     coordination between agents, because every agent reads the same
//     endpoints: the sender's record is CountNone when the destination is a
//     pod of the endpoints file (on any node), and counts when it is not
//     (the world, the host), where no receiver's record exists. A dropped
//     record always counts where the drop happened. A counting record is
//     CountFlow for a connection's first record, CountTraffic for its later
//     ones (active-timeout updates, tails), for a mid-stream flow (counted
//     when it opened, or opened before the agent ran) and for single
//     packets. The receiver's record is the right one to carry it: it holds
//     what actually arrived, and a drop by the receiver's ingress policy is
//     decided there. The rule needs every node with pods in the file to run
//     an agent attached to them, and the same file on all agents; without an
//     endpoints file the agent cannot tell a pod from the world and counts a
//     connection between two attached pods at both (it warns at start).
//   - Identity and policy: the agent's view of the cluster (agent/cluster:
//     the endpoints and policies files, or the Kubernetes API's informers)
//     is a series of snapshots. Each is compiled (agent/identity,
//     agent/policy) into the kernel's ipcache, endpoints and policy maps
//     (bpf/doc.go, "Policy"), and the maps are diffed, never reloaded. The
//     endpoints are the snapshot's pods whose host interface is attached:
//     the interface the file names, or for a pod of this node (--node) that
//     the Kubernetes API places without one, the attached interface the host
//     routes its address to. A new snapshot and a new set of interfaces are
//     applied under one lock, and an interface's endpoint before its
//     programs attach. With EnforcePolicy false (--policy-enforcement never)
//     the maps hold identities only and every verdict is FORWARDED. A policy
//     that does not compile is logged with its name and counted, and the
//     endpoints it selects fail closed in its direction
//     (flowbus_policy_rejected_policies, flowbus_policy_fail_closed_endpoints).
//   - Enrichment: source and destination IPs map to pods, the destination
//     ip:port to a service backend, and when an address is not a pod's the
//     pod behind the interface fills its side of the flow; identities and
//     their labels come from the same compile as the kernel's, so a record
//     and the verdict it carries agree. Until the first snapshot comes (the
//     source waits FirstSnapshotWait for it) flows carry addresses only and
//     no policy is enforced.
//   - ICMP flows carry type and code; the echo identifier the kernel keys
//     them by is not exported as ports.
//   - Loss: once a second and at the end, the growth of the kernel's
//     unrecoverable ring buffer losses (bpf.Counters.Lost) is reported through
//     the LostFunc as PERF_EVENT_RING_BUFFER, which the agent counts as
//     hubble_lost_events_total{source="perf_event_ring_buffer"}. Refused end
//     events are not loss: the sweep reports those flows from the map.
//   - Back-pressure: sending a batch blocks the reader goroutine; the kernel
//     never waits, its ring buffer overflows into the counters instead.
//   - Cheap at ordinary rates: the collector wakes once per batch of kernel
//     events and not at all when idle (bpf/doc.go, "Wakeups"), and each
//     drained batch of records goes downstream as one batch: one channel
//     hand-off per PollInterval (100 ms) at lab rates. Batches are recycled
//     (agent.Recycler): the agent hands each back once its taps and the
//     aggregator are done with it, and the source fills it again instead of
//     allocating and zeroing BatchSize records per send.
//   - Delay: a flow's record leaves the kernel when the flow ends (or at its
//     timeout); it then waits in the ring at most PollInterval (100 ms), is
//     converted and sent downstream at once, and waits for the agent's
//     aggregation window (1 s) and export linger (at most 1 s) before it is
//     on the bus: ~2.1 s at most from the kernel's event to the bus at
//     defaults, with a bus that keeps up. Records the sweep makes (tails,
//     idle and active timeouts, recovered ends) come up to SweepInterval (1 s)
//     after they are due, or MaxSweepInterval (4 s) while the kernel maps
//     are not busy (bpf/doc.go, "Map type and eviction").
//   - Metrics (when New gets a Registerer), read at scrape time:
//     flowbus_bpf_kernel_events_total{counter}, flowbus_bpf_flows_total,
//     flowbus_bpf_reader_cpu_seconds_total, flowbus_bpf_attached_interfaces,
//     flowbus_policy_syncs_total, flowbus_policy_revision,
//     flowbus_policy_endpoints, flowbus_policy_rejected_policies,
//     flowbus_policy_fail_closed_endpoints, flowbus_identity_collisions;
//     with L7, flowbus_l7_captures_total{protocol,result} (the kernel's
//     captures) and the tracker's flowbus_l7_* (agent/l7/stream).
//   - L7 (Config.L7, `flowbus agent --l7`): without a policy or a proxy,
//     the kernel captures the heads of the segments of connections to the
//     followed ports at the one interface that counts them (bpf/doc.go, "L7
//     capture"), and a tracker (agent/l7/stream) on the collector's L7
//     goroutine turns them into exchanges of the port's protocol. An
//     exchange is two Hubble L7 records (event type 129), as Hubble's proxy
//     gives them: the request, client → server, REQUEST, with the request's
//     fields only, at its first byte's time; and, when it was answered, the
//     response, server → client, a reply, RESPONSE, with status, answers or
//     error code and the latency from the request's first byte to the
//     response's (kernel times at the server's interface). Their direction
//     is INGRESS when the server's interface saw them, EGRESS when the
//     client's did; enrichment is the flow records'. The response counts as
//     traffic with no bytes (the connection's L3/L4 records carry the flow
//     and its bytes), so route_rollup counts it and pair_rollup's flows do
//     not; the request counts nothing. gRPC is HTTP/2 in Hubble's form. DNS
//     answers fill a cache per client pod (agent/l7/fqdn) until their TTL
//     plus Config.Names.Grace; a flow record from a pod to an address the
//     pod resolved carries the names in DestinationNames (a reply's in
//     SourceNames) while they are alive at the record's time, and so do the
//     L7 records. A connection
//     seen mid-stream is turned round when its client port is the one
//     followed.
//   - Pinned maps (Config.PinDir, `flowbus agent --bpf-pin-dir`, by default
//     /sys/fs/bpf/flowbus/<node>): the flow, ipcache, endpoints and policy
//     maps, and the socket LB's services and backends, are pinned there
//     once loaded, for `flowbus bpf` and `flowbus audit` (bpf/inspect), and
//     unpinned before they are closed at a clean stop; a killed agent's
//     pins are replaced at the next start (internal/bpfpin). A pin that
//     fails (no BPF filesystem mounted there) is a warning: the agent runs
//     without.
//
// # Socket load balancing
//
// With Config.SockLB (flowbus agent --socket-lb, socklb.go) the source
// loads bpf/socklb, attaches it to a cgroup v2 directory
// (--socket-lb-cgroup; by default the cgroup v2 root from the mount
// table, /sys/fs/cgroup/unified on a hybrid host), and keeps its services
// in step with the cluster's snapshots (the endpoints file's services or
// Kubernetes Services and EndpointSlices): a goroutine of its own waits
// for each snapshot, as the policy sync does, and writes only what
// changed (socklb.LB.SetService), so a removed backend is out of new
// connections about a millisecond after the snapshot that lost it.
//
//   - Frontends: every ClusterIP of a service with each of its TCP and UDP
//     ports; headless services have none, SCTP is not translated. The
//     backends of a frontend are the snapshot's (ready, or serving and
//     terminating when none is ready: agent/cluster/k8s) of the
//     ClusterIP's family on the port's target port and protocol; a named
//     target port (0 in the snapshot) takes every backend of its protocol
//     when the service has one port of that protocol, else none.
//   - Decision: one service id per frontend, not per service. The kernel
//     keys services by (ClusterIP, port, protocol) and gives each its own
//     id, as Cilium's service ids are per frontend. An id stays with its
//     (namespace, name, frontend) while it exists; a new frontend takes the
//     next id after the last one given, so an id freed is not reused until
//     the ids wrap (1023), and a late decision of a removed frontend still
//     names its service (names of ids are kept).
//   - Records (Cilium's socket trace, as Hubble shows a socket LB
//     decision): a translation is event type trace-sock
//     (hubble.MsgTypeTraceSock) with sub-type the translation point
//     SOCK_XLATE_POINT_POST_DIRECTION_FWD (2: after translation, so the
//     destination is the backend), Verdict TRANSLATED, the destination
//     the backend's address, port and pod, DstService the service,
//     IsReply false, Direction EGRESS, the time the kernel decided. A
//     refusal (no backend: connect() or sendmsg() failed with
//     ECONNREFUSED) is Verdict DROPPED with drop reason
//     SERVICE_BACKEND_NOT_FOUND (158), as a drop event (hubble.MsgTypeDrop,
//     sub-type the reason, which `hubble observe --type drop` shows with
//     the datapath's other drops), the destination the ClusterIP and port.
//     The source port is 0: at connect() the kernel has usually not
//     chosen it.
//   - Decision: the source pod is found by the caller's cgroup, not its
//     network namespace. Cilium does the same (the cgroup id's pod through
//     its cgroup manager); a pid may be gone when the event is read, and a
//     namespace cookie can only be learnt from inside the namespace. The
//     nearest directory at or above the decision's cgroup, below the
//     attach point, that names a pod is that pod's: on a Kubernetes node
//     "kubepods-<qos>-pod<UID>.slice" (systemd driver, the UID's dashes as
//     underscores) or "pod<UID>" (cgroupfs driver), the pod of that UID in
//     the cluster view (the Kubernetes source carries pods' UIDs); in the
//     lab "<namespace>_<name>" (a Kubernetes name holds no "_"). The
//     cgroup ids (directory inodes) are learnt by walking the attach point
//     when an unknown id comes, at most every 200 ms. The record's source
//     address is the pod's of the destination's family. A cgroup of no
//     known pod leaves the source empty.
//   - Decision: the records count nothing (CountNone). The connection's
//     L3/L4 records, which the tcx programs make from its packets to the
//     backend, carry its flow and bytes and already name the service
//     (enrichment by backend); a translation is a decision, not traffic,
//     and counting it would count every connection twice. A refusal has
//     no packet and no other record, so it is visible only as this record;
//     it still counts nothing, as no connection existed (the rollups'
//     flows are connections).
//   - They go downstream through a batcher of their own, at the latest
//     every 100 ms, like the L7 records. A decision the kernel's ring
//     buffer refused has no record; it is counted. SockLBMetrics
//     (registered by the agent with --socket-lb) exports the kernel's
//     counters, flowbus_socklb_kernel_events_total{counter} (translated,
//     no_backend, ringbuf: decisions lost, revnat_update, revnat_rewrite,
//     peer_storage, and three a consistent sync never causes), and
//     flowbus_socklb_frontends.
package ebpf
