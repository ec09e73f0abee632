//go:build linux

package bpf

import (
	"errors"
	"os"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"
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

// runOrRefused is run for frames the kernel's test runner may refuse: since
// Linux 6.x BPF_PROG_TEST_RUN rejects (EINVAL) an IPv4 or IPv6 frame whose
// network header is incomplete. It reports whether the program ran.
func runOrRefused(t testing.TB, prog *ebpf.Program, pkt []byte) bool {
	t.Helper()
	ret, err := prog.Run(&ebpf.RunOptions{Data: pkt})
	if errors.Is(err, unix.EINVAL) {
		return false
	}
	if err != nil {
		t.Fatalf("prog run: %v", err)
	}
	if ret != tcxNext {
		t.Fatalf("program returned %#x, want TCX_NEXT", ret)
	}
	return true
}

// flowsIn returns the contents of both flows maps.
func flowsIn(t testing.TB, objs *bpfObjects) map[bpfFlowKey]bpfFlowStats {
	t.Helper()
	out := map[bpfFlowKey]bpfFlowStats{}
	if err := scanFlows(objs, false, func(k *bpfFlowKey, st *bpfFlowStats) { out[*k] = *st }); err != nil {
		t.Fatal(err)
	}
	return out
}

// tcpPkt is one packet of a TCP conversation between a client (port 40000)
// and a server (port 80).
type tcpPkt struct {
	fromClient bool
	flags      uint8
	payload    int
}

// converse runs pkts through the programs as the client's host-side veth
// sees them (the client's packets on ingress, the server's on egress) and
// returns the bytes and packets sent each way.
func converse(t testing.TB, objs *bpfObjects, client, server string, pkts []tcpPkt) (fwd, rev, fwdP, revP uint64) {
	t.Helper()
	for _, p := range pkts {
		if p.fromClient {
			b := ipv4(client, server, tcp(40000, 80, p.flags, p.payload))
			fwd += uint64(len(b))
			fwdP++
			run(t, objs.FlowIngress, b)
		} else {
			b := ipv4(server, client, tcp(80, 40000, p.flags, p.payload))
			rev += uint64(len(b))
			revP++
			run(t, objs.FlowEgress, b)
		}
	}
	return
}

// endedIn reads the hints that reported ends left (ended4, ended6), by key.
func endedIn(t testing.TB, objs *bpfObjects) map[bpfFlowKey]bpfEnded {
	t.Helper()
	out := map[bpfFlowKey]bpfEnded{}
	var k4 bpfFlowKey4
	var e bpfEnded
	it := objs.Ended4.Iterate()
	for it.Next(&k4, &e) {
		out[fromKey4(&k4)] = e
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	var k bpfFlowKey
	it = objs.Ended6.Iterate()
	for it.Next(&k, &e) {
		out[k] = e
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// deleteEnded removes one end hint.
func deleteEnded(objs *bpfObjects, k *bpfFlowKey) error {
	if k.Family == 4 {
		k4 := toKey4(k)
		return objs.Ended4.Delete(&k4)
	}
	return objs.Ended6.Delete(k)
}
