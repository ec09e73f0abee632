//go:build !linux

package lab

import (
	"context"
	"fmt"
	"os/exec"
	"runtime"
)

func errNeedsLinux() error {
	return fmt.Errorf("the lab %w: this build is for %s", ErrNeedsLinux, runtime.GOOS)
}

// Up returns ErrNeedsLinux.
func Up(context.Context, Config, *Topology) (*Plan, error) { return nil, errNeedsLinux() }

// Down returns ErrNeedsLinux.
func Down(context.Context, Config) (Leftovers, error) { return Leftovers{}, errNeedsLinux() }

// GetStatus returns ErrNeedsLinux.
func GetStatus(context.Context, Config) (Status, error) { return Status{}, errNeedsLinux() }

// Traffic returns ErrNeedsLinux.
func Traffic(context.Context, Config, TrafficOptions) (TrafficReport, error) {
	return TrafficReport{}, errNeedsLinux()
}

// StartInPod returns ErrNeedsLinux.
func StartInPod(*Plan, string, *exec.Cmd) error { return errNeedsLinux() }

// CgroupName is the name of the lab's cgroup under the cgroup v2 root.
func CgroupName(prefix string) string { return "flowbus-lab-" + prefix }

// InNetNS returns ErrNeedsLinux.
func InNetNS(string, func() error) error { return errNeedsLinux() }
