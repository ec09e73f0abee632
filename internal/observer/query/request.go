package query

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	flowpb "github.com/cilium/cilium/api/v1/flow"
	observerpb "github.com/cilium/cilium/api/v1/observer"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// DefaultNumber is how many flows hubble asks for without --last, --first,
// --all, --follow, --since or --until.
const DefaultNumber = 20

// DefaultFieldMask is what hubble requests in its non-JSON modes: the
// fields its printer shows.
var DefaultFieldMask = []string{"time", "verdict", "ethernet", "IP", "l4", "source.identity", "source.namespace", "source.pod_name",
	"destination.identity", "destination.namespace", "destination.pod_name", "Type", "node_name", "l7", "event_type",
	"source_service", "destination_service", "is_reply", "Summary", "ip_trace_id", "traffic_direction", "policy_match_type",
	"ingress_allowed_by", "ingress_denied_by", "egress_allowed_by", "egress_denied_by"}

// Selectors are hubble observe's flags that say which flows of the
// server's buffer to return: --last, --first, --all, --follow, --since and
// --until (a time, or a duration before now).
type Selectors struct {
	Last, First  uint64
	All, Follow  bool
	Since, Until string
}

// Request builds the GetFlowsRequest as hubble's getFlowsRequest does, from
// the selectors, the filter flags and the --allowlist/--denylist JSON
// FlowFilters; now is the time relative --since/--until count back from.
func Request(f *Filters, sel Selectors, allow, deny []string, now time.Time) (*observerpb.GetFlowsRequest, error) {
	isFirst, isLast := sel.First > 0, sel.Last > 0
	switch {
	case isFirst && isLast:
		return nil, errors.New("cannot set both --first and --last")
	case isFirst && sel.All:
		return nil, errors.New("cannot set both --first and --all")
	case isFirst && sel.Follow:
		return nil, errors.New("cannot set both --first and --follow")
	case isLast && sel.All:
		return nil, errors.New("cannot set both --last and --all")
	}
	var sinceTS, untilTS *timestamppb.Timestamp
	if sel.Since != "" {
		t, err := ParseTime(sel.Since, now)
		if err != nil {
			return nil, fmt.Errorf("failed to parse the since time: %w", err)
		}
		sinceTS = timestamppb.New(t)
	}
	if sel.Until != "" && !sel.Follow {
		t, err := ParseTime(sel.Until, now)
		if err != nil {
			return nil, fmt.Errorf("failed to parse the until time: %w", err)
		}
		untilTS = timestamppb.New(t)
	}
	last := sel.Last
	if sinceTS == nil && untilTS == nil && !isFirst {
		switch {
		case sel.All:
			last = ^uint64(0)
		case last == 0 && !sel.Follow:
			last = DefaultNumber
		}
	}
	wl, bl, err := f.Lists()
	if err != nil {
		return nil, err
	}
	al, err := parseRawFilters(allow)
	if err != nil {
		return nil, fmt.Errorf("invalid --allowlist flag: %w", err)
	}
	dl, err := parseRawFilters(deny)
	if err != nil {
		return nil, fmt.Errorf("invalid --denylist flag: %w", err)
	}
	number := last
	if isFirst {
		number = sel.First
	}
	return &observerpb.GetFlowsRequest{Number: number, Follow: sel.Follow, First: isFirst, Since: sinceTS, Until: untilTS,
		Whitelist: append(wl, al...), Blacklist: append(bl, dl...)}, nil
}

// timeLayouts are the layouts hubble accepts for --since/--until.
var timeLayouts = []string{"2006-01-02", "2006-01-02T15Z07:00", "2006-01-02T15:04Z07:00", time.RFC3339, time.RFC3339Nano,
	"2006-01-02T15:04:05.999Z07:00", "2006-01-02T15:04:05.999999Z07:00", time.RFC1123Z}

// ParseTime parses a --since/--until value: a duration before now ("5m")
// or a time in one of hubble's layouts.
func ParseTime(s string, now time.Time) (time.Time, error) {
	if d, err := time.ParseDuration(s); err == nil {
		return now.Add(-d), nil
	}
	for _, l := range timeLayouts {
		if t, err := time.Parse(l, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("failed to convert %s to time", s)
}

// parseRawFilters decodes --allowlist/--denylist JSON FlowFilters.
func parseRawFilters(in []string) ([]*flowpb.FlowFilter, error) {
	var out []*flowpb.FlowFilter
	for _, s := range in {
		dec := json.NewDecoder(strings.NewReader(s))
		for dec.More() {
			var f flowpb.FlowFilter
			if err := dec.Decode(&f); err != nil {
				return nil, fmt.Errorf("decode %q: %w", s, err)
			}
			out = append(out, &f)
		}
	}
	return out, nil
}
