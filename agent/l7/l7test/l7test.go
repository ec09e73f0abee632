// Package l7test records real clients and servers for the L7 parsers'
// tests: a TCP loopback proxy that keeps both byte streams of every
// connection it carries, read by read, and the chunks a capture would make
// of them.
package l7test

import (
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/flowbus/flowbus/agent/l7"
)

// Read is one read of the proxy: what one side sent, in order, with a
// sequence number shared by both directions of all connections, which the
// tests use as its time.
type Read struct {
	Dir  l7.Direction
	Seq  int64
	Data []byte
}

// Recorder is a TCP loopback proxy to one target that records every
// connection it carries.
type Recorder struct {
	ln    net.Listener
	seq   atomic.Int64
	mu    sync.Mutex
	conns [][]Read
	wg    sync.WaitGroup // the copies, two per connection
	done  chan struct{}  // the accept loop ended
}

// NewRecorder listens on loopback and forwards every connection to target.
// The listener is closed when the test ends, if Wait has not closed it.
func NewRecorder(t testing.TB, target string) *Recorder {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &Recorder{ln: ln, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			r.mu.Lock()
			i := len(r.conns)
			r.conns = append(r.conns, nil)
			r.wg.Add(2)
			r.mu.Unlock()
			go r.copy(i, l7.FromClient, s, c)
			go r.copy(i, l7.FromServer, c, s)
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return r
}

// Addr is the address clients dial instead of the target.
func (r *Recorder) Addr() string { return r.ln.Addr().String() }

// copy forwards one direction, recording each read, then half-closes the
// other side so that the peer sees the end, as it would without the proxy.
func (r *Recorder) copy(i int, dir l7.Direction, dst, src net.Conn) {
	defer r.wg.Done()
	buf := make([]byte, 64<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			r.mu.Lock()
			r.conns[i] = append(r.conns[i], Read{Dir: dir, Seq: r.seq.Add(1), Data: append([]byte(nil), buf[:n]...)})
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
	src.Close()
}

// Wait stops accepting, waits until both directions of every connection
// have ended (the clients and servers must close them), and returns each
// connection's reads, in the order the connections were accepted.
func (r *Recorder) Wait() [][]Read {
	r.ln.Close()
	<-r.done
	r.wg.Wait()
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.conns
}

// Chunks turns one connection's reads into chunks, one per read, with
// whole heads, each at its offset in its direction's stream.
func Chunks(reads []Read) []l7.Chunk {
	var off [2]uint64
	out := make([]l7.Chunk, 0, len(reads))
	for _, rd := range reads {
		out = append(out, l7.Chunk{Dir: rd.Dir, TimeNs: rd.Seq, Offset: off[rd.Dir], Len: uint32(len(rd.Data)), Head: rd.Data})
		off[rd.Dir] += uint64(len(rd.Data))
	}
	return out
}
