//go:build linux

package ebpf

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/flowbus/flowbus/bpf/socklb"
)

var (
	descSockLBKernel = prometheus.NewDesc("flowbus_socklb_kernel_events_total",
		"Kernel per-CPU counters of the socket load balancer (--socket-lb), summed: translated and no_backend (refused with ECONNREFUSED) connects and datagrams, ringbuf (decisions lost: the ring buffer refused them, so they have no record), revnat_update (translations not recorded: getpeername and recvmsg show the backend), revnat_rewrite (answers and peers given the ClusterIP back), peer_storage (TCP translations kept in socket storage, about 300 ns dearer, because another open socket held their slot), and backend_missing, maglev_missing and family_mismatch, which a consistent sync never causes.",
		[]string{"counter"}, nil)
	descSockLBFrontends = prometheus.NewDesc("flowbus_socklb_frontends",
		"Service frontends (ClusterIP, port, protocol) the socket load balancer translates.", nil, nil)
)

// SockLBMetrics is the collector of the socket load balancer's figures
// (doc.go, "Socket load balancing"), read at scrape time: nothing before
// Run attached it or without Config.SockLB.
func SockLBMetrics(s *Source) prometheus.Collector { return sockLBMetrics{s} }

type sockLBMetrics struct{ s *Source }

func (m sockLBMetrics) Describe(ch chan<- *prometheus.Desc) {
	ch <- descSockLBKernel
	ch <- descSockLBFrontends
}

func (m sockLBMetrics) Collect(ch chan<- prometheus.Metric) {
	l := m.s.sockLB.Load()
	if l == nil {
		return
	}
	c, err := l.lb.Counters()
	if err != nil {
		return
	}
	for i, v := range c {
		ch <- prometheus.MustNewConstMetric(descSockLBKernel, prometheus.CounterValue, float64(v), socklb.Counter(i).String())
	}
	l.mu.Lock()
	n := len(l.ids)
	l.mu.Unlock()
	ch <- prometheus.MustNewConstMetric(descSockLBFrontends, prometheus.GaugeValue, float64(n))
}
