package flowcodec

import (
	"slices"
	"strconv"
	"sync/atomic"
	"unsafe"

	"github.com/flowbus/flowbus/schemas"
)

// Column buffers of the Encoder. Each is a plain Go slice in Arrow's memory
// layout that the encoder appends to row by row and compresses straight into
// the IPC body (ipcwrite.go); they are truncated, not freed, between Encode
// calls, so a steady stream of batches allocates nothing for them.

// validity is an Arrow validity bitmap of a batch whose length Encode
// knows up front: reset sizes and zeroes it once, set fills in one row.
type validity struct {
	bits  []byte
	nulls int
}

func (v *validity) reset(n int) {
	v.bits = fit(v.bits, (n+7)>>3)
	clear(v.bits)
	v.nulls = 0
}

// set marks row i valid or null; every row is set exactly once.
func (v *validity) set(i int, ok bool) {
	var b byte
	if ok {
		b = 1
	}
	v.bits[i>>3] |= b << (i & 7)
	v.nulls += int(b ^ 1)
}

// fit returns s with length n, reusing its array when it is big enough.
// The elements keep whatever they held: the encoder assigns every one.
//
// A new array starts a varying number of cache lines into its allocation.
// The allocator aligns arrays of a page or more to the page, so without
// that all the columns' row i would share one L1 cache set and, at a
// hundred columns written per row against 8 ways, evict each other's
// lines between rows.
func fit[T any](s []T, n int) []T {
	if cap(s) < n {
		var z T
		per := 64 / int(unsafe.Sizeof(z)) // elements per line; all column types divide 64
		k := int(staggerSeq.Add(1) % 64)
		return make([]T, n+k*per)[k*per:][:n]
	}
	return s[:n]
}

// staggerSeq numbers the arrays fit allocates.
var staggerSeq atomic.Uint32

func bytesOf[T any](s []T) []byte {
	if len(s) == 0 {
		return nil
	}
	var z T
	return unsafe.Slice((*byte)(unsafe.Pointer(&s[0])), len(s)*int(unsafe.Sizeof(z)))
}

// tsCol is a timestamp column: Unix ns, null where unknown (0).
type tsCol struct {
	vals  []int64
	valid validity
}

func (c *tsCol) reset(n int) {
	c.vals = fit(c.vals, n)
	c.valid.reset(n)
}

// boolCol is a bool column (a Tristate): bit-packed values, null where
// Unknown.
type boolCol struct {
	bits  []byte
	valid validity
}

func (c *boolCol) reset(n int) {
	c.bits = fit(c.bits, (n+7)>>3)
	clear(c.bits)
	c.valid.reset(n)
}

// ipCol is a fixed_size_binary(16) address column, null where invalid.
type ipCol struct {
	vals  [][16]byte
	valid validity
}

func (c *ipCol) reset(n int) {
	c.vals = fit(c.vals, n)
	c.valid.reset(n)
}

// strKey and listKey are the header of a string or list (data pointer and
// length; -1 for a nil list) that the encoder's caches key by.
func strKey(s string) (uintptr, int32) {
	return uintptr(unsafe.Pointer(unsafe.StringData(s))), int32(len(s))
}

func listKey(s []string) (uintptr, int32) {
	if s == nil {
		return 0, -1
	}
	return uintptr(unsafe.Pointer(unsafe.SliceData(s))), int32(len(s))
}

// groupCacheSize is the number of entries of the encoder's cache of a
// cached struct's strings (encode_gen.go); like dictCol's, it is valid for
// one Encode call (a generation).
const (
	groupCacheBits = 8
	groupCacheSize = 1 << groupCacheBits
)

// strCol is a utf8 (or binary) column: offsets plus concatenated values.
type strCol struct {
	offs []int32
	data []byte
}

func (c *strCol) reset() { c.offs, c.data = append(c.offs[:0], 0), c.data[:0] }

func (c *strCol) add(s string) {
	c.data = append(c.data, s...)
	if len(c.data) > 1<<31-1 {
		panic(errColumnTooBig)
	}
	c.offs = append(c.offs, int32(len(c.data)))
}

// strListCol is a list<dictionary<utf8>> column; a nil slice is a null
// list, an empty non-nil slice an empty list. A list whose slice header
// (data pointer and length) was seen before in this Encode call reuses the
// indices written for it then: label and name slices come from the agent's
// caches, shared by every flow of an identity.
type strListCol struct {
	offs  []int32
	valid validity
	child dictCol
	gen   uint32
	seen  [listCacheSize]listCacheEntry
}

const listCacheSize = 64

type listCacheEntry struct {
	p     uintptr
	n     int32
	gen   uint32
	start int32 // first index in child.idx
}

func (c *strListCol) reset(n int) {
	c.offs = fit(c.offs, n+1)
	c.offs[0] = 0
	c.valid.reset(n)
	c.child.reset()
	c.gen++
	if c.gen == 0 {
		c.seen = [listCacheSize]listCacheEntry{}
		c.gen = 1
	}
}

// null writes row i as a null list, the inlined path for the columns
// most flows leave empty: its validity bit is already clear.
func (c *strListCol) null(i int) {
	c.offs[i+1] = int32(len(c.child.idx))
	c.valid.nulls++
}

// repeat writes row i as the n indices written before from start (a
// list the caller found in its own cache), or a null list if !valid.
func (c *strListCol) repeat(i int, start int32, n int, valid bool) {
	if n > 0 {
		c.child.idx = append(c.child.idx, c.child.idx[start:start+int32(n)]...)
	}
	c.offs[i+1] = int32(len(c.child.idx))
	c.valid.set(i, valid)
}

// set writes row i.
func (c *strListCol) set(i int, s []string) {
	if len(s) > 0 {
		p := uintptr(unsafe.Pointer(unsafe.SliceData(s)))
		e := &c.seen[(uint64(p)*0x9e3779b97f4a7c15)>>(64-6)]
		if e.p == p && e.n == int32(len(s)) && e.gen == c.gen {
			c.child.idx = append(c.child.idx, c.child.idx[e.start:e.start+e.n]...)
		} else {
			start := int32(len(c.child.idx))
			for _, x := range s {
				c.child.idx = append(c.child.idx, c.child.index(x))
			}
			*e = listCacheEntry{p: p, n: int32(len(s)), gen: c.gen, start: start}
		}
	}
	c.offs[i+1] = int32(len(c.child.idx))
	c.valid.set(i, s != nil)
}

// dictCol is a dictionary<int32, utf8> column: each batch carries every
// distinct string once, rows carry indices. Finding a string's index is the
// encoder's hot path (most columns of a flow are strings that repeat:
// namespaces, workloads, pods, labels), so a direct-mapped cache keyed by
// the string's data pointer and length answers before the map does: the
// agent hands over the same string headers again and again (labels and
// names come from its identity and endpoint caches). The cache is valid for
// one Encode call only (gen), while the caller keeps the strings alive.
type dictCol struct {
	idx   []int32
	dict  strCol
	m     map[string]int32
	gen   uint32
	empty int32 // index of "", -1 until seen
	cache [dictCacheSize]dictCacheEntry
}

const dictCacheSize = 512

type dictCacheEntry struct {
	p   uintptr
	n   int32
	gen uint32
	i   int32
}

// reset empties the column for a list child, whose indices are appended.
func (c *dictCol) reset() {
	c.idx = c.idx[:0]
	c.dict.reset()
	if c.m == nil {
		c.m = map[string]int32{}
	}
	clear(c.m)
	c.empty = -1
	c.gen++
	if c.gen == 0 { // wrapped: entries of generation 0 could look valid
		c.cache = [dictCacheSize]dictCacheEntry{}
		c.gen = 1
	}
}

// index returns the dictionary index of s, adding s if new; the caller
// stores it as row i of a column sized with resetRows (c.idx[i] = ...) or
// appends it to a list child's indices. It is not a set(i, s) method
// because that would be too big for the compiler to inline. The empty
// string, which most optional columns hold in most flows, takes a path the
// compiler inlines.
func (c *dictCol) index(s string) int32 {
	if len(s) == 0 && c.empty >= 0 {
		return c.empty
	}
	return c.indexSlow(s)
}

func (c *dictCol) indexSlow(s string) int32 {
	if len(s) == 0 {
		c.empty = c.lookup("")
		return c.empty
	}
	p := uintptr(unsafe.Pointer(unsafe.StringData(s)))
	e := &c.cache[(uint64(p)*0x9e3779b97f4a7c15)>>(64-9)]
	if e.p == p && e.n == int32(len(s)) && e.gen == c.gen {
		return e.i
	}
	i := c.lookup(s)
	*e = dictCacheEntry{p: p, n: int32(len(s)), gen: c.gen, i: i}
	return i
}

// resetRows empties the column for a batch of n rows, each set once.
func (c *dictCol) resetRows(n int) {
	c.reset()
	c.idx = fit(c.idx, n)
}

func (c *dictCol) lookup(s string) int32 {
	i, ok := c.m[s]
	if !ok {
		i = int32(len(c.m))
		c.m[s] = i
		c.dict.add(s)
	}
	return i
}

// histCol is the latency_hist column: list<struct<bucket int16, count int64>>.
type histCol struct {
	offs    []int32
	valid   validity
	buckets []int16
	counts  []int64
}

func (c *histCol) reset(n int) {
	c.offs = fit(c.offs, n+1)
	c.offs[0] = 0
	c.valid.reset(n)
	c.buckets, c.counts = c.buckets[:0], c.counts[:0]
}

// set writes row i.
func (c *histCol) set(i int, h schemas.Histogram) {
	if len(h) > 0 {
		// Grown once per row, then filled by index: two appends per bucket
		// cost twice as much.
		m := len(c.buckets)
		c.buckets = slices.Grow(c.buckets, len(h))[:m+len(h)]
		c.counts = slices.Grow(c.counts, len(h))[:m+len(h)]
		bk, ct := c.buckets[m:m+len(h)], c.counts[m:m+len(h)]
		for j, b := range h {
			bk[j] = b.Index
			ct[j] = b.Count
		}
	}
	c.offs[i+1] = int32(len(c.buckets))
	c.valid.set(i, h != nil)
}

// enumCol is a dictionary<int8 or int16, utf8> column holding enum names.
// The dictionary holds the names of the values present in the batch, in
// order of first appearance.
type enumCol struct {
	idx   []int32
	small [256]int32 // value → dictionary index + 1, for values 0..255
	big   map[int32]int16
	nums  []int32 // dictionary entries, as numbers
	name  func(int32) string
	dict  strCol
	// full is set when a batch holds more distinct values than an int16
	// index can address; Encode then fails.
	full bool
}

// init gives the column its value names; once, before the first reset.
func (c *enumCol) init(t *enumTable) {
	c.name, c.big = t.name, map[int32]int16{}
}

func (c *enumCol) reset(n int) {
	for _, v := range c.nums {
		if uint32(v) < 256 {
			c.small[v] = 0
		}
	}
	clear(c.big)
	c.nums, c.full = c.nums[:0], false
	c.idx = fit(c.idx, n)
}

// mapRows turns the values addRow stored in idx, one per row, into
// dictionary indices. Done in one pass after all rows, in row order, it
// numbers values by first appearance as a per-row lookup would, in a loop
// that keeps the column in registers.
func (c *enumCol) mapRows() {
	idx := c.idx
	for i, v := range idx {
		if j := c.small[uint8(v)]; j != 0 && uint32(v) < 256 {
			idx[i] = j - 1
			continue
		}
		idx[i] = c.indexSlow(v)
	}
}

// indexSlow returns the dictionary index of v, adding v if new: mapRows's
// path for values it has not seen below 256 and for every other value.
//
//go:noinline
func (c *enumCol) indexSlow(v int32) int32 {
	if uint32(v) < 256 {
		c.small[v] = int32(len(c.nums) + 1)
	} else if j, ok := c.big[v]; ok {
		return int32(j)
	} else {
		c.big[v] = int16(len(c.nums))
	}
	if len(c.nums) >= 1<<15-1 {
		c.full = true
		return 0
	}
	c.nums = append(c.nums, v)
	return int32(len(c.nums) - 1)
}

// Enum names. A value without a name is written as its decimal number, so
// any int32 round-trips.

// enumTable holds the names of an enumeration's values, both ways.
type enumTable struct {
	names  map[int32]string
	values map[string]int32
}

// newEnumTable builds the table of an enum column from its type's names
// (flowpb's Verdict_name, schemas.CountAsNames, …).
func newEnumTable[K ~int32 | ~uint8](names map[K]string) *enumTable {
	t := &enumTable{names: map[int32]string{}, values: map[string]int32{}}
	for v, s := range names {
		t.names[int32(v)], t.values[s] = s, int32(v)
	}
	return t
}

// name returns v's name, or v in decimal.
func (t *enumTable) name(v int32) string {
	if s, ok := t.names[v]; ok {
		return s
	}
	return strconv.FormatInt(int64(v), 10)
}

// parse returns the value named s, or s read as a decimal number.
func (t *enumTable) parse(s string) (int32, bool) {
	if v, ok := t.values[s]; ok {
		return v, true
	}
	v, err := strconv.ParseInt(s, 10, 32)
	return int32(v), err == nil
}
