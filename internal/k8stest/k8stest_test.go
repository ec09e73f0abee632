//go:build unix

package k8stest

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// One cluster for the whole check: starting one costs seconds.
func TestClusterServesRestartsAndEnforcesRBAC(t *testing.T) {
	c := Start(t, Options{CiliumCRDs: true, Users: []string{"agent"}})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cs := c.Client()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "chat", Labels: map[string]string{"team": "chat"}}}
	if _, err := cs.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "chat", Name: "relay"},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "none"}}},
	}
	if _, err := cs.CoreV1().Pods("chat").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create a pod with no service account and no scheduler: %v", err)
	}

	t.Run("the CRDs serve Cilium policies with any spec", func(t *testing.T) {
		dyn, err := dynamic.NewForConfig(c.Config())
		if err != nil {
			t.Fatal(err)
		}
		cnp := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "cilium.io/v2", "kind": "CiliumNetworkPolicy",
			"metadata": map[string]any{"name": "broken"}, "spec": "not an object",
		}}
		if _, err := dyn.Resource(CiliumNetworkPolicies).Namespace("chat").Create(ctx, cnp, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		got, err := dyn.Resource(CiliumNetworkPolicies).Namespace("chat").Get(ctx, "broken", metav1.GetOptions{})
		if err != nil || got.Object["spec"] != "not an object" {
			t.Fatalf("got %v, %v; want the stored string spec", got, err)
		}
	})

	t.Run("a user with no role binding is forbidden", func(t *testing.T) {
		agent, err := kubernetes.NewForConfig(c.ConfigAs("agent"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := agent.CoreV1().Pods("").List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
			t.Fatalf("list pods as agent: %v, want forbidden", err)
		}
	})

	t.Run("objects outlive an API server restart on the same address", func(t *testing.T) {
		c.Stop()
		if _, err := cs.CoreV1().Namespaces().Get(ctx, "chat", metav1.GetOptions{}); err == nil {
			t.Fatal("the stopped API server answered")
		}
		c.Start()
		got, err := cs.CoreV1().Pods("chat").Get(ctx, "relay", metav1.GetOptions{})
		if err != nil || got.Name != "relay" {
			t.Fatalf("after restart: %v, %v", got, err)
		}
	})

	t.Run("a second API server shares the etcd", func(t *testing.T) {
		cfg, stop := c.AddAPIServer()
		defer stop()
		other, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := other.CoreV1().Pods("chat").Delete(ctx, "relay", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := cs.CoreV1().Pods("chat").Get(ctx, "relay", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Fatalf("the first server still has the pod the second deleted: %v", err)
		}
	})

	t.Run("the kubeconfig file reaches the API server", func(t *testing.T) {
		cfg, err := clientcmd.BuildConfigFromFlags("", c.Kubeconfig(AdminUser))
		if err != nil {
			t.Fatal(err)
		}
		kc, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			t.Fatal(err)
		}
		got, err := kc.CoreV1().Namespaces().Get(ctx, "chat", metav1.GetOptions{})
		if err != nil || got.Labels["team"] != "chat" {
			t.Fatalf("through the kubeconfig: %v, %v", got, err)
		}
	})
}
