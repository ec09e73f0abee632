//go:build linux

package spool

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestSpoolFullDiskKeepsSegmentsWhole fills a 64 KiB tmpfs under the spool
// until Append fails with ENOSPC, gives the disk room again and appends
// more: every message whose Append returned nil reads back in order, none
// is corrupt, and a reopened spool finds no torn tail nor corrupt record.
// Before the fix a record cut by the full disk stayed in the segment file
// behind the spool's back: the next records were written after it and read
// back as corrupt (the rest of the segment dropped).
func TestSpoolFullDiskKeepsSegmentsWhole(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: mounts a small tmpfs")
	}
	dir := filepath.Join(t.TempDir(), "spool")
	if err := os.Mkdir(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=64k"); err != nil {
		t.Skipf("cannot mount a tmpfs: %v", err)
	}
	t.Cleanup(func() { _ = syscall.Unmount(dir, syscall.MNT_DETACH) })

	s, reg := open(t, dir, Config{SegmentBytes: 1 << 20, MaxBytes: 1 << 30})
	var ok []uint64
	failed := 0
	seq := uint64(1)
	for ; failed < 3; seq++ {
		m := msg(seq, 3000) // records do not divide the disk: one is cut
		if err := s.Append(&m); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("Append seq %d on a full disk: %v, want ENOSPC", seq, err)
			}
			failed++
			continue
		}
		ok = append(ok, seq)
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", syscall.MS_REMOUNT, "size=1m"); err != nil {
		t.Fatal(err)
	}
	for range 5 {
		appendAll(t, s, msg(seq, 3000))
		ok = append(ok, seq)
		seq++
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2, reg2 := open(t, dir, Config{SegmentBytes: 1 << 20, MaxBytes: 1 << 30})
	if n := testutil.ToFloat64(s2.torn) + testutil.ToFloat64(s2.corrupt); n != 0 {
		t.Errorf("reopened: %v torn tails or corrupt records, want 0", n)
	}
	got := drain(t, s2, 4)
	if len(got) != len(ok) {
		t.Fatalf("read back %d messages %v, want the %d appended %v", len(got), got, len(ok), ok)
	}
	for i := range got {
		if got[i] != ok[i] {
			t.Fatalf("message %d is seq %d, want %d", i, got[i], ok[i])
		}
	}
	_, _ = reg, reg2
}
