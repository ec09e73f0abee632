//go:build linux

package socklb

import (
	"errors"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// kernelState is what the LB maps hold, readably.
type kernelState struct {
	Services map[string]sockLbSvc // by frontend
	Backends map[[2]uint32]string // (service id, slot) → addr:port/id
	Maglev   map[uint32]bool      // service ids with a table
}

func readKernel(t *testing.T, lb *LB) kernelState {
	t.Helper()
	st := kernelState{Services: map[string]sockLbSvc{}, Backends: map[[2]uint32]string{}, Maglev: map[uint32]bool{}}
	var sk sockLbSvcKey
	var sv sockLbSvc
	it := lb.objs.LbServices.Iterate()
	for it.Next(&sk, &sv) {
		f := Frontend{Addr: wordsAddr(sk.Addr), Port: nport(sk.Port), Proto: sk.Proto}
		st.Services[f.String()] = sv
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	var bk sockLbBackendKey
	var bv sockLbBackend
	it = lb.objs.LbBackends.Iterate()
	for it.Next(&bk, &bv) {
		b := Backend{ID: bv.Id, Addr: wordsAddr(bv.Addr), Port: nport(bv.Port)}
		st.Backends[[2]uint32{bk.SvcId, bk.Slot}] = b.Name() + "/" + string(rune('0'+bv.Family))
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	for id := range lb.cfg.MaxServices {
		var inner uint32
		err := lb.objs.LbMaglev.Lookup(id, &inner)
		if err == nil {
			st.Maglev[id] = true
		} else if !errors.Is(err, ebpf.ErrKeyNotExist) {
			t.Fatal(err)
		}
	}
	return st
}

func TestSockLBServiceSync(t *testing.T) {
	lb := loadTest(t, Config{MaxServices: 16, MaglevM: 13})
	f := Frontend{Addr: netip.MustParseAddr("10.96.0.1"), Port: 443, Proto: unix.IPPROTO_TCP}
	a := Backend{ID: 1, Addr: netip.MustParseAddr("10.0.0.1"), Port: 8443}
	b := Backend{ID: 2, Addr: netip.MustParseAddr("10.0.0.2"), Port: 8443}
	c := Backend{ID: 3, Addr: netip.MustParseAddr("10.0.0.3"), Port: 8443}
	d := Backend{ID: 4, Addr: netip.MustParseAddr("10.0.0.4"), Port: 8443}
	set := func(s Service) {
		t.Helper()
		if err := lb.SetService(s); err != nil {
			t.Fatal(err)
		}
	}
	expect := func(step string, want kernelState) {
		t.Helper()
		got := readKernel(t, lb)
		if !maps.Equal(got.Services, want.Services) || !maps.Equal(got.Backends, want.Backends) || !maps.Equal(got.Maglev, want.Maglev) {
			t.Fatalf("%s: kernel holds\n%+v\nwant\n%+v", step, got, want)
		}
	}

	set(Service{Frontend: f, ID: 7, Backends: []Backend{a, b, c}})
	expect("three backends", kernelState{
		Services: map[string]sockLbSvc{"10.96.0.1:443/tcp": {Id: 7, Count: 3}},
		Backends: map[[2]uint32]string{{7, 1}: "10.0.0.1:8443/4", {7, 2}: "10.0.0.2:8443/4", {7, 3}: "10.0.0.3:8443/4"},
		Maglev:   map[uint32]bool{},
	})
	// b leaves: c moves into its slot, the last slot goes.
	set(Service{Frontend: f, ID: 7, Backends: []Backend{a, c}})
	expect("b removed", kernelState{
		Services: map[string]sockLbSvc{"10.96.0.1:443/tcp": {Id: 7, Count: 2}},
		Backends: map[[2]uint32]string{{7, 1}: "10.0.0.1:8443/4", {7, 2}: "10.0.0.3:8443/4"},
		Maglev:   map[uint32]bool{},
	})
	// d joins, given first: a and c keep their slots, d takes slot 3.
	set(Service{Frontend: f, ID: 7, Algorithm: Maglev, Backends: []Backend{d, c, a}})
	expect("d added, Maglev", kernelState{
		Services: map[string]sockLbSvc{"10.96.0.1:443/tcp": {Id: 7, Count: 3, Algo: uint8(Maglev)}},
		Backends: map[[2]uint32]string{{7, 1}: "10.0.0.1:8443/4", {7, 2}: "10.0.0.3:8443/4", {7, 3}: "10.0.0.4:8443/4"},
		Maglev:   map[uint32]bool{7: true},
	})
	// The table in the kernel is MaglevTable's over the backends' names,
	// each entry the slot of its backend.
	st := lb.svcs[f]
	names := []string{a.Name(), c.Name(), d.Name()}
	for j, i := range MaglevTable(names, 13) {
		var slot uint32
		if err := st.table.Lookup(uint32(j), &slot); err != nil {
			t.Fatal(err)
		}
		if slot != uint32(i+1) {
			t.Fatalf("maglev entry %d: slot %d, want %d (%s)", j, slot, i+1, names[i])
		}
	}
	for cookie := range uint64(50) {
		got, ok := lb.MaglevBackend(f, cookie)
		if want := names[MaglevTable(names, 13)[MaglevIndex(cookie, 13)]]; !ok || got.Name() != want {
			t.Fatalf("cookie %d: MaglevBackend %v %v, want %s", cookie, got, ok, want)
		}
	}
	// The same service again writes nothing: the table is the same map.
	set(Service{Frontend: f, ID: 7, Algorithm: Maglev, Backends: []Backend{a, c, d}})
	if lb.svcs[f].table != st.table {
		t.Fatal("an unchanged service got a new Maglev table")
	}
	// Back to random: the table goes.
	set(Service{Frontend: f, ID: 7, Backends: []Backend{a, c, d}})
	expect("random again", kernelState{
		Services: map[string]sockLbSvc{"10.96.0.1:443/tcp": {Id: 7, Count: 3}},
		Backends: map[[2]uint32]string{{7, 1}: "10.0.0.1:8443/4", {7, 2}: "10.0.0.3:8443/4", {7, 3}: "10.0.0.4:8443/4"},
		Maglev:   map[uint32]bool{},
	})
	// No backends: count 0, slots gone.
	set(Service{Frontend: f, ID: 7})
	expect("empty", kernelState{
		Services: map[string]sockLbSvc{"10.96.0.1:443/tcp": {Id: 7}},
		Backends: map[[2]uint32]string{},
		Maglev:   map[uint32]bool{},
	})
	// A new id for the frontend: the old entries go first.
	set(Service{Frontend: f, ID: 9, Backends: []Backend{b}})
	expect("new id", kernelState{
		Services: map[string]sockLbSvc{"10.96.0.1:443/tcp": {Id: 9, Count: 1}},
		Backends: map[[2]uint32]string{{9, 1}: "10.0.0.2:8443/4"},
		Maglev:   map[uint32]bool{},
	})
	if got := lb.Services(); len(got) != 1 || got[0].ID != 9 || !slices.Equal(got[0].Backends, []Backend{b}) {
		t.Fatalf("Services() = %+v", got)
	}

	for _, tc := range []struct {
		s    Service
		want string
	}{
		{Service{Frontend: f, ID: 0}, "id 0 outside 1..15"},
		{Service{Frontend: f, ID: 16}, "id 16 outside 1..15"},
		{Service{Frontend: Frontend{Addr: f.Addr, Port: 80, Proto: unix.IPPROTO_TCP}, ID: 9}, "id 9 is 10.96.0.1:443/tcp's"},
		{Service{Frontend: Frontend{Addr: f.Addr, Port: 80, Proto: unix.IPPROTO_ICMP}, ID: 3}, "protocol 1"},
		{Service{Frontend: f, ID: 9, Backends: []Backend{a, a}}, "backend 10.0.0.1:8443 twice"},
		{Service{Frontend: f, ID: 9, Backends: []Backend{{Addr: netip.MustParseAddr("fd00::1"), Port: 80}}}, "backend [fd00::1]:80 of the other address family"},
		{Service{Frontend: f, ID: 9, Backends: []Backend{{Addr: a.Addr}}}, "backend 10.0.0.1:0"},
		{Service{Frontend: f, ID: 9, Algorithm: Maglev, Backends: slices.Repeat([]Backend{a}, 13)}, "13 backends for a Maglev table of 13"},
	} {
		err := lb.SetService(tc.s)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("SetService(%+v) = %v, want an error saying %q", tc.s, err, tc.want)
		}
	}

	if err := lb.RemoveService(f); err != nil {
		t.Fatal(err)
	}
	expect("removed", kernelState{Services: map[string]sockLbSvc{}, Backends: map[[2]uint32]string{}, Maglev: map[uint32]bool{}})
}
