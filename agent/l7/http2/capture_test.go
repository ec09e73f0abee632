package http2

import (
	"encoding/binary"
	"testing"

	"github.com/flowbus/flowbus/agent/l7"
	"github.com/flowbus/flowbus/agent/l7/l7test"
)

// read is one read of the recording proxy (l7test).
type read = l7test.Read

// record returns the reads of the one connection rec carried, once both
// of its directions have ended.
func record(t *testing.T, rec *l7test.Recorder) []read {
	t.Helper()
	conns := rec.Wait()
	if len(conns) != 1 {
		t.Fatalf("the proxy carried %d connections; want 1", len(conns))
	}
	return conns[0]
}

// chunks turns reads into chunks, one per read, whole heads.
func chunks(reads []read) []l7.Chunk { return l7test.Chunks(reads) }

// frame is a frame's place in its direction's stream.
type frame struct {
	off   uint64
	len   uint32
	typ   uint8
	flags uint8
	id    uint32
}

// frames walks a direction's whole stream (the test's own walker).
func frames(stream []byte, client bool) []frame {
	var fs []frame
	off := uint64(0)
	if client {
		off = uint64(len(preface))
	}
	for off+9 <= uint64(len(stream)) {
		h := stream[off:]
		n := uint32(h[0])<<16 | uint32(h[1])<<8 | uint32(h[2])
		fs = append(fs, frame{off: off, len: n, typ: h[3], flags: h[4], id: binary.BigEndian.Uint32(h[5:9]) & 0x7fffffff})
		off += 9 + uint64(n)
	}
	return fs
}

func streams(reads []read) (s [2][]byte, seqAt [2][]int64) {
	for _, rd := range reads {
		s[rd.Dir] = append(s[rd.Dir], rd.Data...)
		for range rd.Data {
			seqAt[rd.Dir] = append(seqAt[rd.Dir], rd.Seq)
		}
	}
	return
}

// run feeds chunks to a new parser and returns its exchanges and stats.
func run(cs []l7.Chunk) ([]l7.Exchange, l7.Stats) {
	var st l7.Stats
	p := New(&st, Options{})
	var out []l7.Exchange
	emit := func(e *l7.Exchange) {
		c := *e
		c.L7.HTTPHeaders = append([]string(nil), e.L7.HTTPHeaders...)
		if len(c.L7.HTTPHeaders) == 0 {
			c.L7.HTTPHeaders = nil
		}
		out = append(out, c)
	}
	for i := range cs {
		c := cs[i]
		head := append([]byte(nil), c.Head...)
		c.Head = head
		p.Feed(&c, emit)
		for j := range head { // the parser must not keep heads
			head[j] = 0xa5
		}
	}
	p.Close(emit)
	return out, st
}
