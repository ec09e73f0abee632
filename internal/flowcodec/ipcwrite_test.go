package flowcodec

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/klauspost/compress/zstd"

	"github.com/flowbus/flowbus/internal/flowtest"
)

func TestRLEFrameDecodesToTheRepeatedByte(t *testing.T) {
	dec, err := zstd.NewReader(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Close()
	for _, n := range []int{1, 255, 256, 257, 256 + 1<<16 - 1, 256 + 1<<16, 128 << 10, 128<<10 + 1, 300_000} {
		t.Run(fmt.Sprintf("%d bytes", n), func(t *testing.T) {
			frame := appendRLEFrame([]byte("prefix"), 0xa5, n)
			if !bytes.HasPrefix(frame, []byte("prefix")) {
				t.Fatal("appendRLEFrame overwrote dst")
			}
			got, err := dec.DecodeAll(frame[len("prefix"):], nil)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, bytes.Repeat([]byte{0xa5}, n)) {
				t.Fatalf("decoded %d bytes, not %d copies of 0xa5", len(got), n)
			}
		})
	}
}

func TestConstantByte(t *testing.T) {
	for _, c := range []struct {
		name string
		b    []byte
		want bool
	}{
		{"empty is not constant", nil, false},
		{"one byte is constant", []byte{7}, true},
		{"17 zeros are constant", make([]byte, 17), true},
		{"a difference in the 8-byte words is found", append(make([]byte, 8), 1, 0, 0, 0, 0, 0, 0, 0, 0), false},
		{"a difference in the tail is found", append(make([]byte, 16), 0, 1), false},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := constantByte(c.b); got != c.want {
				t.Fatalf("constantByte = %v, want %v", got, c.want)
			}
		})
	}
}

func TestPaysWeighsBytesSavedAgainstFrameCost(t *testing.T) {
	for _, c := range []struct {
		name      string
		raw, comp int
		want      bool
	}{
		{"10 KB to 1 KB pays", 10_000, 1_000, true},
		{"10 KB to 5 KB does not", 10_000, 5_000, false},
		{"10 KB to 1590 B is the edge", 10_000, 1_590, true},
		{"10 KB to 1591 B is just past it", 10_000, 1_591, false},
		{"4 KiB to 409 B pays", 4_096, 409, true},
		{"4 KiB to 410 B does not: the frame's fixed cost weighs", 4_096, 410, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := pays(c.raw, c.comp); got != c.want {
				t.Fatalf("pays(%d, %d) = %v, want %v", c.raw, c.comp, got, c.want)
			}
		})
	}
}

// storage classifies the record batch buffers the writer wrote last.
type storage struct{ raw, compressed, shared int }

func lastBatchStorage(w *ipcWriter) storage {
	var s storage
	seen := map[int64]bool{}
	for _, b := range w.bufs {
		if b.length == 0 {
			continue
		}
		if seen[b.offset] {
			s.shared++
			continue
		}
		seen[b.offset] = true
		if int64(binary.LittleEndian.Uint64(w.body[b.offset:])) == -1 {
			s.raw++
		} else {
			s.compressed++
		}
	}
	return s
}

// rawBuffersOf counts the distinct buffers of the last record batch stored
// raw with at least size bytes.
func rawBuffersOf(w *ipcWriter, size int) int {
	n := 0
	seen := map[int64]bool{}
	for _, b := range w.bufs {
		if b.length-8 < int64(size) || seen[b.offset] {
			continue
		}
		seen[b.offset] = true
		if int64(binary.LittleEndian.Uint64(w.body[b.offset:])) == -1 {
			n++
		}
	}
	return n
}

func TestEqualBuffersAreStoredOnce(t *testing.T) {
	w, err := newIPCWriter(NewArrowSchema())
	if err != nil {
		t.Fatal(err)
	}
	a := bytes.Repeat([]byte("flowbus "), 100)
	w.startBatch(rawRuleRows)
	w.buffer(a)
	w.buffer(bytes.Clone(a))
	w.buffer(a[:len(a)-8])
	if w.bufs[0] != w.bufs[1] {
		t.Fatalf("equal buffers stored at %+v and %+v", w.bufs[0], w.bufs[1])
	}
	if w.bufs[2].offset == w.bufs[0].offset {
		t.Fatal("a shorter buffer shares the longer one's bytes")
	}
	if got := (storage{compressed: 2, shared: 1}); lastBatchStorage(w) != got {
		t.Fatalf("storage %+v, want %+v", lastBatchStorage(w), got)
	}
	w.startBatch(rawRuleRows) // equality does not reach across batches
	w.buffer(a)
	if w.bufs[0].offset != 0 {
		t.Fatalf("first buffer of a new batch at offset %d", w.bufs[0].offset)
	}
}

func TestBufferThatDidNotPayIsStoredRawThenRetried(t *testing.T) {
	w, err := newIPCWriter(NewArrowSchema())
	if err != nil {
		t.Fatal(err)
	}
	noise := halfNoise(2*rawRuleMin, 1)
	for batch := range rawStreak + 2 {
		w.startBatch(rawRuleRows)
		w.buffer(noise)
		// Batch 0 tries zstd (and keeps the frame: it is smaller), the next
		// rawStreak batches store raw, then zstd is tried again.
		want := batch >= 1 && batch <= rawStreak
		if isRawAt(w, 0) != want {
			t.Fatalf("batch %d: raw = %v, want %v", batch, isRawAt(w, 0), want)
		}
	}
}

// The raw rule leaves alone buffers under rawRuleMin bytes and every buffer
// of a batch under rawRuleRows rows (the agent's per-partition messages):
// those are compressed however little it saves.
func TestSmallBufferOrBatchIsAlwaysCompressed(t *testing.T) {
	for _, c := range []struct {
		name       string
		rows, size int
	}{
		{"small buffer", rawRuleRows, rawRuleMin - 8},
		{"small batch", rawRuleRows - 1, 4 * rawRuleMin},
	} {
		t.Run(c.name, func(t *testing.T) {
			w, err := newIPCWriter(NewArrowSchema())
			if err != nil {
				t.Fatal(err)
			}
			half := halfNoise(c.size, 3)
			for batch := range 3 {
				w.startBatch(c.rows)
				w.buffer(half)
				if isRawAt(w, 0) {
					t.Fatalf("batch %d of %d rows: a %d-byte buffer was stored raw", batch, c.rows, len(half))
				}
			}
		})
	}
}

// halfNoise returns size bytes that zstd shrinks to about half: random
// bytes, then zeros. Compressing them does not pay (pays).
func halfNoise(size int, seed uint64) []byte {
	b := make([]byte, size)
	r := rand.New(rand.NewPCG(seed, seed+1))
	for i := range size / 2 {
		b[i] = byte(r.Uint32())
	}
	return b
}

// isRawAt reports whether the writer's i-th buffer of the last batch is
// stored raw.
func isRawAt(w *ipcWriter, i int) bool {
	return int64(binary.LittleEndian.Uint64(w.body[w.bufs[i].offset:])) == -1
}

// The thresholds the docs promise: a 4,000-byte buffer of a 1000-row batch
// is under the rule, one byte or one row less is not.
func TestRawRuleFromFourThousandBytesInThousandRowBatches(t *testing.T) {
	for _, c := range []struct {
		rows, size int
		raw        bool
	}{
		{1000, 4000, true},
		{10000, 4000, true},
		{999, 4000, false},
		{1000, 3999, false},
	} {
		w, err := newIPCWriter(NewArrowSchema())
		if err != nil {
			t.Fatal(err)
		}
		b := halfNoise(c.size, 5)
		for range 2 { // the first batch measures, the second applies the rule
			w.startBatch(c.rows)
			w.buffer(b)
		}
		if got := isRawAt(w, 0); got != c.raw {
			t.Errorf("%d-byte buffer in a %d-row batch: raw = %v, want %v", c.size, c.rows, got, c.raw)
		}
	}
}

// One encoder serves every partition: a small batch in between, whose
// buffer at the same position compresses well, must not make the next
// large batch compress what did not pay in the last large one.
func TestSmallBatchesDoNotResetTheRawRulesMeasure(t *testing.T) {
	w, err := newIPCWriter(NewArrowSchema())
	if err != nil {
		t.Fatal(err)
	}
	hard := halfNoise(2*rawRuleMin, 7)
	easy := bytes.Repeat([]byte("flowbus/"), 2*rawRuleMin/8)
	w.startBatch(rawRuleRows)
	w.buffer(hard) // measured: does not pay
	w.startBatch(rawRuleRows / 4)
	w.buffer(easy)
	if isRawAt(w, 0) {
		t.Fatal("a small batch's buffer was stored raw")
	}
	w.startBatch(rawRuleRows)
	w.buffer(hard)
	if !isRawAt(w, 0) {
		t.Fatal("the large batch after a small one compressed a buffer that did not pay")
	}
}

// readArrowGo reads a stream with arrow-go's ipc.Reader, the reference
// implementation, and returns its record batches.
func readArrowGo(t *testing.T, msg []byte) []arrow.RecordBatch {
	t.Helper()
	r, err := ipc.NewReader(bytes.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Release()
	var out []arrow.RecordBatch
	for r.Next() {
		rec := r.RecordBatch()
		rec.Retain()
		out = append(out, rec)
	}
	if err := r.Err(); err != nil {
		t.Fatalf("arrow-go reader: %v", err)
	}
	return out
}

// A reused encoder stores buffers every way it can: raw (incompressible, or
// after a streak: in batches of rawRuleRows rows or more), shared
// between equal buffers, RLE frames, libzstd and klauspost frames. arrow-go must read
// such a stream to the same records as a fresh encoder's, which
// TestArrowGoReadsOurStreams checks against the flows.
func TestArrowGoReadsEveryBufferStorage(t *testing.T) {
	for _, n := range []int{1000, 10000} {
		t.Run(fmt.Sprintf("%d rows from a reused encoder", n), func(t *testing.T) {
			flows := flowtest.Fleet(9, n)
			fresh, err := NewEncoder().Encode(nil, flows)
			if err != nil {
				t.Fatal(err)
			}
			enc := NewEncoder()
			var msg []byte
			for range 3 {
				if msg, err = enc.Encode(nil, flows); err != nil {
					t.Fatal(err)
				}
			}
			s := lastBatchStorage(enc.w)
			if s.raw == 0 || s.compressed == 0 || s.shared == 0 {
				t.Fatalf("storage %+v: the stream does not exercise every kind", s)
			}
			want, got := readArrowGo(t, fresh), readArrowGo(t, msg)
			if len(got) != 1 || len(want) != 1 {
				t.Fatalf("%d and %d record batches, want 1", len(got), len(want))
			}
			if !array.RecordEqual(got[0], want[0]) {
				t.Fatal("arrow-go reads different records from the reused encoder's stream")
			}
			for _, r := range append(got, want...) {
				r.Release()
			}
		})
	}
}
