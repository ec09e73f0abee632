package l7

import "testing"

func TestLatencyIsZeroWhenUnansweredOrOutOfOrder(t *testing.T) {
	for _, tc := range []struct {
		req, resp, want int64
	}{{100, 350, 250}, {100, 0, 0}, {100, 90, 0}, {100, 100, 0}} {
		e := Exchange{RequestNs: tc.req, ResponseNs: tc.resp}
		if got := e.LatencyNs(); got != tc.want {
			t.Errorf("request %d, response %d: latency %d; want %d", tc.req, tc.resp, got, tc.want)
		}
	}
}

func TestStatsCountByReasonAndIgnoreUnknownOnes(t *testing.T) {
	var s Stats
	s.Add(ReasonGap)
	s.Add(ReasonGap)
	s.Add(ReasonLost)
	s.Add(NumReasons) // not a reason: ignored, no panic
	if s[ReasonGap] != 2 || s[ReasonLost] != 1 || s[ReasonMalformed] != 0 {
		t.Fatalf("stats %v; want gap 2, lost 1", s)
	}
	if ReasonStateCap.String() != "state_cap" || NumReasons.String() != "unknown" || FromServer.String() != "server" {
		t.Fatal("names")
	}
}
