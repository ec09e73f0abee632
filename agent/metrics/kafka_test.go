package metrics

import (
	"bytes"
	"context"
	"io"
	"maps"
	"math"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"

	flowpb "github.com/cilium/cilium/api/v1/flow"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/flowbus/flowbus/internal/servetest"
	"github.com/flowbus/flowbus/schemas"
	"github.com/flowbus/flowbus/schemas/hubble"
)

// kafkaFlow is a Kafka L7 record of type typ from frontend to redis.
func kafkaFlow(typ flowpb.L7FlowType, dir flowpb.TrafficDirection, apiKey, topic string, errCode int32, latencyNs uint64) schemas.Flow {
	return schemas.Flow{EventType: hubble.MsgTypeAccessLog, Verdict: flowpb.Verdict_FORWARDED, L4Protocol: 6, IPVersion: flowpb.IPVersion_IPv4,
		Direction: dir, Src: frontend, Dst: redis, LatencyNs: latencyNs,
		L7: schemas.L7{Type: typ, Protocol: schemas.L7Kafka, KafkaAPIKey: apiKey, KafkaTopic: topic, KafkaErrorCode: errCode, KafkaAPIVersion: 9}}
}

// TestKafkaCountsRequestRecordsOnly: the kafka metric counts Kafka REQUEST
// records, and only those, as Hubble's kafka handler does: by context,
// topic, api key, error code and reporter (server for ingress, client for
// egress, unknown otherwise), the duration from the record's latency;
// Kafka responses and samples, HTTP, DNS and L3/L4 records add nothing.
func TestKafkaCountsRequestRecordsOnly(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := New(Config{Metrics: []string{"kafka:sourceContext=namespace;destinationContext=workload-name"}}, reg)
	if err != nil {
		t.Fatal(err)
	}
	ingress, egress, unknown := flowpb.TrafficDirection_INGRESS, flowpb.TrafficDirection_EGRESS, flowpb.TrafficDirection_TRAFFIC_DIRECTION_UNKNOWN
	req, resp := flowpb.L7FlowType_REQUEST, flowpb.L7FlowType_RESPONSE
	// What the eBPF source writes for an answered Produce: the request
	// (no error code, no latency) and its response (both).
	produce := kafkaFlow(req, ingress, "produce", "orders", 0, 0)
	produceResp := kafkaFlow(resp, ingress, "produce", "orders", 0, 2_000_000)
	produceResp.Src, produceResp.Dst, produceResp.IsReply = redis, frontend, schemas.True
	// Requests as a Hubble source may carry them: a denied Fetch with
	// Kafka's TOPIC_AUTHORIZATION_FAILED (29), folded three times.
	fetch := kafkaFlow(req, egress, "fetch", "payments", 29, 12_345_678)
	fetch.Count = 3
	metadata := kafkaFlow(req, unknown, "metadata", "", 0, 0) // no topic, no direction
	failedResp := kafkaFlow(resp, egress, "fetch", "payments", 3, 40_000_000)
	sample := kafkaFlow(flowpb.L7FlowType_SAMPLE, ingress, "produce", "orders", 0, 1_000_000)
	m.Observe(append(testFlows(), produce, produceResp, fetch, metadata, failedResp, sample, produce, schemas.Flow{}))

	got := hubbleOnly(scrape(t, reg))
	want := map[string]float64{
		`hubble_kafka_requests_total{api_key="produce",destination="redis",error_code="0",reporter="server",source="shop",topic="orders"}`:  2,
		`hubble_kafka_requests_total{api_key="fetch",destination="redis",error_code="29",reporter="client",source="shop",topic="payments"}`: 3,
		`hubble_kafka_requests_total{api_key="metadata",destination="redis",error_code="0",reporter="unknown",source="shop",topic=""}`:      1,
		`hubble_kafka_request_duration_seconds_count{api_key="produce",destination="redis",reporter="server",source="shop",topic="orders"}`: 2,
		`hubble_kafka_request_duration_seconds_sum{api_key="produce",destination="redis",reporter="server",source="shop",topic="orders"}`:   0,
		`hubble_kafka_request_duration_seconds_count{api_key="fetch",destination="redis",reporter="client",source="shop",topic="payments"}`: 3,
		`hubble_kafka_request_duration_seconds_sum{api_key="fetch",destination="redis",reporter="client",source="shop",topic="payments"}`:   3 * 0.012345678,
		`hubble_kafka_request_duration_seconds_count{api_key="metadata",destination="redis",reporter="unknown",source="shop",topic=""}`:     1,
		`hubble_kafka_request_duration_seconds_sum{api_key="metadata",destination="redis",reporter="unknown",source="shop",topic=""}`:       0,
	}
	zeroOverflow(want, "hubble_kafka_requests_total", "hubble_kafka_request_duration_seconds")
	if !maps.Equal(got, want) {
		for _, k := range slices.Sorted(maps.Keys(got)) {
			if w, ok := want[k]; !ok || w != got[k] {
				t.Errorf("got %s = %v (want %v, %v)", k, got[k], w, ok)
			}
		}
		for _, k := range slices.Sorted(maps.Keys(want)) {
			if _, ok := got[k]; !ok {
				t.Errorf("missing %s = %v", k, want[k])
			}
		}
	}
}

// TestKafkaAsInHubblesOwnTest replays cilium's Test_kafkaHandler_ProcessFlow
// (pkg/hubble/metrics/kafka/handler_test.go, in cilium up to v1.19; v1.20
// removed the kafka metric): the same options, flows and expected
// exposition, copied from it (help texts, the default buckets, every
// series), compared with what flowbus serves on /metrics, both read with
// Prometheus' text parser.
func TestKafkaAsInHubblesOwnTest(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := New(Config{Metrics: []string{"kafka:sourceContext=pod;destinationContext=pod;labelsContext=source_pod,destination_pod"}}, reg)
	if err != nil {
		t.Fatal(err)
	}
	source := schemas.Endpoint{Namespace: "source-ns", PodName: "source-deploy-pod", Workload: "source-deploy", WorkloadKind: "Deployment",
		Labels: []string{"k8s:app=sourceapp"}}
	destination := schemas.Endpoint{Namespace: "destination-ns", PodName: "destination-deploy-pod", Workload: "destination-deploy", WorkloadKind: "Deployment",
		Labels: []string{"k8s:app=destinationapp"}}
	m.Observe([]schemas.Flow{
		{}, // shouldn't count
		{EventType: hubble.MsgTypeAccessLog, L7: schemas.L7{Type: flowpb.L7FlowType_RESPONSE, Protocol: schemas.L7DNS}}, // shouldn't count
		{EventType: hubble.MsgTypeAccessLog, Direction: flowpb.TrafficDirection_INGRESS, Src: source, Dst: destination, LatencyNs: 12345678, // should count
			L7: schemas.L7{Type: flowpb.L7FlowType_REQUEST, Protocol: schemas.L7Kafka, KafkaTopic: "test-topic", KafkaAPIKey: "test-api-key", KafkaErrorCode: 0}},
	})

	// Cilium's requestsExpected and durationExpected, verbatim.
	const requestsExpected = `
        # HELP hubble_kafka_requests_total Count of Kafka requests
        # TYPE hubble_kafka_requests_total counter
	      hubble_kafka_requests_total{api_key="test-api-key", destination="destination-ns/destination-deploy-pod",destination_pod="destination-deploy-pod",error_code="0",reporter="server",source="source-ns/source-deploy-pod",source_pod="source-deploy-pod",topic="test-topic"} 1
	`
	const durationExpected = `
        # HELP hubble_kafka_request_duration_seconds Quantiles of HTTP request duration in seconds
        # TYPE hubble_kafka_request_duration_seconds histogram
        hubble_kafka_request_duration_seconds_bucket{api_key="test-api-key",destination="destination-ns/destination-deploy-pod",destination_pod="destination-deploy-pod",reporter="server",source="source-ns/source-deploy-pod",source_pod="source-deploy-pod",topic="test-topic",le="0.005"} 0
        hubble_kafka_request_duration_seconds_bucket{api_key="test-api-key",destination="destination-ns/destination-deploy-pod",destination_pod="destination-deploy-pod",reporter="server",source="source-ns/source-deploy-pod",source_pod="source-deploy-pod",topic="test-topic",le="0.01"} 0
        hubble_kafka_request_duration_seconds_bucket{api_key="test-api-key",destination="destination-ns/destination-deploy-pod",destination_pod="destination-deploy-pod",reporter="server",source="source-ns/source-deploy-pod",source_pod="source-deploy-pod",topic="test-topic",le="0.025"} 1
        hubble_kafka_request_duration_seconds_bucket{api_key="test-api-key",destination="destination-ns/destination-deploy-pod",destination_pod="destination-deploy-pod",reporter="server",source="source-ns/source-deploy-pod",source_pod="source-deploy-pod",topic="test-topic",le="0.05"} 1
        hubble_kafka_request_duration_seconds_bucket{api_key="test-api-key",destination="destination-ns/destination-deploy-pod",destination_pod="destination-deploy-pod",reporter="server",source="source-ns/source-deploy-pod",source_pod="source-deploy-pod",topic="test-topic",le="0.1"} 1
        hubble_kafka_request_duration_seconds_bucket{api_key="test-api-key",destination="destination-ns/destination-deploy-pod",destination_pod="destination-deploy-pod",reporter="server",source="source-ns/source-deploy-pod",source_pod="source-deploy-pod",topic="test-topic",le="0.25"} 1
        hubble_kafka_request_duration_seconds_bucket{api_key="test-api-key",destination="destination-ns/destination-deploy-pod",destination_pod="destination-deploy-pod",reporter="server",source="source-ns/source-deploy-pod",source_pod="source-deploy-pod",topic="test-topic",le="0.5"} 1
        hubble_kafka_request_duration_seconds_bucket{api_key="test-api-key",destination="destination-ns/destination-deploy-pod",destination_pod="destination-deploy-pod",reporter="server",source="source-ns/source-deploy-pod",source_pod="source-deploy-pod",topic="test-topic",le="1"} 1
        hubble_kafka_request_duration_seconds_bucket{api_key="test-api-key",destination="destination-ns/destination-deploy-pod",destination_pod="destination-deploy-pod",reporter="server",source="source-ns/source-deploy-pod",source_pod="source-deploy-pod",topic="test-topic",le="2.5"} 1
        hubble_kafka_request_duration_seconds_bucket{api_key="test-api-key",destination="destination-ns/destination-deploy-pod",destination_pod="destination-deploy-pod",reporter="server",source="source-ns/source-deploy-pod",source_pod="source-deploy-pod",topic="test-topic",le="5"} 1
        hubble_kafka_request_duration_seconds_bucket{api_key="test-api-key",destination="destination-ns/destination-deploy-pod",destination_pod="destination-deploy-pod",reporter="server",source="source-ns/source-deploy-pod",source_pod="source-deploy-pod",topic="test-topic",le="10"} 1
        hubble_kafka_request_duration_seconds_bucket{api_key="test-api-key",destination="destination-ns/destination-deploy-pod",destination_pod="destination-deploy-pod",reporter="server",source="source-ns/source-deploy-pod",source_pod="source-deploy-pod",topic="test-topic",le="+Inf"} 1
        hubble_kafka_request_duration_seconds_sum{api_key="test-api-key",destination="destination-ns/destination-deploy-pod",destination_pod="destination-deploy-pod",reporter="server",source="source-ns/source-deploy-pod",source_pod="source-deploy-pod",topic="test-topic"} 0.012345678
        hubble_kafka_request_duration_seconds_count{api_key="test-api-key",destination="destination-ns/destination-deploy-pod",destination_pod="destination-deploy-pod",reporter="server",source="source-ns/source-deploy-pod",source_pod="source-deploy-pod",topic="test-topic"} 1
	`
	want := parseExposition(t, strings.NewReader(requestsExpected+durationExpected))
	got := parseExposition(t, strings.NewReader(getMetrics(t, reg)))
	for _, name := range []string{"hubble_kafka_requests_total", "hubble_kafka_request_duration_seconds"} {
		if g, w := familyText(t, got[name]), familyText(t, want[name]); g != w {
			t.Errorf("%s:\ngot\n%s\nwant (cilium's)\n%s", name, g, w)
		}
	}
}

// TestKafkaNamesHelpLabelOrderAndBucketsAreCiliums: the two vectors'
// descriptors (name, help, label names in their order) and the
// histogram's buckets are those of cilium's kafka handler
// (pkg/hubble/metrics/kafka/handler.go up to cilium v1.19): context labels
// (labelsContext labels, then source, then destination), then topic,
// api_key, error_code, reporter; the duration without error_code; the
// duration with no Buckets of its own, so client_golang's DefBuckets, the
// ones cilium's handler_test.go expects.
func TestKafkaNamesHelpLabelOrderAndBucketsAreCiliums(t *testing.T) {
	for _, tc := range []struct {
		spec, context string
	}{
		{"kafka", ""},
		{"kafka:destinationContext=pod|ip;sourceEgressContext=workload;labelsContext=traffic_direction,source_namespace", "source_namespace,traffic_direction,source,destination,"},
	} {
		m, err := New(Config{Metrics: []string{tc.spec}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		h := m.handlers[0].(*kafkaHandler)
		want := []string{
			`Desc{fqName: "hubble_kafka_requests_total", help: "Count of Kafka requests", unit: "", constLabels: {}, variableLabels: {` + tc.context + `topic,api_key,error_code,reporter}}`,
			`Desc{fqName: "hubble_kafka_request_duration_seconds", help: "Quantiles of HTTP request duration in seconds", unit: "", constLabels: {}, variableLabels: {` + tc.context + `topic,api_key,reporter}}`,
		}
		for i, c := range []prometheus.Collector{h.requests.vec, h.duration.vec} {
			ch := make(chan *prometheus.Desc, 1)
			c.Describe(ch)
			if got := (<-ch).String(); got != want[i] {
				t.Errorf("%s:\ngot  %s\nwant %s", tc.spec, got, want[i])
			}
		}
	}

	reg := prometheus.NewRegistry()
	m, err := New(Config{Metrics: []string{"kafka"}}, reg)
	if err != nil {
		t.Fatal(err)
	}
	m.Observe([]schemas.Flow{kafkaFlow(flowpb.L7FlowType_REQUEST, flowpb.TrafficDirection_INGRESS, "produce", "orders", 0, 7_000_000)})
	fam := parseExposition(t, strings.NewReader(getMetrics(t, reg)))["hubble_kafka_request_duration_seconds"]
	if fam.GetType() != dto.MetricType_HISTOGRAM || len(fam.GetMetric()) != 1 {
		t.Fatalf("hubble_kafka_request_duration_seconds: %v", fam)
	}
	var bounds []float64
	var counts []uint64
	for _, b := range fam.GetMetric()[0].GetHistogram().GetBucket() {
		bounds, counts = append(bounds, b.GetUpperBound()), append(counts, b.GetCumulativeCount())
	}
	// The le values of cilium's durationExpected; 7 ms falls in 0.01 and
	// above.
	if want := []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, math.Inf(1)}; !slices.Equal(bounds, want) {
		t.Errorf("buckets %v, want cilium's %v", bounds, want)
	}
	if want := []uint64{0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1}; !slices.Equal(counts, want) {
		t.Errorf("cumulative counts %v, want %v", counts, want)
	}
}

// TestKafkaOptions: kafka takes the context options and no other option,
// and is enabled once.
func TestKafkaOptions(t *testing.T) {
	for _, spec := range []string{"kafka:query", "kafka:exemplars=true", "kafka:sourceContext=galaxy", "kafka kafka"} {
		if _, err := New(Config{Metrics: []string{spec}}, prometheus.NewRegistry()); err == nil {
			t.Errorf("%q accepted", spec)
		}
	}
	for _, spec := range []string{"kafka:sourceIngressContext=app;destinationEgressContext=reserved-identity|dns", "flow kafka http dns"} {
		if _, err := New(Config{Metrics: []string{spec}}, prometheus.NewRegistry()); err != nil {
			t.Errorf("%q: %v", spec, err)
		}
	}
}

// getMetrics serves reg over HTTP and returns the body of GET /metrics.
func getMetrics(t *testing.T, reg *prometheus.Registry) string {
	t.Helper()
	addr := servetest.Serve(t, func(ctx context.Context, lis net.Listener) error { return Serve(ctx, lis, reg, nil) })
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// parseExposition reads the Prometheus text format, each series' labels
// sorted by name.
func parseExposition(t *testing.T, r io.Reader) map[string]*dto.MetricFamily {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(r)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		for _, m := range f.GetMetric() {
			slices.SortFunc(m.Label, func(a, b *dto.LabelPair) int { return strings.Compare(a.GetName(), b.GetName()) })
		}
	}
	return fams
}

// familyText writes f back in the text format (HELP, TYPE, every sample).
func familyText(t *testing.T, f *dto.MetricFamily) string {
	t.Helper()
	if f == nil {
		return "<absent>"
	}
	var b bytes.Buffer
	if _, err := expfmt.MetricFamilyToText(&b, f); err != nil {
		t.Fatal(err)
	}
	return b.String()
}
