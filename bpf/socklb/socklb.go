//go:build linux

package socklb

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"
)

// Defaults of Config.
const (
	DefaultMaxServices   = 1024
	DefaultMaxBackends   = 65536
	DefaultRevNATEntries = 65536
	DefaultPeerSlots     = 65536
	DefaultRingBufSize   = 1 << 20
	DefaultPollInterval  = 50 * time.Millisecond
)

// Config sizes the kernel maps. Zero fields take the defaults.
type Config struct {
	// MaxServices bounds the services and their ids (1..MaxServices-1).
	MaxServices uint32
	// MaxBackends bounds the backend slots of all services together.
	MaxBackends uint32
	// MaglevM is the size of every Maglev table, a prime (DefaultMaglevM).
	MaglevM uint32
	// RevNATEntries sizes the LRU map of translated UDP sockets (socket
	// cookie and backend → ClusterIP) that recvmsg and getpeername read
	// (TCP sockets keep theirs in their own storage).
	RevNATEntries uint32
	// PeerSlots sizes lb_peer, the table of translated TCP sockets that
	// getpeername reads, a power of two (default DefaultPeerSlots: 3 MiB).
	// A socket takes the slot its cookie selects; when another open socket
	// holds it, its translation goes in its own socket storage instead,
	// which costs its connect() about 300 ns more (CounterPeerStorage).
	PeerSlots uint32
	// RingBufSize is the decision ring buffer's size in bytes, a power of
	// two multiple of the page size.
	RingBufSize uint32
	// WakeupBytes: the kernel wakes the reader only once this many bytes of
	// events wait (default RingBufSize/4); ReadEvent looks at the ring every
	// PollInterval for the rest. A wakeup per event costs a connect() about
	// as much as the rest of the translation (bench/HISTORY.md). Negative:
	// a wakeup for every event the reader is waiting for.
	WakeupBytes int
	// PollInterval bounds how long an event waits for ReadEvent when no
	// wakeup comes (default 50 ms).
	PollInterval time.Duration
	// NoTCPPeer leaves a translated TCP socket's peer as the backend:
	// getpeername() returns the backend, not the ClusterIP (Cilium's
	// socket LB with its peer hooks off). connect() then stores nothing
	// per socket and sock_release is not attached (bench/RESULTS.md).
	// UDP sockets keep their reverse translation (replies need it).
	NoTCPPeer bool
}

func (c Config) withDefaults() Config {
	def := func(v *uint32, d uint32) {
		if *v == 0 {
			*v = d
		}
	}
	def(&c.MaxServices, DefaultMaxServices)
	def(&c.MaxBackends, DefaultMaxBackends)
	def(&c.MaglevM, DefaultMaglevM)
	def(&c.RevNATEntries, DefaultRevNATEntries)
	def(&c.PeerSlots, DefaultPeerSlots)
	def(&c.RingBufSize, DefaultRingBufSize)
	if c.WakeupBytes == 0 {
		c.WakeupBytes = int(c.RingBufSize / 4)
	}
	if c.PollInterval <= 0 {
		c.PollInterval = DefaultPollInterval
	}
	return c
}

// Algorithm is how a service picks a backend.
type Algorithm uint8

// Algorithms (enum lb_algo in sock.h).
const (
	// Random picks a ready backend with bpf_get_prandom_u32 for each
	// connect() and each unconnected sendmsg().
	Random Algorithm = Algorithm(sockLbAlgoLB_ALGO_RANDOM)
	// Maglev picks the backend of the service's Maglev table at the
	// entry of the socket cookie's hash (MaglevIndex): the same backend
	// for every datagram of a socket, and few sockets move when the
	// backends change.
	Maglev Algorithm = Algorithm(sockLbAlgoLB_ALGO_MAGLEV)
)

func (a Algorithm) String() string {
	switch a {
	case Random:
		return "random"
	case Maglev:
		return "maglev"
	}
	return fmt.Sprintf("algorithm(%d)", uint8(a))
}

// Frontend is what a client connects to: a ClusterIP, port and protocol
// (unix.IPPROTO_TCP or unix.IPPROTO_UDP).
type Frontend struct {
	Addr  netip.Addr
	Port  uint16
	Proto uint8
}

func (f Frontend) String() string {
	p := "tcp"
	if f.Proto == unix.IPPROTO_UDP {
		p = "udp"
	}
	return netip.AddrPortFrom(f.Addr, f.Port).String() + "/" + p
}

// Backend is one ready backend of a service.
type Backend struct {
	ID   uint32 // the caller's id, reported on events
	Addr netip.Addr
	Port uint16
}

// Name is the backend's Maglev name, addr:port: the same backend has the
// same permutation on every node.
func (b Backend) Name() string { return netip.AddrPortFrom(b.Addr, b.Port).String() }

// Service is a frontend and its ready backends. ID (1..MaxServices-1)
// names it in the kernel maps and on events; it is the caller's, like
// Cilium's service id.
type Service struct {
	Frontend
	ID        uint32
	Algorithm Algorithm
	Backends  []Backend
}

// LB is the socket-layer load balancer: the loaded programs and maps, the
// cgroups they are attached to, the services as last written, and the
// decision reader. Its methods are safe for concurrent use, except
// ReadEvent, which one goroutine calls.
type LB struct {
	cfg    Config
	objs   sockObjects
	inner  *ebpf.MapSpec // a Maglev table's spec
	reader *ringbuf.Reader
	mono   int64 // CLOCK_MONOTONIC to Unix ns, at load
	tick   int64 // the kernel's coarse clock's resolution (one tick), ns

	mu    sync.Mutex
	links []link.Link
	svcs  map[Frontend]*svcState
	ids   map[uint32]Frontend
}

type svcState struct {
	svc   Service   // as last written, backends in the caller's order
	slots []Backend // slots[i] is in kernel slot i+1
	table *ebpf.Map // the Maglev table in lb_maglev, or nil
	dirty bool      // a write failed: rewrite everything next time
}

// Load loads the programs and maps. Close releases them.
func Load(cfg Config) (*LB, error) {
	cfg = cfg.withDefaults()
	if err := checkMaglevM(cfg.MaglevM); err != nil {
		return nil, err
	}
	if cfg.PeerSlots&(cfg.PeerSlots-1) != 0 {
		return nil, fmt.Errorf("peer slots %d: want a power of two", cfg.PeerSlots)
	}
	if cfg.MaxServices < 2 {
		return nil, fmt.Errorf("max services %d: want ≥ 2 (id 0 is not used)", cfg.MaxServices)
	}
	spec, err := loadSock()
	if err != nil {
		return nil, fmt.Errorf("load socket LB spec: %w", err)
	}
	spec.Maps["lb_services"].MaxEntries = cfg.MaxServices
	spec.Maps["lb_maglev"].MaxEntries = cfg.MaxServices
	spec.Maps["lb_maglev"].InnerMap.MaxEntries = cfg.MaglevM
	spec.Maps["lb_backends"].MaxEntries = cfg.MaxBackends
	spec.Maps["lb_revnat"].MaxEntries = cfg.RevNATEntries
	spec.Maps["lb_peer"].MaxEntries = cfg.PeerSlots
	if err := spec.Variables["peer_mask"].Set(cfg.PeerSlots - 1); err != nil {
		return nil, fmt.Errorf("set peer_mask: %w", err)
	}
	spec.Maps["sock_events"].MaxEntries = cfg.RingBufSize
	if err := spec.Variables["maglev_m"].Set(cfg.MaglevM); err != nil {
		return nil, fmt.Errorf("set maglev_m: %w", err)
	}
	if err := spec.Variables["wakeup_bytes"].Set(uint32(max(cfg.WakeupBytes, 0))); err != nil {
		return nil, fmt.Errorf("set wakeup_bytes: %w", err)
	}
	if cfg.NoTCPPeer {
		if err := spec.Variables["tcp_peer"].Set(uint32(0)); err != nil {
			return nil, fmt.Errorf("set tcp_peer: %w", err)
		}
	}
	l := &LB{cfg: cfg, inner: spec.Maps["lb_maglev"].InnerMap.Copy(), svcs: map[Frontend]*svcState{}, ids: map[uint32]Frontend{}}
	l.inner.Name = "lb_maglev_tbl"
	if err := spec.LoadAndAssign(&l.objs, nil); err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			return nil, fmt.Errorf("load socket LB programs: %+v", ve)
		}
		if errors.Is(err, os.ErrPermission) {
			return nil, fmt.Errorf("load socket LB programs (needs root or CAP_BPF+CAP_NET_ADMIN): %w", err)
		}
		return nil, fmt.Errorf("load socket LB programs: %w", err)
	}
	l.reader, err = ringbuf.NewReader(l.objs.SockEvents)
	if err != nil {
		l.objs.Close()
		return nil, fmt.Errorf("socket LB ring buffer: %w", err)
	}
	l.mono = monoToUnix()
	l.tick = coarseTick()
	return l, nil
}

// AttachCgroup attaches the nine programs (connect, sendmsg, recvmsg and
// getpeername, IPv4 and IPv6, and sock_release, which Config.NoTCPPeer
// leaves out) to the cgroup v2 directory path: every
// socket of a process in it or below is load balanced. On failure nothing
// of this call stays attached.
func (l *LB) AttachCgroup(path string) error {
	progs := []struct {
		name string
		prog *ebpf.Program
		at   ebpf.AttachType
	}{
		{"connect4", l.objs.Sock4Connect, ebpf.AttachCGroupInet4Connect},
		{"connect6", l.objs.Sock6Connect, ebpf.AttachCGroupInet6Connect},
		{"sendmsg4", l.objs.Sock4Sendmsg, ebpf.AttachCGroupUDP4Sendmsg},
		{"sendmsg6", l.objs.Sock6Sendmsg, ebpf.AttachCGroupUDP6Sendmsg},
		{"recvmsg4", l.objs.Sock4Recvmsg, ebpf.AttachCGroupUDP4Recvmsg},
		{"recvmsg6", l.objs.Sock6Recvmsg, ebpf.AttachCGroupUDP6Recvmsg},
		{"getpeername4", l.objs.Sock4Getpeername, ebpf.AttachCgroupInet4GetPeername},
		{"getpeername6", l.objs.Sock6Getpeername, ebpf.AttachCgroupInet6GetPeername},
		{"sock_release", l.objs.SockRelease, ebpf.AttachCgroupInetSockRelease},
	}
	if l.cfg.NoTCPPeer {
		progs = progs[:len(progs)-1] // sock_release frees lb_peer slots, which are not used
	}
	var ls []link.Link
	for _, p := range progs {
		lk, err := link.AttachCgroup(link.CgroupOptions{Path: path, Attach: p.at, Program: p.prog})
		if err != nil {
			for _, done := range ls {
				done.Close()
			}
			return fmt.Errorf("attach cgroup/%s to %s: %w", p.name, path, err)
		}
		ls = append(ls, lk)
	}
	l.mu.Lock()
	l.links = append(l.links, ls...)
	l.mu.Unlock()
	return nil
}

// Close detaches the programs, stops ReadEvent and releases the maps.
func (l *LB) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	var errs []error
	for _, lk := range l.links {
		errs = append(errs, lk.Close())
	}
	l.links = nil
	errs = append(errs, l.reader.Close())
	for _, st := range l.svcs {
		if st.table != nil {
			errs = append(errs, st.table.Close())
		}
	}
	l.svcs = map[Frontend]*svcState{}
	errs = append(errs, l.objs.Close())
	return errors.Join(errs...)
}

func addrWords(a netip.Addr) [4]uint32 {
	b := a.As16() // IPv4 as ::ffff:a.b.c.d
	var w [4]uint32
	for i := range w {
		w[i] = binary.LittleEndian.Uint32(b[4*i:]) // the bytes as they lie in memory
	}
	return w
}

func wordsAddr(w [4]uint32) netip.Addr {
	var b [16]byte
	for i := range w {
		binary.LittleEndian.PutUint32(b[4*i:], w[i])
	}
	return netip.AddrFrom16(b).Unmap()
}

// The key and value structs hold ports in network order.
func nport(p uint16) uint16 { return p<<8 | p>>8 }

func svcKey(f Frontend) sockLbSvcKey {
	return sockLbSvcKey{Addr: addrWords(f.Addr), Port: nport(f.Port), Proto: f.Proto}
}

func (l *LB) check(s *Service) error {
	f := s.Frontend
	if !f.Addr.IsValid() || f.Addr.Zone() != "" {
		return fmt.Errorf("service %d: frontend address %v", s.ID, f.Addr)
	}
	if f.Proto != unix.IPPROTO_TCP && f.Proto != unix.IPPROTO_UDP {
		return fmt.Errorf("service %d: protocol %d, want TCP (6) or UDP (17)", s.ID, f.Proto)
	}
	if s.ID == 0 || s.ID >= l.cfg.MaxServices {
		return fmt.Errorf("service %s: id %d outside 1..%d", f, s.ID, l.cfg.MaxServices-1)
	}
	if other, ok := l.ids[s.ID]; ok && other != f {
		return fmt.Errorf("service %s: id %d is %s's", f, s.ID, other)
	}
	if s.Algorithm != Random && s.Algorithm != Maglev {
		return fmt.Errorf("service %s: %v", f, s.Algorithm)
	}
	if len(s.Backends) > 0xffff {
		return fmt.Errorf("service %s: %d backends, at most 65535", f, len(s.Backends))
	}
	if s.Algorithm == Maglev && uint32(len(s.Backends)) >= l.cfg.MaglevM {
		return fmt.Errorf("service %s: %d backends for a Maglev table of %d", f, len(s.Backends), l.cfg.MaglevM)
	}
	seen := map[netip.AddrPort]bool{}
	for _, b := range s.Backends {
		if !b.Addr.IsValid() || b.Addr.Zone() != "" || b.Port == 0 {
			return fmt.Errorf("service %s: backend %v:%d", f, b.Addr, b.Port)
		}
		if b.Addr.Unmap().Is4() != f.Addr.Unmap().Is4() {
			return fmt.Errorf("service %s: backend %s of the other address family", f, b.Name())
		}
		ap := netip.AddrPortFrom(b.Addr.Unmap(), b.Port)
		if seen[ap] {
			return fmt.Errorf("service %s: backend %s twice", f, ap)
		}
		seen[ap] = true
	}
	return nil
}

// SetService makes the kernel translate s's frontend to exactly its
// backends, writing only what changed, in an order that never lets a
// connect() pick a backend that is not in the old or the new set, nor
// find an empty slot: new and moved slots first, then the Maglev table
// (built whole and swapped in with one update), then the service entry
// with its count, then the slots beyond the count are deleted. A backend
// left out is out at the first write: the slot it had holds another.
// Programs already attached see the change at their next call; nothing is
// reloaded. Backend addresses must be of the frontend's family.
func (l *LB) SetService(s Service) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	s.Addr = s.Addr.Unmap()
	s.Backends = slices.Clone(s.Backends)
	for i := range s.Backends {
		s.Backends[i].Addr = s.Backends[i].Addr.Unmap()
	}
	if err := l.check(&s); err != nil {
		return err
	}
	cur := l.svcs[s.Frontend]
	if cur != nil && cur.svc.ID != s.ID {
		if err := l.remove(s.Frontend); err != nil {
			return err
		}
		cur = nil
	}
	if cur == nil {
		cur = &svcState{dirty: true}
		l.svcs[s.Frontend] = cur
		l.ids[s.ID] = s.Frontend
	}
	if err := l.write(cur, s); err != nil {
		cur.dirty = true
		return fmt.Errorf("service %s (id %d): %w", s.Frontend, s.ID, err)
	}
	cur.dirty = false
	return nil
}

// assignSlots keeps every backend still present in its slot if that slot
// is within the new count, and fills the other slots with the rest, in the
// caller's order.
func assignSlots(old []Backend, want []Backend) []Backend {
	n := len(want)
	slots := make([]Backend, n)
	used := make([]bool, n)
	placed := map[netip.AddrPort]bool{}
	for i, b := range old {
		if i >= n {
			break
		}
		for _, w := range want {
			if w.Addr == b.Addr && w.Port == b.Port {
				slots[i], used[i] = w, true // w: its ID may have changed
				placed[netip.AddrPortFrom(w.Addr, w.Port)] = true
				break
			}
		}
	}
	next := 0
	for _, w := range want {
		if placed[netip.AddrPortFrom(w.Addr, w.Port)] {
			continue
		}
		for used[next] {
			next++
		}
		slots[next], used[next] = w, true
	}
	return slots
}

func (l *LB) write(cur *svcState, s Service) error {
	old := cur.slots
	slots := assignSlots(old, s.Backends)
	if !cur.dirty && slices.Equal(old, slots) && cur.svc.Algorithm == s.Algorithm {
		cur.svc = s // nothing the kernel holds changed
		return nil
	}
	// 1. Slots 1..n that are new or changed.
	for i, b := range slots {
		if !cur.dirty && i < len(old) && old[i] == b {
			continue
		}
		k := sockLbBackendKey{SvcId: s.ID, Slot: uint32(i + 1)}
		fam := uint8(6)
		if b.Addr.Is4() {
			fam = 4
		}
		v := sockLbBackend{Addr: addrWords(b.Addr), Port: nport(b.Port), Family: fam, Id: b.ID}
		if err := l.objs.LbBackends.Update(&k, &v, ebpf.UpdateAny); err != nil {
			return fmt.Errorf("backend slot %d: %w", i+1, err)
		}
	}
	cur.slots = slots
	// 2. The Maglev table, swapped in whole.
	if s.Algorithm == Maglev && len(slots) > 0 {
		tbl, err := l.maglevMap(slots)
		if err != nil {
			return err
		}
		if err := l.objs.LbMaglev.Update(s.ID, tbl, ebpf.UpdateAny); err != nil {
			tbl.Close()
			return fmt.Errorf("maglev table: %w", err)
		}
		if cur.table != nil {
			cur.table.Close()
		}
		cur.table = tbl
	}
	// 3. The service entry: count and algorithm.
	k := svcKey(s.Frontend)
	v := sockLbSvc{Id: s.ID, Count: uint16(len(slots)), Algo: uint8(s.Algorithm)}
	if err := l.objs.LbServices.Update(&k, &v, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("service entry: %w", err)
	}
	// 4. What the new count leaves out.
	if (s.Algorithm != Maglev || len(slots) == 0) && cur.table != nil {
		if err := l.objs.LbMaglev.Delete(s.ID); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("maglev table: %w", err)
		}
		cur.table.Close()
		cur.table = nil
	}
	stale := len(old)
	if cur.dirty {
		stale = max(stale, len(cur.svc.Backends))
	}
	for i := len(slots); i < stale; i++ {
		k := sockLbBackendKey{SvcId: s.ID, Slot: uint32(i + 1)}
		if err := l.objs.LbBackends.Delete(&k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("backend slot %d: %w", i+1, err)
		}
	}
	cur.svc = s
	return nil
}

// maglevMap builds a new Maglev table map over the slots' backends.
func (l *LB) maglevMap(slots []Backend) (*ebpf.Map, error) {
	names := make([]string, len(slots))
	for i, b := range slots {
		names[i] = b.Name()
	}
	table := MaglevTable(names, l.cfg.MaglevM)
	keys := make([]uint32, len(table))
	vals := make([]uint32, len(table))
	for j, i := range table {
		keys[j], vals[j] = uint32(j), uint32(i+1)
	}
	m, err := ebpf.NewMap(l.inner)
	if err != nil {
		return nil, fmt.Errorf("maglev table: %w", err)
	}
	if _, err := m.BatchUpdate(keys, vals, nil); err != nil {
		m.Close()
		return nil, fmt.Errorf("fill maglev table: %w", err)
	}
	return m, nil
}

// RemoveService stops translating f: the service entry goes first, so a
// connect() to f from then on goes to the ClusterIP untranslated.
func (l *LB) RemoveService(f Frontend) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	f.Addr = f.Addr.Unmap()
	return l.remove(f)
}

func (l *LB) remove(f Frontend) error {
	cur := l.svcs[f]
	if cur == nil {
		return nil
	}
	k := svcKey(f)
	if err := l.objs.LbServices.Delete(&k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("service %s: %w", f, err)
	}
	var errs []error
	if err := l.objs.LbMaglev.Delete(cur.svc.ID); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		errs = append(errs, fmt.Errorf("maglev table: %w", err))
	}
	if cur.table != nil {
		cur.table.Close()
	}
	n := max(len(cur.slots), len(cur.svc.Backends))
	for i := range n {
		bk := sockLbBackendKey{SvcId: cur.svc.ID, Slot: uint32(i + 1)}
		if err := l.objs.LbBackends.Delete(&bk); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			errs = append(errs, fmt.Errorf("backend slot %d: %w", i+1, err))
		}
	}
	delete(l.svcs, f)
	delete(l.ids, cur.svc.ID)
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("service %s: %w", f, err)
	}
	return nil
}

// Services returns the services as last written, by id.
func (l *LB) Services() []Service {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]Service, 0, len(l.svcs))
	for _, st := range l.svcs {
		s := st.svc
		s.Backends = slices.Clone(s.Backends)
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b Service) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

// MaglevBackend is the backend the kernel gives a socket with this cookie
// that connects to f, a Maglev service, as its table stands now.
func (l *LB) MaglevBackend(f Frontend, cookie uint64) (Backend, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	st := l.svcs[f]
	if st == nil || st.table == nil {
		return Backend{}, false
	}
	var slot uint32
	if err := st.table.Lookup(MaglevIndex(cookie, l.cfg.MaglevM), &slot); err != nil || slot == 0 || int(slot) > len(st.slots) {
		return Backend{}, false
	}
	return st.slots[slot-1], true
}

// Verdict is what the kernel decided.
type Verdict uint8

// Verdicts (enum sock_verdict).
const (
	Translated Verdict = Verdict(sockSockVerdictSOCK_TRANSLATED)
	// NoBackend: the service had no ready backend and the syscall failed
	// with ECONNREFUSED (Hubble's drop reason SERVICE_BACKEND_NOT_FOUND, 158).
	NoBackend Verdict = Verdict(sockSockVerdictSOCK_NO_BACKEND)
)

func (v Verdict) String() string {
	switch v {
	case Translated:
		return "translated"
	case NoBackend:
		return "no_backend"
	}
	return fmt.Sprintf("verdict(%d)", uint8(v))
}

// Hook is the syscall a decision was made in.
type Hook uint8

// Hooks (enum sock_hook).
const (
	HookConnect Hook = Hook(sockSockHookSOCK_HOOK_CONNECT)
	HookSendmsg Hook = Hook(sockSockHookSOCK_HOOK_SENDMSG)
)

func (h Hook) String() string {
	switch h {
	case HookConnect:
		return "connect"
	case HookSendmsg:
		return "sendmsg"
	}
	return fmt.Sprintf("hook(%d)", uint8(h))
}

// Event is one decision: a connect() or an unconnected sendmsg() to a
// service's frontend.
type Event struct {
	// Time is when the decision was made, never before it and at most
	// one kernel tick after it: the earlier of when ReadEvent read it and
	// one tick after MonoNs (package doc, "Decisions").
	Time time.Time
	// MonoNs is the kernel's stamp, bpf_ktime_get_coarse_ns: the
	// decision's CLOCK_MONOTONIC time rounded down to the last tick.
	MonoNs    int64
	Cookie    uint64 // the socket's cookie (SO_COOKIE)
	CgroupID  uint64 // the caller's cgroup v2 id (the directory's inode)
	PID       uint32 // the caller's process (thread group) id
	ServiceID uint32
	Frontend  netip.AddrPort
	Proto     uint8
	Backend   netip.AddrPort // invalid when refused
	BackendID uint32
	Family    uint8 // of the socket: 4 or 6
	Verdict   Verdict
	Hook      Hook
}

// ReadEvent blocks for the next decision. After Close it returns an error
// that wraps os.ErrClosed.
func (l *LB) ReadEvent(ev *Event) error {
	var rec ringbuf.Record
	for {
		if l.cfg.WakeupBytes > 0 {
			l.reader.SetDeadline(time.Now().Add(l.cfg.PollInterval))
		}
		err := l.reader.ReadInto(&rec)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			continue
		}
		if err != nil {
			return err
		}
		break
	}
	return l.decode(rec.RawSample, ev, time.Now().UnixNano()-l.mono)
}

// decode reads one sock_event4 or sock_event6 record, told apart by size,
// read at readMono (CLOCK_MONOTONIC ns).
func (l *LB) decode(b []byte, ev *Event, readMono int64) error {
	var raw sockSockEvent6
	switch len(b) {
	case event4Size:
		var r4 sockSockEvent4
		if _, err := binary.Decode(b, binary.LittleEndian, &r4); err != nil {
			return fmt.Errorf("decode socket LB event: %w", err)
		}
		raw = sockSockEvent6{TsNs: r4.TsNs, Cookie: r4.Cookie, CgroupId: r4.CgroupId, Pid: r4.Pid, SvcId: r4.SvcId,
			BackendId: r4.BackendId, OrigPort: r4.OrigPort, BackendPort: r4.BackendPort, Protocol: r4.Protocol,
			Family: r4.Family, Verdict: r4.Verdict, Hook: r4.Hook}
		raw.OrigAddr = [4]uint32{0, 0, mappedWord, r4.OrigAddr}
		raw.BackendAddr = [4]uint32{0, 0, mappedWord, r4.BackendAddr}
	case event6Size:
		if _, err := binary.Decode(b, binary.LittleEndian, &raw); err != nil {
			return fmt.Errorf("decode socket LB event: %w", err)
		}
	default:
		return fmt.Errorf("socket LB event of %d bytes, want %d (IPv4) or %d (IPv6)", len(b), event4Size, event6Size)
	}
	*ev = Event{
		MonoNs: int64(raw.TsNs), Time: time.Unix(0, decisionTime(int64(raw.TsNs), l.tick, readMono)+l.mono),
		Cookie: raw.Cookie, CgroupID: raw.CgroupId, PID: raw.Pid,
		ServiceID: raw.SvcId, Frontend: netip.AddrPortFrom(wordsAddr(raw.OrigAddr), nport(raw.OrigPort)),
		Proto: raw.Protocol, BackendID: raw.BackendId, Family: raw.Family,
		Verdict: Verdict(raw.Verdict), Hook: Hook(raw.Hook),
	}
	if ev.Verdict == Translated {
		ev.Backend = netip.AddrPortFrom(wordsAddr(raw.BackendAddr), nport(raw.BackendPort))
	}
	return nil
}

// mappedWord is the third word of an IPv4-mapped address as addrWords
// gives it (the bytes 00 00 ff ff).
const mappedWord = 0xffff0000

var (
	event4Size = binary.Size(sockSockEvent4{})
	event6Size = binary.Size(sockSockEvent6{})
)

// Counter indexes the kernel's per-CPU counters (enum sock_counter).
type Counter int

// The counters.
const (
	CounterTranslated     = Counter(sockSockCounterSOCK_COUNTER_TRANSLATED)
	CounterNoBackend      = Counter(sockSockCounterSOCK_COUNTER_NO_BACKEND)
	CounterRingBuf        = Counter(sockSockCounterSOCK_COUNTER_RINGBUF)       // decision events lost
	CounterRevNATUpdate   = Counter(sockSockCounterSOCK_COUNTER_REVNAT_UPDATE) // translations not recorded: getpeername/recvmsg will show the backend
	CounterRevNATRewrite  = Counter(sockSockCounterSOCK_COUNTER_REVNAT_REWRITE)
	CounterBackendMissing = Counter(sockSockCounterSOCK_COUNTER_BACKEND_MISSING)
	CounterMaglevMissing  = Counter(sockSockCounterSOCK_COUNTER_MAGLEV_MISSING)
	CounterFamilyMismatch = Counter(sockSockCounterSOCK_COUNTER_FAMILY_MISMATCH)
	CounterPeerStorage    = Counter(sockSockCounterSOCK_COUNTER_PEER_STORAGE) // TCP translations in socket storage: their lb_peer slot was held by another open socket
	numCounters           = int(sockSockCounterSOCK_COUNTER_MAX)
)

var counterNames = [...]string{"translated", "no_backend", "ringbuf", "revnat_update", "revnat_rewrite", "backend_missing", "maglev_missing", "family_mismatch", "peer_storage"}

// String is the counter's metric label value.
func (c Counter) String() string {
	if c < 0 || int(c) >= len(counterNames) {
		return fmt.Sprintf("counter(%d)", int(c))
	}
	return counterNames[c]
}

// Counters are the kernel counters summed over CPUs, indexed by Counter.
type Counters [numCounters]uint64

// Counters reads the kernel counters.
func (l *LB) Counters() (Counters, error) {
	var c Counters
	var per []uint64
	for i := range numCounters {
		if err := l.objs.SockCounters.Lookup(uint32(i), &per); err != nil {
			return c, fmt.Errorf("read counter %s: %w", Counter(i), err)
		}
		for _, v := range per {
			c[i] += v
		}
	}
	return c, nil
}

// decisionTime is a decision's CLOCK_MONOTONIC time from the kernel's
// coarse stamp (the last tick before it) and when it was read: no earlier
// than the stamp, and the earlier of the read and one tick after the
// stamp, both of which come after the decision.
func decisionTime(coarse, tick, read int64) int64 {
	return max(coarse, min(read, coarse+tick))
}

// coarseTick is the resolution of CLOCK_MONOTONIC_COARSE, the clock of
// bpf_ktime_get_coarse_ns: one tick (4 ms at HZ=250). If it cannot be
// read, 10 ms, a tick at HZ=100, the slowest Linux ticks.
func coarseTick() int64 {
	var ts unix.Timespec
	if err := unix.ClockGetres(unix.CLOCK_MONOTONIC_COARSE, &ts); err != nil || ts.Nano() <= 0 {
		return int64(10 * time.Millisecond)
	}
	return ts.Nano()
}

func monoToUnix() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0
	}
	return time.Now().UnixNano() - ts.Nano()
}
