package ocsf

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

func readLines(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) == 0 {
		return nil
	}
	if b[len(b)-1] != '\n' {
		t.Fatalf("%s does not end with a newline", path)
	}
	return strings.Split(string(b[:len(b)-1]), "\n")
}

// TestFileSinkRotates: size and age rotation, atomic renames with sortable
// names, MaxFiles, and every event in exactly one file, in order.
func TestFileSinkRotates(t *testing.T) {
	dir := t.TempDir()
	clk := &fakeClock{time.Date(2026, 12, 6, 7, 0, 0, 0, time.UTC)}
	s, err := OpenFile(FileConfig{Dir: dir, MaxBytes: 120, MaxAge: time.Minute, MaxFiles: 3, Now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	ev := func(i int) []byte { return fmt.Appendf(nil, `{"i":%03d,"pad":"%s"}`, i, strings.Repeat("x", 20)) } // 38 bytes + newline
	for i := range 6 {                                                                                        // 3 lines fit in 120 bytes (4 would not): rotation before events 3 (size)
		if err := s.Write(ev(i)); err != nil {
			t.Fatal(err)
		}
		clk.t = clk.t.Add(time.Second)
	}
	clk.t = clk.t.Add(time.Minute) // age: rotation before event 6
	if err := s.Write(ev(6)); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	rotated, _ := s.Rotated()
	var names []string
	for _, r := range rotated {
		names = append(names, filepath.Base(r))
	}
	want := []string{"flowbus-ocsf-20261206T070003.000000000Z.jsonl", "flowbus-ocsf-20261206T070106.000000000Z.jsonl"}
	if fmt.Sprint(names) != fmt.Sprint(want) {
		t.Errorf("rotated %q, want %q", names, want)
	}
	var got []string
	for _, p := range append(rotated, s.ActivePath()) {
		got = append(got, readLines(t, p)...)
	}
	if len(got) != 7 {
		t.Fatalf("%d lines, want 7", len(got))
	}
	for i, l := range got {
		if l != string(ev(i)) {
			t.Errorf("line %d: %s", i, l)
		}
	}
	if st := s.Stats(); st != (FileStats{Events: 7, Bytes: 7 * 39, Rotations: 2}) {
		t.Errorf("stats %+v", st)
	}

	// Reopening rotates the left-over active file; MaxFiles 3 keeps the newest 3.
	clk.t = clk.t.Add(time.Hour)
	s, err = OpenFile(FileConfig{Dir: dir, MaxBytes: 120, MaxAge: time.Minute, MaxFiles: 3, Now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 4 {
		_ = s.Write(ev(i))
	}
	_ = s.Close()
	rotated, _ = s.Rotated()
	if len(rotated) != 3 || filepath.Base(rotated[0]) != want[1] {
		t.Errorf("after reopen: %q", rotated)
	}
	if st := s.Stats(); st.Removed != 1 || st.Rotations != 2 {
		t.Errorf("stats %+v", st)
	}
}

// TestFileSinkReadWhileWritten: a reader following the active file while it
// is written finds whole events in every line up to the last newline.
func TestFileSinkReadWhileWritten(t *testing.T) {
	dir := t.TempDir()
	s, err := OpenFile(FileConfig{Dir: dir, MaxBytes: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 20000 {
			if err := s.Write(fmt.Appendf(nil, `{"i":%d,"pad":"%s"}`, i, strings.Repeat("y", i%300))); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	reads := 0
	for stop := false; !stop; reads++ {
		select {
		case <-done:
			stop = true
		default:
		}
		b, err := os.ReadFile(s.ActivePath())
		if err != nil {
			t.Fatal(err)
		}
		b = b[:bytes.LastIndexByte(b, '\n')+1] // the documented rule: whole lines only
		for n, l := range bytes.Split(bytes.TrimSuffix(b, []byte("\n")), []byte("\n")) {
			if len(l) > 0 && (l[0] != '{' || l[len(l)-1] != '}') {
				t.Fatalf("read %d line %d: %q", reads, n, l)
			}
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if got := len(readLines(t, s.ActivePath())); got != 20000 {
		t.Errorf("%d lines", got)
	}
}

// TestFileSinkSync: Sync writes the buffered events to the active file.
func TestFileSinkSync(t *testing.T) {
	s, err := OpenFile(FileConfig{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, e := range []string{`{"a":1}`, `{"b":2}`} {
		if err := s.Write([]byte(e)); err != nil {
			t.Fatal(err)
		}
	}
	if got := readLines(t, s.ActivePath()); len(got) != 0 {
		t.Fatalf("before Sync the file holds %q; want the events still buffered", got)
	}
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	if got := readLines(t, s.ActivePath()); strings.Join(got, ",") != `{"a":1},{"b":2}` {
		t.Errorf("after Sync: %q", got)
	}
}
