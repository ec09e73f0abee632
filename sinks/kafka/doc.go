// Package kafka is flowbus's Kafka transport, on franz-go: a Producer that
// the agent's exporter publishes bus messages with, and a group Consumer with
// dead-lettering for the aggregator.
//
// # Naming
//
// Topic flowbus.flows.v1 (DefaultTopic), dead letters in
// flowbus.flows.v1.dlq, consumer group flowbus-aggregator. A record's key is
// schemas.Message.Key (the destination workload, never a nil key, so even
// the empty key is hashed), its value the Arrow IPC stream, its headers
// schemas.Message.Headers() in order.
//
// # Partitioning
//
// kgo.StickyKeyPartitioner(nil): murmur2 of the key, high bit masked, modulo
// the partition count, exactly like Kafka's Java client, so the partition is
// schemas.PartitionOf(Key, n) and NATS places a key in the same partition
// number. Every flow towards one workload lands in one partition.
//
// # Delivery semantics (producer)
//
// Idempotent producer (franz-go's default, never turned off) with acks=all,
// no compression (the Arrow body is already zstd), linger 0 (the agent
// batches), no record delivery timeout and unlimited retries. Publish returns
// nil only once every message is acknowledged by all in-sync replicas; order
// is kept per partition (idempotence makes retries neither reorder nor
// duplicate within a producer session). While no broker answers, Publish
// blocks and retries until its context ends, then returns an error wrapping
// the context's error and the last connection failure (refused, TLS, SASL),
// which is also logged once per kind. Errors that retrying cannot fix come
// back at once: a missing topic (set CreateTopic), a record refused as too
// large.
//
// After an error, some messages may have landed, and records already handed
// to the client may still land after Publish returned (an idempotent record
// in flight cannot be withdrawn). The exporter spools and republishes the
// whole batch, so delivery through Kafka is at-least-once; a consumer that
// needs exactly-once drops repeats by flowbus-seq (node run/sequence), which
// is unique per message. Close fails records still buffered.
//
// PublishRecords publishes records that are not flow messages (bus.Record:
// key, value, headers; 'flowbus ocsf' sends its OCSF events with it) under
// the same rules, and Ready does what the first Publish does before
// producing (the topic created or found, its limit read), so that a command
// learns of a wrong address or a missing topic at start.
//
// # Size limits
//
// MaxMessageBytes (default 1 MiB + 64 KiB) bounds one record: a 1 MiB Arrow
// value plus key, headers and batch overhead. When the topic is created here
// it is the topic's max.message.bytes.
//
// Before producing its first record, the Producer reads the topic's
// effective max.message.bytes with DescribeConfigs (the topic's override,
// else the broker's message.max.bytes; Kafka's default is 1048588). When
// that is smaller than MaxMessageBytes, as on an existing topic left at the
// default, it becomes the limit of every record and of every batch: franz-go
// never packs records of one partition into a batch the topic refuses, and
// the change is logged once at Info. Otherwise MaxMessageBytes stays the
// limit. If the config cannot be read (DescribeConfigs denied by ACLs), one
// warning is logged and MaxMessageBytes is kept; transient failures are
// retried until the context ends. The limit is read once per Producer: a
// topic lowered afterwards is not followed.
//
// Publish checks every message first and fails with bus.ErrTooLarge without
// sending any, rather than publishing half a batch; the error names the
// limit that refused it (MaxMessageBytes, or the topic's max.message.bytes:
// raise it, or keep messages smaller).
//
// # Topic creation
//
// With CreateTopic, the first Publish creates the topic with kadm
// (Partitions, default 16; ReplicationFactor, default -1 = broker default;
// max.message.bytes = MaxMessageBytes), treating "already exists" as done and
// retrying transient errors until the context ends. Without it, a missing
// topic is an error naming the topic. Either way the topic's
// max.message.bytes is read next (see Size limits).
//
// # Consumer
//
// A group member with manual commits (auto-commit off) and
// kgo.BlockRebalanceOnPoll: OnAssigned, OnRevoked and OnLost run only while
// the caller is inside Poll (or Close), never while it processes what Poll
// returned, so the aggregator can write its Parquet and Commit from
// OnRevoked before partitions move, and commits always concern partitions it
// owns. The price: the caller must come back to Poll within the group's
// rebalance timeout. Poll returns bus.Delivery values (package sinks/bus,
// shared with the NATS transport): topic, partition, offset, key, value,
// headers (the last value of a repeated name) and the record timestamp;
// once the Consumer is closed, an error wrapping bus.ErrClosed. Commit
// takes the next offset to read per partition. A partition with no
// committed offset is read from its start. DeadLetter copies a record to
// the dead-letter topic with the headers of bus.DeadLetterHeaders (reason,
// source partition and offset); commit the offset only after it returned
// nil.
// Its limit is found as the Producer's is (MaxMessageBytes, or the
// dead-letter topic's max.message.bytes when lower, read on first use and
// again after the broker refused a dead letter as too large). A
// value over it is cut to fit, with flowbus-dlq-truncated giving the
// original length and a warning logged, rather than failing: a failure
// would stop the partition at that message on every restart, and the whole
// message is still in the topic at the offset the headers name.
//
// # Security
//
// TLS (CA file, client certificate and key, server name, insecure skip
// verify) and SASL PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512, shared by
// producer and consumer through Conn.
package kafka
