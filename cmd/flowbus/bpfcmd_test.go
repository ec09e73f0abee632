package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flowbus/flowbus/bpf/inspect"
)

// agentDir finds one agent's maps: the directory itself, the one node
// directory under it, or --node's; several nodes without --node is a usage
// error naming them, none is the error that asks for --bpf-pin-dir.
func TestAgentDir(t *testing.T) {
	root := t.TempDir()
	agent := func(node string) string {
		d := filepath.Join(root, node)
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "flows4"), nil, 0o600); err != nil {
			t.Fatal(err)
		}
		return d
	}
	noMaps := fmt.Sprintf("no agent maps at %s: is the agent running with the eBPF source and --bpf-pin-dir (by default /sys/fs/bpf/flowbus/<node>)?", root)
	if _, _, err := agentDir(&bpfFlags{pinDir: root}); err == nil || err.Error() != noMaps {
		t.Errorf("empty: %v", err)
	}
	a := agent("node-a")
	for _, c := range []struct {
		f                 bpfFlags
		wantDir, wantNode string
		wantErr           string
	}{
		{f: bpfFlags{pinDir: root}, wantDir: a, wantNode: "node-a"},
		{f: bpfFlags{pinDir: a}, wantDir: a, wantNode: "node-a"},
		{f: bpfFlags{pinDir: root, node: "node-a"}, wantDir: a, wantNode: "node-a"},
		{f: bpfFlags{pinDir: root, node: "node-b"},
			wantErr: fmt.Sprintf("no agent maps for node node-b at %s/node-b: is the agent of that node running with --bpf-pin-dir?", root)},
		{f: bpfFlags{pinDir: filepath.Join(root, "nothing")},
			wantErr: fmt.Sprintf("no agent maps at %s/nothing: is the agent running with the eBPF source and --bpf-pin-dir (by default /sys/fs/bpf/flowbus/<node>)?", root)},
	} {
		dir, node, err := agentDir(&c.f)
		if c.wantErr != "" {
			if err == nil || err.Error() != c.wantErr {
				t.Errorf("%+v: error %v, want %q", c.f, err, c.wantErr)
			}
			continue
		}
		if err != nil || dir != c.wantDir || node != c.wantNode {
			t.Errorf("%+v: %q %q %v, want %q %q", c.f, dir, node, err, c.wantDir, c.wantNode)
		}
	}
	agent("node-b")
	_, _, err := agentDir(&bpfFlags{pinDir: root})
	if want := fmt.Sprintf("usage: agents of 2 nodes pinned maps under %s (node-a, node-b): pick one with --node", root); err == nil || err.Error() != want {
		t.Errorf("two nodes: %v, want %q", err, want)
	}
}

func TestFindEndpoint(t *testing.T) {
	eps := []inspect.Endpoint{{ID: 11, IfIndex: 7}, {ID: 12, IfIndex: 11}}
	for arg, want := range map[string]uint32{"11": 11, "12": 12, "7": 11} {
		e, err := findEndpoint(eps, arg, nil)
		if err != nil || e.ID != want {
			t.Errorf("%s: endpoint %d, %v; want %d", arg, e.ID, err, want)
		}
	}
	for arg, want := range map[string]string{
		"99":           "no endpoint with id or ifindex 99; endpoints: 11 (ifindex 7), 12 (ifindex 11)",
		"shop/web-0":   "usage: a pod (shop/web-0) needs --endpoints, the agent's endpoints file",
		"no-such-if0x": `"no-such-if0x" is no endpoint id, ifindex, interface or namespace/pod: `, // then the system's words
	} {
		if _, err := findEndpoint(eps, arg, nil); err == nil || err.Error() != want && !(strings.HasSuffix(want, ": ") && strings.HasPrefix(err.Error(), want)) {
			t.Errorf("%s: %v, want %q", arg, err, want)
		}
	}
}

var t0Audit = mustTime("2026-12-06T12:00:00Z")

// flowbus audit diff on files it cannot read says which and why, exit 1.
func TestAuditDiffBadFiles(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.json")
	if err := inspect.WriteFile(good, &inspect.Snapshot{Kind: inspect.Kind, Version: inspect.Version, Time: t0Audit, Node: "n"}); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(good)
	cut := filepath.Join(dir, "cut.json")
	os.WriteFile(cut, data[:len(data)/2], 0o600)
	old := filepath.Join(dir, "v0.json")
	os.WriteFile(old, []byte(strings.Replace(string(data), `"version": 1`, `"version": 0`, 1)), 0o600)
	for file, want := range map[string]string{
		cut:                             "flowbus audit diff: " + cut + ": truncated snapshot (the file ends inside the document): unexpected end of JSON input\n",
		old:                             "flowbus audit diff: " + old + ": snapshot version 0: this flowbus reads version 1\n",
		filepath.Join(dir, "none.json"): "flowbus audit diff: open " + filepath.Join(dir, "none.json") + ": no such file or directory\n",
	} {
		code, out, errOut := runCommand("audit", "diff", good, file)
		if code != 1 || out != "" || errOut != want {
			t.Errorf("diff with %s: exit %d, stdout %q, stderr %q; want 1, %q", filepath.Base(file), code, out, errOut, want)
		}
	}
	code, out, _ := runCommand("audit", "diff", good, good)
	if want := "From 2026-12-06T12:00:00Z to 2026-12-06T12:00:00Z on node n:\nNothing changed.\n"; code != 0 || out != want {
		t.Errorf("same file: exit %d, %q", code, out)
	}
}

func mustTime(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}
