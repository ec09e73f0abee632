//go:build linux

package socklb

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
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

// A decision's time lies between the kernel's coarse stamp (the last tick
// before it) and the earlier of its read and one tick after the stamp.
func TestDecisionTime(t *testing.T) {
	const tick = 4_000_000
	for _, c := range []struct{ coarse, read, want int64 }{
		{coarse: 1_000_000_000, read: 1_000_050_000, want: 1_000_050_000}, // read within the tick: the read
		{coarse: 1_000_000_000, read: 1_000_000_000, want: 1_000_000_000},
		{coarse: 1_000_000_000, read: 1_004_000_000, want: 1_004_000_000},
		{coarse: 1_000_000_000, read: 1_050_000_000, want: 1_004_000_000}, // read late (batched): one tick after the stamp
		{coarse: 1_000_000_000, read: 999_000_000, want: 1_000_000_000},   // a read stamped before the kernel's (clock stepped): the stamp
	} {
		if got := decisionTime(c.coarse, tick, c.read); got != c.want {
			t.Errorf("decisionTime(%d, %d, %d) = %d, want %d", c.coarse, tick, c.read, got, c.want)
		}
	}
	if tk := coarseTick(); tk < 1_000_000 || tk > 10_000_000 {
		t.Errorf("CLOCK_MONOTONIC_COARSE resolution %d ns: want a tick, 1 to 10 ms", tk)
	}
}

// decode tells the two record layouts apart by size, maps an IPv4 one's
// addresses, and refuses any other size with both sizes named.
func TestDecodeEventRecords(t *testing.T) {
	l := &LB{tick: 4_000_000}
	r4 := sockSockEvent4{TsNs: 5, Cookie: 7, CgroupId: 9, Pid: 11, SvcId: 3, BackendId: 2,
		OrigPort: nport(80), BackendPort: nport(8080), Protocol: unix.IPPROTO_TCP, Family: 4,
		Verdict: uint8(Translated), Hook: uint8(HookConnect),
		OrigAddr: addrWords(netip.MustParseAddr("10.96.0.10"))[3], BackendAddr: addrWords(netip.MustParseAddr("10.1.0.7"))[3]}
	b, err := binary.Append(nil, binary.LittleEndian, r4)
	if err != nil {
		t.Fatal(err)
	}
	if len(b)+8 != 64 {
		t.Fatalf("an IPv4 record with its ring header is %d bytes, want one cache line (64)", len(b)+8)
	}
	var ev Event
	if err := l.decode(b, &ev, 1005); err != nil {
		t.Fatal(err)
	}
	want := Event{Time: time.Unix(0, 1005), MonoNs: 5, Cookie: 7, CgroupID: 9, PID: 11, ServiceID: 3,
		Frontend: netip.MustParseAddrPort("10.96.0.10:80"), Proto: unix.IPPROTO_TCP,
		Backend: netip.MustParseAddrPort("10.1.0.7:8080"), BackendID: 2, Family: 4, Verdict: Translated, Hook: HookConnect}
	if ev != want {
		t.Fatalf("decoded\n%+v, want\n%+v", ev, want)
	}
	r6 := sockSockEvent6{Family: 6, SvcId: 4, OrigPort: nport(53), Protocol: unix.IPPROTO_UDP, Verdict: uint8(NoBackend),
		Hook: uint8(HookSendmsg), OrigAddr: addrWords(netip.MustParseAddr("fd00::a"))}
	b6, err := binary.Append(nil, binary.LittleEndian, r6)
	if err != nil {
		t.Fatal(err)
	}
	if len(b6)+8 != 128 {
		t.Fatalf("an IPv6 record with its ring header is %d bytes, want two cache lines (128)", len(b6)+8)
	}
	if err := l.decode(b6, &ev, 0); err != nil {
		t.Fatal(err)
	}
	if ev.Frontend != netip.MustParseAddrPort("[fd00::a]:53") || ev.Backend.IsValid() || ev.Verdict != NoBackend {
		t.Fatalf("IPv6 refusal decoded as %+v", ev)
	}
	for _, n := range []int{0, 55, 57, len(b6) - 1} {
		err := l.decode(make([]byte, n), &ev, 0)
		if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("event of %d bytes, want 56 (IPv4) or 120 (IPv6)", n)) {
			t.Errorf("a %d-byte record: %v", n, err)
		}
	}
}
