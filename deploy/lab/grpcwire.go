package lab

import (
	"encoding/binary"
	"strconv"
	"sync"
	"time"

	"golang.org/x/net/http2/hpack"
)

// grpcCallHeader is the request header by which a gRPC client's call is
// found on the wire: its value is the call's number (edge.grpcCalls).
const grpcCallHeader = "lab-call"

// grpcWire follows the HTTP/2 frames of one gRPC client connection, as the
// connection's stampConn sees them, to time each call where the client
// hands it to the kernel and where its answer arrives: a call starts just
// before the write that holds its HEADERS frame (found by its lab-call
// header, decoded with HPACK) and is answered when the first HEADERS frame
// of its stream arrives (response headers, or the trailers of a
// trailers-only answer). gRPC's stats handlers see neither stream IDs nor
// the wire, and run after the client's goroutines were scheduled. Its
// methods are called under the stampConn's lock.
type grpcWire struct {
	calls *sync.Map // call number -> *wireTimes, the edge's

	preface   int       // bytes of the client preface still to skip
	out, in   []byte    // bytes of frames not yet whole, each direction
	outAt     time.Time // when the first byte of out was written
	inAt      time.Time // when the first byte of in arrived
	dec       *hpack.Decoder
	block     []byte // a request header block being assembled
	blockAt   time.Time
	blockID   uint32
	streams   map[uint32]*wireTimes // client streams -> their call's times
	malformed bool                  // a frame made no sense: stop following
}

// wireTimes are one call's times on the wire.
type wireTimes struct {
	mu           sync.Mutex // first is set by the connection's reader
	start, first time.Time
}

// get returns the call's start and first answer byte (zero before it came).
func (t *wireTimes) get() (start, first time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.start, t.first
}

func newGRPCWire(calls *sync.Map) *grpcWire {
	return &grpcWire{calls: calls, preface: 24, dec: hpack.NewDecoder(4096, nil), streams: map[uint32]*wireTimes{}}
}

// http2 frame types and flags the wire needs.
const (
	h2Headers       = 0x1
	h2Continuation  = 0x9
	h2FlagEndHeader = 0x4
	h2FlagPadded    = 0x8
	h2FlagPriority  = 0x20
)

// wrote sees bytes the client writes, the write beginning at at.
func (w *grpcWire) wrote(b []byte, at time.Time) {
	if w.malformed {
		return
	}
	if w.preface > 0 {
		n := min(w.preface, len(b))
		w.preface -= n
		b = b[n:]
	}
	if len(w.out) == 0 {
		w.outAt = at
	}
	w.out = append(w.out, b...)
	for len(w.out) >= 9 {
		size := frameSize(w.out)
		if len(w.out) < 9+size {
			break
		}
		typ, flags := w.out[3], w.out[4]
		id := binary.BigEndian.Uint32(w.out[5:9]) & 0x7fffffff
		payload := w.out[9 : 9+size]
		switch typ {
		case h2Headers:
			frag, ok := headerFragment(payload, flags)
			if !ok {
				w.malformed = true
				return
			}
			w.block, w.blockAt, w.blockID = append(w.block[:0], frag...), w.outAt, id
			if flags&h2FlagEndHeader != 0 {
				w.request()
			}
		case h2Continuation:
			if id != w.blockID {
				w.malformed = true
				return
			}
			w.block = append(w.block, payload...)
			if flags&h2FlagEndHeader != 0 {
				w.request()
			}
		}
		w.out = w.out[9+size:]
		w.outAt = at // the next frame's first byte came with this write
	}
	if len(w.out) == 0 {
		w.out = nil
	}
}

// request decodes a whole request header block and notes its call's start.
func (w *grpcWire) request() {
	fields, err := w.dec.DecodeFull(w.block)
	if err != nil {
		w.malformed = true // the table is lost: nothing after can be read
		return
	}
	for _, f := range fields {
		if f.Name != grpcCallHeader {
			continue
		}
		n, err := strconv.ParseUint(f.Value, 10, 64)
		if err != nil {
			return
		}
		t := &wireTimes{start: w.blockAt}
		w.streams[w.blockID] = t
		w.calls.Store(n, t)
	}
}

// read sees bytes the client reads, the first of them received at at.
func (w *grpcWire) read(b []byte, at time.Time) {
	if w.malformed {
		return
	}
	if len(w.in) == 0 {
		w.inAt = at
	}
	w.in = append(w.in, b...)
	for len(w.in) >= 9 {
		size := frameSize(w.in)
		if len(w.in) < 9+size {
			break
		}
		id := binary.BigEndian.Uint32(w.in[5:9]) & 0x7fffffff
		if w.in[3] == h2Headers {
			if t, ok := w.streams[id]; ok {
				t.mu.Lock()
				t.first = w.inAt
				t.mu.Unlock()
				delete(w.streams, id)
			}
		}
		w.in = w.in[9+size:]
		w.inAt = at
	}
	if len(w.in) == 0 {
		w.in = nil
	}
}

// readLimit is how many bytes the next read may return: the rest of the
// frame being read (of its 9-byte header while that is not whole). A read
// then never holds the first byte of a later frame after other bytes: that
// byte would carry the first byte's receive timestamp, which on a busy
// client is an earlier segment's (the tail of another stream's message)
// and would make the call look faster than the server's interface saw it.
func (w *grpcWire) readLimit() int {
	if w.malformed {
		return 0
	}
	if len(w.in) < 9 {
		return 9 - len(w.in)
	}
	size := frameSize(w.in)
	return 9 + size - len(w.in)
}

// frameSize is the payload length in an HTTP/2 frame header (its first 3
// bytes, of the 9 b must hold).
func frameSize(b []byte) int { return int(b[0])<<16 | int(b[1])<<8 | int(b[2]) }

// headerFragment returns a HEADERS frame's header block fragment, without
// its padding and priority fields.
func headerFragment(p []byte, flags byte) ([]byte, bool) {
	pad := 0
	if flags&h2FlagPadded != 0 {
		if len(p) < 1 {
			return nil, false
		}
		pad, p = int(p[0]), p[1:]
	}
	if flags&h2FlagPriority != 0 {
		if len(p) < 5 {
			return nil, false
		}
		p = p[5:]
	}
	if pad > len(p) {
		return nil, false
	}
	return p[:len(p)-pad], true
}
