//go:build unix

package flowtest

import (
	"syscall"
	"time"
)

// ThreadCPU is the CPU time of the calling OS thread (getrusage
// RUSAGE_THREAD, Linux; 0 elsewhere). The caller locks its goroutine to the
// thread (runtime.LockOSThread), so that two encodings measured in turn on
// it see the same machine state and each is charged only its own work.
func ThreadCPU() time.Duration {
	const rusageThread = 1 // RUSAGE_THREAD, which package syscall does not name
	var ru syscall.Rusage
	if err := syscall.Getrusage(rusageThread, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
