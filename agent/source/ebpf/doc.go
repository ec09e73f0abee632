// Package ebpf is the agent source that reads flows from the kernel: it runs
// a bpf.Collector on the configured interfaces and turns its events into
// schemas.Flow batches for the agent pipeline (agent.Source).
//
// Decisions:
//   - One record per flow: a flow is sent when it ends (FIN or RST), when the
//     sweep removes it (idle, recovered after a lost end event, flushed at
//     shutdown), or as an active-timeout record every ActiveTimeout for
//     long-lived flows (counts since the previous record). Start events, if
//     enabled in the kernel, are not exported. Records are oriented from the
//     initiator: IsReply is False, except for single-packet records (map
//     full, naive mode), which carry the packet's own reply flag.
//   - The programs sit on the host side of pod interfaces. A flow opened by
//     the pod behind the interface is Direction EGRESS, observation point
//     FROM_ENDPOINT; one opened toward it is INGRESS, TO_ENDPOINT. Verdict is
//     FORWARDED (this datapath does not enforce policy); the event is a
//     trace (hubble.MsgTypeTrace) whose sub-type is the observation point in
//     Cilium's numbering (hubble.TraceFromLxc, hubble.TraceToLxc), which is
//     what `hubble observe` prints as from-endpoint / to-endpoint.
//   - Pods come from the endpoints file (deploy/lab/endpoints: YAML, or JSON
//     which is YAML): source and destination IPs map to pods, the
//     destination ip:port to a service backend, and when an address is not
//     in the file the pod behind the interface fills its side of the flow.
//     The file is checked every ReloadEvery and re-read when its modification
//     time or size changes; a file that does not read keeps the previous
//     contents in use and is logged and counted
//     (flowbus_bpf_endpoints_reload_errors_total). New fails on a bad file.
//   - ICMP flows carry type and code; the echo identifier the kernel keys
//     them by is not exported as ports.
//   - Loss: once a second and at the end, the growth of the kernel's
//     unrecoverable ring buffer losses (bpf.Counters.Lost) is reported through
//     the LostFunc as PERF_EVENT_RING_BUFFER, which the agent counts as
//     hubble_lost_events_total{source="perf_event_ring_buffer"}. Refused end
//     events are not loss: the sweep reports those flows from the map.
//   - Back-pressure: sending a batch blocks the reader goroutine; the kernel
//     never waits, its ring buffer overflows into the counters instead.
//   - Metrics (when New gets a Registerer), read at scrape time:
//     flowbus_bpf_kernel_events_total{counter}, flowbus_bpf_flows_total,
//     flowbus_bpf_reader_cpu_seconds_total,
//     flowbus_bpf_endpoints_reload_errors_total, flowbus_bpf_attached_interfaces.
package ebpf
