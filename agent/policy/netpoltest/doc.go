// Package netpoltest holds the Kubernetes NetworkPolicy conformance
// scenarios, ported from the upstream e2e suite (kubernetes v1.36.4,
// test/e2e/network/netpol/network_policy.go), as data that any datapath can
// replay: the policy compiler's reference model (agent/policy's conformance
// test) and the kernel in the lab, on real packets (agent/source/ebpf's
// TestNetworkPolicyConformanceInNetns).
//
// # The model
//
// Namespaces x, y and z, each labelled only kubernetes.io/metadata.name=<name>
// (as the API server does); a scenario's pods, a subset of x/a … z/c, each
// labelled pod=<name> and declaring one container port per (port, protocol)
// of the scenario, named serve-<port>-<protocol in lower case>
// ("serve-80-tcp"), on which it serves. Upstream probes a pod through a
// service in front of it; policies apply to the backend, so a replay may
// connect to the pod's address directly.
//
// # The files
//
// testdata/NN-<slug>.yaml, one scenario each, in upstream order:
//
//	name: NetworkPolicy between server and client should support a 'default-deny-ingress' policy [Feature:NetworkPolicy]
//	pods: [x/a, x/b, y/a, y/b]     # the model's pods
//	protocols: [TCP]               # the servers' protocols
//	ports: [80]                    # the servers' ports
//	steps:                         # in order; each changes the cluster, then probes it
//	- create: [<manifest>, ...]    # policies created (a manifest as kubectl would apply it)
//	  update: [<manifest>, ...]    # policies replaced, by namespace and name
//	  deleteAllPolicies: true      # every policy deleted
//	  addNamespaceLabels: {y: {ns2: updated}}     # labels added to namespaces
//	  addPodLabels: {x/b: {pod2: updated}}        # labels added to pods
//	  probes:                      # connection attempts from every pod to every pod
//	  - port: 80
//	    protocol: TCP
//	    default: true              # what every pair expects, then:
//	    expect:                    # overrides, applied in order (upstream's ExpectPeer)
//	    - {from: '*', to: x/*, connected: false}
//
// A peer pattern is "*" (every pod), "<namespace>/*" or "<namespace>/<pod>".
// Probe.Expected turns default and expect into the truth table upstream's
// Reachability computes. As upstream (ignoreLoopback), a pod's connection to
// itself is in the table but not compared.
//
// A manifest may name a pod's address, which only the replay knows:
// ${ip:x/b} is x/b's (first) address, ${host:x/b} that address as a host
// prefix (/32 or /128), ${large:x/b} the /4 that contains it, masked
// (upstream's makeLargeCIDRForIP).
package netpoltest
