package hubblegrpc

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"
)

func TestResumePointAndOverlap(t *testing.T) {
	now := time.Now()
	r := newResume(2*time.Second, 8)
	if _, ok := r.since(now); ok {
		t.Fatal("a fresh state resumes")
	}
	sec := int64(time.Second)
	for i := range 5 {
		r.delivered("node-a", int64(i+10)*sec, uint64(100+i), now)
	}
	r.delivered("node-b", 3*sec, 200, now.Add(-2*time.Minute)) // quiet for two minutes
	if s, _ := r.since(now); s != 12*sec {
		t.Errorf("since %v, want 12 s (node-a's newest 14 s minus 2 s; node-b is not active)", time.Duration(s))
	}
	r.delivered("node-b", 13*sec, 201, now)
	if s, _ := r.since(now); s != 11*sec {
		t.Errorf("since %v, want 11 s (node-b's newest 13 s minus 2 s)", time.Duration(s))
	}

	t.Run("a stream that sends the delivered flows again has them dropped", func(t *testing.T) {
		r.begin(11 * sec)
		for _, f := range []struct {
			node     string
			ts       int64
			key      uint64
			dup, gap bool
		}{
			{"node-a", 11 * sec, 101, true, false},
			{"node-a", 14 * sec, 104, true, false}, // node-a's last: continuity confirmed
			{"node-a", 15 * sec, 105, false, false},
			{"node-b", 12 * sec, 300, false, true}, // new, before node-b's last came again: a gap
			{"node-b", 13 * sec, 201, true, false},
		} {
			dup, gap := r.check(f.node, f.ts, f.key)
			if dup != f.dup || gap != f.gap {
				t.Errorf("%s %d: dup %v gap %v, want %v %v", f.node, f.key, dup, gap, f.dup, f.gap)
			}
		}
	})

	t.Run("a full history moves the resume point past what it forgot", func(t *testing.T) {
		for i := range 8 {
			r.delivered("node-a", int64(20+i)*sec, uint64(400+i), now)
		}
		// The 8-entry history forgot every flow up to 14 s: resuming at
		// node-b's 11 s could not recognise them, so it starts after 14 s.
		if s, _ := r.since(now); s != 14*sec+1 {
			t.Errorf("since %v, want just after 14 s, the newest forgotten flow", time.Duration(s))
		}
	})
}

// The history keeps what a resume could send again (the overlap), not
// every flow up to its cap.
func TestHistoryForgetsWhatNoResumeNeeds(t *testing.T) {
	now := time.Now()
	r := newResume(2*time.Second, 1<<20)
	const n, step = 100_000, int64(100 * time.Microsecond) // 10 s of flows
	for i := range n {
		r.delivered("node-a", int64(i)*step, uint64(i), now)
	}
	kept := r.n
	if min, max := int(2*time.Second)/int(step), int(2*time.Second)/int(step)+pruneEvery; kept < min || kept > max {
		t.Errorf("%d flows remembered, want the 2 s overlap's %d to %d", kept, min, max)
	}
	s, _ := r.since(now)
	if want := int64(n-1)*step - int64(2*time.Second); s != want {
		t.Errorf("since %d, want %d", s, want)
	}
}

func TestResumeStateFileRoundTrip(t *testing.T) {
	now := time.Unix(1_800_000_000, 0).UTC()
	r := newResume(time.Second, 1000)
	for i := range 300 {
		node := []string{"node-0", "node-1", "node-2"}[i%3]
		r.delivered(node, int64(i)*1000, flowKey(node, "uuid-"+string(rune('a'+i%26)), nil)+uint64(i), now)
	}
	path := filepath.Join(t.TempDir(), "state", "hubble.state")
	if err := r.save(path, "relay:4245", now); err != nil {
		t.Fatal(err)
	}
	got := newResume(time.Second, 1000)
	if err := got.load(path, "relay:4245"); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.nodes, r.nodes) || got.n != r.n || got.evictedMax != r.evictedMax {
		t.Errorf("loaded state differs:\n got %+v\nwant %+v", got.nodes, r.nodes)
	}
	s1, _ := got.since(now)
	s2, _ := r.since(now)
	if s1 != s2 {
		t.Errorf("since %d after load, %d before", s1, s2)
	}
	if err := got.load(path, "other:4245"); !errors.Is(err, errOtherServer) {
		t.Errorf("loading another server's state: %v", err)
	}
	if err := os.WriteFile(path, []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := got.load(path, "relay:4245"); err == nil {
		t.Error("a corrupt state file loads")
	}
	if err := newResume(time.Second, 10).load(filepath.Join(t.TempDir(), "none"), "x"); err != nil {
		t.Errorf("a missing file: %v", err)
	}
}

func TestFlowKeyIsStableAndSeparatesNodes(t *testing.T) {
	if a, b := flowKey("node-a", "u1", nil), flowKey("node-a", "u1", nil); a != b {
		t.Error("same flow, different keys")
	}
	if flowKey("node-a", "u1", nil) == flowKey("node-b", "u1", nil) {
		t.Error("the node name is not part of the key")
	}
	enc := func() []byte { return []byte{1, 2, 3} }
	if flowKey("node-a", "", enc) == flowKey("node-a", "", func() []byte { return []byte{1, 2, 4} }) {
		t.Error("flows without UUID are not told apart by their encoding")
	}
	// Pinned: the state file of one version must be read by the next.
	if got := flowKey("node-a", "3f1c", nil); got != 0x3adafc20298c5471 {
		t.Errorf("flowKey changed: %#x", got)
	}
}
