//go:build linux

package lab

import (
	"net"
	"testing"
	"time"
)

// TestStampConnTimesAnswersByTheirArrivalNotTheRead checks that a
// stampConn's exchange ends when the kernel received the answer, however
// late the client reads it, and that the next write starts a new exchange.
func TestStampConnTimesAnswersByTheirArrivalNotTheRead(t *testing.T) {
	release, err := holdRxStamps()
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	time.Sleep(20 * time.Millisecond) // the kernel turns stamping on from a work queue
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	sent := make(chan time.Time, 2)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		buf := make([]byte, 3)
		for _, answer := range []string{"a", "b"} {
			if _, err := c.Read(buf); err != nil {
				return
			}
			sent <- time.Now()
			_, _ = c.Write([]byte(answer))
		}
		_, _ = c.Read(buf) // until the client closes
	}()
	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c := newStampConn(raw)
	defer c.Close()
	if !c.stamped {
		t.Fatal("the socket refused SO_TIMESTAMPNS")
	}
	for i, answer := range []string{"a", "b"} {
		before := time.Now()
		if _, err := c.Write([]byte("req")); err != nil {
			t.Fatal(err)
		}
		wrote := <-sent
		time.Sleep(50 * time.Millisecond) // the answer waits in the socket
		readAt := time.Now()
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		buf := make([]byte, 16)
		n, err := c.Read(buf)
		if err != nil || string(buf[:n]) != answer {
			t.Fatalf("exchange %d: Read = %q, %v; want %q", i, buf[:n], err, answer)
		}
		start, first := c.exchange()
		if start.Before(before) || start.After(wrote) {
			t.Errorf("exchange %d: start %v, want between %v and the answer's write %v", i, start, before, wrote)
		}
		// Stamped when the answer arrived, tens of ms before the read.
		if first.Before(wrote) || !first.Before(readAt.Add(-25*time.Millisecond)) {
			t.Errorf("exchange %d: answer arrived %v: want after its write %v and well before the read at %v", i, first, wrote, readAt)
		}
		if got := c.lastArrival(); !got.Equal(first) {
			t.Errorf("exchange %d: lastArrival %v, want %v", i, got, first)
		}
	}
	// A deadline is a timeout, as on any net.Conn.
	_ = c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	if _, err := c.Read(make([]byte, 4)); !isTimeout(err) {
		t.Errorf("Read past the deadline: %v, want a timeout", err)
	}
}
