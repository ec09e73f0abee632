//go:build !linux

package ebpf

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"testing"

	"github.com/flowbus/flowbus/bpf"
)

func TestNewOutsideLinuxSaysItNeedsLinux(t *testing.T) {
	s, err := New(Config{Kernel: bpf.Config{Interfaces: []string{"lxc*"}}}, nil, nil)
	if s != nil || !errors.Is(err, ErrNeedsLinux) || !strings.Contains(err.Error(), "this build is for "+runtime.GOOS) {
		t.Fatalf("New = %v, %v; want ErrNeedsLinux naming %s", s, err, runtime.GOOS)
	}
	if err := (&Source{}).Run(context.Background(), nil, nil); !errors.Is(err, ErrNeedsLinux) {
		t.Fatalf("Run = %v, want ErrNeedsLinux", err)
	}
}
