// Package cluster is the agent's view of the cluster, one immutable
// Snapshot at a time: the pods with their labels, addresses, owning
// workload and (when the source knows it) host-side interface, the
// namespaces with their labels, the services, and the policies
// (Kubernetes NetworkPolicy objects, CiliumNetworkPolicy and
// CiliumClusterwideNetworkPolicy objects as unstructured specs).
//
// Sources publish whole snapshots to a Store: the endpoints file (package
// agent/endpoints, with a policies file beside it; agent/cluster/filesource)
// and the Kubernetes informers (agent/cluster/k8s). Consumers (identities, the policy compiler, flow enrichment)
// read the latest snapshot and wait for the next. A snapshot is never
// modified after Publish; a source that changes its view publishes a new
// one.
//
// Decision: whole snapshots, not event streams. Identities and policy are
// recomputed from a snapshot and the kernel maps brought to the result by
// a diff, so a lost, repeated or reordered event can never leave the
// kernel in a state no snapshot describes, and a resync after a
// disconnect is just the next snapshot. The cost is recomputing on every
// change, which sources bound by coalescing changes (a snapshot at most
// every few tens of milliseconds).
package cluster

import (
	"context"
	"net/netip"
	"sync"

	networkingv1 "k8s.io/api/networking/v1"
)

// Pod is one pod.
type Pod struct {
	Namespace string
	Name      string
	// Labels are the pod's Kubernetes labels (not yet in Hubble's "k8s:"
	// form, which identities derive).
	Labels map[string]string
	IPs    []netip.Addr
	Node   string
	// UID is the pod's Kubernetes UID, which names its cgroup on a node
	// (kubepods…-pod<UID>.slice, or pod<UID> with the cgroupfs driver);
	// "" when the source has none (the lab's endpoints file).
	UID          string
	HostNetwork  bool   // shares the node's addresses: not an endpoint
	Workload     string // owning workload, resolved through owner references
	WorkloadKind string // Deployment, StatefulSet, DaemonSet, Job, CronJob, ...
	// Ports are the containers' declared ports, for named ports in
	// policies.
	Ports []ContainerPort
	// Interface and IfIndex are the pod's host-side interface on its node,
	// when the source knows them (the lab's endpoints file does; the agent
	// otherwise finds the interface by address).
	Interface string
	IfIndex   uint32
}

// ContainerPort is a port a pod's container declares.
type ContainerPort struct {
	Name     string
	Port     uint16
	Protocol string // "TCP", "UDP" or "SCTP"
}

// Namespace is one namespace and its labels.
type Namespace struct {
	Name   string
	Labels map[string]string
}

// Service is a Kubernetes service and its ready backends.
type Service struct {
	Namespace  string
	Name       string
	ClusterIPs []netip.Addr
	Ports      []ServicePort
	Backends   []Backend
}

// ServicePort is one port of a service.
type ServicePort struct {
	Name       string
	Port       uint16
	TargetPort uint16
	Protocol   string
}

// Backend is one pod address behind a service.
type Backend struct {
	Namespace string
	Pod       string
	IP        netip.Addr
	Port      uint16
	Protocol  string
}

// CiliumPolicy is a CiliumNetworkPolicy (namespaced) or a
// CiliumClusterwideNetworkPolicy (Namespace empty, Clusterwide set), with
// its spec (and specs) as the API server returned them, unparsed.
type CiliumPolicy struct {
	Namespace   string
	Name        string
	Clusterwide bool
	Spec        map[string]any
	Specs       []map[string]any
}

// Snapshot is the cluster as a source saw it at one moment. It must not be
// modified once published.
type Snapshot struct {
	// Revision numbers snapshots in the order the Store published them,
	// from 1.
	Revision        uint64
	Source          string // "endpoints-file", "kubernetes"
	Pods            []Pod
	Namespaces      []Namespace
	Services        []Service
	NetworkPolicies []*networkingv1.NetworkPolicy
	CiliumPolicies  []CiliumPolicy
}

// Store holds the latest snapshot. It is safe for concurrent use.
type Store struct {
	mu      sync.Mutex
	cur     *Snapshot
	changed chan struct{} // closed and replaced on every Publish
}

// NewStore returns an empty Store: Latest is nil until the first Publish.
func NewStore() *Store { return &Store{changed: make(chan struct{})} }

// Publish makes s the latest snapshot, numbering it, and wakes every Wait.
func (st *Store) Publish(s *Snapshot) {
	st.mu.Lock()
	defer st.mu.Unlock()
	s.Revision = 1
	if st.cur != nil {
		s.Revision = st.cur.Revision + 1
	}
	st.cur = s
	close(st.changed)
	st.changed = make(chan struct{})
}

// Latest returns the latest snapshot, or nil before the first.
func (st *Store) Latest() *Snapshot {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.cur
}

// Wait returns the latest snapshot once its revision is above after,
// blocking until one is published or ctx is done (then it returns nil and
// ctx's error).
func (st *Store) Wait(ctx context.Context, after uint64) (*Snapshot, error) {
	for {
		st.mu.Lock()
		cur, changed := st.cur, st.changed
		st.mu.Unlock()
		if cur != nil && cur.Revision > after {
			return cur, nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}
