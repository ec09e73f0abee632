//go:build linux

package lab

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/flowbus/flowbus/agent/endpoints"
)

func checkRoot() error {
	if os.Geteuid() != 0 {
		return ErrNotRoot
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return fmt.Errorf("the lab needs iproute2's ip command: %w", err)
	}
	return nil
}

// Up creates the lab of topology t: one network namespace and veth pair per
// pod, addresses and routes, forwarding on the host, a server process in
// every pod that has servers; it waits until every server listens, then
// writes the endpoints file and lab.json into the state directory.
//
// Up refuses to start when anything with the prefix already exists. If it
// fails or ctx is cancelled (an interrupt), it removes everything it made
// before returning the error. The server processes outlive the caller;
// Down ends them.
func Up(ctx context.Context, cfg Config, t *Topology) (plan *Plan, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if len(cfg.Self) == 0 {
		return nil, errors.New("config: Self (the command that runs the lab's servers) is required")
	}
	if err := checkRoot(); err != nil {
		return nil, err
	}
	plan, err = NewPlan(t, cfg.Prefix, cfg.Node)
	if err != nil {
		return nil, err
	}
	plan.EndpointsFile = cfg.EndpointsFile
	if len(t.Policies) > 0 {
		plan.PoliciesFile = filepath.Join(cfg.StateDir, policiesFile)
	}
	left, err := findLeftovers(ctx, cfg.Prefix)
	if err != nil {
		return nil, err
	}
	if !left.Empty() {
		return nil, fmt.Errorf("a lab with prefix %q already exists (%s); run 'flowbus lab down --prefix %s' first", cfg.Prefix, left, cfg.Prefix)
	}
	if old, err := LoadPlan(cfg.StateDir); err == nil {
		return nil, fmt.Errorf("state dir %s already holds a lab (prefix %q); run 'flowbus lab down --data-dir %s' first", cfg.StateDir, old.Prefix, cfg.StateDir)
	}
	for _, d := range []string{cfg.StateDir, filepath.Join(cfg.StateDir, logDir), filepath.Join(cfg.StateDir, readyDir)} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("state dir: %w", err)
		}
	}
	defer func() {
		if err == nil {
			return
		}
		cctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, derr := Down(cctx, cfg); derr != nil {
			err = errors.Join(err, fmt.Errorf("clean up after failed up: %w", derr))
		}
	}()
	// Saved first, so that down finds the lab's prefix even if up dies here.
	if err := savePlan(cfg.StateDir, plan); err != nil {
		return nil, err
	}
	if err := enableForwarding(); err != nil {
		return nil, err
	}
	for i := range plan.Pods {
		if err := setupPod(ctx, &plan.Pods[i]); err != nil {
			return nil, err
		}
		cfg.Log.Debug("pod created", "pod", plan.Pods[i].Name, "netns", plan.Pods[i].NetNS, "veth", plan.Pods[i].HostIf)
	}
	if err := setupCgroups(cfg, plan); err != nil {
		return nil, err
	}
	if err := savePlan(cfg.StateDir, plan); err != nil {
		return nil, err
	}
	exited := make(chan string, len(plan.Pods))
	for i := range plan.Pods {
		p := &plan.Pods[i]
		spec, _ := plan.Spec(p.Name)
		if len(spec.Servers) == 0 {
			continue
		}
		pid, err := startServer(cfg, p, exited)
		if err != nil {
			return nil, err
		}
		p.PID = pid
	}
	if err := savePlan(cfg.StateDir, plan); err != nil {
		return nil, err
	}
	if err := waitReady(ctx, cfg, plan, exited); err != nil {
		return nil, err
	}
	if err := waitQuiet(ctx, plan, quietFor, quietMax); err != nil {
		return nil, err
	}
	if err := endpoints.Write(cfg.EndpointsFile, plan.Endpoints()); err != nil {
		return nil, err
	}
	if plan.PoliciesFile != "" {
		b, err := t.PoliciesYAML()
		if err != nil {
			return nil, err
		}
		if err := writeFileAtomic(plan.PoliciesFile, b); err != nil {
			return nil, err
		}
	}
	if cfg.Kubeconfig != "" {
		cs, err := kubeClient(cfg.Kubeconfig)
		if err != nil {
			return nil, err
		}
		// Saved first, so that down unregisters what a failed register made.
		plan.Kubeconfig = cfg.Kubeconfig
		if err := savePlan(cfg.StateDir, plan); err != nil {
			return nil, err
		}
		if err := RegisterKubernetes(ctx, cs, plan); err != nil {
			return nil, err
		}
	}
	return plan, nil
}

// How long the veths must carry nothing before Up returns, and the longest
// Up waits for that.
const quietFor, quietMax = 1500 * time.Millisecond, 15 * time.Second

// waitQuiet waits until no pod's host-side veth has sent or received a
// packet for quiet: an interface coming up sends a few MLD reports (the host
// side joins the all-routers group, the pod side its address's
// solicited-node group) within about a second, and a lab that returns after
// them carries nothing but its traffic from then on.
func waitQuiet(ctx context.Context, plan *Plan, quiet, limit time.Duration) error {
	counts := func() (string, error) {
		var b strings.Builder
		for _, p := range plan.Pods {
			for _, f := range []string{"rx_packets", "tx_packets"} {
				v, err := os.ReadFile(filepath.Join("/sys/class/net", p.HostIf, "statistics", f))
				if err != nil {
					return "", fmt.Errorf("pod %s: %w", p.Name, err)
				}
				b.Write(v)
			}
		}
		return b.String(), nil
	}
	last, err := counts()
	if err != nil {
		return err
	}
	start, since := time.Now(), time.Now()
	for time.Since(since) < quiet {
		if time.Since(start) > limit {
			return fmt.Errorf("the lab's veths still carry packets after %v with no traffic started", limit)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		now, err := counts()
		if err != nil {
			return err
		}
		if now != last {
			last, since = now, time.Now()
		}
	}
	return nil
}

// startServer starts the pod's server process in its namespace, detached
// (own session, output to logs/<pod>.log). A goroutine reaps it when it
// exits, and reports the exit on exited.
func startServer(cfg Config, p *PodPlan, exited chan<- string) (int, error) {
	logf, err := os.OpenFile(filepath.Join(cfg.StateDir, logDir, p.Name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return 0, fmt.Errorf("pod %s: server log: %w", p.Name, err)
	}
	defer logf.Close()
	args := append([]string{"netns", "exec", p.NetNS}, cfg.Self...)
	args = append(args, "serve", markerArg(cfg.Prefix), "--state-dir="+cfg.StateDir, "--pod="+p.Name)
	cmd := exec.Command("ip", args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := startInCgroup(cmd, p.Cgroup); err != nil {
		return 0, fmt.Errorf("pod %s: start server: %w", p.Name, err)
	}
	go func() {
		_ = cmd.Wait()
		exited <- p.Name
	}()
	return cmd.Process.Pid, nil
}

// waitReady waits until every pod with servers has written its ready file.
func waitReady(ctx context.Context, cfg Config, plan *Plan, exited <-chan string) error {
	deadline := time.NewTimer(cfg.ReadyTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		waiting := ""
		for _, p := range plan.Pods {
			if p.PID == 0 {
				continue
			}
			if _, err := os.Stat(filepath.Join(cfg.StateDir, readyDir, p.Name)); err != nil {
				waiting = p.Name
				break
			}
		}
		if waiting == "" {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for servers: %w", ctx.Err())
		case name := <-exited:
			return fmt.Errorf("pod %s: server exited before it was ready; see %s", name, filepath.Join(cfg.StateDir, logDir, name+".log"))
		case <-deadline.C:
			return fmt.Errorf("pod %s: server not ready after %s; see %s", waiting, cfg.ReadyTimeout, filepath.Join(cfg.StateDir, logDir, waiting+".log"))
		case <-tick.C:
		}
	}
}

// Down removes everything of the lab: its processes (SIGTERM, then SIGKILL
// after 3 s), host veths (which takes the pod ends with them), network
// namespaces, and the files it wrote in the state directory (the directory
// itself too when nothing else is in it). It finds them by prefix on the
// host, not only from the state files, so it also cleans up after a crash.
// The prefix is the one saved in the state directory when there is one,
// else cfg.Prefix. Down is idempotent: with nothing left it does nothing and
// returns an empty Leftovers.
func Down(ctx context.Context, cfg Config) (Leftovers, error) {
	if err := cfg.Validate(); err != nil {
		return Leftovers{}, err
	}
	if err := checkRoot(); err != nil {
		return Leftovers{}, err
	}
	var extra []string // state written outside the state directory
	var errs []error
	if plan, err := LoadPlan(cfg.StateDir); err == nil {
		cfg.Prefix = plan.Prefix
		if plan.Kubeconfig != "" {
			cs, err := kubeClient(plan.Kubeconfig)
			if err == nil {
				err = UnregisterKubernetes(ctx, cs, plan)
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("kubernetes (%s): %w", plan.Kubeconfig, err))
			}
		}
		if plan.EndpointsFile != "" && filepath.Clean(plan.EndpointsFile) != EndpointsPath(cfg.StateDir) {
			extra = append(extra, plan.EndpointsFile, plan.EndpointsFile+".tmp")
		}
	}
	left, err := findLeftovers(ctx, cfg.Prefix)
	if err != nil {
		return left, err
	}
	if err := killAll(ctx, left.Processes); err != nil {
		errs = append(errs, err)
	}
	for _, l := range left.Links {
		if err := runIP(ctx, "link", "del", l); err != nil {
			if _, serr := os.Stat(filepath.Join("/sys/class/net", l)); serr == nil {
				errs = append(errs, err)
			}
		}
	}
	for _, ns := range left.NetNS {
		if err := runIP(ctx, "netns", "del", ns); err != nil {
			if _, serr := os.Stat(filepath.Join(netnsDir, ns)); serr == nil {
				errs = append(errs, err)
			}
		}
	}
	if err := removeCgroups(left.Cgroups); err != nil {
		errs = append(errs, err)
	}
	files, err := removeState(cfg.StateDir, extra)
	if err != nil {
		errs = append(errs, err)
	}
	left.Files = files
	// Anything still there (a process that would not die, a namespace held
	// open) is an error a person must see.
	still, err := findLeftovers(ctx, cfg.Prefix)
	if err != nil {
		errs = append(errs, err)
	} else if !still.Empty() {
		errs = append(errs, fmt.Errorf("still present after down: %s", still))
	}
	return left, errors.Join(errs...)
}

func killAll(ctx context.Context, pids []int) error {
	for _, pid := range pids {
		_ = syscall.Kill(pid, syscall.SIGTERM)
	}
	waitGone := func(d time.Duration) []int {
		deadline := time.Now().Add(d)
		for {
			var left []int
			for _, pid := range pids {
				if alive(pid) {
					left = append(left, pid)
				}
			}
			if len(left) == 0 || time.Now().After(deadline) || ctx.Err() != nil {
				return left
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	left := waitGone(3 * time.Second)
	for _, pid := range left {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	if left = waitGone(2 * time.Second); len(left) > 0 {
		return fmt.Errorf("processes %v did not exit after SIGKILL", left)
	}
	return nil
}

// removeState removes the files the lab writes in dir and the extra files
// it wrote elsewhere, then the lab's subdirectories and dir itself if they
// are empty. It returns the paths it removed.
func removeState(dir string, extra []string) ([]string, error) {
	var errs []error
	var removed []string
	rm := func(p string) {
		err := os.Remove(p)
		switch {
		case err == nil:
			removed = append(removed, p)
		case !errors.Is(err, fs.ErrNotExist):
			errs = append(errs, fmt.Errorf("remove state: %w", err))
		}
	}
	for _, f := range extra {
		rm(f)
	}
	for _, f := range []string{planFile, planFile + ".tmp", endpointsFile, endpointsFile + ".tmp", policiesFile, policiesFile + ".tmp"} {
		rm(filepath.Join(dir, f))
	}
	for _, sub := range []string{logDir, readyDir, truthDir} {
		ents, _ := os.ReadDir(filepath.Join(dir, sub))
		for _, e := range ents {
			rm(filepath.Join(dir, sub, e.Name()))
		}
		rm(filepath.Join(dir, sub))
	}
	if ents, err := os.ReadDir(dir); err == nil && len(ents) == 0 {
		rm(dir)
	}
	return removed, errors.Join(errs...)
}

// GetStatus lists what exists on the host under the lab's prefix (the saved
// one when the state directory holds a lab, else cfg.Prefix).
func GetStatus(ctx context.Context, cfg Config) (Status, error) {
	if err := cfg.Validate(); err != nil {
		return Status{}, err
	}
	st := Status{Prefix: cfg.Prefix}
	if plan, err := LoadPlan(cfg.StateDir); err == nil {
		st.Plan, st.Prefix = plan, plan.Prefix
	} else if !errors.Is(err, ErrNoLab) {
		return st, err
	}
	left, err := findLeftovers(ctx, st.Prefix)
	st.Leftovers = left
	return st, err
}
