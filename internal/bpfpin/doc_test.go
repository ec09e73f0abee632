package bpfpin

import "testing"

func TestAgentDir(t *testing.T) {
	for node, want := range map[string]string{
		"node-1":   "/sys/fs/bpf/flowbus/node-1",
		"a/b":      "/sys/fs/bpf/flowbus/a_b",
		"..":       "/sys/fs/bpf/flowbus/_..",
		"":         "/sys/fs/bpf/flowbus/_",
		"kind.n-2": "/sys/fs/bpf/flowbus/kind.n-2",
	} {
		if got := AgentDir(node); got != want {
			t.Errorf("AgentDir(%q) = %q, want %q", node, got, want)
		}
	}
}
