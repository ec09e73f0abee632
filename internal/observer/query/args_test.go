package query

import (
	"reflect"
	"testing"

	flowpb "github.com/cilium/cilium/api/v1/flow"
	"google.golang.org/protobuf/proto"
)

func TestSplitArgsQuotesAsAShell(t *testing.T) {
	cases := []struct {
		in   string
		want []string
	}{
		{"", nil},
		{"  --not   --label reserved:health ", []string{"--not", "--label", "reserved:health"}},
		{`--label 'k8s:app in (a, b)' --to-pod "payments/ledger svc"`, []string{"--label", "k8s:app in (a, b)", "--to-pod", "payments/ledger svc"}},
		{`--http-path "/a\"b" x\ y ''`, []string{"--http-path", `/a"b`, "x y", ""}},
	}
	for _, tc := range cases {
		got, err := SplitArgs(tc.in)
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("SplitArgs(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{`--label 'open`, `--label "open`} {
		if _, err := SplitArgs(bad); err == nil {
			t.Errorf("SplitArgs(%q): no error", bad)
		}
	}
}

// The filter words build what the same flags of hubble observe build:
// skipping health checks is a blacklist of the health identity's label on
// either side.
func TestFilterArgsBuildTheCLIsFilters(t *testing.T) {
	white, black, err := FilterArgs([]string{"--not", "--label", "reserved:health", "--namespace", "payments", "-t", "trace"})
	if err != nil {
		t.Fatal(err)
	}
	f := &Filters{}
	for _, kv := range [][2]string{{"not", "true"}, {"label", "reserved:health"}, {"namespace", "payments"}, {"type", "trace"}} {
		if err := f.Set(kv[0], kv[1]); err != nil {
			t.Fatal(err)
		}
	}
	ww, wb, _ := f.Lists()
	if !equalFilters(white, ww) || !equalFilters(black, wb) {
		t.Errorf("FilterArgs built %v / %v, the flags build %v / %v", white, black, ww, wb)
	}
	wantBlack := []*flowpb.FlowFilter{{SourceLabel: []string{"reserved:health"}}, {DestinationLabel: []string{"reserved:health"}}}
	if !equalFilters(black, wantBlack) {
		t.Errorf("blacklist %v, want %v", black, wantBlack)
	}
	for _, bad := range [][]string{{"--last", "5"}, {"payments"}, {"--not"}, {"--verdict", "SOMETIMES"}} {
		if _, _, err := FilterArgs(bad); err == nil {
			t.Errorf("FilterArgs(%q): no error", bad)
		}
	}
}

func equalFilters(a, b []*flowpb.FlowFilter) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !proto.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}
