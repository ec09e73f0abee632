package fqdn

import (
	"container/heap"
	"math"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	flowpb "github.com/cilium/cilium/api/v1/flow"

	"github.com/flowbus/flowbus/agent/l7"
	"github.com/flowbus/flowbus/schemas"
)

// Defaults of Options.
const (
	DefaultMaxPerPod  = 5_000
	DefaultMaxEntries = 200_000
)

// Options tune a Cache; the zero value takes the defaults.
type Options struct {
	// MaxPerPod caps the (IP, name) entries of one pod (DefaultMaxPerPod),
	// MaxEntries those of the whole cache (DefaultMaxEntries). Over a cap
	// the entry expiring soonest goes, counted in Stats.Evicted.
	MaxPerPod, MaxEntries int
	// MinTTL raises shorter TTLs to it, in seconds, as Cilium's
	// --tofqdns-min-ttl (default 0: the answers' TTLs as they are).
	MinTTL uint32
	// Grace keeps an entry this long past its TTL, as Cilium's
	// --tofqdns-idle-connection-grace-period (default 0).
	Grace time.Duration
}

// Stats counts what left the cache other than by a refresh.
type Stats struct {
	Expired uint64 // entries past their expiry, removed
	Evicted uint64 // entries removed by a cap before their expiry
}

type entry struct {
	pod    *pod
	ip     netip.Addr
	name   string
	from   int64 // first instant alive: the earliest answer's time, ns
	exp    int64 // last instant alive, ns
	gi, pi int   // indices in the cache's and the pod's heaps
}

type pod struct {
	key  string
	byIP map[netip.Addr][]*entry
	h    podHeap
}

// Cache maps, per pod, the IPs its DNS answers gave to the names it asked
// for. It is safe for concurrent use (Names takes a read lock).
type Cache struct {
	mu    sync.RWMutex
	opts  Options
	pods  map[string]*pod
	all   allHeap
	stats Stats
}

// New returns an empty cache.
func New(opts Options) *Cache {
	if opts.MaxPerPod <= 0 {
		opts.MaxPerPod = DefaultMaxPerPod
	}
	if opts.MaxEntries <= 0 {
		opts.MaxEntries = DefaultMaxEntries
	}
	if opts.Grace < 0 {
		opts.Grace = 0
	}
	return &Cache{opts: opts, pods: make(map[string]*pod)}
}

// Add records an answer pod received at nowNs (a monotonic time in ns, the
// clock of every now of the cache): each of ips resolves to each of names
// (the queried name, then the CNAME chain) for ttl seconds (at least
// MinTTL) plus Grace. Names are kept as Hubble puts them on flows:
// lower-cased, without the trailing dot. A name already known for an
// IP keeps the later of its expiries.
func (c *Cache) Add(podKey string, nowNs int64, ttl uint32, ips []netip.Addr, names ...string) {
	if len(ips) == 0 || len(names) == 0 {
		return
	}
	life := int64(max(ttl, c.opts.MinTTL))*int64(time.Second) + int64(c.opts.Grace)
	exp := nowNs + life
	if life < 0 || exp < nowNs { // overflow: forever
		exp = math.MaxInt64
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.expire(nowNs)
	p := c.pods[podKey]
	if p == nil {
		p = &pod{key: podKey, byIP: make(map[netip.Addr][]*entry)}
		c.pods[podKey] = p
	}
	for _, ip := range ips {
		ip = ip.Unmap()
		for _, n := range names {
			// Hubble's form of a name on a flow: lower case, no
			// trailing dot (the query keeps it: api.example.com.).
			n = strings.TrimSuffix(strings.ToLower(n), ".")
			if e := find(p.byIP[ip], n); e != nil {
				e.from = min(e.from, nowNs)
				if exp > e.exp {
					e.exp = exp
					heap.Fix(&c.all, e.gi)
					heap.Fix(&p.h, e.pi)
				}
				continue
			}
			e := &entry{pod: p, ip: ip, name: n, from: nowNs, exp: exp}
			p.byIP[ip] = append(p.byIP[ip], e)
			heap.Push(&c.all, e)
			heap.Push(&p.h, e)
		}
	}
	for len(p.h) > c.opts.MaxPerPod {
		c.remove(p.h[0])
		c.stats.Evicted++
	}
	for len(c.all) > c.opts.MaxEntries {
		c.remove(c.all[0])
		c.stats.Evicted++
	}
}

// AddExchange adds the answer of a DNS exchange (a RESPONSE with rcode 0
// and addresses) at its response's time; other exchanges are ignored.
func (c *Cache) AddExchange(podKey string, e *l7.Exchange) {
	l := &e.L7
	if l.Protocol != schemas.L7DNS || l.Type != flowpb.L7FlowType_RESPONSE || l.DNSRCode != 0 || len(l.DNSIPs) == 0 || l.DNSQuery == "" {
		return
	}
	var ipBuf [8]netip.Addr
	ips := ipBuf[:0]
	for _, s := range l.DNSIPs {
		if ip, err := netip.ParseAddr(s); err == nil {
			ips = append(ips, ip)
		}
	}
	var nameBuf [8]string
	names := append(append(nameBuf[:0], l.DNSQuery), l.DNSCNAMEs...)
	c.Add(podKey, e.ResponseNs, l.DNSTTL, ips, names...)
}

// Names returns the names ip resolved to for pod that are alive at nowNs
// (answered at or before it, not expired), sorted; nil when none. A record
// stamped before the answer that named its address does not carry the
// name, even when it is made after the answer came.
func (c *Cache) Names(podKey string, ip netip.Addr, nowNs int64) []string {
	c.mu.RLock()
	defer c.mu.RUnlock()
	p := c.pods[podKey]
	if p == nil {
		return nil
	}
	es := p.byIP[ip.Unmap()]
	n := 0
	for _, e := range es {
		if e.from <= nowNs && nowNs <= e.exp {
			n++
		}
	}
	if n == 0 {
		return nil
	}
	out := make([]string, 0, n)
	for _, e := range es {
		if e.from <= nowNs && nowNs <= e.exp {
			out = append(out, e.name)
		}
	}
	slices.Sort(out)
	return out
}

// Expire removes the entries expired at nowNs (Add does it too).
func (c *Cache) Expire(nowNs int64) {
	c.mu.Lock()
	c.expire(nowNs)
	c.mu.Unlock()
}

// Len is the number of (pod, IP, name) entries held.
func (c *Cache) Len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.all)
}

// Stats returns the counters.
func (c *Cache) Stats() Stats {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.stats
}

func (c *Cache) expire(nowNs int64) {
	for len(c.all) > 0 && c.all[0].exp < nowNs {
		c.remove(c.all[0])
		c.stats.Expired++
	}
}

func (c *Cache) remove(e *entry) {
	heap.Remove(&c.all, e.gi)
	p := e.pod
	heap.Remove(&p.h, e.pi)
	es := p.byIP[e.ip]
	if i := slices.Index(es, e); i >= 0 {
		es[i] = es[len(es)-1]
		es[len(es)-1] = nil
		es = es[:len(es)-1]
	}
	if len(es) == 0 {
		delete(p.byIP, e.ip)
	} else {
		p.byIP[e.ip] = es
	}
	if len(p.h) == 0 {
		delete(c.pods, p.key)
	}
}

func find(es []*entry, name string) *entry {
	for _, e := range es {
		if e.name == name {
			return e
		}
	}
	return nil
}

// allHeap and podHeap order entries by expiry, soonest first.
type allHeap []*entry

func (h allHeap) Len() int           { return len(h) }
func (h allHeap) Less(i, j int) bool { return h[i].exp < h[j].exp }
func (h allHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i]; h[i].gi = i; h[j].gi = j }
func (h *allHeap) Push(x any)        { e := x.(*entry); e.gi = len(*h); *h = append(*h, e) }
func (h *allHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return e
}

type podHeap []*entry

func (h podHeap) Len() int           { return len(h) }
func (h podHeap) Less(i, j int) bool { return h[i].exp < h[j].exp }
func (h podHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i]; h[i].pi = i; h[j].pi = j }
func (h *podHeap) Push(x any)        { e := x.(*entry); e.pi = len(*h); *h = append(*h, e) }
func (h *podHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return e
}
