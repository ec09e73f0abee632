package stream

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/flowbus/flowbus/agent/l7"
)

// Collector exports the last Stats it was given as Prometheus metrics. The
// tracker's goroutine hands it snapshots (Update(tracker.Stats()), say
// after each Expire); a scrape reads the last one, so the tracker's
// counters are never read from another goroutine.
//
//	flowbus_l7_segments_total                            every segment fed
//	flowbus_l7_segments_skipped_total{reason}            retransmit, unparsed, rejected
//	flowbus_l7_segments_trimmed_total                    payloads cut to what was not seen
//	flowbus_l7_connections_total{protocol,event}         Stats.Conns (zeros left out)
//	flowbus_l7_connections{protocol}                     live: opened less ended, by port protocol
//	flowbus_l7_exchanges_total{protocol}                 records emitted
//	flowbus_l7_parse_errors_total{protocol,reason}       Stats.Parse, l7.Reason names
type Collector struct {
	mu sync.Mutex
	s  Stats
}

// NewCollector returns a collector with zero counters.
func NewCollector() *Collector { return &Collector{} }

// Update replaces the snapshot scrapes read.
func (c *Collector) Update(s Stats) {
	c.mu.Lock()
	c.s = s
	c.mu.Unlock()
}

var (
	descSegments = prometheus.NewDesc("flowbus_l7_segments_total",
		"Segments the L7 tracker was fed.", nil, nil)
	descSkipped = prometheus.NewDesc("flowbus_l7_segments_skipped_total",
		"Segments no parser got: retransmit (payload all seen before), unparsed (a connection whose protocol is not known), rejected (no configured port).", []string{"reason"}, nil)
	descTrimmed = prometheus.NewDesc("flowbus_l7_segments_trimmed_total",
		"TCP payloads partly seen before, passed on without the bytes seen.", nil, nil)
	descConns = prometheus.NewDesc("flowbus_l7_connections_total",
		"L7 connection events: opened, closed, expired, evicted (by the port's protocol, auto for auto ports), detected (by the protocol found), undetected.", []string{"protocol", "event"}, nil)
	descLive = prometheus.NewDesc("flowbus_l7_connections",
		"L7 connections followed now, by the port's protocol.", []string{"protocol"}, nil)
	descExchanges = prometheus.NewDesc("flowbus_l7_exchanges_total",
		"L7 exchanges (a request and its response, or a request unanswered) emitted.", []string{"protocol"}, nil)
	descParse = prometheus.NewDesc("flowbus_l7_parse_errors_total",
		"Times an L7 parser could not follow a stream, by reason.", []string{"protocol", "reason"}, nil)
)

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descSegments, descSkipped, descTrimmed, descConns, descLive, descExchanges, descParse} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	s := c.s
	c.mu.Unlock()
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	counter(descSegments, s.Segments)
	counter(descSkipped, s.Retransmits, "retransmit")
	counter(descSkipped, s.Unparsed, "unparsed")
	counter(descSkipped, s.Rejected, "rejected")
	counter(descTrimmed, s.Trimmed)
	for p := HTTP1; p < NumProtocols; p++ {
		name := p.String()
		var ended uint64
		for e := range NumEvents {
			if v := s.Conns[p][e]; v > 0 {
				counter(descConns, v, name, e.String())
			}
			if e == EventClosed || e == EventExpired || e == EventEvicted {
				ended += s.Conns[p][e]
			}
		}
		ch <- prometheus.MustNewConstMetric(descLive, prometheus.GaugeValue, float64(s.Conns[p][EventOpened]-ended), name)
		if p == Auto {
			continue // no parser of its own
		}
		counter(descExchanges, s.Exchanges[p], name)
		for r := range l7.NumReasons {
			counter(descParse, s.Parse[p][r], name, r.String())
		}
	}
}
