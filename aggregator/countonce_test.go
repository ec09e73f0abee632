package aggregator

import (
	"testing"

	flowpb "github.com/cilium/cilium/api/v1/flow"

	"github.com/flowbus/flowbus/schemas"
)

// One connection as the eBPF source reports it from both pods' interfaces:
// the sender's record (count_as none), the receiver's (flow), a later
// active-timeout record and the tail after its reset (traffic). The pair
// row counts the connection once: one flow and connection, one SYN, one
// RST, the receiver's bytes and packets plus the later ones, one latency.
// An L7 response that another record carries adds no request.
func TestPairRollupCountsEachConnectionOnce(t *testing.T) {
	a, _ := newTestAggregator(t, Config{Out: t.TempDir()})
	b := newBucket(genStart, false, 0)
	src, dst := ep("payments", "checkout-api"), ep("payments", "ledger-svc")
	conn := func(c schemas.CountAs, op flowpb.TraceObservationPoint, flags schemas.TCPFlags, fwd, rev uint64, lat uint64) schemas.Flow {
		return schemas.Flow{TimeNs: genStart, Verdict: flowpb.Verdict_FORWARDED, IsReply: schemas.False, CountAs: c,
			ObservationPoint: op, Src: src, Dst: dst, DstPort: 8080, L4Protocol: 6, TCPFlags: flags,
			BytesFwd: fwd, BytesRev: rev, PacketsFwd: fwd / 100, PacketsRev: rev / 100, Count: 1, LatencyNs: lat}
	}
	from, to := flowpb.TraceObservationPoint_FROM_ENDPOINT, flowpb.TraceObservationPoint_TO_ENDPOINT
	syn := schemas.FlagSYN | schemas.FlagACK | schemas.FlagPSH
	resp := conn(schemas.CountNone, from, 0, 0, 0, 2_000_000)
	resp.L7 = schemas.L7{Type: flowpb.L7FlowType_RESPONSE, Protocol: schemas.L7HTTP, HTTPMethod: "GET", HTTPURL: "/v1/x", HTTPStatus: 200}
	for _, f := range []schemas.Flow{
		conn(schemas.CountNone, from, syn, 1000, 2000, 50_000),
		conn(schemas.CountFlow, to, syn, 1000, 2000, 50_000),
		conn(schemas.CountTraffic, to, schemas.FlagACK|schemas.FlagPSH, 300, 500, 0),
		conn(schemas.CountTraffic, to, schemas.FlagACK|schemas.FlagRST, 0, 100, 0),
		resp,
	} {
		b.add(&f, a)
	}
	rows := b.pairRows()
	if len(rows) != 1 {
		t.Fatalf("%d pair rows, want 1: %+v", len(rows), rows)
	}
	r := rows[0]
	got := [...]int64{r.Flows, r.Connections, r.TCPSyn, r.TCPRst, r.BytesFwd, r.BytesRev, r.PacketsFwd, r.PacketsRev, int64(len(r.LatencyHist))}
	if want := [...]int64{1, 1, 1, 1, 1300, 2600, 13, 26, 1}; got != want {
		t.Errorf("flows, connections, SYN, RST, bytes fwd/rev, packets fwd/rev, histogram buckets = %v, want %v", got, want)
	}
	if n := len(b.routeRows()); n != 0 {
		t.Errorf("%d route rows from a response another record carries, want 0", n)
	}
	if b.flows != 5 {
		t.Errorf("bucket saw %d records, want all 5 (raw flows keep them)", b.flows)
	}
}

// Hubble reports an HTTP exchange as a request from the client and a
// response from the server, marked as a reply. The response is folded into
// the client → server pair and the server's route, not into a reversed
// pair toward the client's ephemeral port.
func TestHubbleReplyResponseFoldsAsItsRequest(t *testing.T) {
	a, _ := newTestAggregator(t, Config{Out: t.TempDir()})
	b := newBucket(genStart, false, 0)
	client, server := ep("payments", "checkout-api"), ep("payments", "ledger-svc")
	req := schemas.Flow{TimeNs: genStart, Verdict: flowpb.Verdict_FORWARDED, IsReply: schemas.False, CountAs: schemas.CountNone,
		Src: client, Dst: server, SrcPort: 41000, DstPort: 8080, L4Protocol: 6,
		L7: schemas.L7{Type: flowpb.L7FlowType_REQUEST, Protocol: schemas.L7HTTP, HTTPMethod: "GET", HTTPURL: "/v1/ledger/42"}}
	resp := schemas.Flow{TimeNs: genStart, Verdict: flowpb.Verdict_FORWARDED, IsReply: schemas.True, CountAs: schemas.CountFlow,
		Src: server, Dst: client, SrcPort: 8080, DstPort: 41000, L4Protocol: 6, LatencyNs: 3_000_000,
		SrcService: schemas.Service{Namespace: "payments", Name: "ledger-svc"},
		L7:         schemas.L7{Type: flowpb.L7FlowType_RESPONSE, Protocol: schemas.L7HTTP, HTTPMethod: "GET", HTTPURL: "/v1/ledger/42", HTTPStatus: 200}}
	b.add(&req, a)
	b.add(&resp, a)
	rows := b.pairRows()
	if len(rows) != 1 {
		t.Fatalf("%d pair rows, want 1: %+v", len(rows), rows)
	}
	r := rows[0]
	if r.SrcWorkload != "checkout-api" || r.DstWorkload != "ledger-svc" || r.DstPort != 8080 || r.DstService != "payments/ledger-svc" ||
		r.Flows != 1 || r.Connections != 0 {
		t.Errorf("pair row %s → %s :%d svc %q, %d flows, %d connections; want checkout-api → ledger-svc :8080 svc payments/ledger-svc, 1 flow, 0 connections (the trace events carry it)",
			r.SrcWorkload, r.DstWorkload, r.DstPort, r.DstService, r.Flows, r.Connections)
	}
	routes := b.routeRows()
	if len(routes) != 1 || routes[0].DstWorkload != "ledger-svc" || routes[0].Route != "/v1/ledger/{id}" || routes[0].Requests != 1 {
		t.Errorf("route rows %+v, want one request of ledger-svc GET /v1/ledger/{id}", routes)
	}
}
