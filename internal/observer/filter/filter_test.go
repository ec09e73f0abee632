package filter

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"testing"

	flowpb "github.com/cilium/cilium/api/v1/flow"
	v1 "github.com/cilium/cilium/pkg/hubble/api/v1"
	ciliumfilters "github.com/cilium/cilium/pkg/hubble/filters"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/flowbus/flowbus/schemas/hubble"
)

// TestCompiledFiltersSelectTheExpectedFlows checks the fixture's filter
// cases: the flows we select are the expected ones, and the ones Cilium's
// own filters select on the same flows (except for protocol "kafka", a
// flowbus extension Cilium refuses).
func TestCompiledFiltersSelectTheExpectedFlows(t *testing.T) {
	flows := fixtureFlows()
	aux := ciliumfilters.DefaultFilters(slog.New(slog.DiscardHandler))
	for _, tc := range filterCases() {
		t.Run(tc.Name, func(t *testing.T) {
			fs, err := CompileFilters(tc.White, tc.Black)
			if err != nil {
				t.Fatalf("compile: %v", err)
			}
			var got []string
			for i := range flows {
				if fs.Pass(&flows[i]) {
					got = append(got, flows[i].UUID)
				}
			}
			if !slices.Equal(got, tc.Want) {
				t.Errorf("got %v, want %v", got, tc.Want)
			}
			cw, err := ciliumfilters.BuildFilterList(context.Background(), tc.White, aux)
			if err == nil {
				var cb ciliumfilters.FilterFuncs
				if cb, err = ciliumfilters.BuildFilterList(context.Background(), tc.Black, aux); err == nil {
					var cilium []string
					for i := range flows {
						if ciliumfilters.Apply(cw, cb, &v1.Event{Event: ciliumView(&flows[i])}) {
							cilium = append(cilium, flows[i].UUID)
						}
					}
					if !slices.Equal(cilium, tc.Want) {
						t.Errorf("cilium selects %v, want %v", cilium, tc.Want)
					}
				}
			}
			if err != nil && !strings.Contains(err.Error(), `unknown protocol: "kafka"`) {
				t.Errorf("cilium refuses the filter: %v", err)
			}
		})
	}
}

func TestCompileRejects(t *testing.T) {
	unknown := &flowpb.FlowFilter{}
	unknown.ProtoReflect().SetUnknown(protowire.AppendVarint(protowire.AppendTag(nil, 4242, protowire.VarintType), 1))
	cases := []struct {
		name   string
		filter *flowpb.FlowFilter
		isErr  error
		text   string
	}{
		{"an unsupported field, naming it", &flowpb.FlowFilter{NodeLabels: []string{"a=b"}}, ErrUnsupportedField, "node_labels"},
		{"the encrypted field", &flowpb.FlowFilter{Encrypted: []bool{true}}, ErrUnsupportedField, "encrypted"},
		{"the snat ip field", &flowpb.FlowFilter{SourceIpXlated: []string{"1.2.3.4"}}, ErrUnsupportedField, "source_ip_xlated"},
		{"a CEL expression", &flowpb.FlowFilter{Experimental: &flowpb.FlowFilter_Experimental{CelExpression: []string{"true"}}}, ErrUnsupportedField, "experimental"},
		{"an unknown field from a newer client", unknown, ErrUnsupportedField, "unknown FlowFilter field"},
		{"a malformed IP", &flowpb.FlowFilter{SourceIp: []string{"10.0.0.300"}}, ErrInvalidFilter, "source_ip"},
		{"a malformed CIDR", &flowpb.FlowFilter{DestinationIp: []string{"10.0.0.0/33"}}, ErrInvalidFilter, "destination_ip"},
		{"a bad regexp", &flowpb.FlowFilter{HttpPath: []string{"("}}, ErrInvalidFilter, "http_path"},
		{"a bad status prefix", &flowpb.FlowFilter{HttpStatusCode: []string{"6+"}}, ErrInvalidFilter, "http_status_code"},
		{"a bad port", &flowpb.FlowFilter{SourcePort: []string{"70000"}}, ErrInvalidFilter, "source_port"},
		{"an unknown protocol", &flowpb.FlowFilter{Protocol: []string{"quic"}}, ErrInvalidFilter, "quic"},
		{"an empty pod name", &flowpb.FlowFilter{SourcePod: []string{""}}, ErrInvalidFilter, "source_pod"},
		{"a bad fqdn pattern", &flowpb.FlowFilter{SourceFqdn: []string{"exa mple.com"}}, ErrInvalidFilter, "source_fqdn"},
		{"a bad label selector", &flowpb.FlowFilter{SourceLabel: []string{"a in b"}}, ErrInvalidFilter, "source_label"},
		{"http fields with a non-l7 event type", &flowpb.FlowFilter{HttpMethod: []string{"GET"}, EventType: []*flowpb.EventTypeFilter{{Type: hubble.MsgTypeDrop}}}, ErrInvalidFilter, "l7"},
	}
	for _, tc := range cases {
		t.Run("rejects "+tc.name, func(t *testing.T) {
			_, err := Compile(tc.filter)
			if !errors.Is(err, tc.isErr) {
				t.Fatalf("err = %v, want %v", err, tc.isErr)
			}
			if !strings.Contains(err.Error(), tc.text) {
				t.Errorf("err %q does not mention %q", err, tc.text)
			}
		})
	}
}
