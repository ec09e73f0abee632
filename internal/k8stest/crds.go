//go:build unix

package k8stest

import (
	"fmt"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
)

// CRDResource is the resource of CustomResourceDefinitions.
var CRDResource = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// Resources of the Cilium policies, served once InstallCiliumCRDs returns.
var (
	CiliumNetworkPolicies            = schema.GroupVersionResource{Group: "cilium.io", Version: "v2", Resource: "ciliumnetworkpolicies"}
	CiliumClusterwideNetworkPolicies = schema.GroupVersionResource{Group: "cilium.io", Version: "v2", Resource: "ciliumclusterwidenetworkpolicies"}
)

// CiliumCRDs returns minimal definitions of Cilium's policy CRDs: their
// names, scopes and version v2, with a schema that keeps every field
// unchecked (x-kubernetes-preserve-unknown-fields), so the API server
// stores any spec, a malformed one too, as an older or careless cluster
// would.
func CiliumCRDs() []*unstructured.Unstructured {
	crd := func(kind, plural, singular, scope string, short ...any) *unstructured.Unstructured {
		return &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "apiextensions.k8s.io/v1",
			"kind":       "CustomResourceDefinition",
			"metadata":   map[string]any{"name": plural + ".cilium.io"},
			"spec": map[string]any{
				"group": "cilium.io",
				"scope": scope,
				"names": map[string]any{"kind": kind, "listKind": kind + "List", "plural": plural, "singular": singular, "shortNames": short},
				"versions": []any{map[string]any{
					"name": "v2", "served": true, "storage": true,
					"schema": map[string]any{"openAPIV3Schema": map[string]any{
						"type": "object", "x-kubernetes-preserve-unknown-fields": true,
					}},
				}},
			},
		}}
	}
	return []*unstructured.Unstructured{
		crd("CiliumNetworkPolicy", "ciliumnetworkpolicies", "ciliumnetworkpolicy", "Namespaced", "cnp", "ciliumnp"),
		crd("CiliumClusterwideNetworkPolicy", "ciliumclusterwidenetworkpolicies", "ciliumclusterwidenetworkpolicy", "Cluster", "ccnp"),
	}
}

// InstallCiliumCRDs creates the CRDs of CiliumCRDs (those that exist are
// left alone) and waits until the API server serves both.
func (c *Cluster) InstallCiliumCRDs() {
	t := c.t
	t.Helper()
	dyn, err := dynamic.NewForConfig(c.Config())
	if err != nil {
		t.Fatalf("k8stest: %v", err)
	}
	for _, crd := range CiliumCRDs() {
		cx, cancel := ctx()
		_, err := dyn.Resource(CRDResource).Create(cx, crd, metav1.CreateOptions{})
		cancel()
		if err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatalf("k8stest: create CRD %s: %v", crd.GetName(), err)
		}
	}
	deadline := time.Now().Add(time.Minute)
	for _, gvr := range []schema.GroupVersionResource{CiliumNetworkPolicies, CiliumClusterwideNetworkPolicies} {
		for {
			cx, cancel := ctx()
			_, err := dyn.Resource(gvr).List(cx, metav1.ListOptions{Limit: 1})
			cancel()
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("k8stest: %s not served after a minute: %v", gvr.Resource, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	t.Logf("k8stest: Cilium policy CRDs installed (%s)", fmt.Sprint(CiliumNetworkPolicies.GroupVersion()))
}
