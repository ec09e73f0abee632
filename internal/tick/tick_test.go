package tick

import (
	"testing"
	"time"
)

func TestNext(t *testing.T) {
	base := time.Date(2026, 12, 6, 17, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		now  time.Duration
		d    time.Duration
		want time.Duration
	}{
		{0, time.Second, time.Second}, // on the grid: the next one
		{1, time.Second, time.Second},
		{999 * time.Millisecond, time.Second, time.Second},
		{time.Second + 300*time.Millisecond, 2 * time.Second, 2 * time.Second},
		{3*time.Second + 1, 2 * time.Second, 4 * time.Second},
		{120 * time.Millisecond, 500 * time.Millisecond, 500 * time.Millisecond},
	} {
		if got := Next(base.Add(c.now), c.d); !got.Equal(base.Add(c.want)) {
			t.Errorf("Next(+%v, %v) = +%v, want +%v", c.now, c.d, got.Sub(base), c.want)
		}
	}
}

// A Timer fires once per multiple of its period: never twice in one (a
// late receive only skips ahead).
func TestTimerFiresOncePerMultiple(t *testing.T) {
	const d = 20 * time.Millisecond
	tm := NewTimer(d)
	defer tm.Stop()
	var prev time.Time
	for range 4 {
		at := <-tm.C
		tm.Reset()
		slot := at.Truncate(d)
		if !slot.After(prev) {
			t.Fatalf("fired at %v, in the multiple of %v it fired in before (%v)", at, d, prev)
		}
		prev = slot
	}
}
