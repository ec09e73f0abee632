package flowcodec

import "encoding/binary"

// A minimal, bounds-checked walk over the flatbuffer metadata of an Arrow
// IPC message. arrow-go trusts the vector lengths it finds there and
// allocates by them (make([]arrow.Field, n), make([]string, n)), so a
// corrupt length would exhaust memory before any error could be returned.
// checkMessage verifies that every vector arrow-go sizes an allocation by
// fits inside the metadata, and bounds the number of fields visited, before
// arrow-go parses anything.

type fbuf []byte

func (b fbuf) u32(p int64) (int64, bool) {
	if p < 0 || p+4 > int64(len(b)) {
		return 0, false
	}
	return int64(binary.LittleEndian.Uint32(b[p:])), true
}

// field returns the absolute position of field i of the table at t, 0 when
// the field is absent.
func (b fbuf) field(t int64, i int) (int64, bool) {
	so, ok := b.u32(t)
	if !ok {
		return 0, false
	}
	vt := t - int64(int32(uint32(so)))
	if vt < 0 || vt+4 > int64(len(b)) {
		return 0, false
	}
	vtLen := int64(binary.LittleEndian.Uint16(b[vt:]))
	slot := int64(4 + 2*i)
	if slot+2 > vtLen {
		return 0, true
	}
	if vt+slot+2 > int64(len(b)) {
		return 0, false
	}
	o := int64(binary.LittleEndian.Uint16(b[vt+slot:]))
	if o == 0 {
		return 0, true
	}
	return t + o, t+o < int64(len(b))
}

// ref follows the uoffset stored at p.
func (b fbuf) ref(p int64) (int64, bool) {
	o, ok := b.u32(p)
	if !ok || p+o >= int64(len(b)) {
		return 0, false
	}
	return p + o, true
}

// table returns the position of the sub-table in field i of t, 0 if absent.
func (b fbuf) table(t int64, i int) (int64, bool) {
	p, ok := b.field(t, i)
	if !ok || p == 0 {
		return 0, ok
	}
	return b.ref(p)
}

// vector returns the first element position and length of the vector in
// field i of t, checking that n elements of elem bytes fit.
func (b fbuf) vector(t int64, i int, elem int64) (start, n int64, ok bool) {
	p, ok := b.field(t, i)
	if !ok || p == 0 {
		return 0, 0, ok
	}
	v, ok := b.ref(p)
	if !ok {
		return 0, 0, false
	}
	n, ok = b.u32(v)
	if !ok || v+4+n*elem > int64(len(b)) {
		return 0, 0, false
	}
	return v + 4, n, true
}

type fbChecker struct {
	b      fbuf
	budget int // fields and key/values still allowed
}

// tables calls fn for every table of the vector of tables in field i of t.
func (c *fbChecker) tables(t int64, i int, fn func(int64) bool) bool {
	start, n, ok := c.b.vector(t, i, 4)
	if !ok {
		return false
	}
	for k := int64(0); k < n; k++ {
		if c.budget--; c.budget < 0 {
			return false
		}
		e, ok := c.b.ref(start + 4*k)
		if !ok || !fn(e) {
			return false
		}
	}
	return true
}

func (c *fbChecker) keyValue(t int64) bool {
	_, _, ok1 := c.b.vector(t, 0, 1)
	_, _, ok2 := c.b.vector(t, 1, 1)
	return ok1 && ok2
}

func (c *fbChecker) field(t int64, depth int) bool {
	if depth > 64 {
		return false
	}
	if _, _, ok := c.b.vector(t, 0, 1); !ok { // name
		return false
	}
	tt, ok := c.b.field(t, 2)
	if !ok {
		return false
	}
	if tt != 0 && c.b[tt] == 14 { // Type.Union: typeIds vector
		u, ok := c.b.table(t, 3)
		if !ok {
			return false
		}
		if u != 0 {
			if _, _, ok := c.b.vector(u, 1, 4); !ok {
				return false
			}
		}
	}
	return c.tables(t, 5, func(ch int64) bool { return c.field(ch, depth+1) }) &&
		c.tables(t, 6, c.keyValue)
}

func (c *fbChecker) recordBatch(t int64) bool {
	_, _, ok1 := c.b.vector(t, 1, 16) // nodes
	_, _, ok2 := c.b.vector(t, 2, 16) // buffers
	_, _, ok3 := c.b.vector(t, 4, 8)  // variadicBufferCounts
	return ok1 && ok2 && ok3
}

// checkMessage reports whether meta (one IPC message's flatbuffer) is safe
// to hand to arrow-go, and its header type (1 schema, 2 dictionary batch,
// 3 record batch).
func checkMessage(meta []byte) (headerType byte, ok bool) {
	c := &fbChecker{b: meta, budget: 4096}
	t, ok := c.b.u32(0)
	if !ok || t >= int64(len(meta)) {
		return 0, false
	}
	if !c.tables(t, 4, c.keyValue) {
		return 0, false
	}
	hp, ok := c.b.field(t, 1)
	if !ok || hp == 0 {
		return 0, false
	}
	headerType = meta[hp]
	h, ok := c.b.table(t, 2)
	if !ok || h == 0 {
		return 0, false
	}
	switch headerType {
	case 1: // Schema
		_, _, ok := c.b.vector(h, 3, 8) // features
		return headerType, ok &&
			c.tables(h, 1, func(f int64) bool { return c.field(f, 0) }) &&
			c.tables(h, 2, c.keyValue)
	case 2: // DictionaryBatch
		d, ok := c.b.table(h, 1)
		return headerType, ok && (d == 0 || c.recordBatch(d))
	case 3: // RecordBatch
		return headerType, c.recordBatch(h)
	}
	return headerType, false
}
