//go:build unix && !linux

package k8stest

import (
	"os/exec"
	"syscall"
)

// killWithParent does nothing: only Linux has a parent-death signal, and
// the API server this package runs is built for Linux (make kube-apiserver).
func killWithParent(*syscall.SysProcAttr) {}

func startCmd(cmd *exec.Cmd) error { return cmd.Start() }
