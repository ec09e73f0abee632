//go:build !linux

package lab

import (
	"context"
	"errors"
	"os/exec"
	"runtime"
	"strings"
	"testing"
)

func TestTheLabOutsideLinuxSaysItNeedsLinux(t *testing.T) {
	ctx, cfg := context.Background(), Config{}
	topo, err := DefaultTopology()
	if err != nil {
		t.Fatal(err)
	}
	_, up := Up(ctx, cfg, topo)
	_, down := Down(ctx, cfg)
	_, status := GetStatus(ctx, cfg)
	_, traffic := Traffic(ctx, cfg, TrafficOptions{})
	inNetNS := InNetNS("fb-x", func() error { return nil })
	inPod := StartInPod(&Plan{}, "x", exec.Command("true"))
	for name, err := range map[string]error{"Up": up, "Down": down, "GetStatus": status, "Traffic": traffic, "InNetNS": inNetNS, "StartInPod": inPod} {
		if !errors.Is(err, ErrNeedsLinux) || !strings.Contains(err.Error(), "this build is for "+runtime.GOOS) {
			t.Errorf("%s = %v, want ErrNeedsLinux naming %s", name, err, runtime.GOOS)
		}
	}
}
