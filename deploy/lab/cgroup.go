//go:build linux

package lab

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/flowbus/flowbus/internal/cgroupv2"
)

// CgroupName is the name of the lab's cgroup under the cgroup v2 root: the
// parent of its pods' cgroups, where an agent's socket load balancer is
// attached (--socket-lb-cgroup).
func CgroupName(prefix string) string { return "flowbus-lab-" + prefix }

// podCgroupName is a pod's cgroup under the lab's: "<namespace>_<name>",
// which the agent reads back as the pod (a Kubernetes name has no "_").
func podCgroupName(p *PodPlan) string { return p.Namespace + "_" + p.Name }

// setupCgroups makes the lab's cgroup and one per pod under it, and
// records them in the plan. Without a cgroup v2 hierarchy it makes none
// (the socket load balancer then has nothing to attach to) and says so.
func setupCgroups(cfg Config, plan *Plan) error {
	root, err := cgroupv2.Root()
	if errors.Is(err, cgroupv2.ErrNotMounted) {
		cfg.Log.Warn("no cgroup v2 hierarchy mounted: the pods get no cgroups of their own, and an agent's --socket-lb cannot be given the lab's")
		return nil
	}
	if err != nil {
		return err
	}
	plan.Cgroup = filepath.Join(root, CgroupName(plan.Prefix))
	if err := os.Mkdir(plan.Cgroup, 0o755); err != nil {
		return fmt.Errorf("lab cgroup: %w", err)
	}
	for i := range plan.Pods {
		p := &plan.Pods[i]
		p.Cgroup = filepath.Join(plan.Cgroup, podCgroupName(p))
		if err := os.Mkdir(p.Cgroup, 0o755); err != nil {
			return fmt.Errorf("pod %s: cgroup: %w", p.Name, err)
		}
	}
	return nil
}

// startInCgroup starts cmd inside the cgroup dir (none when dir is ""):
// the kernel clones it there (clone3 CLONE_INTO_CGROUP), so not one of its
// sockets is opened outside.
func startInCgroup(cmd *exec.Cmd, dir string) error {
	if dir == "" {
		return cmd.Start()
	}
	f, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("cgroup: %w", err)
	}
	defer f.Close()
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.UseCgroupFD, cmd.SysProcAttr.CgroupFD = true, int(f.Fd())
	return cmd.Start()
}

// StartInPod starts cmd inside pod's network namespace (through ip netns
// exec) and cgroup, as the lab's own processes run: a test or a tool makes
// a pod's traffic, which an agent's socket load balancer translates. The
// caller waits for cmd.
func StartInPod(plan *Plan, pod string, cmd *exec.Cmd) error {
	p, ok := plan.Pod(pod)
	if !ok {
		return fmt.Errorf("no pod %q in the lab", pod)
	}
	ip, err := exec.LookPath("ip")
	if err != nil {
		return err
	}
	cmd.Args = append([]string{"ip", "netns", "exec", p.NetNS, cmd.Path}, cmd.Args[1:]...)
	cmd.Path = ip
	cmd.Err = nil
	if err := startInCgroup(cmd, p.Cgroup); err != nil {
		return fmt.Errorf("pod %s: %w", pod, err)
	}
	return nil
}

// findCgroups lists the lab's cgroup directories, deepest first, and the
// processes in them.
func findCgroups(prefix string) (dirs []string, pids []int, err error) {
	root, err := cgroupv2.Root()
	if errors.Is(err, cgroupv2.ErrNotMounted) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	top := filepath.Join(root, CgroupName(prefix))
	werr := filepath.WalkDir(top, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if !d.IsDir() {
			return nil
		}
		dirs = append(dirs, path)
		f, err := os.Open(filepath.Join(path, "cgroup.procs"))
		if err != nil {
			return nil // going away
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if pid, err := strconv.Atoi(strings.TrimSpace(sc.Text())); err == nil && pid != os.Getpid() {
				pids = append(pids, pid)
			}
		}
		return nil
	})
	if werr != nil {
		return nil, nil, fmt.Errorf("list the lab's cgroups: %w", werr)
	}
	slices.Reverse(dirs) // WalkDir lists a directory before its children
	return dirs, pids, nil
}

// removeCgroups removes the lab's cgroups, children first; their
// processes must have exited.
func removeCgroups(dirs []string) error {
	var errs []error
	for _, d := range dirs {
		if err := os.Remove(d); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("remove cgroup: %w", err))
		}
	}
	return errors.Join(errs...)
}
