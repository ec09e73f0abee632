// Package agent wires the node agent's pipeline:
//
//	Source ──raw batches──► taps + aggregate ──records──► export ──► Publisher (bus)
//	   │                      (one goroutine)               │
//	   └─ lost events ──────────►┘                          └─► disk spool while the bus is down
//
// Each arrow is a typed channel of []schemas.Flow batches (never single
// flows: one channel operation moves hundreds of flows), and each stage is a
// goroutine under one errgroup. Stages count what they received, emitted and
// dropped in flowbus_stage_{received,emitted,dropped}_total{stage} (package
// stage), so loss anywhere is visible.
//
// Decisions:
//   - Sources (agent/source/...) and taps (internal/observer, agent/metrics) are
//     defined by the small interfaces here, owned by the package that uses
//     them; sources do not import agent.
//   - Taps run synchronously on the aggregation goroutine, in order, before
//     aggregation, so the Hubble ring and Hubble metrics see every raw flow
//     and never race with each other. Lost events reported by a source travel
//     to the same goroutine over a channel, so Tap.Lost is called from the
//     same goroutine as Observe. They are also counted as
//     flowbus_stage_dropped_total{stage="source",reason="lost_<source>"}.
//   - Raw batches are recycled: a Source that implements Recycler gets each
//     batch back once the taps and the aggregator are done with it, so the
//     steady state allocates no flow memory (channels are 8 batches deep, so
//     few batches are in flight). This is what lets the path sustain more than
//     a million raw flows per CPU-second (BenchmarkAgent; bench/RESULTS.md,
//     "Whole agent on one core").
//   - Aggregation windows are processing-time: a ticker of Aggregate.Window
//     flushes; a full key table flushes early (package aggregate).
//   - A tap that has slow work to do queues it: the OCSF writer that
//     `flowbus agent --ocsf-*` adds (cmd/flowbus/agentocsf.go) copies each
//     raw batch into its own bounded queue and returns, dropping and counting
//     what does not fit; its events are therefore the source's records
//     (enriched, one per connection report), not the aggregated ones.
//   - Back-pressure stops at the exporter: it always accepts records (memory
//     queue, then disk spool), so a slow or dead bus never stalls the source.
//     A source that is faster than aggregation (CPU-bound) is slowed by the
//     raw channel; the eBPF source decides itself whether to wait or let the
//     kernel ring buffer overflow into its lost counter.
//   - Shutdown is driven by the source: when ctx ends the source returns,
//     its channel closes, the aggregation window is flushed, the exporter
//     sends its open batches and publishes or spools everything it accepted,
//     then Run returns. Nothing accepted is lost on a clean stop.
package agent
