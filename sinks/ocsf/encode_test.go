package ocsf

import (
	"encoding/json"
	"errors"
	"net/netip"
	"strings"

	flowpb "github.com/cilium/cilium/api/v1/flow"
	"github.com/flowbus/flowbus/schemas"
	"testing"

	"github.com/flowbus/flowbus/internal/flowtest"
	"github.com/flowbus/flowbus/internal/ocsftest"
)

// TestAppendValidatesFleetAndRandom: every event of fleet and random
// records validates against the vendored schema.
func TestAppendValidatesFleetAndRandom(t *testing.T) {
	s := ocsftest.Load(t)
	flows := flowtest.Fleet(1, 2000)
	g := flowtest.NewGen(2)
	for range 2000 {
		flows = append(flows, g.Flow())
	}
	var enc Encoder
	bad := 0
	for i := range flows {
		b, err := enc.Append(nil, &flows[i])
		if err != nil {
			continue
		}
		if errs := s.Validate(b); len(errs) > 0 {
			bad++
			if bad <= 5 {
				t.Errorf("flow %d: %q\n%s", i, errs, b)
			}
		}
	}
	if bad > 0 {
		t.Errorf("%d of %d events invalid", bad, len(flows))
	}
	t.Logf("%+v", enc.Stats())
}

func dropFlow() schemas.Flow {
	return schemas.Flow{
		TimeNs: 1_764_000_000_123_456_789, NodeName: "node-01",
		Verdict: flowpb.Verdict_DROPPED, DropReason: flowpb.DropReason_POLICY_DENIED,
		Direction: flowpb.TrafficDirection_INGRESS, ObservationPoint: flowpb.TraceObservationPoint_TO_ENDPOINT,
		IsReply: schemas.False, IPVersion: flowpb.IPVersion_IPv4,
		SrcIP: netip.MustParseAddr("::ffff:10.0.4.11"), DstIP: netip.MustParseAddr("10.0.1.10"),
		SrcPort: 40000, DstPort: 8080, L4Protocol: 6, TCPFlags: schemas.FlagSYN,
		Src:        schemas.Endpoint{Namespace: "payments", PodName: "rewards-cron-1", Workload: "rewards-cron", WorkloadKind: "CronJob", Identity: 20004, Labels: []string{"k8s:app=rewards-cron"}},
		Dst:        schemas.Endpoint{Namespace: "payments", PodName: "ledger-svc-1", Workload: "ledger-svc", WorkloadKind: "Deployment"},
		DstService: schemas.Service{Namespace: "payments", Name: "ledger-svc"},
		BytesFwd:   60, PacketsFwd: 1,
		FirstSeenNs: 1_764_000_000_000_000_000, LastSeenNs: 1_764_000_000_123_456_789, Count: 1,
		IngressDeniedBy: []string{"NetworkPolicy:payments/ledger-ingress", "NetworkPolicy:payments/default-deny"},
	}
}

// TestAppendPolicyDrop pins one whole event: a policy drop.
func TestAppendPolicyDrop(t *testing.T) {
	f := dropFlow()
	var enc Encoder
	got, err := enc.Append([]byte("x"), &f)
	if err != nil {
		t.Fatal(err)
	}
	const want = `x` + `{"activity_id":5,"activity_name":"Refuse","category_uid":4,"category_name":"Network Activity","class_uid":4001,"class_name":"Network Activity","type_uid":400105,"type_name":"Network Activity: Refuse","severity_id":3,"severity":"Medium","status_id":2,"status":"Failure","status_code":"133","status_detail":"POLICY_DENIED","action_id":2,"action":"Denied","disposition_id":2,"disposition":"Blocked","time":1764000000123,"start_time":1764000000000,"end_time":1764000000123,"duration":123,"count":1,"metadata":{"version":"1.8.0","product":{"name":"flowbus","vendor_name":"flowbus"},"profiles":["security_control"]},"src_endpoint":{"ip":"10.0.4.11","port":40000,"name":"rewards-cron-1"},"dst_endpoint":{"ip":"10.0.1.10","port":8080,"name":"ledger-svc-1","svc_name":"ledger-svc"},"is_src_dst_assignment_known":true,"observation_point_id":2,"observation_point":"Destination","connection_info":{"direction_id":3,"direction":"Lateral","protocol_num":6,"protocol_name":"tcp","protocol_ver_id":4,"tcp_flags":2},"traffic":{"bytes":60,"bytes_out":60,"bytes_in":0,"packets":1,"packets_out":1,"packets_in":0},"firewall_rule":{"uid":"NetworkPolicy:payments/ledger-ingress","type":"NetworkPolicy","name":"payments/ledger-ingress"},"unmapped":{"flowbus":{"node_name":"node-01","verdict":"DROPPED","drop_reason":"POLICY_DENIED","traffic_direction":"INGRESS","trace_observation_point":"TO_ENDPOINT","count_as":"flow","is_reply":false,"src":{"namespace":"payments","pod":"rewards-cron-1","workload":"rewards-cron","workload_kind":"CronJob","identity":20004,"labels":["k8s:app=rewards-cron"]},"dst":{"namespace":"payments","pod":"ledger-svc-1","workload":"ledger-svc","workload_kind":"Deployment","service_namespace":"payments"},"ingress_denied_by":["NetworkPolicy:payments/ledger-ingress","NetworkPolicy:payments/default-deny"]}}}`
	if string(got) != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	if errs := ocsftest.Load(t).Validate(got[1:]); errs != nil {
		t.Error(errs)
	}
}

// TestAppendMalformed: records OCSF cannot carry are refused with a clear
// error, fallbacks are counted, nothing panics.
func TestAppendMalformed(t *testing.T) {
	var enc Encoder
	f := dropFlow()
	f.TimeNs = 0
	if b, err := enc.Append([]byte("x"), &f); !errors.Is(err, ErrNoTime) || string(b) != "x" ||
		err.Error() != `ocsf: flow record has no time (node "node-01", ::ffff:10.0.4.11 → 10.0.1.10)` {
		t.Errorf("no time: %q, %v", b, err)
	}
	f = schemas.Flow{TimeNs: 1, NodeName: "node-01"}
	if _, err := enc.Append(nil, &f); !errors.Is(err, ErrNoEndpoint) ||
		err.Error() != `ocsf: flow record has neither a valid source nor destination address nor pod (node "node-01", time 1)` {
		t.Errorf("no endpoint: %v", err)
	}
	// An unknown verdict, an invalid source address, an unknown HTTP method,
	// an unparsable URL and an unknown DNS rcode: documented fallbacks.
	f = dropFlow()
	f.Verdict, f.SrcIP = 42, netip.Addr{}
	f.L7 = schemas.L7{Protocol: schemas.L7HTTP, HTTPMethod: "PROPFIND", HTTPURL: "http://[::1", HTTPStatus: 207}
	b, err := enc.Append(nil, &f)
	if err != nil {
		t.Fatal(err)
	}
	if errs := ocsftest.Load(t).Validate(b); errs != nil {
		t.Errorf("%q\n%s", errs, b)
	}
	for _, sub := range []string{`"activity_id":99,"activity_name":"PROPFIND"`, `"type_name":"HTTP Activity: Other"`, `"action_id":0,"action":"Unknown","disposition_id":0`,
		`"src_endpoint":{"port":40000,"name":"rewards-cron-1"}`, `"http_request":{"url":{"url_string":"http://[::1"}}`, `"verdict":"42"`} {
		if !strings.Contains(string(b), sub) {
			t.Errorf("no %s in\n%s", sub, b)
		}
	}
	f = dropFlow()
	f.Verdict = flowpb.Verdict_FORWARDED
	f.L7 = schemas.L7{Type: flowpb.L7FlowType_RESPONSE, Protocol: schemas.L7DNS, DNSQuery: "x.example.", DNSRCode: 30}
	if b, err = enc.Append(nil, &f); err != nil || !strings.Contains(string(b), `"rcode_id":99,"rcode":"30"`) {
		t.Errorf("%v\n%s", err, b)
	}
	if errs := ocsftest.Load(t).Validate(b); errs != nil {
		t.Errorf("%q\n%s", errs, b)
	}
	want := Stats{Events: 2, Errors: 2, MissingIP: 1, UnknownVerdict: 1, OtherMethod: 1, BadURL: 1}
	if got := enc.Stats(); got != want {
		t.Errorf("stats %+v, want %+v", got, want)
	}
}

// TestClassIsAppendsClass: Class gives the class_uid Append writes, for
// fleet and random records.
func TestClassIsAppendsClass(t *testing.T) {
	flows := flowtest.Fleet(3, 1000)
	g := flowtest.NewGen(4)
	for range 1000 {
		flows = append(flows, g.Flow())
	}
	seen := map[int]int{}
	for i := range flows {
		b, err := Append(nil, &flows[i])
		if err != nil {
			continue
		}
		var ev struct {
			ClassUID int `json:"class_uid"`
		}
		if err := json.Unmarshal(b, &ev); err != nil {
			t.Fatal(err)
		}
		if got := Class(&flows[i]); got != ev.ClassUID {
			t.Fatalf("flow %d: Class %d, Append wrote class_uid %d", i, got, ev.ClassUID)
		}
		seen[ev.ClassUID]++
	}
	if len(seen) != 3 {
		t.Errorf("classes seen %v, want all three", seen)
	}
}
