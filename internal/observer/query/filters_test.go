package query

import (
	"testing"

	flowpb "github.com/cilium/cilium/api/v1/flow"
	"google.golang.org/protobuf/proto"

	"github.com/flowbus/flowbus/schemas/hubble"
)

func TestTypeFlagNamesSubTypesAsHubble(t *testing.T) {
	cases := []struct {
		val  string
		want *flowpb.EventTypeFilter
	}{
		{"drop", &flowpb.EventTypeFilter{Type: hubble.MsgTypeDrop}},
		{"trace:from-endpoint", &flowpb.EventTypeFilter{Type: hubble.MsgTypeTrace, MatchSubType: true, SubType: hubble.TraceFromLxc}},
		{"trace:to-endpoint", &flowpb.EventTypeFilter{Type: hubble.MsgTypeTrace, MatchSubType: true, SubType: hubble.TraceToLxc}},
		{"agent:policy-updated", &flowpb.EventTypeFilter{Type: hubble.MsgTypeAgent, MatchSubType: true, SubType: 5}},
		{"l7:3", &flowpb.EventTypeFilter{Type: hubble.MsgTypeAccessLog, MatchSubType: true, SubType: 3}},
		{"129", &flowpb.EventTypeFilter{Type: hubble.MsgTypeAccessLog}},
	}
	for _, tc := range cases {
		t.Run("--type "+tc.val, func(t *testing.T) {
			got, err := parseEventType(tc.val)
			if err != nil || !proto.Equal(got, tc.want) {
				t.Errorf("got %v, %v; want %v", got, err, tc.want)
			}
		})
	}
	for _, bad := range []string{"l8", "drop:policy-updated", "trace:to-nowhere"} {
		if _, err := parseEventType(bad); err == nil {
			t.Errorf("--type %s: no error", bad)
		}
	}
}
