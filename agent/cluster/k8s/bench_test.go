package k8s

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/flowbus/flowbus/agent/cluster"
	"github.com/flowbus/flowbus/internal/k8stest"
)

// The benchmarks' cluster: 50 namespaces × 10 deployments × 20 pods as
// kubelets report them (two containers with env, mounts, resources and
// statuses), in 500 ReplicaSets, with one service and one EndpointSlice
// listing its 20 pods per deployment.
const (
	benchNamespaces  = 50
	benchDeployments = 10 // per namespace
	benchReplicas    = 20 // per deployment
	benchPods        = benchNamespaces * benchDeployments * benchReplicas
)

// BenchmarkInformerMemory runs the source against a real API server
// holding the benchmark's 10,000 pods (with the API server's managed
// fields; creating them takes about a minute on 2 cores) and reports the
// heap in use after GC with the source synced and its snapshot held, less
// the heap before it started (heap-bytes, and per pod), and the same for
// a plain pod informer that keeps whole pods (full-pod-informer-bytes).
func BenchmarkInformerMemory(b *testing.B) {
	c := k8stest.Start(b, k8stest.Options{CiliumCRDs: true})
	start := time.Now()
	populate(b, c.Client())
	b.Logf("created %d pods, %d services and slices in %v", benchPods, benchNamespaces*benchDeployments, time.Since(start).Round(time.Second))
	for b.Loop() {
		base := heapInUse()
		rs, stop := runBenchSource(b, c)
		snap := rs.store.Latest()
		used := heapInUse() - base
		if len(snap.Pods) != benchPods {
			b.Fatalf("snapshot has %d pods", len(snap.Pods))
		}
		stop()
		runtime.KeepAlive(snap)

		base = heapInUse()
		full := plainPodInformer(b, c)
		fullUsed := heapInUse() - base
		runtime.KeepAlive(full)
		b.ReportMetric(float64(used), "heap-bytes")
		b.ReportMetric(float64(used)/benchPods, "heap-bytes/pod")
		b.ReportMetric(float64(fullUsed), "full-pod-informer-bytes")
	}
}

// BenchmarkSnapshotBuild is one snapshot build from synced caches holding
// the benchmark's 10,000 pods (on client-go's fakes: the caches hold the
// same entries whichever API filled them). cpu-ns/op is the process's user
// and system CPU per build, which other load on the machine inflates less
// than the wall time.
func BenchmarkSnapshotBuild(b *testing.B) {
	var objs, owners []kruntime.Object
	for n := range benchNamespaces {
		ns := fmt.Sprintf("team-%02d", n)
		objs = append(objs, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: map[string]string{"team": ns}}})
		for d := range benchDeployments {
			app := newBenchApp(ns, fmt.Sprintf("svc-%02d", d), n*benchDeployments+d)
			owners = append(owners, app.rs)
			for _, p := range app.pods {
				objs = append(objs, p)
			}
			objs = append(objs, app.svc, app.slice)
		}
	}
	fc := startFakeObjects(b, objs, owners)
	if n := len(fc.store.Latest().Pods); n != benchPods {
		b.Fatalf("snapshot has %d pods", n)
	}
	b.ReportAllocs()
	cpu0 := cpuTime()
	for b.Loop() {
		fc.src.build()
	}
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op")
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// heapInUse is the heap in use after two collections.
func heapInUse() int64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapInuse)
}

type benchSource struct {
	src   *Source
	store *cluster.Store
}

// runBenchSource runs a source until it has synced, and returns it with a
// function that stops it.
func runBenchSource(b *testing.B, c *k8stest.Cluster) (*benchSource, func()) {
	rs := &benchSource{store: cluster.NewStore()}
	cfg := Config{Store: rs.store}
	if err := cfg.NewClients(c.Config()); err != nil {
		b.Fatal(err)
	}
	var err error
	if rs.src, err = New(cfg, nil, nil); err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- rs.src.Run(ctx) }()
	select {
	case <-rs.src.Synced():
	case <-time.After(5 * time.Minute):
		b.Fatal("no sync in 5 minutes")
	}
	return rs, func() { cancel(); <-done }
}

// plainPodInformer is a synced pod informer that keeps whole pods; it is
// stopped before it returns, its cache kept.
func plainPodInformer(b *testing.B, c *k8stest.Cluster) cache.Store {
	f := informers.NewSharedInformerFactory(kubernetes.NewForConfigOrDie(c.Config()), 0)
	inf := f.Core().V1().Pods().Informer()
	stop := make(chan struct{})
	f.Start(stop)
	if !cache.WaitForCacheSync(stop, inf.HasSynced) {
		b.Fatal("plain pod informer did not sync")
	}
	close(stop)
	f.Shutdown()
	return inf.GetStore()
}

// populate creates the benchmark's cluster through the API with 16
// concurrent clients: each ReplicaSet, then its pods and their status
// (the owner references naming the UID the API server gave), the service
// and the slice.
func populate(b *testing.B, cs kubernetes.Interface) {
	ctx := context.Background()
	jobs := make(chan *benchApp)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	for range 16 {
		wg.Go(func() {
			for app := range jobs {
				if err := app.create(ctx, cs); err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
				}
			}
		})
	}
	for n := range benchNamespaces {
		ns := fmt.Sprintf("team-%02d", n)
		if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns,
			Labels: map[string]string{"team": ns}}}, metav1.CreateOptions{}); err != nil {
			b.Fatal(err)
		}
		for d := range benchDeployments {
			jobs <- newBenchApp(ns, fmt.Sprintf("svc-%02d", d), n*benchDeployments+d)
		}
	}
	close(jobs)
	wg.Wait()
	if firstErr != nil {
		b.Fatal(firstErr)
	}
}

// benchApp is one deployment's objects.
type benchApp struct {
	rs    *appsv1.ReplicaSet
	pods  []*corev1.Pod // with their status
	svc   *corev1.Service
	slice *discoveryv1.EndpointSlice
}

func newBenchApp(ns, app string, idx int) *benchApp {
	labels := map[string]string{"app": app, "team": ns, "version": "v1", "pod-template-hash": "7d9f8c6b5"}
	rsName := app + "-7d9f8c6b5"
	a := &benchApp{
		rs: &appsv1.ReplicaSet{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: rsName, Labels: labels, UID: types.UID(fmt.Sprintf("uid-rs-%d", idx)),
				OwnerReferences: owner("Deployment", app, types.UID(fmt.Sprintf("uid-dep-%d", idx)))},
			Spec: appsv1.ReplicaSetSpec{Selector: &metav1.LabelSelector{MatchLabels: labels},
				Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: benchPodSpec("")}},
		},
		svc: &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: app},
			Spec: corev1.ServiceSpec{Selector: map[string]string{"app": app},
				Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromString("http"), Protocol: corev1.ProtocolTCP}}}},
		slice: &discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Namespace: ns, Name: app + "-abcde", Labels: map[string]string{discoveryv1.LabelServiceName: app}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Ports:       []discoveryv1.EndpointPort{{Name: ptr("http"), Port: ptr(int32(8080)), Protocol: ptr(corev1.ProtocolTCP)}},
		},
	}
	now := metav1.NewTime(time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC))
	for r := range benchReplicas {
		name := fmt.Sprintf("%s-%05d", rsName, r)
		ip := fmt.Sprintf("10.%d.%d.%d", 1+idx/250, idx%250, 10+r)
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels, OwnerReferences: owner("ReplicaSet", rsName, a.rs.UID),
				Annotations: map[string]string{"prometheus.io/scrape": "true", "prometheus.io/port": "9090"}},
			Spec: benchPodSpec(fmt.Sprintf("node-%02d", idx%40)),
			Status: corev1.PodStatus{
				Phase: corev1.PodRunning, PodIP: ip, PodIPs: []corev1.PodIP{{IP: ip}}, HostIP: "192.0.2.1", StartTime: &now,
				QOSClass: corev1.PodQOSBurstable,
				Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: now},
					{Type: corev1.ContainersReady, Status: corev1.ConditionTrue, LastTransitionTime: now},
					{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: now}},
			},
		}
		for _, c := range p.Spec.Containers {
			p.Status.ContainerStatuses = append(p.Status.ContainerStatuses, corev1.ContainerStatus{Name: c.Name, Ready: true,
				Image: c.Image, ImageID: "registry.example/" + c.Name + "@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
				ContainerID: "containerd://0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
				State:       corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}}})
		}
		a.pods = append(a.pods, p)
		a.slice.Endpoints = append(a.slice.Endpoints, discoveryv1.Endpoint{Addresses: []string{ip},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr(true), Serving: ptr(true), Terminating: ptr(false)},
			TargetRef:  &corev1.ObjectReference{Kind: "Pod", Namespace: ns, Name: name}, NodeName: ptr(p.Spec.NodeName)})
	}
	return a
}

// create creates the app's objects through the API.
func (a *benchApp) create(ctx context.Context, cs kubernetes.Interface) error {
	in := a.rs.DeepCopy()
	in.UID = ""
	rs, err := cs.AppsV1().ReplicaSets(in.Namespace).Create(ctx, in, metav1.CreateOptions{})
	if err != nil {
		return err
	}
	for _, p := range a.pods {
		in := p.DeepCopy()
		in.OwnerReferences[0].UID = rs.UID
		got, err := cs.CoreV1().Pods(in.Namespace).Create(ctx, in, metav1.CreateOptions{})
		if err != nil {
			return err
		}
		got.Status = p.Status
		if _, err := cs.CoreV1().Pods(in.Namespace).UpdateStatus(ctx, got, metav1.UpdateOptions{}); err != nil {
			return err
		}
	}
	if _, err := cs.CoreV1().Services(a.svc.Namespace).Create(ctx, a.svc, metav1.CreateOptions{}); err != nil {
		return err
	}
	_, err = cs.DiscoveryV1().EndpointSlices(a.slice.Namespace).Create(ctx, a.slice, metav1.CreateOptions{})
	return err
}

// benchPodSpec is a typical pod: an app container and a sidecar.
func benchPodSpec(node string) corev1.PodSpec {
	res := corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("128Mi")},
		Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("256Mi")},
	}
	return corev1.PodSpec{
		NodeName: node,
		Containers: []corev1.Container{
			{Name: "app", Image: "registry.example/app:1.4.2", Resources: res,
				Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}, {Name: "metrics", ContainerPort: 9090}},
				Env: []corev1.EnvVar{{Name: "LOG_LEVEL", Value: "info"}, {Name: "DB_HOST", Value: "db.payments.svc.cluster.local"},
					{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}}},
				VolumeMounts: []corev1.VolumeMount{{Name: "config", MountPath: "/etc/app"}}},
			{Name: "proxy", Image: "registry.example/proxy:0.9", Resources: res,
				Ports: []corev1.ContainerPort{{Name: "admin", ContainerPort: 15000}}},
		},
		Volumes: []corev1.Volume{{Name: "config", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
			LocalObjectReference: corev1.LocalObjectReference{Name: "app-config"}}}}},
	}
}
