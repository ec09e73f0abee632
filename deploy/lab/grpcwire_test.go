package lab

import (
	"bytes"
	"slices"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// h2Frames returns frames written by fn with an http2.Framer.
func h2Frames(t *testing.T, fn func(f *http2.Framer) error) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := fn(http2.NewFramer(&b, nil)); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// requestBlock is an HPACK header block of a gRPC request with a lab-call.
func requestBlock(enc *hpack.Encoder, buf *bytes.Buffer, call string) []byte {
	buf.Reset()
	for _, f := range []hpack.HeaderField{{Name: ":method", Value: "POST"}, {Name: ":path", Value: GRPCCheck},
		{Name: "content-type", Value: "application/grpc"}, {Name: grpcCallHeader, Value: call}} {
		_ = enc.WriteField(f)
	}
	return bytes.Clone(buf.Bytes())
}

func TestGRPCWireTimesEachCallFromItsHeadersWriteToItsAnswersFirstHeaders(t *testing.T) {
	var calls sync.Map
	w := newGRPCWire(&calls)
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	t0 := time.Unix(1000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }

	out := append([]byte(http2.ClientPreface), h2Frames(t, func(f *http2.Framer) error {
		if err := f.WriteSettings(); err != nil {
			return err
		}
		// Call 7 on stream 1: its header block split into HEADERS and
		// CONTINUATION, then its message.
		blk := requestBlock(enc, &hb, "7")
		if err := f.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: blk[:5]}); err != nil {
			return err
		}
		if err := f.WriteContinuation(1, true, blk[5:]); err != nil {
			return err
		}
		return f.WriteData(1, true, []byte{0, 0, 0, 0, 0})
	})...)
	// The write splits the preface and, later, the HEADERS frame: the call
	// starts with the write that held the frame's first byte.
	w.wrote(out[:10], at(1))
	w.wrote(out[10:40], at(2))
	w.wrote(out[40:], at(3))
	// Call 8 on stream 3, padded and with priority, in one write; the
	// dynamic table now holds lab-call from call 7.
	w.wrote(h2Frames(t, func(f *http2.Framer) error {
		return f.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: requestBlock(enc, &hb, "8"), EndHeaders: true,
			PadLength: 4, Priority: http2.PriorityParam{Weight: 15}})
	}), at(4))

	// The server's SETTINGS, stream 3's answer, then stream 1's in two
	// reads; a HEADERS frame of an unknown stream is ignored.
	in := h2Frames(t, func(f *http2.Framer) error {
		if err := f.WriteSettings(); err != nil {
			return err
		}
		if err := f.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: []byte{0x88}, EndHeaders: true}); err != nil {
			return err
		}
		if err := f.WriteHeaders(http2.HeadersFrameParam{StreamID: 5, BlockFragment: []byte{0x88}, EndHeaders: true}); err != nil {
			return err
		}
		return f.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: []byte{0x88}, EndHeaders: true})
	})
	w.read(in[:len(in)-5], at(10))
	w.read(in[len(in)-5:], at(11))
	// Stream 1's HEADERS began in the read at 10 ms.
	want := map[uint64][2]time.Time{7: {at(2), at(10)}, 8: {at(4), at(10)}}
	for call, wt := range want {
		v, ok := calls.Load(call)
		if !ok {
			t.Fatalf("call %d not found", call)
		}
		s, f := v.(*wireTimes).get()
		if !s.Equal(wt[0]) || !f.Equal(wt[1]) {
			t.Errorf("call %d: start %v, first %v; want %v, %v", call, s.Sub(t0), f.Sub(t0), wt[0].Sub(t0), wt[1].Sub(t0))
		}
	}
	if w.malformed {
		t.Error("well-formed frames marked malformed")
	}
}

func TestGRPCWireStopsFollowingAMalformedConnectionWithoutPanicking(t *testing.T) {
	var calls sync.Map
	w := newGRPCWire(&calls)
	// A padded HEADERS frame whose pad length exceeds its payload.
	bad := append([]byte(http2.ClientPreface), 0, 0, 2, h2Headers, h2FlagPadded|h2FlagEndHeader, 0, 0, 0, 1, 9, 0)
	w.wrote(bad, time.Unix(1, 0))
	if !w.malformed {
		t.Fatal("a pad longer than the frame was not noticed")
	}
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	w.wrote(h2Frames(t, func(f *http2.Framer) error {
		return f.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: requestBlock(enc, &hb, "1"), EndHeaders: true})
	}), time.Unix(2, 0))
	w.read([]byte{0, 0, 1, h2Headers, h2FlagEndHeader, 0, 0, 0, 3, 0x88}, time.Unix(3, 0))
	n := 0
	calls.Range(func(any, any) bool { n++; return true })
	if n != 0 {
		t.Errorf("%d calls timed after the connection became unreadable, want 0", n)
	}
	// A header block that is not HPACK marks it too.
	w2 := newGRPCWire(&calls)
	w2.wrote(append([]byte(http2.ClientPreface), 0, 0, 1, h2Headers, h2FlagEndHeader, 0, 0, 0, 1, 0xff), time.Unix(1, 0))
	if !w2.malformed {
		t.Error("an undecodable header block was not noticed")
	}
}

// A read bounded by readLimit ends where the next frame begins, so a later
// frame's HEADERS is stamped by its own read, not by an earlier frame's
// arrival that a busy reader found queued before it.
func TestGRPCWireReadLimitEndsEachReadAtAFrameBoundary(t *testing.T) {
	var calls sync.Map
	w := newGRPCWire(&calls)
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	t0 := time.Unix(1000, 0)
	w.wrote(append([]byte(http2.ClientPreface), h2Frames(t, func(f *http2.Framer) error {
		return f.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: requestBlock(enc, &hb, "9"), EndHeaders: true})
	})...), t0)
	// Queued at the client: another stream's 100-byte DATA frame (arrived
	// at 5 ms), then stream 1's answer (arrived at 8 ms).
	in := h2Frames(t, func(f *http2.Framer) error {
		if err := f.WriteData(3, false, make([]byte, 100)); err != nil {
			return err
		}
		return f.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: []byte{0x88}, EndHeaders: true})
	})
	arrival := func(off int) time.Time { // the segment that brought byte off
		if off < 109 {
			return t0.Add(5 * time.Millisecond)
		}
		return t0.Add(8 * time.Millisecond)
	}
	var limits []int
	for off := 0; off < len(in); {
		n := w.readLimit()
		if n <= 0 {
			t.Fatalf("readLimit %d at offset %d", n, off)
		}
		limits = append(limits, n)
		n = min(n, len(in)-off)
		w.read(in[off:off+n], arrival(off))
		off += n
	}
	// The DATA frame's header, its payload, the HEADERS frame's header and
	// its one-byte block.
	if want := []int{9, 100, 9, 1}; !slices.Equal(limits, want) {
		t.Errorf("read limits %v, want %v", limits, want)
	}
	v, ok := calls.Load(uint64(9))
	if !ok {
		t.Fatal("call 9 not found")
	}
	if _, f := v.(*wireTimes).get(); !f.Equal(t0.Add(8 * time.Millisecond)) {
		t.Errorf("answer stamped at %v, want 8ms (its own segment's arrival)", f.Sub(t0))
	}
	w.malformed = true
	if n := w.readLimit(); n != 0 {
		t.Errorf("readLimit of a malformed connection %d, want 0 (no bound)", n)
	}
}
