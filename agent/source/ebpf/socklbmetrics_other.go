//go:build !linux

package ebpf

import "github.com/prometheus/client_golang/prometheus"

// SockLBMetrics is the collector of the socket load balancer's figures;
// this build has none.
func SockLBMetrics(*Source) prometheus.Collector { return noMetrics{} }

type noMetrics struct{}

func (noMetrics) Describe(chan<- *prometheus.Desc) {}
func (noMetrics) Collect(chan<- prometheus.Metric) {}
