//go:build linux

package bpf

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// linkWatch tells whether the host's interfaces may have changed: it
// listens to rtnetlink's link group (RTMGRP_LINK), through which the
// kernel announces every interface added, removed, renamed or changed in
// the agent's network namespace. Listing the interfaces (a dump of every
// link, which the Collector used to do each SweepInterval) costs ~0.4 ms
// on a host with a few dozen veths; asking the watch is one recvfrom.
type linkWatch struct {
	fd  int
	buf []byte
}

func newLinkWatch() (*linkWatch, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("rtnetlink socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: unix.RTMGRP_LINK}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("rtnetlink link group: %w", err)
	}
	return &linkWatch{fd: fd, buf: make([]byte, 32<<10)}, nil
}

// changed reads every notification waiting and reports whether there was
// any, or whether some may have been lost (the socket overflowed, or any
// other error): then the interfaces must be listed again.
func (w *linkWatch) changed() bool {
	changed := false
	for {
		_, _, err := unix.Recvfrom(w.fd, w.buf, unix.MSG_DONTWAIT)
		switch {
		case err == nil:
			changed = true
		case errors.Is(err, unix.EAGAIN):
			return changed
		case errors.Is(err, unix.EINTR):
		default:
			return true
		}
	}
}

func (w *linkWatch) close() { unix.Close(w.fd) }
