package aggregator

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/flowbus/flowbus/sinks/parquet"
)

type metrics struct {
	messages      prometheus.Counter
	flows         prometheus.Counter
	bad           *prometheus.CounterVec
	deadLettered  prometheus.Counter
	lateRows      prometheus.Counter
	skippedRows   prometheus.Counter
	routeOverflow prometheus.Counter
	filesWritten  *prometheus.CounterVec
	rowsWritten   *prometheus.CounterVec
	bytesWritten  *prometheus.CounterVec
	commits       prometheus.Counter
	openWindows   prometheus.Gauge
	partitions    prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	const ns, sub = "flowbus", "aggregator"
	m := &metrics{
		messages: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "messages_total",
			Help: "Bus messages received, good and bad."}),
		flows: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "flow_rows_total",
			Help: "Flow records decoded from good messages."}),
		bad: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "bad_messages_total",
			Help: "Messages that could not be decoded, by reason (not_arrow, truncated, unknown_schema, invalid); each is dead-lettered and skipped."}, []string{"reason"}),
		deadLettered: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "dead_lettered_total",
			Help: "Bad messages copied to the dead-letter topic or subject."}),
		lateRows: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "late_rows_total",
			Help: "Flow records that arrived after their window was written; they go to a later file with late = true."}),
		skippedRows: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "replayed_rows_skipped_total",
			Help: "Flow records re-read after a restart or rebalance that were already in a committed file."}),
		routeOverflow: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "route_overflow_total",
			Help: "L7 records whose route was written as {other} because its workload reached the route cap."}),
		filesWritten: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "files_written_total",
			Help: "Parquet files committed, by table."}, []string{"table"}),
		rowsWritten: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "rows_written_total",
			Help: "Rollup rows committed, by table."}, []string{"table"}),
		bytesWritten: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "bytes_written_total",
			Help: "Parquet bytes committed, by table."}, []string{"table"}),
		commits: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "offset_commits_total",
			Help: "Offset commits (Kafka) or acknowledgements (NATS) after files were committed."}),
		openWindows: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "open_windows",
			Help: "Windows held in memory, not yet written."}),
		partitions: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "partitions",
			Help: "Partitions assigned to this aggregator."}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.messages, m.flows, m.bad, m.deadLettered, m.lateRows, m.skippedRows,
		m.routeOverflow, m.filesWritten, m.rowsWritten, m.bytesWritten, m.commits, m.openWindows, m.partitions} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register aggregator metrics: %w", err)
		}
	}
	return m, nil
}

// wrote counts one committed Parquet file of table.
func (m *metrics) wrote(table string, st parquet.Stats) {
	m.filesWritten.WithLabelValues(table).Inc()
	m.rowsWritten.WithLabelValues(table).Add(float64(st.Rows))
	m.bytesWritten.WithLabelValues(table).Add(float64(st.Bytes))
}
