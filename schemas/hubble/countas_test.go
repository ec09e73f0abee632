package hubble

import (
	"strconv"
	"testing"

	flowpb "github.com/cilium/cilium/api/v1/flow"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/flowbus/flowbus/schemas"
)

// The events of one connection as a Cilium node's Hubble reports them, in
// `hubble observe -o jsonpb` form: each counts where the rule says, so that
// the connection counts once.
func TestCountAsCountsEachHubbleConnectionOnce(t *testing.T) {
	const pods = `"source":{"identity":12345,"namespace":"payments","pod_name":"checkout-api-1"},` +
		`"destination":{"identity":23456,"namespace":"payments","pod_name":"ledger-svc-1"}`
	const world = `"source":{"identity":12345,"namespace":"payments","pod_name":"checkout-api-1"},"destination":{"identity":2,"labels":["reserved:world"]}`
	const host = `"source":{"identity":12345,"namespace":"payments","pod_name":"checkout-api-1"},"destination":{"identity":6}`
	const cidr = `"source":{"identity":12345,"namespace":"payments","pod_name":"checkout-api-1"},"destination":{"identity":16777217}`
	const syn = `"l4":{"TCP":{"source_port":40000,"destination_port":8080,"flags":{"SYN":true}}}`
	const synack = `"l4":{"TCP":{"source_port":8080,"destination_port":40000,"flags":{"SYN":true,"ACK":true}}}`
	const fin = `"l4":{"TCP":{"source_port":40000,"destination_port":8080,"flags":{"FIN":true,"ACK":true}}}`
	const udp = `"l4":{"UDP":{"source_port":40000,"destination_port":53}}`
	trace := func(point string, sub int, reply bool, ends, l4 string) string {
		r := "false"
		if reply {
			r = "true"
		}
		return `{"verdict":"FORWARDED","event_type":{"type":4,"sub_type":` + strconv.Itoa(sub) + `},"trace_observation_point":"` + point +
			`","is_reply":` + r + `,` + ends + `,` + l4 + `}`
	}
	cases := []struct {
		name, json string
		want       schemas.CountAs
	}{
		{"the receiver's to-endpoint event that opens the connection counts as a flow", trace("TO_ENDPOINT", TraceToLxc, false, pods, syn), schemas.CountFlow},
		{"the receiver's later events count as traffic", trace("TO_ENDPOINT", TraceToLxc, false, pods, fin), schemas.CountTraffic},
		{"the sender's from-endpoint event toward a pod counts nothing", trace("FROM_ENDPOINT", TraceFromLxc, false, pods, syn), schemas.CountNone},
		{"the sender's from-endpoint event toward the world counts", trace("FROM_ENDPOINT", TraceFromLxc, false, world, syn), schemas.CountFlow},
		{"the sender's from-endpoint event toward a remote node counts", trace("FROM_ENDPOINT", TraceFromLxc, false, host, syn), schemas.CountFlow},
		{"the sender's from-endpoint event toward a CIDR identity counts", trace("FROM_ENDPOINT", TraceFromLxc, false, cidr, syn), schemas.CountFlow},
		{"a UDP event at to-endpoint counts as a flow", trace("TO_ENDPOINT", TraceToLxc, false, pods, udp), schemas.CountFlow},
		{"a reply at to-endpoint counts nothing", trace("TO_ENDPOINT", TraceToLxc, true, pods, synack), schemas.CountNone},
		{"a reply at from-endpoint toward the world counts nothing", trace("FROM_ENDPOINT", TraceFromLxc, true, world, synack), schemas.CountNone},
		{"to-stack counts nothing", trace("TO_STACK", TraceToStack, false, pods, syn), schemas.CountNone},
		{"from-overlay counts nothing", trace("FROM_OVERLAY", TraceFromOverlay, false, pods, syn), schemas.CountNone},
		{"a trace event without an observation point is placed by its sub-type",
			`{"verdict":"FORWARDED","event_type":{"type":4},"is_reply":false,` + pods + `,` + syn + `}`, schemas.CountFlow},
		{"a drop counts as a flow",
			`{"verdict":"DROPPED","drop_reason_desc":"POLICY_DENIED","event_type":{"type":1,"sub_type":133},` + pods + `,` + syn + `}`, schemas.CountFlow},
		{"a policy verdict counts nothing (the drop or the trace carries it)",
			`{"verdict":"DROPPED","event_type":{"type":5},"traffic_direction":"INGRESS",` + pods + `,` + syn + `}`, schemas.CountNone},
		{"an L7 request counts nothing",
			`{"verdict":"FORWARDED","event_type":{"type":129},"Type":"L7","is_reply":false,` + pods + `,"l7":{"type":"REQUEST","http":{"method":"GET","url":"/"}}}`, schemas.CountNone},
		{"an L7 response counts as a flow",
			`{"verdict":"FORWARDED","event_type":{"type":129},"Type":"L7","is_reply":true,` + pods + `,"l7":{"type":"RESPONSE","latency_ns":"1000","http":{"code":200,"method":"GET","url":"/"}}}`, schemas.CountFlow},
		{"a socket trace counts nothing", `{"verdict":"TRACED","event_type":{"type":7},` + pods + `}`, schemas.CountNone},
		{"a flow without an event type counts as a flow", `{"verdict":"FORWARDED",` + pods + `,` + syn + `}`, schemas.CountFlow},
		{"a flow from a flowbus agent keeps its count_as",
			`{"verdict":"FORWARDED","event_type":{"type":4},"trace_observation_point":"TO_ENDPOINT",` + pods + `,` + syn +
				`,"extensions":{"@type":"type.googleapis.com/google.protobuf.Struct","value":{"flowbus.count_as":"none"}}}`, schemas.CountNone},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var p flowpb.Flow
			if err := protojson.Unmarshal([]byte(tc.json), &p); err != nil {
				t.Fatal(err)
			}
			f, err := FromProto(&p)
			if err != nil {
				t.Fatal(err)
			}
			if got := CountAs(&f, ServedByFlowbus(&p)); got != tc.want {
				t.Errorf("CountAs = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestIsClusterEndpoint(t *testing.T) {
	for id, want := range map[uint32]bool{0: false, IdentityHost: false, IdentityWorld: false, IdentityUnmanaged: false,
		IdentityHealth: true, IdentityInit: true, IdentityRemoteNode: false, IdentityKubeAPIServer: false, IdentityIngress: false,
		IdentityWorldIPv4: false, 99: false, 102: true, 115: true, 116: false, 255: false, 256: true, 65535: true, 0x1f0001: true, MinLocalIdentity: false, MinLocalIdentity + 5: false} {
		if got := IsClusterEndpoint(id); got != want {
			t.Errorf("IsClusterEndpoint(%d) = %v, want %v", id, got, want)
		}
	}
}
