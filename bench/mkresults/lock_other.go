//go:build !linux

package main

import "errors"

// lockPriv: the privileged groups (eBPF, the lab) need Linux.
func lockPriv() (unlock func(), err error) {
	return nil, errors.New("the privileged groups need Linux")
}
