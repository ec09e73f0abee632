package k8s

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/metadata/metadatainformer"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/flowbus/flowbus/agent/cluster"
)

// SourceName is the Snapshot.Source of this package's snapshots.
const SourceName = "kubernetes"

// DefaultMinInterval is the default shortest time between two snapshot
// builds.
const DefaultMinInterval = 50 * time.Millisecond

var (
	replicaSets = schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "replicasets"}
	jobs        = schema.GroupVersionResource{Group: "batch", Version: "v1", Resource: "jobs"}
)

// Config configures a Source.
type Config struct {
	// Client, Metadata and Dynamic are the API clients; NewClients makes
	// all three from one rest.Config.
	Client   kubernetes.Interface
	Metadata metadata.Interface
	Dynamic  dynamic.Interface
	// Store receives the snapshots.
	Store *cluster.Store
	// MinInterval is the shortest time between two snapshot builds
	// (default DefaultMinInterval).
	MinInterval time.Duration
}

// Validate reports a missing client or store or a negative interval.
func (c *Config) Validate() error {
	switch {
	case c.Client == nil || c.Metadata == nil || c.Dynamic == nil:
		return errors.New("kubernetes source: Client, Metadata and Dynamic are required")
	case c.Store == nil:
		return errors.New("kubernetes source: Store is required")
	case c.MinInterval < 0:
		return fmt.Errorf("kubernetes source: MinInterval %v is negative", c.MinInterval)
	}
	return nil
}

// NewClients fills Client, Metadata and Dynamic from rc.
func (c *Config) NewClients(rc *rest.Config) error {
	var err error
	if c.Client, err = kubernetes.NewForConfig(rc); err != nil {
		return fmt.Errorf("kubernetes client: %w", err)
	}
	if c.Metadata, err = metadata.NewForConfig(rc); err != nil {
		return fmt.Errorf("kubernetes metadata client: %w", err)
	}
	if c.Dynamic, err = dynamic.NewForConfig(rc); err != nil {
		return fmt.Errorf("kubernetes dynamic client: %w", err)
	}
	return nil
}

// RESTConfig loads the client configuration from the kubeconfig file at
// path, or the pod's in-cluster configuration (service account token and
// KUBERNETES_SERVICE_HOST) when path is empty.
func RESTConfig(path string) (*rest.Config, error) {
	if path == "" {
		rc, err := rest.InClusterConfig()
		if err != nil {
			return nil, fmt.Errorf("in-cluster kubernetes config (or give --kubeconfig): %w", err)
		}
		return rc, nil
	}
	rc, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig %s: %w", path, err)
	}
	return rc, nil
}

// Source keeps informers on the API server and publishes snapshots of
// their caches to a cluster.Store. Run it once.
type Source struct {
	cfg Config
	log *slog.Logger

	factory     informers.SharedInformerFactory
	metaFactory metadatainformer.SharedInformerFactory
	policies    *ciliumPolicies

	// The informers of the typed and metadata-only resources.
	pods, namespaces, services, slices, netpols, rsets, jobs cache.SharedIndexInformer

	dirty  chan struct{} // one pending "state changed"
	synced chan struct{} // closed after the first publish

	rejected *prometheus.CounterVec
	mu       sync.Mutex
	logged   map[string]string // invalid objects already logged: key -> resourceVersion
	invalid  []Rejection       // of the last build
	stats    struct{ builds, published, unchanged, watchErrors atomic.Uint64 }
}

// Rejection is an object a snapshot left out, and why.
type Rejection struct {
	Kind, Namespace, Name string
	Err                   error
	version               string // resourceVersion
}

// New returns a Source; nothing is contacted until Run.
func New(cfg Config, log *slog.Logger, reg prometheus.Registerer) (*Source, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.MinInterval == 0 {
		cfg.MinInterval = DefaultMinInterval
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Source{
		cfg: cfg, log: log.With("source", SourceName),
		dirty: make(chan struct{}, 1), synced: make(chan struct{}),
		rejected: cluster.RejectedObjects(reg),
		logged:   map[string]string{},
	}
	if reg != nil {
		reg.MustRegister(s)
	}
	s.factory = informers.NewSharedInformerFactoryWithOptions(cfg.Client, 0, informers.WithTransform(slimMeta))
	s.pods = s.factory.Core().V1().Pods().Informer()
	s.namespaces = s.factory.Core().V1().Namespaces().Informer()
	s.services = s.factory.Core().V1().Services().Informer()
	s.slices = s.factory.Discovery().V1().EndpointSlices().Informer()
	s.netpols = s.factory.Networking().V1().NetworkPolicies().Informer()
	if err := s.pods.SetTransform(podEntryOf); err != nil {
		return nil, fmt.Errorf("kubernetes source: %w", err)
	}
	if err := s.slices.SetTransform(sliceEntryOf); err != nil {
		return nil, fmt.Errorf("kubernetes source: %w", err)
	}
	s.metaFactory = metadatainformer.NewSharedInformerFactoryWithOptions(cfg.Metadata, 0, metadatainformer.WithTransform(slimOwner))
	s.rsets = s.metaFactory.ForResource(replicaSets).Informer()
	s.jobs = s.metaFactory.ForResource(jobs).Informer()
	s.policies = newCiliumPolicies(cfg.Dynamic, s.log, s.changed, s.watchError)
	for _, inf := range []cache.SharedIndexInformer{s.pods, s.namespaces, s.services, s.slices, s.netpols, s.rsets, s.jobs} {
		if _, err := inf.AddEventHandler(s.handler()); err != nil {
			return nil, fmt.Errorf("kubernetes source: %w", err)
		}
		if err := inf.SetWatchErrorHandlerWithContext(s.watchError); err != nil {
			return nil, fmt.Errorf("kubernetes source: %w", err)
		}
	}
	return s, nil
}

// Synced is closed once the first snapshot is published.
func (s *Source) Synced() <-chan struct{} { return s.synced }

// Rejected returns the objects the last snapshot left out.
func (s *Source) Rejected() []Rejection {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Rejection(nil), s.invalid...)
}

// Run starts the informers, publishes the first snapshot once they have
// synced and then one per change (coalesced, see the package doc), until
// ctx is done. It returns ctx's error; a lost API server is retried, not
// returned.
func (s *Source) Run(ctx context.Context) error {
	defer s.factory.Shutdown()
	defer s.metaFactory.Shutdown()
	defer s.policies.stopAll()
	s.factory.Start(ctx.Done())
	s.metaFactory.Start(ctx.Done())
	s.policies.start(ctx)

	start := time.Now()
	waitLog := time.NewTicker(10 * time.Second)
	defer waitLog.Stop()
	for !s.hasSynced() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-waitLog.C:
			s.log.Warn("kubernetes source: waiting for the informers' first lists", "waited", time.Since(start).Round(time.Second))
		case <-time.After(20 * time.Millisecond):
		}
	}
	var prev *cluster.Snapshot
	last := time.Now()
	s.publish(&prev)
	s.log.Info("kubernetes source: synced", "took", time.Since(start).Round(time.Millisecond),
		"pods", len(prev.Pods), "services", len(prev.Services), "network_policies", len(prev.NetworkPolicies), "cilium_policies", len(prev.CiliumPolicies))
	close(s.synced)
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-s.dirty:
		}
		if wait := time.Until(last.Add(s.cfg.MinInterval)); wait > 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(wait):
			}
		}
		// What changed until now is in the caches the build reads; a
		// change from here on marks the state dirty again.
		select {
		case <-s.dirty:
		default:
		}
		last = time.Now()
		s.publish(&prev)
	}
}

func (s *Source) hasSynced() bool {
	for _, inf := range []cache.SharedIndexInformer{s.pods, s.namespaces, s.services, s.slices, s.netpols, s.rsets, s.jobs} {
		if !inf.HasSynced() {
			return false
		}
	}
	return s.policies.hasSynced()
}

// publish builds a snapshot and publishes it unless it equals *prev.
func (s *Source) publish(prev **cluster.Snapshot) {
	snap := s.build()
	s.stats.builds.Add(1)
	if *prev != nil {
		snap.Revision = (*prev).Revision
		if reflect.DeepEqual(snap, *prev) {
			s.stats.unchanged.Add(1)
			return
		}
	}
	s.cfg.Store.Publish(snap)
	s.stats.published.Add(1)
	*prev = snap
}

// changed marks the state dirty; it never blocks.
func (s *Source) changed() {
	select {
	case s.dirty <- struct{}{}:
	default:
	}
}

func (s *Source) handler() cache.ResourceEventHandler {
	return cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { s.changed() },
		UpdateFunc: func(any, any) { s.changed() },
		DeleteFunc: func(any) { s.changed() },
	}
}

// watchError counts and logs a failed list or watch, except those of an
// informer being stopped.
func (s *Source) watchError(ctx context.Context, r *cache.Reflector, err error) {
	if ctx.Err() != nil || errors.Is(err, context.Canceled) {
		return
	}
	s.stats.watchErrors.Add(1)
	cache.DefaultWatchErrorHandler(ctx, r, err)
}

var (
	descBuilds    = prometheus.NewDesc("flowbus_k8s_snapshot_builds_total", "Snapshots built from the informers' caches.", nil, nil)
	descPublished = prometheus.NewDesc("flowbus_k8s_snapshots_published_total", "Snapshots published (builds that differed from the previous one).", nil, nil)
	descWatchErrs = prometheus.NewDesc("flowbus_k8s_watch_errors_total", "List and watch failures the informers reported, each retried (a refused connection while the API server is down is retried without a report).", nil, nil)
)

// Describe implements prometheus.Collector.
func (s *Source) Describe(ch chan<- *prometheus.Desc) {
	ch <- descBuilds
	ch <- descPublished
	ch <- descWatchErrs
}

// Collect implements prometheus.Collector.
func (s *Source) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(descBuilds, prometheus.CounterValue, float64(s.stats.builds.Load()))
	ch <- prometheus.MustNewConstMetric(descPublished, prometheus.CounterValue, float64(s.stats.published.Load()))
	ch <- prometheus.MustNewConstMetric(descWatchErrs, prometheus.CounterValue, float64(s.stats.watchErrors.Load()))
}
