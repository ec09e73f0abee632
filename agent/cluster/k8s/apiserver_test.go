package k8s

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/flowbus/flowbus/agent/cluster"
	"github.com/flowbus/flowbus/internal/k8stest"
	"github.com/flowbus/flowbus/internal/syncbuf"
)

// The tests against a real API server (internal/k8stest). Objects are
// created as their controllers would have made them: ReplicaSets and
// Jobs with owner references to their Deployment and CronJob, pods with
// owner references, a node name and, through the status subresource,
// their phase and IPs. No scheduler, controller manager or kubelet runs.

// agentRules are the RBAC rules the package doc says the source needs.
var agentRules = []rbacv1.PolicyRule{
	{APIGroups: []string{""}, Resources: []string{"pods", "namespaces", "services"}, Verbs: []string{"get", "list", "watch"}},
	{APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"}, Verbs: []string{"get", "list", "watch"}},
	{APIGroups: []string{"networking.k8s.io"}, Resources: []string{"networkpolicies"}, Verbs: []string{"get", "list", "watch"}},
	{APIGroups: []string{"apps"}, Resources: []string{"replicasets"}, Verbs: []string{"get", "list", "watch"}},
	{APIGroups: []string{"batch"}, Resources: []string{"jobs"}, Verbs: []string{"get", "list", "watch"}},
	{APIGroups: []string{"apiextensions.k8s.io"}, Resources: []string{"customresourcedefinitions"}, Verbs: []string{"get", "list", "watch"}},
	{APIGroups: []string{"cilium.io"}, Resources: []string{"ciliumnetworkpolicies", "ciliumclusterwidenetworkpolicies"}, Verbs: []string{"get", "list", "watch"}},
}

// grantAgent binds agentRules to user.
func grantAgent(t *testing.T, cs kubernetes.Interface, user string) {
	ctx := context.Background()
	role := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "flowbus-agent"}, Rules: agentRules}
	if _, err := cs.RbacV1().ClusterRoles().Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	b := &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "flowbus-agent"},
		RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "flowbus-agent"},
		Subjects: []rbacv1.Subject{{APIGroup: "rbac.authorization.k8s.io", Kind: "User", Name: user}}}
	if _, err := cs.RbacV1().ClusterRoleBindings().Create(ctx, b, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// realSource runs a Source on rc until the test ends.
type realSource struct {
	src   *Source
	store *cluster.Store
	reg   *prometheus.Registry
	log   *syncbuf.Buffer
}

func runSource(t *testing.T, rc *rest.Config) *realSource {
	t.Helper()
	rs := &realSource{store: cluster.NewStore(), reg: prometheus.NewRegistry(), log: &syncbuf.Buffer{}}
	cfg := Config{Store: rs.store}
	if err := cfg.NewClients(rc); err != nil {
		t.Fatal(err)
	}
	var err error
	rs.src, err = New(cfg, slog.New(slog.NewTextHandler(rs.log, nil)), rs.reg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- rs.src.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
		if t.Failed() {
			t.Logf("source log:\n%s", rs.log.String())
		}
	})
	select {
	case <-rs.src.Synced():
	case <-time.After(60 * time.Second):
		t.Fatal("the source did not sync in 60 s")
	}
	return rs
}

// createFleet creates f's objects through the API, owners first, pointing
// the owner references at the UIDs the API server gave.
func createFleet(t *testing.T, cs kubernetes.Interface, f *fleet) {
	t.Helper()
	ctx := context.Background()
	uids := map[types.UID]types.UID{}
	fix := func(refs []metav1.OwnerReference) []metav1.OwnerReference {
		out := slices.Clone(refs)
		for i := range out {
			if u, ok := uids[out[i].UID]; ok {
				out[i].UID = u
			}
		}
		return out
	}
	for _, ns := range f.namespaces {
		must(t, create(cs.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{})))
	}
	tmpl := func(labels map[string]string, restart corev1.RestartPolicy) corev1.PodTemplateSpec {
		return corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels},
			Spec: corev1.PodSpec{RestartPolicy: restart, Containers: []corev1.Container{{Name: "main", Image: "registry.example/app:1"}}}}
	}
	for _, o := range f.owners {
		sel := map[string]string{"owner": o.GetName()}
		meta := metav1.ObjectMeta{Namespace: o.GetNamespace(), Name: o.GetName(), OwnerReferences: fix(o.GetOwnerReferences())}
		var got metav1.Object
		var err error
		switch o.(type) {
		case *appsv1.Deployment:
			got, err = cs.AppsV1().Deployments(meta.Namespace).Create(ctx, &appsv1.Deployment{ObjectMeta: meta,
				Spec: appsv1.DeploymentSpec{Selector: &metav1.LabelSelector{MatchLabels: sel}, Template: tmpl(sel, corev1.RestartPolicyAlways)}}, metav1.CreateOptions{})
		case *appsv1.ReplicaSet:
			got, err = cs.AppsV1().ReplicaSets(meta.Namespace).Create(ctx, &appsv1.ReplicaSet{ObjectMeta: meta,
				Spec: appsv1.ReplicaSetSpec{Selector: &metav1.LabelSelector{MatchLabels: sel}, Template: tmpl(sel, corev1.RestartPolicyAlways)}}, metav1.CreateOptions{})
		case *batchv1.CronJob:
			got, err = cs.BatchV1().CronJobs(meta.Namespace).Create(ctx, &batchv1.CronJob{ObjectMeta: meta,
				Spec: batchv1.CronJobSpec{Schedule: "0 * * * *", JobTemplate: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{Template: tmpl(sel, corev1.RestartPolicyNever)}}}}, metav1.CreateOptions{})
		case *batchv1.Job:
			got, err = cs.BatchV1().Jobs(meta.Namespace).Create(ctx, &batchv1.Job{ObjectMeta: meta,
				Spec: batchv1.JobSpec{Template: tmpl(nil, corev1.RestartPolicyNever)}}, metav1.CreateOptions{})
		default:
			t.Fatalf("owner %T", o)
		}
		if err != nil {
			t.Fatalf("create %T %s: %v", o, o.GetName(), err)
		}
		uids[o.GetUID()] = got.GetUID()
	}
	for _, p := range f.pods {
		createPod(t, cs, p, fix)
	}
	for _, s := range f.services {
		must(t, create(cs.CoreV1().Services(s.Namespace).Create(ctx, s, metav1.CreateOptions{})))
	}
	for _, s := range f.slices {
		must(t, create(cs.DiscoveryV1().EndpointSlices(s.Namespace).Create(ctx, s, metav1.CreateOptions{})))
	}
	for _, np := range f.netpols {
		must(t, create(cs.NetworkingV1().NetworkPolicies(np.Namespace).Create(ctx, np, metav1.CreateOptions{})))
	}
}

// createPod creates p and then writes its status (phase, IPs), as a
// kubelet would.
func createPod(t *testing.T, cs kubernetes.Interface, p *corev1.Pod, fix func([]metav1.OwnerReference) []metav1.OwnerReference) {
	t.Helper()
	ctx := context.Background()
	in := p.DeepCopy()
	if fix != nil {
		in.OwnerReferences = fix(in.OwnerReferences)
	}
	got, err := cs.CoreV1().Pods(p.Namespace).Create(ctx, in, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create pod %s/%s: %v", p.Namespace, p.Name, err)
	}
	p.UID = got.UID // the server's, which the snapshot carries
	got.Status = p.Status
	if _, err := cs.CoreV1().Pods(p.Namespace).UpdateStatus(ctx, got, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("status of pod %s/%s: %v", p.Namespace, p.Name, err)
	}
}

func create[T any](_ T, err error) error { return err }

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// fleetPart is the part of s in the fleet's namespaces (the API server
// adds its own: default, kube-system's services ...), less policies.
func fleetPart(s *cluster.Snapshot, f *fleet) *cluster.Snapshot {
	out := withoutPolicies(s)
	out.Source = s.Source
	inFleet := map[string]bool{}
	for _, ns := range f.namespaces {
		inFleet[ns.Name] = true
	}
	out.Namespaces = slices.DeleteFunc(slices.Clone(out.Namespaces), func(n cluster.Namespace) bool { return !inFleet[n.Name] })
	out.Services = slices.DeleteFunc(slices.Clone(out.Services), func(v cluster.Service) bool { return !inFleet[v.Namespace] })
	return out
}

func podOf(s *cluster.Snapshot, ns, name string) (cluster.Pod, bool) {
	for _, p := range s.Pods {
		if p.Namespace == ns && p.Name == name {
			return p, true
		}
	}
	return cluster.Pod{}, false
}

func TestSnapshotFollowsTheAPIServer(t *testing.T) {
	c := k8stest.Start(t, k8stest.Options{Users: []string{"flowbus-agent"}})
	cs := c.Client()
	ctx := context.Background()
	f := newFleet()
	createFleet(t, cs, f)
	// The source runs as a user with only the rules the package doc lists.
	grantAgent(t, cs, "flowbus-agent")
	rs := runSource(t, c.ConfigAs("flowbus-agent"))

	t.Run("the first snapshot equals the objects created", func(t *testing.T) {
		s := rs.store.Latest()
		if d := cmp.Diff(f.want(), fleetPart(s, f), addrs); d != "" {
			t.Errorf("snapshot differs from the API's objects (-want +got):\n%s", d)
		}
		nss, err := cs.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
		must(t, err)
		var want, got []string
		for _, n := range nss.Items {
			want = append(want, n.Name)
		}
		for _, n := range s.Namespaces {
			got = append(got, n.Name)
		}
		if slices.Sort(want); !slices.Equal(want, got) {
			t.Errorf("namespaces %v, the API has %v", got, want)
		}
		if len(s.NetworkPolicies) != 1 || !reflect.DeepEqual(s.NetworkPolicies[0].Spec, f.netpols[0].Spec) || s.NetworkPolicies[0].ManagedFields != nil {
			t.Errorf("network policies: %+v", s.NetworkPolicies)
		}
	})

	t.Run("a relabel is in a snapshot within a second", func(t *testing.T) {
		p, err := cs.CoreV1().Pods("chat").Get(ctx, "debug", metav1.GetOptions{})
		must(t, err)
		p.Labels = map[string]string{"run": "debug", "team": "payments"}
		_, err = cs.CoreV1().Pods("chat").Update(ctx, p, metav1.UpdateOptions{})
		must(t, err)
		accepted := time.Now()
		s := waitFor(t, rs.store, "the new label", func(s *cluster.Snapshot) bool {
			p, _ := podOf(s, "chat", "debug")
			return p.Labels["team"] == "payments"
		})
		took := time.Since(accepted)
		t.Logf("relabel reached the store in %v (revision %d)", took.Round(time.Millisecond), s.Revision)
		if took > time.Second {
			t.Errorf("relabel took %v to reach the store, over 1 s", took)
		}
	})

	t.Run("a deleted pod leaves the snapshot", func(t *testing.T) {
		must(t, cs.CoreV1().Pods("chat").Delete(ctx, "debug", metav1.DeleteOptions{GracePeriodSeconds: new(int64)}))
		waitFor(t, rs.store, "no pod debug", func(s *cluster.Snapshot) bool { _, ok := podOf(s, "chat", "debug"); return !ok })
	})

	t.Run("a new NetworkPolicy appears", func(t *testing.T) {
		np := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "batch", Name: "deny-all"},
			Spec: networkingv1.NetworkPolicySpec{PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress}}}
		must(t, create(cs.NetworkingV1().NetworkPolicies("batch").Create(ctx, np, metav1.CreateOptions{})))
		waitFor(t, rs.store, "policy batch/deny-all", func(s *cluster.Snapshot) bool {
			return len(s.NetworkPolicies) == 2 && s.NetworkPolicies[0].Name == "deny-all" && reflect.DeepEqual(s.NetworkPolicies[0].Spec, np.Spec)
		})
	})

	t.Run("Cilium policies appear once their CRDs are installed, malformed ones counted and left out", func(t *testing.T) {
		c.InstallCiliumCRDs()
		dyn, err := dynamic.NewForConfig(c.Config())
		must(t, err)
		cnps := dyn.Resource(k8stest.CiliumNetworkPolicies).Namespace("chat")
		must(t, create(cnps.Create(ctx, ciliumPolicy(cluster.KindCiliumNetworkPolicy, "chat", "relay", relaySpec()), metav1.CreateOptions{})))
		must(t, create(cnps.Create(ctx, ciliumPolicy(cluster.KindCiliumNetworkPolicy, "chat", "broken", "allow everything"), metav1.CreateOptions{})))
		world := map[string]any{"endpointSelector": map[string]any{}, "egress": []any{map[string]any{"toEntities": []any{"world"}}}}
		must(t, create(dyn.Resource(k8stest.CiliumClusterwideNetworkPolicies).Create(ctx,
			ciliumPolicy(cluster.KindCiliumClusterwideNetworkPolicy, "", "world", world), metav1.CreateOptions{})))
		s := waitFor(t, rs.store, "both well-formed Cilium policies", func(s *cluster.Snapshot) bool { return len(s.CiliumPolicies) == 2 })
		want := []cluster.CiliumPolicy{{Namespace: "chat", Name: "relay", Spec: relaySpec()}, {Name: "world", Clusterwide: true, Spec: world}}
		if d := cmp.Diff(want, s.CiliumPolicies); d != "" {
			t.Errorf("Cilium policies (-want +got):\n%s", d)
		}
		rej := rs.src.Rejected()
		if len(rej) != 1 || rej[0].Namespace != "chat" || rej[0].Name != "broken" {
			t.Errorf("rejected %+v, want chat/broken", rej)
		}
		counter := cluster.RejectedObjects(rs.reg).WithLabelValues(SourceName, cluster.KindCiliumNetworkPolicy)
		if n := testutil.ToFloat64(counter); n != 1 {
			t.Errorf("rejected counter %v, want 1", n)
		}
		if l := rs.log.String(); !strings.Contains(l, "kind=CiliumNetworkPolicy namespace=chat name=broken") ||
			!strings.Contains(l, `err="spec is a string, want an object"`) {
			t.Errorf("no log line names the rejected policy and why:\n%s", l)
		}
		// Fixed, it joins the others; the counter stays.
		u, err := cnps.Get(ctx, "broken", metav1.GetOptions{})
		must(t, err)
		u.Object["spec"] = relaySpec()
		must(t, create(cnps.Update(ctx, u, metav1.UpdateOptions{})))
		waitFor(t, rs.store, "the fixed policy", func(s *cluster.Snapshot) bool { return len(s.CiliumPolicies) == 3 })
		if len(rs.src.Rejected()) != 0 || testutil.ToFloat64(counter) != 1 {
			t.Errorf("after the fix: rejected %+v, counter %v", rs.src.Rejected(), testutil.ToFloat64(counter))
		}
	})
}

// apiState is what the API holds, in the terms a snapshot uses, listed
// straight from the API server.
func apiState(t *testing.T, cs kubernetes.Interface) (pods map[string]string, services map[string]string, netpols []string) {
	ctx := context.Background()
	pl, err := cs.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
	must(t, err)
	pods = map[string]string{}
	for _, p := range pl.Items {
		if p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		var ips []string
		for _, ip := range p.Status.PodIPs {
			ips = append(ips, ip.IP)
		}
		pods[p.Namespace+"/"+p.Name] = fmt.Sprint(p.Labels, ips)
	}
	sl, err := cs.CoreV1().Services("").List(ctx, metav1.ListOptions{})
	must(t, err)
	services = map[string]string{}
	for _, s := range sl.Items {
		services[s.Namespace+"/"+s.Name] = fmt.Sprint(slices.DeleteFunc(slices.Clone(s.Spec.ClusterIPs), func(ip string) bool { return ip == "None" }))
	}
	nl, err := cs.NetworkingV1().NetworkPolicies("").List(ctx, metav1.ListOptions{})
	must(t, err)
	for _, np := range nl.Items {
		netpols = append(netpols, np.Namespace+"/"+np.Name)
	}
	slices.Sort(netpols)
	return pods, services, netpols
}

// snapState is the same of a snapshot; a pod or service there twice
// fails the test.
func snapState(t *testing.T, s *cluster.Snapshot) (pods map[string]string, services map[string]string, netpols []string) {
	pods, services = map[string]string{}, map[string]string{}
	ipOwner := map[netip.Addr]string{}
	for _, p := range s.Pods {
		k := p.Namespace + "/" + p.Name
		if _, dup := pods[k]; dup {
			t.Errorf("pod %s twice in the snapshot", k)
		}
		var ips []string
		for _, ip := range p.IPs {
			ips = append(ips, ip.String())
			if o, dup := ipOwner[ip]; dup && !p.HostNetwork {
				t.Errorf("ip %s of pod %s is also pod %s's", ip, k, o)
			}
			ipOwner[ip] = k
		}
		pods[k] = fmt.Sprint(p.Labels, ips)
	}
	for _, v := range s.Services {
		k := v.Namespace + "/" + v.Name
		if _, dup := services[k]; dup {
			t.Errorf("service %s twice in the snapshot", k)
		}
		var ips []string
		for _, ip := range v.ClusterIPs {
			ips = append(ips, ip.String())
		}
		services[k] = fmt.Sprint(ips)
	}
	for _, np := range s.NetworkPolicies {
		netpols = append(netpols, np.Namespace+"/"+np.Name)
	}
	return pods, services, netpols
}

func TestResumesAfterAPIServerRestart(t *testing.T) {
	c := k8stest.Start(t, k8stest.Options{})
	cs := c.Client()
	ctx := context.Background()
	f := newFleet()
	createFleet(t, cs, f)
	rs := runSource(t, c.Config())
	if d := cmp.Diff(f.want(), fleetPart(rs.store.Latest(), f), addrs); d != "" {
		t.Fatalf("before the restart (-want +got):\n%s", d)
	}
	before := rs.store.Latest().Revision

	// The agent's API server goes away; while it is down, another API
	// server on the same etcd changes pods, a service, a slice and the
	// policies, so the agent's watches never stream those changes.
	c.Stop()
	other, stopOther := c.AddAPIServer()
	ocs, err := kubernetes.NewForConfig(other)
	must(t, err)
	must(t, ocs.CoreV1().Pods("chat").Delete(ctx, "debug", metav1.DeleteOptions{GracePeriodSeconds: new(int64)}))
	relabel, err := ocs.CoreV1().Pods("chat").Get(ctx, "chat-relay-5d8f7-p7m2z", metav1.GetOptions{})
	must(t, err)
	relabel.Labels = maps.Clone(relabel.Labels)
	relabel.Labels["version"] = "v2"
	must(t, create(ocs.CoreV1().Pods("chat").Update(ctx, relabel, metav1.UpdateOptions{})))
	createPod(t, ocs, pod("chat", "newcomer", map[string]string{"app": "newcomer"}, nil, "10.0.1.30"), nil)
	must(t, ocs.CoreV1().Services("chat").Delete(ctx, "draining", metav1.DeleteOptions{}))
	must(t, ocs.NetworkingV1().NetworkPolicies("chat").Delete(ctx, "relay-from-api", metav1.DeleteOptions{}))
	must(t, create(ocs.NetworkingV1().NetworkPolicies("batch").Create(ctx, &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: "batch", Name: "deny-all"}}, metav1.CreateOptions{})))
	stopOther()
	if rev := rs.store.Latest().Revision; rev != before {
		t.Errorf("snapshots were published while the API server was down: revision %d after %d", rev, before)
	}

	c.Start()
	back := time.Now()
	// Every snapshot until then holds no pod, address or service twice;
	// the one it ends on equals the API's own lists.
	wp, ws, wn := apiState(t, cs)
	s := waitFor(t, rs.store, "the API's state", func(s *cluster.Snapshot) bool {
		gp, gs, gn := snapState(t, s)
		return reflect.DeepEqual(wp, gp) && reflect.DeepEqual(ws, gs) && slices.Equal(wn, gn)
	})
	t.Logf("the source caught up %v after the API server was back", time.Since(back).Round(time.Millisecond))
	if p, ok := podOf(s, "chat", "newcomer"); !ok || p.IPs[0] != netip.MustParseAddr("10.0.1.30") {
		t.Errorf("the pod created during the outage: %+v", p)
	}
	for _, v := range s.Services {
		if v.Name == "chat-relay" && len(v.Backends) != 2 {
			t.Errorf("chat-relay backends after the restart: %+v", v.Backends)
		}
	}
}
