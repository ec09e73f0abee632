// Package ocsf turns flow records into OCSF events for a SIEM, and writes
// them to JSON-lines files (FileSink), a Splunk HTTP Event Collector
// (HECSink), or a Kafka topic or NATS JetStream subjects (BusSink, with
// sinks/kafka's Producer or sinks/nats's Publisher: one JSON event per
// record, keyed by the destination workload as the flows are, headers
// content-type application/json, flowbus-schema ocsf/1.8.0 and
// ocsf-class-uid).
//
// Two commands run the sinks, with the same outputs and flags: 'flowbus
// ocsf' reads the flows topic and commits after its outputs hold a batch
// (at least once); 'flowbus agent --ocsf-*' encodes its source's records,
// before aggregation, from a bounded queue that drops and counts rather
// than slow the agent (best effort; cmd/flowbus/agentocsf.go).
//
// Schema: OCSF 1.8.0 (SchemaVersion), the release tagged 1.8.0 in the
// ocsf/ocsf-schema repository. internal/ocsftest/testdata/schema holds the
// subset of that release the tests (this package's and cmd/flowbus's, with
// the validator of internal/ocsftest) validate every emitted event against,
// copied unchanged
// with its Apache 2.0 LICENSE: dictionary.json, categories.json,
// version.json, events/base_event.json, the network category's
// events/network/network.json and the classes Network Activity (4001),
// HTTP Activity (4002) and DNS Activity (4003), the objects those events
// use (metadata, product, network_endpoint, endpoint, network_connection_info,
// network_traffic, http_request, http_response, url, dns_query, dns_answer,
// firewall_rule, rule, policy and their bases object, _entity, _dns) and
// every profile those files $include.
//
// # Mapping
//
// One event per record; time is the record's time in ms, start_time and
// end_time its first and last packet, count its Count.
//
//	record                                   class                 activity_id
//	L7 HTTP                                  HTTP Activity 4002    by method: 1 Connect … 9 Patch; another method 99 Other
//	L7 DNS REQUEST / RESPONSE / other        DNS Activity 4003     1 Query / 2 Response / 6 Traffic
//	L7 Kafka                                 Network Activity 4001 6 Traffic (OCSF has no Kafka class)
//	L3/L4, count_as traffic or none          Network Activity 4001 6 Traffic (another record counts the connection)
//	L3/L4, DROPPED                           Network Activity 4001 5 Refuse
//	L3/L4, ERROR                             Network Activity 4001 4 Fail
//	L3/L4 TCP with RST                       Network Activity 4001 3 Reset
//	L3/L4 TCP with FIN                       Network Activity 4001 2 Close
//	any other L3/L4 (a connection opened)    Network Activity 4001 1 Open
//
// The rows are tried in order. Verdicts (security_control profile):
//
//	verdict                                  action_id    disposition_id  severity_id       status_id
//	FORWARDED, REDIRECTED, TRANSLATED, TRACED 1 Allowed   1 Allowed       1 Informational   1 Success
//	DROPPED by policy (POLICY_DENIED,        2 Denied     2 Blocked       3 Medium          2 Failure
//	  POLICY_DENY, AUTH_REQUIRED)
//	DROPPED otherwise                        2 Denied     6 Dropped       2 Low             2 Failure
//	AUDIT                                    3 Observed   17 Logged       2 Low             1 Success
//	ERROR                                    0 Unknown    27 Error        2 Low             2 Failure
//	VERDICT_UNKNOWN or unknown number        0 Unknown    0 Unknown       0 Unknown         0 Unknown
//
// A forwarded HTTP record with status ≥ 400, or a DNS response with a
// non-zero rcode, has status_id 2 Failure. A drop carries its reason as
// status_code (the number) and status_detail (Hubble's name). The policy
// that decided the verdict ("Kind:namespace/name", the first that denied a
// drop, else the first that allowed it) is firewall_rule {uid, type, name};
// all of them are in unmapped.flowbus.{ingress,egress}_{allowed,denied}_by.
//
// Endpoints: src_endpoint and dst_endpoint have ip (IPv4 unmapped), port
// (TCP, UDP, SCTP), name (the pod), hostname (the first DNS name the
// address was resolved from) and svc_name (the Kubernetes service).
// connection_info: protocol_num and protocol_name (IANA keyword),
// protocol_ver_id, tcp_flags (TCP), direction_id 3 Lateral when both sides
// are pods, else 1 Inbound / 2 Outbound from Hubble's traffic direction.
// traffic: bytes_out/packets_out source→destination, bytes_in/packets_in
// back. observation_point_id 1 Source (FROM_ENDPOINT) or 2 Destination
// (TO_ENDPOINT).
//
// OCSF 1.8.0 has no attribute for a pod's namespace, workload, labels or
// security identity (its container object describes one container, which
// flow records do not know), so they go where OCSF puts source data it has
// no attribute for: unmapped.flowbus.src and .dst {cluster, namespace, pod,
// workload, workload_kind, identity, labels, service_namespace}, beside
// Hubble's verdict, drop reason, direction and observation point names,
// count_as, the latency in ns and the Kafka fields. message is not written.
package ocsf
