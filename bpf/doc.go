// Package bpf is flowbus's kernel datapath: the tc programs of flow.c, their
// bpf2go bindings (bpf_bpfel.go and bpf_bpfel.o, generated and committed so
// that `go build` needs no clang), and the Collector that loads them,
// attaches them, reads their ring buffer and sweeps their flow map.
//
// Regenerate with `go generate ./bpf/` (make generate); the command is in
// gen.go. The C code includes only include/ and libbpf's bpf_helpers.h: the
// few uapi types it reads are declared in include/flowbus_types.h instead of
// a 2.8 MB vmlinux.h or the host's (Debian 6.1, pre-tcx) uapi headers.
//
// # What the kernel does
//
// flow_ingress and flow_egress run on tcx ingress and egress of each
// attached interface. They parse Ethernet, IPv4, IPv6 with up to 8 extension
// headers (hop-by-hop, routing, fragment, destination options, AH), TCP,
// UDP, ICMP and ICMPv6. A packet that is truncated or malformed is passed
// and counted by kind in the per-CPU counters array, never parsed further;
// non-IP frames and later fragments (no ports) are passed and counted apart.
// The programs return TCX_NEXT, except for a packet the policy denies,
// which they drop (TC_ACT_SHOT; see "Policy"): with no policy loaded they
// observe and never change a verdict. They attach at the head of the chain
// so they see packets before a program that drops or redirects them.
//
// # Flow state, not packet events
//
// Decision: per-flow state in the kernel, not an event per packet.
// The kernel keeps one map entry per flow, updates its counters on every
// packet, and sends a ring buffer event only when a flow ends or cannot be
// tracked.
//
// The alternative, one event per packet with flows assembled in userspace
// (the naive_per_packet_events switch still builds it, for comparison),
// moves every packet through the ring buffer, so the ring's size and the
// agent's CPU decide what is lost. TestConnectStorm runs both on the same
// 10 s storm of new TCP connections with the same 16 KiB ring buffer: in
// one run the per-packet design lost 704,371 events and 117,534 of 179,694
// connections; flow state had 1 of 177,592 connections without a complete
// record, against 3 events counted lost (29,995 end events were refused
// and recovered by the sweep), at 0.98 µs of the reader's CPU per flow
// (NetObserv's agent needs ~15 µs). The test fails if a connection is
// missing that no loss counter covers. Keeping the state costs an established packet +41 to +46
// ns over an empty program and a new TCP flow +397 to +460 ns
// (bench/HISTORY.md, "Kernel datapath"). The price: map memory fixed at
// load (see Map type and eviction), a record reaches userspace only when
// its flow ends or after ActiveTimeout, and the Collector must sweep the
// maps (see Ends and tails).
//
// # Flow key and conntrack-lite
//
// struct flow_key is (lo address, hi address, lo port, hi port, ifindex,
// protocol, family), the (address, port) pair that compares lower first, so
// both directions share one entry; IPv4 is stored IPv4-mapped. ICMP echo
// request/reply are keyed by their identifier. The ifindex is part of the
// key, so a flow between two local pods is one flow per pod interface, each
// equal to that interface's counters (as Hubble reports both endpoints).
// The initiator is the sender of a SYN without ACK, the receiver of a
// SYN-ACK or ICMP echo reply seen first, else the sender of the first
// packet seen. Every event says whether the packet that caused it came from
// the responder (is_reply) and whether the initiator's packets pass tc
// ingress (on a pod's host-side veth: the pod opened the flow).
//
// # Map type and eviction
//
// Flows live in two BPF_MAP_TYPE_HASH maps, flows4 for IPv4 (key struct
// flow_key4: 4-byte addresses, 20 bytes) and flows6 for IPv6 (struct
// flow_key, 44 bytes), each preallocated with MaxFlows entries (default
// 65536). The split is for speed: the hash lookup is most of an
// established packet's cost, and the kernel hashes and compares the whole
// key, so an IPv4 packet costs ~5-10 ns less with a key less than half as
// long (BenchmarkProgram). Events and the Go side see every flow as a
// flow_key (IPv4-mapped); flowmaps.go picks the map and converts keys.
//
// Decision: flows live in hash maps, not LRU hash maps.
// A full BPF_MAP_TYPE_HASH refuses a new flow, and the refusal is counted
// and reported.
//
// An LRU hash makes room by evicting an approximately least-recently-used
// entry without telling the program or userspace: on a busy node the
// counters of flows still alive would vanish, in no output and in no
// counter. A hash refuses the insert instead; the program counts it
// (map_insert, exported as flowbus_bpf_kernel_events_total) and reports the
// packet alone as EVENT_INSERT_FAILED, so the packet is still in the
// output and the lost flow state is visible. LRU was not benchmarked: the
// choice is about loss, not speed. The price is sizing: each map is
// preallocated with MaxFlows entries (a 72-byte value and a 20- or 44-byte
// key each), and beyond that a new flow costs one event per packet until
// entries are freed. A new TCP flow, the insert included, costs +397 to
// +460 ns over an empty program with entries recycled and +470 to +520 ns
// on a cold map (bench/HISTORY.md, "Per-packet cost"). Only the hints that
// ended flows leave behind (ended4, ended6) are LRU maps, on purpose: they
// carry no counts (see "Ends and tails").
//
// Entries leave the maps by:
//   - the Collector's sweep, which scans
//     both maps with batch lookups (iteration where unsupported) and removes
//     with per-key lookup-and-delete, so the counts it reports are exactly
//     those it removed (an entry that changed since the scan is put back):
//     ended flows (with their tails), once quiet for EndLinger (default
//     1 s; see "Ends and tails");
//     ended flows whose end event was lost (reported now, as
//     EventRecovered); flows idle for IdleTimeout (default 10 s).
//
// Decision: the sweep's cadence follows the maps' load. A scan copies
// every entry out whatever changed (~0.2 µs per entry, and ~0.1 ms for
// the buckets of two empty 65536-entry maps), and a flow that waits for
// its idle timeout, such as a DNS query's UDP flow, was copied at every
// scan, ten times at one scan a second. The Collector ticks every
// SweepInterval (default 1 s; see "Interfaces" for what it does with the
// interface list then); the maps are scanned at a tick only while they
// are busy: the last scan found MaxFlows/2 flows or more, MaxFlows/4
// events or more came since (each end leaves an entry to free), or the
// kernel counted a refused end event (its flow waits to be recovered) or a
// refused new flow (a full map) since; otherwise every MaxSweepInterval
// (default 4 s). The price: when the maps are not busy, tails,
// idle-timeout and active-timeout records come up to MaxSweepInterval
// after they are due instead of up to SweepInterval, and ended entries
// stay up to that long; when they are busy, nothing changes. Each sweep
// logs at debug level what it scanned, freed and removed, and how long it
// took.
//
// # Ends and tails
//
// A flow ends with FIN in both directions and the last ACK, or with a RST:
// the kernel emits its end event (EVENT_FLOW_END, EVENT_FLOW_RESET) with
// the counters, takes exactly those counters off the entry with atomic adds
// (a packet racing the event on another CPU stays counted), marks it
// reported with the TCP flags the event carried, and leaves it in the map,
// where packets after the end (a late ACK, a retransmitted FIN, data or a
// RST answering a reset) accumulate as the flow's tail, in the connection's
// orientation, instead of opening a new flow oriented from whoever sent
// them (the reversed "straggler" flows that doubled some pairs). It also
// leaves a hint in an LRU map (ended4, ended6: who opened the flow and what
// its end carried), so that a packet after the sweep freed the entry still
// starts a tail rather than a new flow. An ended entry goes once it has
// been quiet for EndLinger: the bulk, with no packet since the end, freed
// in the kernel at the start of a sweep whose last scan saw some
// (sweep_husks: one program run over both maps with bpf_for_each_map_elem,
// so these entries are never copied out); a tail, reported first (EventFlowTail), by the sweep's
// lookup-and-delete. A SYN on the tuple before that (a new connection
// reusing it) makes the kernel emit the tail (EVENT_FLOW_TAIL) and restart
// the entry for the new connection. A tail
// event is Continued: its flags leave out the SYN, FIN and RST the end
// carried, and it carries no handshake. Active-timeout records after a
// flow's first record are Continued in the same way (the Collector
// subtracts what it reported). Every packet is thus in exactly one event,
// and each connection's first event is the only one that is not Continued.
//
// Why the kernel does not free an ended entry itself: in a simultaneous
// close or a reset, the peer's packet is often being accounted on another
// CPU at the instant of the end, into the entry a delete would take away;
// TestLabCountsEveryConnectionOnce lost one packet of a few hundred
// connections that way in most runs. Freeing after EndLinger of quiet
// leaves no such window in practice. The cost is the sweep's: the reader
// thread's CPU per flow in TestConnectStorm is ~1.6 µs, against ~0.6 µs
// when the kernel freed clean closes at once (and lost packets) and ~2.1
// µs with one lookup-and-delete per ended flow. The hints are LRU on
// purpose: they carry no counts, and one evicted (16384 per family outlive
// a second of ends at 16,000 connections/s) only makes a late packet a
// mid-stream flow. When the sweep takes an entry out that moved on meanwhile
// and a packet opened a new one in that instant, it reports what it took
// out instead of putting it back, so nothing is lost there either.
//
// Decision: the kernel frees quiet reported ends, and claims each first.
// Freeing them from userspace by key (one batch delete per sweep, as
// before) had a window from the scan to the delete, tens of ms on a large
// map, in which a new connection reusing the tuple restarted the entry and
// was then deleted with it: its SYN gone, its other packets a tail of the
// old flow, the connection in no record and no counter (8 of 189,061
// connections in a 10 s storm, 34 of 230,111 under CI's load). Now the
// free and the restart both claim the entry with a compare-and-swap of
// its flags (FLOW_FREEING) and only the winner acts: a free that lost
// leaves the entry to the new connection; a restart that lost inserts the
// new connection once the delete is done, retrying a few times, and should
// the delete not come in time reports the SYN alone and counts it
// (map_insert). A tail packet counted into an entry between the free's
// check and its delete is reported from the deleted entry, read after the
// delete (still valid in that RCU section); only one whose add lands after
// that read, a window of a few instructions, could go unreported.
//
// A TCP entry created by a packet that opens nothing (no SYN, no SYN-ACK:
// the agent started after the connection opened, or the sweep removed it
// while it was idle) is marked FLOW_MIDSTREAM (Event.Midstream): its
// initiator is only the sender of the first packet seen, which the agent
// corrects where it knows the server's port.
//
// A SYN without ACK skips the lookup and goes straight to the insert
// (BPF_NOEXIST): it almost always opens a new flow, and the insert says
// whether the entry exists, so a new flow costs one hash and bucket walk
// instead of two (~100–170 ns less per new flow in BenchmarkProgram). On
// -EEXIST (a retransmitted SYN, another CPU inserted it first, a new
// connection on the tuple of an ended flow) the program looks the entry up
// and proceeds as for any packet of a known flow.
//
// Flows alive for ActiveTimeout (default 10 s) since their last record get an
// EventActiveTimeout record carrying the counts since that record and stay in
// the map (the Collector remembers what it reported, so direction and
// handshake survive). A SYN on an ended entry restarts it for the new
// connection. Counters are updated with atomic adds, so two CPUs updating
// one flow lose nothing.
//
// # Fast path
//
// Most packets are IPv4 TCP or UDP packets of a known flow that change only
// its counters. handle() first tries established_ipv4, which takes an IPv4
// packet without options whose flow is in flows4 and which is UDP, or TCP
// with no flags but ACK and PSH, each already seen on the flow (and not the
// ACK that closes it after both FINs). It parses those headers with the
// checks of the full parser, builds
// the same flow_key4 straight from the packet (no intermediate struct), looks
// it up and accounts the packet exactly as the full path would: atomic adds
// and last_seen. Any other packet changes nothing there and takes the full
// path; if the fast path looked its flow up (a new flow's first packet
// without SYN, a flag new to its flow, the closing ACK), the full path uses
// that result instead of a second lookup. This saves ~7 ns per established
// packet in BenchmarkProgram. TestFastPathAccountsAsTheFullPath sends flows
// whose packets alternate between the paths (IP options force the full
// one) and checks one entry per flow with exact counters: both paths
// build the same key.
//
// # Event policy
//
// The ring buffer carries an event only when a flow ends (EVENT_FLOW_END,
// EVENT_FLOW_RESET, with the final counters), when a new connection takes
// over an ended entry with a tail (EVENT_FLOW_TAIL), when the map refuses a
// flow (EVENT_INSERT_FAILED, one packet), and, if enabled, when a flow
// starts.
// Established packets only touch the map. Start events are off by default
// (Config.EmitStartEvents): with one, a new TCP flow costs +495 to +523 ns
// over an empty program instead of +397 to +460 ns (BenchmarkProgram), and
// flows are reported when they end. Every refused reservation is counted in a per-CPU counter by
// what it loses: ringbuf_start and ringbuf_end lose nothing (the end of a
// flow stays in the map, unreported, for the sweep), ringbuf_lost loses
// data (per-packet events; an unreported end superseded by a new
// connection). Counters.Lost is what the agent reports as
// hubble_lost_events_total{source="perf_event_ring_buffer"}.
//
// # Wakeups
//
// Decision: one reader wakeup per batch of events, none when idle, and an
// event waits in the ring at most PollInterval (default 100 ms) plus the
// time to drain what came before it.
//
// The kernel submits an event with the ring buffer's default wakeup, which
// wakes the reader only when the ring held nothing unread before it (the
// first event of a batch), and with BPF_RB_FORCE_WAKEUP once a quarter of
// the ring is unread (bpf_ringbuf_query(BPF_RB_AVAIL_DATA) ≥ wakeup_bytes,
// a volatile const: RingBufSize/4, 256 KiB by default, ~1,800 events). The
// reader (Collector.Run) waits in two steps: with the ring drained, until
// the kernel wakes it; then, for the rest of the batch, until PollInterval
// has passed or the ring reaches the watermark, and drains the ring. At
// ordinary rates the ring is never a quarter full in 100 ms (that takes
// ~18,000 events/s), so the reader wakes twice per PollInterval while
// events come and never while none do; in a storm it wakes at the
// watermark. A wakeup per event, the ring's default alone, cost the agent
// more CPU in thread switches than the events' work; the naive timed poll
// (NO_WAKEUP below the watermark, a reader polling every 50 ms) woke it 20
// times a second even when idle. A lost wakeup cannot strand an event:
// the first wait also ends when the sweep is due (SweepInterval).
//
// The reader waits in the Go runtime's netpoller, on a duplicate of the
// ring's descriptor (ringWaiter), not in the ringbuf.Reader's own
// epoll_wait: a goroutine parked there holds no thread and no P, whereas
// a thread blocked in a system call for tens of milliseconds keeps the
// runtime's sysmon thread waking every 20 µs to 10 ms to take its P back,
// which was most of the agent's idle CPU. Once woken, the reader drains
// with ringbuf.Reader.ReadInto under a deadline in the past (records that
// came without a wakeup are read; none is waited for). Run locks its
// goroutine to its thread only while it works (Stats.ReaderCPU is that
// thread's CPU over those stretches): a parked goroutine locked to a
// thread costs two more thread switches per wakeup. Where the descriptor
// cannot join the netpoller (not expected on Linux), Run blocks in the
// reader's epoll_wait with PollInterval deadlines instead, and then wakes
// for every event that finds the ring drained.
//
// The sweep's deadline falls on the multiples of SweepInterval (wall
// clock, internal/tick), where the agent's aggregation window and the
// endpoints file's check fall too: an idle agent wakes once a second for
// all three, not once for each at its own phase. Once a second the reader
// also reads the kernel's ring loss counter: one counter (Collector.Counter),
// one system call.
//
// The L7 capture ring (l7_events) keeps its own scheme unchanged: NO_WAKEUP
// below l7_wakeup_bytes, a reader polling every 50 ms (or PollInterval
// when set).
//
// Feature switches are volatile const globals set before load:
// naive_per_packet_events (one EVENT_PACKET per packet and no map: the
// design this one replaces, kept for the storm comparison),
// emit_start_events, wakeup_bytes.
//
// Clocks: first_seen and the handshake (first SYN → SYN-ACK seen on this
// interface) use bpf_ktime_get_ns (CLOCK_MONOTONIC). The per-packet
// last_seen of the established path is jiffies * tick_ns + jiffies_base_ns:
// bpf_jiffies64, which the verifier inlines on 64-bit (a plain load: no
// helper call, so none of the return thunks the SRSO mitigation makes
// expensive), converted in the kernel to CLOCK_MONOTONIC ns, so every time
// in the map and the events stays in one clock and layout. tick_ns is the
// kernel's tick (TICK_NSEC, read from the resolution of
// CLOCK_MONOTONIC_COARSE) and is set before load; jiffies_base_ns is set
// by the clock_calibrate program, which loadObjects runs once after load
// (it reads jiffies and bpf_ktime_get_coarse_ns together, and again if a
// tick raced them). The jiffies clock thus equals the coarse clock
// (bpf_ktime_get_coarse_ns, which it replaced) at the cost of a load and a
// multiply: one tick of resolution (4 ms at HZ=250), the start of the
// current tick. Event converts both times to Unix time and clamps last_seen
// to first_seen (a flow's second packet in its first tick).
//
// # Policy
//
// Enforcement and observation are one program: the tcx program that
// accounts a flow also decides its verdict, drops a denied packet
// (TC_ACT_SHOT) and reports the drop as the flow's record (EVENT_FLOW_DROP at
// the first dropped packet, the later ones in the flow's next records), so
// a flow can never be denied without being observed. Userspace
// (PolicyMaps, filled by agent/source/ebpf from agent/policy) writes four
// maps:
//
//   - ipcache, an LPM trie of address prefix → security identity and, for
//     an address inside a prefix a policy names, its CIDR identity. An
//     address not in it is the world.
//   - endpoints, the ifindex of a pod's host-side interface → its endpoint:
//     id, identity, which directions a policy selects (enforce), whether it
//     has deny rules, the policy id of its default deny, and the generation
//     of its rules in use.
//   - policy_allow and policy_deny, LPM tries keyed by (endpoint id and
//     generation, direction, peer identity, protocol, port prefix): a port
//     range is a few prefixes, "any port" prefix length 0. They are apart so
//     that a narrower allow never hides a wider deny in one longest-prefix
//     lookup. A rule's value is a policy id, which the program copies into
//     the flow it decides and does not read: its owner gives it meaning
//     (the eBPF source: the set of policies, and the kind of rule in the
//     top 4 bits, agent/source/ebpf).
//
// A flow is decided when its entry is made, for the pod behind the
// interface: its egress policy when the pod opened the flow, else its
// ingress policy, for the peer's identity, the protocol and the
// responder's port. The peers looked up, in order: the peer's identity,
// the world of its family when it is outside the cluster, its CIDR
// identity, any peer. A deny rule drops; a direction no policy selects
// passes; an allow rule passes; else the endpoint's default deny drops.
// Replies belong to the flow, so they pass with it (stateful), and an
// established flow costs no lookup: the verdict is in its entry. A
// mid-stream flow (opener guessed) passes if either way round is allowed.
//
// Updates are map diffs, never a program reload, and atomic per endpoint:
// an endpoint's new rules are written under its other generation, then the
// endpoint entry switches to it in one update, so a packet sees the old
// rules or the new ones, never a mix or an empty set; the old generation is
// then deleted. Commit moves policy_revision on, and every flow decided
// under an older revision is decided again on its next packet (one CPU
// does it, by compare-and-swap): a connection a change still allows goes
// on, one it denies is dropped from its next packet, in both directions. An
// interface's endpoint is written before its programs are attached
// (Config.BeforeAttach), so no packet of it is seen unenforced. With no
// policy ever loaded (policy_revision 0) nothing is looked up.
//
// # Kernel drops
//
// kfree_skb_drop (flow.c) is a tp_btf program on the kfree_skb tracepoint,
// which the kernel hits when it drops an skb, with its enum
// skb_drop_reason. It is not on the tcx path: the flow programs'
// per-packet cost is unchanged. New attaches it (link.AttachTracing); if
// that fails, flows are still observed and Stats.KernelDropsError says
// why. It skips SKB_NOT_DROPPED_YET, SKB_CONSUMED and NOT_SPECIFIED (the
// plain kfree_skb() of paths that free without a reason), whose values it
// takes from the kernel's BTF by name (CO-RE enum relocations).
//
// It takes only pod traffic: an skb whose device is an attached interface
// (kdrop_ifaces, which reconcile keeps in step with the tcx links), in the
// agent's network namespace (agent_netns_inum, set before load: ifindexes
// are per namespace), or a veth whose peer is one, i.e. a drop inside the
// pod's namespace on its eth0 (netdev_priv(dev)->peer). It counts each
// drop per CPU by kernel reason (kdrop_counters, 256 slots and OTHER for
// subsystem reasons), exported as flowbus_bpf_kernel_drops_total{reason},
// the reason named from the running kernel's BTF (the values differ
// between kernels). The kernel runs a tp_btf program once per CPU at a
// time: a drop while it already runs there (a softirq's drop interrupting
// it on a drop in process context, or a task preempting it) skips it and
// counts a recursion miss in the program's stats, which the Collector
// reads (KernelDropsMissed) and the agent exports as
// flowbus_bpf_kernel_drops_missed_total: such a drop is in no reason's
// count and no record. It reports the packets it can parse from skb->head +
// network_header (IPv4, or IPv6 without extension headers; TCP or UDP; not
// a later fragment) as EVENT_KERNEL_DROP: one packet, keyed as the tcx
// programs key its flow on the host-side interface, from its sender; its
// bytes are the Ethernet frame's length from the IP header (as tcx counts
// it); Ingress says the pod behind the interface sent it (received on the
// host side, or not received on the pod's side).
//
// Hubble reasons: Cilium has no table from kernel reasons to its
// DropReason; flowbus's (kdrop.go, kdrop_hubble filled by name at load)
// maps only where the meaning is the same: NO_SOCKET to
// SOCKET_LOOKUP_FAILED; checksum, header and length errors to
// INVALID_PACKET_DROPPED; bad or local source addresses to
// INVALID_SOURCE_IP; IP_NOPROTO to UNKNOWN_L4_PROTOCOL; UNHANDLED_PROTO to
// UNSUPPORTED_L3_PROTOCOL; bad IPv6 extension headers to
// INVALID_IPV6_EXTENSION_HEADER; no route to FIB_LOOKUP_FAILED. Every other
// reason gives DROP_REASON_UNKNOWN and only its counter names it.
// TC_INGRESS and TC_EGRESS (a tc program's drop, flowbus's own policy
// drops included, which are already EVENT_FLOW_DROP records) are counted
// and not reported.
//
// The agent makes a kernel drop a DROPPED record that counts nothing
// (CountNone): the tcx programs counted the packet in its flow's record
// before the stack dropped it. Gaps: a packet the pod's own stack drops
// before it leaves the pod (no route, neighbour failure) was never seen
// by tcx, so it is in the counter and a record but in no flow's traffic;
// an IPv6 packet with extension headers, and protocols other than TCP and
// UDP, are counted only. TestKernelDropNoSocket sends UDP datagrams to a
// port with no socket in another pod and checks the exact NO_SOCKET count
// and each record.
//
// # L7 capture
//
// Decision: L7 visibility comes from the program that observes, not from
// a proxy, socket programs or uprobes. With L7Config.Ports set, a flow whose
// server port (the destination of its opener; for a mid-stream flow either
// port) is listed gets that port's class in flow_stats.l7 at its first
// packet, at one interface only, by the count-once rule of the flow
// records: the server pod's interface, or the client's when the server is
// not a pod of the cluster (its identity from the ipcache is not in the
// cluster range; before the ipcache is filled, both interfaces capture).
// Every later packet of the flow with payload, and its SYN, FIN and RST,
// goes through l7_capture, a global function (verified once, and of a
// small frame: the handler's stack and the policy decision's share 512
// bytes), which reads the L4 header again and copies the capture's header
// (addresses, ports, sequence number, payload length, flags, time) and the
// first HeadBytes of the payload with bpf_ringbuf_output into l7_events, a
// ring of its own so that a burst of payload never takes the room of flow
// records. Only the head is copied: bytes per request are bounded, and the
// parsers find message boundaries from lengths and skip the rest by offset
// (agent/l7). A refused capture is counted per class (l7_counters:
// captured, ringbuf, load) and is a gap in its stream for the parsers,
// which count it too; the datapath never waits. A packet with payload of a
// captured flow leaves the fast path for the full one (its parsed headers
// feed the capture); flows on other ports keep the fast path and pay
// nothing, and with no ports l7_enabled is 0 and the verifier removes the
// capture from the program. Collector.RunL7 reads the captures on a
// goroutine of their own. Limits: TLS payloads are ciphertext (no
// plaintext without uprobes on the TLS libraries, not done) and QUIC is
// UDP the parsers do not follow; a segment larger than the head (a GSO
// super-packet holding several pipelined messages) shows only its first
// message's header, and the parsers count what they could not read.
// TestL7CaptureFollowsStreams rebuilds both byte streams of a connection
// from the captures; BenchmarkProgram's l7_* cases give the costs.
//
// # Struct layout
//
// flow_key, flow_key4, flow_stats and flow_event (include/flow.h) are
// fixed-width and explicitly padded; the build uses -Wpadded, so implicit
// padding is an error. TestBoundaryStructsMatchBTF checks size, member offsets and sizes of
// the generated Go types against the object's BTF. The generated types stay
// unexported: Event is the domain type, decoded in place from the ring
// buffer record (ringbuf.Reader.ReadInto reuses one buffer; Event is reused
// for every call of Sink.Event).
//
// # tcx, not legacy tc
//
// The programs attach with tcx links (Linux 6.6+), which the kernel removes
// with their interface and which coexist with other programs through
// anchors. There is no clsact/cls_bpf fallback: it needs netlink qdisc and
// filter management (no netlink library is in go.mod) and pinning for
// cleanup. On an older kernel Run fails with the attach error.
//
// # Interfaces
//
// Config.Interfaces are names or path.Match globs ("lxc*", "veth*",
// "eth0"). The Collector lists the interfaces again at the SweepInterval
// tick after the kernel announced a change (it listens to rtnetlink's link
// group, RTMGRP_LINK; listing every link cost ~0.4 ms a second on a host
// with a few dozen veths), or at every tick where it cannot listen: it
// attaches to new matches and forgets interfaces that are gone (their
// links go with them). A failed attach is logged, kept in
// Stats.AttachError, and retried at every tick until it succeeds.
//
// # Socket load balancing
//
// Service translation is not in these programs: it is a separate object,
// bpf/socklb (sock.c and its own bpf2go bindings), attached to cgroups, not
// interfaces. Its cgroup/connect and sendmsg programs rewrite a
// ClusterIP:port to a backend before any packet exists (random, or
// Maglev by the socket cookie's hash), so the packets these tcx programs
// see, and the flows they key, are already pod to backend: no flow ever
// needs a reverse NAT. Its recvmsg and getpeername programs give the
// application the ClusterIP back; a service with no ready backend fails
// connect() with ECONNREFUSED (bpf_set_retval). Each decision is an event
// of its own ring buffer (socket cookie, cgroup, pid, ClusterIP:port,
// backend, service id, verdict), which the agent turns
// into Hubble's TRANSLATED records (agent/source/ebpf, "Socket load
// balancing"; flowbus agent --socket-lb). The design, its decisions and
// its cost are in bpf/socklb's package documentation; the cost beside an
// empty cgroup/connect4 program in bench/HISTORY.md, "Socket load
// balancing".
//
// # Pinned maps
//
// Collector.PinMaps pins flows4, flows6, ipcache, endpoints, policy_allow
// and policy_deny by name under a directory of the BPF filesystem
// (internal/bpfpin; the agent's --bpf-pin-dir), and OpenPinned reads them
// back from another process, read-only, with the maps' own key and value
// types: flows as the Event their entry would make (MapFlow), the ipcache,
// and each endpoint with the rules of the generation it uses (the other
// generation exists only during a switch). A lookup racing the agent's
// writes sees each entry old or new; a listing is not one instant's (the
// kernel iterates a map while it changes). bpf/inspect builds the
// snapshots of `flowbus bpf` and `flowbus audit` on them.
//
// # Known gaps
//
//   - Packets after a flow's entry left the map (quiet for EndLinger after
//     its end, or idle for IdleTimeout) open a new, mid-stream entry.
//   - last_seen has the resolution of one kernel tick (jiffies).
//
// # Tests
//
// Crafted packets through BPF_PROG_TEST_RUN (prog_test.go), truncation at
// every offset, malformed headers and random frames (fuzz_test.go, and
// FuzzProgram), BTF layout (layout_test.go), real traffic between network
// namespaces (datapath_test.go, storm_test.go, fixtures in bpf/nettest), and
// BenchmarkProgram beside the tc_floor program. They need root and skip with
// the reason otherwise.
//
// TestConnectStorm also runs the storm with no program attached and logs
// both rates: on the 2-core development machine the storm's rate is set by
// the kernel's TCP, veth and bridge paths, not by the flow programs, which
// are ~3 % of its CPU (bench/HISTORY.md, "Connect storm").
package bpf
