//go:build linux

package bpfpin

import (
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
)

// bpffs mounts a BPF filesystem of the test's own (the host's /sys/fs/bpf
// may not be one, and is shared), unmounted in t.Cleanup.
func bpffs(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a BPF filesystem and create maps")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "bpf", "bpf", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a BPF filesystem: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", dir).Run() })
	return dir
}

func newMap(t *testing.T) *ebpf.Map {
	t.Helper()
	m, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Hash, KeySize: 4, ValueSize: 4, MaxEntries: 4})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// Pin replaces a stale pin; Unpin leaves a pin another process's map
// replaced ours with, and removes the directory once empty; Open reads
// the maps and names a missing one.
func TestPinReplacesStaleAndUnpinsOnlyItsOwn(t *testing.T) {
	root := bpffs(t)
	dir := filepath.Join(root, "flowbus", "node-1")
	stale, ours, other := newMap(t), newMap(t), newMap(t)
	if err := Pin(dir, map[string]*ebpf.Map{"a": stale}); err != nil {
		t.Fatal(err)
	}
	if err := ours.Put(uint32(1), uint32(42)); err != nil {
		t.Fatal(err)
	}
	mine := map[string]*ebpf.Map{"a": ours, "b": newMap(t)}
	if err := Pin(dir, mine); err != nil {
		t.Fatalf("pin over a stale pin: %v", err)
	}
	if err := Pin(dir, mine); err != nil {
		t.Fatalf("pin again: %v", err)
	}
	ms, err := Open(dir, "a", "b")
	if err != nil {
		t.Fatal(err)
	}
	var v uint32
	if err := ms["a"].Lookup(uint32(1), &v); err != nil || v != 42 {
		t.Errorf("pinned a: %d, %v; want ours (42)", v, err)
	}
	Close(ms)
	if _, err := Open(dir, "a", "c"); !errors.Is(err, ErrNotPinned) || !strings.Contains(err.Error(), dir+"/c") {
		t.Errorf("open of a missing map: %v", err)
	}
	// Another agent takes b over.
	if err := Pin(dir, map[string]*ebpf.Map{"b": other}); err != nil {
		t.Fatal(err)
	}
	if err := Unpin(dir, mine); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "a")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a still pinned: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "b")); err != nil {
		t.Errorf("the other's b was removed: %v", err)
	}
	if err := Unpin(dir, map[string]*ebpf.Map{"b": other}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("directory left: %v", err)
	}
}

func TestPinNeedsABPFFilesystem(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to create a map")
	}
	dir := filepath.Join(t.TempDir(), "x", "y")
	err := Pin(dir, map[string]*ebpf.Map{"a": newMap(t)})
	if err == nil || !strings.Contains(err.Error(), "is not on a BPF filesystem (mount one: mount -t bpf bpf ") {
		t.Errorf("pin on tmpfs: %v", err)
	}
}
