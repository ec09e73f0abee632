//go:build unix

package deploytest

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/restmapper"
	"sigs.k8s.io/yaml"

	"github.com/flowbus/flowbus/internal/k8stest"
)

// TestChartAppliesToARealAPIServer: every object the chart renders, with
// the default values and with every option on, is accepted by a real
// kube-apiserver (internal/k8stest, at the release of go.mod's client-go)
// in a server-side apply with dry run: the server's own schema validation
// (strict field validation: an unknown field is an error) and admission
// see them; nothing is stored. The ServiceMonitors are left out: their CRD
// is Prometheus Operator's, not installed there. Skips, with the reason,
// without bin/kube-apiserver or etcd.
func TestChartAppliesToARealAPIServer(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: starts etcd and kube-apiserver")
	}
	c := k8stest.Start(t, k8stest.Options{CiliumCRDs: true})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := c.Client().CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ReleaseNamespace}},
		metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	dc, err := discovery.NewDiscoveryClientForConfig(c.Config())
	if err != nil {
		t.Fatal(err)
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc))
	dyn, err := dynamic.NewForConfig(c.Config())
	if err != nil {
		t.Fatal(err)
	}
	for _, vf := range [][]string{nil, {FullValues()}, {NATSValues()}} {
		ms, err := Render(vf...)
		if err != nil {
			t.Fatal(err)
		}
		applied := 0
		for _, m := range ms {
			if m.Kind == "ServiceMonitor" {
				continue
			}
			var u unstructured.Unstructured
			if err := yaml.Unmarshal(m.YAML, &u.Object); err != nil {
				t.Fatal(err)
			}
			gvk := u.GroupVersionKind()
			mapping, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
			if err != nil {
				t.Fatalf("%s %s: %v", m.Kind, m.Name, err)
			}
			ri := dyn.Resource(mapping.Resource)
			var r dynamic.ResourceInterface = ri
			if mapping.Scope.Name() == "namespace" {
				if u.GetNamespace() != ReleaseNamespace {
					t.Errorf("%s %s: namespace %q, want the release's", m.Kind, m.Name, u.GetNamespace())
				}
				r = ri.Namespace(u.GetNamespace())
			}
			body, err := u.MarshalJSON()
			if err != nil {
				t.Fatal(err)
			}
			force := true
			if _, err := r.Patch(ctx, m.Name, types.ApplyPatchType, body, metav1.PatchOptions{DryRun: []string{metav1.DryRunAll},
				FieldManager: "flowbus-chart-test", Force: &force, FieldValidation: "Strict"}); err != nil {
				t.Errorf("values %v: %s %s: server-side apply (dry run): %v", vf, m.Kind, m.Name, err)
			}
			applied++
		}
		if applied < 11 {
			t.Errorf("values %v: %d objects applied", vf, applied)
		}
	}
	// Dry run stored nothing.
	if ds, err := c.Client().AppsV1().DaemonSets(ReleaseNamespace).List(ctx, metav1.ListOptions{}); err != nil || len(ds.Items) != 0 {
		t.Errorf("after dry runs: %d DaemonSets stored (err %v), want 0", len(ds.Items), err)
	}
}
