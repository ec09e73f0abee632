package stage

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics holds the three counter vectors of every stage. Safe for concurrent use.
type Metrics struct {
	received *prometheus.CounterVec
	emitted  *prometheus.CounterVec
	dropped  *prometheus.CounterVec
}

// NewMetrics creates the stage counters and registers them on reg (a nil reg
// registers nothing: the counters still count, for tests).
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		received: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flowbus_stage_received_total",
			Help: "Flow records a pipeline stage received.",
		}, []string{"stage"}),
		emitted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flowbus_stage_emitted_total",
			Help: "Flow records a pipeline stage emitted to the next one.",
		}, []string{"stage"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flowbus_stage_dropped_total",
			Help: "Flow records a pipeline stage dropped or lost, by reason.",
		}, []string{"stage", "reason"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.received, m.emitted, m.dropped} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("register stage metrics: %w", err)
			}
		}
	}
	return m, nil
}

// Stage returns the counters of one stage. A nil *Metrics returns counters
// registered nowhere, so a component built without metrics still works.
func (m *Metrics) Stage(name string) *Counters {
	if m == nil {
		m, _ = NewMetrics(nil)
	}
	return &Counters{
		Received: m.received.WithLabelValues(name),
		Emitted:  m.emitted.WithLabelValues(name),
		name:     name,
		dropped:  m.dropped,
	}
}

// Counters are one stage's counters. Safe for concurrent use.
type Counters struct {
	Received prometheus.Counter
	Emitted  prometheus.Counter
	name     string
	dropped  *prometheus.CounterVec
}

// Dropped returns the counter of records this stage dropped for reason.
// Callers on a hot path keep the returned counter instead of calling Dropped
// per record.
func (c *Counters) Dropped(reason string) prometheus.Counter {
	return c.dropped.WithLabelValues(c.name, reason)
}
