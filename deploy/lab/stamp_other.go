//go:build !linux

package lab

import (
	"net"
	"time"
)

// newStampConn wraps c; without receive timestamps a read is stamped when
// it returns.
func newStampConn(c net.Conn) *stampConn { return &stampConn{Conn: c} }

func holdRxStamps() (func(), error) { return func() {}, nil }

func enableRxStamps(*net.UDPConn) bool { return false }

func readStampedUDP(c *net.UDPConn, b []byte) (int, time.Time, error) {
	n, err := c.Read(b)
	return n, time.Now(), err
}

func (c *stampConn) readStamped(b []byte) (int, time.Time, error) {
	n, err := c.Conn.Read(b)
	return n, time.Now(), err
}

func setTCPUserTimeout(net.Conn, time.Duration) {}
