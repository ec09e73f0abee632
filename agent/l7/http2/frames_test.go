package http2

import (
	"bytes"
	"testing"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/flowbus/flowbus/agent/l7"
)

// conn writes a hand-made connection: each call appends frames to one
// direction and becomes one chunk with whole head.
type conn struct {
	t      *testing.T
	enc    [2]*hpack.Encoder
	hb     [2]bytes.Buffer
	cs     []l7.Chunk
	off    [2]uint64
	now    int64
	opened bool
}

func newConn(t *testing.T) *conn {
	c := &conn{t: t}
	for d := range c.enc {
		c.enc[d] = hpack.NewEncoder(&c.hb[d])
	}
	return c
}

func (c *conn) send(dir l7.Direction, f func(fr *http2.Framer)) {
	var b bytes.Buffer
	if dir == l7.FromClient && !c.opened {
		b.WriteString(preface)
		c.opened = true
	}
	f(http2.NewFramer(&b, nil))
	c.now += 10
	c.cs = append(c.cs, l7.Chunk{Dir: dir, TimeNs: c.now, Offset: c.off[dir], Len: uint32(b.Len()), Head: b.Bytes()})
	c.off[dir] += uint64(b.Len())
}

func (c *conn) block(dir l7.Direction, kv ...string) []byte {
	c.hb[dir].Reset()
	for i := 0; i+1 < len(kv); i += 2 {
		c.enc[dir].WriteField(hpack.HeaderField{Name: kv[i], Value: kv[i+1]})
	}
	return bytes.Clone(c.hb[dir].Bytes())
}

func (c *conn) request(id uint32, path string, end bool) {
	blk := c.block(l7.FromClient, ":method", "GET", ":scheme", "http", ":authority", "h", ":path", path)
	c.send(l7.FromClient, func(fr *http2.Framer) {
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: blk, EndHeaders: true, EndStream: end})
	})
}

func (c *conn) response(id uint32, status string, end bool) {
	blk := c.block(l7.FromServer, ":status", status)
	c.send(l7.FromServer, func(fr *http2.Framer) {
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: blk, EndHeaders: true, EndStream: end})
	})
}

func TestStreamsEndAtResetGoAwayOrClose(t *testing.T) {
	c := newConn(t)
	c.request(1, "/one", true)
	c.request(3, "/three", true)
	c.request(5, "/five", true)
	c.request(7, "/seven", false)
	c.response(3, "200", false)
	c.send(l7.FromClient, func(fr *http2.Framer) { fr.WriteRSTStream(3, http2.ErrCodeCancel) }) // t=60: 3 answered
	c.send(l7.FromServer, func(fr *http2.Framer) { fr.WriteGoAway(5, http2.ErrCodeNo, nil) })   // 7 not processed
	c.send(l7.FromServer, func(fr *http2.Framer) {
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 9, BlockFragment: c.block(l7.FromServer, ":status", "200"), EndHeaders: true})
	}) // unpaired
	// padded and with priority, the header block split by a CONTINUATION
	blk := c.block(l7.FromServer, ":status", "204")
	c.send(l7.FromServer, func(fr *http2.Framer) {
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: blk[:1], PadLength: 3, Priority: http2.PriorityParam{Weight: 7}})
		fr.WriteContinuation(1, true, blk[1:])
		fr.WriteData(1, true, []byte("x"))
	})
	got, st := run(c.cs)
	want := []struct {
		url          string
		status       uint32
		reqNs, rspNs int64
	}{{"http://h/three", 200, 20, 50}, {"http://h/seven", 0, 40, 0}, {"http://h/one", 204, 10, 90}, {"http://h/five", 0, 30, 0}}
	if len(got) != len(want) {
		t.Fatalf("%d exchanges %+v", len(got), got)
	}
	for i, w := range want {
		g := got[i]
		if g.L7.HTTPURL != w.url || g.L7.HTTPStatus != w.status || g.RequestNs != w.reqNs || g.ResponseNs != w.rspNs || g.L7.HTTPMethod != "GET" {
			t.Errorf("exchange %d: %+v; want %+v", i, g, w)
		}
	}
	if st != (l7.Stats{l7.ReasonUnpaired: 1}) {
		t.Fatalf("stats %v", st)
	}
}

func TestStreamsOverTheCapAreCounted(t *testing.T) {
	c := newConn(t)
	for id := uint32(1); id <= 7; id += 2 {
		c.request(id, "/", true)
	}
	var st l7.Stats
	p := New(&st, Options{MaxStreams: 2})
	n := 0
	for i := range c.cs {
		p.Feed(&c.cs[i], func(*l7.Exchange) { n++ })
	}
	p.Close(func(*l7.Exchange) { n++ })
	if n != 2 || st != (l7.Stats{l7.ReasonStateCap: 2}) {
		t.Fatalf("%d exchanges, stats %v", n, st)
	}
}

func TestLossesAreCountedOnce(t *testing.T) {
	for name, tc := range map[string]struct {
		mod  func(c *conn)
		want l7.Stats
		n    int // exchanges
	}{
		"oversized frame": {func(c *conn) {
			c.send(l7.FromServer, func(fr *http2.Framer) { fr.WriteData(1, false, make([]byte, 16385)) })
		}, l7.Stats{l7.ReasonMalformed: 1, l7.ReasonLost: 1}, 1},
		"raised max frame size": {func(c *conn) {
			c.send(l7.FromClient, func(fr *http2.Framer) { fr.WriteSettings(http2.Setting{ID: http2.SettingMaxFrameSize, Val: 1 << 20}) })
			c.send(l7.FromServer, func(fr *http2.Framer) { fr.WriteData(1, false, make([]byte, 16385)) })
		}, l7.Stats{}, 1},
		"gap": {func(c *conn) {
			c.off[l7.FromServer] += 5
			c.response(1, "200", true)
		}, l7.Stats{l7.ReasonGap: 1, l7.ReasonLost: 1}, 1},
		"bad preface": {func(c *conn) {
			c.cs[0].Head = bytes.Clone(c.cs[0].Head)
			c.cs[0].Head[3] = 'X'
		}, l7.Stats{l7.ReasonMalformed: 1, l7.ReasonLost: 1}, 0},
		"truncated header block": {func(c *conn) {
			c.response(1, "599", true)
			last := &c.cs[len(c.cs)-1]
			last.Head = last.Head[:10]
		}, l7.Stats{l7.ReasonTruncated: 1, l7.ReasonLost: 1}, 1},
		"continuation out of place": {func(c *conn) {
			c.send(l7.FromServer, func(fr *http2.Framer) { fr.WriteContinuation(1, true, []byte{0x88}) })
		}, l7.Stats{l7.ReasonMalformed: 1, l7.ReasonLost: 1}, 1},
		"bad hpack": {func(c *conn) {
			c.send(l7.FromServer, func(fr *http2.Framer) {
				fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: []byte{0xff, 0xff, 0xff, 0xff, 0x7f}, EndHeaders: true})
			})
		}, l7.Stats{l7.ReasonMalformed: 1, l7.ReasonLost: 1}, 1},
	} {
		c := newConn(t)
		c.request(1, "/", true)
		tc.mod(c)
		c.response(1, "200", true) // not parsed after a loss
		got, st := run(c.cs)
		if st != tc.want || len(got) != tc.n {
			t.Errorf("%s: stats %v, %d exchanges; want %v, %d", name, st, len(got), tc.want, tc.n)
		}
	}
}
