package ocsf

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/flowbus/flowbus/sinks/bus"
)

// recordingPublisher keeps what it acknowledged; fail makes the next call
// fail.
type recordingPublisher struct {
	got   []bus.Record
	calls []int
	fail  error
}

func (p *recordingPublisher) PublishRecords(_ context.Context, recs []bus.Record) error {
	if p.fail != nil {
		err := p.fail
		p.fail = nil
		return err
	}
	p.calls = append(p.calls, len(recs))
	for _, r := range recs {
		r.Value = slices.Clone(r.Value)
		p.got = append(p.got, r)
	}
	return nil
}

// TestBusSinkBatchesCopiesAndKeepsWhatFailed: events are copied (the
// caller reuses its buffer), published in batches of at most BatchEvents
// and BatchBytes with their key, ID and class headers, and a batch that
// was not acknowledged is published again, whole and in order, by the next
// Flush.
func TestBusSinkBatchesCopiesAndKeepsWhatFailed(t *testing.T) {
	p := &recordingPublisher{}
	s, err := NewBus(BusConfig{Publisher: p, Name: "kafka topic t", BatchEvents: 4, BatchBytes: 64})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	buf := make([]byte, 0, 64)
	classes := []int{ClassNetworkActivity, ClassHTTPActivity, ClassDNSActivity}
	for i := range 10 {
		buf = fmt.Appendf(buf[:0], `{"i":%d,"pad":"%s"}`, i, strings.Repeat("x", i))
		if err := s.Write(ctx, buf, fmt.Sprintf("ns/w%d", i%2), classes[i%3], fmt.Sprintf("id-%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	p.fail = errors.New("broker down")
	if err := s.Flush(ctx); err == nil || err.Error() != "ocsf to kafka topic t: 2 events not acknowledged: broker down" {
		t.Fatalf("Flush = %v", err)
	}
	if s.Held() != 2 {
		t.Fatalf("%d events held after the failure, want 2", s.Held())
	}
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	// Events of 16 to 25 bytes: the 64-byte bound cuts batches of 3, 3 and 2
	// before the 4-event bound does; the last 2 are the second Flush's.
	if want := []int{3, 3, 2, 2}; !slices.Equal(p.calls, want) {
		t.Errorf("batches %v, want %v", p.calls, want)
	}
	for i, r := range p.got {
		want := fmt.Sprintf(`{"i":%d,"pad":"%s"}`, i, strings.Repeat("x", i))
		hs := [][2]string{{"content-type", "application/json"}, {"flowbus-schema", "ocsf/1.8.0"}, {"ocsf-class-uid", fmt.Sprint(classes[i%3])}}
		if string(r.Value) != want || r.Key != fmt.Sprintf("ns/w%d", i%2) || r.ID != fmt.Sprintf("id-%d", i) || !slices.Equal(r.Headers, hs) {
			t.Errorf("record %d: %+v, want value %s", i, r, want)
		}
	}
	if st := s.Stats(); st != (BusStats{Published: 10, Batches: 4}) {
		t.Errorf("stats %+v", st)
	}
}
