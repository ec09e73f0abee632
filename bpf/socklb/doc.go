// Package socklb is socket-layer load balancing, as Cilium's socket LB:
// cgroup programs translate a Service's ClusterIP:port to a backend at
// connect() and sendmsg(), report each decision, and give the application
// the ClusterIP back at recvmsg() and getpeername(). It is a piece of its
// own: the agent (agent/source/ebpf, flowbus agent --socket-lb: services
// and backends from its cluster view, decisions as TRANSLATED records)
// builds on it.
//
// # What the kernel does
//
// sock.c has nine programs, attached together to a cgroup v2 directory
// (LB.AttachCgroup: the pods' cgroups, or the root cgroup on a node), so
// every socket of a process in that cgroup or below is load balanced:
//
//   - cgroup/connect4 and connect6 (TCP and connected UDP) and
//     cgroup/sendmsg4 and sendmsg6 (unconnected UDP, each datagram) look
//     the destination up in lb_services, keyed by (address, port,
//     protocol) with IPv4 stored IPv4-mapped, so a v4-mapped destination
//     on an IPv6 socket finds the IPv4 service. Not a service: nothing
//     changes, at the cost of one hash lookup. A service: the program picks
//     one of its count ready backends, rewrites the destination to it,
//     records the translation (a TCP socket's in its slot of lb_peer, or
//     its own storage, lb_revnat_sk; UDP's in lb_revnat), reports the decision
//     (SOCK_TRANSLATED) and lets the call proceed to the backend: the
//     packets, tcpdump and the flow programs see the real peer, never the
//     ClusterIP, and nothing on the packet path reverses a NAT.
//   - cgroup/recvmsg4/6 (a datagram's source) and getpeername4/6 (a
//     socket's peer) find the translation (a TCP socket's slot or storage,
//     if its peer is the backend recorded there; for UDP, (socket cookie,
//     backend address, port) in lb_revnat) and put the ClusterIP and its
//     port back, so a DNS client that checks the reply's source accepts it
//     and an application that asks whom it is connected to gets the
//     address it dialled.
//   - cgroup/sock_release frees a closing TCP socket's lb_peer slot. It
//     runs for every socket of the cgroup that closes (not attached with
//     Config.NoTCPPeer).
//
// Backend choice, per service (Service.Algorithm): Random takes slot
// bpf_get_prandom_u32() % count + 1, for every connect() and every
// unconnected sendmsg() (a UDP socket's datagrams may go to different
// backends; each reply is rewritten by the backend it came from). Maglev
// takes the slot at entry MaglevIndex(cookie) of the service's table: the
// socket cookie's hash (MurmurHash3's 64-bit finalizer, mod M), not the
// 5-tuple, since at connect() the source port is usually not chosen yet; a
// socket keeps its backend for all its datagrams.
//
// # Maps
//
//   - lb_services: hash, (ClusterIP, port, protocol) → (service id, count,
//     algorithm, flags; no flag is defined yet). Config.MaxServices
//     entries; ids run 1..MaxServices-1 and are the caller's (Cilium's
//     service id).
//   - lb_backends: hash, (service id, slot 1..count) → backend address,
//     port, family and the caller's backend id. Config.MaxBackends slots
//     over all services.
//   - lb_maglev: array of maps by service id, each an array of M backend
//     slots (Config.MaglevM), only for Maglev services.
//   - lb_peer: array of Config.PeerSlots (a power of two, default 65,536:
//     3 MiB) slots, each a socket cookie (0: free), backend, ClusterIP and
//     port, service id. A translated TCP socket takes slot cookie &
//     (PeerSlots-1) with a compare-and-swap from 0; sock_release puts 0
//     back.
//   - lb_revnat_sk: socket storage (BPF_MAP_TYPE_SK_STORAGE) of a
//     translated TCP socket whose slot another open socket holds
//     (CounterPeerStorage). Neither is written with Config.NoTCPPeer
//     (getpeername() then names the backend).
//   - lb_revnat: LRU hash for UDP sockets, (socket cookie, backend
//     address, port) → (ClusterIP, port, service id),
//     Config.RevNATEntries entries. A translation looks its entry up
//     first and writes it only when it is missing or differs (as
//     Cilium's sock4_update_revnat): an unconnected socket's sendmsg()
//     is translated per datagram, and an LRU update replaces the element
//     where a lookup only marks it used.
//   - sock_events: the decisions' ring buffer; sock_counters: per-CPU
//     counters (Counters): translated, refused, ring buffer refusals,
//     reverse-NAT updates refused and answers rewritten, and the three
//     refusals a consistent sync never causes (a missing slot or table, an
//     IPv6 backend for an IPv4 socket).
//
// Decision: a Maglev table per service in an array of maps, not one flat
// array of MaxServices × M entries.
// A flat array is allocated whole at load: 1024 services × 16381 entries ×
// 4 bytes is 64 MiB, whether one service uses Maglev or none. In an array
// of maps each Maglev service's table is a map of its own, 64 KiB at the
// default M, created when the service is set. And the swap is atomic:
// SetService fills a new table and replaces the old one with one update of
// lb_maglev, so a connect() sees the whole old table or the whole new one;
// rewriting a flat array in place would show a mix for the length of the
// write. The price is a second lookup per Maglev connect (one more map
// pointer chase, within the noise of BenchmarkSockLBConnect).
//
// Decision: M is DefaultMaglevM, 16381, a prime (Cilium's default), and
// must be a prime above the number of backends.
// Maglev's tables are even to one entry (every backend owns ⌊M/N⌋ or
// ⌈M/N⌉ entries: the fill gives each backend one entry per round), so
// with M ≈ 100 × N the shares are within ~1 % of each other; 16381 keeps
// that up to ~160 backends per service for 64 KiB. A change of backends
// moves few entries of the others: 88 of 16381 when one of ten backends
// leaves (TestMaglevEvenAndMinimalDisruption). The tests use 13 and 1021 to
// keep tables small. MaglevTable is the paper's algorithm (Eisenbud et
// al., NSDI 2016): offset and skip of each backend from the SHA-256 of its
// name (address:port, so every node computes the same table), permutation
// fill in the order of the names.
//
// Decision: a TCP socket's translation is kept in a slot its cookie
// selects, freed when the socket closes, and in the socket's own storage
// when that slot is taken; a UDP socket's in an LRU hash keyed by socket
// cookie and backend.
// A connected TCP socket has one peer for its life, so it needs exactly
// one translation, from connect() until close(). In an LRU hash (Cilium's
// choice for both) a node with more translated sockets than entries evicts
// entries of sockets still open, whose getpeername() then shows the
// backend, and closed sockets' entries wait for eviction; every connect()
// inserts and evicts (+800 to +1,070 ns of program time over the floor,
// once full). Socket storage is exact (created at connect(), freed with
// the socket) but an allocation per socket, two memory-cgroup-charged
// kmallocs: about 300 ns of a +470 to +525 ns connect(). A slot of a
// preallocated array is a compare-and-swap on memory that is already
// there: +177 to +185 ns for the whole translated connect(), and
// sock_release's 68–75 ns when the socket closes. Nothing is stale: a slot
// answers getpeername() only for the cookie that holds it (cookies are
// never reused), a socket whose slot is taken by another open one falls
// back to storage, and a slot is freed by its own socket's release. The
// price falls on every TCP socket of the attached cgroups that closes,
// translated or not: sock_release runs for each (92–101 ns for one that
// dialled no service, whose cookie it creates). A connect() to what is no
// service pays nothing more. Should release not run (a socket of a cgroup
// the programs were detached from), its slot stays taken and later
// sockets with that slot use storage: slower, never wrong. An unconnected UDP
// socket may send to several services and, with Random, to several
// backends of one, and recvmsg must rewrite each reply by the backend it
// came from: one translation per (socket, backend), which socket storage
// (one value per socket) cannot hold; those stay in the LRU.
//
// # Refusal: ECONNREFUSED
//
// Decision: a service with no ready backend fails connect() and sendmsg()
// with ECONNREFUSED, set with bpf_set_retval before returning 0.
// A cgroup sock_addr program that returns 0 fails the syscall with EPERM:
// the kernel sets -EPERM only when the program has not set an error of its
// own, and bpf_set_retval (Linux 5.18+) sets one. Cilium does the same
// (try_set_retval(-ECONNREFUSED), then SYS_REJECT). ECONNREFUSED is what
// an application expects from a service with nothing behind it (kube-proxy
// answers with an ICMP reject, which gives it too), where EPERM reads as a
// local policy refusal. The alternative of rewriting to an unreachable
// address would leave a TCP client retrying SYNs for a minute. The
// decision is reported with SOCK_NO_BACKEND (Hubble: DROPPED,
// SERVICE_BACKEND_NOT_FOUND).
//
// # Sync
//
// LB.SetService makes the kernel hold exactly the given ready backends,
// writing only what changed, in an order that never lets a connect() pick
// a backend outside the old or the new set or find an empty slot: a
// backend still present keeps its slot if it is within the new count, the
// others fill the remaining slots; new and changed slots are written
// first, then the Maglev table (built whole, swapped in), then the service
// entry with the new count, then the slots beyond it are deleted. A
// removed backend is out as soon as the slot it had holds another one or
// the count excludes it: TestSockLBDatapath's remove_backend sees no
// connect decided after SetService returned reach it (the update took
// 0.09–1.2 ms in its runs). Nothing is reloaded. A service given again
// unchanged writes nothing. A write that fails leaves the service marked
// to be rewritten whole on the next SetService.
//
// LB.PinMaps pins lb_services and lb_backends under a directory of the BPF
// filesystem (the agent's --bpf-pin-dir), and ReadPinned reads the
// services and their backends, in slot order, from another process. The
// Maglev tables are not pinned: they follow from the backends.
//
// # Decisions
//
// Every translated or refused connect() and sendmsg() is one record: time,
// socket cookie, the caller's cgroup id, pid (thread
// group), protocol, family, ClusterIP:port, backend and its id, service
// id, verdict and hook. An IPv4 socket's is sock_event4 (56 bytes: with
// the ring's 8-byte header, one cache line), an IPv6 socket's sock_event6
// (120: two); ReadEvent tells them apart by size. Every record starts a
// cache line, and each line of the ring a connect() writes was last held
// by the reader's CPU: a 96-byte record, as before, wrote two and cost
// about 40 ns more. The kernel wakes the reader once a quarter of the ring
// waits (Config.WakeupBytes) and ReadEvent polls every PollInterval
// otherwise, as the Collector's ring. The ring's fill is read for one
// translation in 64 per CPU (and every refusal), not each:
// bpf_ringbuf_query reads the reader's position, a cache line the
// reader's CPU writes (about 25 ns a connect() when read for one in
// eight); the wakeup then comes at most 63 records (4 KiB) per CPU late,
// against a quarter of the ring.
//
// Decision: the kernel stamps a record with the coarse clock
// (bpf_ktime_get_coarse_ns: CLOCK_MONOTONIC as of the last tick), not
// bpf_ktime_get_ns, and ReadEvent makes Event.Time the earlier of when it
// read the record and one tick after the stamp (clock_getres of
// CLOCK_MONOTONIC_COARSE: 4 ms at HZ=250). Both come after the decision and
// the stamp before it, so Time is never early and at most one tick late:
// with the reader's batched wakeups (a look every PollInterval) most records
// are read a tick or more after their stamp and get the stamp plus one tick,
// 0 to 4 ms late; a reader woken for each record reads it microseconds after
// the decision. A precise clock read costs 100-150 ns of a connect() on a VM
// whose only clocksource is kvm-clock (about 20 ns on hardware with the
// TSC), a quarter of the translation's cost there (bench/HISTORY.md). Hubble
// stamps every event, its socket LB's TRANSLATED ones included, when its
// agent reads it, as late as its reader is; a flowbus decision is never more
// than a tick late. Event.MonoNs keeps the kernel's stamp, a lower bound for
// a test that must know a decision came after a point in time.
//
// Where no application asks getpeername() for the ClusterIP,
// Config.NoTCPPeer (flowbus agent --socket-lb-peer=false) records no TCP
// translation and leaves sock_release out: about 20 ns less per connect()
// and nothing at close (BenchmarkSockLBConnect, tcp/translate_nopeer). A
// decision the ring refuses is lost and counted (CounterRingBuf); the
// connect() it belongs to is unaffected.
//
// # Known gaps
//
//   - lb_revnat (UDP) is an LRU: with more translated UDP sockets and
//     backends than RevNATEntries, the kernel may evict the entry of a
//     socket still in use, whose recvmsg() then shows the backend as the
//     source (a DNS client drops such a reply). Entries of closed sockets
//     stay until evicted (a cookie is never reused, so they only take
//     room).
//   - Only the caller's ready backends are chosen: terminating backends
//     are left out by the caller, and connections already open to them
//     are not touched (none ever are: translation happens once, at
//     connect).
//   - No weights, session affinity, source ranges, traffic policies or
//     health checks; no NodePort or external IPs (a packet-path job).
//   - IPv6 services are translated by the same code with 16-byte keys,
//     but only IPv6 sockets dialling a v4-mapped ClusterIP (connect6,
//     getpeername6) are tested end to end; native IPv6 services and UDP
//     over IPv6 sockets (sendmsg6, recvmsg6) are only loaded and
//     verified, the test LAN being IPv4.
//   - Processes outside the attached cgroups, and packets from outside the
//     node, are not translated: the ClusterIP is then an address nothing
//     answers.
//
// # Cost
//
// BenchmarkSockLBConnect (bench/RESULTS.md, "connect() with the socket
// LB"; earlier figures in bench/HISTORY.md): the program's own run time
// (bpf_stats) above the empty floor's. On the Intel VM of the first
// figures (floor ~30–40 ns): +10 to +20 ns for the LB on a destination
// that is no service, +270 to +325 ns translating a UDP re-connect, +177 to
// +185 ns translating a new TCP socket, and sock_release's 68–101 ns when
// a TCP socket closes. On the AMD VM of the later ones (floor 85–130 ns;
// its only clocksource kvm-clock, page-table isolation without PCID,
// kernel work 2–6× dearer): +55 to +80 ns for a miss, +350 to +490 ns
// translating a UDP re-connect and +390 to +505 ns a new TCP socket, and
// sock_release 236–273 ns. The target (≤ floor + 500 ns) holds on both
// for UDP; for TCP on the AMD VM in 14 of 15 runs, the other 5 ns over in
// one of the VM's slow phases, through which everything measured slower.
// Of the TCP figure the lb_peer slot is within the noise (tcp/translate
// beside tcp/translate_nopeer).
//
// # Tests
//
// TestSockLBDatapath (root): a client re-executed from the test binary into
// a fresh cgroup and the first pod of a five-pod LAN (bpf/nettest) connects
// 10,000 times to a ClusterIP; TestSockLBPeerSlots holds more connections
// open than lb_peer has slots (the rest in storage, counted exactly) and
// checks that closed ones free theirs; TestSockLBServiceSync checks the
// maps after each SetService; the Maglev tests need no privileges.
package socklb
