//go:build linux

package bpf

import (
	"fmt"
	"os"
	"syscall"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// ringWaiter waits for a ring buffer through the Go runtime's netpoller
// (doc.go, "Wakeups"): the waiting goroutine is parked like one reading a
// socket, with a runtime timer for its deadline, instead of blocking its
// thread in epoll_wait. A thread blocked in a system call keeps its P
// busy, so the runtime's sysmon thread keeps polling (every 20 µs at
// first, then backing off to 10 ms) and takes the P back after each wait:
// at one wait per poll interval that was most of the agent's idle CPU.
type ringWaiter struct {
	f  *os.File
	rc syscall.RawConn
}

// newRingWaiter registers a duplicate of m's descriptor with the
// netpoller. It fails where the netpoller cannot take the descriptor (no
// deadline support); the caller then blocks in the reader instead.
func newRingWaiter(m *ebpf.Map) (*ringWaiter, error) {
	fd, err := unix.FcntlInt(uintptr(m.FD()), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("dup ring buffer fd: %w", err)
	}
	// Non-blocking is what makes os.NewFile register the descriptor with
	// the netpoller; it changes nothing for the map's bpf() calls or the
	// reader's own epoll.
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("ring buffer fd non-blocking: %w", err)
	}
	f := os.NewFile(uintptr(fd), "ringbuf")
	if err := f.SetReadDeadline(time.Time{}); err != nil {
		f.Close()
		return nil, fmt.Errorf("ring buffer fd not in the netpoller: %w", err)
	}
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, err
	}
	return &ringWaiter{f: f, rc: rc}, nil
}

// wait returns once ready reports true, or at deadline
// (os.ErrDeadlineExceeded). ready is checked first and after every wakeup
// of the descriptor (the kernel's, when a record is submitted with one);
// a wakeup that comes between a check and the wait is not lost.
func (w *ringWaiter) wait(deadline time.Time, ready func() bool) error {
	if err := w.f.SetReadDeadline(deadline); err != nil {
		return err
	}
	return w.rc.Read(func(uintptr) bool { return ready() })
}

// interrupt makes a wait in progress, or the next one, return now, unless
// it sets a new deadline first: ready must then report true.
func (w *ringWaiter) interrupt() { _ = w.f.SetReadDeadline(time.Unix(1, 0)) }

func (w *ringWaiter) close() error { return w.f.Close() }
