package k8stest

import "syscall"

// killWithParent has the process killed when the test binary dies first.
func killWithParent(a *syscall.SysProcAttr) { a.Pdeathsig = syscall.SIGKILL }
