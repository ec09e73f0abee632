package http2

import (
	"encoding/binary"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/flowbus/flowbus/agent/l7"
)

// read is one Read of the recording proxy: what one side sent, in order,
// with a sequence number shared by both directions (used as its time).
type read struct {
	dir  l7.Direction
	seq  int64
	data []byte
}

// recorder is a TCP loopback proxy that records both byte streams of the
// one connection it serves.
type recorder struct {
	ln    net.Listener
	seq   atomic.Int64
	mu    sync.Mutex
	reads []read
	done  chan struct{}
}

func newRecorder(t *testing.T, target string) *recorder {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &recorder{ln: ln, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", target)
		if err != nil {
			c.Close()
			return
		}
		var wg sync.WaitGroup
		wg.Add(2)
		go r.copy(&wg, s, c, l7.FromClient)
		go r.copy(&wg, c, s, l7.FromServer)
		wg.Wait()
	}()
	t.Cleanup(func() { ln.Close() })
	return r
}

func (r *recorder) copy(wg *sync.WaitGroup, dst, src net.Conn, dir l7.Direction) {
	defer wg.Done()
	buf := make([]byte, 64<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			r.mu.Lock()
			r.reads = append(r.reads, read{dir: dir, seq: r.seq.Add(1), data: append([]byte(nil), buf[:n]...)})
			r.mu.Unlock()
			if _, werr := dst.Write(buf[:n]); werr != nil {
				break
			}
		}
		if err != nil {
			break
		}
	}
	if tc, ok := dst.(*net.TCPConn); ok {
		tc.CloseWrite()
	} else {
		dst.Close()
	}
	io.Copy(io.Discard, src)
}

func (r *recorder) addr() string { return r.ln.Addr().String() }

// wait returns the reads once both directions have ended.
func (r *recorder) wait(t *testing.T) []read {
	t.Helper()
	<-r.done
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.reads
}

// chunks turns reads into chunks, one per read, whole heads.
func chunks(reads []read) []l7.Chunk {
	var off [2]uint64
	out := make([]l7.Chunk, 0, len(reads))
	for _, rd := range reads {
		out = append(out, l7.Chunk{Dir: rd.dir, TimeNs: rd.seq, Offset: off[rd.dir], Len: uint32(len(rd.data)), Head: rd.data})
		off[rd.dir] += uint64(len(rd.data))
	}
	return out
}

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
		s[rd.dir] = append(s[rd.dir], rd.data...)
		for range rd.data {
			seqAt[rd.dir] = append(seqAt[rd.dir], rd.seq)
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
