package flowcodec

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"slices"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
)

// rawArray is one decoded Arrow array: its length, null count, buffers
// (validity first, in the IPC order of its type), children and dictionary.
// The column decoders of decode.go read rawArrays, whichever reader built
// them: the fast reader below for streams whose schema message is the one
// this package writes, arrow-go's ipc.Reader for any other flow.v1 writer.
type rawArray struct {
	length, nulls int
	width         int // dictionary index bytes: 1, 2 or 4; 0 if not a dictionary
	bufs          [][]byte
	children      []*rawArray
	dict          *rawArray
	// lazy, when set, holds the buffers instead of bufs: they are
	// decompressed on first use (buffer i of this array is lazy's at+i), so
	// a projected decode never decompresses the columns it skips.
	lazy *batchView
	at   int
}

func (a *rawArray) Len() int              { return a.length }
func (a *rawArray) Offset() int           { return 0 }
func (a *rawArray) NullN() int            { return a.nulls }
func (a *rawArray) Children() []*rawArray { return a.children }
func (a *rawArray) Dictionary() *rawArray { return a.dict }

// fromArrow converts arrow-go's ArrayData (of the fallback reader).
func fromArrow(d arrow.ArrayData) (*rawArray, error) {
	if d.Offset() != 0 {
		return nil, fmt.Errorf("%w: array with offset %d", ErrNotArrow, d.Offset())
	}
	a := &rawArray{length: d.Len(), nulls: d.NullN()}
	if dt, ok := d.DataType().(*arrow.DictionaryType); ok {
		a.width = dictWidth(dt)
	}
	for _, b := range d.Buffers() {
		if b == nil {
			a.bufs = append(a.bufs, nil)
		} else {
			a.bufs = append(a.bufs, b.Bytes())
		}
	}
	for _, c := range d.Children() {
		ca, err := fromArrow(c)
		if err != nil {
			return nil, err
		}
		a.children = append(a.children, ca)
	}
	if dd, ok := d.Dictionary().(*array.Data); ok && dd != nil { // a typed nil when absent
		var err error
		if a.dict, err = fromArrow(dd); err != nil {
			return nil, err
		}
	}
	return a, nil
}

// ipcMessage is one framed message of a stream, as scanStream found it.
type ipcMessage struct {
	typ   byte // 1 schema, 2 dictionary batch, 3 record batch
	frame []byte
	meta  fbuf
	body  []byte
}

// fastReader decodes streams whose schema message is byte for byte the one
// this package's Encoder writes: no arrow-go objects, one reused zstd
// decoder, decompressed buffers in one reused arena.
//
// Nothing it hands out outlives the Decode that built it (decodeCols copies
// the strings and lists a Flow keeps), so the views, arrays and column
// list of one Decode are reused by the next: a 1000-row message used to
// cost ~300 small allocations here, a few percent of the aggregator's
// decode + rollup at that size with their garbage collection. When a
// Decode ends, its views drop their references into the message and the
// arena (release), so that a reused reader pins neither.
type fastReader struct {
	schema *arrow.Schema
	fields []arrow.Field // schema.Fields(), which copies on every call
	zdec   *frameDecoder
	arena  []byte
	used   int // arena bytes in use by the current Decode
	dicts  map[int64]*rawArray

	views  []*batchView // reused views; the first nviews are in use
	nviews int
	arrays [][]rawArray // reused arrays, in chunks so that pointers stay put
	narray int          // arrays handed out in the current Decode
	cols   []*rawArray
}

func newFastReader(schema *arrow.Schema) *fastReader {
	// Each buffer is one zstd frame whose decoded size was checked against
	// the message's budget before decoding, decoded into an arena region of
	// exactly that size: a frame that decodes to more or less fails.
	return &fastReader{schema: schema, fields: schema.Fields(), zdec: newFrameDecoder(), dicts: map[int64]*rawArray{}}
}

// release drops the references of the views in use into the message and
// the arena, once every column decoder has read its buffers.
func (r *fastReader) release() {
	for _, v := range r.views[:r.nviews] {
		clear(v.spans)
		v.arena = nil
	}
}

// arrayChunk is how many rawArrays the reader allocates at a time.
const arrayChunk = 256

// newArray returns a zeroed rawArray that stays valid until the next
// Decode, keeping the capacity of the children list it had.
func (r *fastReader) newArray() *rawArray {
	c, i := r.narray/arrayChunk, r.narray%arrayChunk
	if c == len(r.arrays) {
		r.arrays = append(r.arrays, make([]rawArray, arrayChunk))
	}
	r.narray++
	a := &r.arrays[c][i]
	*a = rawArray{children: a.children[:0]}
	return a
}

// newView returns an empty batchView that stays valid until the next
// Decode, keeping the capacity of its node and span lists.
func (r *fastReader) newView() *batchView {
	if r.nviews == len(r.views) {
		r.views = append(r.views, &batchView{})
	}
	v := r.views[r.nviews]
	r.nviews++
	*v = batchView{nodes: v.nodes[:0], spans: v.spans[:0]}
	return v
}

const zstdSlack = 64

// batchView is the RecordBatch table of a message. Its buffers are
// decompressed on first use (buffer), each into its own arena region.
type batchView struct {
	length int64
	nodes  []fieldNode
	spans  []span
	arena  []byte // the regions of spans
	zdec   *frameDecoder
	err    error // the first buffer that failed to decompress
	copied int   // buffers copied from an equal one (tests)
}

// span is one body buffer of a batch: where its bytes are in the message
// and where they go (decompressed or copied) in the arena.
type span struct {
	src    []byte
	n, at  int
	z      bool // zstd frame to decompress, else raw bytes to copy
	loaded bool
	// A frame the encoder stored once for several equal buffers of a batch
	// (ipcwrite.go: time and last_seen, same-shaped lists' offsets, unset
	// columns) is decompressed once: head is 1 + the index of the first
	// span with the same bytes (0: this one is the first), and on that first
	// span, from is 1 + the index of a span already decompressed from them
	// (0: none yet), whose region the others copy.
	head, from int32
}

// buffer returns buffer i, decompressing it on first use. A buffer that
// fails to decompress comes back nil and sets v.err, which every decode
// checks before it returns rows.
func (v *batchView) buffer(i int) []byte {
	if i >= len(v.spans) {
		return nil
	}
	sp := &v.spans[i]
	if sp.n == 0 {
		return nil
	}
	// Each region has zstdSlack bytes of its own after it: zstd decodes
	// fastest with spare capacity past its output (it copies in 16-byte
	// words), about twice as fast as its bounds-exact copy loop, and may
	// write into that spare; since regions are filled in any order, the
	// spare must not belong to a neighbour. The cap limit still makes a
	// frame that decodes to more than its region fail.
	dst := v.arena[sp.at : sp.at : sp.at+sp.n+zstdSlack]
	if sp.loaded {
		return dst[:sp.n]
	}

	if !sp.z {
		dst = append(dst, sp.src...)
	} else {
		dst = dst[:sp.n]
		h := &v.spans[i]
		if sp.head > 0 {
			h = &v.spans[sp.head-1]
		}
		if h.from > 0 {
			f := &v.spans[h.from-1]
			copy(dst, v.arena[f.at:f.at+f.n])
			v.copied++
		} else if err := v.zdec.decode(dst, sp.src); err != nil {
			if v.err == nil {
				v.err = fmt.Errorf("%w: buffer %d does not decompress to its %d bytes: %v", ErrNotArrow, i, sp.n, err)
			}
			return nil
		} else {
			h.from = int32(i + 1)
		}
	}
	sp.loaded = true
	return dst
}

// readBatch reads the RecordBatch table at t of a message and reserves
// arena regions for its buffers, within budget bytes of decompressed size.
func (r *fastReader) readBatch(m *ipcMessage, t int64, budget *int) (*batchView, error) {
	v := r.newView()
	b := m.meta
	if p, ok := b.field(t, 0); ok && p != 0 {
		v.length = int64(binary.LittleEndian.Uint64(b[p:]))
	}
	if v.length < 0 || v.length > 1<<31-1 {
		return v, fmt.Errorf("%w: record batch of %d rows", ErrNotArrow, v.length)
	}
	ns, nn, ok := b.vector(t, 1, 16)
	if !ok {
		return v, fmt.Errorf("%w: malformed field nodes", ErrNotArrow)
	}
	for i := int64(0); i < nn; i++ {
		p := ns + 16*i
		v.nodes = append(v.nodes, fieldNode{int64(binary.LittleEndian.Uint64(b[p:])), int64(binary.LittleEndian.Uint64(b[p+8:]))})
	}
	bs, bn, ok := b.vector(t, 2, 16)
	if !ok {
		return v, fmt.Errorf("%w: malformed buffer list", ErrNotArrow)
	}
	compressed := false
	if c, ok := b.table(t, 3); !ok {
		return v, fmt.Errorf("%w: malformed body compression", ErrNotArrow)
	} else if c != 0 {
		codec, ok := b.field(c, 0)
		if !ok || codec == 0 || b[codec] != codecZSTD {
			return v, fmt.Errorf("%w: body compression other than zstd", ErrNotArrow)
		}
		compressed = true
	}
	// Sizes and budget first, so the arena is grown at most once; the
	// buffers themselves are decompressed when a column decoder asks.
	v.spans = slices.Grow(v.spans[:0], int(bn))[:bn]
	total := 0
	var end int64 // the highest end of a buffer so far: the body grows forward but for buffers stored once
	for i := int64(0); i < bn; i++ {
		p := bs + 16*i
		off, ln := int64(binary.LittleEndian.Uint64(b[p:])), int64(binary.LittleEndian.Uint64(b[p+8:]))
		if off < 0 || ln < 0 || off > int64(len(m.body)) || ln > int64(len(m.body))-off {
			return v, fmt.Errorf("%w: buffer %d outside the message body", ErrNotArrow, i)
		}
		sp := span{src: m.body[off : off+ln], n: int(ln)}
		if compressed && ln > 0 {
			if ln < 8 {
				return v, fmt.Errorf("%w: compressed buffer %d without length", ErrNotArrow, i)
			}
			ul := int64(binary.LittleEndian.Uint64(sp.src))
			switch {
			case ul == -1:
				sp.src, sp.n = sp.src[8:], int(ln-8)
			case ul < 0 || ul > int64(*budget):
				return v, fmt.Errorf("%w: buffer %d claims %d bytes uncompressed", ErrNotArrow, i, ul)
			default:
				sp.src, sp.n, sp.z = sp.src[8:], int(ul), true
			}
		}
		if *budget -= sp.n; *budget < 0 {
			return v, fmt.Errorf("%w: message claims more decompressed bytes than it can hold", ErrNotArrow)
		}
		if sp.z && sp.n > 0 && len(sp.src) > 0 && off < end {
			for j := i - 1; j >= 0; j-- {
				if o := &v.spans[j]; o.z && len(o.src) == len(sp.src) && &o.src[0] == &sp.src[0] {
					sp.head = o.head
					if sp.head == 0 {
						sp.head = int32(j + 1)
					}
					break
				}
			}
		}
		end = max(end, off+ln)
		sp.at = total
		v.spans[i] = sp
		if sp.n > 0 {
			total += (sp.n+7)&^7 + zstdSlack
		}
	}
	if len(r.arena)-r.used < total {
		r.arena, r.used = make([]byte, max(total, 2*len(r.arena))), 0
	}
	v.arena = r.arena[r.used : r.used+total]
	r.used += total
	v.zdec = r.zdec
	return v, nil
}

// arrayCursor hands out the nodes and buffers of a batch in IPC order.
type arrayCursor struct {
	r      *fastReader // allocates the arrays
	v      *batchView
	node   int
	buf    int
	dictID int64
	dicts  map[int64]*rawArray
}

func (c *arrayCursor) take(nbufs int) (*rawArray, error) {
	if c.node >= len(c.v.nodes) || c.buf+nbufs > len(c.v.spans) {
		return nil, fmt.Errorf("%w: record batch has fewer nodes or buffers than the schema", ErrNotArrow)
	}
	n := c.v.nodes[c.node]
	if n.length < 0 || n.length > 1<<31-1 || n.nulls < 0 || n.nulls > n.length {
		return nil, fmt.Errorf("%w: field node %d: length %d, nulls %d", ErrNotArrow, c.node, n.length, n.nulls)
	}
	a := c.r.newArray()
	a.length, a.nulls, a.lazy, a.at = int(n.length), int(n.nulls), c.v, c.buf
	c.node++
	c.buf += nbufs
	return a, nil
}

// array reads the array of one field of type t, numbering dictionaries in
// pre-order as arrow-go's dictionary mapper does.
func (c *arrayCursor) array(t arrow.DataType) (*rawArray, error) {
	switch t := t.(type) {
	case *arrow.DictionaryType:
		a, err := c.take(2)
		if err != nil {
			return nil, err
		}
		a.width = dictWidth(t)
		id := c.dictID
		c.dictID++
		if a.dict = c.dicts[id]; a.dict == nil {
			return nil, fmt.Errorf("%w: dictionary %d missing", ErrNotArrow, id)
		}
		return a, nil
	case *arrow.ListType:
		a, err := c.take(2)
		if err != nil {
			return nil, err
		}
		ch, err := c.array(t.Elem())
		if err != nil {
			return nil, err
		}
		a.children = append(a.children, ch)
		return a, nil
	case *arrow.StructType:
		a, err := c.take(1)
		if err != nil {
			return nil, err
		}
		for _, f := range t.Fields() {
			ch, err := c.array(f.Type)
			if err != nil {
				return nil, err
			}
			a.children = append(a.children, ch)
		}
		return a, nil
	case *arrow.StringType, *arrow.BinaryType:
		return c.take(3)
	}
	return c.take(2) // fixed width, fixed size binary and boolean
}

// decode decodes the columns of p of the messages after the schema message.
func (r *fastReader) decode(msgs []ipcMessage, budget int, p *Projection) ([]*batchCols, error) {
	var out []*batchCols
	r.used, r.nviews, r.narray = 0, 0, 0
	clear(r.dicts)
	defer r.release()
	for i := range msgs[1:] {
		m := &msgs[1+i]
		h, _ := m.meta.table(rootTable(m.meta), 2)
		switch m.typ {
		case headerDictionaryBatch:
			var id int64
			if p, ok := m.meta.field(h, 0); ok && p != 0 {
				id = int64(binary.LittleEndian.Uint64(m.meta[p:]))
			}
			if p, ok := m.meta.field(h, 2); ok && p != 0 && m.meta[p] != 0 {
				return nil, fmt.Errorf("%w: delta dictionary batches are not written by flowbus", ErrNotArrow)
			}
			rb, ok := m.meta.table(h, 1)
			if !ok || rb == 0 {
				return nil, fmt.Errorf("%w: dictionary batch without data", ErrNotArrow)
			}
			v, err := r.readBatch(m, rb, &budget)
			if err != nil {
				return nil, err
			}
			c := &arrayCursor{r: r, v: v}
			a, err := c.take(3) // utf8 dictionary values
			if err != nil {
				return nil, err
			}
			if int64(a.length) != v.length {
				return nil, fmt.Errorf("%w: dictionary %d length differs from its batch", ErrNotArrow, id)
			}
			r.dicts[id] = a
		case headerRecordBatch:
			v, err := r.readBatch(m, h, &budget)
			if err != nil {
				return nil, err
			}
			c := &arrayCursor{r: r, v: v, dicts: r.dicts}
			r.cols = slices.Grow(r.cols[:0], numCols)[:numCols]
			cols := r.cols
			for k := range r.fields {
				if cols[k], err = c.array(r.fields[k].Type); err != nil {
					return nil, err
				}
			}
			b, err := decodeCols(cols, int(v.length), p)
			if err != nil {
				return nil, err
			}
			for _, v := range r.views[:r.nviews] { // every view whose buffers the decoders may read
				if v.err != nil {
					return nil, v.err
				}
			}
			out = append(out, b)
		default:
			return nil, fmt.Errorf("%w: unexpected message type %d", ErrNotArrow, m.typ)
		}
	}
	return out, nil
}

func rootTable(b fbuf) int64 {
	t, _ := b.u32(0)
	return t
}

// sameSchema reports whether a schema message is the one Encoder writes.
func sameSchema(m *ipcMessage, canonical []byte) bool {
	return bytes.Equal(m.frame, canonical)
}

// dictWidth is the byte width of a dictionary type's indices (0 if not a
// signed integer type of 1, 2 or 4 bytes).
func dictWidth(t *arrow.DictionaryType) int {
	switch t.IndexType.ID() {
	case arrow.INT8:
		return 1
	case arrow.INT16:
		return 2
	case arrow.INT32:
		return 4
	}
	return 0
}
