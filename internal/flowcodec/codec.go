package flowcodec

import (
	"errors"
	"fmt"
	"math"

	"github.com/apache/arrow-go/v18/arrow"

	"github.com/flowbus/flowbus/schemas"
)

// Errors of Decoder.Decode; a consumer labels bad messages by them
// (flowbus_aggregator_bad_messages_total{reason}).
var (
	ErrNotArrow      = errors.New("not an Arrow IPC stream")
	ErrTruncated     = errors.New("truncated Arrow IPC stream")
	ErrUnknownSchema = errors.New("unknown flowbus schema version")
)

// Encoder turns flows into one self-describing Arrow IPC stream (schema
// message + record batch(es), zstd body compression). It reuses its builders
// between calls; not safe for concurrent use.
//
// The column buffers are plain Go slices kept between calls (truncated, not
// freed), handed to Arrow without copying; only the IPC writer and the zstd
// output are allocated per call. encCols (encode_gen.go, generated from
// schemas/flow.go) holds one buffer per column and the per-column code.
type Encoder struct {
	schema *arrow.Schema
	cols   encCols
	w      *ipcWriter
}

// NewEncoderRawRule returns an Encoder whose raw-storage rule (ipcwrite.go,
// pays) applies to record batches of rows rows or more instead of the
// default's; rows <= 0 never applies it (every buffer compressed). For
// benchmarks that weigh the rule on the message shapes agents produce.
func NewEncoderRawRule(rows int) *Encoder {
	e := NewEncoder()
	if rows <= 0 {
		rows = math.MaxInt
	}
	e.w.rawRows = rows
	return e
}

// NewEncoder returns an Encoder.
func NewEncoder() *Encoder {
	e := &Encoder{schema: NewArrowSchema()}
	w, err := newIPCWriter(e.schema)
	if err != nil {
		// Serialising our own constant schema and creating a zstd encoder
		// with constant options cannot fail.
		panic("flowcodec: " + err.Error())
	}
	e.w = w
	e.cols.init()
	return e
}

// reset empties every column for a batch of n rows.
func (e *Encoder) reset(n int) { e.cols.reset(n) }

// histCountLevel is the libzstd level of latency_hist's count buffer (int64
// counts, most of them 1, several per flow): its double-hash match finder
// finds the long repeats level 1's single hash misses, measured ~3× faster
// and 2–3× smaller on the payments fleet. Every other buffer uses
// zstdLevel (−1).
const histCountLevel = 3

// columnWriter appends columns of one kind each to the IPC writer; the
// generated emit calls it once per column, in schema order. It keeps the
// first error (a dictionary too large for its index width).
type columnWriter struct {
	w   *ipcWriter
	n   int // rows
	err error
}

func (c *columnWriter) fixed(vals []byte, v *validity) {
	nulls := 0
	if v != nil {
		nulls = v.nulls
	}
	c.w.node(c.n, nulls)
	c.w.validity(v)
	c.w.buffer(vals)
}

func (c *columnWriter) strings(s *strCol) { c.w.strings(s, nil) }

func (c *columnWriter) dict32(d *dictCol) { c.w.dict(&d.dict, d.idx) }

// dict16 writes d with int16 indices.
func (c *columnWriter) dict16(d *dictCol) {
	if len(d.dict.offs)-1 > 1<<15-1 && c.err == nil {
		c.err = fmt.Errorf("encode flows: %d distinct values in an int16-indexed string column; send smaller batches", len(d.dict.offs)-1)
	}
	c.w.dictNarrow(&d.dict, d.idx, 2)
}

// enum writes the names of the values in e as its dictionary, with
// indices of width bytes.
func (c *columnWriter) enum(e *enumCol, width, col int) {
	e.dict.reset()
	for _, v := range e.nums {
		e.dict.add(e.name(v))
	}
	if len(e.nums) > 1<<(8*width-1)-1 && c.err == nil {
		c.err = fmt.Errorf("encode flows: %d distinct values in enum column %d", len(e.nums), col)
	}
	c.w.dictNarrow(&e.dict, e.idx, width)
}

// list writes a list of dictionary strings, with int16 indices if narrow.
func (c *columnWriter) list(l *strListCol, narrow bool) {
	c.w.node(c.n, l.valid.nulls)
	c.w.validity(&l.valid)
	c.w.buffer(bytesOf(l.offs))
	if narrow {
		c.dict16(&l.child)
	} else {
		c.dict32(&l.child)
	}
}

// hist writes latency_hist: list<struct<bucket int16, count int64>>.
func (c *columnWriter) hist(h *histCol) {
	w := c.w
	w.node(c.n, h.valid.nulls)
	w.validity(&h.valid)
	w.buffer(bytesOf(h.offs))
	m := len(h.buckets)
	w.node(m, 0) // struct<bucket, count>
	w.buffer(nil)
	w.node(m, 0)
	w.buffer(nil)
	w.buffer(bytesOf(h.buckets))
	w.node(m, 0)
	w.buffer(nil)
	w.bufferLevel(bytesOf(h.counts), histCountLevel)
}

// Encode appends to dst one Arrow IPC stream holding flows, in order: the
// schema message, one dictionary batch per dictionary column, one record
// batch with len(flows) rows, and the end-of-stream marker. Every call
// writes a complete, self-describing stream. Flows are not retained.
func (e *Encoder) Encode(dst []byte, flows []schemas.Flow) ([]byte, error) {
	if int64(len(flows)) > 1<<31-1 {
		return dst, fmt.Errorf("encode flows: %d rows do not fit one record batch", len(flows))
	}
	e.reset(len(flows))
	if err := e.addRows(flows); err != nil {
		return dst, err
	}
	if e.cols.enumsFull() {
		return dst, errors.New("encode flows: more than 32767 distinct values in an enum column")
	}
	e.w.startBatch(len(flows))
	cw := columnWriter{w: e.w, n: len(flows)}
	if e.cols.emit(&cw); cw.err != nil {
		e.w.dicts = e.w.dicts[:0]
		return dst, cw.err
	}
	return e.w.finish(dst, len(flows)), nil
}

// errColumnTooBig is panicked by strCol.add when a column's values exceed
// the 2 GiB an Arrow utf8 column can address; addRows turns it into an error.
var errColumnTooBig = errors.New("encode flows: a string column exceeds 2 GiB; send smaller batches")

func (e *Encoder) addRows(flows []schemas.Flow) (err error) {
	defer func() {
		if r := recover(); r != nil {
			if r != errColumnTooBig {
				panic(r)
			}
			err = errColumnTooBig
		}
	}()
	for i := range flows {
		e.cols.set(i, &flows[i])
	}
	e.cols.mapEnums()
	return nil
}
