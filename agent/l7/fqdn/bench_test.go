package fqdn

import (
	"fmt"
	"net/netip"
	"testing"
)

// benchCache: 1,000 pods, 50 IPs each, two names per IP (a name and its
// CNAME): 100,000 entries.
func benchCache(b *testing.B) (*Cache, []string, []netip.Addr) {
	c := New(Options{MaxEntries: 1 << 20})
	var pods []string
	var ips []netip.Addr
	for i := range 50 {
		ips = append(ips, netip.AddrFrom4([4]byte{10, 1, byte(i), 7}))
	}
	for p := range 1000 {
		pods = append(pods, fmt.Sprintf("ns-%d/pod-%d", p%20, p))
		for i, ip := range ips {
			c.Add(pods[p], 0, 3600, []netip.Addr{ip}, fmt.Sprintf("svc-%d.example.com.", i), fmt.Sprintf("edge-%d.cdn.example.net.", i))
		}
	}
	if c.Len() != 100_000 {
		b.Fatalf("len %d", c.Len())
	}
	return c, pods, ips
}

// BenchmarkNames: a lookup that finds two names (sorted, a new slice).
func BenchmarkNames(b *testing.B) {
	c, pods, ips := benchCache(b)
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		if len(c.Names(pods[i%len(pods)], ips[i%len(ips)], 1)) != 2 {
			b.Fatal("names")
		}
		i++
	}
}

// BenchmarkNamesMiss: a lookup of an IP the pod never resolved.
func BenchmarkNamesMiss(b *testing.B) {
	c, pods, _ := benchCache(b)
	miss := netip.MustParseAddr("192.0.2.1")
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		if c.Names(pods[i%len(pods)], miss, 1) != nil {
			b.Fatal("names")
		}
		i++
	}
}

// BenchmarkFloorMaps is the floor of Names: the same two map lookups
// (pod, then IP) in plain maps of ready name lists, no lock, no expiry, no
// copy.
func BenchmarkFloorMaps(b *testing.B) {
	_, pods, ips := benchCache(b)
	m := map[string]map[netip.Addr][]string{}
	for _, p := range pods {
		m[p] = map[netip.Addr][]string{}
		for i, ip := range ips {
			m[p][ip] = []string{fmt.Sprintf("edge-%d.cdn.example.net.", i), fmt.Sprintf("svc-%d.example.com.", i)}
		}
	}
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		if len(m[pods[i%len(pods)]][ips[i%len(ips)]]) != 2 {
			b.Fatal("names")
		}
		i++
	}
}

// BenchmarkAdd: an answer (one IP, two names) refreshing known entries,
// then one adding new entries to a full cache (evictions).
func BenchmarkAdd(b *testing.B) {
	c, pods, ips := benchCache(b)
	b.Run("refresh", func(b *testing.B) {
		names := make([]string, len(ips))
		for j := range names {
			names[j] = fmt.Sprintf("svc-%d.example.com.", j)
		}
		i := 0
		now := int64(1)
		for b.Loop() {
			c.Add(pods[i%len(pods)], now, 3600, ips[i%len(ips):i%len(ips)+1], names[i%len(ips)])
			i++
			now++
		}
	})
	full := New(Options{MaxEntries: 100_000})
	for p := range 1000 {
		for j := range 100 {
			full.Add(pods[p], 0, 3600, []netip.Addr{netip.AddrFrom4([4]byte{10, 2, byte(j), 1})}, "n.example.")
		}
	}
	b.Run("evict", func(b *testing.B) {
		i := 0
		for b.Loop() {
			full.Add(pods[i%len(pods)], 1, 7200, []netip.Addr{netip.AddrFrom4([4]byte{10, 3, byte(i >> 8), byte(i)})}, "new.example.")
			i++
		}
	})
}
