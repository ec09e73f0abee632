package nats

import (
	"errors"
	"os"
	"testing"

	"github.com/nats-io/nats-server/v2/server/pse"
)

// The linked variable is pse's own: its path names this process before
// the stop (a linkname whose target was renamed would be a new, empty
// variable here), and pse reads no more after it.
func TestStopServerSampling(t *testing.T) {
	var cpu float64
	var rss, vss int64
	if err := pse.ProcUsage(&cpu, &rss, &vss); err != nil {
		t.Fatalf("pse before the stop: %v", err)
	}
	if rss <= 0 {
		t.Fatalf("pse before the stop: rss %d", rss)
	}
	if _, err := os.Stat(pseProcStatFile); err != nil {
		t.Fatalf("pse's path %q: %v (the go:linkname target moved?)", pseProcStatFile, err)
	}
	before := pseProcStatFile
	StopServerSampling()
	StopServerSampling()
	if len(pseProcStatFile) != len(before) {
		t.Fatalf("path length %d, was %d", len(pseProcStatFile), len(before))
	}
	err := pse.ProcUsage(&cpu, &rss, &vss)
	if err == nil {
		t.Fatal("pse still reads the process's stat file after the stop")
	}
	if errors.Is(err, os.ErrNotExist) {
		t.Fatalf("pse's read failed with %v; want the open's refusal of a NUL byte", err)
	}
}
