package ebpf

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// SockLBConfig turns on socket-layer service load balancing (doc.go,
// "Socket load balancing"): bpf/socklb's cgroup programs attached to
// Cgroup translate the cluster's ClusterIP:port to a ready backend at
// connect() and sendmsg(), and their decisions become TRANSLATED (or, for
// a service without backends, DROPPED) records.
type SockLBConfig struct {
	// Cgroup is the cgroup v2 directory the programs are attached to:
	// every process in it or below is load balanced. "" is the cgroup v2
	// root (CgroupV2Root).
	Cgroup string
	// Algorithm picks a backend: "random" (the default) or "maglev".
	Algorithm string
}

// Validate reports a setting that cannot work.
func (c *SockLBConfig) Validate() error {
	switch c.Algorithm {
	case "", "random", "maglev":
	default:
		return fmt.Errorf("socket LB algorithm %q: want random or maglev", c.Algorithm)
	}
	return nil
}

// ErrNoCgroup2 is what CgroupV2Root returns when no cgroup v2 hierarchy is
// mounted.
var ErrNoCgroup2 = errors.New("no cgroup v2 hierarchy mounted")

// CgroupV2Root returns where the cgroup v2 hierarchy is mounted, from
// /proc/self/mountinfo: /sys/fs/cgroup on a unified system, often
// /sys/fs/cgroup/unified on a hybrid one.
func CgroupV2Root() (string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", fmt.Errorf("find the cgroup v2 mount: %w", err)
	}
	defer f.Close()
	return cgroup2Mount(f)
}

// cgroup2Mount returns the first cgroup2 mount point of a mountinfo table
// (proc(5): the fifth field is the mount point, the first after " - " the
// file system type).
func cgroup2Mount(r io.Reader) (string, error) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		pre, post, ok := strings.Cut(line, " - ")
		if !ok {
			continue
		}
		f, g := strings.Fields(pre), strings.Fields(post)
		if len(f) < 5 || len(g) < 1 || g[0] != "cgroup2" {
			continue
		}
		return unescapeMount(f[4]), nil
	}
	if err := sc.Err(); err != nil {
		return "", fmt.Errorf("read mountinfo: %w", err)
	}
	return "", ErrNoCgroup2
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			var v int
			if _, err := fmt.Sscanf(s[i+1:i+4], "%03o", &v); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
