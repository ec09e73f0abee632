//go:build linux

package lab

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Traffic runs the clients of every pod of the lab for opt.Duration, each as
// a process inside its pod's namespace, printing the running totals every
// second on opt.Progress. It returns when the clients have stopped; when ctx
// is cancelled (an interrupt) it stops them (SIGTERM, then SIGKILL after
// 5 s) and returns what they counted with ctx's error. The clients also die
// with the calling process (parent-death signal).
func Traffic(ctx context.Context, cfg Config, opt TrafficOptions) (TrafficReport, error) {
	if err := cfg.Validate(); err != nil {
		return TrafficReport{}, err
	}
	if len(cfg.Self) == 0 {
		return TrafficReport{}, errors.New("config: Self (the command that runs the lab's clients) is required")
	}
	if err := checkRoot(); err != nil {
		return TrafficReport{}, err
	}
	if opt.Duration <= 0 {
		opt.Duration = 30 * time.Second
	}
	if opt.Rate <= 0 {
		opt.Rate = 10
	}
	plan, err := LoadPlan(cfg.StateDir)
	if err != nil {
		return TrafficReport{}, err
	}
	var (
		mu     sync.Mutex
		latest = map[string]clientReport{}
	)
	type child struct {
		pod    string
		cmd    *exec.Cmd
		stderr bytes.Buffer
	}
	type exit struct {
		c   *child
		err error
	}
	var children []*child
	exited := make(chan exit, len(plan.Topology.Pods))
	stopAll := func(sig syscall.Signal) {
		for _, c := range children {
			_ = c.cmd.Process.Signal(sig)
		}
	}
	var starts []error
	for _, ps := range plan.Topology.Pods {
		if len(ps.Clients) == 0 {
			continue
		}
		pp, _ := plan.Pod(ps.Name)
		args := append([]string{"netns", "exec", pp.NetNS}, cfg.Self...)
		args = append(args, "client", markerArg(plan.Prefix), "--state-dir="+cfg.StateDir, "--pod="+ps.Name,
			"--duration="+opt.Duration.String(), "--rate="+strconv.FormatFloat(opt.Rate, 'f', -1, 64),
			"--seed="+strconv.FormatUint(opt.Seed, 10))
		c := &child{pod: ps.Name, cmd: exec.Command("ip", args...)}
		c.cmd.Stderr = &c.stderr
		c.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		out, err := c.cmd.StdoutPipe()
		if err != nil {
			starts = append(starts, err)
			break
		}
		// Pdeathsig fires when the starting thread exits: start from a locked thread that lives as long as the child.
		started := make(chan error)
		go func() {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			if err := startInCgroup(c.cmd, pp.Cgroup); err != nil {
				started <- err
				return
			}
			started <- nil
			sc := bufio.NewScanner(out)
			sc.Buffer(make([]byte, 64<<10), 1<<20)
			for sc.Scan() {
				var r clientReport
				if json.Unmarshal(sc.Bytes(), &r) == nil {
					mu.Lock()
					latest[r.Pod] = r
					mu.Unlock()
				}
			}
			exited <- exit{c, c.cmd.Wait()}
		}()
		if err := <-started; err != nil {
			starts = append(starts, fmt.Errorf("pod %s: start client: %w", ps.Name, err))
			break
		}
		children = append(children, c)
	}
	collect := func() TrafficReport {
		mu.Lock()
		defer mu.Unlock()
		var r TrafficReport
		for _, ps := range plan.Topology.Pods {
			if cr, ok := latest[ps.Name]; ok {
				r.Edges = append(r.Edges, cr.Edges...)
			}
		}
		return r
	}
	if len(starts) > 0 {
		stopAll(syscall.SIGKILL)
		for range children {
			<-exited
		}
		return collect(), errors.Join(starts...)
	}
	start := time.Now()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var errs []error
	pending := len(children)
	var killTimer <-chan time.Time
	var ctxDone <-chan struct{} = ctx.Done()
	for pending > 0 {
		select {
		case <-tick.C:
			if opt.Progress != nil {
				t := collect().Total()
				fmt.Fprintf(opt.Progress, "%5.0fs  sent %7d  ok %7d  5xx %5d  reset %5d  timeout %5d  errors %5d  skipped %5d\n",
					time.Since(start).Seconds(), t.Sent, t.OK, t.Status5xx, t.Resets, t.Timeouts, t.Errors, t.Skipped)
			}
		case <-ctxDone:
			ctxDone = nil
			stopAll(syscall.SIGTERM)
			killTimer = time.After(5 * time.Second)
		case <-killTimer:
			stopAll(syscall.SIGKILL)
		case x := <-exited:
			pending--
			if x.err != nil && ctx.Err() == nil {
				errs = append(errs, fmt.Errorf("pod %s: client: %w: %s", x.c.pod, x.err, strings.TrimSpace(x.c.stderr.String())))
			}
		}
	}
	rep := collect()
	if ctx.Err() != nil {
		errs = append(errs, ctx.Err())
	}
	return rep, errors.Join(errs...)
}
