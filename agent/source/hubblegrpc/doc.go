// Package hubblegrpc is the hubble flow source (`flowbus agent --source
// hubble`): it follows Hubble's Observer API over gRPC, either a node's
// Cilium agent (unix:///var/run/cilium/hubble.sock, as a DaemonSet beside
// cilium-agent) or Hubble Relay (host:4245, one agent for the cluster), and
// hands its flows to the agent pipeline like any source: partitioning,
// aggregation, spool, export, the Observer API and the metrics work on them
// as on the agent's own. Flows keep the node name Hubble gave them (Relay
// merges many nodes); the bus messages carry the agent's.
//
// Files: source.go (the connection and the stream), resume.go (where a
// new stream starts, what it repeats, the state file), nodes.go (the
// upstream's nodes), errors.go (errors in words a person can act on),
// config.go.
//
// Decisions:
//
//   - One GetFlows stream with follow, re-opened after any failure with
//     backoff (BackoffMin doubling to BackoffMax, back to BackoffMin once a
//     stream delivered something). A stream starts at `since`: the oldest
//     newest-flow time of the nodes heard from in the last minute, minus
//     ResumeOverlap (2 s), so that flows Hubble delivered out of time order
//     (several CPUs' buffers, Relay's merge of nodes) are not skipped. The
//     first stream of a process with no saved state asks from the epoch:
//     the server's whole buffer (Hubble's ring: 4096 flows per node).
//   - Dedupe: the source remembers every flow it delivered at or after the
//     resume point (a 64-bit FNV-1a of node name and flow UUID, or of the
//     flow's encoding when it has no UUID, with its time; 16 B each). Flows
//     older than the resume point are forgotten, and at most HistoryMax (1
//     Mi) are kept: past it the resume point moves forward, so that it never
//     precedes a forgotten flow. A resumed stream's flows not newer
//     than the newest delivered are looked up and dropped when seen before
//     (flowbus_source_duplicates_total); a newer flow cannot have been seen.
//     So a reconnect neither repeats nor skips a flow the server still holds.
//   - What cannot be resumed is counted, never silent: the server's own
//     LostEvents (its ring overwrote flows before sending them, its queues
//     dropped events) are passed on as losses with their source (the agent
//     counts them in hubble_lost_events_total{source} and
//     flowbus_stage_dropped_total, and its Observer API shows them as
//     LostEvents), and counted in flowbus_source_lost_events_total. A resumed
//     stream whose first new flow of a node comes before the last flow
//     delivered from that node came again means the server no longer holds
//     it (Hubble restarted with an empty ring, or overwrote it): the flows in
//     between, if there were any, are lost and no one can count them; it is
//     counted once per node in flowbus_source_resume_gaps_total and logged.
//   - Nodes: the server's GetNodes (Hubble Relay lists every node and its
//     state; a Cilium agent answers Unimplemented and its node is learned
//     from its flows), Relay's node status events (a node unavailable,
//     back, gone; counted in flowbus_source_node_events_total{state,node}),
//     and the nodes of the flows. Nodes gives them to the agent's Observer
//     API (observer.Config.Nodes): `hubble status` against the agent shows
//     the unavailable ones; flowbus_source_upstream_nodes{state} counts
//     them. While the server cannot be reached every node is unavailable.
//   - Position across restarts: with StateFile, the resume state (each
//     node's last flow and newest time, the remembered flows) is written
//     atomically every SaveInterval and when Run returns, after the last
//     batch was handed downstream, and read at start. A clean stop
//     (SIGTERM) therefore resumes exactly. After a crash the agent resumes
//     from the last save: flows delivered after it come again (duplicates
//     on the bus), and flows the pipeline held at the crash are lost, as
//     for every source. A state file of another server is ignored (logged).
//   - Count once: each event gets its count_as from hubble.CountAs (the
//     receiver's to-endpoint event, the sender's only toward non-endpoints,
//     drops, L7 responses), so the rollups count a connection once although
//     Hubble reports it at several points; events served by a flowbus agent
//     keep the count_as that agent gave them.
//   - TLS is the hubble CLI's: the Hubble CA, a client certificate for
//     mTLS, the server name to verify (Cilium's agents hold
//     *.<cluster>.hubble-grpc.cilium.io certificates). The first
//     connection's ServerStatus tells a TLS mismatch at once: Run returns an
//     error (ErrPermanent) that names what is missing or wrong and the flag
//     that fixes it, instead of retrying for ever; the same failures after
//     a first success (a rotated certificate) are retried and logged.
//   - Server-side filters (Whitelist, Blacklist) are sent with the request,
//     so filtered flows never cross the network; `--hubble-filter` takes
//     them in hubble observe's syntax (query.FilterArgs). A request the
//     server refuses (InvalidArgument) is permanent.
//   - The stream is read by a goroutine into a 1024-response queue, each
//     response undecoded (a gRPC codec hands over its bytes); one goroutine
//     decodes flows straight into the batch with hubble.Decoder (no
//     protobuf message: that decoding was half the CPU), dedupes and
//     batches (BatchSize 512; a partial batch waits at most FlushInterval,
//     100 ms). Other responses go through their protobuf message. A full
//     pipeline blocks the
//     reader, gRPC's flow control then stalls the server's sender, and a
//     server that falls more than its ring behind reports the loss as
//     LostEvents: back-pressure never loses a flow silently.
package hubblegrpc
