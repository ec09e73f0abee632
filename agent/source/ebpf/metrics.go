//go:build linux

package ebpf

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/flowbus/flowbus/bpf"
)

var (
	descKernel = prometheus.NewDesc("flowbus_bpf_kernel_events_total",
		"Kernel per-CPU counters of the flow programs, summed: parse errors by kind, untracked packets (non_ip, fragment), ring buffer reservations refused (ringbuf_start and ringbuf_end lose nothing; ringbuf_lost loses data), flows the full map refused (map_insert).",
		[]string{"counter"}, nil)
	descFlows = prometheus.NewDesc("flowbus_bpf_flows_total",
		"Flow records the eBPF source sent downstream.", nil, nil)
	descCPU = prometheus.NewDesc("flowbus_bpf_reader_cpu_seconds_total",
		"CPU time of the ring buffer reader thread (reading, converting, sweeping the flows map).", nil, nil)
	descReload = prometheus.NewDesc("flowbus_bpf_endpoints_reload_errors_total",
		"Endpoints file reloads that failed (the previous contents stay in use).", nil, nil)
	descAttached = prometheus.NewDesc("flowbus_bpf_attached_interfaces",
		"Interfaces the flow programs are attached to.", nil, nil)
)

// Describe implements prometheus.Collector.
func (s *Source) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descKernel, descFlows, descCPU, descReload, descAttached} {
		ch <- d
	}
}

// Collect implements prometheus.Collector. Kernel counters are read at
// scrape time; before Run loads the programs they are absent.
func (s *Source) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(descFlows, prometheus.CounterValue, float64(s.flows.Load()))
	ch <- prometheus.MustNewConstMetric(descReload, prometheus.CounterValue, float64(s.reloadErrs.Load()))
	c := s.coll.Load()
	if c == nil {
		return
	}
	ch <- prometheus.MustNewConstMetric(descCPU, prometheus.CounterValue, c.Stats().ReaderCPU.Seconds())
	ch <- prometheus.MustNewConstMetric(descAttached, prometheus.GaugeValue, float64(len(c.Attached())))
	if n, err := c.Counters(); err == nil {
		for i, v := range n {
			ch <- prometheus.MustNewConstMetric(descKernel, prometheus.CounterValue, float64(v), bpf.Counter(i).String())
		}
	}
}
