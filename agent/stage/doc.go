// Package stage counts what each stage of the agent pipeline received,
// emitted and dropped, as the Prometheus counters
//
//	flowbus_stage_received_total{stage}
//	flowbus_stage_emitted_total{stage}
//	flowbus_stage_dropped_total{stage,reason}
//
// so that loss anywhere in the pipeline is visible: a flow is either in the
// output or in a dropped counter of the stage that dropped it.
// Units are flow records as the stage sees them: raw flows for the source and
// the aggregator's input, folded records after aggregation, rows for export.
//
// The counters are created once per registry (NewMetrics) and handed to the
// stages (Metrics.Stage), because a registry accepts a metric name only once.
//
// Decisions:
//   - One Metrics per registry, handed to every stage, because Prometheus
//     accepts a metric name once per registry; each stage keeps its Counters
//     and adds per batch (not per flow) on hot paths.
//   - Stage names in use: "source" (emitted = raw flows a source produced;
//     dropped reason lost_<LostEventSource> = events the source reported
//     lost), "aggregate" (received raw flows, emitted folded records;
//     dropped reason export_stopped if the exporter failed),
//     "export" (received records, emitted records published; dropped reasons
//     queue_full, spool_error, shutdown, too_large, encode_error).
package stage
