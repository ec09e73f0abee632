package schemas

import (
	"bytes"
	"encoding/binary"
	"fmt"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	flatbuffers "github.com/google/flatbuffers/go"
	"github.com/klauspost/compress/zstd"
)

// The Encoder writes the Arrow IPC stream format itself
// (https://arrow.apache.org/docs/format/Columnar.html#serialization-and-interprocess-communication-ipc)
// rather than through arrow-go's ipc.Writer, for speed: arrow-go creates a
// new zstd encoder for every stream (megabytes of tables per bus message),
// re-checks dictionaries by value, and needs arrow.Array objects built over
// our buffers. Here the schema message is serialised once by arrow-go and
// cached; dictionary and record batch messages are flatbuffers built with
// the flatbuffers library around our column buffers, each buffer compressed
// with one reused zstd encoder (Arrow's BUFFER body compression: 8-byte
// little-endian uncompressed length, then a zstd frame, or -1 and the raw
// bytes when compression does not pay). Every stream this writes is read
// back by arrow-go's ipc.Reader in the tests, and pinned by the golden file.

// zstdLevel trades encode CPU for bytes; see schemas/README.md for figures.
const zstdLevel = zstd.SpeedFastest

// zstd keeps its default literal handling (WithAllLitEntropyCompression
// off): forcing Huffman coding of every block's literals shrinks messages
// by 8–10 % but, measured side by side on a quiet machine, costs ~25 % more
// encode CPU at 10k rows (2.0 → 2.7 µs/flow), and the encode CPU target
// against proto binary matters more than those bytes (the size target is met
// either way). Buffers
// shorter than rawMax bytes are stored raw: a zstd frame (header, block
// header) never makes them smaller. Measured alternative, not kept: frames
// without entropy coding for buffers under 8 KiB (its table setup is most of
// a small frame's cost) saved no measurable CPU in the encoder and cost 7 %
// more bytes at 1k rows.
const rawMax = 32

const metadataV5 = 4 // flatbuf.MetadataVersion V5

// rawStreak is how many batches a buffer that did not compress is stored raw
// before compression is tried again.
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
	zenc   *zstd.Encoder
	fb     *flatbuffers.Builder
	nodes  []fieldNode
	bufs   []bufferSpec
	body   []byte
	dicts  []*strCol // dictionaries of the current batch, by dictionary id
	schema []byte    // the serialised schema message, framing included

	scratch8  []int8
	scratch16 []int16
	inDict    bool    // writing dictionary batches: no raw streaks
	rawRuns   []uint8 // per record batch buffer: batches left to store raw

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
	zenc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstdLevel), zstd.WithEncoderConcurrency(1),
		zstd.WithEncoderCRC(false), zstd.WithZeroFrames(true), zstd.WithAllLitEntropyCompression(false))
	if err != nil {
		return nil, fmt.Errorf("create zstd encoder: %w", err)
	}
	return &ipcWriter{
		zenc:   zenc,
		fb:     flatbuffers.NewBuilder(4096),
		schema: msg,
	}, nil
}

func (w *ipcWriter) startBatch() {
	w.nodes, w.bufs, w.body = w.nodes[:0], w.bufs[:0], w.body[:0]
}

func (w *ipcWriter) node(length, nulls int) {
	w.nodes = append(w.nodes, fieldNode{int64(length), int64(nulls)})
}

// buffer appends one body buffer, compressed, padded to 8 bytes.
//
// Record batch buffers that zstd could not shrink by a tenth (random ports,
// first-seen times, list offsets) are stored raw for the next rawStreak
// batches without trying again: zstd spends most per byte on data it cannot
// compress. The output therefore depends on the encoder's history, never its
// content: every stream decodes to the same flows.
func (w *ipcWriter) buffer(raw []byte) {
	start := int64(len(w.body))
	i := len(w.bufs)
	if len(raw) == 0 {
		w.bufs = append(w.bufs, bufferSpec{start, 0})
		return
	}
	adaptive := !w.inDict
	if adaptive && i >= len(w.rawRuns) {
		w.rawRuns = append(w.rawRuns, make([]uint8, i+1-len(w.rawRuns))...)
	}
	if len(raw) < rawMax || adaptive && w.rawRuns[i] > 0 {
		if adaptive && w.rawRuns[i] > 0 {
			w.rawRuns[i]--
		}
		w.body = binary.LittleEndian.AppendUint64(w.body, ^uint64(0))
		w.body = append(w.body, raw...)
	} else {
		w.body = binary.LittleEndian.AppendUint64(w.body, uint64(len(raw)))
		w.body = w.zenc.EncodeAll(raw, w.body)
		if n := int64(len(w.body)) - start - 8; n >= int64(len(raw)) {
			// Compression did not pay: store raw bytes, length -1.
			w.body = binary.LittleEndian.AppendUint64(w.body[:start], ^uint64(0))
			w.body = append(w.body, raw...)
		}
		if adaptive && 10*(int64(len(w.body))-start-8) >= 9*int64(len(raw)) && len(raw) >= 4096 {
			w.rawRuns[i] = rawStreak
		}
	}
	end := int64(len(w.body))
	for len(w.body)%8 != 0 {
		w.body = append(w.body, 0)
	}
	w.bufs = append(w.bufs, bufferSpec{start, end - start})
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
	if width == 1 {
		w.scratch8 = w.scratch8[:0]
		for _, x := range idx {
			w.scratch8 = append(w.scratch8, int8(x))
		}
		w.buffer(bytesOf(w.scratch8))
		return
	}
	w.scratch16 = w.scratch16[:0]
	for _, x := range idx {
		w.scratch16 = append(w.scratch16, int16(x))
	}
	w.buffer(bytesOf(w.scratch16))
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
