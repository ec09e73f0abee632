package agent

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/cilium/cilium/api/v1/observer"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/flowbus/flowbus/agent/aggregate"
	"github.com/flowbus/flowbus/agent/source/hubblejson"
	"github.com/flowbus/flowbus/agent/source/synthetic"
	"github.com/flowbus/flowbus/schemas"
	"github.com/flowbus/flowbus/schemas/hubble"
)

// TestHubbleJSONFileThroughTheAgent writes synthetic flows as Hubble
// exporter lines with malformed lines between them, runs the agent on the
// file without aggregation, and checks that every good flow comes out of
// the bus equal to what was written.
func TestHubbleJSONFileThroughTheAgent(t *testing.T) {
	g, _ := synthetic.NewGenerator(synthetic.Config{Seed: 9, Start: time.Unix(1_700_000_000, 0)})
	want := make([]schemas.Flow, 500)
	g.Fill(want)
	var lines []string
	for i := range want {
		b, err := protojson.Marshal(&observer.GetFlowsResponse{
			NodeName:      want[i].NodeName,
			ResponseTypes: &observer.GetFlowsResponse_Flow{Flow: hubble.ToProto(&want[i])},
		})
		if err != nil {
			t.Fatal(err)
		}
		lines = append(lines, string(b))
		if i%100 == 50 {
			lines = append(lines, `{"flow": {"verdict": `, "", string(b[:len(b)/3]))
		}
	}
	path := filepath.Join(t.TempDir(), "hubble.log")
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	src, err := hubblejson.New(hubblejson.Config{Path: path}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := runAgent(t, context.Background(), src, aggregate.Config{Disabled: true})
	got := map[string]schemas.Flow{}
	for _, f := range b.flows {
		got[f.UUID] = f
	}
	if len(b.flows) != len(want) || len(got) != len(want) {
		t.Fatalf("%d flows (%d distinct) came out, want %d", len(b.flows), len(got), len(want))
	}
	for i := range want {
		w := want[i]
		w.Count = 1
		g := got[w.UUID]
		g.Count = 1
		if !reflect.DeepEqual(g, w) {
			t.Fatalf("flow %s changed on the way:\n got %+v\nwant %+v", w.UUID, g, w)
		}
	}
}
