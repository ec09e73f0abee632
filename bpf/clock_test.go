//go:build linux

package bpf

import (
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func coarseNow(t *testing.T) uint64 {
	t.Helper()
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC_COARSE, &ts); err != nil {
		t.Fatal(err)
	}
	return uint64(ts.Nano())
}

// TestLastSeenIsCoarseMonotonic checks the jiffies clock of the established
// path: after calibration, jiffies * tick_ns + jiffies_base_ns is the coarse
// CLOCK_MONOTONIC time, so every packet's last_seen lies between the coarse
// clock read just before and just after it, give or take the tick it may
// straddle (the jiffies and the coarse clock advance in the same tick
// handler, not atomically together). A wrong tick length would be off by
// seconds (jiffies count from ~2^32), a wrong offset by its error.
func TestLastSeenIsCoarseMonotonic(t *testing.T) {
	objs := loadTest(t, loadOptions{ringBufSize: 1 << 16, maxFlows: 64})
	tick, err := tickNs()
	if err != nil {
		t.Fatal(err)
	}
	if tick < uint64(time.Microsecond) || tick > uint64(100*time.Millisecond) {
		t.Fatalf("tick %v: not a kernel HZ", time.Duration(tick))
	}

	start := uint64(MonoNow())
	run(t, objs.FlowIngress, ipv4("10.0.0.1", "10.0.0.2", tcp(40000, 80, syn, 0)))
	afterSyn := uint64(MonoNow())
	var prev uint64
	for i := range 4 {
		// 1.5 ticks apart, so the packets land in different ticks.
		time.Sleep(time.Duration(tick * 3 / 2))
		before := coarseNow(t)
		run(t, objs.FlowIngress, ipv4("10.0.0.1", "10.0.0.2", tcp(40000, 80, ack, 10)))
		after := coarseNow(t)

		flows := flowsIn(t, objs)
		if len(flows) != 1 {
			t.Fatalf("packet %d: %d flows in the map, want 1", i, len(flows))
		}
		for _, st := range flows {
			if st.FirstSeenNs < start || st.FirstSeenNs > afterSyn {
				t.Fatalf("first_seen %d outside the precise clock around the SYN [%d, %d]",
					st.FirstSeenNs, start, afterSyn)
			}
			if st.LastSeenNs+tick < before || st.LastSeenNs > after+tick {
				t.Fatalf("packet %d: last_seen %d not within a tick (%v) of the coarse clock around it [%d, %d]",
					i, st.LastSeenNs, time.Duration(tick), before, after)
			}
			if st.LastSeenNs <= prev {
				t.Fatalf("packet %d: last_seen %d did not advance past %d after 1.5 ticks", i, st.LastSeenNs, prev)
			}
			prev = st.LastSeenNs
			if st.Packets[0] != uint64(i+2) {
				t.Fatalf("packet %d: %d packets counted, want %d", i, st.Packets[0], i+2)
			}
		}
	}

	// The event decodes last_seen to wall time after first_seen.
	var ev Event
	for k, st := range flowsIn(t, objs) {
		ev.fill(EventFlush, &k, &st, MonoToUnix())
	}
	if d := ev.LastSeenNs - ev.FirstSeenNs; d < int64(4*tick) || d > int64(time.Second) {
		t.Fatalf("event spans %v from first to last packet, want at least 4 ticks of sleep (%v)",
			time.Duration(d), time.Duration(4*tick))
	}
}

// TestCalibrateClockIsStable checks that calibration finds the same
// jiffies offset each time, within one tick and a quarter: the tick
// handler's latency moves it, and on a loaded machine a late tick (jiffies
// caught up in one step) moves it by a whole tick, the clock's documented
// resolution, with that latency on top (seen: a tick and 1 µs).
func TestCalibrateClockIsStable(t *testing.T) {
	objs := loadTest(t, loadOptions{ringBufSize: 1 << 16, maxFlows: 64})
	tick, err := tickNs()
	if err != nil {
		t.Fatal(err)
	}
	var first uint64
	if err := objs.JiffiesBaseNs.Get(&first); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		time.Sleep(time.Duration(tick))
		if err := calibrateClock(objs.ClockCalibrate); err != nil {
			t.Fatal(err)
		}
		var base uint64
		if err := objs.JiffiesBaseNs.Get(&base); err != nil {
			t.Fatal(err)
		}
		if d, limit := int64(base-first), int64(tick+tick/4); d < -limit || d > limit {
			t.Fatalf("calibration %d: offset moved by %v, more than a tick and a quarter (%v)", i, time.Duration(d), time.Duration(limit))
		}
	}
}
