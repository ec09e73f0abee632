package schemas

// FlowRow is one flow record as a Parquet row: the raw flows the aggregator
// writes under <out>/flows/ (aggregator.Config.RawFlows). Column names are
// flow.v1's (schemas/README.md); the types differ where Parquet readers
// have a better one:
//
//   - time, first_seen, last_seen: INT64 TIMESTAMP(isAdjustedToUTC = true,
//     MICROS), null when unknown (0), nanoseconds truncated to microseconds.
//   - Enumerations (verdict, drop_reason, traffic_direction,
//     trace_observation_point, ip_version, l7_type, count_as): their names
//     as dictionary strings, as flow.v1 writes them.
//   - src_ip, dst_ip: text ("10.0.1.11", "fd00::1"), null when none.
//   - is_reply: BOOLEAN, null when unknown.
//   - Lists are Parquet LISTs (a nil and an empty list both read as []);
//     latency_hist is list<struct<bucket int16, count int64>> as in the
//     rollups.
//
// Strings with few distinct values are dictionary-encoded; uuid, pods, URLs
// and client IDs are plain.
//
// Nullable columns are pointers, nil for null: parquet-go's zero-as-null for
// non-pointer optional fields writes some zero values as non-null (v0.32.x:
// an unknown first_seen read back as 1970-01-01 in DuckDB, about 1 row in
// 250), which TestFlowRowNullsSurviveBatchedWrites checks.
type FlowRow struct {
	TimeUs   *int64 `parquet:"time,optional,timestamp(microsecond:utc)"`
	UUID     string `parquet:"uuid"`
	NodeName string `parquet:"node_name,dict"`

	Verdict          string `parquet:"verdict,dict"`
	DropReason       string `parquet:"drop_reason,dict"`
	Direction        string `parquet:"traffic_direction,dict"`
	ObservationPoint string `parquet:"trace_observation_point,dict"`
	EventType        int32  `parquet:"event_type"`
	EventSubType     int32  `parquet:"event_sub_type"`
	IsReply          *bool  `parquet:"is_reply,optional"`

	IPVersion  string  `parquet:"ip_version,dict"`
	SrcIP      *string `parquet:"src_ip,optional"`
	DstIP      *string `parquet:"dst_ip,optional"`
	SrcPort    uint16  `parquet:"src_port"`
	DstPort    uint16  `parquet:"dst_port"`
	L4Protocol uint8   `parquet:"l4_protocol"`
	TCPFlags   uint16  `parquet:"tcp_flags"`
	ICMPType   uint8   `parquet:"icmp_type"`
	ICMPCode   uint8   `parquet:"icmp_code"`

	SrcID           uint32   `parquet:"src_id"`
	SrcIdentity     uint32   `parquet:"src_identity"`
	SrcClusterName  string   `parquet:"src_cluster_name,dict"`
	SrcNamespace    string   `parquet:"src_namespace,dict"`
	SrcPodName      string   `parquet:"src_pod_name"`
	SrcWorkload     string   `parquet:"src_workload,dict"`
	SrcWorkloadKind string   `parquet:"src_workload_kind,dict"`
	SrcLabels       []string `parquet:"src_labels,list"`

	DstID           uint32   `parquet:"dst_id"`
	DstIdentity     uint32   `parquet:"dst_identity"`
	DstClusterName  string   `parquet:"dst_cluster_name,dict"`
	DstNamespace    string   `parquet:"dst_namespace,dict"`
	DstPodName      string   `parquet:"dst_pod_name"`
	DstWorkload     string   `parquet:"dst_workload,dict"`
	DstWorkloadKind string   `parquet:"dst_workload_kind,dict"`
	DstLabels       []string `parquet:"dst_labels,list"`

	SrcServiceNamespace string   `parquet:"src_service_namespace,dict"`
	SrcServiceName      string   `parquet:"src_service_name,dict"`
	DstServiceNamespace string   `parquet:"dst_service_namespace,dict"`
	DstServiceName      string   `parquet:"dst_service_name,dict"`
	SrcNames            []string `parquet:"src_names,list"`
	DstNames            []string `parquet:"dst_names,list"`

	BytesFwd   uint64 `parquet:"bytes_fwd"`
	BytesRev   uint64 `parquet:"bytes_rev"`
	PacketsFwd uint64 `parquet:"packets_fwd"`
	PacketsRev uint64 `parquet:"packets_rev"`

	FirstSeenUs *int64          `parquet:"first_seen,optional,timestamp(microsecond:utc)"`
	LastSeenUs  *int64          `parquet:"last_seen,optional,timestamp(microsecond:utc)"`
	Count       uint64          `parquet:"count"` // as on the bus: 0 reads as 1 flow
	LatencyNs   uint64          `parquet:"latency_ns"`
	LatencyHist []HistBucketRow `parquet:"latency_hist,list"`

	IfIndex uint32 `parquet:"if_index"`
	IfName  string `parquet:"if_name,dict"`

	L7Type     string `parquet:"l7_type,dict"`
	L7Protocol string `parquet:"l7_protocol,dict"`

	HTTPMethod   string   `parquet:"l7_http_method,dict"`
	HTTPURL      string   `parquet:"l7_http_url"`
	HTTPStatus   uint32   `parquet:"l7_http_status"`
	HTTPProtocol string   `parquet:"l7_http_protocol,dict"`
	HTTPHeaders  []string `parquet:"l7_http_headers,list"`

	DNSQuery             string   `parquet:"l7_dns_query,dict"`
	DNSRCode             uint32   `parquet:"l7_dns_rcode"`
	DNSQTypes            []string `parquet:"l7_dns_qtypes,list"`
	DNSRRTypes           []string `parquet:"l7_dns_rrtypes,list"`
	DNSIPs               []string `parquet:"l7_dns_ips,list"`
	DNSTTL               uint32   `parquet:"l7_dns_ttl"`
	DNSCNAMEs            []string `parquet:"l7_dns_cnames,list"`
	DNSObservationSource string   `parquet:"l7_dns_observation_source,dict"`

	KafkaAPIKey        string `parquet:"l7_kafka_api_key,dict"`
	KafkaAPIVersion    int32  `parquet:"l7_kafka_api_version"`
	KafkaCorrelationID int32  `parquet:"l7_kafka_correlation_id"`
	KafkaTopic         string `parquet:"l7_kafka_topic,dict"`
	KafkaErrorCode     int32  `parquet:"l7_kafka_error_code"`
	KafkaClientID      string `parquet:"l7_kafka_client_id"`

	CountAs string `parquet:"count_as,dict"`
}

// FlowRowOf returns f as a Parquet row. The row shares f's strings and
// string slices (not its histogram): if f's memory is reused (a Decoder's
// DecodeEach row), write the row before that.
func FlowRowOf(f *Flow) FlowRow {
	var r FlowRow
	r.set(f)
	return r
}

// AppendFlowRow appends f as a Parquet row to dst, reusing the histogram
// memory of a row left in dst's spare capacity. Sharing as FlowRowOf.
func AppendFlowRow(dst []FlowRow, f *Flow) []FlowRow {
	if len(dst) < cap(dst) {
		dst = dst[:len(dst)+1]
	} else {
		dst = append(dst, FlowRow{})
	}
	dst[len(dst)-1].set(f)
	return dst
}

// set fills r from f, reusing r's histogram and the memory of its nullable
// columns.
func (r *FlowRow) set(f *Flow) {
	hist, reply := r.LatencyHist[:0], r.IsReply
	t, first, last, src, dst := r.TimeUs, r.FirstSeenUs, r.LastSeenUs, r.SrcIP, r.DstIP
	*r = FlowRow{
		UUID: f.UUID, NodeName: f.NodeName,
		Verdict: f.Verdict.String(), DropReason: f.DropReason.String(),
		Direction: f.Direction.String(), ObservationPoint: f.ObservationPoint.String(),
		EventType: f.EventType, EventSubType: f.EventSubType, CountAs: f.CountAs.String(),
		IPVersion: f.IPVersion.String(),
		SrcPort:   f.SrcPort, DstPort: f.DstPort, L4Protocol: f.L4Protocol, TCPFlags: uint16(f.TCPFlags),
		ICMPType: f.ICMPType, ICMPCode: f.ICMPCode,

		SrcID: f.Src.ID, SrcIdentity: f.Src.Identity, SrcClusterName: f.Src.ClusterName,
		SrcNamespace: f.Src.Namespace, SrcPodName: f.Src.PodName, SrcWorkload: f.Src.Workload,
		SrcWorkloadKind: f.Src.WorkloadKind, SrcLabels: f.Src.Labels,
		DstID: f.Dst.ID, DstIdentity: f.Dst.Identity, DstClusterName: f.Dst.ClusterName,
		DstNamespace: f.Dst.Namespace, DstPodName: f.Dst.PodName, DstWorkload: f.Dst.Workload,
		DstWorkloadKind: f.Dst.WorkloadKind, DstLabels: f.Dst.Labels,

		SrcServiceNamespace: f.SrcService.Namespace, SrcServiceName: f.SrcService.Name,
		DstServiceNamespace: f.DstService.Namespace, DstServiceName: f.DstService.Name,
		SrcNames: f.SrcNames, DstNames: f.DstNames,

		BytesFwd: f.BytesFwd, BytesRev: f.BytesRev, PacketsFwd: f.PacketsFwd, PacketsRev: f.PacketsRev,
		Count: f.Count, LatencyNs: f.LatencyNs,
		IfIndex: f.IfIndex, IfName: f.IfName,

		L7Type: f.L7.Type.String(), L7Protocol: f.L7.Protocol.String(),
		HTTPMethod: f.L7.HTTPMethod, HTTPURL: f.L7.HTTPURL, HTTPStatus: f.L7.HTTPStatus,
		HTTPProtocol: f.L7.HTTPProtocol, HTTPHeaders: f.L7.HTTPHeaders,
		DNSQuery: f.L7.DNSQuery, DNSRCode: f.L7.DNSRCode, DNSQTypes: f.L7.DNSQTypes,
		DNSRRTypes: f.L7.DNSRRTypes, DNSIPs: f.L7.DNSIPs, DNSTTL: f.L7.DNSTTL,
		DNSCNAMEs: f.L7.DNSCNAMEs, DNSObservationSource: f.L7.DNSObservationSource,
		KafkaAPIKey: f.L7.KafkaAPIKey, KafkaAPIVersion: f.L7.KafkaAPIVersion,
		KafkaCorrelationID: f.L7.KafkaCorrelationID, KafkaTopic: f.L7.KafkaTopic,
		KafkaErrorCode: f.L7.KafkaErrorCode, KafkaClientID: f.L7.KafkaClientID,
	}
	r.TimeUs, r.FirstSeenUs, r.LastSeenUs = micros(t, f.TimeNs), micros(first, f.FirstSeenNs), micros(last, f.LastSeenNs)
	if f.SrcIP.IsValid() {
		r.SrcIP = reuse(src, f.SrcIP.String())
	}
	if f.DstIP.IsValid() {
		r.DstIP = reuse(dst, f.DstIP.String())
	}
	if f.IsReply != Unknown {
		r.IsReply = reuse(reply, f.IsReply == True)
	}
	r.LatencyHist = HistRows(hist, f.LatencyHist)
}

// micros returns ns in microseconds in *p (allocated if nil), or nil for 0
// (unknown).
func micros(p *int64, ns int64) *int64 {
	if ns == 0 {
		return nil
	}
	return reuse(p, ns/1000)
}

// reuse stores v in *p, allocating p if nil, and returns p.
func reuse[T any](p *T, v T) *T {
	if p == nil {
		p = new(T)
	}
	*p = v
	return p
}
