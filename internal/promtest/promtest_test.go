package promtest

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestValueFindsTheSeriesWithEveryLabelPair(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "x_total", Help: "x"}, []string{"a", "b"})
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "y", Help: "y"})
	reg.MustRegister(c, g)
	c.WithLabelValues("1", "2").Add(3)
	c.WithLabelValues("1", "5").Add(7)
	g.Set(-2)
	for _, tc := range []struct {
		name   string
		labels []string
		want   float64
		found  bool
	}{
		{"x_total", []string{"a", "1", "b", "5"}, 7, true},
		{"x_total", []string{"b", "2"}, 3, true},
		{"x_total", []string{"a", "9"}, 0, false},
		{"y", nil, -2, true},
		{"z", nil, 0, false},
	} {
		v, found, err := Value(reg, tc.name, tc.labels...)
		if err != nil || v != tc.want || found != tc.found {
			t.Errorf("%s %v: %v %v %v; want %v %v", tc.name, tc.labels, v, found, err, tc.want, tc.found)
		}
	}
}
