//go:build linux

package socklb

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"
)

// requireBPF skips the test when it cannot load BPF programs and attach
// them to a cgroup.
func requireBPF(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to load BPF programs and create cgroups")
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		t.Skipf("cannot lift memlock limit for BPF: %v", err)
	}
}

// loadTest loads an LB, closed at the end of the test.
func loadTest(t testing.TB, cfg Config) *LB {
	t.Helper()
	requireBPF(t)
	lb, err := Load(cfg)
	if errors.Is(err, ebpf.ErrNotSupported) {
		t.Skipf("BPF feature missing: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lb.Close() })
	return lb
}

// cgroup2Root is where the cgroup v2 hierarchy is mounted
// (/sys/fs/cgroup, or /sys/fs/cgroup/unified on a hybrid host).
func cgroup2Root(t testing.TB) string {
	t.Helper()
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Skipf("read mountinfo: %v", err)
	}
	for line := range strings.Lines(string(data)) {
		pre, post, ok := strings.Cut(line, " - ")
		if !ok {
			continue
		}
		if f := strings.Fields(post); len(f) > 0 && f[0] == "cgroup2" {
			if pf := strings.Fields(pre); len(pf) > 4 {
				return pf[4]
			}
		}
	}
	t.Skip("needs a cgroup v2 hierarchy (none mounted)")
	return ""
}

// testCgroup is a fresh cgroup v2 directory, removed in t.Cleanup once its
// processes have exited.
type testCgroup struct {
	Path string
	ID   uint64 // the cgroup id: the directory's inode
}

func newCgroup(t testing.TB) testCgroup {
	t.Helper()
	var rb [4]byte
	rand.Read(rb[:])
	p := cgroup2Root(t) + "/flowbus-socklb-" + hex.EncodeToString(rb[:])
	if err := os.Mkdir(p, 0o755); err != nil {
		t.Fatalf("create cgroup: %v", err)
	}
	t.Cleanup(func() {
		for range 50 {
			if err := os.Remove(p); err == nil || errors.Is(err, os.ErrNotExist) {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Errorf("cgroup %s not removed", p)
	})
	var st unix.Stat_t
	if err := unix.Stat(p, &st); err != nil {
		t.Fatal(err)
	}
	return testCgroup{Path: p, ID: st.Ino}
}

func TestSockLBLoadAttachClose(t *testing.T) {
	lb := loadTest(t, Config{MaglevM: 251})
	cg := newCgroup(t)
	if err := lb.AttachCgroup(cg.Path); err != nil {
		t.Fatal(err)
	}
	if err := lb.AttachCgroup(cg.Path + "/nonexistent"); err == nil {
		t.Fatal("attach to a missing cgroup did not fail")
	}
	if err := lb.Close(); err != nil {
		t.Fatal(err)
	}
	var ev Event
	if err := lb.ReadEvent(&ev); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("ReadEvent after Close: %v, want os.ErrClosed", err)
	}
	if _, err := Load(Config{MaglevM: 16383}); err == nil || !strings.Contains(err.Error(), "not a prime") {
		t.Fatalf("Load with M 16383: %v, want not a prime", err)
	}
}
