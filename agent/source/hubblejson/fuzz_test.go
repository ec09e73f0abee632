package hubblejson

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/flowbus/flowbus/schemas"
)

// FuzzLines: any input is read to its end without a panic, and every line is
// either a flow, a lost/skipped record, or counted as malformed; and on
// every line the fast path gives protojson's record or declines.
func FuzzLines(f *testing.F) {
	f.Add(`{"flow":{"uuid":"a","verdict":"FORWARDED","IP":{"source":"10.0.0.1","destination":"10.0.0.2"}}}` + "\n")
	f.Add(`{"lost_events":{"source":"HUBBLE_RING_BUFFER","num_events_lost":"3"}}` + "\n\n[]\n{")
	f.Add(`{"flow":{"IP":{"source":"::1::"},"l4":{"TCP":{"source_port":99999}}}}`)
	for _, l := range readLines(f, "testdata/observe.json") {
		f.Add(string(l))
	}
	for _, l := range randomLines(f, 3, 8) {
		f.Add(string(l) + "\n" + string(l))
	}
	d := newFastDecoder()
	f.Fuzz(func(t *testing.T, in string) {
		for _, line := range strings.Split(in, "\n") {
			if data := bytes.TrimSpace([]byte(line)); len(data) > 0 {
				compareDecoders(t, d, [][]byte{data})
			}
		}
		s, err := New(Config{Path: "-", Stdin: strings.NewReader(in), BatchSize: 3}, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		out := make(chan []schemas.Flow, 1<<16)
		if err := s.Run(context.Background(), out, nil); err != nil {
			t.Fatalf("Run: %v", err)
		}
		close(out)
		flows := 0
		for b := range out {
			flows += len(b)
		}
		lines := strings.Count(in, "\n")
		if !strings.HasSuffix(in, "\n") && len(strings.TrimSpace(in[strings.LastIndex(in, "\n")+1:])) > 0 {
			lines++
		}
		malformed := int(testutil.ToFloat64(s.malformed))
		if flows+malformed > lines {
			t.Fatalf("%d flows + %d malformed from %d lines", flows, malformed, lines)
		}
	})
}
