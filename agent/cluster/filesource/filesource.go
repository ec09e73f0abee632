// Package filesource is the file source of cluster snapshots: the
// endpoints file (package agent/endpoints, the pods and services a
// deployment or the lab writes) and, optionally, a policies file of
// NetworkPolicy, CiliumNetworkPolicy and CiliumClusterwideNetworkPolicy
// manifests, turned into one cluster.Snapshot and re-read when either
// changes.
//
// From the endpoints file: pods with their addresses, node, workload,
// interface and ifindex; their Kubernetes labels are the file's "k8s:"
// labels less those Cilium derives (io.kubernetes.pod.namespace,
// io.cilium.k8s.*), and labels of other sources (reserved:, cidr: ...)
// are dropped; the file has no container ports, so named ports do not
// resolve for its pods. Namespaces are those of the pods and services,
// labelled kubernetes.io/metadata.name=<name> as the API server labels
// every namespace, plus the labels a pod carries as
// "k8s:io.cilium.k8s.namespace.labels.<key>=<value>". Services are
// copied.
//
// The policies file is read by ParsePolicies: each document that does not
// decode or validate is rejected alone, logged with the document number,
// kind, namespace and name and the reason, and counted in
// flowbus_cluster_rejected_objects_total{source="endpoints-file"} (once per read of
// the file); the other policies are kept. A bad endpoints file is an
// error at start; later, a file that does not read (a bad endpoints file,
// a missing file) keeps the previous snapshot, and is logged and counted
// in flowbus_cluster_file_reload_errors_total once per change of the
// files.
package filesource

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/flowbus/flowbus/agent/cluster"
	"github.com/flowbus/flowbus/agent/endpoints"
	"github.com/flowbus/flowbus/internal/tick"
)

// SourceName is the Snapshot.Source of this package's snapshots.
const SourceName = "endpoints-file"

// DefaultReloadEvery is how often the files are checked by default, as the
// eBPF source checks the endpoints file.
const DefaultReloadEvery = 2 * time.Second

// Config configures a Source.
type Config struct {
	EndpointsFile string // required
	PoliciesFile  string // optional
	Store         *cluster.Store
	// ReloadEvery is how often the files' modification times and sizes are
	// checked (default DefaultReloadEvery).
	ReloadEvery time.Duration
}

// Validate reports a missing file or store or a negative interval.
func (c *Config) Validate() error {
	switch {
	case c.EndpointsFile == "":
		return errors.New("file source: the endpoints file is required")
	case c.Store == nil:
		return errors.New("file source: Store is required")
	case c.ReloadEvery < 0:
		return fmt.Errorf("file source: reload interval %v is negative", c.ReloadEvery)
	}
	return nil
}

// Load reads the endpoints file and, when policiesPath is not empty, the
// policies file, and returns their snapshot and the policy documents left
// out. An endpoints file that does not read or validate, or a policies
// file that does not read, is an error.
func Load(endpointsPath, policiesPath string) (*cluster.Snapshot, []Rejection, error) {
	f, err := endpoints.Read(endpointsPath)
	if err != nil {
		return nil, nil, err
	}
	snap := FromEndpoints(f)
	var rejected []Rejection
	if policiesPath != "" {
		fh, err := os.Open(policiesPath)
		if err != nil {
			return nil, nil, fmt.Errorf("policies file: %w", err)
		}
		p, err := ParsePolicies(fh)
		fh.Close()
		if err != nil {
			return nil, nil, fmt.Errorf("policies file %s: %w", policiesPath, err)
		}
		snap.NetworkPolicies, snap.CiliumPolicies, rejected = p.NetworkPolicies, p.CiliumPolicies, p.Rejected
	}
	snap.SortObjects()
	return snap, rejected, nil
}

const (
	nsLabelPrefix  = "io.cilium.k8s.namespace.labels."
	nsNameLabel    = "kubernetes.io/metadata.name"
	podNamespaceLb = "io.kubernetes.pod.namespace"
)

// FromEndpoints returns the pods, namespaces and services of an endpoints
// file as a snapshot (see the package doc), unsorted.
func FromEndpoints(f *endpoints.File) *cluster.Snapshot {
	snap := &cluster.Snapshot{Source: SourceName}
	nsLabels := map[string]map[string]string{}
	namespace := func(ns string) map[string]string {
		l, ok := nsLabels[ns]
		if !ok {
			l = map[string]string{nsNameLabel: ns}
			nsLabels[ns] = l
		}
		return l
	}
	for _, p := range f.Pods {
		cp := cluster.Pod{Namespace: p.Namespace, Name: p.Name, Labels: map[string]string{}, IPs: p.IPs, Node: p.Node,
			Workload: p.Workload, WorkloadKind: p.WorkloadKind, Interface: p.Interface, IfIndex: p.IfIndex}
		nsl := namespace(p.Namespace)
		for _, l := range p.Labels {
			key, value, ok := kubernetesLabel(l)
			switch {
			case !ok || key == podNamespaceLb:
			case strings.HasPrefix(key, nsLabelPrefix):
				nsl[strings.TrimPrefix(key, nsLabelPrefix)] = value
			case strings.HasPrefix(key, "io.cilium.k8s."):
			default:
				cp.Labels[key] = value
			}
		}
		snap.Pods = append(snap.Pods, cp)
	}
	for _, s := range f.Services {
		namespace(s.Namespace)
		cs := cluster.Service{Namespace: s.Namespace, Name: s.Name, ClusterIPs: s.ClusterIPs}
		for _, p := range s.Ports {
			cs.Ports = append(cs.Ports, cluster.ServicePort(p))
		}
		for _, b := range s.Backends {
			cs.Backends = append(cs.Backends, cluster.Backend(b))
		}
		snap.Services = append(snap.Services, cs)
	}
	for ns, l := range nsLabels {
		snap.Namespaces = append(snap.Namespaces, cluster.Namespace{Name: ns, Labels: l})
	}
	return snap
}

// kubernetesLabel splits a Hubble-form label "k8s:key=value" (or a plain
// "key=value") into its key and value; a label of another source
// ("reserved:host") is not a Kubernetes label.
func kubernetesLabel(l string) (key, value string, ok bool) {
	if src, rest, found := strings.Cut(l, ":"); found && !strings.ContainsAny(src, "=/") {
		if src != "k8s" {
			return "", "", false
		}
		l = rest
	}
	key, value, _ = strings.Cut(l, "=")
	return key, value, key != ""
}

// Source publishes the files' snapshots to a Store. Run it once.
type Source struct {
	cfg      Config
	log      *slog.Logger
	rejected *prometheus.CounterVec

	first    *cluster.Snapshot // read by New, published by Run
	stamp    [2]fileStamp      // of the last read, good or bad
	mu       sync.Mutex
	lastRej  []Rejection
	reloadEr atomic.Uint64
}

type fileStamp struct {
	mod  time.Time
	size int64
	err  string // the stat error, so a missing file is reported once
}

func stampOf(path string) fileStamp {
	if path == "" {
		return fileStamp{}
	}
	st, err := os.Stat(path)
	if err != nil {
		return fileStamp{err: err.Error()}
	}
	return fileStamp{mod: st.ModTime(), size: st.Size()}
}

var descReloadErrs = prometheus.NewDesc("flowbus_cluster_file_reload_errors_total",
	"Reads of the endpoints or policies file that failed after start (the previous snapshot stays in use).", nil, nil)

// New reads the files once; a bad endpoints file or an unreadable
// policies file is an error. Rejected policy documents are logged and
// counted, not an error.
func New(cfg Config, log *slog.Logger, reg prometheus.Registerer) (*Source, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.ReloadEvery == 0 {
		cfg.ReloadEvery = DefaultReloadEvery
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Source{cfg: cfg, log: log.With("source", SourceName), rejected: cluster.RejectedObjects(reg)}
	if reg != nil {
		reg.MustRegister(s)
	}
	s.stamp = s.stamps()
	snap, rej, err := Load(cfg.EndpointsFile, cfg.PoliciesFile)
	if err != nil {
		return nil, err
	}
	s.noteRejected(rej)
	s.first = snap
	return s, nil
}

// Rejected returns the policy documents the last read left out.
func (s *Source) Rejected() []Rejection {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Rejection(nil), s.lastRej...)
}

// Run publishes the snapshot New read, then checks the files every
// ReloadEvery and publishes a new snapshot when they changed and read to
// a different one, until ctx is done. It returns ctx's error.
func (s *Source) Run(ctx context.Context) error {
	prev := s.first
	s.cfg.Store.Publish(prev)
	s.first = nil
	s.log.Info("file source: published", "endpoints", s.cfg.EndpointsFile, "policies", s.cfg.PoliciesFile,
		"pods", len(prev.Pods), "services", len(prev.Services), "network_policies", len(prev.NetworkPolicies), "cilium_policies", len(prev.CiliumPolicies))
	check := tick.NewTimer(s.cfg.ReloadEvery) // internal/tick: with the agent's other periodic work
	defer check.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-check.C:
			check.Reset()
		}
		st := s.stamps()
		if st == s.stamp {
			continue
		}
		s.stamp = st
		snap, rej, err := Load(s.cfg.EndpointsFile, s.cfg.PoliciesFile)
		if err != nil {
			s.reloadEr.Add(1)
			s.log.Error("file source: reload failed, the previous snapshot stays in use", "err", err)
			continue
		}
		s.noteRejected(rej)
		snap.Revision = prev.Revision
		if reflect.DeepEqual(snap, prev) {
			continue
		}
		s.cfg.Store.Publish(snap)
		prev = snap
		s.log.Info("file source: reloaded", "pods", len(snap.Pods), "network_policies", len(snap.NetworkPolicies), "cilium_policies", len(snap.CiliumPolicies))
	}
}

func (s *Source) stamps() [2]fileStamp {
	return [2]fileStamp{stampOf(s.cfg.EndpointsFile), stampOf(s.cfg.PoliciesFile)}
}

func (s *Source) noteRejected(rej []Rejection) {
	for _, r := range rej {
		kind := r.Kind
		if kind == "" {
			kind = "unknown"
		}
		s.rejected.WithLabelValues(SourceName, kind).Inc()
		s.log.Error("file source: policy document rejected", "file", s.cfg.PoliciesFile, "document", r.Document, "line", r.Line, "item", r.Item,
			"kind", r.Kind, "namespace", r.Namespace, "name", r.Name, "err", r.Err)
	}
	s.mu.Lock()
	s.lastRej = rej
	s.mu.Unlock()
}

// Describe implements prometheus.Collector.
func (s *Source) Describe(ch chan<- *prometheus.Desc) { ch <- descReloadErrs }

// Collect implements prometheus.Collector.
func (s *Source) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(descReloadErrs, prometheus.CounterValue, float64(s.reloadEr.Load()))
}
