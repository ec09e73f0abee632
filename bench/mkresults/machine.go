package main

import (
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// Machine is what the header says about where and when the run was.
type Machine struct {
	CPU, Kernel, Go, Commit, Host string
	Cores                         int
	RAM                           string
	Start, End                    time.Time
	Took, LockWait                time.Duration
	LoadBefore, LoadAfter         string
	SpeedBefore, SpeedAfter       float64 // refSpeed, MB/s
	Root                          bool
}

func machine() *Machine {
	m := &Machine{Cores: runtime.NumCPU(), Start: time.Now(), LoadBefore: loadavg(), SpeedBefore: refSpeed(), Root: os.Geteuid() == 0}
	m.Host, _ = os.Hostname()
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "MemTotal:"); ok {
				kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
				m.RAM = fmt.Sprintf("%.1f GiB", kb/(1<<20))
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = "Linux " + strings.TrimSpace(string(b))
	} else {
		m.Kernel = runtime.GOOS
	}
	m.Go = strings.TrimPrefix(output("go", "version"), "go version ")
	m.Commit = output("git", "rev-parse", "--short", "HEAD")
	if s := output("git", "log", "-1", "--format=%cd", "--date=iso-strict"); s != "" {
		m.Commit += " (committed " + s + ")"
	}
	if output("git", "status", "--porcelain", "--untracked-files=no") != "" {
		m.Commit += ", with uncommitted changes"
	}
	return m
}

func output(name string, args ...string) string {
	out, err := exec.Command(name, args...).Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}

// refSpeed is the machine's speed now: MB/s of SHA-256 over 64 KiB blocks
// on one goroutine for 100 ms of wall time. On a shared VM the same work
// can take twice as long from one quarter-hour to the next. It sees the
// core's arithmetic only: memory- and kernel-bound work can slow while it
// holds (bench/HISTORY.md).
func refSpeed() float64 {
	buf := make([]byte, 64<<10)
	for i := range buf {
		buf[i] = byte(i * 7)
	}
	start := time.Now()
	n := 0
	for time.Since(start) < 100*time.Millisecond {
		sum := sha256.Sum256(buf)
		buf[0] = sum[0]
		n++
	}
	return float64(n*len(buf)) / time.Since(start).Seconds() / 1e6
}

// loadavg is the 1, 5 and 15 minute load averages.
func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}
