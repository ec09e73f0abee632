package stream

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/flowbus/flowbus/agent/l7"
	"github.com/flowbus/flowbus/internal/promtest"
)

func TestCollectorExportsTheLastSnapshot(t *testing.T) {
	cfg := httpConfig()
	cfg.MaxConns = 1
	r := newRig(t, cfg)
	a := newTCP(40001, "10.0.0.2:80", 1, 2)
	b := newTCP(40002, "10.0.0.2:80", 1, 2)
	r.feed(a.syn(1), a.c2s(2, get1), a.at(l7.FromClient, 3, 0, get1), a.s2c(4, ok5), b.syn(5), b.c2s(6, get2))
	col := NewCollector()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(col)
	col.Update(r.tr.Stats())
	r.feed(b.s2c(7, nf0)) // not in the snapshot
	for _, tc := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"flowbus_l7_segments_total", nil, 6},
		{"flowbus_l7_segments_skipped_total", []string{"reason", "retransmit"}, 1},
		{"flowbus_l7_segments_skipped_total", []string{"reason", "unparsed"}, 0},
		{"flowbus_l7_connections_total", []string{"protocol", "http", "event", "opened"}, 2},
		{"flowbus_l7_connections_total", []string{"protocol", "http", "event", "evicted"}, 1},
		{"flowbus_l7_connections", []string{"protocol", "http"}, 1},
		{"flowbus_l7_exchanges_total", []string{"protocol", "http"}, 1},
		{"flowbus_l7_parse_errors_total", []string{"protocol", "http", "reason", "state_cap"}, 1},
		{"flowbus_l7_parse_errors_total", []string{"protocol", "kafka", "reason", "gap"}, 0},
	} {
		v, found, err := promtest.Value(reg, tc.name, tc.labels...)
		if err != nil || !found || v != tc.want {
			t.Errorf("%s%v: %v (found %v, %v); want %v", tc.name, tc.labels, v, found, err, tc.want)
		}
	}
	if _, found, _ := promtest.Value(reg, "flowbus_l7_connections_total", "protocol", "http", "event", "expired"); found {
		t.Error("a zero connection event exported")
	}
}
