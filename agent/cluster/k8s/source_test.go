package k8s

import (
	"context"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/kubernetes/fake"
	metadatafake "k8s.io/client-go/metadata/fake"

	"github.com/flowbus/flowbus/agent/cluster"
)

var (
	cnpResource  = schema.GroupVersionResource{Group: "cilium.io", Version: "v2", Resource: "ciliumnetworkpolicies"}
	ccnpResource = schema.GroupVersionResource{Group: "cilium.io", Version: "v2", Resource: "ciliumclusterwidenetworkpolicies"}
)

// addrs lets cmp compare netip.Addr values.
var addrs = cmp.Comparer(func(a, b netip.Addr) bool { return a == b })

// fakeCluster is a Source on client-go's fake clients.
type fakeCluster struct {
	client *fake.Clientset
	dyn    *dynamicfake.FakeDynamicClient
	src    *Source
	store  *cluster.Store
	reg    *prometheus.Registry
}

func startFake(t *testing.T, f *fleet, dynObjs ...runtime.Object) *fakeCluster {
	t.Helper()
	var objs, owners []runtime.Object
	for _, o := range f.namespaces {
		objs = append(objs, o)
	}
	for _, o := range f.pods {
		objs = append(objs, o)
	}
	for _, o := range f.services {
		objs = append(objs, o)
	}
	for _, o := range f.slices {
		objs = append(objs, o)
	}
	for _, o := range f.netpols {
		objs = append(objs, o)
	}
	for _, o := range f.owners {
		owners = append(owners, o.(runtime.Object))
	}
	return startFakeObjects(t, objs, owners, dynObjs...)
}

// startFakeObjects runs a Source on fake clients holding objs, the
// ReplicaSets and Jobs among owners (as metadata) and dynObjs.
func startFakeObjects(t testing.TB, objs, owners []runtime.Object, dynObjs ...runtime.Object) *fakeCluster {
	t.Helper()
	scheme := metadatafake.NewTestScheme()
	if err := metav1.AddMetaToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	var metas []runtime.Object
	for _, o := range owners {
		var tm metav1.TypeMeta
		switch o.(type) {
		case *appsv1.ReplicaSet:
			tm = metav1.TypeMeta{APIVersion: "apps/v1", Kind: "ReplicaSet"}
		case *batchv1.Job:
			tm = metav1.TypeMeta{APIVersion: "batch/v1", Kind: "Job"}
		default:
			continue
		}
		m := o.(metav1.Object)
		metas = append(metas, &metav1.PartialObjectMetadata{TypeMeta: tm, ObjectMeta: metav1.ObjectMeta{
			Namespace: m.GetNamespace(), Name: m.GetName(), UID: m.GetUID(), OwnerReferences: m.GetOwnerReferences()}})
	}
	fc := &fakeCluster{
		client: fake.NewClientset(objs...),
		dyn: dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), map[schema.GroupVersionResource]string{
			crdResource: "CustomResourceDefinitionList", cnpResource: "CiliumNetworkPolicyList", ccnpResource: "CiliumClusterwideNetworkPolicyList",
		}, dynObjs...),
		store: cluster.NewStore(),
		reg:   prometheus.NewRegistry(),
	}
	var err error
	fc.src, err = New(Config{Client: fc.client, Metadata: metadatafake.NewSimpleMetadataClient(scheme, metas...), Dynamic: fc.dyn, Store: fc.store}, nil, fc.reg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- fc.src.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != context.Canceled {
			t.Errorf("Run returned %v, want context.Canceled", err)
		}
	})
	select {
	case <-fc.src.Synced():
	case <-time.After(2 * time.Minute):
		t.Fatal("the source did not sync in 2 minutes")
	}
	return fc
}

// established is a CRD of name, established.
func established(name string) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
		"metadata": map[string]any{"name": name},
		"spec":     map[string]any{"group": "cilium.io", "schema": "a large one the cache drops"},
		"status":   map[string]any{"conditions": []any{map[string]any{"type": "Established", "status": "True"}}},
	}}
}

// waitFor waits until the store's snapshot satisfies ok and returns it.
// It gives up after two minutes: after an API server restart, client-go's
// reflectors retry with a backoff of up to a minute.
func waitFor(t *testing.T, st *cluster.Store, what string, ok func(*cluster.Snapshot) bool) *cluster.Snapshot {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var rev uint64
	for {
		if s := st.Latest(); s != nil && ok(s) {
			return s
		} else if s != nil {
			rev = s.Revision
		}
		if _, err := st.Wait(ctx, rev); err != nil {
			t.Fatalf("no snapshot with %s in 2 minutes; the last:\n%+v", what, st.Latest())
		}
	}
}

// withoutPolicies is s less its policies and revision, to compare with
// fleet.want.
func withoutPolicies(s *cluster.Snapshot) *cluster.Snapshot {
	c := *s
	c.Revision, c.NetworkPolicies, c.CiliumPolicies = 0, nil, nil
	return &c
}

func TestFirstSnapshotHoldsEveryObjectOfTheFakeCluster(t *testing.T) {
	f := newFleet()
	bad := ciliumPolicy(cluster.KindCiliumNetworkPolicy, "chat", "broken", "allow everything")
	fc := startFake(t, f, established("ciliumnetworkpolicies.cilium.io"), established("ciliumclusterwidenetworkpolicies.cilium.io"),
		ciliumPolicy(cluster.KindCiliumNetworkPolicy, "chat", "relay", relaySpec()), bad,
		ciliumPolicy(cluster.KindCiliumClusterwideNetworkPolicy, "", "world", map[string]any{"endpointSelector": map[string]any{}}))
	s := fc.store.Latest()
	if s.Revision != 1 {
		t.Errorf("first snapshot has revision %d", s.Revision)
	}
	if d := cmp.Diff(f.want(), withoutPolicies(s), addrs); d != "" {
		t.Errorf("snapshot differs from the fleet (-want +got):\n%s", d)
	}
	if len(s.NetworkPolicies) != 1 || !reflect.DeepEqual(s.NetworkPolicies[0].Spec, f.netpols[0].Spec) {
		t.Errorf("network policies: %+v", s.NetworkPolicies)
	}
	wantCNP := []cluster.CiliumPolicy{
		{Namespace: "chat", Name: "relay", Spec: relaySpec()},
		{Name: "world", Clusterwide: true, Spec: map[string]any{"endpointSelector": map[string]any{}}},
	}
	if d := cmp.Diff(wantCNP, s.CiliumPolicies); d != "" {
		t.Errorf("cilium policies (-want +got):\n%s", d)
	}
	rej := fc.src.Rejected()
	if len(rej) != 1 || rej[0].Name != "broken" || rej[0].Err.Error() != "spec is a string, want an object" {
		t.Errorf("rejected: %+v", rej)
	}
	if n := testutil.ToFloat64(cluster.RejectedObjects(fc.reg).WithLabelValues(SourceName, cluster.KindCiliumNetworkPolicy)); n != 1 {
		t.Errorf("rejected counter %v, want 1", n)
	}
}

func TestCachesKeepEntriesNotObjects(t *testing.T) {
	fc := startFake(t, newFleet())
	o, _, _ := fc.src.pods.GetStore().GetByKey("chat/chat-relay-5d8f7-x2k9q")
	if e, ok := o.(*podEntry); !ok || e.Pod.Name != "chat-relay-5d8f7-x2k9q" || e.Controller.Name != "chat-relay-5d8f7" || e.Annotations != nil {
		t.Errorf("pod cache holds %#v, want a pod entry", o)
	}
	o, _, _ = fc.src.slices.GetStore().GetByKey("chat/chat-relay-a")
	if e, ok := o.(*sliceEntry); !ok || e.Service != "chat-relay" || len(e.Endpoints) != 2 || len(e.Ports) != 2 {
		t.Errorf("slice cache holds %#v, want a slice entry", o)
	}
	o, _, _ = fc.src.rsets.GetStore().GetByKey("chat/chat-relay-5d8f7")
	if m, ok := o.(*metav1.PartialObjectMetadata); !ok || len(m.OwnerReferences) != 1 || m.OwnerReferences[0].Name != "chat-relay" {
		t.Errorf("replica set cache holds %#v", o)
	}
}

func TestCiliumPoliciesArePickedUpWhenTheirCRDIsInstalledAndDroppedWhenItGoes(t *testing.T) {
	fc := startFake(t, newFleet())
	if s := fc.store.Latest(); len(s.CiliumPolicies) != 0 {
		t.Fatalf("policies without CRDs: %+v", s.CiliumPolicies)
	}
	ctx := context.Background()
	if _, err := fc.dyn.Resource(crdResource).Create(ctx, established("ciliumnetworkpolicies.cilium.io"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := fc.dyn.Resource(cnpResource).Namespace("chat").Create(ctx, ciliumPolicy(cluster.KindCiliumNetworkPolicy, "chat", "relay", relaySpec()), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, fc.store, "the CNP", func(s *cluster.Snapshot) bool {
		return len(s.CiliumPolicies) == 1 && s.CiliumPolicies[0].Name == "relay"
	})
	if err := fc.dyn.Resource(crdResource).Delete(ctx, "ciliumnetworkpolicies.cilium.io", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, fc.store, "no CNP", func(s *cluster.Snapshot) bool { return len(s.CiliumPolicies) == 0 })
}

func TestChangesAreCoalescedAndUnchangedBuildsNotPublished(t *testing.T) {
	fc := startFake(t, newFleet())
	ctx := context.Background()
	pods := fc.client.CoreV1().Pods("chat")
	start := fc.store.Latest().Revision
	// 50 relabels back to back: far fewer snapshots, the last one holding
	// the last label.
	for i := range 50 {
		p, err := pods.Get(ctx, "debug", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		p.Labels = map[string]string{"run": "debug", "n": strings.Repeat("x", i+1)}
		if _, err := pods.Update(ctx, p, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	last := waitFor(t, fc.store, "the 50th relabel", func(s *cluster.Snapshot) bool {
		for _, p := range s.Pods {
			if p.Name == "debug" {
				return len(p.Labels["n"]) == 50
			}
		}
		return false
	})
	if n := last.Revision - start; n >= 50 {
		t.Errorf("50 quick changes gave %d snapshots: not coalesced", n)
	}
	t.Logf("50 relabels: %d snapshots", last.Revision-start)

	// A status-only change (a condition) builds a snapshot equal to the
	// last one, which is not published.
	builds := fc.src.stats.builds.Load()
	p, _ := pods.Get(ctx, "debug", metav1.GetOptions{})
	p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
	if _, err := pods.UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for fc.src.stats.builds.Load() == builds && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if fc.src.stats.builds.Load() == builds {
		t.Fatal("no build after the status change")
	}
	if rev := fc.store.Latest().Revision; rev != last.Revision {
		t.Errorf("a status-only change published revision %d after %d", rev, last.Revision)
	}
}

func TestBuildsAreAtLeastMinIntervalApart(t *testing.T) {
	fc := startFake(t, newFleet())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var times []time.Time
	got := make(chan []time.Time)
	go func() {
		var rev uint64 = fc.store.Latest().Revision
		var ts []time.Time
		for {
			s, err := fc.store.Wait(ctx, rev)
			if err != nil {
				got <- ts
				return
			}
			ts = append(ts, time.Now())
			rev = s.Revision
		}
	}()
	pods := fc.client.CoreV1().Pods("chat")
	for i := range 20 {
		p, _ := pods.Get(ctx, "debug", metav1.GetOptions{})
		p.Labels = map[string]string{"i": strings.Repeat("y", i+1)}
		if _, err := pods.Update(ctx, p, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(7 * time.Millisecond)
	}
	waitFor(t, fc.store, "the last relabel", func(s *cluster.Snapshot) bool {
		for _, p := range s.Pods {
			if p.Name == "debug" {
				return len(p.Labels["i"]) == 20
			}
		}
		return false
	})
	cancel()
	times = <-got
	// Publish times trail build starts by a build's duration, which varies:
	// allow a few milliseconds of it.
	for i := 1; i < len(times); i++ {
		if d := times[i].Sub(times[i-1]); d < DefaultMinInterval-10*time.Millisecond {
			t.Errorf("snapshots %d and %d published %v apart, under the %v minimum", i-1, i, d, DefaultMinInterval)
		}
	}
	t.Logf("20 changes over ~140 ms: %d snapshots", len(times))
}
