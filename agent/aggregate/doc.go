// Package aggregate folds raw flows into Hubble-style aggregated records.
//
// Flows with the same key seen inside one window (default 1 s) become one
// record. The key is: node; source and destination identity, namespace and
// workload (the pod name when the workload is unknown); destination port; L4
// protocol; verdict; drop reason; direction; observation point; is_reply;
// count_as (so that folding keeps what each record adds to sums); and
// the L7 key: L7 protocol and type plus HTTP method, exact URL and status, or
// DNS query, query types and rcode, or Kafka api key, topic and error code
// (each of them is a column of the aggregator's route rollup: an A and an
// AAAA query for one name in one window are two records). URLs are kept
// exactly as seen: templating (/orders/123 → /orders/{id}) is the
// aggregator tier's job, where it is configurable and can be changed without
// touching agents.
//
// Folding a flow into a record: Count, bytes and packets each way are summed;
// FirstSeenNs is the minimum and LastSeenNs and TimeNs the maximum (a raw
// flow's first/last seen default to its TimeNs); TCP flags are OR-ed;
// LatencyNs is the maximum; LatencyHist gets every folded latency
// (schemas.Histogram.Add, or Merge of an already aggregated input). Fields
// outside the key (IPs, source port, labels, names, headers, DNS answers, ...)
// are those of the first flow of the window; the UUID of a record that folds
// two or more flows is emptied, since it no longer names one flow.
//
// Decisions:
//   - Windows are processing-time: the caller calls Flush when its window
//     timer fires (the agent uses a ticker of Config.Window). Replayed files
//     with old timestamps therefore still aggregate, and a quiet source still
//     gets its records out on time.
//   - Memory is bounded by Config.MaxKeys (default 65536) records. When a flow
//     with a new key arrives at a full table, the whole window is flushed early
//     (returned by Add) and counted in flowbus_aggregate_early_flushes_total.
//     Flushing the whole window rather than the oldest key keeps Add O(1) and
//     never splits one key's window into out-of-order pieces.
//   - The key is hashed without building a key value: each string with one
//     call of a seeded hash/maphash, the numeric fields packed into four
//     words, all folded by a multiply-and-fold mixer; collisions are resolved
//     by comparing fields. The table (a map from hash to record index) is
//     cleared and reused between windows, so steady-state Add allocates
//     nothing except a new latency histogram bucket. Each Flush hands its
//     record slice to the caller and starts a new one.
//   - Flush returns a window's records sorted by TimeNs (stable: ties keep
//     first-seen order). Every record of a window is no later than the flows
//     that arrive after the window ends, so a time-ordered input comes out
//     time-ordered, window after window: `--bus stdout` prints in time order.
//     An index is sorted and the records moved once each, in place.
//   - Disabled aggregation is a pass-through: Add returns its input unchanged.
//
// An Aggregator is not safe for concurrent use: the agent drives it from one
// goroutine.
package aggregate
