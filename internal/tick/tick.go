// Package tick puts the periodic work of a long-running flowbus process on
// one grid: a period d fires at the multiples of d (wall clock, as
// time.Truncate counts them), so timers of equal or dividing periods fire
// together. An idle agent is then woken once a second by its timers
// together (the aggregation window, the flow map's sweep, the endpoints
// file's check) rather than once by each at its own phase; every wakeup
// of an idle Go process also restarts the runtime's sysmon thread, which
// polls a few dozen times before it sleeps again (bench/HISTORY.md,
// "Idle").
package tick

import "time"

// Next is the first multiple of d after now; d > 0.
func Next(now time.Time, d time.Duration) time.Time {
	return now.Truncate(d).Add(d)
}

// Timer fires at the next multiple of its period; after each receive from
// C, Reset sets it for the one after.
type Timer struct {
	C <-chan time.Time
	t *time.Timer
	d time.Duration
}

// NewTimer is a Timer of period d (> 0), set for the first multiple of d.
func NewTimer(d time.Duration) *Timer {
	t := time.NewTimer(time.Until(Next(time.Now(), d)))
	return &Timer{C: t.C, t: t, d: d}
}

// Reset sets the timer for the next multiple of its period from now.
func (t *Timer) Reset() { t.t.Reset(time.Until(Next(time.Now(), t.d))) }

// Stop stops the timer.
func (t *Timer) Stop() { t.t.Stop() }
