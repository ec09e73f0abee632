//go:build linux

package ebpf

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	flowpb "github.com/cilium/cilium/api/v1/flow"

	"github.com/flowbus/flowbus/agent/cluster"
	"github.com/flowbus/flowbus/bpf/socklb"
	"github.com/flowbus/flowbus/schemas"
	"github.com/flowbus/flowbus/schemas/hubble"
)

// sockLB runs bpf/socklb for the source (doc.go, "Socket load balancing"):
// it keeps the kernel's services in step with the cluster's snapshots and
// turns the kernel's decisions into records.
type sockLB struct {
	src    *Source
	lb     *socklb.LB
	algo   socklb.Algorithm
	cgroup string

	mu       sync.Mutex
	ids      map[frontendKey]uint32 // a frontend's service id, stable while it exists
	names    map[uint32]schemas.Service
	nextID   uint32
	backends map[netip.AddrPort]uint32 // backend ids, stable while the agent runs

	pods *cgroupPods
}

// frontendKey is one frontend of one service: Cilium's service id is per
// frontend (ClusterIP, port, protocol), and so is the kernel's.
type frontendKey struct {
	ns, name string
	socklb.Frontend
}

// startSockLB loads and attaches the socket LB, applies the latest
// snapshot, and follows the next ones and the kernel's decisions, whose
// records go to out. stop detaches it and returns once its last records
// are sent.
func (s *Source) startSockLB(ctx context.Context, out chan<- []schemas.Flow) (stop func(), err error) {
	c := s.cfg.SockLB
	if c == nil {
		return func() {}, nil
	}
	path := c.Cgroup
	if path == "" {
		if path, err = CgroupV2Root(); err != nil {
			return nil, fmt.Errorf("socket LB: %w", err)
		}
	}
	lb, err := socklb.Load(socklb.Config{NoTCPPeer: c.NoTCPPeer})
	if err != nil {
		return nil, fmt.Errorf("socket LB: %w", err)
	}
	if err := lb.AttachCgroup(path); err != nil {
		lb.Close()
		return nil, fmt.Errorf("socket LB: %w", err)
	}
	pinned := false
	if dir := s.cfg.PinDir; dir != "" {
		if err := lb.PinMaps(dir); err != nil {
			s.log.Warn("pin the socket LB's maps (flowbus bpf lb will not find them)", "dir", dir, "err", err)
		} else {
			pinned = true
		}
	}
	l := &sockLB{src: s, lb: lb, algo: socklb.Random, cgroup: path, ids: map[frontendKey]uint32{},
		names: map[uint32]schemas.Service{}, backends: map[netip.AddrPort]uint32{}, pods: newCgroupPods(path)}
	if c.Algorithm == "maglev" {
		l.algo = socklb.Maglev
	}
	s.log.Info("socket load balancing attached", "cgroup", path, "algorithm", l.algo.String())
	s.sockLB.Store(l)
	fctx, stopFollow := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		l.follow(fctx)
	}()
	events := make(chan socklb.Event, 4096)
	go func() {
		defer close(events)
		for {
			var ev socklb.Event
			if err := lb.ReadEvent(&ev); err != nil {
				if !errors.Is(err, os.ErrClosed) {
					s.log.Warn("socket LB decisions", "err", err)
				}
				return
			}
			events <- ev
		}
	}()
	go func() {
		defer wg.Done()
		l.emit(events, out)
	}()
	return func() {
		stopFollow()
		s.sockLB.Store(nil)
		if pinned {
			if err := lb.UnpinMaps(s.cfg.PinDir); err != nil {
				s.log.Warn("unpin the socket LB's maps", "dir", s.cfg.PinDir, "err", err)
			}
		}
		if err := lb.Close(); err != nil {
			s.log.Warn("close socket LB", "err", err)
		}
		wg.Wait()
	}, nil
}

// follow applies every snapshot of the cluster until ctx is done.
func (l *sockLB) follow(ctx context.Context) {
	st := l.src.cfg.Cluster
	var rev uint64
	for {
		snap, err := st.Wait(ctx, rev)
		if err != nil {
			return
		}
		rev = snap.Revision
		start := time.Now()
		n, err := l.apply(snap)
		if err != nil {
			l.src.log.Warn("socket LB services partly written", "snapshot", snap.Revision, "err", err)
		}
		l.src.log.Debug("socket LB services applied", "snapshot", snap.Revision, "frontends", n, "took", time.Since(start).Round(time.Microsecond))
	}
}

// apply makes the kernel translate exactly the frontends of snap's
// services to their ready backends, and returns how many frontends it holds.
func (l *sockLB) apply(snap *cluster.Snapshot) (int, error) {
	want := sockServices(snap)
	l.mu.Lock()
	defer l.mu.Unlock()
	var errs []error
	live := map[frontendKey]bool{}
	for _, w := range want {
		live[w.key] = true
	}
	// Frontends gone first: their ids are free for the new ones.
	for k := range l.ids {
		if !live[k] {
			if err := l.lb.RemoveService(k.Frontend); err != nil {
				errs = append(errs, err)
			}
			delete(l.ids, k)
		}
	}
	for _, w := range want {
		id, ok := l.ids[w.key]
		if !ok {
			if id = l.allocID(); id == 0 {
				errs = append(errs, fmt.Errorf("service %s/%s %s: no free service id", w.key.ns, w.key.name, w.key.Frontend))
				continue
			}
			l.ids[w.key] = id
			l.names[id] = schemas.Service{Namespace: w.key.ns, Name: w.key.name}
		}
		svc := socklb.Service{Frontend: w.key.Frontend, ID: id, Algorithm: l.algo, Backends: make([]socklb.Backend, len(w.backends))}
		for i, b := range w.backends {
			bid, ok := l.backends[b]
			if !ok {
				bid = uint32(len(l.backends) + 1)
				l.backends[b] = bid
			}
			svc.Backends[i] = socklb.Backend{ID: bid, Addr: b.Addr(), Port: b.Port()}
		}
		if err := l.lb.SetService(svc); err != nil {
			errs = append(errs, err)
		}
	}
	return len(l.ids), errors.Join(errs...)
}

// allocID returns the next service id that no frontend holds, after the
// last one given (so a late decision of a removed frontend is not taken
// for a new one's), or 0 when all are taken.
func (l *sockLB) allocID() uint32 {
	used := make(map[uint32]bool, len(l.ids))
	for _, id := range l.ids {
		used[id] = true
	}
	const maxID = socklb.DefaultMaxServices - 1
	for range maxID {
		l.nextID = l.nextID%maxID + 1
		if !used[l.nextID] {
			return l.nextID
		}
	}
	return 0
}

// service names a service id.
func (l *sockLB) service(id uint32) schemas.Service {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.names[id]
}

type wantService struct {
	key      frontendKey
	backends []netip.AddrPort
}

// sockServices lists the frontends of snap's services, each ClusterIP
// with each TCP or UDP port, and the ready backends of each: the
// addresses of the ClusterIP's family on the port's target port and
// protocol. A named target port (0) takes every backend of its protocol
// when it is the service's only port of that protocol; otherwise the
// backends cannot be told apart and the frontend has none. Headless
// services (no ClusterIP) have no frontend.
func sockServices(snap *cluster.Snapshot) []wantService {
	var out []wantService
	for i := range snap.Services {
		s := &snap.Services[i]
		for _, ip := range s.ClusterIPs {
			ip = ip.Unmap()
			if !ip.IsValid() || ip.IsUnspecified() {
				continue
			}
			for _, p := range s.Ports {
				proto := protoNumber(p.Protocol)
				if proto != syscall.IPPROTO_TCP && proto != syscall.IPPROTO_UDP || p.Port == 0 {
					continue
				}
				w := wantService{key: frontendKey{ns: s.Namespace, name: s.Name, Frontend: socklb.Frontend{Addr: ip, Port: p.Port, Proto: proto}}}
				target := p.TargetPort
				anyPort := false
				if target == 0 {
					same := 0
					for _, q := range s.Ports {
						if protoNumber(q.Protocol) == proto {
							same++
						}
					}
					anyPort = same == 1
				}
				seen := map[netip.AddrPort]bool{}
				for _, b := range s.Backends {
					a := b.IP.Unmap()
					if protoNumber(b.Protocol) != proto || a.Is4() != ip.Is4() || b.Port == 0 || (!anyPort && b.Port != target) {
						continue
					}
					ap := netip.AddrPortFrom(a, b.Port)
					if !seen[ap] {
						seen[ap] = true
						w.backends = append(w.backends, ap)
					}
				}
				out = append(out, w)
			}
		}
	}
	return out
}

// emit turns the decisions into records and sends them on out in
// batches, at the latest every 100 ms, until events is closed.
func (l *sockLB) emit(events <-chan socklb.Event, out chan<- []schemas.Flow) {
	b := newBatcher(l.src, out)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case ev, ok := <-events:
			if !ok {
				b.send()
				return
			}
			b.batch = append(b.batch, l.record(&ev))
			if b.full() {
				b.send()
			}
		case <-tick.C:
			b.send()
		}
	}
}

// record is a decision as Hubble's socket trace (doc.go, "Socket load
// balancing").
func (l *sockLB) record(ev *socklb.Event) schemas.Flow {
	f := schemas.Flow{
		TimeNs: ev.Time.UnixNano(), NodeName: l.src.cfg.Node,
		EventType: hubble.MsgTypeTraceSock, EventSubType: int32(flowpb.SocketTranslationPoint_SOCK_XLATE_POINT_POST_DIRECTION_FWD),
		Verdict: flowpb.Verdict_TRANSLATED, Direction: flowpb.TrafficDirection_EGRESS, IsReply: schemas.False,
		L4Protocol: ev.Proto, DstIP: ev.Backend.Addr(), DstPort: ev.Backend.Port(),
		DstService: l.service(ev.ServiceID), Count: 1, CountAs: schemas.CountNone,
		IPVersion: flowpb.IPVersion_IPv4,
	}
	f.FirstSeenNs, f.LastSeenNs = f.TimeNs, f.TimeNs
	if ev.Verdict != socklb.Translated {
		// Nothing behind the service: the call failed with ECONNREFUSED.
		// A drop event, as Cilium's datapath reports a packet to a service
		// without backends: the sub-type is the drop reason.
		f.Verdict, f.DropReason = flowpb.Verdict_DROPPED, flowpb.DropReason_SERVICE_BACKEND_NOT_FOUND
		f.EventType, f.EventSubType = hubble.MsgTypeDrop, int32(flowpb.DropReason_SERVICE_BACKEND_NOT_FOUND)
		f.DstIP, f.DstPort = ev.Frontend.Addr(), ev.Frontend.Port()
	}
	if f.DstIP.Is6() {
		f.IPVersion = flowpb.IPVersion_IPv6
	}
	v := l.src.view.Load()
	if p, ok := l.pods.pod(ev.CgroupID, v); ok {
		f.Src = p.Endpoint
		for _, a := range p.addrs {
			if a.Is4() == f.DstIP.Is4() {
				f.SrcIP = a
				break
			}
		}
	}
	if p, ok := v.pod(f.DstIP); ok {
		f.Dst = *p
	}
	return f
}

// cgroupPods tells which pod a cgroup id (a cgroup v2 directory's inode)
// belongs to, from the name of that directory or of its nearest parent
// below the attach point that names a pod: a Kubernetes node's
// "kubepods-<qos>-pod<UID>.slice" (systemd driver, the UID's dashes as
// underscores) or "pod<UID>" (cgroupfs driver), the pod of that UID in
// the cluster view; or the lab's "<namespace>_<name>". The directories
// below the attach point are scanned when an unknown id comes, at most
// every rescanEvery.
type cgroupPods struct {
	root string

	mu       sync.Mutex
	byID     map[uint64]string // cgroup id → "<namespace>_<name>", "uid:<UID>" or "" (no pod's)
	lastScan time.Time
	idxView  *view                   // the view idx was built from
	idx      map[string]*podEndpoint // "<namespace>_<name>" → the pod
}

const rescanEvery = 200 * time.Millisecond

func newCgroupPods(root string) *cgroupPods {
	return &cgroupPods{root: root, byID: map[uint64]string{}}
}

// podEndpoint is a pod's endpoint and addresses.
type podEndpoint struct {
	schemas.Endpoint
	addrs []netip.Addr
}

// pod returns the pod of cgroup id in view v.
func (c *cgroupPods) pod(id uint64, v *view) (*podEndpoint, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	key, ok := c.byID[id]
	if !ok && time.Since(c.lastScan) >= rescanEvery {
		c.scan()
		key = c.byID[id]
	}
	if key == "" || v == nil {
		return nil, false
	}
	if c.idxView != v {
		c.idxView, c.idx = v, map[string]*podEndpoint{}
		for a, ep := range v.byIP {
			k := ep.Namespace + "_" + ep.PodName
			p := c.idx[k]
			if p == nil {
				p = &podEndpoint{Endpoint: *ep}
				c.idx[k] = p
			}
			p.addrs = append(p.addrs, a)
		}
		for _, p := range c.idx {
			slices.SortFunc(p.addrs, func(x, y netip.Addr) int { return x.Compare(y) })
		}
	}
	if uid, ok := strings.CutPrefix(key, "uid:"); ok {
		ep, ok := v.byUID[uid]
		if !ok {
			return nil, false
		}
		key = ep.Namespace + "_" + ep.PodName
	}
	p, ok := c.idx[key]
	return p, ok
}

// cgroupPodKey is the key of the pod a cgroup directory's name part
// names, "uid:<UID>" or "<namespace>_<name>", or "" for none.
func cgroupPodKey(part string) string {
	s := strings.TrimSuffix(part, ".slice")
	if i := strings.LastIndex(s, "pod"); i >= 0 && (i == 0 || s[i-1] == '-') {
		if uid, ok := podUID(s[i+len("pod"):]); ok {
			return "uid:" + uid
		}
	}
	if ns, name, ok := strings.Cut(part, "_"); ok && ns != "" && name != "" && !strings.Contains(name, "_") {
		return part
	}
	return ""
}

// podUID returns s as a Kubernetes UID (8-4-4-4-12 hex digits, "-" or,
// as systemd's slice names write it, "_" between the groups) with dashes.
func podUID(s string) (string, bool) {
	if len(s) != 36 {
		return "", false
	}
	b := []byte(s)
	for i, c := range b {
		switch {
		case i == 8 || i == 13 || i == 18 || i == 23:
			if c != '-' && c != '_' {
				return "", false
			}
			b[i] = '-'
		case c >= '0' && c <= '9', c >= 'a' && c <= 'f':
		default:
			return "", false
		}
	}
	return string(b), true
}

// scan maps every directory below the root to its pod's key: that of its
// own name or its nearest parent's that names a pod ("" for none).
func (c *cgroupPods) scan() {
	c.lastScan = time.Now()
	_ = filepath.WalkDir(c.root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return nil
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return nil
		}
		rel, _ := filepath.Rel(c.root, path)
		key := ""
		for _, part := range strings.Split(rel, string(filepath.Separator)) {
			if k := cgroupPodKey(part); k != "" {
				key = k
			}
		}
		c.byID[st.Ino] = key
		return nil
	})
}
