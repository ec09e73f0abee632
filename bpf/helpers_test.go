package bpf

import (
	"errors"
	"os"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/rlimit"
)

// tcxNext is TCX_NEXT (-1) as BPF_PROG_TEST_RUN returns it.
const tcxNext = 0xffffffff

// requireBPF skips the test when BPF programs cannot be loaded here.
func requireBPF(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to load BPF programs")
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		t.Skipf("cannot lift memlock limit for BPF: %v", err)
	}
}

// loadTest loads fresh objects, closed at the end of the test.
func loadTest(t testing.TB, o loadOptions) *bpfObjects {
	t.Helper()
	requireBPF(t)
	objs, err := loadObjects(o)
	if errors.Is(err, ebpf.ErrNotSupported) {
		t.Skipf("BPF feature missing: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { objs.Close() })
	return objs
}

// run passes one packet through prog and requires the pass verdict.
func run(t testing.TB, prog *ebpf.Program, pkt []byte) {
	t.Helper()
	ret, err := prog.Run(&ebpf.RunOptions{Data: pkt})
	if err != nil {
		t.Fatalf("prog run: %v", err)
	}
	if ret != tcxNext {
		t.Fatalf("program returned %#x, want TCX_NEXT", ret)
	}
}

// flowsIn returns the flows map contents.
func flowsIn(t testing.TB, m *ebpf.Map) map[bpfFlowKey]bpfFlowStats {
	t.Helper()
	out := map[bpfFlowKey]bpfFlowStats{}
	if err := scan(m, false, func(k *bpfFlowKey, st *bpfFlowStats) { out[*k] = *st }); err != nil {
		t.Fatal(err)
	}
	return out
}
