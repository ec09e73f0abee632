package identity

import (
	"net/netip"
	"testing"

	"github.com/flowbus/flowbus/agent/endpoints"
)

// BenchmarkAllocate allocates identities for 10,000 pods (100 namespaces of
// 10 deployments of 10 replicas, 1,000 label sets) and 50 policy prefixes.
// The floor beside it is today's endpoints file's work for the same pods:
// one FNV hash of each pod's labels, with no filter, no sharing and no
// collision handling.
func BenchmarkAllocate(b *testing.B) {
	s := fleet(10000)
	var prefixes []netip.Prefix
	for i := range 50 {
		prefixes = append(prefixes, netip.PrefixFrom(netip.AddrFrom4([4]byte{172, 16, byte(i), 0}), 24))
	}
	b.Run("floor=endpoints.Identity", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			for i := range s.Pods {
				p := &s.Pods[i]
				l := make([]string, 0, len(p.Labels)+1)
				for k, v := range p.Labels {
					l = append(l, "k8s:"+k+"="+v)
				}
				l = append(l, "k8s:io.kubernetes.pod.namespace="+p.Namespace)
				_ = endpoints.Identity(l)
			}
		}
	})
	b.Run("Allocate", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			Allocator{Node: "node-1"}.Allocate(s, prefixes)
		}
	})
}
