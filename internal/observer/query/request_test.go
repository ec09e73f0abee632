package query

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"
)

func TestObserveRequestSelectors(t *testing.T) {
	now := time.Date(2026, 11, 25, 21, 47, 0, 0, time.UTC)
	cases := []struct {
		name             string
		last, first      uint64
		all, follow      bool
		since, until     string
		number           uint64
		isFirst          bool
		sinceAt, untilAt string
	}{
		{name: "a bare request asks for hubble's 20", number: 20},
		{name: "follow alone starts at the newest flow", follow: true},
		{name: "all asks for everything", all: true, number: ^uint64(0)},
		{name: "first N", first: 5, number: 5, isFirst: true},
		{name: "relative since", since: "5m", sinceAt: "2026-11-25T21:42:00Z"},
		{name: "absolute since and until", since: "2026-11-25T21:00:00Z", until: "2026-11-25T21:30Z", sinceAt: "2026-11-25T21:00:00Z", untilAt: "2026-11-25T21:30:00Z"},
		{name: "until is dropped when following", follow: true, until: "1m"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req, err := Request(&Filters{}, Selectors{Last: tc.last, First: tc.first, All: tc.all, Follow: tc.follow, Since: tc.since, Until: tc.until}, nil, nil, now)
			if err != nil {
				t.Fatal(err)
			}
			ts := func(s *timestamppb.Timestamp) string {
				if s == nil {
					return ""
				}
				return s.AsTime().Format(time.RFC3339)
			}
			if req.GetNumber() != tc.number || req.GetFirst() != tc.isFirst || req.GetFollow() != tc.follow ||
				ts(req.GetSince()) != tc.sinceAt || ts(req.GetUntil()) != tc.untilAt {
				t.Errorf("request %v", req)
			}
		})
	}
	if _, err := Request(&Filters{}, Selectors{Since: "yesterday"}, nil, nil, now); err == nil || !strings.Contains(err.Error(), "since") {
		t.Errorf("bad since: err = %v", err)
	}
}
