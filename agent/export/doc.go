// Package export turns aggregated flow records into bus messages and
// publishes them without ever blocking the pipeline upstream of it.
//
// Path of a record: Run's goroutine adds it to the open batch of its
// partition (Flow.PartitionKey, the destination workload); a batch is sent
// when it reaches Config.MaxRows (8192) or Config.MaxBytes (1 MiB, estimated
// from the record's strings before encoding) or is older than Config.Linger
// (1 s). Sending encodes the batch with flowcodec.Encoder into one Arrow IPC
// stream; if that is larger than Config.MaxMessageBytes (1 MiB, NATS's default
// max_payload, less 16 KiB for the headers, which NATS counts too) the batch
// is halved until every part fits. Each message gets
// Node, Run (process start time unless set) and Seq, increasing from 1 over
// all messages of the run in the order they were sent, then goes to the
// in-memory queue (Config.QueueMessages). One publisher goroutine publishes
// the queue's head in Publish calls of up to Config.PublishBatch messages.
//
// Decisions:
//   - A Publisher that is one ordered stream rather than a partitioned bus
//     (sinks/stdout, which implements OneStream) gets one batch for every
//     partition: records reach it in the order they reached the Exporter.
//     Per-partition batches, each sent when full or after Linger, would
//     interleave partitions out of time order by up to Linger.
//   - Memory, then disk, never back-pressure: when the queue is full, or a
//     Publish fails, the whole queue and every newer message go to the disk
//     spool (sinks/spool) in order; while the spool holds anything, new
//     messages go behind it. The queue is therefore always older than the
//     spool, and the publisher takes the queue first, then the spool: order
//     is the Seq order, so order per partition holds across an outage and a
//     restart. Spooled messages of an earlier run are published first.
//   - A message leaves the queue or the spool only after Publish returned nil
//     for it; a failed Publish is retried with backoff (RetryMin doubling to
//     RetryMax). Publish calls have no timeout by default (Config.PublishTimeout):
//     the sinks retry inside Publish until the bus takes the messages, and a
//     call abandoned on a timeout may still land after it returned. Calling
//     again with the same messages would then duplicate them on Kafka (NATS
//     dedupes by Nats-Msg-Id = Message.ID). Without a timeout, a bus outage
//     leaves one Publish waiting, the queue fills, and newer messages go to
//     the spool: nothing is sent twice (TestKafkaOutage, TestNATSOutage in
//     package agent). The wait is cancelled only when the shutdown drain
//     times out.
//   - Without a spool (Config.Spool.Dir empty) a message that finds the queue
//     full is dropped and counted: flowbus_stage_dropped_total{stage="export",
//     reason="queue_full"}. With one, loss happens only at the spool's byte cap
//     (flowbus_spool_dropped_*) or when the spool's disk refuses a write (a
//     full disk: the message is dropped, counted with reason="spool_error"
//     and logged with the cause; what of the queue the spool did not take
//     stays in memory, and appends resume when the disk has room).
//   - Shutdown: when its input closes, Run sends every open batch, then keeps
//     publishing for up to Config.DrainTimeout; what the bus has not taken by
//     then is spooled for the next run (or, without a spool, dropped, counted
//     with reason="shutdown", and reported in Run's error).
//   - Memory: a partition's batch slice is reused after each send and
//     forgotten after 10 idle Linger periods, so memory follows the active
//     partitions. A partition key is built once per batch, not per record.
//   - A Publish error is always retried (the bus may come back); a sink must
//     therefore never fail a message for good. Messages are kept under
//     MaxMessageBytes, the one permanent refusal a bus has (NATS max_payload).
//   - Metrics: flowbus_export_messages_total, _rows_total, _bytes_total,
//     _publish_errors_total, _spooled_messages_total, flowbus_export_queue_messages,
//     flowbus_export_message_rows (a histogram of records per published
//     message: the shapes the aggregators decode and bench/ measures),
//     flowbus_bus_publish_seconds, plus the spool's and the stage counters
//     (received = records in, emitted = records published).
package export
