package aggregate

import (
	"cmp"
	"errors"
	"fmt"
	"hash/maphash"
	"math/bits"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/flowbus/flowbus/schemas"
)

// Defaults of Config.
const (
	DefaultWindow  = time.Second
	DefaultMaxKeys = 65536
)

// MaxKeysLimit is the largest Config.MaxKeys.
const MaxKeysLimit = 1 << 24

// Config configures an Aggregator. The zero value means the defaults.
type Config struct {
	// Disabled turns aggregation off: Add passes flows through unchanged.
	Disabled bool
	// Window is how often the caller flushes (default 1 s). The Aggregator
	// itself does not keep time; the field lives here so that one Config
	// describes aggregation.
	Window time.Duration
	// MaxKeys bounds the records of one window (default 65536).
	MaxKeys int
}

// withDefaults returns c with zero fields set to their defaults.
func (c Config) withDefaults() Config {
	if c.Window == 0 {
		c.Window = DefaultWindow
	}
	if c.MaxKeys == 0 {
		c.MaxKeys = DefaultMaxKeys
	}
	return c
}

// Validate reports a Config that cannot work.
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	if c.Window < time.Millisecond {
		errs = append(errs, fmt.Errorf("aggregate window %v: must be at least 1ms", c.Window))
	}
	if c.MaxKeys < 1 || c.MaxKeys > MaxKeysLimit {
		errs = append(errs, fmt.Errorf("aggregate max keys %d: must be between 1 and %d", c.MaxKeys, MaxKeysLimit))
	}
	return errors.Join(errs...)
}

// Aggregator folds flows of one window by key. Not safe for concurrent use.
type Aggregator struct {
	cfg      Config
	seed     maphash.Seed
	seedWord uint64           // a word derived from seed, mixed into every hash
	index    map[uint64]int32 // key hash → first record with that hash
	recs     []schemas.Flow   // the window's records
	next     []int32          // next record with the same hash, -1 at the end
	order    []int32          // sortByTime's index, reused

	earlyFlushes prometheus.Counter
}

// New returns an Aggregator and registers flowbus_aggregate_early_flushes_total
// on reg (nil: not registered).
func New(cfg Config, reg prometheus.Registerer) (*Aggregator, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	a := &Aggregator{
		cfg:   cfg,
		seed:  maphash.MakeSeed(),
		index: make(map[uint64]int32),
		earlyFlushes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "flowbus_aggregate_early_flushes_total",
			Help: "Aggregation windows flushed before their time because the key table was full (max keys).",
		}),
	}
	a.seedWord = maphash.String(a.seed, "flowbus aggregation key")
	if reg != nil {
		if err := reg.Register(a.earlyFlushes); err != nil {
			return nil, fmt.Errorf("register aggregate metrics: %w", err)
		}
	}
	return a, nil
}

// Config returns the effective configuration (defaults applied).
func (a *Aggregator) Config() Config { return a.cfg }

// Len returns the number of records in the current window.
func (a *Aggregator) Len() int { return len(a.recs) }

// Add folds flows into the current window. It normally returns nil; when a
// new key finds the table full, the window is flushed early and its records
// are returned (several windows' records, in order, if that happens more than
// once in one call). With aggregation disabled it returns flows itself.
// Add does not retain flows (it copies what it keeps); the records it returns
// belong to the caller.
func (a *Aggregator) Add(flows []schemas.Flow) []schemas.Flow {
	if a.cfg.Disabled {
		return flows
	}
	var out []schemas.Flow
	for i := range flows {
		f := &flows[i]
		h := a.hash(f)
		j, ok := a.index[h]
		for ok && j >= 0 {
			if sameKey(&a.recs[j], f) {
				fold(&a.recs[j], f)
				break
			}
			j = a.next[j]
		}
		if ok && j >= 0 {
			continue
		}
		if len(a.recs) >= a.cfg.MaxKeys {
			a.earlyFlushes.Inc()
			out = append(out, a.Flush()...)
			ok = false
		}
		n := int32(len(a.recs))
		a.recs = append(a.recs, schemas.Flow{})
		start(&a.recs[n], f)
		if ok {
			a.next = append(a.next, a.index[h])
		} else {
			a.next = append(a.next, -1)
		}
		a.index[h] = n
	}
	return out
}

// Flush ends the window: it returns its records (nil if none) and starts an
// empty window. The returned slice belongs to the caller.
func (a *Aggregator) Flush() []schemas.Flow {
	if a.cfg.Disabled || len(a.recs) == 0 {
		return nil
	}
	out := a.recs
	// The next window has about as many keys; room for half as many more
	// spares re-growing (and copying) a slice of large records mid-window.
	a.recs = make([]schemas.Flow, 0, min(len(out)+len(out)/2, a.cfg.MaxKeys))
	a.next = a.next[:0]
	clear(a.index)
	a.sortByTime(out)
	return out
}

// sortByTime sorts a window's records by time (each record's time is its
// latest flow's), stably: they are kept in first-seen order, which is not
// time order. So a time-ordered input gives time-ordered output, window
// after window, since every record of a window is no later than the flows
// that arrive after it ends. The records are large, so an index is sorted
// and the permutation applied in place, each record moved once.
func (a *Aggregator) sortByTime(recs []schemas.Flow) {
	if slices.IsSortedFunc(recs, func(x, y schemas.Flow) int { return cmp.Compare(x.TimeNs, y.TimeNs) }) {
		return
	}
	idx := a.order[:0]
	for i := range recs {
		idx = append(idx, int32(i))
	}
	slices.SortStableFunc(idx, func(x, y int32) int { return cmp.Compare(recs[x].TimeNs, recs[y].TimeNs) })
	// Position i receives record idx[i]: follow each cycle once.
	for i := range idx {
		if idx[i] < 0 || int(idx[i]) == i {
			continue
		}
		tmp := recs[i]
		j := i
		for {
			k := int(idx[j])
			idx[j] = -1
			if k == i {
				recs[j] = tmp
				break
			}
			recs[j] = recs[k]
			j = k
		}
	}
	a.order = idx[:0]
}

// start makes rec the first record of its key from f.
func start(rec *schemas.Flow, f *schemas.Flow) {
	*rec = *f
	rec.Count = f.FlowCount()
	if rec.FirstSeenNs == 0 {
		rec.FirstSeenNs = f.TimeNs
	}
	if rec.LastSeenNs == 0 {
		rec.LastSeenNs = f.TimeNs
	}
	rec.LatencyHist = nil
	addLatency(rec, f)
}

// fold adds f into rec, which has the same key.
func fold(rec *schemas.Flow, f *schemas.Flow) {
	rec.Count += f.FlowCount()
	rec.UUID = ""
	rec.BytesFwd += f.BytesFwd
	rec.BytesRev += f.BytesRev
	rec.PacketsFwd += f.PacketsFwd
	rec.PacketsRev += f.PacketsRev
	first, last := f.FirstSeenNs, f.LastSeenNs
	if first == 0 {
		first = f.TimeNs
	}
	if last == 0 {
		last = f.TimeNs
	}
	if first != 0 && (rec.FirstSeenNs == 0 || first < rec.FirstSeenNs) {
		rec.FirstSeenNs = first
	}
	if last > rec.LastSeenNs {
		rec.LastSeenNs = last
	}
	if f.TimeNs > rec.TimeNs {
		rec.TimeNs = f.TimeNs
	}
	rec.TCPFlags |= f.TCPFlags
	if f.LatencyNs > rec.LatencyNs {
		rec.LatencyNs = f.LatencyNs
	}
	addLatency(rec, f)
}

// addLatency records f's latency (or its histogram) in rec's histogram.
func addLatency(rec *schemas.Flow, f *schemas.Flow) {
	switch {
	case len(f.LatencyHist) > 0:
		rec.LatencyHist.Merge(f.LatencyHist)
	case f.LatencyNs > 0:
		rec.LatencyHist.Add(f.LatencyNs, 1)
	}
}

// workload is the key's name of an endpoint: its workload, else its pod.
func workload(e *schemas.Endpoint) string {
	if e.Workload != "" {
		return e.Workload
	}
	return e.PodName
}

// hash hashes the key fields of f without allocating: each string with
// the Aggregator's seeded maphash, the numeric fields packed into four
// words, all folded together by a multiply-and-fold mixer (wyhash's "mum").
// Different keys may pack to the same words; sameKey settles collisions,
// so the hash only has to spread keys. The numeric words start from a
// seed-derived word and the strings are hashed with the seed, so which
// keys collide cannot be predicted from outside. One call per string,
// instead of feeding a streaming maphash.Hash, cut hashing from ~375 to
// ~245 ns per event in BenchmarkAgent's profile (bench/HISTORY.md).
func (a *Aggregator) hash(f *schemas.Flow) uint64 {
	const k0, k1 = 0xa0761d6478bd642f, 0xe7037ed1a0b428db
	w0 := uint64(f.Src.Identity) | uint64(f.Dst.Identity)<<32
	w1 := uint64(f.DstPort) | uint64(f.L4Protocol)<<16 | uint64(f.IsReply)<<24 | uint64(f.CountAs)<<28 |
		uint64(f.L7.Protocol)<<32 | uint64(f.L7.Type)<<40 | uint64(f.Direction)<<48 | uint64(f.ObservationPoint)<<56
	w2 := uint64(uint32(f.Verdict)) | uint64(uint32(f.DropReason))<<32
	w3 := uint64(f.L7.HTTPStatus) | uint64(f.L7.DNSRCode)<<16 | uint64(uint32(f.L7.KafkaErrorCode))<<32
	h := mum(w0^a.seedWord, w1^k1)
	h = mum(h^w2^k1, w3^k0)
	for _, s := range [...]string{
		f.NodeName,
		f.Src.Namespace, workload(&f.Src),
		f.Dst.Namespace, workload(&f.Dst),
		f.L7.HTTPMethod, f.L7.HTTPURL, f.L7.DNSQuery, f.L7.KafkaAPIKey, f.L7.KafkaTopic,
	} {
		h = mum(h^maphash.String(a.seed, s), k1)
	}
	for _, s := range f.L7.DNSQTypes {
		h = mum(h^maphash.String(a.seed, s), k0)
	}
	return h
}

// mum multiplies a and b to 128 bits and folds the halves.
func mum(a, b uint64) uint64 {
	hi, lo := bits.Mul64(a, b)
	return hi ^ lo
}

// sameKey reports whether a and b have the same aggregation key.
func sameKey(a, b *schemas.Flow) bool {
	return a.Src.Identity == b.Src.Identity &&
		a.Dst.Identity == b.Dst.Identity &&
		a.DstPort == b.DstPort &&
		a.L4Protocol == b.L4Protocol &&
		a.IsReply == b.IsReply &&
		a.CountAs == b.CountAs &&
		a.Verdict == b.Verdict &&
		a.DropReason == b.DropReason &&
		a.Direction == b.Direction &&
		a.ObservationPoint == b.ObservationPoint &&
		a.NodeName == b.NodeName &&
		a.Src.Namespace == b.Src.Namespace &&
		workload(&a.Src) == workload(&b.Src) &&
		a.Dst.Namespace == b.Dst.Namespace &&
		workload(&a.Dst) == workload(&b.Dst) &&
		a.L7.Protocol == b.L7.Protocol &&
		a.L7.Type == b.L7.Type &&
		a.L7.HTTPMethod == b.L7.HTTPMethod &&
		a.L7.HTTPURL == b.L7.HTTPURL &&
		a.L7.HTTPStatus == b.L7.HTTPStatus &&
		a.L7.DNSQuery == b.L7.DNSQuery &&
		a.L7.DNSRCode == b.L7.DNSRCode &&
		slices.Equal(a.L7.DNSQTypes, b.L7.DNSQTypes) &&
		a.L7.KafkaAPIKey == b.L7.KafkaAPIKey &&
		a.L7.KafkaTopic == b.L7.KafkaTopic &&
		a.L7.KafkaErrorCode == b.L7.KafkaErrorCode
}
