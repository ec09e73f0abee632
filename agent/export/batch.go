package export

import (
	"time"

	"github.com/flowbus/flowbus/schemas"
)

// partKey is a flow's partition key without building the string: the pair
// (namespace, name) that Flow.PartitionKey joins with "/", or, for the rare
// keys that are not a workload or pod, the whole key in ns.
type partKey struct{ ns, name string }

func partitionOf(f *schemas.Flow) (partKey, bool) {
	switch {
	case f.Dst.Workload != "":
		return partKey{f.Dst.Namespace, f.Dst.Workload}, true
	case f.Dst.PodName != "":
		return partKey{f.Dst.Namespace, f.Dst.PodName}, true
	}
	return partKey{ns: f.PartitionKey()}, false
}

// batch is the open batch of one partition.
type batch struct {
	key   string
	flows []schemas.Flow
	bytes int
	since time.Time // when its first flow arrived, or when it was last sent
}

// batcher groups records by partition until a batch reaches MaxRows or
// MaxBytes or is older than Linger. Used by Run's goroutine only.
type batcher struct {
	e     *Exporter
	parts map[partKey]*batch
}

func newBatcher(e *Exporter) *batcher {
	return &batcher{e: e, parts: make(map[partKey]*batch)}
}

func (b *batcher) add(flows []schemas.Flow) {
	now := time.Now()
	for i := range flows {
		f := &flows[i]
		var k partKey
		joined := false
		if !b.e.oneBatch {
			k, joined = partitionOf(f)
		}
		p := b.parts[k]
		if p == nil {
			key := k.ns
			if joined {
				key = k.ns + "/" + k.name
			}
			p = &batch{key: key}
			b.parts[k] = p
		}
		if len(p.flows) == 0 {
			p.since = now
			if p.flows == nil {
				p.flows = make([]schemas.Flow, 0, min(b.e.cfg.MaxRows, 1024))
			}
		}
		p.flows = append(p.flows, *f)
		p.bytes += estimate(f)
		if len(p.flows) >= b.e.cfg.MaxRows || p.bytes >= b.e.cfg.MaxBytes {
			b.send(p)
		}
	}
}

// idleLingers is how many Linger periods an empty partition batch is kept
// (with its slice, for reuse) before it is forgotten, so memory follows the
// partitions that are active rather than every partition ever seen.
const idleLingers = 10

// expire sends every batch older than Linger and forgets idle ones.
func (b *batcher) expire(now time.Time) {
	for k, p := range b.parts {
		switch age := now.Sub(p.since); {
		case len(p.flows) > 0 && age >= b.e.cfg.Linger:
			b.send(p)
			p.since = now
		case len(p.flows) == 0 && age >= idleLingers*b.e.cfg.Linger:
			delete(b.parts, k)
		}
	}
}

func (b *batcher) flushAll() {
	for _, p := range b.parts {
		if len(p.flows) > 0 {
			b.send(p)
		}
	}
}

// send emits p's flows and starts a new batch in the same slice: emit
// encodes synchronously, and the encoded message shares no memory with it.
func (b *batcher) send(p *batch) {
	b.e.emit(p.key, p.flows)
	p.flows = p.flows[:0]
	p.bytes = 0
}

// estimate is a cheap upper-bound guess of a flow's share of an encoded
// message before compression: fixed columns plus its strings.
func estimate(f *schemas.Flow) int {
	n := 256 + len(f.UUID) + len(f.NodeName) +
		len(f.Src.Namespace) + len(f.Src.PodName) + len(f.Src.Workload) +
		len(f.Dst.Namespace) + len(f.Dst.PodName) + len(f.Dst.Workload) +
		len(f.L7.HTTPURL) + len(f.L7.DNSQuery) + 16*len(f.LatencyHist)
	for _, l := range f.Src.Labels {
		n += len(l)
	}
	for _, l := range f.Dst.Labels {
		n += len(l)
	}
	return n
}
