//go:build unix && !linux

package k8stest

import "syscall"

// killWithParent does nothing: only Linux has a parent-death signal, and
// the API server this package runs is built for Linux (make kube-apiserver).
func killWithParent(*syscall.SysProcAttr) {}
