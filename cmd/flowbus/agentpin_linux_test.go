//go:build linux

package main

import (
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/flowbus/flowbus/bpf/inspect"
	"github.com/flowbus/flowbus/internal/bpfpin"
)

// TestLabAgentPinsItsMaps: the real agent, on the socket LB lab, replaces
// the pins a killed agent left in its --bpf-pin-dir, pins its flow,
// identity, policy and socket LB maps there, which flowbus bpf reads (the
// lab's services and backends, every pod's address in the ipcache under
// its pod's name, a pod's endpoint), and removes them at a clean stop.
func TestLabAgentPinsItsMaps(t *testing.T) {
	plan, _ := sockLBLab(t, "fbap", 213, "")
	root := t.TempDir()
	if out, err := exec.Command("mount", "-t", "bpf", "bpf", root).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a BPF filesystem: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", root).Run() })
	dir := filepath.Join(root, plan.Node)
	// A killed agent's pins: maps of another kind under two of the names.
	stale := map[string]*ebpf.Map{}
	for _, name := range []string{"flows4", "lb_services"} {
		m, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: 4, MaxEntries: 1})
		if err != nil {
			t.Fatal(err)
		}
		stale[name] = m
	}
	if err := bpfpin.Pin(dir, stale); err != nil {
		t.Fatal(err)
	}
	bpfpin.Close(stale)

	agent := startLabAgent(t, "--source", "ebpf", "--interfaces", "fbap[0-9]*h", "--endpoints", plan.EndpointsFile,
		"--node", plan.Node, "--bus", "stdout", "--observer-address", "", "--metrics-address", "",
		"--spool-dir", "off", "--data-dir", t.TempDir(), "--socket-lb", "--socket-lb-cgroup", plan.Cgroup, "--bpf-pin-dir", dir)

	addr := func(pod string, port uint16) string {
		p, ok := plan.Pod(pod)
		if !ok {
			t.Fatalf("no pod %s", pod)
		}
		return netip.AddrPortFrom(p.IPv4, port).String()
	}
	want := map[string][]string{
		"10.96.213.10:80/tcp": {addr("web-0", 8080), addr("web-1", 8080), addr("web-2", 8080)},
		"10.96.213.11:80/tcp": {},
		"10.96.213.53:53/udp": {addr("coredns", 53)},
	}
	var got map[string][]string
	waitFor(t, "the agent's services in its pinned maps", 20*time.Second, func() bool {
		code, out, _ := runCommand("bpf", "lb", "list", "-o", "json", "--bpf-pin-dir", root)
		if code != 0 {
			return false
		}
		got = map[string][]string{}
		for _, s := range decode[[]inspect.Service](t, out) {
			got[s.Frontend] = []string{}
			for _, b := range s.Backends {
				got[s.Frontend] = append(got[s.Frontend], b.Addr.String())
			}
			slices.Sort(got[s.Frontend])
		}
		return fmt.Sprint(got) == fmt.Sprint(want)
	})
	m, err := ebpf.LoadPinnedMap(filepath.Join(dir, "flows4"), &ebpf.LoadPinOptions{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	if info, err := m.Info(); err != nil || info.Type != ebpf.Hash || info.KeySize != 20 {
		t.Errorf("flows4 pinned is %v (%v), want the agent's hash of 20-byte keys", info, err)
	}
	m.Close()

	type row struct {
		inspect.IPEntry
		Pod string `json:"pod"`
	}
	rows := decode[[]row](t, flowbus(t, "bpf", "ipcache", "list", "-o", "json", "--bpf-pin-dir", root, "--endpoints", plan.EndpointsFile))
	for _, p := range plan.Pods {
		i := slices.IndexFunc(rows, func(r row) bool { return r.Prefix == netip.PrefixFrom(p.IPv4, 32) })
		if i < 0 || rows[i].Pod != p.Namespace+"/"+p.Name || rows[i].Identity < 256 {
			t.Errorf("ipcache: pod %s/%s (%s) in %+v", p.Namespace, p.Name, p.IPv4, rows)
		}
	}
	web, _ := plan.Pod("web-1")
	ep := decode[inspect.Endpoint](t, flowbus(t, "bpf", "policy", "get", "shop/web-1", "-o", "json", "--bpf-pin-dir", root,
		"--endpoints", plan.EndpointsFile))
	if ep.IfIndex != web.IfIndex || len(ep.Rules) != 0 || len(ep.Enforced) != 0 {
		t.Errorf("policy get shop/web-1: %+v, want ifindex %d, no rules (the lab has no policy), nothing enforced", ep, web.IfIndex)
	}

	agent.close(t)
	if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
		ents, _ := os.ReadDir(dir)
		t.Errorf("after a clean stop %s holds %v (%v)", dir, ents, err)
	}
}
