package main

import (
	"os"

	"golang.org/x/sys/unix"
)

// lockPriv takes the privileged lock as flock(1) does (an exclusive flock
// on the file), so that the time spent waiting for it is not counted in a
// group's time; unlock releases it.
func lockPriv() (unlock func(), err error) {
	f, err := os.OpenFile(privLock, os.O_RDWR|os.O_CREATE, 0o666)
	if err != nil {
		return nil, err
	}
	for {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return func() { f.Close() }, nil
}
