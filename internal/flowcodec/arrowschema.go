package flowcodec

import (
	"github.com/apache/arrow-go/v18/arrow"

	"github.com/flowbus/flowbus/schemas"
)

// SchemaMetadataKey is the Arrow schema metadata key whose value names the
// schema version (SchemaVersion) of a flowbus Arrow stream.
const SchemaMetadataKey = "flowbus.schema"

// Column indices of the flow.v1 Arrow schema, in column order. The order is
// part of the wire format (pinned by testdata/flow.v1.arrows).
const (
	colTime = iota
	colUUID
	colNodeName
	colVerdict
	colDropReason
	colDirection
	colObsPoint
	colEventType
	colEventSubType
	colIsReply
	colIPVersion
	colSrcIP
	colDstIP
	colSrcPort
	colDstPort
	colL4Protocol
	colTCPFlags
	colICMPType
	colICMPCode
	colSrcID // first of the 8 source endpoint columns
	colSrcIdentity
	colSrcCluster
	colSrcNamespace
	colSrcPod
	colSrcWorkload
	colSrcWorkloadKind
	colSrcLabels
	colDstID // first of the 8 destination endpoint columns
	colDstIdentity
	colDstCluster
	colDstNamespace
	colDstPod
	colDstWorkload
	colDstWorkloadKind
	colDstLabels
	colSrcSvcNamespace
	colSrcSvcName
	colDstSvcNamespace
	colDstSvcName
	colSrcNames
	colDstNames
	colBytesFwd
	colBytesRev
	colPacketsFwd
	colPacketsRev
	colFirstSeen
	colLastSeen
	colCount
	colLatency
	colLatencyHist
	colIfIndex
	colIfName
	colL7Type
	colL7Protocol
	colHTTPMethod
	colHTTPURL
	colHTTPStatus
	colHTTPProtocol
	colHTTPHeaders
	colDNSQuery
	colDNSRCode
	colDNSQTypes
	colDNSRRTypes
	colDNSIPs
	colDNSTTL
	colDNSCNAMEs
	colDNSObsSource
	colKafkaAPIKey
	colKafkaAPIVersion
	colKafkaCorrelationID
	colKafkaTopic
	colKafkaErrorCode
	colKafkaClientID
	colCountAs
	numCols
)

var (
	tsType = &arrow.TimestampType{Unit: arrow.Nanosecond, TimeZone: "UTC"}
	// Dictionary index widths: int8 for enums with a handful of values,
	// int16 for drop reasons and for strings with few distinct values per
	// batch (namespaces, workloads, kinds, nodes, services, methods), int32
	// for strings that can be as many as the rows (pods, labels, URLs, DNS
	// names). Narrow indices are fewer bytes to compress and decompress.
	enumType   = &arrow.DictionaryType{IndexType: arrow.PrimitiveTypes.Int8, ValueType: arrow.BinaryTypes.String}
	enumType16 = &arrow.DictionaryType{IndexType: arrow.PrimitiveTypes.Int16, ValueType: arrow.BinaryTypes.String}
	dictStr    = &arrow.DictionaryType{IndexType: arrow.PrimitiveTypes.Int32, ValueType: arrow.BinaryTypes.String}
	dictStr16  = &arrow.DictionaryType{IndexType: arrow.PrimitiveTypes.Int16, ValueType: arrow.BinaryTypes.String}
	strList    = arrow.ListOf(dictStr)
	strList16  = arrow.ListOf(dictStr16)
	histEntry  = arrow.StructOf(
		arrow.Field{Name: "bucket", Type: arrow.PrimitiveTypes.Int16},
		arrow.Field{Name: "count", Type: arrow.PrimitiveTypes.Int64},
	)
	histType = arrow.ListOf(histEntry)
	// IP addresses are 16 bytes, IPv4 as IPv4-mapped IPv6 (::ffff:a.b.c.d):
	// fixed width needs no offsets (which zstd cannot compress) and an
	// address decodes without parsing.
	ipType = &arrow.FixedSizeBinaryType{ByteWidth: 16}
)

// NewArrowSchema returns the Arrow schema flow.v1: one column per Flow field,
// nested Endpoint, Service and L7 fields flattened into prefixed columns. The
// schema metadata carries SchemaMetadataKey = SchemaVersion. Every column is
// documented in schemas/README.md. Each call returns a new *arrow.Schema.
func NewArrowSchema() *arrow.Schema {
	f := func(name string, t arrow.DataType, nullable bool) arrow.Field {
		return arrow.Field{Name: name, Type: t, Nullable: nullable}
	}
	u8, u16, u32, u64 := arrow.PrimitiveTypes.Uint8, arrow.PrimitiveTypes.Uint16, arrow.PrimitiveTypes.Uint32, arrow.PrimitiveTypes.Uint64
	i32, str, few := arrow.PrimitiveTypes.Int32, dictStr, dictStr16
	endpoint := func(p string) []arrow.Field {
		return []arrow.Field{
			f(p+"_id", u32, false),
			f(p+"_identity", u32, false),
			f(p+"_cluster_name", few, false),
			f(p+"_namespace", few, false),
			f(p+"_pod_name", str, false),
			f(p+"_workload", few, false),
			f(p+"_workload_kind", few, false),
			f(p+"_labels", strList, true),
		}
	}
	fields := []arrow.Field{
		f("time", tsType, true),
		f("uuid", arrow.BinaryTypes.String, false),
		f("node_name", few, false),
		f("verdict", enumType, false),
		f("drop_reason", enumType16, false),
		f("traffic_direction", enumType, false),
		f("trace_observation_point", enumType, false),
		f("event_type", i32, false),
		f("event_sub_type", i32, false),
		f("is_reply", arrow.FixedWidthTypes.Boolean, true),
		f("ip_version", enumType, false),
		f("src_ip", ipType, true),
		f("dst_ip", ipType, true),
		f("src_port", u16, false),
		f("dst_port", u16, false),
		f("l4_protocol", u8, false),
		f("tcp_flags", u16, false),
		f("icmp_type", u8, false),
		f("icmp_code", u8, false),
	}
	fields = append(fields, endpoint("src")...)
	fields = append(fields, endpoint("dst")...)
	fields = append(fields,
		f("src_service_namespace", few, false),
		f("src_service_name", few, false),
		f("dst_service_namespace", few, false),
		f("dst_service_name", few, false),
		f("src_names", strList, true),
		f("dst_names", strList, true),
		f("bytes_fwd", u64, false),
		f("bytes_rev", u64, false),
		f("packets_fwd", u64, false),
		f("packets_rev", u64, false),
		f("first_seen", tsType, true),
		f("last_seen", tsType, true),
		f("count", u64, false),
		f("latency_ns", u64, false),
		f("latency_hist", histType, true),
		f("if_index", u32, false),
		f("if_name", few, false),
		f("l7_type", enumType, false),
		f("l7_protocol", enumType, false),
		f("l7_http_method", few, false),
		f("l7_http_url", str, false),
		f("l7_http_status", u32, false),
		f("l7_http_protocol", few, false),
		f("l7_http_headers", strList, true),
		f("l7_dns_query", str, false),
		f("l7_dns_rcode", u32, false),
		f("l7_dns_qtypes", strList16, true),
		f("l7_dns_rrtypes", strList16, true),
		f("l7_dns_ips", strList, true),
		f("l7_dns_ttl", u32, false),
		f("l7_dns_cnames", strList, true),
		f("l7_dns_observation_source", few, false),
		f("l7_kafka_api_key", few, false),
		f("l7_kafka_api_version", i32, false),
		f("l7_kafka_correlation_id", i32, false),
		f("l7_kafka_topic", str, false),
		f("l7_kafka_error_code", i32, false),
		f("l7_kafka_client_id", str, false),
		f("count_as", enumType, false),
	)
	if len(fields) != numCols {
		panic("schemas: flow.v1 column list out of sync with column indices")
	}
	md := arrow.NewMetadata([]string{SchemaMetadataKey}, []string{schemas.SchemaVersion})
	return arrow.NewSchema(fields, &md)
}
