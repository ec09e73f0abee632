package main

import (
	"fmt"
	"regexp"
	"strings"
	"time"
)

// A Section is a component: one heading of RESULTS.md.
type Section struct {
	ID, Title string
	History   string // anchor of its hand-written history in HISTORY.md
}

var sections = []Section{
	{"datapath", "Datapath (bpf): per packet, connect storm", "kernel-datapath-per-packet-cost-connect-storm"},
	{"socklb", "Socket load balancing (connect cost)", "socket-load-balancing-connect-cost"},
	{"agent", "Agent: whole process and pipeline", "agent-export-path-and-whole-agent"},
	{"policy", "Policy and the Kubernetes source", "policy-enforcement-per-packet-sync-memory"},
	{"l7", "L7 parsers", "l7-parsers-userspace"},
	{"codec", "Encoder (flowcodec) and bytes on the bus", "encoding-flowcodec"},
	{"aggregator", "Aggregator", "aggregator-decode-and-rollup-parquet-write"},
	{"relay", "Relay", "relay-fan-in-whole-process"},
	{"bus", "Bus and sinks", ""},
	{"observer", "Observer API", "observer-api"},
	{"hubble", "Hubble source and baselines", "hubble-source---source-hubble"},
}

// A Group is one command: a `go test -bench` run over some packages, or a
// whole-process measurement whose output an Extract turns into benchmark
// result lines.
type Group struct {
	ID, Section, Title string
	About              string   // what it measures, one or two sentences
	Pkgs               []string // go test packages (the -bench form)
	Bench              string   // -bench regexp
	Args               []string // other go test flags: -benchtime, -count, -cpu
	Cmd                []string // the whole command instead of go test -bench
	Prefix             []string // run under this (taskset)
	Root               bool     // needs root; run under the privileged lock
	Extract            func(string) string
}

// Command is the group's command line as run (without the lock).
func (g Group) Command() []string {
	c := append([]string{}, g.Prefix...)
	if g.Cmd != nil {
		return append(c, g.Cmd...)
	}
	c = append(c, "go", "test", "-run", "^$", "-bench", g.Bench, "-benchmem")
	c = append(c, g.Args...)
	return append(c, g.Pkgs...)
}

// privLock is the lock every privileged test and measurement of the
// repository takes (the lab's addresses, veths, BPF programs).
const privLock = "/tmp/flowbus-priv.lock"

var groups = []Group{
	{ID: "bpf-program", Section: "datapath", Title: "Per-packet cost", Root: true,
		About: "BPF_PROG_TEST_RUN of the flow program (`ns/pkt`) beside the floor, an empty tc program, in the same run. " +
			"\"batched\" repeats one packet 1000 times per run; \"single\" is one packet per run (a new flow needs a fresh tuple). " +
			"\"with policy\": 200 egress rules and 1,000 pod addresses in the ipcache.",
		Bench: "BenchmarkProgram", Args: []string{"-benchtime", "20000x", "-count", "5"}, Pkgs: []string{"./bpf"}},
	{ID: "bpf-storm", Section: "datapath", Title: "Connect storm", Root: true,
		About: "10 s of new TCP connections between two lab namespaces, a 16 KiB ring buffer; `reader-µs/flow` is the CPU of the collector's " +
			"reader thread (ring buffer, sweep, sink) per exported flow, not the whole process. Read from the test's `-v` log.",
		Cmd: []string{"go", "test", "-count=1", "-run", "^TestConnectStorm$", "-v", "./bpf"}, Extract: extractStorm},
	{ID: "socklb", Section: "socklb", Title: "connect() with the socket LB", Root: true,
		About: "The benchmark process in a fresh cgroup: no program, the floor (an empty cgroup/connect4 program), the socket LB's connect4 program. " +
			"`ns/op` is the whole syscall; `prog-ns/op` the kernel's run time of the attached program (bpf_stats); the whole TCP connect (~12 µs, a listener's accept and reset included) varies by more than the program costs. " +
			"With the LB (`miss`, `translate`) its sock_release program is attached too: `release-ns/op` is its run time per closed socket (the client's and the listener's accepted one), `storage/op` the translations that fell back to socket storage (their lb_peer slot taken). " +
			"`translate_nopeer`: the LB loaded with Config.NoTCPPeer. `SockLBEstablished`: a 64-byte request and its echo per iteration on a connection dialled to the backend with no program beside one dialled to the ClusterIP and translated.",
		Bench: "SockLBConnect|SockLBEstablished", Args: []string{"-benchtime", "0.5s", "-count", "3"}, Pkgs: []string{"./bpf/socklb"}},
	{ID: "agent-lab", Section: "agent", Title: "Whole agent on the eBPF source, in the lab", Root: true,
		About: "bench/agentcpu: `flowbus lab up` (10 pods on host veths), a separate `nats-server -js`, the real `flowbus agent` with the lab's flags. " +
			"Idle CPU as % of a core; at `lab traffic --rate` 200 and 500 the agent's whole-process CPU per exported flow over the steady middle of the traffic " +
			"(`steady-µs/flow`) and over the whole run, drain included (`run-µs/flow`); then a 10 s connect storm, HTTP/1.0 connections from one pod to another's server " +
			"as fast as 4 threads open them, and the agent's CPU per exported flow over the storm and its drain (`storm`). Nothing subtracted.",
		Cmd: []string{"go", "run", "./bench/agentcpu", "-benchfmt", "-runs", "2", "-idle", "10s", "-rates", "200,500", "-duration", "20s", "-storm", "10s"}},
	{ID: "agent-replay", Section: "agent", Title: "Whole pipeline on one core, in process",
		About: "Source → taps → aggregation → Arrow → publish with GOMAXPROCS=1; `events/cpu-s` is raw flows per second of process CPU.",
		Bench: "BenchmarkAgent/", Args: []string{"-benchtime", "1000000x", "-cpu", "1", "-count", "3"}, Pkgs: []string{"./agent"}},
	{ID: "agent-shapes", Section: "agent", Title: "The real agent's messages (BenchmarkAgentShapes)",
		About: "The real `flowbus agent` (one CPU, GOMAXPROCS=1) on the synthetic payments fleet at 1k, 10k and 100k raw flows/s, 12 s each, publishing to an embedded NATS; " +
			"then exactly its messages encoded again by each encoder in turn on one thread: Arrow (raw rule at 1000 rows, at 250, never) and proto binary; " +
			"Hubble's own JSON line (`hubble observe -o json`, no flowbus fields) per raw flow.",
		Bench: "AgentShapes", Args: []string{"-benchtime", "1x", "-count", "2"}, Pkgs: []string{"./bench"}},
	{ID: "export-path", Section: "agent", Title: "Export path",
		About: "One second of raw flows → aggregation → encoding per partition key → the real Kafka producer publishing to kfake; `cpu-ns/flow` per raw flow.",
		Bench: "ExportPath", Args: []string{"-benchtime", "10x", "-count", "2"}, Pkgs: []string{"./bench"}},
	{ID: "agent-parts", Section: "agent", Title: "Pipeline parts",
		About: "Aggregation, the synthetic generator, identity allocation, Hubble metrics, each alone.",
		Bench: ".", Args: []string{"-benchtime", "0.3s", "-count", "3"},
		Pkgs: []string{"./agent/aggregate", "./agent/source/synthetic", "./agent/identity", "./agent/metrics"}},
	{ID: "policy-sync", Section: "policy", Title: "Compile and map sync, 1,000 pods × 200 policies", Root: true,
		About: "The agent's datapath sync onto the kernel maps (81,440 rules) beside compile alone; `cpu-ns/op` is process CPU per sync; `*-bytes` the maps' kernel memory.",
		Bench: "BenchmarkPolicySync", Args: []string{"-benchtime", "5x", "-count", "3"}, Pkgs: []string{"./agent/source/ebpf"}},
	{ID: "policy", Section: "policy", Title: "Policy compile and diff",
		Bench: ".", Args: []string{"-benchtime", "0.3s", "-count", "3"}, Pkgs: []string{"./agent/policy"}},
	{ID: "k8s-informer", Section: "policy", Title: "Informer memory, 10,000 pods",
		About: "A real etcd and kube-apiserver with 10,000 pods; the Go heap of the Kubernetes source, synced, beside a plain pod informer keeping whole pods. One run: creating the cluster takes about a minute.",
		Bench: "InformerMemory", Args: []string{"-benchtime", "1x", "-count", "1"}, Pkgs: []string{"./agent/cluster/k8s"}},
	{ID: "k8s-snapshot", Section: "policy", Title: "Cluster snapshot build",
		Bench: "SnapshotBuild", Args: []string{"-benchtime", "0.3s", "-count", "3"}, Pkgs: []string{"./agent/cluster/k8s"}},
	{ID: "l7", Section: "l7", Title: "L7 parsers, one core",
		About: "Each parser beside a floor that only walks the same bytes, in the same run; GOMAXPROCS=1.",
		Bench: ".", Args: []string{"-benchtime", "0.3s", "-cpu", "1", "-count", "3"}, Pkgs: []string{"./agent/l7/..."}},
	{ID: "codec", Section: "codec", Title: "Encoding and decoding (flowcodec)",
		About: "Payments-fleet records after 1 s aggregation in batches of 1000 and 10,000 rows. `EncodeSideBySide` encodes each batch as Arrow and as proto binary in every iteration, " +
			"each charged its own thread's CPU, so their ratio comes from one run; the other encoders are separate benchmarks (process CPU, GC included).",
		Bench: ".", Args: []string{"-benchtime", "0.3s", "-count", "3"}, Pkgs: []string{"./internal/flowcodec"}},
	{ID: "bytes-per-flow", Section: "codec", Title: "Bytes per flow, a simulated second",
		About: "One simulated second of the payments fleet through the agent's aggregation and export, a fresh encoder, against Hubble's JSON export of the same raw flows (with flowbus's fields).",
		Bench: "BytesPerFlow", Args: []string{"-benchtime", "3x", "-count", "3"}, Pkgs: []string{"./agent"}},
	{ID: "aggregator-decode", Section: "aggregator", Title: "Decode and rollup, one core",
		About: "200,000 flows cut into messages of up to 1000 or 8192 flows, folded by the aggregator's decode and rollup with GOMAXPROCS=1; `rows/cpu-s` is rows per second of process CPU. " +
			"`msgs=agent`: cut as the agent's exporter cuts them (one destination per message); `msgs=mixed`: every destination in each message and a window closing every ~20,000 rows.",
		Bench: "DecodeRollup", Args: []string{"-benchtime", "600x", "-cpu", "1", "-count", "3"}, Pkgs: []string{"./aggregator"}},
	{ID: "aggregator-stages", Section: "aggregator", Title: "Decode and rollup, each stage alone",
		About: "The same messages, decode only (the rollup's columns) and rollup only (pre-decoded records). One run each: a diagnostic of the figure above, whose setup dominates the time.",
		Bench: "DecodeOnly|RollupOnly", Args: []string{"-benchtime", "600x", "-cpu", "1", "-count", "1"}, Pkgs: []string{"./aggregator"}},
	{ID: "aggregator-files", Section: "aggregator", Title: "Parquet write, raw flows, URL templating",
		About: "100,000 pair_rollup rows per Parquet file, without and with the commit protocol's fsyncs; `Process` of 1000-flow messages with raw flows off and on; templating one URL.",
		Bench: "ParquetWrite|ProcessRawFlows|Template", Args: []string{"-benchtime", "0.3s", "-cpu", "1", "-count", "3"}, Pkgs: []string{"./aggregator"}},
	{ID: "aggregator-backlog", Section: "aggregator", Title: "The whole aggregator draining the real agent's messages",
		About: "The real agent's messages at 1k, 10k and 100k raw flows/s, republished until the backlog holds ≥ 400,000 rows; the real `flowbus aggregator` (one CPU, GOMAXPROCS=1) drains it, Parquet written and committed; `rows/cpu-s` is its whole-process CPU.",
		Bench: "AggregatorBacklog", Args: []string{"-benchtime", "1x", "-count", "2"}, Pkgs: []string{"./bench"}},
	{ID: "relay", Section: "relay", Title: "Relay fan-in, whole process",
		About: "10 real agents × 2,000 raw flows/s (CPU 0) and the real `flowbus relay` in front of them (CPU 1, GOMAXPROCS=1), its merged GetFlows stream followed for 10 s.",
		Bench: "RelayFanIn", Args: []string{"-benchtime", "1x", "-count", "2"}, Pkgs: []string{"./bench"}},
	{ID: "sinks", Section: "bus", Title: "Publishing and the OCSF sink",
		About: "The NATS and Kafka publishers beside a publish per message; the OCSF encoder beside json.Marshal of a map.",
		Bench: ".", Args: []string{"-benchtime", "0.3s", "-count", "3"}, Pkgs: []string{"./sinks/nats", "./sinks/kafka", "./sinks/ocsf"}},
	{ID: "observer-follow", Section: "observer", Title: "Follower delivery delay",
		Bench: "FollowDelay", Args: []string{"-benchtime", "2000x", "-count", "3"}, Pkgs: []string{"./internal/observer"}},
	{ID: "observer", Section: "observer", Title: "Observer ring and queries",
		Bench: "RingObserve|GetFlowsIncidentQuery", Args: []string{"-benchtime", "0.3s", "-count", "3"}, Pkgs: []string{"./internal/observer"}},
	{ID: "hubble-source", Section: "hubble", Title: "The agent on `--source hubble`, whole process",
		About: "The real agent (GOMAXPROCS=1, CPU 1) reading 600,000 events of a cluster's Hubble, publishing to an embedded NATS in the benchmark's process (CPU 0, by the command): " +
			"from a replaying Hubble over TCP (`hubble`), from flowbus's Observer server with Hubble's ring (`hubble-observer`), and the same events as `hubble observe -o json` lines (`hubble-json`, the baseline).",
		Prefix: []string{"taskset", "-c", "0"},
		Bench:  "HubbleSource/(hubble|hubble-observer|hubble-json)$", Args: []string{"-benchtime", "1x", "-count", "2"}, Pkgs: []string{"./bench"}},
	{ID: "hubble-bus-down", Section: "hubble", Title: "The agent on `--source hubble` with the bus down",
		About:  "6,000,000 events with nothing listening at `--bus`: peak RSS after each third, the disk spool at the end. One run: it takes about a minute.",
		Prefix: []string{"taskset", "-c", "0"},
		Bench:  "HubbleSource/hubble-bus-down", Args: []string{"-benchtime", "1x", "-count", "1"}, Pkgs: []string{"./bench"}},
	{ID: "hubble-json-decode", Section: "hubble", Title: "Hubble JSON lines decoded, one core",
		About: "A `hubble observe -o json` line into flowbus's record by the hubble-json source's decoder (`fast`) beside protojson and the conversion it replaces, on the same lines.",
		Bench: "DecodeLine", Args: []string{"-benchtime", "20000x", "-cpu", "1", "-count", "3"}, Pkgs: []string{"./agent/source/hubblejson"}},
	{ID: "hubble-grpc", Section: "hubble", Title: "The Hubble source alone, in process",
		Bench: "Source", Args: []string{"-benchtime", "300000x", "-cpu", "1", "-count", "3"}, Pkgs: []string{"./agent/source/hubblegrpc"}},
}

// Benchmark names of the figures below.
const (
	prog   = "BenchmarkProgram/"
	sock   = "BenchmarkSockLBConnect/"
	shapes = "BenchmarkAgentShapes/rate="
	lab    = "BenchmarkAgentCPU/"
)

// figures are the targets and the derived figures (ratios and differences,
// computed run by run from one command's output): the one place they are
// defined. Targets marked "issue 18" are that issue's; the others are the
// project's earlier goals, as RESULTS.md stated them before it was
// generated.
var figures = []Figure{
	// Datapath.
	{Section: "datapath", Group: "bpf-program", Name: "established packet, above the empty program (batched)", Unit: "ns",
		Expr: diff(Ref{prog + "established/batched", "ns/pkt"}, Ref{prog + "floor/batched", "ns/pkt"}), Target: atMost(60)},
	{Section: "datapath", Group: "bpf-program", Name: "established packet with policy, above the empty program (batched)", Unit: "ns",
		Expr: diff(Ref{prog + "established_with_policy/batched", "ns/pkt"}, Ref{prog + "floor/batched", "ns/pkt"}), Target: atMost(40), Note: "issue 18"},
	{Section: "datapath", Group: "bpf-program", Name: "established packet with policy, above the empty program (single)", Unit: "ns",
		Expr: diff(Ref{prog + "established_with_policy/single", "ns/pkt"}, Ref{prog + "floor/single", "ns/pkt"})},
	{Section: "datapath", Group: "bpf-program", Name: "policy's share of an established packet (batched)", Unit: "ns",
		Expr: diff(Ref{prog + "established_with_policy/batched", "ns/pkt"}, Ref{prog + "established/batched", "ns/pkt"})},
	{Section: "datapath", Group: "bpf-program", Name: "new TCP flow, above the empty program", Unit: "ns",
		Expr: diff(Ref{prog + "new_flow/single", "ns/pkt"}, Ref{prog + "floor/single", "ns/pkt"}), Target: atMost(600)},
	{Section: "datapath", Group: "bpf-program", Name: "new TCP flow with policy, above the empty program", Unit: "ns",
		Expr: diff(Ref{prog + "new_flow_with_policy/single", "ns/pkt"}, Ref{prog + "floor/single", "ns/pkt"}), Target: atMost(600), Note: "issue 18"},
	{Section: "datapath", Group: "bpf-program", Name: "new TCP flow with a start event, above the empty program", Unit: "ns",
		Expr: diff(Ref{prog + "new_flow_with_start_event/single", "ns/pkt"}, Ref{prog + "floor/single", "ns/pkt"})},
	{Section: "datapath", Group: "bpf-program", Name: "new UDP flow, above the empty program", Unit: "ns",
		Expr: diff(Ref{prog + "new_udp_flow/single", "ns/pkt"}, Ref{prog + "floor/single", "ns/pkt"})},
	{Section: "datapath", Group: "bpf-program", Name: "L7 capture loaded for another port: established packet, beside the same without capture (single)", Unit: "ns",
		Expr: diff(Ref{prog + "l7_on_port_not_enabled/single", "ns/pkt"}, Ref{prog + "established/single", "ns/pkt"})},
	{Section: "datapath", Group: "bpf-program", Name: "captured 100-byte L7 payload, above the established packet (single)", Unit: "ns",
		Expr: diff(Ref{prog + "l7_captured/single", "ns/pkt"}, Ref{prog + "established/single", "ns/pkt"})},
	{Section: "datapath", Group: "bpf-storm", Name: "connect storm: reader thread CPU per exported flow", Unit: "µs",
		Expr: val(Ref{"BenchmarkConnectStorm", "reader-µs/flow"}), Target: atMost(1.5)},
	{Section: "datapath", Group: "bpf-storm", Name: "connect storm: connections without a complete record, per 100,000", Unit: "",
		Expr: scaled(Ref{"BenchmarkConnectStorm", "incomplete/conn"}, 1e5)},
	{Section: "datapath", Group: "agent-lab", Name: "lab connect storm: the agent's whole-process CPU per exported flow", Unit: "µs",
		Expr: val(Ref{lab + "storm", "µs/flow"}), Target: atMost(1), Note: "issue 18; bench/agentcpu -storm: the real agent in the lab, storm and drain"},
	{Section: "datapath", Group: "agent-lab", Name: "lab connect storm: connections per second", Unit: "k/s",
		Expr: scaled(Ref{lab + "storm", "conns/s"}, 1e-3)},

	// Socket LB.
	{Section: "socklb", Group: "socklb", Name: "UDP connect() translated: program above the empty cgroup program", Unit: "ns",
		Expr: diff(Ref{sock + "udp/translate", "prog-ns/op"}, Ref{sock + "udp/floor", "prog-ns/op"}), Target: atMost(500), Note: "issue 19"},
	{Section: "socklb", Group: "socklb", Name: "UDP connect() translated: whole syscall above the empty cgroup program", Unit: "ns",
		Expr: diff(Ref{sock + "udp/translate", "ns/op"}, Ref{sock + "udp/floor", "ns/op"})},
	{Section: "socklb", Group: "socklb", Name: "TCP connect() of a new socket translated: program above the empty cgroup program", Unit: "ns",
		Expr: diff(Ref{sock + "tcp/translate", "prog-ns/op"}, Ref{sock + "tcp/floor", "prog-ns/op"}), Target: atMost(500), Note: "issue 19; the translation getpeername() reads goes in the socket's lb_peer slot"},
	{Section: "socklb", Group: "socklb", Name: "TCP close() of a translated socket: sock_release program time (frees its lb_peer slot)", Unit: "ns",
		Expr: val(Ref{sock + "tcp/translate", "release-ns/op"})},
	{Section: "socklb", Group: "socklb", Name: "TCP close() of a socket that dialled no service: sock_release program time", Unit: "ns",
		Expr: val(Ref{sock + "tcp/miss", "release-ns/op"})},
	{Section: "socklb", Group: "socklb", Name: "TCP connect() translated, no getpeername() translation (`--socket-lb-peer=false`): program above the empty cgroup program", Unit: "ns",
		Expr: diff(Ref{sock + "tcp/translate_nopeer", "prog-ns/op"}, Ref{sock + "tcp/floor", "prog-ns/op"}), Target: atMost(500), Note: "issue 19"},
	{Section: "socklb", Group: "socklb", Name: "established TCP connection, 64-byte ping-pong: translated ÷ no LB, time per round trip", Unit: "×",
		Expr: ratio(Ref{"BenchmarkSockLBEstablished/tcp/translated", "ns/op"}, Ref{"BenchmarkSockLBEstablished/tcp/none", "ns/op"}),
		Note: "issue 19: the established path is unchanged (no program after connect)"},
	{Section: "socklb", Group: "socklb", Name: "UDP socket's recvmsg() reply rewrite, program time per datagram", Unit: "ns",
		Expr: val(Ref{"BenchmarkSockLBEstablished/udp/translated", "prog-ns/op"})},
	{Section: "socklb", Group: "socklb", Name: "UDP connect() translated by Maglev: program above the empty cgroup program", Unit: "ns",
		Expr: diff(Ref{sock + "udp/translate_maglev", "prog-ns/op"}, Ref{sock + "udp/floor", "prog-ns/op"})},
	{Section: "socklb", Group: "socklb", Name: "UDP connect() to no service: program above the empty cgroup program", Unit: "ns",
		Expr: diff(Ref{sock + "udp/miss", "prog-ns/op"}, Ref{sock + "udp/floor", "prog-ns/op"})},
	{Section: "socklb", Group: "socklb", Name: "TCP connect() to no service: program above the empty cgroup program", Unit: "ns",
		Expr: diff(Ref{sock + "tcp/miss", "prog-ns/op"}, Ref{sock + "tcp/floor", "prog-ns/op"})},

	// Agent.
	{Section: "agent", Group: "agent-lab", Name: "lab: idle, % of a core", Unit: "%",
		Expr: val(Ref{lab + "idle", "%core"}), Target: atMost(0.2), Note: "issue 18"},
	{Section: "agent", Group: "agent-lab", Name: "lab: whole-process CPU per exported flow at ~2.6k flows/s (`--rate 200`), steady", Unit: "µs",
		Expr: val(Ref{lab + "rate=200", "steady-µs/flow"}), Target: atMost(2), Note: "issue 18: ~2k flows/s"},
	{Section: "agent", Group: "agent-lab", Name: "lab: whole-process CPU per exported flow at ~5–6k flows/s (`--rate 500`), steady", Unit: "µs",
		Expr: val(Ref{lab + "rate=500", "steady-µs/flow"}), Target: atMost(2), Note: "issue 18: ~5k flows/s"},
	{Section: "agent", Group: "agent-replay", Name: "whole pipeline per raw flow on replay (aggregation, Arrow, embedded NATS), process CPU", Unit: "µs",
		Expr: inverse(1e6, Ref{"BenchmarkAgent/aggregate/publish=nats-embedded", "events/cpu-s"}), Target: atMost(0.5), Note: "issue 18"},
	{Section: "agent", Group: "agent-replay", Name: "whole pipeline on replay, raw flows per CPU-second", Unit: "M",
		Expr: scaled(Ref{"BenchmarkAgent/aggregate/publish=nats-embedded", "events/cpu-s"}, 1e-6), Target: atLeast(1)},
	{Section: "agent", Group: "agent-shapes", Name: "real agent, synthetic source, whole-process CPU per raw flow at 1k flows/s", Unit: "µs",
		Expr: val(Ref{shapes + "1000", "agent-cpu-µs/flow"})},
	{Section: "agent", Group: "agent-shapes", Name: "… at 10k flows/s", Unit: "µs",
		Expr: val(Ref{shapes + "10000", "agent-cpu-µs/flow"})},
	{Section: "agent", Group: "agent-shapes", Name: "… at 100k flows/s", Unit: "µs",
		Expr: val(Ref{shapes + "100000", "agent-cpu-µs/flow"})},
	{Section: "agent", Group: "export-path", Name: "export path at 10k flows/s: proto binary ÷ Arrow, CPU per raw flow", Unit: "×",
		Expr: ratio(Ref{"BenchmarkExportPath/rate=10000/encoding=protobin", "cpu-ns/flow"}, Ref{"BenchmarkExportPath/rate=10000/encoding=arrow", "cpu-ns/flow"})},
	{Section: "agent", Group: "export-path", Name: "export path at 10k flows/s: Hubble's export (protojson per raw flow) ÷ Arrow, CPU per raw flow", Unit: "×",
		Expr: ratio(Ref{"BenchmarkExportPath/rate=10000/encoding=hubble-export", "cpu-ns/flow"}, Ref{"BenchmarkExportPath/rate=10000/encoding=arrow", "cpu-ns/flow"})},
	{Section: "agent", Group: "export-path", Name: "export path at 10k flows/s: Hubble's export ÷ Arrow, bytes on the bus", Unit: "×",
		Expr: ratio(Ref{"BenchmarkExportPath/rate=10000/encoding=hubble-export", "bus-B/flow"}, Ref{"BenchmarkExportPath/rate=10000/encoding=arrow", "bus-B/flow"})},

	// Policy.
	{Section: "policy", Group: "policy-sync", Name: "first sync of 1,000 pods × 200 policies onto empty maps, process CPU", Unit: "ms",
		Expr: scaled(Ref{"BenchmarkPolicySync/first", "cpu-ns/op"}, 1e-6), Target: atMost(1000)},
	{Section: "policy", Group: "policy-sync", Name: "sync after one policy edited, process CPU", Unit: "ms",
		Expr: scaled(Ref{"BenchmarkPolicySync/one_policy_edited", "cpu-ns/op"}, 1e-6)},
	{Section: "policy", Group: "policy-sync", Name: "the policy maps' kernel memory after the first sync", Unit: "MB",
		Expr: scaled(Ref{"BenchmarkPolicySync/first", "kernel-bytes"}, 1e-6)},
	{Section: "policy", Group: "k8s-informer", Name: "Kubernetes source's heap per pod, 10,000 pods", Unit: "B",
		Expr: val(Ref{"BenchmarkInformerMemory", "heap-bytes/pod"})},
	{Section: "policy", Group: "k8s-informer", Name: "plain pod informer ÷ Kubernetes source, heap", Unit: "×",
		Expr: ratio(Ref{"BenchmarkInformerMemory", "full-pod-informer-bytes"}, Ref{"BenchmarkInformerMemory", "heap-bytes"})},

	// L7.
	{Section: "l7", Group: "l7", Name: "HTTP/1.1 parser, requests per second on one core", Unit: "M/s",
		Expr: scaled(Ref{"BenchmarkParse/parser", "req/s"}, 1e-6), Target: atLeast(1)},
	{Section: "l7", Group: "l7", Name: "gRPC (HTTP/2) parser, unary calls per second on one core", Unit: "k/s",
		Expr: scaled(Ref{"BenchmarkParser", "calls/s"}, 1e-3), Target: atLeast(300),
		Note: "BenchmarkParser of agent/l7/http2 (the first package in the output with that name)"},

	// Codec.
	{Section: "codec", Group: "agent-shapes", Name: "real messages at 1k flows/s: proto binary ÷ Arrow, encode CPU", Unit: "×",
		Expr: val(Ref{shapes + "1000", "proto/arrow-cpu"}), Target: atLeast(3), Note: "issue 18"},
	{Section: "codec", Group: "agent-shapes", Name: "real messages at 10k flows/s: proto binary ÷ Arrow, encode CPU", Unit: "×",
		Expr: val(Ref{shapes + "10000", "proto/arrow-cpu"}), Target: atLeast(3), Note: "issue 18"},
	{Section: "codec", Group: "agent-shapes", Name: "real messages at 100k flows/s: proto binary ÷ Arrow, encode CPU", Unit: "×",
		Expr: val(Ref{shapes + "100000", "proto/arrow-cpu"}), Target: atLeast(3), Note: "issue 18"},
	{Section: "codec", Group: "agent-shapes", Name: "real messages at 1k flows/s: Hubble's JSON line ÷ Arrow, bytes per raw flow", Unit: "×",
		Expr: val(Ref{shapes + "1000", "hubble-json/arrow-B"}), Target: &Target{Value: 40, Text: "≥ 40 (bytes ≤ 1/40)"}, Note: "issue 18"},
	{Section: "codec", Group: "agent-shapes", Name: "real messages at 10k flows/s: Hubble's JSON line ÷ Arrow, bytes per raw flow", Unit: "×",
		Expr: val(Ref{shapes + "10000", "hubble-json/arrow-B"}), Target: &Target{Value: 40, Text: "≥ 40 (bytes ≤ 1/40)"}, Note: "issue 18"},
	{Section: "codec", Group: "agent-shapes", Name: "real messages at 100k flows/s: Hubble's JSON line ÷ Arrow, bytes per raw flow", Unit: "×",
		Expr: val(Ref{shapes + "100000", "hubble-json/arrow-B"})},
	{Section: "codec", Group: "codec", Name: "1000-row batch: proto binary ÷ Arrow, encode CPU side by side", Unit: "×",
		Expr: val(Ref{"BenchmarkEncodeSideBySide/rows=1000", "proto/arrow"}), Target: atLeast(3)},
	{Section: "codec", Group: "codec", Name: "10,000-row batch: proto binary ÷ Arrow, encode CPU side by side", Unit: "×",
		Expr: val(Ref{"BenchmarkEncodeSideBySide/rows=10000", "proto/arrow"}), Target: atLeast(3)},
	{Section: "codec", Group: "codec", Name: "1000-row batch: protojson ÷ Arrow, encode CPU", Unit: "×",
		Expr: ratio(Ref{"BenchmarkEncodeProtoJSON/rows=1000", "cpu-ns/flow"}, Ref{"BenchmarkEncode/rows=1000", "cpu-ns/flow"}), Target: atLeast(20)},
	{Section: "codec", Group: "codec", Name: "10,000-row batch: protojson ÷ Arrow, encode CPU", Unit: "×",
		Expr: ratio(Ref{"BenchmarkEncodeProtoJSON/rows=10000", "cpu-ns/flow"}, Ref{"BenchmarkEncode/rows=10000", "cpu-ns/flow"}), Target: atLeast(20)},
	{Section: "codec", Group: "bytes-per-flow", Name: "simulated second at 10k flows/s: JSON export ÷ Arrow, bytes", Unit: "×",
		Expr: val(Ref{"BenchmarkBytesPerFlow/rate=10k", "json/arrow"}), Target: &Target{Value: 30, Text: "≥ 30 (bytes ≤ 1/30)"}},
	{Section: "codec", Group: "bytes-per-flow", Name: "simulated second at 1k flows/s: JSON export ÷ Arrow, bytes", Unit: "×",
		Expr: val(Ref{"BenchmarkBytesPerFlow/rate=1k", "json/arrow"})},

	// Aggregator.
	{Section: "aggregator", Group: "aggregator-backlog", Name: "whole aggregator, the agent's messages at 1k flows/s: rows per CPU-second", Unit: "M",
		Expr: scaled(Ref{"BenchmarkAggregatorBacklog/rate=1000", "rows/cpu-s"}, 1e-6), Target: atLeast(1.5), Note: "issue 18"},
	{Section: "aggregator", Group: "aggregator-backlog", Name: "… at 10k flows/s", Unit: "M",
		Expr: scaled(Ref{"BenchmarkAggregatorBacklog/rate=10000", "rows/cpu-s"}, 1e-6), Target: atLeast(1.5), Note: "issue 18"},
	{Section: "aggregator", Group: "aggregator-backlog", Name: "… at 100k flows/s", Unit: "M",
		Expr: scaled(Ref{"BenchmarkAggregatorBacklog/rate=100000", "rows/cpu-s"}, 1e-6), Target: atLeast(1.5), Note: "issue 18"},
	{Section: "aggregator", Group: "aggregator-decode", Name: "decode + rollup, agent-cut messages of up to 1000 flows: rows per CPU-second", Unit: "M",
		Expr: scaled(Ref{"BenchmarkDecodeRollup/rows=1000/msgs=agent", "rows/cpu-s"}, 1e-6), Target: atLeast(2)},
	{Section: "aggregator", Group: "aggregator-decode", Name: "decode + rollup, agent-cut messages of up to 8192 flows: rows per CPU-second", Unit: "M",
		Expr: scaled(Ref{"BenchmarkDecodeRollup/rows=8192/msgs=agent", "rows/cpu-s"}, 1e-6), Target: atLeast(2)},
	{Section: "aggregator", Group: "aggregator-files", Name: "messages processed with raw flows on ÷ off, time per message", Unit: "×",
		Expr: ratio(Ref{"BenchmarkProcessRawFlows/on", "ns/op"}, Ref{"BenchmarkProcessRawFlows/off", "ns/op"})},

	// Relay.
	{Section: "relay", Group: "relay", Name: "relay CPU per flow delivered, 10 agents × 2,000 flows/s", Unit: "µs",
		Expr: val(Ref{"BenchmarkRelayFanIn", "relay-cpu-µs/flow"})},

	// Observer.
	{Section: "observer", Group: "observer-follow", Name: "follower delivery delay, p99", Unit: "ms",
		Expr: val(Ref{"BenchmarkFollowDelay", "p99-ms"}), Target: atMost(100)},

	// Hubble.
	{Section: "hubble", Group: "hubble-json-decode", Name: "a Hubble JSON line decoded: protojson ÷ the hubble-json source's decoder, time", Unit: "×",
		Expr: ratio(Ref{"BenchmarkDecodeLine/protojson", "ns/op"}, Ref{"BenchmarkDecodeLine/fast", "ns/op"})},
	{Section: "hubble", Group: "hubble-source", Name: "`--source hubble` from a local upstream, flows per CPU-second, whole process", Unit: "k",
		Expr: scaled(Ref{"BenchmarkHubbleSource/hubble", "flows/cpu-s"}, 1e-3), Target: atLeast(100)},
	{Section: "hubble", Group: "hubble-source", Name: "`--source hubble` ÷ reading Hubble's JSON lines, flows per CPU-second", Unit: "×",
		Expr: ratio(Ref{"BenchmarkHubbleSource/hubble", "flows/cpu-s"}, Ref{"BenchmarkHubbleSource/hubble-json", "flows/cpu-s"})},
}

// stormLine is the flow design's summary line of TestConnectStorm's log.
var stormLine = regexp.MustCompile(`flow design: (\d+) connections in \S+ \(([0-9.]+)/s\);.*?(\d+) connections without a complete record.*?(\d+) end events refused.*?(\d+) lost packet events.*reader CPU \S+ = (\S+) per flow`)

// extractStorm turns TestConnectStorm's -v log into benchmark result lines.
func extractStorm(out string) string {
	var b strings.Builder
	for _, m := range stormLine.FindAllStringSubmatch(out, -1) {
		d, err := time.ParseDuration(m[6])
		if err != nil {
			fmt.Fprintf(&b, "BenchmarkConnectStorm 1 reader CPU %q is not a duration\n", m[6])
			continue
		}
		var conns, incomplete float64
		fmt.Sscan(m[1], &conns)
		fmt.Sscan(m[3], &incomplete)
		fmt.Fprintf(&b, "BenchmarkConnectStorm 1 %s conns/s %s conns %s incomplete %g incomplete/conn %s refused-ends %s lost-events %.4f reader-µs/flow\n",
			m[2], m[1], m[3], incomplete/conns, m[4], m[5], float64(d.Nanoseconds())/1e3)
	}
	return b.String()
}
