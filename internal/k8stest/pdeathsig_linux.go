package k8stest

import (
	"os/exec"
	"runtime"
	"sync"
	"syscall"
)

// killWithParent has the process killed when the test binary dies first.
func killWithParent(a *syscall.SysProcAttr) { a.Pdeathsig = syscall.SIGKILL }

// The parent-death signal fires when the thread that started the process
// exits, not the process: a Go thread ends when a goroutine locked to it
// exits locked, as every test that enters a network namespace does. So the
// processes are started from one thread that never exits: a goroutine
// locked to it for the life of the test binary.
var (
	spawnOnce sync.Once
	spawnReq  chan spawn
)

type spawn struct {
	cmd  *exec.Cmd
	done chan error
}

// startCmd starts cmd from the spawner thread.
func startCmd(cmd *exec.Cmd) error {
	spawnOnce.Do(func() {
		spawnReq = make(chan spawn)
		go func() {
			runtime.LockOSThread() // never unlocked: the thread lives as long as the binary
			for r := range spawnReq {
				r.done <- r.cmd.Start()
			}
		}()
	})
	s := spawn{cmd: cmd, done: make(chan error, 1)}
	spawnReq <- s
	return <-s.done
}
