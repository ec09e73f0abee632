package schemas

// Rollup rows: what the aggregator writes to Parquet (one row per one-minute
// window and key). Parquet column names are the `parquet` tags; every string
// is dictionary-encoded, every timestamp is INT64 TIMESTAMP(isAdjustedToUTC =
// true, MICROS). Latencies are in nanoseconds.
//
// One (window, key) may appear in more than one row: a record that arrives
// after the window was written lands in a later file with Late = true, and a
// partition that moves to another aggregator (rebalance, restart) has its
// open windows written early. Readers therefore always aggregate:
// sum(flows) … GROUP BY the key, and merge latency_hist with
// `sum(count) GROUP BY bucket`.

// HistBucketRow is one element of the latency_hist column:
// list<struct<bucket int16, count int64>>. Bucket is the bucket number of
// histogram.go (HistBucket, HistBounds, HistValue).
type HistBucketRow struct {
	Bucket int16 `parquet:"bucket"`
	Count  int64 `parquet:"count"`
}

// PairRollup is one row of pair_rollup: the traffic of one
// (window, source workload, destination workload/service/port, protocol,
// verdict, drop reason) pair.
type PairRollup struct {
	WindowStartUs int64  `parquet:"window_start,timestamp(microsecond:utc)"`
	SrcNamespace  string `parquet:"src_namespace,dict"`
	SrcWorkload   string `parquet:"src_workload,dict"`
	DstNamespace  string `parquet:"dst_namespace,dict"`
	DstWorkload   string `parquet:"dst_workload,dict"`
	DstService    string `parquet:"dst_service,dict"` // "namespace/name", "" if none
	DstPort       int32  `parquet:"dst_port"`
	Protocol      string `parquet:"protocol,dict"`    // "TCP", "UDP", "ICMPv4", "ICMPv6", "SCTP", or the IANA number
	Verdict       string `parquet:"verdict,dict"`     // Hubble Verdict name: FORWARDED, DROPPED, ...
	DropReason    string `parquet:"drop_reason,dict"` // Hubble DropReason name; "" unless DROPPED

	Flows       int64 `parquet:"flows"`       // sum of Flow.Count
	Connections int64 `parquet:"connections"` // flows that opened a connection: non-reply, and SYN seen for TCP
	PacketsFwd  int64 `parquet:"packets_fwd"` // source → destination
	PacketsRev  int64 `parquet:"packets_rev"` // destination → source
	BytesFwd    int64 `parquet:"bytes_fwd"`
	BytesRev    int64 `parquet:"bytes_rev"`
	TCPSyn      int64 `parquet:"tcp_syn"` // flows with SYN seen
	TCPRst      int64 `parquet:"tcp_rst"` // flows with RST seen

	LatencyP50Ns  int64           `parquet:"latency_p50_ns"`
	LatencyP90Ns  int64           `parquet:"latency_p90_ns"`
	LatencyP99Ns  int64           `parquet:"latency_p99_ns"`
	LatencyP999Ns int64           `parquet:"latency_p999_ns"`
	LatencyMaxNs  int64           `parquet:"latency_max_ns"`
	LatencyHist   []HistBucketRow `parquet:"latency_hist,list"`

	Late bool `parquet:"late"` // written after its window had closed
}

// RouteRollup is one row of route_rollup: the L7 requests of one
// (window, destination workload, L7 protocol, method, route, status).
//
// For HTTP, Method is the request method, Route the URL path templated by
// the aggregator and Status the response status. For DNS, Method is the
// first query type, Route the query name and Status the rcode. For Kafka,
// Method is the API key, Route the topic and Status the error code.
type RouteRollup struct {
	WindowStartUs int64  `parquet:"window_start,timestamp(microsecond:utc)"`
	DstNamespace  string `parquet:"dst_namespace,dict"`
	DstWorkload   string `parquet:"dst_workload,dict"`
	L7Protocol    string `parquet:"l7_protocol,dict"` // "http", "dns", "kafka"
	Method        string `parquet:"method,dict"`
	Route         string `parquet:"route,dict"`
	Status        int32  `parquet:"status"`

	Requests int64 `parquet:"requests"` // sum of Flow.Count
	Errors   int64 `parquet:"errors"`   // HTTP 5xx, DNS rcode ≠ 0, Kafka error code ≠ 0

	LatencyP50Ns  int64           `parquet:"latency_p50_ns"`
	LatencyP90Ns  int64           `parquet:"latency_p90_ns"`
	LatencyP99Ns  int64           `parquet:"latency_p99_ns"`
	LatencyP999Ns int64           `parquet:"latency_p999_ns"`
	LatencyMaxNs  int64           `parquet:"latency_max_ns"`
	LatencyHist   []HistBucketRow `parquet:"latency_hist,list"`

	Late bool `parquet:"late"`
}

// HistRows converts h to the latency_hist column value (nil for an empty
// histogram), appending to dst.
func HistRows(dst []HistBucketRow, h Histogram) []HistBucketRow {
	for _, b := range h {
		dst = append(dst, HistBucketRow{Bucket: b.Index, Count: b.Count})
	}
	return dst
}
