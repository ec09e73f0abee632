package policy

import (
	"testing"

	"github.com/flowbus/flowbus/agent/identity"
	"github.com/flowbus/flowbus/agent/policy/policytest"
)

// BenchmarkCompile compiles policytest.Cluster, 1,000 pods × 200
// policies. Beside it, the parts: Parse (policies alone) and Allocate
// (identities alone, the floor Compile cannot go below).
func BenchmarkCompile(b *testing.B) {
	s := policytest.Cluster()
	ps := Parse(s)
	res, _ := Compile(s, identity.Allocator{})
	if len(res.Errors) > 0 || len(s.NetworkPolicies) != 200 || len(s.Pods) != 1000 {
		b.Fatalf("%d pods, %d policies, errors %v", len(s.Pods), len(s.NetworkPolicies), res.Errors)
	}
	b.Run("floor=Allocate", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			identity.Allocator{}.Allocate(s, ps.Prefixes())
		}
	})
	b.Run("Parse", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			Parse(s)
		}
	})
	b.Run("Compile", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			Compile(s, identity.Allocator{})
		}
		b.ReportMetric(float64(res.Stats.Entries), "entries")
	})
}

// BenchmarkDiff diffs two compilations of policytest.Cluster that differ
// by one edited policy (policytest.EditedPolicy: one more port for one
// app), beside the floor of reading every entry of both once.
func BenchmarkDiff(b *testing.B) {
	s := policytest.Cluster()
	old, _ := Compile(s, identity.Allocator{})
	edited, ns := policytest.EditedPolicy(s)
	cur, _ := Compile(edited, identity.Allocator{})
	changes := Diff(old, cur)
	if len(changes) != 4 {
		b.Fatalf("%d endpoints change, want the 4 replicas of app-1 in %s", len(changes), ns)
	}
	b.Run("floor=scan", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			n := 0
			for _, r := range []*Result{old, cur} {
				for i := range r.Endpoints {
					for _, d := range []*DirectionPolicy{&r.Endpoints[i].Ingress, &r.Endpoints[i].Egress} {
						for j := range d.Allow {
							n += int(d.Allow[j].PortBits)
						}
					}
				}
			}
			_ = n
		}
	})
	b.Run("Diff", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			Diff(old, cur)
		}
	})
}
