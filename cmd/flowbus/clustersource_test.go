package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/flowbus/flowbus/agent/cluster"
	"github.com/flowbus/flowbus/agent/endpoints"
	"github.com/flowbus/flowbus/internal/k8stest"
)

// buildAgent builds `flowbus agent` with args on a quiet synthetic source
// and bus, and runs it until the test ends.
func buildAgent(t *testing.T, args ...string) (*agentRuntime, error) {
	t.Helper()
	fs, f := newAgentFlags(cmdIO{Stdout: io.Discard, Stderr: io.Discard})
	base := []string{"--source", "synthetic", "--rate", "1", "--bus", "stdout", "--observer-address", "", "--metrics-address", "",
		"--data-dir", t.TempDir()}
	if err := parseFlags(fs, append(base, args...)); err != nil {
		t.Fatal(err)
	}
	rt, err := f.build(cmdIO{Stdout: io.Discard, Stderr: io.Discard, Log: slog.New(slog.DiscardHandler)}, false, "")
	if err != nil {
		return nil, err
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- rt.run(ctx) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("agent: %v", err)
		}
		rt.close()
	})
	return rt, nil
}

func firstSnapshot(t *testing.T, st *cluster.Store) *cluster.Snapshot {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := st.Wait(ctx, 0)
	if err != nil {
		t.Fatalf("no cluster snapshot in a minute: %v", err)
	}
	return s
}

func TestAgentPublishesTheEndpointsAndPoliciesFiles(t *testing.T) {
	dir := t.TempDir()
	eps, pols := filepath.Join(dir, "endpoints.yaml"), filepath.Join(dir, "policies.yaml")
	err := endpoints.Write(eps, &endpoints.File{Node: "n", Pods: []endpoints.Pod{{Namespace: "chat", Name: "relay",
		Labels: []string{"k8s:app=relay"}, IPs: []netip.Addr{netip.MustParseAddr("10.200.0.2")}, Node: "n"}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pols, []byte("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: deny, namespace: chat}\nspec: {podSelector: {}}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	rt, err := buildAgent(t, "--endpoints", eps, "--policies", pols)
	if err != nil {
		t.Fatal(err)
	}
	s := firstSnapshot(t, rt.cluster)
	if s.Source != "endpoints-file" || len(s.Pods) != 1 || s.Pods[0].Labels["app"] != "relay" || len(s.NetworkPolicies) != 1 || s.NetworkPolicies[0].Name != "deny" {
		t.Fatalf("snapshot %+v", s)
	}
}

func TestAgentPublishesTheAPIServersPods(t *testing.T) {
	c := k8stest.Start(t, k8stest.Options{})
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "relay", Labels: map[string]string{"app": "relay"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "none"}}}}
	if _, err := c.Client().CoreV1().Pods("default").Create(context.Background(), pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	rt, err := buildAgent(t, "--endpoints-source", "kubernetes", "--kubeconfig", c.Kubeconfig(k8stest.AdminUser))
	if err != nil {
		t.Fatal(err)
	}
	s := firstSnapshot(t, rt.cluster)
	if s.Source != "kubernetes" || len(s.Pods) != 1 || s.Pods[0].Name != "relay" || s.Pods[0].Workload != "relay" {
		t.Fatalf("snapshot %+v", s)
	}
}

func TestAgentClusterSourceFlagsRejectNonsense(t *testing.T) {
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"an unknown source", []string{"--endpoints-source", "etcd"}, `usage: --endpoints-source "etcd": want file or kubernetes`},
		{"policies without endpoints", []string{"--policies", "p.yaml"}, "usage: --policies needs --endpoints"},
		{"a missing kubeconfig", []string{"--endpoints-source", "kubernetes", "--kubeconfig", "/nonexistent/kubeconfig"},
			"kubeconfig /nonexistent/kubeconfig: stat /nonexistent/kubeconfig: no such file or directory"},
	} {
		t.Run(c.name+" is an error", func(t *testing.T) {
			_, err := buildAgent(t, c.args...)
			if err == nil || err.Error() != c.want {
				t.Fatalf("error %v, want %q", err, c.want)
			}
		})
	}
}
