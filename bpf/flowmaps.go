//go:build linux

package bpf

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
)

// The kernel keeps IPv4 flows in flows4, keyed by the 20-byte flow_key4,
// and IPv6 flows in flows6, keyed by flow_key (doc.go, "Map type"). The
// rest of the package sees every flow as a bpfFlowKey; the functions here
// pick the map by family and convert IPv4 keys both ways.

// ipv4Mapped is the prefix of an IPv4-mapped IPv6 address (::ffff:0:0/96).
var ipv4Mapped = [12]uint8{10: 0xff, 11: 0xff}

// toKey4 returns the flows4 key of an IPv4 flow key.
func toKey4(k *bpfFlowKey) bpfFlowKey4 {
	var k4 bpfFlowKey4
	k4.AddrLo = uint32(k.AddrLo[12]) | uint32(k.AddrLo[13])<<8 | uint32(k.AddrLo[14])<<16 | uint32(k.AddrLo[15])<<24
	k4.AddrHi = uint32(k.AddrHi[12]) | uint32(k.AddrHi[13])<<8 | uint32(k.AddrHi[14])<<16 | uint32(k.AddrHi[15])<<24
	k4.PortLo, k4.PortHi = k.PortLo, k.PortHi
	k4.Ifindex = k.Ifindex
	k4.Proto = k.Proto
	return k4
}

// fromKey4 returns the flow key (IPv4-mapped, family 4) of a flows4 key.
// Addresses are in network order in both: the kernel stores the four
// address bytes as they are in the packet.
func fromKey4(k4 *bpfFlowKey4) bpfFlowKey {
	var k bpfFlowKey
	copy(k.AddrLo[:], ipv4Mapped[:])
	copy(k.AddrHi[:], ipv4Mapped[:])
	k.AddrLo[12], k.AddrLo[13], k.AddrLo[14], k.AddrLo[15] =
		uint8(k4.AddrLo), uint8(k4.AddrLo>>8), uint8(k4.AddrLo>>16), uint8(k4.AddrLo>>24)
	k.AddrHi[12], k.AddrHi[13], k.AddrHi[14], k.AddrHi[15] =
		uint8(k4.AddrHi), uint8(k4.AddrHi>>8), uint8(k4.AddrHi>>16), uint8(k4.AddrHi>>24)
	k.PortLo, k.PortHi = k4.PortLo, k4.PortHi
	k.Ifindex = k4.Ifindex
	k.Proto = k4.Proto
	k.Family = 4
	return k
}

// lookupAndDeleteFlow removes one flow from its map and returns its state.
func lookupAndDeleteFlow(objs *bpfObjects, k *bpfFlowKey, st *bpfFlowStats) error {
	if k.Family == 4 {
		k4 := toKey4(k)
		return objs.Flows4.LookupAndDelete(&k4, st)
	}
	return objs.Flows6.LookupAndDelete(k, st)
}

// updateFlow writes one flow into its map.
func updateFlow(objs *bpfObjects, k *bpfFlowKey, st *bpfFlowStats, flags ebpf.MapUpdateFlags) error {
	if k.Family == 4 {
		k4 := toKey4(k)
		return objs.Flows4.Update(&k4, st, flags)
	}
	return objs.Flows6.Update(k, st, flags)
}

// scanBuffers are the batch buffers of scans, kept from one sweep to the
// next: ~0.5 MB per map, which a scan would otherwise allocate and zero
// each time.
type scanBuffers struct {
	keys4 []bpfFlowKey4
	keys6 []bpfFlowKey
	vals  []bpfFlowStats
}

func (b *scanBuffers) grow() {
	if b.vals == nil {
		b.keys4 = make([]bpfFlowKey4, sweepBatch)
		b.keys6 = make([]bpfFlowKey, sweepBatch)
		b.vals = make([]bpfFlowStats, sweepBatch)
	}
}

// scanFlows visits every flow of both maps (IPv4 first), deleting as it
// goes if del.
func scanFlows(objs *bpfObjects, del bool, visit func(*bpfFlowKey, *bpfFlowStats)) error {
	return scanFlowsInto(objs, &scanBuffers{}, del, visit)
}

// scanFlowsInto is scanFlows with the batch buffers of buf.
func scanFlowsInto(objs *bpfObjects, buf *scanBuffers, del bool, visit func(*bpfFlowKey, *bpfFlowStats)) error {
	buf.grow()
	err := scanWith(objs.Flows4, buf.keys4, buf.vals, del, func(k4 *bpfFlowKey4, st *bpfFlowStats) {
		k := fromKey4(k4)
		visit(&k, st)
	})
	if err != nil {
		return fmt.Errorf("ipv4 flows: %w", err)
	}
	if err := scanWith(objs.Flows6, buf.keys6, buf.vals, del, visit); err != nil {
		return fmt.Errorf("ipv6 flows: %w", err)
	}
	return nil
}

// scan visits every entry of one flows map, deleting as it goes if del.
func scan[K any](m *ebpf.Map, del bool, visit func(*K, *bpfFlowStats)) error {
	return scanWith(m, make([]K, sweepBatch), make([]bpfFlowStats, sweepBatch), del, visit)
}

// scanWith is scan with the batch buffers keys and vals (of one length).
func scanWith[K any](m *ebpf.Map, keys []K, vals []bpfFlowStats, del bool, visit func(*K, *bpfFlowStats)) error {
	var cursor ebpf.MapBatchCursor
	for {
		var n int
		var err error
		if del {
			n, err = m.BatchLookupAndDelete(&cursor, keys, vals, nil)
		} else {
			n, err = m.BatchLookup(&cursor, keys, vals, nil)
		}
		for i := range n {
			visit(&keys[i], &vals[i])
		}
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return nil
		}
		if errors.Is(err, ebpf.ErrNotSupported) {
			return scanIter(m, del, visit)
		}
		if err != nil {
			return fmt.Errorf("batch lookup flows: %w", err)
		}
	}
}

// scanIter is scan for kernels without batch operations.
func scanIter[K any](m *ebpf.Map, del bool, visit func(*K, *bpfFlowStats)) error {
	var k K
	var st bpfFlowStats
	var seen []K
	it := m.Iterate()
	for it.Next(&k, &st) {
		if del {
			seen = append(seen, k)
			continue
		}
		visit(&k, &st)
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("iterate flows: %w", err)
	}
	for i := range seen {
		if err := m.LookupAndDelete(&seen[i], &st); err == nil {
			visit(&seen[i], &st)
		}
	}
	return nil
}
