package k8s

import (
	"context"
	"log/slog"
	"maps"
	"sync"
	"sync/atomic"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/tools/cache"

	"github.com/flowbus/flowbus/agent/cluster"
)

var crdResource = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// policyResource is one Cilium policy resource, watched through its CRD.
type policyResource struct {
	kind string
	name string // of its CRD
	gvr  schema.GroupVersionResource
	crd  cache.SharedIndexInformer // its definition, by name

	running *policyInformer // nil while the CRD is absent or not established
}

type policyInformer struct {
	inf    cache.SharedIndexInformer
	stop   context.CancelFunc
	synced atomic.Bool
}

// ciliumPolicies watches the Cilium policy CRDs and, while each is
// established, informs on its policies.
type ciliumPolicies struct {
	dyn      dynamic.Interface
	log      *slog.Logger
	changed  func()
	watchErr cache.WatchErrorHandlerWithContext

	mu        sync.Mutex
	ctx       context.Context // Run's; nil before start
	resources []*policyResource
}

func newCiliumPolicies(dyn dynamic.Interface, log *slog.Logger, changed func(), watchErr cache.WatchErrorHandlerWithContext) *ciliumPolicies {
	c := &ciliumPolicies{dyn: dyn, log: log, changed: changed, watchErr: watchErr}
	for _, r := range []struct{ kind, plural string }{
		{cluster.KindCiliumNetworkPolicy, "ciliumnetworkpolicies"},
		{cluster.KindCiliumClusterwideNetworkPolicy, "ciliumclusterwidenetworkpolicies"},
	} {
		name := r.plural + ".cilium.io"
		pr := &policyResource{kind: r.kind, name: name, gvr: schema.GroupVersionResource{Group: "cilium.io", Version: "v2", Resource: r.plural}}
		pr.crd = dynamicinformer.NewFilteredDynamicInformer(dyn, crdResource, "", 0, cache.Indexers{},
			func(o *metav1.ListOptions) { o.FieldSelector = "metadata.name=" + name }).Informer()
		_ = pr.crd.SetTransform(slimCRD)
		_ = pr.crd.SetWatchErrorHandlerWithContext(watchErr)
		_, _ = pr.crd.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc:    func(any) { c.reconcile(pr) },
			UpdateFunc: func(any, any) { c.reconcile(pr) },
			DeleteFunc: func(any) { c.reconcile(pr) },
		})
		c.resources = append(c.resources, pr)
	}
	return c
}

func (c *ciliumPolicies) start(ctx context.Context) {
	c.mu.Lock()
	c.ctx = ctx
	c.mu.Unlock()
	for _, r := range c.resources {
		go r.crd.RunWithContext(ctx)
	}
}

// hasSynced: both CRDs' informers have synced, and so has the policy
// informer of each established one.
func (c *ciliumPolicies) hasSynced() bool {
	for _, r := range c.resources {
		if !r.crd.HasSynced() {
			return false
		}
		c.reconcile(r) // the CRD's add event may not have been handled yet
		c.mu.Lock()
		pending := r.running != nil && !r.running.synced.Load()
		c.mu.Unlock()
		if pending {
			return false
		}
	}
	return true
}

// reconcile starts the policy informer of an established CRD and stops
// that of a CRD that is gone or no longer established.
func (c *ciliumPolicies) reconcile(r *policyResource) {
	established := false
	if o, ok, _ := r.crd.GetStore().GetByKey(r.name); ok {
		conds, _, _ := unstructured.NestedSlice(o.(*unstructured.Unstructured).Object, "status", "conditions")
		for _, cd := range conds {
			m, _ := cd.(map[string]any)
			if m["type"] == "Established" && m["status"] == "True" {
				established = true
			}
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.ctx == nil || c.ctx.Err() != nil:
	case established && r.running == nil:
		pctx, stop := context.WithCancel(c.ctx)
		pi := &policyInformer{stop: stop}
		pi.inf = dynamicinformer.NewFilteredDynamicInformer(c.dyn, r.gvr, "", 0, cache.Indexers{}, nil).Informer()
		_ = pi.inf.SetTransform(slimMeta)
		_ = pi.inf.SetWatchErrorHandlerWithContext(c.watchErr)
		_, _ = pi.inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc:    func(any) { c.changed() },
			UpdateFunc: func(any, any) { c.changed() },
			DeleteFunc: func(any) { c.changed() },
		})
		r.running = pi
		go pi.inf.RunWithContext(pctx)
		go func() {
			if cache.WaitForCacheSync(pctx.Done(), pi.inf.HasSynced) {
				pi.synced.Store(true)
				c.changed()
			}
		}()
		c.log.Info("kubernetes source: watching Cilium policies", "kind", r.kind)
	case !established && r.running != nil:
		r.running.stop()
		r.running = nil
		c.changed()
		c.log.Info("kubernetes source: Cilium policy CRD gone, its policies dropped", "kind", r.kind)
	}
}

// list returns the policies of every synced policy informer, and those
// rejected.
func (c *ciliumPolicies) list() (out []cluster.CiliumPolicy, invalid []Rejection) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, r := range c.resources {
		if r.running == nil || !r.running.synced.Load() {
			continue
		}
		for _, o := range r.running.inf.GetStore().List() {
			u := o.(*unstructured.Unstructured)
			obj := u.Object
			if u.GetKind() == "" {
				obj = maps.Clone(obj)
				obj["kind"] = r.kind
			}
			p, err := cluster.ParseCiliumPolicy(obj)
			if err != nil {
				invalid = append(invalid, Rejection{Kind: r.kind, Namespace: u.GetNamespace(), Name: u.GetName(), Err: err, version: u.GetResourceVersion()})
				continue
			}
			out = append(out, p)
		}
	}
	return out, invalid
}

func (c *ciliumPolicies) stopAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, r := range c.resources {
		if r.running != nil {
			r.running.stop()
			r.running = nil
		}
	}
}
