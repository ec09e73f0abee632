// Package aggregator is flowbus's aggregator tier: it consumes the Arrow flow
// batches of flowbus.flows.v1 (Kafka consumer group, RunKafka, or NATS
// JetStream durable pull consumer, RunNATS), folds them into event-time
// windows and writes per-pair and per-route rollups as Parquet
// (schemas.PairRollup, schemas.RouteRollup) that DuckDB, Spark and pandas
// read directly, and optionally (Config.RawFlows, --raw-flows) every raw
// flow record (schemas.FlowRow). Package report holds the DuckDB queries the
// demo prints.
//
// # Consuming
//
// RunKafka and RunNATS only configure their transport's consumer (partition
// callbacks, logger) and hand it to one consumer loop (run.go). The loop
// drives a small interface declared here, consumer (Poll, Commit,
// DeadLetter and Close, over bus.Delivery of package sinks/bus), which
// *kafka.Consumer and *nats.Consumer satisfy as they are. The loop polls,
// feeds each delivery to Process, then commits each partition's
// CommitOffset where it moved. The consumer calls the partition callbacks
// only from inside Poll, Commit and Close, so everything runs on the loop's
// goroutine: an assigned partition is scanned (Assign); a revoked one is
// written and committed before it moves (Release, then Commit); a lost one
// (Kafka only) is dropped. When ctx is done the loop writes every open
// window, commits and returns nil; on any other error it stops at once,
// writing and committing nothing more, as a crash would. Bad messages go to
// the consumer's DeadLetter.
//
// # Windows and lateness
//
// Windows are aligned on the Unix epoch (default 1 minute). Each partition
// keeps a watermark: the latest event time seen minus the allowed lateness
// (default 10 s). Every record of a message is classified against the
// watermark as it stood before that message; after the message, every
// window whose end the watermark passed is written. A record for a window
// already written is not dropped: it goes to a "late" bucket of that window,
// written the next time a window closes, with late = true, and is counted in
// flowbus_aggregator_late_rows_total. A record with no event time takes the
// broker timestamp. (A record far in the future moves the watermark on and
// makes the rest late; its rows still land, flagged.)
//
// # Rollups
//
// pair_rollup has one row per (window, src workload, dst workload, dst
// service, dst port, protocol, verdict, drop reason); route_rollup one row
// per (window, dst workload, L7 protocol, method, route, status), from L7
// records other than bare requests (a response carries the status and the
// latency). An L7 response that is a reply, as Hubble reports it (from the
// server to the client), is keyed as its request: the client is the
// source, the server's port and service the destination's.
//
// Both count each connection once, by each record's count_as
// (schemas.CountAs): bytes, packets and RSTs come from records that count
// as flows or as traffic, and so do L7 responses in route_rollup (the
// eBPF source's responses count as traffic: its L3/L4 records carry their
// connections); flows, connections (flows whose opening SYN was seen, or
// not TCP), SYNs and latency from records that count as flows; records that count as nothing (another observation point's
// record carries their connection) add nothing, but are still consumed and
// kept in flows/. A workload is Endpoint.Workload, else the pod name, else "". An
// HTTP route is the URL path with the query dropped and each segment that is
// a number, a UUID or ≥ 16 hex digits replaced by {id}, then the
// user's --route-template rules, then cut to 128 bytes; a DNS route is the
// query name, a Kafka route the topic. Each destination workload has at most
// MaxRoutesPerWorkload routes per window and partition; more go to {other}
// (flowbus_aggregator_route_overflow_total). Latency is kept as a
// schemas.Histogram (≤ 2 % error), written both as quantile columns and as
// latency_hist, which SQL merges exactly.
//
// # Decoding and folding cost
//
// The rollups read 34 of flow.v1's 74 columns (rollupColumns), so the
// aggregator decodes only those (flowcodec.Projection): the other columns'
// buffers are never decompressed. Rows are folded as they are decoded
// (flowcodec.Decoder.DecodeEach, one reused Flow), not gathered into a slice
// first. Pair and route rows are found through small direct-mapped caches
// keyed by the identity of the key's strings (rows of one message share
// each dictionary string's bytes), before the maps that compare contents;
// HTTP routes are templated in one pass into a reused buffer and interned,
// and a URL repeated in a message is templated once. Figures are in
// bench/RESULTS.md (BenchmarkDecodeRollup).
//
// The whole process (BenchmarkAggregatorBacklog: the real agent's messages
// from NATS, Parquet written and committed) spends more per row than that,
// most at the agent's small messages (~80 rows at 1k flows/s): each buffer
// of a message is its own zstd frame, and a window's files are created,
// fsynced and renamed per partition. The decoder fills RLE frames itself,
// decompresses a frame stored once for several equal buffers once, and
// skips the check of the schema message it knows; the NATS consumer reads
// through Consume (sinks/nats/doc.go), which took a 128 MB channel buffer
// out of the heap that the GC scanned every cycle. The Go runtime's
// defaults stay: with that buffer gone, GC is ~6 % of the process's CPU,
// and GOGC=200 or 400 measured no faster (within the run-to-run spread)
// while raising peak RSS at 1k flows/s from ~250 to ~300 and ~370 MB.
//
// # Raw flows
//
// With RawFlows every record consumed is also written, one row per record
// (schemas.FlowRow: the flow.v1 columns, see schemas/README.md), to
// <out>/flows/date=…/hour=…/. A raw row belongs to the bucket its record
// folds into, so it shares the bucket's file name, Hive partition (the
// window start's, also for a record with no event time or a late one),
// replay skipping and commit below: flows/ holds every record exactly once
// across crashes and rebalances, like the rollups. Memory stays bounded
// however long the window: each bucket streams its rows into a temporary
// Parquet file opened on its first row (rows of a message are staged and
// written when the message is done, since the decoder reuses their memory),
// flushing a row group every min(RowGroupRows, 32768) rows: about 9 MB per
// open bucket (partitions × windows open, plus late ones). One zstd encoder
// is shared by all files. The aggregator then decodes every column, not
// only the rollups' projection, and processes several times fewer rows per
// second: 0.11–0.14 M against 0.88–0.94 M without raw flows
// (BenchmarkProcessRawFlows; bench/HISTORY.md, "Parquet write and raw
// flows").
//
// # Commit protocol (exactly-once output over at-least-once delivery)
//
// A window's records of one partition are a bucket. A bucket remembers the
// offsets of the first and last message that added to it. When written, it
// becomes up to three files with the same deterministic name
//
//	p<partition>-w<window start, Unix s>-o<first offset>-<last offset>[-late].parquet
//
// under <out>/flows/date=YYYY-MM-DD/hour=HH/ (RawFlows only), then
// <out>/route_rollup/date=…/hour=…/ (skipped if it has no L7 rows) and
// then <out>/pair_rollup/date=…/hour=…/. Each file is written to a hidden
// temp name, fsynced, renamed, and its directory fsynced (package
// sinks/parquet). The pair file is written last and is the bucket's commit
// marker. Only after the files are renamed are offsets committed, and the
// committed offset of a partition is the first offset of its oldest bucket
// still open — never past a record held only in memory. So:
//
//   - Files are cut only on data-driven events (the watermark passing a
//     window end, a revoke, a shutdown), never on wall-clock time.
//   - A crash (kill, no flush, no commit) anywhere loses nothing: every
//     record not in a committed file is at or after the committed offset
//     and is read again.
//   - Nothing is written twice: on Assign the aggregator lists the committed
//     (window, offset range) pairs of its partitions from the pair file
//     names, and while re-reading skips every record whose window has a
//     committed file whose offset range holds the record's message
//     (flowbus_aggregator_replayed_rows_skipped_total). This is exact
//     because a bucket takes every not-yet-committed record of its window
//     from every message in its range, and a window has one open bucket at
//     a time.
//   - A crash between the flows or route file and the pair file leaves
//     files without their marker; Assign deletes them (and the partition's
//     temp files, open raw flows files included), and the bucket is rebuilt
//     from the re-read records.
//   - A rebalance writes the revoked partitions' open buckets and commits
//     before they move (OnRevoked). A partition lost without a handover is
//     dropped (its open raw flows files closed and removed); its next owner
//     re-reads it and the rule above applies.
//   - On Kafka the aggregator is a static member of its group
//     (kafka.ConsumerConfig.InstanceID; flowbus aggregator
//     --kafka-instance-id, by default its pod or host name and a digest of
//     its data directory): killed and restarted on the same data, it takes
//     its partitions back at once, without a rebalance and without waiting
//     for its old session to expire, and the other members keep theirs
//     (with dynamic membership four quick SIGKILLs once left a survivor
//     without partitions for over two minutes). The other side: an
//     aggregator stopped for good holds its partitions until its session
//     times out (45 s).
//
// The same (window, key) can therefore appear in several rows (late
// buckets, early writes on revoke or shutdown): always aggregate with
// sum(...) GROUP BY, as the queries below do. The scan on Assign walks the
// whole output directory; prune old date= directories (or move them to
// colder storage) to keep it fast.
//
// # Limits
//
//   - One writer per partition is assumed. A Kafka member that stalls in the
//     middle of a poll past the group's rebalance timeout has its partitions
//     given away; a file it writes after the new owner's Assign scan would
//     duplicate rows. Keep MaxPollRecords × per-message work far below the
//     rebalance timeout (franz-go then calls OnLost and the state is dropped).
//     NATS has no group: --nats-assigned must not overlap between instances.
//   - A write that fails (a full disk, an I/O error) stops the aggregator
//     with the error, which names the file and the cause ("no space left
//     on device"), as a crash would: nothing past what it wrote is
//     committed, the files it had begun are temp files no reader lists,
//     and its files without a marker are removed by the next Assign.
//     Restarted once there is room (systemd and Kubernetes restart it), it
//     re-reads the uncommitted messages and writes each row once
//     (cmd/flowbus TestAggregatorOnAFullDiskStopsCleanAndResumesExactly).
//     It does not wait for room itself.
//   - Assign walks the whole output directory; prune old date= directories.
//   - Raw flows cost a full decode and about one Parquet row per record on
//     disk; with RawFlows switched on later, windows committed before are
//     not backfilled.
//
// # Reading the rollups
//
// A day of windows merged, p99 per route (report.DayP99SQL; bucket midpoint
// as in schemas.HistValue, rank ceil(q·total) as in schemas.QuantileRank):
//
//	WITH hist AS (
//	  SELECT dst_workload, method, route, h.bucket AS bucket, sum(h.count) AS n
//	  FROM read_parquet('flowbus-data/route_rollup/*/*/*.parquet', hive_partitioning = true) r,
//	       unnest(r.latency_hist) AS u(h)
//	  WHERE date = '2026-11-25'
//	  GROUP BY ALL
//	), cum AS (
//	  SELECT *, sum(n) OVER (PARTITION BY dst_workload, method, route ORDER BY bucket) AS c,
//	            sum(n) OVER (PARTITION BY dst_workload, method, route) AS total
//	  FROM hist
//	), p99 AS (
//	  SELECT dst_workload, method, route, any_value(total) AS requests,
//	         min(bucket) FILTER (WHERE c >= greatest(1, ceil(0.99 * total::DOUBLE))) AS bucket
//	  FROM cum GROUP BY ALL
//	)
//	SELECT dst_workload, method, route, requests,
//	       (CASE WHEN bucket <= 0 THEN 512
//	       WHEN bucket >= 833 THEN CAST(1 AS BIGINT) << 36
//	       ELSE ((32 + (bucket - 1) % 32) * (CAST(1 AS BIGINT) << (5 + (bucket - 1) // 32)))
//	            + (CAST(1 AS BIGINT) << (4 + (bucket - 1) // 32)) END) / 1e6 AS p99_ms
//	FROM p99 ORDER BY p99_ms DESC, dst_workload, method, route;
//
// Bytes per pair for the same day:
//
//	SELECT src_workload, dst_workload, dst_port, verdict, sum(flows) AS flows,
//	       sum(bytes_fwd + bytes_rev) AS bytes
//	FROM read_parquet('flowbus-data/pair_rollup/*/*/*.parquet', hive_partitioning = true)
//	WHERE date = '2026-11-25' GROUP BY ALL ORDER BY bytes DESC;
//
// Raw flows (RawFlows): the drops of one hour, newest first:
//
//	SELECT time, src_namespace, src_pod_name, dst_namespace, dst_pod_name, dst_port, drop_reason
//	FROM read_parquet('flowbus-data/flows/*/*/*.parquet', hive_partitioning = true)
//	WHERE date = '2026-11-25' AND hour = 10 AND verdict = 'DROPPED'
//	ORDER BY time DESC LIMIT 50;
package aggregator
