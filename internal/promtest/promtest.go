// Package promtest reads metric values from a Prometheus registry in
// tests, by name and label pairs, as a scrape would see them.
package promtest

import (
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// Value returns the value (counter or gauge) of the first series of metric
// name whose labels include every (name, value) pair of labels, and
// whether there is one.
func Value(g prometheus.Gatherer, name string, labels ...string) (v float64, found bool, err error) {
	mfs, err := g.Gather()
	if err != nil {
		return 0, false, err
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			v, found = SeriesValue(mf, labels...)
			return v, found, nil
		}
	}
	return 0, false, nil
}

// SeriesValue returns the value (counter, gauge or untyped, as a scrape
// parsed by expfmt has them) of the first series of mf whose labels include
// every (name, value) pair of labels, and whether there is one.
func SeriesValue(mf *dto.MetricFamily, labels ...string) (float64, bool) {
series:
	for _, m := range mf.GetMetric() {
		for i := 0; i+1 < len(labels); i += 2 {
			found := false
			for _, lp := range m.GetLabel() {
				if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
					found = true
				}
			}
			if !found {
				continue series
			}
		}
		return m.GetCounter().GetValue() + m.GetGauge().GetValue() + m.GetUntyped().GetValue(), true
	}
	return 0, false
}
