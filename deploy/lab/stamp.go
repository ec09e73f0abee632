package lab

import (
	"net"
	"sync"
	"time"
)

// stampConn is a client's TCP connection that notes, for its ground truth,
// when each exchange on it started and when its answer arrived, as close to
// the wire as a client can see them:
//   - an exchange starts just before the first write after a read (or the
//     first write of the connection): the time the client handed its request
//     to the kernel;
//   - every read notes when the kernel received its first byte: the socket
//     asks for receive timestamps (SO_TIMESTAMPNS) and reads one byte with
//     its timestamp before the rest (stamp_linux.go); elsewhere, and when the
//     kernel gave no timestamp, the time the read returned.
//
// So a latency a client logs is the time from its write to the answer's
// arrival at its own socket, without the time its goroutines took to be
// scheduled and read it, which on a busy node is most of the difference
// from what the kernel measures at the server's interface.
type stampConn struct {
	net.Conn
	stamped bool // the kernel gives receive timestamps

	mu       sync.Mutex
	writing  bool      // a write came after the last read
	start    time.Time // the current exchange's first write began
	first    time.Time // the first read after it: its first byte's arrival
	lastRead time.Time // the latest read's first byte's arrival
	// onRead, if set, sees every read's bytes and the arrival of the first.
	onRead func(b []byte, at time.Time)
	// onWrite, if set, sees every write's bytes and when it began.
	onWrite func(b []byte, at time.Time)
	// readLimit, if set, bounds each read (0: no bound), so that a read
	// ends where the caller's next unit (an HTTP/2 frame) begins and the
	// next read's first byte, the one stamped, is that unit's first.
	readLimit func() int
}

func (c *stampConn) Write(b []byte) (int, error) {
	now := time.Now()
	c.mu.Lock()
	if !c.writing {
		c.writing, c.start, c.first = true, now, time.Time{}
	}
	if c.onWrite != nil {
		c.onWrite(b, now)
	}
	c.mu.Unlock()
	return c.Conn.Write(b)
}

func (c *stampConn) Read(b []byte) (int, error) {
	if c.readLimit != nil {
		c.mu.Lock()
		if k := c.readLimit(); k > 0 && k < len(b) {
			b = b[:k]
		}
		c.mu.Unlock()
	}
	n, at, err := c.readStamped(b)
	if n > 0 {
		c.mu.Lock()
		c.lastRead = at
		if c.writing {
			c.writing, c.first = false, at
		}
		if c.onRead != nil {
			c.onRead(b[:n], at)
		}
		c.mu.Unlock()
	}
	return n, err
}

// exchange returns when the current exchange's request began to be written
// and when its answer's first byte arrived (zero before it did).
func (c *stampConn) exchange() (start, first time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.start, c.first
}

// lastArrival is when the latest read's first byte arrived.
func (c *stampConn) lastArrival() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lastRead
}
