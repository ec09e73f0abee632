//go:build linux

package lab

import (
	"context"
	"log/slog"
	"net/netip"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/flowbus/flowbus/agent/cluster"
	"github.com/flowbus/flowbus/agent/cluster/k8s"
	"github.com/flowbus/flowbus/internal/k8stest"
)

// TestRegisterKubernetesIsWhatTheAgentsSourceReads registers the payments
// lab's plan in a real API server and reads it back through the agent's
// Kubernetes source: every pod on the lab's node with its addresses,
// labels, named ports and its workload resolved through the owner
// references, and every service with its backends; unregistering removes
// it all, including its objects in kube-system, which stays.
func TestRegisterKubernetesIsWhatTheAgentsSourceReads(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: starts etcd and kube-apiserver")
	}
	c := k8stest.Start(t, k8stest.Options{})
	plan, err := NewPlan(testTopology(t, 209), "fbkr", "")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	cs := c.Client()
	if err := RegisterKubernetes(ctx, cs, plan); err != nil {
		t.Fatal(err)
	}
	if err := RegisterKubernetes(ctx, cs, plan); err == nil {
		t.Fatal("a second registration of the same lab succeeded; want an error")
	}

	store := cluster.NewStore()
	cfg := k8s.Config{Store: store}
	if err := cfg.NewClients(c.Config()); err != nil {
		t.Fatal(err)
	}
	src, err := k8s.New(cfg, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- src.Run(sctx) }()
	defer func() { cancel(); <-done }()
	wctx, wcancel := context.WithTimeout(ctx, 60*time.Second)
	defer wcancel()
	var snap *cluster.Snapshot
	for snap == nil || len(snap.Pods) < len(plan.Pods) || len(snap.Services) < len(plan.Topology.Services) || len(snap.NetworkPolicies) < 2 {
		var rev uint64
		if snap != nil {
			rev = snap.Revision
		}
		if snap, err = store.Wait(wctx, rev); err != nil {
			t.Fatalf("the source did not see the lab: %v (last %+v)", err, snap)
		}
	}

	pods := map[string]cluster.Pod{}
	for _, p := range snap.Pods {
		pods[p.Namespace+"/"+p.Name] = p
	}
	for i, pp := range plan.Pods {
		ps := plan.Topology.Pods[i]
		got, ok := pods[pp.Namespace+"/"+pp.Name]
		if !ok {
			t.Errorf("pod %s/%s not in the snapshot", pp.Namespace, pp.Name)
			continue
		}
		if got.Workload != ps.Workload || got.WorkloadKind != ps.Kind || got.Node != plan.Node ||
			!slices.Equal(got.IPs, []netip.Addr{pp.IPv4, pp.IPv6}) || !reflect.DeepEqual(got.Labels, ps.Labels) {
			t.Errorf("pod %s: %s %s on %q, %v, %v; want %s %s on %q, %v %v, %v", pp.Name, got.WorkloadKind, got.Workload, got.Node, got.IPs, got.Labels,
				ps.Kind, ps.Workload, plan.Node, pp.IPv4, pp.IPv6, ps.Labels)
		}
		if len(got.Ports) != len(ps.Servers) {
			t.Errorf("pod %s: ports %+v; want one per server", pp.Name, got.Ports)
		}
	}
	if p := pods["payments/ledger-svc"]; len(p.Ports) != 1 || p.Ports[0] != (cluster.ContainerPort{Name: "http-8080", Port: 8080, Protocol: "TCP"}) {
		t.Errorf("ledger-svc ports %+v; want http-8080 8080/TCP", p.Ports)
	}
	if p := pods["kube-system/kube-dns"]; len(p.Ports) != 1 || p.Ports[0] != (cluster.ContainerPort{Name: "dns-53", Port: 53, Protocol: "UDP"}) {
		t.Errorf("kube-dns ports %+v; want dns-53 53/UDP", p.Ports)
	}
	for _, s := range snap.Services {
		if s.Namespace == "payments" && s.Name == "postgres-primary" {
			var ips []netip.Addr
			for _, b := range s.Backends {
				ips = append(ips, b.IP)
			}
			slices.SortFunc(ips, netip.Addr.Compare)
			pg, _ := plan.Pod("postgres-primary")
			if want := []netip.Addr{pg.IPv4, pg.IPv6}; !slices.Equal(ips, want) {
				t.Errorf("postgres-primary backends %v; want %v", ips, want)
			}
		}
	}

	var pols []string
	for _, np := range snap.NetworkPolicies {
		pols = append(pols, np.Namespace+"/"+np.Name)
	}
	slices.Sort(pols)
	if want := []string{"payments/ledger-svc-ingress", "payments/postgres-ingress"}; !slices.Equal(pols, want) {
		t.Errorf("policies %v; want %v", pols, want)
	}

	if err := UnregisterKubernetes(ctx, cs, plan); err != nil {
		t.Fatal(err)
	}
	if err := UnregisterKubernetes(ctx, cs, plan); err != nil {
		t.Fatalf("a second unregister: %v; want nothing to do", err)
	}
	for _, ns := range []string{"kube-system", "payments", "istio-system"} {
		pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil || len(pods.Items) != 0 {
			t.Errorf("%s: %d pods left (%v)", ns, len(pods.Items), err)
		}
		svcs, err := cs.CoreV1().Services(ns).List(ctx, metav1.ListOptions{})
		if err != nil || len(svcs.Items) != 0 {
			t.Errorf("%s: %d services left (%v)", ns, len(svcs.Items), err)
		}
	}
	if ns, err := cs.CoreV1().Namespaces().Get(ctx, "payments", metav1.GetOptions{}); err == nil && ns.DeletionTimestamp == nil {
		t.Error("namespace payments is left; want it deleted (the lab created it)")
	}
	if _, err := cs.CoreV1().Namespaces().Get(ctx, "kube-system", metav1.GetOptions{}); err != nil {
		t.Errorf("kube-system: %v; want it kept (the lab did not create it)", err)
	}
}
