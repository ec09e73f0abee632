//go:build linux

package ebpf

import (
	"fmt"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"

	"github.com/flowbus/flowbus/agent/cluster"
	"github.com/flowbus/flowbus/agent/identity"
	"github.com/flowbus/flowbus/agent/policy"
	"github.com/flowbus/flowbus/agent/policy/policytest"
	"github.com/flowbus/flowbus/bpf"
)

// BenchmarkPolicySync writes policytest.Cluster (1,000 pods × 200
// policies) into the kernel's identity and policy maps through the
// datapath, every pod an endpoint behind its own interface (fake
// ifindexes: the maps are keyed by ifindex and need no interface):
//
//   - floor=compile: policy.Compile of the snapshot alone, which every
//     sync starts with;
//   - first: a sync onto empty maps (compile, the whole ipcache, 1,000
//     endpoints and all their rules);
//   - one_policy_edited: a sync after one policy changed
//     (policytest.EditedPolicy, alternately edited and reverted), which
//     compiles everything again and writes only what changed: the rules
//     of 4 endpoints.
//
// cpu-ns/op is the process's user and system CPU (getrusage, every
// thread, GC and the map syscalls included) per sync. After the runs,
// first reports the kernel memory of each map (memlock in its fdinfo,
// bpf.PolicyMaps.KernelMemory) as <map>-bytes, and their sum.
func BenchmarkPolicySync(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root to load the BPF maps the sync writes")
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		b.Skipf("cannot lift memlock limit for BPF: %v", err)
	}
	coll, err := bpf.New(bpf.Config{Interfaces: []string{"flowbus-bench-none"}}, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer coll.Close()
	maps := coll.Policy()

	snap := policytest.Cluster()
	attached := make(map[uint32]string, len(snap.Pods))
	for i := range snap.Pods {
		p := &snap.Pods[i]
		p.IfIndex = uint32(100 + i)
		p.Interface = fmt.Sprintf("lxc%04d", i)
		attached[p.IfIndex] = p.Interface
	}
	edited, _ := policytest.EditedPolicy(snap) // shares snap's pods
	alloc := identity.Allocator{Node: "bench-node"}
	empty := &cluster.Snapshot{}

	sync := func(b *testing.B, d *datapath, s *cluster.Snapshot) applied {
		got, err := d.apply(s, attached)
		if err != nil {
			b.Fatal(err)
		}
		return got
	}
	check := func(b *testing.B, got applied) {
		if got.Endpoints != len(snap.Pods) || len(maps.Endpoints()) != len(snap.Pods) {
			b.Fatalf("%d endpoints written, %d in the map; want %d", got.Endpoints, len(maps.Endpoints()), len(snap.Pods))
		}
	}

	b.Run("floor=compile", func(b *testing.B) {
		b.ReportAllocs()
		var res *policy.Result
		cpu0 := processCPU()
		for b.Loop() {
			res, _ = policy.Compile(snap, alloc)
		}
		b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/op")
		b.ReportMetric(float64(res.Stats.Entries), "entries")
	})
	b.Run("first", func(b *testing.B) {
		var cpu time.Duration
		var got applied
		for b.Loop() {
			b.StopTimer()
			sync(b, newDatapath(maps, alloc), empty) // every endpoint and ipcache entry deleted
			if n := len(maps.Endpoints()); n != 0 {
				b.Fatalf("%d endpoints left after emptying", n)
			}
			runtime.GC()
			d := newDatapath(maps, alloc)
			b.StartTimer()
			cpu0 := processCPU()
			got = sync(b, d, snap)
			cpu += processCPU() - cpu0
		}
		check(b, got)
		b.ReportMetric(float64(cpu)/float64(b.N), "cpu-ns/op")
		b.ReportMetric(float64(got.Result.Stats.Entries), "entries")
		mem, err := maps.KernelMemory()
		if err != nil {
			b.Fatal(err)
		}
		var total uint64
		for _, name := range []string{"ipcache", "endpoints", "policy_allow", "policy_deny"} {
			b.ReportMetric(float64(mem[name]), name+"-bytes")
			total += mem[name]
		}
		b.ReportMetric(float64(total), "kernel-bytes")
	})
	b.Run("one_policy_edited", func(b *testing.B) {
		d := newDatapath(maps, alloc)
		check(b, sync(b, d, snap))
		runtime.GC()
		next := []*cluster.Snapshot{edited, snap}
		var got applied
		cpu0 := processCPU()
		for i := 0; b.Loop(); i++ {
			got = sync(b, d, next[i%2])
		}
		b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/op")
		check(b, got)
	})
}

// processCPU is the process's user and system CPU time so far.
func processCPU() time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
