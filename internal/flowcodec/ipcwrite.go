package flowcodec

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/bits"
	"slices"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	flatbuffers "github.com/google/flatbuffers/go"
)

// The Encoder writes the Arrow IPC stream format itself
// (https://arrow.apache.org/docs/format/Columnar.html#serialization-and-interprocess-communication-ipc)
// rather than through arrow-go's ipc.Writer, for speed: arrow-go creates a
// new zstd encoder for every stream (megabytes of tables per bus message),
// re-checks dictionaries by value, and needs arrow.Array objects built over
// our buffers. Here the schema message is serialised once by arrow-go and
// cached; dictionary and record batch messages are flatbuffers built with
// the flatbuffers library around our column buffers, each buffer compressed
// with one reused zstd context (Arrow's BUFFER body compression: 8-byte
// little-endian uncompressed length, then a zstd frame, or -1 and the raw
// bytes when compression does not pay). Every stream this writes is read
// back by arrow-go's ipc.Reader in the tests, and pinned by the golden file.

// How buffers are stored (see doc.go, and README.md "Why it is built this way" for
// the measurements behind each rule):
//
//   - Buffers shorter than rawMax bytes are stored raw: a zstd frame (header,
//     block header) never makes them smaller.
//   - A buffer holding one repeated byte (an unset field, the offsets of
//     empty lists) is written as a zstd RLE frame directly, with no
//     compressor run (appendRLEFrame).
//   - A record batch buffer equal byte for byte to an earlier one of the same
//     batch (list offsets of lists with the same shape, equal timestamps) is
//     not stored again: both buffer entries point at the one copy. Arrow
//     buffers are (offset, length) ranges of the body; nothing requires them
//     to be distinct, and arrow-go's reader and ours read such streams.
//   - Every other buffer is one zstd frame (frameCompressor: libzstd level −1
//     through cgo from cgoMin bytes, klauspost's encoder below), unless
//     compressing it did not pay for its CPU the last time it was tried:
//     see pays.
const rawMax = 32

// pays reports whether compressing a raw-byte buffer to comp bytes is
// worth its CPU: whether the bytes saved reach payNum/payDen of the
// buffer's size plus payOverhead, the fixed cost of a zstd frame expressed
// in bytes of input (~1 µs, at the ~2–3 ns per byte zstd spends here). It
// keeps zstd on the buffers where it saves most bytes per nanosecond
// (dictionary indices, addresses, labels, constant-ish counters) and stores
// raw those it shrinks least (timestamps, random ports, byte counters).
//
// The rule applies only to record batches of rawRuleRows rows or more,
// and there to buffers of rawRuleMin bytes or more (from a 4-byte column
// of a 1000-row batch to a 1-byte column of a 4000-row one). Smaller
// batches stay fully compressed: they are a partition's share of a lightly
// loaded second (most of the agent's per-partition messages hold a few
// hundred rows at 10k flows/s after aggregation), where the encoder's CPU
// per second is small and the bytes are what the bus pays for. A batch of
// 1000 rows or more means the agent is busy, and there CPU is what the node
// pays for: storing the hard numeric columns raw makes a 1000-row batch
// ~1.6× cheaper to encode (and ~1.4× cheaper to decode and roll up) for ~2×
// its bytes (82 → 160 B/flow), which bench/HISTORY.md "The raw-storage rule" weighs. The decision
// is per buffer position: the ratio zstd reached there in the last batch of
// rawRuleRows rows or more (smaller ones, other partitions' data, do not
// count) is kept for rawStreak such batches and judged against each batch's
// own size; a buffer stored raw is compressed again (and its ratio
// measured) after rawStreak batches.
func pays(raw, comp int) bool {
	return payDen*(raw-comp) >= payNum*(raw+payOverhead)
}

const (
	payNum, payDen = 4, 5
	payOverhead    = 512
	rawRuleRows    = 1000
	rawRuleMin     = 4000
)

const metadataV5 = 4 // flatbuf.MetadataVersion V5

// rawStreak is how many batches the compression ratio measured for a
// record batch buffer position stands for; a buffer stored raw is
// compressed again after that many batches.
const rawStreak = 15

// Flatbuffer enum values of the Arrow IPC Message schema.
const (
	headerDictionaryBatch = 2
	headerRecordBatch     = 3
	codecZSTD             = 1
)

type fieldNode struct{ length, nulls int64 }
type bufferSpec struct{ offset, length int64 }

// ipcWriter builds the messages of one stream into out. Not safe for
// concurrent use; reused between streams.
type ipcWriter struct {
	z      *frameCompressor
	fb     *flatbuffers.Builder
	nodes  []fieldNode
	bufs   []bufferSpec
	body   []byte
	dicts  []*strCol // dictionaries of the current batch, by dictionary id
	schema []byte    // the serialised schema message, framing included

	narrow  [][]byte // per narrow index buffer of the batch, in emit order
	narrowN int
	dups    dupIndex
	inDict  bool        // writing dictionary batches: no raw streaks
	rows    int         // rows of the record batch being written
	slots   []slotState // per record batch buffer position
	rawRows int         // the raw-storage rule's batch size (rawRuleRows unless set)

	// scratch of the dictionary batches
	dNodes []fieldNode
	dBufs  []bufferSpec
	dBody  []byte
}

// schemaMessage returns the IPC schema message of schema, framing included,
// as arrow-go writes it.
func schemaMessage(schema *arrow.Schema) ([]byte, error) {
	var b bytes.Buffer
	w := ipc.NewWriter(&b, ipc.WithSchema(schema))
	if err := w.Close(); err != nil { // writes the schema message and end-of-stream
		return nil, fmt.Errorf("serialise arrow schema: %w", err)
	}
	return bytes.Clone(b.Bytes()[:b.Len()-8]), nil
}

func newIPCWriter(schema *arrow.Schema) (*ipcWriter, error) {
	msg, err := schemaMessage(schema)
	if err != nil {
		return nil, err
	}
	z, err := newFrameCompressor()
	if err != nil {
		return nil, err
	}
	return &ipcWriter{
		z:       z,
		fb:      flatbuffers.NewBuilder(4096),
		schema:  msg,
		rawRows: rawRuleRows,
	}, nil
}

// startBatch begins a record batch of the given number of rows.
func (w *ipcWriter) startBatch(rows int) {
	w.rows = rows
	w.nodes, w.bufs, w.body = w.nodes[:0], w.bufs[:0], w.body[:0]
	w.narrowN = 0
	w.dups.reset()
}

func (w *ipcWriter) node(length, nulls int) {
	w.nodes = append(w.nodes, fieldNode{int64(length), int64(nulls)})
}

// buffer appends one body buffer, padded to 8 bytes: stored once per
// distinct content in a record batch, compressed or raw by the rules above.
//
// Which record batch buffers are stored raw depends on the encoder's
// history (pays, rawStreak), never on anything a reader needs: every stream
// decodes to the same flows.
func (w *ipcWriter) buffer(raw []byte) { w.bufferLevel(raw, zstdLevel) }

// zstdLevel is the libzstd level of every buffer but latency_hist's counts
// (histCountLevel): −1, zstd's first "fast" level. It finds the same
// matches as level 1 but stores literals as they are instead of Huffman
// coding them, so the frames it writes decode about twice as fast (the
// aggregator's decode of 8192-row messages went from ~2.2 to 3.4–4.3 M
// rows per CPU-second) and compress ~10–25 % cheaper, for ~16 % more bytes
// at 1k rows (70 → 82 B/flow) and ~31 instead of 25.8 bus B/flow at 10k
// flows/s. See README.md "Body compression: libzstd through cgo".
const zstdLevel = -1

// bufferLevel is buffer at a given zstd level (of libzstd; the pure-Go
// encoder has one level for all).
func (w *ipcWriter) bufferLevel(raw []byte, level int) {
	i := len(w.bufs)
	if len(raw) == 0 {
		w.bufs = append(w.bufs, bufferSpec{int64(len(w.body)), 0})
		return
	}
	adaptive := !w.inDict
	if adaptive && len(raw) >= rawMax {
		if spec, ok := w.dups.find(raw); ok {
			w.bufs = append(w.bufs, spec)
			return
		}
	}
	start := int64(len(w.body))
	if adaptive && i >= len(w.slots) {
		w.slots = append(w.slots, make([]slotState, i+1-len(w.slots))...)
	}
	compress := len(raw) >= rawMax
	if compress && adaptive && w.rows >= w.rawRows && len(raw) >= rawRuleMin {
		if st := &w.slots[i]; st.left > 0 {
			st.left--
			compress = pays(len(raw), int(uint64(len(raw))*uint64(st.ratio)>>16))
		}
	}
	if !compress {
		w.body = binary.LittleEndian.AppendUint64(w.body, ^uint64(0))
		w.body = append(w.body, raw...)
	} else {
		w.body = binary.LittleEndian.AppendUint64(w.body, uint64(len(raw)))
		w.body = w.z.appendFrame(w.body, raw, level)
		n := len(w.body) - int(start) - 8
		if n >= len(raw) {
			// Compression did not pay: store raw bytes, length -1.
			w.body = binary.LittleEndian.AppendUint64(w.body[:start], ^uint64(0))
			w.body = append(w.body, raw...)
		}
		if adaptive && w.rows >= w.rawRows {
			// Only batches the rule applies to measure for it: a small
			// batch (another partition's, with other data) says nothing
			// about the next large one at this position.
			ratio := uint64(min(n, len(raw))) << 16 / uint64(len(raw))
			w.slots[i] = slotState{ratio: uint16(min(ratio, 1<<16-1)), left: rawStreak}
		}
	}
	end := int64(len(w.body))
	for len(w.body)%8 != 0 {
		w.body = append(w.body, 0)
	}
	spec := bufferSpec{start, end - start}
	if adaptive && len(raw) >= rawMax {
		w.dups.add(raw, spec)
	}
	w.bufs = append(w.bufs, spec)
}

// slotState is what the encoder remembers of one record batch buffer
// position between batches.
type slotState struct {
	ratio uint16 // compressed/raw size the last time it was compressed, 1/65536ths
	left  uint8  // batches the ratio still stands for
}

// dupIndex finds a record batch buffer whose bytes equal an earlier one's
// in the same batch, so both can point at one stored copy.
type dupIndex struct {
	heads [64]int32 // per hash bucket: index into ents, plus one
	ents  []dupEntry
}

type dupEntry struct {
	raw  []byte
	spec bufferSpec
	next int32
}

func (d *dupIndex) reset() {
	d.heads = [64]int32{}
	clear(d.ents) // drop references to the last batch's buffers
	d.ents = d.ents[:0]
}

// dupBucket hashes a buffer of at least 16 bytes by its length and its
// first and last 8 bytes.
func dupBucket(b []byte) int {
	h := uint64(len(b)) ^ binary.LittleEndian.Uint64(b) ^ bits.RotateLeft64(binary.LittleEndian.Uint64(b[len(b)-8:]), 31)
	return int((h * 0x9e3779b97f4a7c15) >> (64 - 6))
}

func (d *dupIndex) find(b []byte) (bufferSpec, bool) {
	for j := d.heads[dupBucket(b)]; j != 0; j = d.ents[j-1].next {
		if e := &d.ents[j-1]; bytes.Equal(e.raw, b) {
			return e.spec, true
		}
	}
	return bufferSpec{}, false
}

func (d *dupIndex) add(b []byte, spec bufferSpec) {
	h := dupBucket(b)
	d.ents = append(d.ents, dupEntry{raw: b, spec: spec, next: d.heads[h]})
	d.heads[h] = int32(len(d.ents))
}

// validity appends a column's validity bitmap (empty when nothing is null).
func (w *ipcWriter) validity(v *validity) {
	if v == nil || v.nulls == 0 {
		w.buffer(nil)
		return
	}
	w.buffer(v.bits)
}

// dict registers a dictionary and appends the node and buffers of its
// indices; dictionary ids follow the schema's pre-order, as arrow-go's
// dictionary mapper numbers them.
func (w *ipcWriter) dict(values *strCol, idx []int32) {
	w.dicts = append(w.dicts, values)
	w.node(len(idx), 0)
	w.buffer(nil)
	w.buffer(bytesOf(idx))
}

// dictNarrow is dict for int16 or int8 indices (width 2 or 1); the caller
// has checked that every index fits.
func (w *ipcWriter) dictNarrow(values *strCol, idx []int32, width int) {
	w.dicts = append(w.dicts, values)
	w.node(len(idx), 0)
	w.buffer(nil)
	// Each narrow buffer keeps its own scratch until the batch is written:
	// a later buffer may be found equal to it (dupIndex).
	if w.narrowN == len(w.narrow) {
		w.narrow = append(w.narrow, nil)
	}
	buf := slices.Grow(w.narrow[w.narrowN][:0], len(idx)*width)[:len(idx)*width]
	w.narrowN++
	if width == 1 {
		for i, x := range idx {
			buf[i] = byte(x)
		}
	} else {
		for i, x := range idx {
			binary.LittleEndian.PutUint16(buf[2*i:], uint16(x))
		}
	}
	w.narrow[w.narrowN-1] = buf
	w.buffer(buf)
}

func (w *ipcWriter) strings(c *strCol, v *validity) {
	nulls := 0
	if v != nil {
		nulls = v.nulls
	}
	w.node(len(c.offs)-1, nulls)
	w.validity(v)
	w.buffer(bytesOf(c.offs))
	w.buffer(c.data)
}

// recordBatch builds a RecordBatch table from the nodes and buffers so far.
func (w *ipcWriter) recordBatch(length int) flatbuffers.UOffsetT {
	b := w.fb
	b.StartVector(16, len(w.bufs), 8)
	for i := len(w.bufs) - 1; i >= 0; i-- {
		b.Prep(8, 16)
		b.PrependInt64(w.bufs[i].length)
		b.PrependInt64(w.bufs[i].offset)
	}
	bufs := b.EndVector(len(w.bufs))
	b.StartVector(16, len(w.nodes), 8)
	for i := len(w.nodes) - 1; i >= 0; i-- {
		b.Prep(8, 16)
		b.PrependInt64(w.nodes[i].nulls)
		b.PrependInt64(w.nodes[i].length)
	}
	nodes := b.EndVector(len(w.nodes))
	b.StartObject(2) // BodyCompression
	b.PrependByteSlot(0, codecZSTD, 0)
	comp := b.EndObject()
	b.StartObject(5) // RecordBatch
	b.PrependInt64Slot(0, int64(length), 0)
	b.PrependUOffsetTSlot(1, nodes, 0)
	b.PrependUOffsetTSlot(2, bufs, 0)
	b.PrependUOffsetTSlot(3, comp, 0)
	return b.EndObject()
}

// message appends one framed IPC message (header + body so far) to out.
func (w *ipcWriter) message(out []byte, headerType byte, header flatbuffers.UOffsetT) []byte {
	b := w.fb
	b.StartObject(5) // Message
	b.PrependInt16Slot(0, metadataV5, 0)
	b.PrependByteSlot(1, headerType, 0)
	b.PrependUOffsetTSlot(2, header, 0)
	b.PrependInt64Slot(3, int64(len(w.body)), 0)
	b.Finish(b.EndObject())
	meta := b.FinishedBytes()
	pad := (8 - (len(meta)+8)%8) % 8
	out = binary.LittleEndian.AppendUint32(out, 0xffffffff)
	out = binary.LittleEndian.AppendUint32(out, uint32(len(meta)+pad))
	out = append(out, meta...)
	out = append(out, make([]byte, pad)...)
	out = append(out, w.body...)
	b.Reset()
	return out
}

// finish appends the whole stream: schema, one dictionary batch per
// registered dictionary, the record batch whose nodes and buffers were
// collected, and the end-of-stream marker.
func (w *ipcWriter) finish(out []byte, rows int) []byte {
	recNodes, recBufs, recBody := w.nodes, w.bufs, w.body
	out = append(out, w.schema...)

	// Dictionary batches use their own node/buffer/body scratch.
	w.inDict = true
	defer func() { w.inDict = false }()
	for id, d := range w.dicts {
		w.nodes, w.bufs, w.body = w.dNodes[:0], w.dBufs[:0], w.dBody[:0]
		w.strings(d, nil)
		rb := w.recordBatch(len(d.offs) - 1)
		w.fb.StartObject(3) // DictionaryBatch
		w.fb.PrependInt64Slot(0, int64(id), 0)
		w.fb.PrependUOffsetTSlot(1, rb, 0)
		out = w.message(out, headerDictionaryBatch, w.fb.EndObject())
		w.dNodes, w.dBufs, w.dBody = w.nodes, w.bufs, w.body
	}
	w.nodes, w.bufs, w.body = recNodes, recBufs, recBody
	out = w.message(out, headerRecordBatch, w.recordBatch(rows))
	w.dicts = w.dicts[:0]
	return append(out, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0)
}
