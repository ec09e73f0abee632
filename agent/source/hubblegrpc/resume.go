package hubblegrpc

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"time"
)

// entry is one delivered flow as the resume state remembers it.
type entry struct {
	ts  int64  // flow time, ns
	key uint64 // flowKey
}

// nodeMark is where the stream of one node stood.
type nodeMark struct {
	frontier int64     // newest flow time delivered
	lastTS   int64     // time of the last flow delivered (stream order)
	lastKey  uint64    // its key
	seen     time.Time // when it was delivered (wall clock)
}

// resume is the state that lets a new stream continue where the last one
// stopped: the flows delivered recently (in delivery order, capped) and each
// node's position. Not safe for concurrent use.
type resume struct {
	overlap    int64
	max        int
	hist       []entry // ring buffer, oldest at start
	start, n   int
	evictedMax int64 // newest time of a flow dropped from hist
	nodes      map[string]*nodeMark
	last       *nodeMark // cache: the node of the previous flow
	lastName   string
	pushes     int

	// Set by begin for a resumed stream.
	seen    map[uint64]struct{} // keys of delivered flows at or after the resume point
	seenMax int64               // no delivered flow is newer than this
	expect  map[string]uint64   // node → the last key delivered, expected again
}

func newResume(overlap time.Duration, max int) *resume {
	return &resume{overlap: int64(overlap), max: max, nodes: map[string]*nodeMark{}, evictedMax: math.MinInt64}
}

// activeNode is how long a node counts towards the resume point after its
// last flow: a node that stopped sending does not hold every resume back.
const activeNode = time.Minute

// since returns where a new stream starts (ns), and false when nothing was
// ever delivered (start from the oldest flow the server holds). It is the
// oldest position of the nodes heard from lately, minus the overlap, and
// never before a flow the history no longer holds: every delivered flow at
// or after it is in the history, so that a flow sent again is recognised.
func (r *resume) since(now time.Time) (int64, bool) {
	if len(r.nodes) == 0 {
		return 0, false
	}
	from, newest := int64(math.MaxInt64), int64(math.MinInt64)
	for _, m := range r.nodes {
		newest = max(newest, m.frontier)
		if now.Sub(m.seen) < activeNode {
			from = min(from, m.frontier)
		}
	}
	if from == math.MaxInt64 {
		from = newest
	}
	from -= r.overlap
	if from <= r.evictedMax {
		from = r.evictedMax + 1
	}
	return max(from, 0), true
}

// begin prepares the check of a stream that starts at since: the delivered
// flows it may send again, and the last flow of each node, which a server
// that still holds it sends again.
func (r *resume) begin(since int64) {
	r.seen, r.expect, r.seenMax = nil, nil, math.MinInt64
	if len(r.nodes) == 0 {
		return
	}
	r.seen = make(map[uint64]struct{}, r.n)
	for i := range r.n {
		e := r.hist[(r.start+i)%len(r.hist)]
		if e.ts >= since {
			r.seen[e.key] = struct{}{}
		}
	}
	r.expect = map[string]uint64{}
	for name, m := range r.nodes {
		r.seenMax = max(r.seenMax, m.frontier)
		if m.lastTS >= since {
			r.expect[name] = m.lastKey
		}
	}
}

// check classifies a flow of the current stream: dup when it was delivered
// before (drop it), gap when it is the first new flow of a node whose last
// delivered flow the server did not send again (the server no longer holds
// it: it restarted, or its ring overwrote it; flows in between may be lost).
func (r *resume) check(node string, ts int64, key uint64) (dup, gap bool) {
	if r.seen != nil {
		if ts <= r.seenMax {
			if _, ok := r.seen[key]; ok {
				if r.expect[node] == key {
					delete(r.expect, node)
				}
				return true, false
			}
		} else if ts > r.seenMax+r.overlap {
			r.seen = nil // past the overlap: no delivered flow can come again
		}
	}
	if len(r.expect) > 0 {
		if _, ok := r.expect[node]; ok {
			delete(r.expect, node)
			return false, true
		}
	}
	return false, false
}

// delivered records flows handed downstream, in delivery order.
func (r *resume) delivered(node string, ts int64, key uint64, now time.Time) {
	r.push(ts, key)
	if r.pushes++; r.pushes%pruneEvery == 0 {
		r.prune(now)
	}
	m := r.last
	if m == nil || node != r.lastName {
		if m = r.nodes[node]; m == nil {
			m = &nodeMark{frontier: math.MinInt64}
			r.nodes[node] = m
		}
		r.last, r.lastName = m, node
	}
	m.frontier = max(m.frontier, ts)
	m.lastTS, m.lastKey, m.seen = ts, key, now
}

// pruneEvery is how many deliveries pass between two prunes of the history.
const pruneEvery = 4096

// prune forgets the remembered flows older than where a stream would start
// now: a resume never needs them. Forgetting moves evictedMax, so a later
// resume point never goes back before them (since clamps it).
func (r *resume) prune(now time.Time) {
	cut, ok := r.since(now)
	if !ok {
		return
	}
	for r.n > 0 && r.hist[r.start].ts < cut {
		r.evictedMax = max(r.evictedMax, r.hist[r.start].ts)
		r.start = (r.start + 1) % len(r.hist)
		r.n--
	}
}

// flowKey identifies a flow across streams: FNV-1a of the node name and the
// flow's UUID (or, for a flow without one, of its encoding). Stable across
// processes, as the state file needs.
func flowKey(node, uuid string, encoded func() []byte) uint64 {
	const prime = 1099511628211
	h := uint64(14695981039346656037)
	for i := 0; i < len(node); i++ {
		h = (h ^ uint64(node[i])) * prime
	}
	h = (h ^ 0xff) * prime
	if uuid == "" {
		for _, c := range encoded() {
			h = (h ^ uint64(c)) * prime
		}
		return h
	}
	for i := 0; i < len(uuid); i++ {
		h = (h ^ uint64(uuid[i])) * prime
	}
	return h
}

// stateFile is the on-disk form of the resume state (JSON; the history is
// base64 of little-endian (time ns, key) pairs, oldest first).
type stateFile struct {
	Version    int                  `json:"version"`
	Server     string               `json:"server"`
	Saved      time.Time            `json:"saved"`
	EvictedMax int64                `json:"evicted_max_ns"`
	Nodes      map[string]nodeState `json:"nodes"`
	History    string               `json:"history"`
}

type nodeState struct {
	Frontier int64     `json:"frontier_ns"`
	LastTS   int64     `json:"last_ns"`
	LastKey  uint64    `json:"last_key"`
	Seen     time.Time `json:"seen"`
}

const stateVersion = 1

// save writes the state to path atomically (temporary file, fsync, rename).
func (r *resume) save(path, server string, now time.Time) error {
	sf := stateFile{Version: stateVersion, Server: server, Saved: now, EvictedMax: r.evictedMax, Nodes: map[string]nodeState{}}
	for name, m := range r.nodes {
		sf.Nodes[name] = nodeState{Frontier: m.frontier, LastTS: m.lastTS, LastKey: m.lastKey, Seen: m.seen}
	}
	b := make([]byte, 0, 16*r.n)
	for i := range r.n {
		e := r.hist[(r.start+i)%len(r.hist)]
		b = binary.LittleEndian.AppendUint64(b, uint64(e.ts))
		b = binary.LittleEndian.AppendUint64(b, e.key)
	}
	sf.History = base64.StdEncoding.EncodeToString(b)
	data, err := json.Marshal(&sf)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("hubble state: %w", err)
	}
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return fmt.Errorf("hubble state: %w", err)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("hubble state: %w", err)
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// errOtherServer: the state file was written for another server.
var errOtherServer = errors.New("state of another server")

// load reads the state saved at path for server. A missing file is no
// state (nil error).
func (r *resume) load(path, server string) error {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("hubble state: %w", err)
	}
	var sf stateFile
	if err := json.Unmarshal(data, &sf); err != nil {
		return fmt.Errorf("hubble state %s: %w", path, err)
	}
	if sf.Version != stateVersion {
		return fmt.Errorf("hubble state %s: version %d, want %d", path, sf.Version, stateVersion)
	}
	if sf.Server != server {
		return fmt.Errorf("hubble state %s: %w %q (this source reads %q)", path, errOtherServer, sf.Server, server)
	}
	b, err := base64.StdEncoding.DecodeString(sf.History)
	if err != nil || len(b)%16 != 0 {
		return fmt.Errorf("hubble state %s: malformed history", path)
	}
	fresh := newResume(time.Duration(r.overlap), r.max)
	fresh.evictedMax = sf.EvictedMax
	for name, n := range sf.Nodes {
		fresh.nodes[name] = &nodeMark{frontier: n.Frontier, lastTS: n.LastTS, lastKey: n.LastKey, seen: n.Seen}
	}
	for i := 0; i+16 <= len(b); i += 16 {
		ts, key := int64(binary.LittleEndian.Uint64(b[i:])), binary.LittleEndian.Uint64(b[i+8:])
		fresh.push(ts, key)
	}
	*r = *fresh
	return nil
}

// push appends to the history, dropping its oldest entry when full.
func (r *resume) push(ts int64, key uint64) {
	if len(r.hist) < r.max && r.n == len(r.hist) {
		grown := make([]entry, min(r.max, max(1024, 2*len(r.hist))))
		for i := range r.n {
			grown[i] = r.hist[(r.start+i)%len(r.hist)]
		}
		r.hist, r.start = grown, 0
	}
	if r.n == len(r.hist) {
		r.evictedMax = max(r.evictedMax, r.hist[r.start].ts)
		r.hist[r.start] = entry{ts, key}
		r.start = (r.start + 1) % len(r.hist)
		return
	}
	r.hist[(r.start+r.n)%len(r.hist)] = entry{ts, key}
	r.n++
}
