package printer

import (
	"bytes"
	"testing"

	flowpb "github.com/cilium/cilium/api/v1/flow"
	observerpb "github.com/cilium/cilium/api/v1/observer"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// TestTextOutputsNeutraliseTerminalEscapes: the text outputs print ESC as
// ^[ and CR as \r, as hubble's printer does; JSON escapes them itself.
func TestTextOutputsNeutraliseTerminalEscapes(t *testing.T) {
	f := &flowpb.Flow{IP: &flowpb.IP{Source: "10.0.0.1", Destination: "10.0.0.2"}, IsReply: wrapperspb.Bool(false),
		Source: &flowpb.Endpoint{Namespace: "ns", PodName: "a\x1b[31mred"},
		//lint:ignore SA1019 hubble prints the deprecated summary
		Summary: "GET /p\rq", Verdict: flowpb.Verdict_FORWARDED}
	res := &observerpb.GetFlowsResponse{ResponseTypes: &observerpb.GetFlowsResponse_Flow{Flow: f}}
	cases := map[Output]string{
		Compact: "N/A: ns/a^[[31mred (unknown) -> 10.0.0.2 (unknown) UNKNOWN FORWARDED (GET /p\\rq)\n",
		Dict:    "  TIMESTAMP: N/A\n     SOURCE: ns/a^[[31mred\nDESTINATION: 10.0.0.2\n       TYPE: UNKNOWN\n    VERDICT: FORWARDED\n    SUMMARY: GET /p\\rq\n",
		Table:   "TIMESTAMP   SOURCE          DESTINATION   TYPE      VERDICT     SUMMARY\nN/A         ns/a^[[31mred   10.0.0.2      UNKNOWN   FORWARDED   GET /p\\rq\n",
	}
	for out, want := range cases {
		t.Run(string(out), func(t *testing.T) {
			var b bytes.Buffer
			p := New(&b, &b, Options{Output: out, IPTranslation: true})
			if err := p.Write(res); err != nil {
				t.Fatal(err)
			}
			if err := p.Close(); err != nil {
				t.Fatal(err)
			}
			if b.String() != want {
				t.Errorf("got  %q\nwant %q", b.String(), want)
			}
		})
	}
}
