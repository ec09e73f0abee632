// Package metrics computes Hubble's flow metrics from the agent's raw flows
// and serves them, with every flowbus_* counter registered on the same
// registry, in the Prometheus format on :9965 (/metrics).
//
// Names, help texts, label names and label order are cilium v1.20's
// (pkg/hubble/metrics), kafka's those of cilium v1.19 (v1.20 has no kafka
// metric), so dashboards and alerts written for Hubble work:
//
//	hubble_flows_processed_total{protocol,type,subtype,verdict,<context>}     "flow"
//	hubble_drop_total{<context>,reason,protocol}                              "drop"
//	hubble_policy_verdicts_total{direction,match,action,<context>}            "policy"
//	hubble_tcp_flags_total{flag,family,<context>}                             "tcp"
//	hubble_http_requests_total{<context>,method,protocol,reporter}            "http"
//	hubble_http_responses_total{<context>,method,protocol,status,reporter}    "http"
//	hubble_http_request_duration_seconds{<context>,method,reporter}           "http" / "httpV2"
//	hubble_http_requests_total{<context>,method,protocol,status,reporter}     "httpV2"
//	hubble_dns_queries_total{<context>,rcode,qtypes,ips_returned[,query]}     "dns"
//	hubble_dns_responses_total{<context>,rcode,qtypes,ips_returned[,query]}   "dns"
//	hubble_dns_response_types_total{<context>,type,qtypes[,query]}            "dns"
//	hubble_kafka_requests_total{<context>,topic,api_key,error_code,reporter}  "kafka" (cilium v1.19)
//	hubble_kafka_request_duration_seconds{<context>,topic,api_key,reporter}   "kafka" (cilium v1.19)
//	hubble_icmp_total{family,type,<context>}                                  "icmp"
//	hubble_port_distribution_total{protocol,port,<context>}                   "port-distribution"
//	hubble_lost_events_total{source}                                          always
//
// hubble_flows_processed_total has Hubble's protocol label first, before
// type, subtype and verdict.
//
// hubble_lost_events_total{source} has Hubble's source values, each series
// there from the start at 0: perf_event_ring_buffer (the kernel ring buffer;
// the eBPF source reports it), observer_events_queue (Hubble's queue between
// its monitor and its observer; flowbus's pipeline applies back-pressure
// there instead of dropping, so it stays 0 unless a Hubble source passes on
// such a loss) and hubble_ring_buffer (GetFlows readers that fell behind the
// Observer ring and lost events to overwrites, as
// flowbus_observer_reader_lost_total; the agent wires Metrics.Lost into the
// Observer server). Losses a Hubble or hubble-json source reports keep the
// source Hubble gave them.
//
// Decisions:
//
//   - Metrics are selected with Hubble's --metrics syntax (ParseSpecs):
//     whitespace-separated "name:option=value;option=value", context values
//     separated by '|', labelsContext labels by ','. Context options:
//     sourceContext, destinationContext, their Egress/Ingress variants
//     (identity, namespace, pod, pod-name, dns, ip, reserved-identity,
//     workload, workload-name, app) and labelsContext (source_ip, …,
//     traffic_direction). dns takes query and ignoreAAAA; http/httpV2 accept
//     exemplars, which has no effect (flows carry no trace IDs). Unlike
//     Hubble, an unknown metric or option is an error, not ignored.
//   - Metrics are computed on schemas.Flow directly (no protobuf conversion in
//     the pipeline), mirroring Hubble's handlers: flow type and sub-type from
//     the Cilium event type, protocol as Hubble's FlowProtocol (Kafka is
//     "Unknown L7", as in Hubble), DNS requests are flows that are not
//     replies, HTTP latency is the record's L7 latency. A folded record
//     (Count > 1) counts Count times.
//   - Per-event, as Hubble counts: every record is an event at its
//     observation point, whatever its count_as, so a same-node connection
//     counts in hubble_flows_processed_total, hubble_tcp_flags_total and
//     hubble_port_distribution_total at the sender's and at the receiver's
//     interface, as Hubble's own counters do; a long-lived connection's
//     periodic records and its tail are events too. Numbers that must count
//     each connection once (bytes and flows per pair or route) are the
//     aggregator's rollups, which honour count_as.
//   - hubble_drop_total counts dropped packets, as Hubble does (one drop
//     event per dropped packet, each counted once): every record whose
//     verdict is DROPPED, whatever its event type, by reason (the
//     drop_reason_desc enum name: POLICY_DENIED, DROP_REASON_UNKNOWN when
//     the record has none, the number for a code the enum does not name) and
//     protocol (FlowProtocol: "Unknown L4" without L4, "Unknown flow" for an
//     event type that is neither drop, trace, policy verdict, capture nor
//     L7). A record adds its packets (PacketsFwd+PacketsRev): the eBPF source
//     reports a denied flow's first packet at once and the packets it drops
//     later in its next records, so counting records would count timeouts.
//     A record without packet counts (from a Hubble source, one event each)
//     adds its Count, as in the other metrics.
//   - hubble_policy_verdicts_total counts what Hubble's policy handler
//     counts: policy verdict events (event type 5), except those whose
//     source is the host (identity 1), and L7 records (event type 129, a
//     proxy's verdict); each adds its Count. direction is the traffic
//     direction in lower case (ingress, egress, traffic_direction_unknown),
//     action the verdict in lower case (forwarded, dropped, redirected,
//     audit, …), match the policy match type in lower case as Hubble names
//     it (none for a default deny, l3-only, l3-l4, l4-only, all, l3-proto,
//     proto-only) for a policy verdict event and l7/dns, l7/http or l7/
//     (Kafka, no L7 record) for an L7 record. The eBPF source emits a
//     policy verdict event beside the first record of each connection a
//     policy decided, at each end whose policy applies (agent/source/ebpf).
//   - hubble_drop_total counts dropped records of every event type, as
//     Hubble does, but the eBPF source's policy verdict events (type 5 that
//     count nothing, CountNone), which repeat a drop record's decision:
//     with them it would count a denied connection's first packet twice.
//     A policy verdict event from a Hubble source counts, as in Hubble.
//   - Label cardinality is capped per metric (Config.MaxLabelSets, default
//     2000 combinations): a flow that would create one more combination is
//     not counted in that metric but in
//     flowbus_metrics_label_overflow_total{metric} (by what it would have
//     added: its packets for hubble_drop_total), so memory stays bounded
//     and the loss is visible. Combinations are never evicted (as in Hubble,
//     series live until restart).
//   - kafka is Hubble's kafka handler as cilium had it up to v1.19 (cilium
//     v1.20 dropped its Kafka support, this metric with it). It counts
//     Kafka REQUEST records only (responses and samples do not count):
//     each adds to hubble_kafka_requests_total by topic, api_key (the name,
//     "produce"), error_code (the record's, in decimal) and reporter (server
//     for ingress, client for egress, else unknown, as for http), and its L7
//     latency is observed in hubble_kafka_request_duration_seconds
//     (client_golang's default buckets, and cilium's help text, "Quantiles of
//     HTTP request duration in seconds"). The eBPF source puts the error code
//     and the latency on the response record, as for HTTP, so its requests
//     count with error_code "0" and a latency of 0 (the 0.005 bucket);
//     records from a Hubble source carry what its proxy wrote. It takes the
//     context options only and is not enabled by default. The other metrics
//     see a Kafka record as cilium v1.20 does (protocol "Unknown L7",
//     subtype "", policy match "l7/"), where v1.19 said "Kafka", "Kafka" and
//     "l7/kafka".
//   - Not provided: Hubble's flows-to-world and sctp metrics (naming one is
//     an error). Per-metric include/exclude flow filters of Hubble's config
//     file are not supported.
package metrics
