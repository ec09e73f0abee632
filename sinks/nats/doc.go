// Package nats is flowbus's NATS JetStream transport, on nats.go's jetstream
// API: a Publisher for the agent's exporter, a Consumer with dead-lettering
// for the aggregator, and StartEmbedded, the in-process server that makes
// the default setup run on one machine with nothing installed.
//
// # Naming
//
// Stream FLOWBUS_FLOWS binds flowbus.flows.v1.>; a message goes to subject
// flowbus.flows.v1.<p> with p = schemas.PartitionOf(Key, Partitions) (default
// 16 partitions; publishers and consumers must agree), the same number Kafka
// would pick. Headers are schemas.Message.Headers(), plus flowbus-key (NATS
// has no record key) and Nats-Msg-Id = Message.ID() ("node/run/seq"). Dead
// letters go to subject flowbus.dlq.flows.v1 in stream FLOWBUS_DLQ (outside
// flowbus.flows.v1.> on purpose); one too large, with the dead-letter
// headers, for the server's max_payload or the dead-letter stream's
// max_msg_size is cut to fit, its original length in
// flowbus-dlq-truncated. Durable consumers are named
// flowbus-aggregator-p00, -p01, ...
//
// # Partitions
//
// Decision: a partition is a subject, numbered by Kafka's partitioner.
// A message goes to flowbus.flows.v1.<p>, p computed by the publisher as
// Kafka's partitioner computes it (schemas.PartitionOf: murmur2 of the key,
// high bit masked, modulo the partition count), and each partition is read
// by its own durable pull consumer.
//
// The aggregator's rollups need every flow toward one destination workload
// in one consumer, in order, with no shuffle between aggregators; NATS has
// no record key and no consumer group that pins keys to a member. The
// alternatives rejected:
//
//   - One subject for all flows, read through one shared pull consumer:
//     JetStream hands each message to whichever instance pulls next, so a
//     workload's pairs and routes would be split between aggregators and
//     need a second shuffle, and all flows would share one ack floor.
//   - The key in the subject (flowbus.flows.v1.<namespace>.<workload>):
//     subjects without bound, no fixed share to give an instance, and a
//     workload name may hold '.', which NATS reads as a token separator.
//   - The server's subject-mapping partition function (partition(n, ...)):
//     it needs the key in the subject as well, it is account configuration
//     of the operator's server, which an agent cannot set, and it hashes
//     with FNV-1a, so a key would get another partition number than on
//     Kafka.
//
// With Kafka's partitioner a key has the same partition number on both
// buses (schemas.PartitionOf is tested against Kafka's own test values and
// franz-go's partitioner), so the aggregator's per-partition state, its
// file names (p<partition>-...) and --nats-assigned mean the same on
// either. One durable consumer per partition gives each its own order, ack
// floor and flow control, like a Kafka partition (see Consumer below). The
// price: the partition count (default 16, 1 to 4096) is fixed for a stream
// and must be the same for publishers and consumers, and nothing
// rebalances: each partition must be read by one instance at a time.
//
// # Stream limits
//
// Created only when missing (an existing stream is used as its operator
// configured it): file storage, limits retention, discard old, max age 24h,
// max bytes 4 GiB, max msg size 1 MiB (NATS's default max_payload; headers
// count, so a message's value must stay about 1 KiB under it), duplicate
// window 2 min, 1 replica. The dead-letter stream keeps 7 days, 1 GiB.
// JetStream acknowledges a message once it is in the stream's store; the
// server fsyncs on its own schedule (sync_interval), as NATS does by default.
//
// # Delivery semantics (publisher)
//
// Publish sends a batch pipelined (async publish) and waits for every
// acknowledgement. PublishRecords does the same for records that are not
// flow messages (bus.Record; the OCSF events of 'flowbus ocsf', in a stream
// of their own with its Description), their ID as Nats-Msg-Id; Ready makes
// sure of the stream before the first publish, and says when the server is
// not reachable. It keeps the acknowledged prefix and, from the first
// failure on (disconnected, no JetStream responders while the server
// restarts, ack timeout), sends the rest again, in order, with backoff from
// 50 ms to 1 s, until its context ends. The connection has no reconnect
// buffer, so nothing published while disconnected overtakes an earlier
// message, and a send stops at the first refusal. Resending is safe: the
// server drops a Nats-Msg-Id it stored within the duplicate window and acks
// it as a duplicate. So within 2 minutes delivery is exactly once; a replay
// after a longer outage of a message whose ack was lost is stored twice, and
// consumers that need exactly-once drop repeats by Nats-Msg-Id or
// flowbus-seq. Order per partition holds except in one narrow case: a
// message refused with "no responders" while the next one is already
// accepted (JetStream coming back between two sends) lands after it.
// Refusals that retrying cannot fix (too large, bad request) return at once;
// a message over MaxMsgSize fails the call with bus.ErrTooLarge before
// anything is sent.
//
// # TLS and authentication
//
// Conn.TLS turns TLS on with a CA file (the system roots otherwise; a
// server that requires TLS gets it even without settings), a client
// certificate for mTLS and a server name; the files are read again at each
// connection, so renewed certificates are taken. Conn.Auth is one of a user
// and password, a token, an NKey seed file or a credentials file (a user
// JWT and its seed, for a server in operator mode); a user:password@ or
// token@ in the URL still works. NewPublisher and NewConsumer dial once
// without retrying first: a server that answers and refuses the
// credentials or the TLS handshake is an error at once, naming what it
// refused (user "x" and its password, the token, the nkey seed file, the
// credentials file, no credentials; an unknown CA, a wrong server name, a
// missing client certificate), instead of a connection retried for ever. A
// server that does not answer is dialled again with retries, as below.
// URLs are logged and put in errors with their password or token replaced
// by "redacted" (RedactURL); secrets are in no log line or error.
//
// The connection reconnects for ever. A lost server is logged at info
// ("nats disconnected") and every 10 s while it cannot be reached. A
// connection nats.go closes for good (on a server error it does not retry,
// such as an authentication timeout) is a warning naming that error; the
// publisher then dials a new connection at its next attempt (after the
// acknowledgements in flight time out, AckTimeout) and at most every 10 s
// after (Publish keeps retrying meanwhile, so nothing is lost),
// and a consumer's Poll returns an error within about a second (the
// aggregator then stops without committing; a restart resumes after the
// last commit). Closing the connection ourselves logs nothing.
//
// # Consumer
//
// One durable pull consumer per partition (filter subject
// flowbus.flows.v1.<p>), not one consumer for all: each partition then has
// its own order, ack floor and flow control, like a Kafka partition. The
// offset of a message is its stream sequence (increasing per partition, with
// gaps). Ack policy "all": Commit(next) acks the last delivered message below
// next and waits for the server's confirmation, which commits everything
// before it, at most CommitTimeout (default 5 s): an ack sent while the
// server restarts can go unanswered, and a caller stuck in Commit would
// never Poll again; it fails instead and the caller commits the same
// offsets with its next batch. On start each durable is recreated to begin right after its ack
// floor, so messages the previous run read but did not commit come back at
// once instead of after AckWait. A message the server resends because it was
// not committed within AckWait (default 5 min) is dropped by Poll, since the
// caller already has it. NATS has no group rebalancing: Assigned lists the
// partitions an instance reads (default all), and each partition must be
// read by one instance at a time; OnAssigned runs inside the first Poll and
// OnRevoked inside Close. Poll returns bus.Delivery values (package
// sinks/bus, shared with the Kafka transport): Topic is the subject, Offset
// the stream sequence, Key the flowbus-key header, Headers the first value
// of each header, Time when the stream stored the message; once the
// Consumer is closed, an error wrapping bus.ErrClosed. DeadLetter adds the
// headers of bus.DeadLetterHeaders to the message's own (less the Nats-*
// ones).
//
// Decision: each partition is read with jetstream's Consume (a callback
// that hands messages to Poll), not its Messages iterator. With a byte
// limit (PullMaxBytes, which bounds what a partition buffers ahead of
// Poll), nats.go gives the iterator a channel of 1,000,000 message pointers
// per partition: 8 MB each, 128 MB for 16 partitions, which the aggregator
// zeroed at start and its garbage collector scanned in every cycle, most of
// its heap. Consume's subscription queues what the server sent in a list,
// still bounded by PullMaxBytes since nats.go pulls again only once the
// callback has returned. It cut the whole aggregator's CPU per row by a
// third on the agent's 100k flows/s messages (aggregator/doc.go, "Decoding
// and folding cost").
//
// Decision: a partition buffers at most 2 MiB ahead of Poll
// (DefaultPullMaxBytes; twice the stream's largest message if that is
// more), not 8. nats.go copies every message it reads into a buffer of
// its own; 8 MiB per partition, 128 MiB for 16, let an aggregator draining
// a backlog pull most of it at once into fresh memory, which the kernel
// faults in page by page (and the Go scavenger gives back and faults in
// again): on the agent's real messages (bench/aggregator_test.go, 400,000
// rows, alternating runs of the two builds) 2 MiB gave 0.59–0.61 M rows per
// CPU-second at 10k flows/s against 0.50–0.52, 0.74–0.88 M at 100k/s
// against 0.64–0.73, and peak RSS 138–176 MB against 182–217. Two messages
// of a partition ahead still keep Poll fed: the callback queues them while
// the aggregator folds the one before.
//
// # Embedded server
//
// StartEmbedded runs nats-server with JetStream on 127.0.0.1, state under the
// given directory (./flowbus-data in the demo), port -1 for a free port.
package nats
