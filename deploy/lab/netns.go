//go:build linux

package lab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// netnsDir is where iproute2 keeps named network namespaces.
const netnsDir = "/run/netns"

// runIP runs the ip command (iproute2) and returns its error with the
// command line and what it printed, so a failure says which step broke.
func runIP(ctx context.Context, args ...string) error {
	cmd := exec.CommandContext(ctx, "ip", args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("ip %s: %w", strings.Join(args, " "), ctx.Err())
		}
		return fmt.Errorf("ip %s: %s: %w", strings.Join(args, " "), strings.TrimSpace(out.String()), err)
	}
	return nil
}

// setupPod creates the pod's network namespace and veth pair, addresses,
// routes and permanent neighbour entries on both sides (see doc.go).
func setupPod(ctx context.Context, p *PodPlan) error {
	ns := p.NetNS
	v4, v6 := p.IPv4.String(), p.IPv6.String()
	gw4, gw6 := GatewayIPv4.String(), GatewayIPv6.String()
	steps := [][]string{
		{"netns", "add", ns},
		{"link", "add", p.HostIf, "address", p.HostMAC, "type", "veth", "peer", "name", "eth0", "address", p.PodMAC, "netns", ns},
		// No IPv6 link-local addresses on either end: no DAD, router
		// solicitations or MLD for them, so the veths carry the pods'
		// traffic and (almost) nothing else. The static neighbours make
		// link-local addresses unnecessary.
		{"link", "set", p.HostIf, "addrgenmode", "none"},
		{"link", "set", p.HostIf, "up"},
		{"route", "add", v4 + "/32", "dev", p.HostIf},
		{"-6", "route", "add", v6 + "/128", "dev", p.HostIf},
		{"neigh", "replace", v4, "lladdr", p.PodMAC, "dev", p.HostIf, "nud", "permanent"},
		{"-6", "neigh", "replace", v6, "lladdr", p.PodMAC, "dev", p.HostIf, "nud", "permanent"},
		{"-n", ns, "link", "set", "lo", "up"},
		{"-n", ns, "link", "set", "eth0", "addrgenmode", "none"},
		{"-n", ns, "link", "set", "eth0", "up"},
		{"-n", ns, "addr", "add", v4 + "/32", "dev", "eth0"},
		{"-n", ns, "-6", "addr", "add", v6 + "/128", "dev", "eth0", "nodad"},
		{"-n", ns, "neigh", "replace", gw4, "lladdr", p.HostMAC, "dev", "eth0", "nud", "permanent"},
		{"-n", ns, "-6", "neigh", "replace", gw6, "lladdr", p.HostMAC, "dev", "eth0", "nud", "permanent"},
		{"-n", ns, "route", "add", gw4, "dev", "eth0", "scope", "link"},
		{"-n", ns, "route", "add", "default", "via", gw4, "dev", "eth0"},
		{"-n", ns, "-6", "route", "add", "default", "via", gw6, "dev", "eth0"},
	}
	for _, s := range steps {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("pod %s: %w", p.Name, err)
		}
		if err := runIP(ctx, s...); err != nil {
			if (s[0] == "route" || s[1] == "route") && strings.Contains(err.Error(), "File exists") {
				return fmt.Errorf("pod %s: %w (the host already routes this address: another lab or network uses it; pick other network ranges in the topology)", p.Name, err)
			}
			return fmt.Errorf("pod %s: %w", p.Name, err)
		}
	}
	idx, err := ifIndex(p.HostIf)
	if err != nil {
		return fmt.Errorf("pod %s: %w", p.Name, err)
	}
	p.IfIndex = idx
	return nil
}

func ifIndex(name string) (uint32, error) {
	b, err := os.ReadFile(filepath.Join("/sys/class/net", name, "ifindex"))
	if err != nil {
		return 0, fmt.Errorf("ifindex of %s: %w", name, err)
	}
	n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 32)
	if err != nil {
		return 0, fmt.Errorf("ifindex of %s: %w", name, err)
	}
	return uint32(n), nil
}

// enableForwarding turns on IPv4 and IPv6 forwarding in the host namespace;
// pod-to-pod traffic is routed by the host. It is left on by down (see doc.go).
func enableForwarding() error {
	for _, f := range []string{"/proc/sys/net/ipv4/ip_forward", "/proc/sys/net/ipv6/conf/all/forwarding"} {
		if err := os.WriteFile(f, []byte("1\n"), 0o644); err != nil {
			return fmt.Errorf("enable forwarding: %w", err)
		}
	}
	return nil
}

// findLeftovers lists everything on the host that belongs to prefix.
func findLeftovers(ctx context.Context, prefix string) (Leftovers, error) {
	var l Leftovers
	ents, err := os.ReadDir(netnsDir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return l, fmt.Errorf("list network namespaces: %w", err)
	}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), prefix+"-") {
			l.NetNS = append(l.NetNS, e.Name())
		}
	}
	linkRE := regexp.MustCompile(`^` + regexp.QuoteMeta(prefix) + `[0-9]+h$`)
	links, err := os.ReadDir("/sys/class/net")
	if err != nil {
		return l, fmt.Errorf("list links: %w", err)
	}
	for _, e := range links {
		if linkRE.MatchString(e.Name()) {
			l.Links = append(l.Links, e.Name())
		}
	}
	pids := map[int]bool{}
	marked, err := markedProcesses(prefix)
	if err != nil {
		return l, err
	}
	for _, pid := range marked {
		pids[pid] = true
	}
	for _, ns := range l.NetNS {
		out, err := exec.CommandContext(ctx, "ip", "netns", "pids", ns).Output()
		if err != nil {
			continue // a namespace that is going away has no pids to list
		}
		for _, f := range strings.Fields(string(out)) {
			if pid, err := strconv.Atoi(f); err == nil && pid != os.Getpid() {
				pids[pid] = true
			}
		}
	}
	cgroups, inCgroups, err := findCgroups(prefix)
	if err != nil {
		return l, err
	}
	l.Cgroups = cgroups
	for _, pid := range inCgroups {
		pids[pid] = true
	}
	for pid := range pids {
		l.Processes = append(l.Processes, pid)
	}
	sort.Ints(l.Processes)
	return l, nil
}

// markerArg is the argument every process the lab starts carries, so that
// down finds them after a crash even when no state file survived.
func markerArg(prefix string) string { return "--flowbus-lab=" + prefix }

// markedProcesses returns the live (not zombie) processes whose command line
// holds the marker of prefix.
func markedProcesses(prefix string) ([]int, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("list processes: %w", err)
	}
	marker := []byte(markerArg(prefix))
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue // exited meanwhile
		}
		for _, arg := range bytes.Split(cmdline, []byte{0}) {
			if bytes.Equal(arg, marker) {
				out = append(out, pid)
				break
			}
		}
	}
	return out, nil
}

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the command name, which is in parentheses and may hold spaces.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return false
	}
	return b[i+2] != 'Z' && b[i+2] != 'X'
}

// InNetNS runs fn on an OS thread inside the named network namespace (as
// `ip netns exec` would), so that every socket fn opens belongs to that pod:
// a test or a tool can make exact traffic from a pod without a process. fn
// must open its sockets on the calling goroutine (net.Dial does; an
// http.Client dials on other goroutines and does not). The thread never
// returns to the Go runtime's pool; it ends with fn.
func InNetNS(name string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // not unlocked: the thread dies with the goroutine
		f, err := os.Open(filepath.Join(netnsDir, name))
		if err != nil {
			errc <- fmt.Errorf("open netns %s: %w", name, err)
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("enter netns %s: %w", name, err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}
