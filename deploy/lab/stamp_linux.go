//go:build linux

package lab

import (
	"io"
	"net"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// newStampConn wraps a TCP connection and asks its socket for receive
// timestamps; if the socket refuses, reads are stamped when they return.
func newStampConn(c net.Conn) *stampConn {
	s := &stampConn{Conn: c}
	if sc, ok := c.(syscall.Conn); ok {
		if raw, err := sc.SyscallConn(); err == nil {
			var serr error
			if err := raw.Control(func(fd uintptr) {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1)
			}); err == nil && serr == nil {
				s.stamped = true
			}
		}
	}
	return s
}

// holdRxStamps opens a socket that asks for receive timestamps and keeps it
// until release is called. The kernel stamps packets only while some socket
// asks, and turns stamping on from a work queue, some time after the first
// socket asked: segments arriving before then carry no timestamp (their
// reads are stamped when they return). Holding one socket for the clients'
// whole run turns it on once, before their traffic.
func holdRxStamps() (release func(), err error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return func() { unix.Close(fd) }, nil
}

// enableRxStamps asks a UDP socket for receive timestamps (readStampedUDP).
func enableRxStamps(c *net.UDPConn) bool {
	raw, err := c.SyscallConn()
	if err != nil {
		return false
	}
	var serr error
	if err := raw.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1)
	}); err != nil || serr != nil {
		return false
	}
	return true
}

// rxStamp returns the receive timestamp in oob (SCM_TIMESTAMPNS), if any.
func rxStamp(oob []byte) (time.Time, bool) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return time.Time{}, false
	}
	for _, m := range msgs {
		if m.Header.Level == unix.SOL_SOCKET && m.Header.Type == unix.SO_TIMESTAMPNS && len(m.Data) >= int(unsafe.Sizeof(unix.Timespec{})) {
			ts := (*unix.Timespec)(unsafe.Pointer(&m.Data[0]))
			return time.Unix(ts.Sec, ts.Nsec), true
		}
	}
	return time.Time{}, false
}

// readStampedUDP reads one datagram and when the kernel received it.
func readStampedUDP(c *net.UDPConn, b []byte) (int, time.Time, error) {
	var oob [64]byte
	n, oobn, _, _, err := c.ReadMsgUDP(b, oob[:])
	if err != nil {
		return n, time.Time{}, err
	}
	if at, ok := rxStamp(oob[:oobn]); ok {
		return n, at, nil
	}
	return n, time.Now(), nil
}

// readStamped reads the first byte with the timestamp of the segment that
// brought it, then, without waiting, what else the socket holds up to
// len(b). The connection's deadlines apply as to any read.
func (c *stampConn) readStamped(b []byte) (int, time.Time, error) {
	if !c.stamped || len(b) == 0 {
		n, err := c.Conn.Read(b)
		return n, time.Now(), err
	}
	raw, err := c.Conn.(syscall.Conn).SyscallConn()
	if err != nil {
		n, err := c.Conn.Read(b)
		return n, time.Now(), err
	}
	var (
		n    int
		at   time.Time
		rerr error
		oob  [64]byte
	)
	err = raw.Read(func(fd uintptr) bool {
		m, oobn, _, _, e := unix.Recvmsg(int(fd), b[:1], oob[:], 0)
		if e == unix.EAGAIN || e == unix.EINTR {
			return false // wait for data, within the deadline
		}
		if e != nil {
			rerr = e
			return true
		}
		if m == 0 {
			rerr = io.EOF
			return true
		}
		n = m
		var ok bool
		if at, ok = rxStamp(oob[:oobn]); !ok {
			at = time.Now()
		}
		if len(b) > 1 {
			if more, _, _, _, e := unix.Recvmsg(int(fd), b[1:], nil, unix.MSG_DONTWAIT); e == nil && more > 0 {
				n += more
			}
		}
		return true
	})
	if err == nil && rerr != nil && rerr != io.EOF {
		err = rerr
	}
	if err != nil {
		return n, at, &net.OpError{Op: "read", Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
	}
	if n == 0 && rerr == io.EOF {
		return 0, at, io.EOF
	}
	return n, at, nil
}

// setTCPUserTimeout sets a TCP connection's TCP_USER_TIMEOUT (how long sent
// data may stay unacknowledged before the kernel drops the connection).
func setTCPUserTimeout(c net.Conn, d time.Duration) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return
	}
	_ = raw.Control(func(fd uintptr) {
		_ = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, int(d.Milliseconds()))
	})
}
