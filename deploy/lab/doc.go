// Package lab is a single-machine lab of pods for the real kernel datapath:
// every pod is a network namespace with a veth pair into the host, running
// real servers (HTTP, gRPC, TCP echo, DNS over UDP and TCP, Kafka) and
// clients that make traffic between them, described by a topology file (default: the
// payments fleet, examples/payments.yaml). It writes the endpoints file
// (package agent/endpoints) that maps the pods' addresses and host veths to names,
// labels and identities for the eBPF agent source. `flowbus lab
// up|traffic|down|status` is its command line.
//
// # Addressing and routing (no bridge)
//
// Pod i (1-based, in topology order) gets the i-th address of network.ipv4
// (default 10.200.0.0/24) and of network.ipv6 (default fd00:fb::/64), as /32
// and /128 on its eth0. The host side of its veth is <prefix><i>h (fb2h for
// the second pod). Routing is Cilium's and Calico's: the pod's default
// routes go via 169.254.1.1 and fe80::1, which exist on no interface; a
// permanent neighbour entry in the pod maps both to the MAC of the host
// veth. The host has a /32 and a /128 route per pod through its veth, and a
// permanent neighbour entry for the pod's MAC. So there is no ARP, no
// neighbour discovery, no bridge and no NAT: every packet between two pods
// leaves the client pod through one host veth and enters the server pod
// through another, with the pods' own addresses, which is where the tc
// programs attach. MACs are derived from the pod's IPv4 address (host side
// 06:fb:<ipv4>, pod side 02:fb:<ipv4>). Neither end has an IPv6
// link-local address (addrgenmode none), so there is no DAD, router
// solicitation or MLD for them. An interface coming up still sends a few MLD
// reports within about a second (the host side joins the all-routers group,
// the pod side its address's solicited-node group); Up returns only once
// every veth has been silent for 1.5 s, so from then on an idle veth stays
// silent and exact byte and packet counts are the traffic's own (a test
// can compare them with the veths' counters). Up turns on IPv4 and IPv6 forwarding
// in the host and leaves them on at down (other things on the host may have
// come to depend on them; turning them off is the operator's call).
//
// # Process model
//
// The lab's servers and clients are the flowbus binary itself (Config.Self),
// run inside a pod's namespace with `ip netns exec <netns> flowbus lab serve
// --pod X` (or `client`). Up starts one server process per pod that has
// servers, detached in its own session with output to logs/<pod>.log, and
// waits until each has bound all its listeners (it then writes
// ready/<pod>). Traffic starts one client process per pod that has clients,
// reads their counters (JSON lines on stdout), prints the running total
// every second, and stops after --duration; the clients die with it
// (parent-death signal). Each client edge sends --rate requests per second,
// alternating IPv4 and IPv6 unless its family says otherwise, and checks
// every answer exactly: HTTP status and body, gRPC health status (NOT_FOUND
// for a service the server does not know) and stream length, DNS rcode,
// CNAME chain and addresses, echo bytes, ICMP echo reply, a Kafka produce's
// acknowledgement and every record a consumer fetches. Errors are
// deterministic (an id that is a multiple of a route's error_every gets its
// error_status) so that a test can count them.
//
// Service times: a route's latency, or a dns, grpc or kafka server's, is
// waited before each answer (a Kafka broker waits before each Produce and
// Fetch, without holding up its other connections; a DNS server answers its
// UDP queries one after the other). The payments fleet gives every server
// one, 0.5 to 4 ms, as real services take milliseconds; without them the
// lab's servers answer in tens of microseconds, about the time a request
// and its answer spend between a client's socket and the server's
// interface, and latencies are mostly that path.
//
// # Kinds
//
//   - http: the server answers its routes (RouteSpec). A client edge sends
//     Method on Paths through a keep-alive pool, or one connection per
//     request (new_conn), or, with pipeline: N, N requests back to back on
//     a connection of their own in one write before reading the responses
//     in order (raw HTTP/1.1 on the connection: net/http does not
//     pipeline); Sent counts each of the N.
//   - grpc: the server runs the health service (SERVING for "" and the
//     pod's workload, NOT_FOUND for other names) and the lab's
//     flowbus.lab.v1.Lab/Stream (server-streaming, registered without
//     generated code, the health messages reused: a request naming a count
//     n gets n messages, then OK). A client edge calls Check, for the
//     names of services in turn, or with stream: N the Stream of N messages.
//   - dns: the server answers on UDP and TCP (RFC 1035 4.2.2 framing, any
//     number of queries per connection): A and AAAA of
//     <svc>.<ns>.svc.cluster.local from the services' cluster IPs (TTL
//     30 s, DNSTTL), the server's cnames as CNAME chains (TTL 60 s,
//     DNSCNAMETTL; at most 8 links), NXDOMAIN for other names (no SOA). A
//     query that does not parse gets no answer and is counted (logged when
//     the server stops); over TCP its connection is closed. A client edge
//     asks Names in turn, A then AAAA, over UDP or (transport: tcp) one TCP
//     connection per query.
//   - kafka: the server is a kfake broker per pod address (IPv4 and IPv6,
//     each advertising its own address) on port 9092 by default, its
//     topics seeded with one partition each. A client edge is a franz-go
//     kgo client per family: role produce (default) produces one record
//     per tick to Topics in turn and waits for its acknowledgement; role
//     consume consumes Topics from the start, and each tick polls (at most
//     50 ms) and checks what was fetched; kgo issues its Fetch, Metadata,
//     ApiVersions and other requests on its own schedule. kafka_version
//     caps the request versions at a Kafka release (Produce and Fetch name
//     topics by ID only from version 13).
//   - tcp-echo and ping as before: lines echoed on a connection per
//     request; ICMP echo.
//
// Each edge also counts the connections it opened (EdgeStats.Connections):
// the ground truth of flows. An HTTP edge opens connections as its
// keep-alive pool needs them (new_conn: one per request; pipeline: one per
// N requests), a gRPC edge one per family (and a new one after a lost
// one), a TCP echo request one; a DNS query is one UDP socket, or over TCP
// one connection; a ping one ICMP echo socket (its identifier keys the
// flow); a Kafka edge every TCP connection its kgo clients dial (the seed
// broker's, then those kgo keeps per broker for produce, fetch and other
// requests, and any it dials again after closing an idle one), each
// counted at the dial, failed or not. EdgeStats.Transport says which
// protocol they are ("tcp", "udp", "icmp"). The DNS client
// takes its source ports in sequence from 20000 up to 32767 (below the
// kernel's ephemeral range) rather than letting the kernel pick them at
// random: a port reused within a flow's idle timeout is one flow to any
// conntrack, and random ports come back within seconds at the lab's rates.
//
// # Ground truth
//
// Every L7 request a client makes (http, grpc, dns, kafka; tcp-echo and
// ping are not L7 and write nothing) is written as one JSON line, a TruthRecord, to
// <state>/truth/<pod>.jsonl, the log of the client pod (TruthPath). The
// client process appends to it (a second Traffic adds to the first's
// lines; tell runs apart by Time), buffered, flushed with every progress
// report (250 ms) and when the clients stop, so the log is complete when
// Traffic returns. ReadTruth reads every pod's log back; a malformed line
// is an error naming its file and line, and the good lines are kept. A
// request that got no answer (a timeout, a reset, a refused connection)
// has Status -1 and an Error; a wrong answer keeps the status it got and
// has an Error.
//
// How each kind measures. Time is when the client began writing the
// request; LatencyNs runs from just before the request's write to the
// kernel's receive timestamp of the response's first byte at the client's
// socket (SO_TIMESTAMPNS; the client process holds one such socket for its
// whole run so that the kernel stamps from its first request). So a
// latency is what the client's kernel saw, without the time the client's
// goroutines took to be scheduled and read the answer, which on a busy node
// is most of what separates a client's latency from the server's: it then
// differs from what flowbus measures at the server's interface (request
// first byte to response first byte) by the time the request and the
// answer take between the two interfaces. The kernel merges segments
// queued unread into one and keeps the latest one's timestamp: an answer
// read after more of the stream arrived is stamped with the later arrival.
// A read with no timestamp (the kernel had not begun stamping) is stamped
// when it returns. Per kind:
//   - http: every connection is a stampConn, which notes the first write
//     after a read and the arrival of the next read's first byte; net/http's
//     client trace reads them at GotFirstResponseByte. Time is the write's
//     start; LocalPort is the connection's. Path is the URL path as sent,
//     with its concrete id.
//   - grpc: each call carries a lab-call request header with its number;
//     the connection (grpcWire) follows the HTTP/2 frames both ways,
//     decodes the request headers (HPACK) to find that number, and times
//     the call from the write that held its HEADERS frame to the arrival of
//     its stream's first HEADERS frame (response headers, or the trailers
//     of a trailers-only answer). Its reads end at frame boundaries, so
//     that each frame's first byte is the stamped one: a read that began
//     with another stream's data queued before the answer would stamp the
//     answer with that data's earlier arrival. A stats handler gives the rest:
//     DurationNs to the end status (End), the response messages; LocalPort
//     from the call's peer. Method and Path are the full method; Stream,
//     Messages say what a stream brought. Status is the gRPC code, or -1
//     when no response headers came (a deadline, a lost connection).
//   - http with pipeline: every request of a pipeline has the time just
//     before the one write of them all, and its latency runs from there to
//     the arrival of the read that brought its response's first byte;
//     Pipelined is its position (1-based).
//   - dns: Time just before the query's write, latency to the arrival of
//     the answer (over TCP, of its length prefix). Path is the query name
//     as on the wire, lower case as asked and with its trailing dot
//     (Hubble prints it the same way); Method the query type ("A",
//     "AAAA"); Status the rcode (0 NOERROR, 3 NXDOMAIN); Answers the
//     addresses, CNAMEs the CNAME targets, TTL the smallest TTL of the
//     answer records.
//   - kafka: what kgo writes and reads on each connection, seen by the
//     lab's wrapper around the connection kgo dials (kgo's hooks give no
//     api version, correlation ID or local port): one line per request
//     kgo writes, ApiVersions, Metadata, InitProducerID, ListOffsets,
//     telemetry and the rest included, not only Produce and Fetch. Time
//     just before the request's write; latency from there to the arrival
//     of the read that brought the first byte of the response with its
//     correlation ID. Method is the api key as Kafka names it (kmsg:
//     "Produce", "Fetch", "Metadata", "ApiVersions"...), APIVersion and
//     CorrelationID as on the wire. Path is the topics the request names on
//     the wire, comma-separated ("" for a Produce or Fetch of version 13
//     or later, which carry topic IDs); Topics is the topics by name, the
//     IDs resolved with what Metadata answered. Status is the first
//     non-zero error code of the response's top level, then topics and
//     partitions (Produce, Fetch, Metadata, ApiVersions, InitProducerID,
//     FindCoordinator, ListOffsets, OffsetForLeaderEpoch; 0 for other
//     keys), -1 for a request still unanswered when its connection closed
//     (a consumer's last long-polling Fetch, when the clients stop).
//
// Down removes the truth directory with the rest of the state.
//
// The lab enforces no policy itself. A topology's policies (NetworkPolicy
// and CiliumNetworkPolicy manifests) are written to policies.yaml in the
// state directory, and an eBPF agent given it (--policies) enforces them in
// the program that observes: in the payments fleet rewards-cron's requests
// to ledger-svc are then dropped with POLICY_DENIED, and its client counts
// them as timeouts. Without an enforcing agent every edge is answered. A
// server's reset_from lists pods whose TCP connections it resets
// (SO_LINGER 0) right after accept: a real RST between two pods, for
// topologies that want one. Services carry cluster IPs for enrichment and
// DNS answers only (a service without cluster IPs is headless: its name
// resolves to its backends' addresses, as Kubernetes DNS answers): the lab does no service translation, clients dial
// backend pods directly, as a socket load balancer would have made them.
//
// # Cgroups and the socket load balancer
//
// Every pod's processes run in a cgroup v2 directory of their own,
// <root>/flowbus-lab-<prefix>/<namespace>_<name> (Plan.Cgroup,
// PodPlan.Cgroup; root is where cgroup v2 is mounted, /sys/fs/cgroup/unified
// on a hybrid host). They are cloned into it (clone3 with
// CLONE_INTO_CGROUP), so none of their sockets is opened outside. An agent
// given --socket-lb --socket-lb-cgroup <root>/flowbus-lab-<prefix> (up
// prints it) translates the pods' connections to a service's ClusterIP to
// its backends, and names the pod of each decision by its cgroup's name.
// StartInPod runs any command in a pod's namespace and cgroup (`flowbus
// lab exec POD -- COMMAND`), so a test or a person can dial a ClusterIP
// from a pod. Without a cgroup v2
// hierarchy the lab makes no cgroups and says so.
//
// # Cleanup guarantees
//
// Everything the lab makes carries its prefix (1-8 letters, default "fb"):
// namespaces <prefix>-<pod>, host links matching ^<prefix>[0-9]+h$, and
// processes whose command line holds the argument --flowbus-lab=<prefix>,
// and the cgroup flowbus-lab-<prefix> with its pods' below it.
// A prefix of letters only means "fb" never matches another lab's "fblt".
// Down finds all of these on the host, not from the state files, so it also
// cleans up after a crash or a kill -9 of up: it ends the processes (marked
// ones and any inside the namespaces or the cgroups; SIGTERM, then
// SIGKILL), deletes the host veths (which deletes the pod ends), deletes
// the namespaces, removes the cgroups, removes
// the files the lab writes in the state directory (lab.json, endpoints.yaml, policies.yaml,
// logs/, ready/, truth/) and the directory when nothing else is in it, and then
// checks that nothing is left. Down is idempotent. Up refuses to start when
// anything with its prefix exists, so everything with the prefix is its
// own, and on any failure or interrupt it runs Down before returning.
// Traffic on interrupt stops its clients and leaves the lab up.
//
// InNetNS runs a function inside a pod's namespace, for tests that need
// exact traffic from one pod (net.Dial from inside fn).
//
// Two labs can run at once with different prefixes, state directories and
// address ranges (the tests use prefixes fblt, fblu, fblv and 10.201-203.0.0/24).
package lab
