package main

import (
	"bufio"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	observerpb "github.com/cilium/cilium/api/v1/observer"
	"google.golang.org/protobuf/encoding/protojson"
)

// TestStdoutBusPrintsFlowsInTimeOrder: `--bus stdout` prints the flows of
// a time-ordered source in time order although they go to many partitions
// (destination workloads) and, aggregated, are folded per window: a
// `--since` over the output (a replay) then misses nothing. With and
// without aggregation.
func TestStdoutBusPrintsFlowsInTimeOrder(t *testing.T) {
	for _, mode := range [][]string{
		{"--aggregate-window", "100ms"},
		{"--no-aggregate"},
	} {
		t.Run(strings.Join(mode, " "), func(t *testing.T) {
			var out, errb strings.Builder
			args := append([]string{"--source", "synthetic", "--count", "40000", "--rate", "20000", "--seed", "7", "--bus", "stdout",
				"--node", "n1", "--observer-address", "", "--metrics-address", "", "--spool-dir", "off", "--linger", "300ms"}, mode...)
			if err := runAgent(context.Background(), args, cmdIO{Stdout: &out, Stderr: &errb, Log: slog.New(slog.DiscardHandler)}); err != nil {
				t.Fatalf("agent: %v\n%s", err, errb.String())
			}
			var last time.Time
			lines, backward := 0, 0
			var worst time.Duration
			workloads := map[string]bool{}
			sc := bufio.NewScanner(strings.NewReader(out.String()))
			sc.Buffer(nil, 1<<20)
			for sc.Scan() {
				var r observerpb.GetFlowsResponse
				if err := protojson.Unmarshal(sc.Bytes(), &r); err != nil {
					t.Fatalf("line %d %q: %v", lines+1, sc.Text(), err)
				}
				lines++
				workloads[r.GetFlow().GetDestination().GetNamespace()+"/"+r.GetFlow().GetDestination().GetPodName()] = true
				ts := r.GetTime().AsTime()
				if ts.Before(last) {
					backward++
					worst = max(worst, last.Sub(ts))
				}
				last = ts
			}
			if lines == 0 || len(workloads) < 5 {
				t.Fatalf("%d lines to %d workloads: the input is not multi-partition", lines, len(workloads))
			}
			if backward != 0 {
				t.Errorf("%d of %d lines go back in time, by up to %v", backward, lines, worst)
			}
		})
	}
}
