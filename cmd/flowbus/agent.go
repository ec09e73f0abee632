package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	observerpb "github.com/cilium/cilium/api/v1/observer"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"
	"k8s.io/klog/v2"

	"github.com/flowbus/flowbus/agent"
	"github.com/flowbus/flowbus/agent/aggregate"
	"github.com/flowbus/flowbus/agent/cluster"
	"github.com/flowbus/flowbus/agent/cluster/filesource"
	"github.com/flowbus/flowbus/agent/cluster/k8s"
	"github.com/flowbus/flowbus/agent/export"
	"github.com/flowbus/flowbus/agent/l7/fqdn"
	"github.com/flowbus/flowbus/agent/l7/stream"
	"github.com/flowbus/flowbus/agent/metrics"
	"github.com/flowbus/flowbus/agent/source/ebpf"
	"github.com/flowbus/flowbus/agent/source/hubblegrpc"
	"github.com/flowbus/flowbus/agent/source/hubblejson"
	"github.com/flowbus/flowbus/agent/source/synthetic"
	"github.com/flowbus/flowbus/bpf"
	"github.com/flowbus/flowbus/internal/bpfpin"
	"github.com/flowbus/flowbus/internal/flowcodec"
	"github.com/flowbus/flowbus/internal/observer"
	"github.com/flowbus/flowbus/internal/observer/query"
	"github.com/flowbus/flowbus/sinks/kafka"
	"github.com/flowbus/flowbus/sinks/nats"
	"github.com/flowbus/flowbus/sinks/spool"
	"github.com/flowbus/flowbus/sinks/stdout"
)

// agentFlags are the flags of `flowbus agent`; `flowbus demo` shares them.
type agentFlags struct {
	node, source, bus, dataDir   *string
	natsPort, natsPartitions     *int
	seed                         *int64
	rate                         *float64
	count                        *uint64
	clockOffset                  *time.Duration
	hubblePath                   *string
	follow                       *bool
	hubbleServer, hubbleCA       *string
	hubbleCert, hubbleKey        *string
	hubbleServerName             *string
	hubbleTLS                    *bool
	hubbleFilter                 *[]string
	interfaces                   *[]string
	endpoints                    *string
	endpointsSource, kubeconfig  *string
	policies                     *string
	activeTimeout                *time.Duration
	ringbufSize, maxFlows        *uint32
	noAggregate                  *bool
	aggWindow                    *time.Duration
	aggMaxKeys                   *int
	maxRows, maxBytes, queue     *int
	linger                       *time.Duration
	spoolDir                     *string
	spoolMax                     *int64
	topic                        *string
	createTopic                  *bool
	kafkaPartitions              *int
	busConnFlags                 // Kafka and NATS TLS and authentication
	observerAddr                 *string
	observerSet                  func() bool
	observerInsecure             *bool
	ringSize                     *int
	tlsCert, tlsKey, tlsClientCA *string
	metricsAddr                  *string
	metricsTLS                   metricsTLS
	metricSpecs                  *[]string
	metricsMaxLabels             *int
	policyEnforcement            *string
	socketLB                     *bool
	socketLBCgroup               *string
	socketLBAlgorithm            *string
	socketLBPeer                 *bool
	bpfPinDir                    *string
	clusterName                  *string
	l7Ports                      stream.Ports
	l7HeadBytes                  *int
	l7RingBufSize                *uint32
	l7MaxConns                   *int
	fqdnGrace                    *time.Duration
	ocsf                         *agentOCSFFlags // the agent's, not the demo's (agentocsf.go)
}

// Bounds of the agent's numeric flags that no package states.
const (
	maxRingSize    = 1 << 20 // flows kept for the Observer API
	maxRingBufSize = 1 << 30 // bytes of the kernel ring buffer
)

// addAgentFlags adds the flags of `flowbus agent` to fs, in groups, with
// their checks and the deprecated names of renamed ones.
func addAgentFlags(fs *flagSet, demo bool) *agentFlags {
	host, _ := os.Hostname()
	f := &agentFlags{}
	fs.group("Source")
	f.node = fs.String("node", host, "node name carried by every flow and bus message")
	f.source = fs.String("source", "synthetic", "flow source: synthetic (seeded payments fleet), hubble-json (hubble observe -o json lines), hubble (Hubble's Observer API, live: a node's hubble.sock or Hubble Relay), ebpf (tcx programs on pod veths; root, Linux)")
	f.seed = fs.Int64("seed", 1, "synthetic: random seed (same seed, same flows)")
	f.rate = fs.Float64("rate", 10000, "synthetic: raw flows per second (0 = as fast as possible)")
	fs.check("rate", finiteAtLeast(f.rate, 0))
	f.count = fs.Uint64("count", 0, "synthetic: stop after this many flows (0 = until stopped)")
	f.clockOffset = fs.Duration("clock-offset", 0, "synthetic: stamp the flows this far off the clock, as a node whose clock is wrong (-5m: 5 minutes behind); the fault tests use it to check how the aggregator takes late rows")
	fs.check("clock-offset", between(f.clockOffset, -24*time.Hour, 24*time.Hour))
	f.hubblePath = fs.String("hubble-json", "-", "hubble-json: a file, a directory of rotated files (oldest first), or - for stdin")
	f.follow = fs.Bool("follow", false, "hubble-json: keep reading the file as it grows (across truncation and rotation)")
	f.hubbleServer = fs.String("hubble-server", "unix:///var/run/cilium/hubble.sock", "hubble: Hubble's Observer API to follow: a node's Cilium agent (unix:///var/run/cilium/hubble.sock) or Hubble Relay (host:4245); resumes where it stopped (state in --data-dir)")
	f.hubbleTLS = fs.Bool("hubble-tls", false, "hubble: connect with TLS")
	f.hubbleCA = fs.String("hubble-tls-ca-file", "", "hubble: the Hubble CA to verify the server (default: system roots)")
	f.hubbleCert = fs.String("hubble-tls-cert-file", "", "hubble: client certificate (mTLS), signed by the Hubble CA")
	f.hubbleKey = fs.String("hubble-tls-key-file", "", "hubble: client key (mTLS)")
	f.hubbleServerName = fs.String("hubble-tls-server-name", "", "hubble: name to verify in the server's certificate (a Cilium agent's: <node>.<cluster>.hubble-grpc.cilium.io)")
	f.hubbleFilter = fs.StringArray("hubble-filter", nil, "hubble: server-side filter in hubble observe's flags, e.g. '--not --label reserved:health'; repeatable, read as one command line")
	f.interfaces = fs.StringSlice("interfaces", []string{"lxc*"}, "ebpf: the pods' host-side interfaces to attach to, names or globs (lxc*, veth*); new ones are attached as they appear; every record is observed at its pod's interface (from-endpoint / to-endpoint)")
	f.endpoints = fs.String("endpoints", "", "ebpf: endpoints file (YAML/JSON) mapping IPs and interfaces to pods; 'flowbus lab up' writes one")
	f.endpointsSource = fs.String("endpoints-source", "file", "where the agent's view of the cluster (pods, services, policies) comes from: file (--endpoints and --policies) or kubernetes (the API server's informers)")
	f.kubeconfig = fs.String("kubeconfig", "", "--endpoints-source kubernetes: kubeconfig file; empty uses the pod's in-cluster service account")
	f.policies = fs.String("policies", "", "--endpoints-source file: policies file, YAML documents of NetworkPolicy, CiliumNetworkPolicy and CiliumClusterwideNetworkPolicy manifests")
	f.policyEnforcement = fs.String("policy-enforcement", "default", "ebpf: default (enforce the cluster's network policies in the program that observes: pods a policy selects are default deny in that direction) or never (observe only: every verdict FORWARDED)")
	fs.check("policy-enforcement", oneOf(f.policyEnforcement, "default", "never"))
	f.clusterName = fs.String("cluster-name", "", "cluster name in identities (label io.cilium.k8s.policy.cluster); empty is Cilium's default, \"default\"")
	f.activeTimeout = fs.Duration("active-timeout", bpf.DefaultActiveTimeout, "ebpf: report long-lived flows this often")
	fs.check("active-timeout", positive(f.activeTimeout))
	f.ringbufSize = fs.Uint32("ringbuf-size", bpf.DefaultRingBufSize, "ebpf: ring buffer bytes (a power of two, a multiple of the page size)")
	page := uint32(os.Getpagesize())
	fs.check("ringbuf-size", bound{func() bool {
		n := *f.ringbufSize
		return n >= page && n <= maxRingBufSize && n&(n-1) == 0
	}, fmt.Sprintf("a power of two from %d (the page size) to %d", page, maxRingBufSize)})
	f.maxFlows = fs.Uint32("max-flows", bpf.DefaultMaxFlows, "ebpf: capacity of each kernel flow map (one for IPv4, one for IPv6); a full map reports its new flows packet by packet and counts them")
	fs.check("max-flows", atLeast(f.maxFlows, 1))
	fs.Var(&f.l7Ports, "l7", "ebpf: follow L7 without a policy on these server ports, as protocol:port[,port...] items separated by spaces (repeatable): http (HTTP/1.1), grpc or http2, dns (UDP and TCP), kafka, auto (detected from the client's first bytes); a port is TCP unless it ends in /udp (dns and auto only), e.g. 'http:8080 grpc:9090 dns:53 kafka:9092'; the kernel captures the head of every segment of those connections, and L7 records (REQUEST, RESPONSE with latency) join the flows; empty: off")
	f.l7HeadBytes = fs.Int("l7-head-bytes", 512, "ebpf: bytes of each segment's payload the kernel captures for the L7 parsers (a header longer than the segment's head cannot be read and is counted)")
	fs.check("l7-head-bytes", between(f.l7HeadBytes, stream.MinHeadBytes, bpf.L7HeadMax))
	f.l7RingBufSize = fs.Uint32("l7-ringbuf-size", bpf.DefaultL7RingBuf, "ebpf: L7 capture ring buffer bytes (a power of two, a multiple of the page size); a full ring loses captures, counted (flowbus_l7_captures_total{result=\"ringbuf\"})")
	fs.check("l7-ringbuf-size", bound{func() bool {
		n := *f.l7RingBufSize
		return n >= page && n <= maxRingBufSize && n&(n-1) == 0
	}, fmt.Sprintf("a power of two from %d (the page size) to %d", page, maxRingBufSize)})
	f.l7MaxConns = fs.Int("l7-max-conns", stream.DefaultMaxConns, "ebpf: L7 connections followed at once; over it the least recently active is given up (counted)")
	fs.check("l7-max-conns", between(f.l7MaxConns, 1, 1<<22))
	f.socketLB = fs.Bool("socket-lb", false, "ebpf: load balance the cluster's services at the socket layer, as Cilium's socket LB: cgroup programs translate a ClusterIP:port to one of its ready backends at connect() and sendmsg() (ECONNREFUSED when it has none) and give the ClusterIP back at getpeername() and recvmsg(); each decision is a TRANSLATED record (DROPPED, SERVICE_BACKEND_NOT_FOUND for a refusal); needs --endpoints or --endpoints-source kubernetes")
	f.socketLBCgroup = fs.String("socket-lb-cgroup", "", "--socket-lb: the cgroup v2 directory to attach to (every process in it or below is load balanced; 'flowbus lab up' prints the lab's); empty: the cgroup v2 root, from the mount table")
	f.socketLBAlgorithm = fs.String("socket-lb-algorithm", "random", "--socket-lb: how a backend is picked: random (per connect) or maglev (consistent hashing of the socket cookie)")
	fs.check("socket-lb-algorithm", oneOf(f.socketLBAlgorithm, "random", "maglev"))
	f.socketLBPeer = fs.Bool("socket-lb-peer", true, "--socket-lb: getpeername() on a translated TCP socket returns the ClusterIP, as the application dialled; false leaves it the backend, saves each connect() the slot that remembers the translation (~20 ns) and each TCP close() the program that frees it (70-100 ns); UDP replies are still rewritten")
	f.bpfPinDir = fs.String("bpf-pin-dir", "", "ebpf: pin the kernel's flow, ipcache, endpoint, policy and socket LB maps in this directory of the BPF filesystem, for 'flowbus bpf' and 'flowbus audit' (removed at a clean stop; a killed agent's are replaced at the next start); empty: "+bpfpin.DefaultRoot+"/<node>; off: no pins")
	f.fqdnGrace = fs.Duration("fqdn-grace", 0, "ebpf: keep a DNS answer's names on flows this long past its TTL (as Cilium's --tofqdns-idle-connection-grace-period)")
	fs.check("fqdn-grace", atLeast(f.fqdnGrace, 0))

	fs.group("Aggregation and export")
	f.noAggregate = fs.Bool("no-aggregate", false, "publish every raw flow instead of folding flows with the same key per window")
	f.aggWindow = fs.Duration("aggregate-window", aggregate.DefaultWindow, "aggregation window")
	fs.check("aggregate-window", atLeast(f.aggWindow, time.Millisecond))
	f.aggMaxKeys = fs.Int("aggregate-max-keys", aggregate.DefaultMaxKeys, "records held per window; more flush early (counted)")
	fs.check("aggregate-max-keys", between(f.aggMaxKeys, 1, aggregate.MaxKeysLimit))
	f.maxRows = fs.Int("batch-rows", export.DefaultMaxRows, "rows per bus message before it is sent")
	fs.check("batch-rows", atLeast(f.maxRows, 1))
	f.maxBytes = fs.Int("batch-bytes", export.DefaultMaxBytes, "estimated bytes per batch before it is sent")
	fs.check("batch-bytes", atLeast(f.maxBytes, 1))
	f.linger = fs.Duration("linger", export.DefaultLinger, "longest a batch waits for more rows")
	fs.check("linger", positive(f.linger))
	f.queue = fs.Int("queue-messages", export.DefaultQueueMessages, "encoded messages held in memory while the bus is slow, before the spool")
	fs.check("queue-messages", atLeast(f.queue, 1))
	f.spoolDir = fs.String("spool-dir", "", "disk spool used while the bus is down (default <data-dir>/spool; 'off' disables: overflow is dropped and counted)")
	f.spoolMax = fs.Int64("spool-max-bytes", spool.DefaultMaxBytes, "spool byte cap; past it the oldest segment is dropped (counted)")
	fs.check("spool-max-bytes", atLeast(f.spoolMax, spool.DefaultSegmentBytes))

	fs.group("Bus")
	f.bus = fs.String("bus", "embedded", "where flows go: embedded (NATS JetStream started in-process, state in --data-dir), nats://host:port, kafka://host:port[,host:port], or stdout (Hubble JSON lines, in time order when the source is)")
	f.dataDir = fs.String("data-dir", "./flowbus-data", "state directory: embedded NATS store, spool")
	f.natsPort = fs.Int("nats-port", 4222, "port of the embedded NATS server (127.0.0.1); -1 picks a free one")
	fs.check("nats-port", bound{func() bool { return *f.natsPort == -1 || *f.natsPort >= 1 && *f.natsPort <= 65535 },
		"-1 (a free port) or from 1 to 65535"})
	f.natsPartitions = fs.Int("nats-partitions", nats.DefaultPartitions, "NATS: partitions (subjects flowbus.flows.v1.<p>); must match the aggregators'")
	fs.check("nats-partitions", between(f.natsPartitions, 1, nats.MaxPartitions))

	fs.group("Kafka")
	f.topic = fs.String("kafka-topic", kafka.DefaultTopic, "Kafka topic")
	f.createTopic = fs.Bool("kafka-create-topic", true, "create the Kafka topic when missing")
	f.kafkaPartitions = fs.Int("kafka-partitions", 16, "partitions of a topic the agent creates")
	fs.check("kafka-partitions", between(f.kafkaPartitions, 1, math.MaxInt32))
	f.addKafkaConnFlags(fs, true)

	fs.group("NATS")
	f.addNATSConnFlags(fs)

	fs.group("Observer API")
	obs, met := "127.0.0.1:4244", ":9965"
	if demo {
		met = "127.0.0.1:9965"
	}
	f.observerAddr = fs.String("observer-address", obs, "serve Hubble's Observer gRPC API here (hubble observe --server, flowbus observe); empty disables. Unset, it is loopback, or :4244 with --observer-tls-cert-file; a plaintext address beyond loopback needs --observer-insecure")
	f.observerSet = func() bool { return fs.Changed("observer-address") }
	f.observerInsecure = fs.Bool("observer-insecure", false, "accept serving the Observer API in plaintext on an address beyond loopback (every pod's flows, to anyone who can reach it); warns")
	f.ringSize = fs.Int("ring-size", observer.DefaultRingSize, "flows kept for the Observer API (rounded up to a power of two)")
	fs.check("ring-size", between(f.ringSize, 1, maxRingSize))
	f.tlsCert = fs.String("observer-tls-cert-file", "", "Observer API: server certificate (enables TLS)")
	fs.alias("observer-tls-cert", "observer-tls-cert-file")
	f.tlsKey = fs.String("observer-tls-key-file", "", "Observer API: server key")
	fs.alias("observer-tls-key", "observer-tls-key-file")
	f.tlsClientCA = fs.String("observer-tls-client-ca-file", "", "Observer API: CA for client certificates (enables mTLS)")
	fs.alias("observer-tls-client-ca", "observer-tls-client-ca-file")

	fs.group("Metrics")
	f.metricsAddr = fs.String("metrics-address", met, "serve Prometheus metrics (Hubble names + flowbus_*) here at /metrics; empty disables")
	f.metricSpecs = fs.StringArray("metrics", []string{"flow", "drop", "tcp", "http", "dns"}, "Hubble metrics to enable, in Hubble's --metrics syntax (e.g. 'drop:sourceContext=namespace;destinationContext=workload-name'); repeatable")
	f.metricsMaxLabels = fs.Int("metrics-max-label-sets", metrics.DefaultMaxLabelSets, "label combinations per metric before overflow is counted instead")
	fs.check("metrics-max-label-sets", atLeast(f.metricsMaxLabels, 1))
	addMetricsTLSFlags(fs, &f.metricsTLS)
	return f
}

// agentRuntime is a built agent with everything around it.
type agentRuntime struct {
	agent *agent.Agent
	// cluster holds the cluster snapshots of --endpoints-source; it stays
	// empty when the file source has no --endpoints.
	cluster *cluster.Store
	pub     export.Publisher
	ring    *observer.Ring
	reg     *prometheus.Registry
	natsURL string // set when the bus is NATS (embedded or not)
	servers []func(ctx context.Context) error
	closers []func()
	ocsf    *agentOCSF // the OCSF writer, when an --ocsf-* output is given
}

func (rt *agentRuntime) close() {
	for i := len(rt.closers) - 1; i >= 0; i-- {
		rt.closers[i]()
	}
}

// build wires source → taps (ring, metrics) → aggregate → export → bus.
func (f *agentFlags) build(io cmdIO, demo bool, runID string) (_ *agentRuntime, err error) {
	rt := &agentRuntime{reg: newProcessRegistry()}
	defer func() {
		if err != nil {
			rt.close()
		}
	}()
	if *f.node == "" {
		return nil, fmt.Errorf("%w: --node is empty and the host name is unknown", errUsage)
	}
	if f.ocsf != nil {
		if err := f.ocsf.check(*f.bus, *f.topic); err != nil {
			return nil, err
		}
	}
	if err := f.newClusterSource(io, rt); err != nil {
		return nil, err
	}
	src, err := f.newSource(io, rt)
	if err != nil {
		return nil, err
	}
	var upstreamNodes func() []*observerpb.Node
	if n, ok := src.(interface{ Nodes() []*observerpb.Node }); ok {
		upstreamNodes = n.Nodes // the ring holds other nodes' flows
	}
	if rt.pub, err = f.newPublisher(io, rt); err != nil {
		return nil, err
	}
	rt.closers = append(rt.closers, func() { rt.pub.Close() })

	var taps []agent.Tap
	rt.ring = observer.NewRing(*f.ringSize, time.Now)
	taps = append(taps, rt.ring)
	m, err := metrics.New(metrics.Config{Metrics: *f.metricSpecs, MaxLabelSets: *f.metricsMaxLabels}, rt.reg)
	if err != nil {
		return nil, fmt.Errorf("%w: --metrics: %v", errUsage, err)
	}
	taps = append(taps, m)

	// OCSF: the agent's own writer of events for a SIEM (agentocsf.go), a
	// tap of the source's records.
	if f.ocsf != nil && f.ocsf.enabled() {
		if rt.ocsf, err = f.ocsf.open(io, rt.reg, *f.node, rt.natsURL); err != nil {
			return nil, err
		}
		rt.closers = append(rt.closers, func() { rt.ocsf.close() })
		taps = append(taps, rt.ocsf)
	}

	spoolDir := *f.spoolDir
	switch spoolDir {
	case "":
		spoolDir = filepath.Join(*f.dataDir, "spool")
	case "off":
		spoolDir = ""
	}
	cfg := agent.Config{
		Node:      *f.node,
		Source:    src,
		Aggregate: aggregate.Config{Disabled: *f.noAggregate, Window: *f.aggWindow, MaxKeys: *f.aggMaxKeys},
		Export: export.Config{Run: runID, MaxRows: *f.maxRows, MaxBytes: *f.maxBytes, Linger: *f.linger, QueueMessages: *f.queue,
			Spool: spool.Config{Dir: spoolDir, MaxBytes: *f.spoolMax}},
	}
	if rt.agent, err = agent.New(cfg, io.Log, rt.reg, rt.pub, taps...); err != nil {
		return nil, err
	}

	obsAddr, err := observerAddress("agent", *f.observerAddr, f.observerSet(), 4244, *f.tlsCert != "", *f.observerInsecure, io.Log)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errUsage, err)
	}
	if obsAddr != "" {
		srv, err := observer.NewServer(observer.Config{ListenAddress: obsAddr, NodeName: *f.node, Version: version,
			TLS: observer.ServerTLS{CertFile: *f.tlsCert, KeyFile: *f.tlsKey, ClientCAFile: *f.tlsClientCA}, Nodes: upstreamNodes,
			Lost: m.Lost}, rt.ring, io.Log, rt.reg)
		if err != nil {
			return nil, fmt.Errorf("observer API: %w", err)
		}
		ln, err := net.Listen("tcp", obsAddr)
		if err != nil {
			if !demo {
				return nil, fmt.Errorf("observer API (--observer-address): %w", err)
			}
			io.Log.Warn("observer API not served", "err", err)
		} else {
			io.Log.Info("observer API (hubble observe --server)", "address", ln.Addr().String())
			rt.servers = append(rt.servers, func(ctx context.Context) error { return srv.Serve(ctx, ln) })
		}
	}
	if *f.metricsAddr != "" {
		ln, url, err := f.metricsTLS.listen(*f.metricsAddr)
		if err != nil {
			if !demo {
				return nil, err
			}
			io.Log.Warn("metrics not served", "err", err)
		} else {
			io.Log.Info("metrics", "url", url)
			rt.servers = append(rt.servers, func(ctx context.Context) error {
				return metrics.Serve(ctx, ln, rt.reg, io.Log)
			})
		}
	}
	return rt, nil
}

func (f *agentFlags) newSource(io cmdIO, rt *agentRuntime) (agent.Source, error) {
	reg := rt.reg
	switch *f.source {
	case "synthetic":
		var start time.Time // zero: now
		if *f.clockOffset != 0 {
			start = time.Now().Add(*f.clockOffset)
		}
		return synthetic.New(synthetic.Config{Seed: *f.seed, Rate: *f.rate, Count: *f.count, Node: *f.node, Start: start})
	case "hubble-json":
		return hubblejson.New(hubblejson.Config{Path: *f.hubblePath, Stdin: io.Stdin, Follow: *f.follow}, io.Log, reg)
	case "hubble":
		var words []string
		for _, v := range *f.hubbleFilter {
			w, err := query.SplitArgs(v)
			if err != nil {
				return nil, fmt.Errorf("%w: --hubble-filter %q: %v", errUsage, v, err)
			}
			words = append(words, w...)
		}
		white, black, err := query.FilterArgs(words)
		if err != nil {
			return nil, fmt.Errorf("%w: --hubble-filter: %v", errUsage, err)
		}
		return hubblegrpc.New(hubblegrpc.Config{Server: *f.hubbleServer, Whitelist: white, Blacklist: black,
			TLS:       observer.ClientTLS{Enabled: *f.hubbleTLS, CAFile: *f.hubbleCA, CertFile: *f.hubbleCert, KeyFile: *f.hubbleKey, ServerName: *f.hubbleServerName},
			StateFile: filepath.Join(*f.dataDir, "hubble", "resume.json")}, io.Log, reg)
	case "ebpf":
		var store *cluster.Store
		if *f.endpointsSource == "kubernetes" || *f.endpoints != "" {
			store = rt.cluster
		}
		cfg := ebpf.Config{
			Kernel: bpf.Config{Interfaces: *f.interfaces, MaxFlows: *f.maxFlows, RingBufSize: *f.ringbufSize, ActiveTimeout: *f.activeTimeout,
				L7: bpf.L7Config{RingBufSize: *f.l7RingBufSize}},
			Node: *f.node, Cluster: store, ClusterName: *f.clusterName, EnforcePolicy: *f.policyEnforcement == "default",
			Names: fqdn.Options{Grace: *f.fqdnGrace},
		}
		switch *f.bpfPinDir {
		case "off":
		case "":
			cfg.PinDir = bpfpin.AgentDir(*f.node)
		default:
			cfg.PinDir = *f.bpfPinDir
		}
		if len(f.l7Ports) > 0 {
			cfg.L7 = &stream.Config{Ports: f.l7Ports, HeadBytes: *f.l7HeadBytes, MaxConns: *f.l7MaxConns}
		}
		if *f.socketLB {
			if store == nil {
				return nil, fmt.Errorf("%w: --socket-lb needs the cluster's services: --endpoints or --endpoints-source kubernetes", errUsage)
			}
			cfg.SockLB = &ebpf.SockLBConfig{Cgroup: *f.socketLBCgroup, Algorithm: *f.socketLBAlgorithm, NoTCPPeer: !*f.socketLBPeer}
		}
		src, err := ebpf.New(cfg, io.Log, reg)
		if errors.Is(err, ebpf.ErrNeedsLinux) {
			return nil, fmt.Errorf("--source ebpf %w: this build is for %s", ebpf.ErrNeedsLinux, runtime.GOOS)
		}
		if err != nil {
			return nil, err
		}
		if cfg.SockLB != nil && reg != nil {
			if err := reg.Register(ebpf.SockLBMetrics(src)); err != nil {
				return nil, fmt.Errorf("socket LB metrics: %w", err)
			}
		}
		return src, nil
	}
	return nil, fmt.Errorf("%w: --source %q: want synthetic, hubble-json, hubble or ebpf", errUsage, *f.source)
}

// newClusterSource makes rt's cluster store and adds the source that
// publishes to it (--endpoints-source) to rt's servers.
func (f *agentFlags) newClusterSource(io cmdIO, rt *agentRuntime) error {
	rt.cluster = cluster.NewStore()
	switch *f.endpointsSource {
	case "file":
		if *f.endpoints == "" {
			if *f.policies != "" {
				return fmt.Errorf("%w: --policies needs --endpoints", errUsage)
			}
			return nil
		}
		src, err := filesource.New(filesource.Config{EndpointsFile: *f.endpoints, PoliciesFile: *f.policies, Store: rt.cluster}, io.Log, rt.reg)
		if err != nil {
			return err
		}
		rt.servers = append(rt.servers, src.Run)
	case "kubernetes":
		klog.SetSlogLogger(io.Log) // client-go logs through klog
		rc, err := k8s.RESTConfig(*f.kubeconfig)
		if err != nil {
			return err
		}
		cfg := k8s.Config{Store: rt.cluster}
		if err := cfg.NewClients(rc); err != nil {
			return err
		}
		src, err := k8s.New(cfg, io.Log, rt.reg)
		if err != nil {
			return err
		}
		rt.servers = append(rt.servers, src.Run)
	default:
		return fmt.Errorf("%w: --endpoints-source %q: want file or kubernetes", errUsage, *f.endpointsSource)
	}
	return nil
}

func (f *agentFlags) newPublisher(io cmdIO, rt *agentRuntime) (export.Publisher, error) {
	bus := *f.bus
	switch {
	case bus == "stdout":
		return stdout.New(io.Stdout, io.Log, flowcodec.NewDecoder()), nil
	case bus == "embedded":
		if set := f.natsSet(); len(set) > 0 {
			return nil, fmt.Errorf("%w: %s: for --bus nats://...; the embedded NATS server has no TLS or users", errUsage, strings.Join(set, ", "))
		}
		dir := filepath.Join(*f.dataDir, "nats")
		srv, url, err := nats.StartEmbedded(dir, *f.natsPort)
		if err != nil && *f.natsPort > 0 {
			io.Log.Warn("embedded NATS: port busy, using a free one", "port", *f.natsPort, "err", err)
			srv, url, err = nats.StartEmbedded(dir, -1)
		}
		if err != nil {
			return nil, fmt.Errorf("embedded NATS in %s: %w", dir, err)
		}
		rt.closers = append(rt.closers, func() { srv.Shutdown(); srv.WaitForShutdown() })
		io.Log.Info("embedded NATS JetStream", "url", url, "store", dir)
		bus = url
		fallthrough
	case strings.HasPrefix(bus, "nats://"):
		rt.natsURL = bus
		conn, err := f.natsConn(bus)
		if err != nil {
			return nil, err
		}
		return nats.NewPublisher(nats.PublisherConfig{Conn: conn, Partitions: *f.natsPartitions, Logger: io.Log})
	case strings.HasPrefix(bus, "kafka://"):
		conn, err := f.kafkaConn(strings.Split(strings.TrimPrefix(bus, "kafka://"), ","))
		if err != nil {
			return nil, err
		}
		p, err := kafka.NewProducer(kafka.ProducerConfig{Conn: conn, Topic: *f.topic, CreateTopic: *f.createTopic, Partitions: int32(*f.kafkaPartitions), Logger: io.Log})
		if err != nil {
			return nil, fmt.Errorf("kafka producer: %w", err)
		}
		return p, nil
	}
	return nil, fmt.Errorf("%w: --bus %q: want embedded, nats://host:port, kafka://host:port or stdout", errUsage, nats.RedactURL(bus))
}

// run runs the agent and its servers until ctx ends or the source is done.
func (rt *agentRuntime) run(ctx context.Context) error {
	sctx, stop := context.WithCancel(ctx)
	g, gctx := errgroup.WithContext(sctx)
	for _, s := range rt.servers {
		g.Go(func() error { return s(gctx) })
	}
	err := rt.agent.Run(ctx)
	if rt.ocsf != nil { // after the pipeline: no record comes any more
		err = errors.Join(err, rt.ocsf.close())
	}
	stop()
	if serr := g.Wait(); serr != nil && !errors.Is(serr, context.Canceled) && err == nil {
		err = serr
	}
	return err
}

// newAgentFlags returns the flags of `flowbus agent`.
func newAgentFlags(io cmdIO) (*flagSet, *agentFlags) {
	fs := newFlagSet("agent", "agent [flags]", "Run the node agent: a source of flows (synthetic, hubble-json, Hubble live "+
		"or the eBPF datapath), the Hubble Observer API and metrics, aggregation, and export of Arrow batches to the bus. "+
		"With an --ocsf-* output it also writes every record of its source (before aggregation: one event per connection "+
		"report) as an OCSF 1.8.0 event to files, a Splunk HEC, a Kafka topic or NATS subjects, as 'flowbus ocsf' does "+
		"from the bus, through a bounded queue that drops and counts rather than slow the export.", io)
	f := addAgentFlags(fs, false)
	f.ocsf = addAgentOCSFFlags(fs)
	f.ocsf.o.conn = f.busConnFlags // the bus's TLS and authentication apply to the outputs
	return fs, f
}

func runAgent(ctx context.Context, args []string, io cmdIO) error {
	fs, f := newAgentFlags(io)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	rt, err := f.build(io, false, "")
	if err != nil {
		return err
	}
	defer rt.close()
	io.Log.Info("agent starting", "node", *f.node, "source", *f.source, "bus", nats.RedactURL(*f.bus))
	return rt.run(ctx)
}
