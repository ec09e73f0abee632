//go:build linux

package socklb

import (
	"cmp"
	"fmt"
	"slices"

	"github.com/cilium/ebpf"

	"github.com/flowbus/flowbus/internal/bpfpin"
)

// The maps PinMaps pins, by their names in sock.c, which are their file
// names: the services (frontend → id, count, algorithm) and their backend
// slots. The Maglev tables are not pinned: they follow from the backends.
const (
	MapServices = "lb_services"
	MapBackends = "lb_backends"
)

// PinnedMapNames are the maps PinMaps pins.
var PinnedMapNames = []string{MapServices, MapBackends}

func (l *LB) pinnable() map[string]*ebpf.Map {
	return map[string]*ebpf.Map{MapServices: l.objs.LbServices, MapBackends: l.objs.LbBackends}
}

// PinMaps pins the service and backend maps under dir (internal/bpfpin),
// replacing stale pins.
func (l *LB) PinMaps(dir string) error { return bpfpin.Pin(dir, l.pinnable()) }

// UnpinMaps removes the pins PinMaps made that are still this LB's.
func (l *LB) UnpinMaps(dir string) error { return bpfpin.Unpin(dir, l.pinnable()) }

// ReadPinned reads the services pinned under dir, by id, each with its
// backends in slot order (Backend.ID as the kernel reports it). The maps
// not pinned there is an error wrapping bpfpin.ErrNotPinned.
func ReadPinned(dir string) ([]Service, error) {
	ms, err := bpfpin.Open(dir, PinnedMapNames...)
	if err != nil {
		return nil, err
	}
	defer bpfpin.Close(ms)
	var out []Service
	var k sockLbSvcKey
	var v sockLbSvc
	it := ms[MapServices].Iterate()
	for it.Next(&k, &v) {
		s := Service{Frontend: Frontend{Addr: wordsAddr(k.Addr), Port: nport(k.Port), Proto: k.Proto},
			ID: v.Id, Algorithm: Algorithm(v.Algo)}
		for slot := uint32(1); slot <= uint32(v.Count); slot++ {
			var b sockLbBackend
			if err := ms[MapBackends].Lookup(&sockLbBackendKey{SvcId: v.Id, Slot: slot}, &b); err != nil {
				return nil, fmt.Errorf("service %s (id %d): backend slot %d: %w", s.Frontend, s.ID, slot, err)
			}
			s.Backends = append(s.Backends, Backend{ID: b.Id, Addr: wordsAddr(b.Addr), Port: nport(b.Port)})
		}
		out = append(out, s)
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", MapServices, err)
	}
	slices.SortFunc(out, func(a, b Service) int { return cmp.Compare(a.ID, b.ID) })
	return out, nil
}
