package flowcodec

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/flowbus/flowbus/schemas"
)

// Decoder decodes Arrow IPC streams written by Encoder. Not safe for concurrent use.
//
// Decoding copies each string column once into one Go string and slices the
// values out of it, and each list column into one backing array, so a row
// costs no allocation of its own; a decoded Flow's strings and slices keep
// their whole column alive. List slices are capped (s[lo:hi:hi]) so appending
// to one never writes into its neighbour.
type Decoder struct {
	schema    *arrow.Schema
	schemaMsg []byte // the schema message Encoder writes, framing included
	fast      *fastReader
	msgs      []ipcMessage // scanStream's result, reused
}

// NewDecoder returns a Decoder.
func NewDecoder() *Decoder {
	s := NewArrowSchema()
	msg, err := schemaMessage(s)
	if err != nil {
		panic("flowcodec: " + err.Error()) // our constant schema always serialises
	}
	return &Decoder{schema: s, schemaMsg: msg, fast: newFastReader(s)}
}

// Decode decodes one whole message and appends its flows to dst. It returns
// an error wrapping ErrNotArrow, ErrTruncated or ErrUnknownSchema for bad
// input, and appends nothing then. Strings in the result do not alias msg.
// Decode never panics on bad input.
func (d *Decoder) Decode(dst []schemas.Flow, msg []byte) ([]schemas.Flow, error) {
	return d.appendRows(dst, msg, nil)
}

// DecodeProjected is Decode for the columns of p only: the fields of other
// columns are left at their zero values. Errors and guarantees are
// Decode's, for the columns read; a skipped column is not checked.
func (d *Decoder) DecodeProjected(dst []schemas.Flow, msg []byte, p Projection) ([]schemas.Flow, error) {
	return d.appendRows(dst, msg, &p)
}

// DecodeEach decodes the columns of p of one whole message and calls fn
// with each row in order, in one reused Flow that is valid only during the
// call: a consumer that folds rows (the aggregator) builds no slice of
// flows and keeps the row it works on in cache. The whole message is
// checked before the first call, so on error (Decode's) fn was not called.
// It returns the number of rows. A panic in fn is not recovered.
func (d *Decoder) DecodeEach(msg []byte, p Projection, fn func(f *schemas.Flow)) (int, error) {
	batches, err := d.decode(msg, &p)
	if err != nil {
		return 0, err
	}
	var f schemas.Flow
	n := 0
	for _, b := range batches {
		for i := 0; i < b.n; i++ {
			b.row(&f, i)
			fn(&f)
		}
		n += b.n
	}
	return n, nil
}

func (d *Decoder) appendRows(dst []schemas.Flow, msg []byte, p *Projection) ([]schemas.Flow, error) {
	batches, err := d.decode(msg, p)
	if err != nil {
		return dst, err
	}
	for _, b := range batches {
		base := len(dst)
		dst = slices.Grow(dst, b.n)[:base+b.n]
		for i := 0; i < b.n; i++ {
			f := &dst[base+i]
			*f = schemas.Flow{} // capacity of dst may hold old rows
			b.row(f, i)
		}
	}
	return dst, nil
}

// decode checks a message and decodes the columns of p (every column if p
// is nil) of each record batch. Rows are built from the result without
// further checks: every offset and index they use was validated here.
func (d *Decoder) decode(msg []byte, p *Projection) (out []*batchCols, err error) {
	msgs, err := scanStream(d.msgs[:0], msg, d.schemaMsg)
	if err != nil {
		clear(d.msgs[:cap(d.msgs)]) // what it appended before failing
		return nil, err
	}
	d.msgs = msgs
	defer clear(msgs) // keep no reference into msg
	defer func() {
		if r := recover(); r != nil {
			out, err = nil, fmt.Errorf("%w: corrupt stream: %v", ErrNotArrow, r)
		}
	}()
	budget := 16<<20 + 512*len(msg)
	if sameSchema(&msgs[0], d.schemaMsg) {
		return d.fast.decode(msgs, budget, p)
	}
	// Another writer's stream: let arrow-go parse it (and name the schema).
	mem := &limitAllocator{left: budget}
	r, err := ipc.NewReader(bytes.NewReader(msg), ipc.WithAllocator(mem),
		ipc.WithMetadataSizeLimit(int64(len(msg))), ipc.WithBodySizeLimit(int64(len(msg))))
	if err != nil {
		return nil, fmt.Errorf("%w: read schema: %v", ErrNotArrow, err)
	}
	defer r.Release()
	if err := d.checkSchema(r.Schema()); err != nil {
		return nil, err
	}
	for r.Next() {
		rec := r.RecordBatch()
		n := int(rec.NumRows())
		if int64(n) != rec.NumRows() || n < 0 {
			return nil, fmt.Errorf("%w: record batch of %d rows", ErrNotArrow, rec.NumRows())
		}
		cols := make([]*rawArray, rec.NumCols())
		for i := range cols {
			if cols[i], err = fromArrow(rec.Column(i).Data()); err != nil {
				return nil, err
			}
		}
		b, err := decodeCols(cols, n, p)
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	if err := r.Err(); err != nil {
		return nil, fmt.Errorf("%w: read record batch: %v", ErrNotArrow, err)
	}
	return out, nil
}

func (d *Decoder) checkSchema(s *arrow.Schema) error {
	md := s.Metadata()
	i := md.FindKey(SchemaMetadataKey)
	if i < 0 {
		return fmt.Errorf("%w: schema metadata has no %q key", ErrUnknownSchema, SchemaMetadataKey)
	}
	if v := md.Values()[i]; v != schemas.SchemaVersion {
		return fmt.Errorf("%w: %q (this decoder reads %q)", ErrUnknownSchema, v, schemas.SchemaVersion)
	}
	if !s.Equal(d.schema) {
		return fmt.Errorf("%w: %s columns differ from this build's", ErrUnknownSchema, schemas.SchemaVersion)
	}
	return nil
}

// scanStream checks the framing of an Arrow IPC stream before Arrow reads
// it: continuation markers, metadata and body lengths within msg, and an
// end-of-stream marker exactly at the end. It tells a cut-off stream
// (ErrTruncated) from bytes that are not an Arrow stream (ErrNotArrow), and
// keeps the Arrow reader from trusting lengths the message cannot hold.
// The messages are appended to msgs (the Decoder's, reused).
//
// A stream that starts with known, the schema message this package writes
// (framing included, checked once by TestKnownSchemaMessagePassesTheCheck),
// skips the flatbuffer check of that message: it is every agent's first
// message and the longest one to check (74 fields), a sizeable part of the
// decode of a message of ~100 rows. Any other first message is checked.
func scanStream(msgs []ipcMessage, msg []byte, known []byte) ([]ipcMessage, error) {
	if len(msg) == 0 {
		return nil, fmt.Errorf("%w: empty message", ErrNotArrow)
	}
	var cont = []byte{0xff, 0xff, 0xff, 0xff}
	for pos := 0; ; {
		rest := msg[pos:]
		if len(rest) < 8 {
			if len(rest) >= 4 && !bytes.Equal(rest[:4], cont) || len(rest) < 4 && !bytes.Equal(rest, cont[:len(rest)]) {
				return nil, fmt.Errorf("%w: no continuation marker at offset %d", ErrNotArrow, pos)
			}
			return nil, fmt.Errorf("%w: stream ends at offset %d without end-of-stream marker", ErrTruncated, len(msg))
		}
		if !bytes.Equal(rest[:4], cont) {
			return nil, fmt.Errorf("%w: no continuation marker at offset %d", ErrNotArrow, pos)
		}
		mlen := int64(int32(binary.LittleEndian.Uint32(rest[4:8])))
		if mlen == 0 {
			if len(rest) != 8 {
				return nil, fmt.Errorf("%w: %d bytes after end-of-stream marker", ErrNotArrow, len(rest)-8)
			}
			if len(msgs) < 2 {
				return nil, fmt.Errorf("%w: stream holds no record batch", ErrNotArrow)
			}
			return msgs, nil
		}
		if mlen < 0 {
			return nil, fmt.Errorf("%w: negative metadata length at offset %d", ErrNotArrow, pos)
		}
		if 8+mlen > int64(len(rest)) {
			return nil, fmt.Errorf("%w: message at offset %d needs %d metadata bytes, %d left", ErrTruncated, pos, mlen, len(rest)-8)
		}
		meta := rest[8 : 8+mlen]
		body, ok := fbBodyLength(meta)
		if !ok || body < 0 {
			return nil, fmt.Errorf("%w: malformed message metadata at offset %d", ErrNotArrow, pos)
		}
		var typ byte
		if pos == 0 && len(known) > 0 && int64(len(known)) == 8+mlen+body && bytes.Equal(rest[:len(known)], known) {
			typ = 1 // Schema; checkMessage(meta) is (1, true) for these bytes
		} else if typ, ok = checkMessage(meta); !ok {
			return nil, fmt.Errorf("%w: malformed message metadata at offset %d", ErrNotArrow, pos)
		}
		if (len(msgs) == 0) != (typ == 1) {
			return nil, fmt.Errorf("%w: message %d at offset %d has header type %d", ErrNotArrow, len(msgs), pos, typ)
		}
		if body > int64(len(rest))-8-mlen {
			return nil, fmt.Errorf("%w: message at offset %d needs %d body bytes, %d left", ErrTruncated, pos, body, int64(len(rest))-8-mlen)
		}
		end := 8 + mlen + body
		msgs = append(msgs, ipcMessage{typ: typ, frame: rest[:end], meta: fbuf(meta), body: rest[8+mlen : end]})
		pos += int(end)
	}
}

// fbBodyLength reads Message.bodyLength (field 3, int64) from an Arrow IPC
// message flatbuffer, with every offset bounds-checked.
func fbBodyLength(b []byte) (int64, bool) {
	if len(b) < 4 {
		return 0, false
	}
	t := int64(binary.LittleEndian.Uint32(b))
	if t+4 > int64(len(b)) {
		return 0, false
	}
	vt := t - int64(int32(binary.LittleEndian.Uint32(b[t:])))
	if vt < 0 || vt+4 > int64(len(b)) {
		return 0, false
	}
	vtLen := int64(binary.LittleEndian.Uint16(b[vt:]))
	const slot = 4 + 2*3
	if vtLen < slot+2 {
		return 0, true // field absent: default 0
	}
	if vt+slot+2 > int64(len(b)) {
		return 0, false
	}
	o := int64(binary.LittleEndian.Uint16(b[vt+slot:]))
	if o == 0 {
		return 0, true
	}
	if t+o+8 > int64(len(b)) {
		return 0, false
	}
	return int64(binary.LittleEndian.Uint64(b[t+o:])), true
}

// limitAllocator is Arrow's Go allocator with a budget, so a message that
// claims absurd decompressed sizes fails instead of exhausting memory.
type limitAllocator struct {
	left int
}

var errAllocBudget = errors.New("message claims more decompressed bytes than it can hold")

func (a *limitAllocator) Allocate(size int) []byte {
	if size < 0 || size > a.left {
		panic(errAllocBudget)
	}
	a.left -= size
	return make([]byte, size)
}

func (a *limitAllocator) Reallocate(size int, b []byte) []byte {
	if size <= cap(b) {
		return b[:size]
	}
	nb := a.Allocate(size)
	copy(nb, b)
	return nb
}

func (a *limitAllocator) Free([]byte) {}

var _ memory.Allocator = (*limitAllocator)(nil)
