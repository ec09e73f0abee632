// Package k8s is the Kubernetes source of cluster snapshots: client-go
// shared informers on the API server, folded into one cluster.Snapshot at
// a time and published to a cluster.Store.
//
// It watches Pods, Namespaces, Services, EndpointSlices and
// NetworkPolicies (typed informers), ReplicaSets and Jobs (metadata-only
// informers, for owner references), and CiliumNetworkPolicies and
// CiliumClusterwideNetworkPolicies through the dynamic client, as
// unstructured objects. The Cilium CRDs need not exist: their definitions
// are watched, and an informer on a policy resource starts when its CRD is
// established and stops (its policies leaving the snapshot) when the CRD
// goes. The agent's RBAC therefore needs get, list and watch on pods,
// namespaces, services, endpointslices.discovery.k8s.io,
// networkpolicies.networking.k8s.io, replicasets.apps, jobs.batch,
// customresourcedefinitions.apiextensions.k8s.io and the two cilium.io
// policy resources.
//
// # What a snapshot holds
//
// Pods: every pod not in phase Succeeded or Failed (a finished pod's
// addresses go back to the pool and may already be another pod's), with
// its status.podIPs (status.podIP when the list is empty; a pending pod
// has none), spec.nodeName, spec.hostNetwork, labels and the named and
// unnamed ports of its containers (protocol TCP when unset). Its workload
// follows the controller owner reference: a ReplicaSet's owner (a
// Deployment) or the ReplicaSet itself when it has none; a Job's owner (a
// CronJob) or the Job; a StatefulSet, DaemonSet or any other controller
// directly; a pod with no controller is its own workload, of kind Pod. When
// the ReplicaSet or Job is not (yet) in the cache, or its UID is not the
// one the pod names, a ReplicaSet named <deployment>-<pod-template-hash>
// is taken for that Deployment and anything else for itself; the
// ReplicaSet's own arrival triggers the next snapshot, which is exact.
//
// Services: spec.clusterIPs (none for headless and ExternalName
// services), the ports (TargetPort 0 when it is a name: the backends carry
// the number), and the backends from the EndpointSlices labelled
// kubernetes.io/service-name: every address of every endpoint whose ready
// condition is true (unset counts as true, as the API says), for every
// port of its slice; when a service has no ready endpoint at all, the
// endpoints that are serving and terminating instead, as kube-proxy falls
// back to them so that connections drain during a rollout. Backends are
// unique by (address, port, protocol), however many slices repeat them. A
// slice without ports gives backends of port 0 (all ports). FQDN slices
// are ignored.
//
// NetworkPolicies are the informer's objects (managed fields and the
// last-applied annotation removed), shared with the cache: consumers must
// not modify them. Cilium policies go through cluster.ParseCiliumPolicy; a
// malformed one is left out, logged once per resourceVersion with its kind,
// namespace, name and reason, and counted in
// flowbus_cluster_rejected_objects_total{source="kubernetes"}; the rest are
// kept.
//
// # When snapshots are published
//
// The first snapshot is published once every informer has synced (and the
// policy informers of the CRDs established at start). After that, any
// event marks the state changed, and a snapshot is built from the caches
// as soon as MinInterval (default 50 ms) has passed since the previous
// build began: changes less than MinInterval apart share one snapshot, at
// most one is built per MinInterval, and a change is published at most
// MinInterval plus one build after it arrived (BenchmarkSnapshotBuild
// measures one of 10,000 pods), far inside the one second a relabel has to
// reach the kernel. A build equal to the last
// published snapshot (a status-only pod update, a resync) is not
// published. A policy informer started later joins the snapshots once it
// has synced, all its policies at once, so a consumer never sees half of
// a resource's policies.
//
// # Disconnects
//
// Decision: resume through the informers, not around them. When the API
// server goes away, each reflector keeps its cache and retries (a refused
// connection with client-go's backoff, from 0.8 s doubling with jitter to
// 30-60 s, so the source is back within a minute of the API server, and
// within seconds of a short outage); back, it resumes its watch from the
// last resourceVersion it saw or, when that is too old, relists and
// replaces its cache, deletions included. The caches are keyed by
// namespace and name, and a snapshot is rebuilt from them whole, so an
// object can be neither duplicated nor lost across the gap, and nothing is
// published during the outage (nothing changed). TestResumesAfterAPIServerRestart
// stops the API server, deletes, relabels and creates pods, deletes a
// service and swaps the NetworkPolicies through a second API server on the
// same etcd, starts the first again, and checks that no snapshot holds a
// pod, address or service twice and that the last one equals the API's
// own lists.
//
// # Memory
//
// The pod informer keeps slim copies (the fields above, not volumes, env,
// conditions or managed fields), ReplicaSets and Jobs are metadata only,
// and CRDs only their conditions. BenchmarkInformerMemory reports the heap
// in use for 10,000 pods, beside a plain pod informer's.
package k8s
