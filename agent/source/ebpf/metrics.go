//go:build linux

package ebpf

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/flowbus/flowbus/agent/l7/stream"
	"github.com/flowbus/flowbus/bpf"
)

var (
	descKernel = prometheus.NewDesc("flowbus_bpf_kernel_events_total",
		"Kernel per-CPU counters of the flow programs, summed: parse errors by kind, untracked packets (non_ip, fragment), ring buffer reservations refused (ringbuf_start and ringbuf_end lose nothing; ringbuf_lost loses data), flows the full map refused (map_insert).",
		[]string{"counter"}, nil)
	descKernelDrops = prometheus.NewDesc("flowbus_bpf_kernel_drops_total",
		"Packets of pod interfaces the kernel dropped (kfree_skb tracepoint), by the kernel's drop reason (enum skb_drop_reason without SKB_DROP_REASON_, named from the running kernel's BTF; OTHER: subsystem reasons). TC_INGRESS and TC_EGRESS include flowbus's own policy drops.",
		[]string{"reason"}, nil)
	descKernelDropsMissed = prometheus.NewDesc("flowbus_bpf_kernel_drops_missed_total",
		"Kernel drops flowbus_bpf_kernel_drops_total could not count: runs of the kfree_skb tracepoint program the kernel skipped because it was already running on that CPU (a softirq's drop interrupting a drop in process context). Their reasons are unknown and the drops are not reported as records; flowbus's own policy drops among them are still in their flows' records.",
		nil, nil)
	descFlows = prometheus.NewDesc("flowbus_bpf_flows_total",
		"Flow records the eBPF source sent downstream.", nil, nil)
	descCPU = prometheus.NewDesc("flowbus_bpf_reader_cpu_seconds_total",
		"CPU time of the ring buffer reader thread (reading, converting, sweeping the flows map).", nil, nil)
	descSyncs = prometheus.NewDesc("flowbus_policy_syncs_total",
		"Cluster snapshots (or changes of attached interfaces) applied to the kernel's identity and policy maps; result=error when some map write failed (what could be written is in force).",
		[]string{"result"}, nil)
	descRevision = prometheus.NewDesc("flowbus_policy_revision",
		"Policy revision in force in the kernel: it moves on at every sync, and every flow's verdict is decided again on its next packet.", nil, nil)
	descEndpoints = prometheus.NewDesc("flowbus_policy_endpoints",
		"Endpoints (pods behind attached interfaces) in the kernel's endpoints map.", nil, nil)
	descRejected = prometheus.NewDesc("flowbus_policy_rejected_policies",
		"Policies the last compile rejected (bad selector, unknown named port, malformed CIDR, unsupported field); the endpoints they select fail closed.", nil, nil)
	descFailClosed = prometheus.NewDesc("flowbus_policy_fail_closed_endpoints",
		"Endpoint directions whose policy could not be computed and that deny everything.", nil, nil)
	descCollisions = prometheus.NewDesc("flowbus_identity_collisions",
		"Label sets and prefixes that did not get the identity their hash gave them (another held it; the tie-break moved them).", nil, nil)
	descL7Capture = prometheus.NewDesc("flowbus_l7_captures_total",
		"L7 captures of the kernel (segments and datagrams of followed ports, with their payload heads), by the protocol of their port and result: captured, ringbuf (refused by the full L7 ring buffer: the segment is missing, and its stream's parser counts a gap) or load (sent without its head: the payload could not be read).",
		[]string{"protocol", "result"}, nil)
	descAttached = prometheus.NewDesc("flowbus_bpf_attached_interfaces",
		"Interfaces the flow programs are attached to.", nil, nil)
)

// Describe implements prometheus.Collector.
func (s *Source) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descKernel, descKernelDrops, descKernelDropsMissed, descFlows, descCPU, descAttached, descSyncs, descRevision,
		descEndpoints, descRejected, descFailClosed, descCollisions, descL7Capture} {
		ch <- d
	}
}

// Collect implements prometheus.Collector. Kernel counters are read at
// scrape time; before Run loads the programs they are absent.
func (s *Source) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(descFlows, prometheus.CounterValue, float64(s.flows.Load()))
	p := &s.pol
	ch <- prometheus.MustNewConstMetric(descSyncs, prometheus.CounterValue, float64(p.syncs.Load()-p.syncErrors.Load()), "ok")
	ch <- prometheus.MustNewConstMetric(descSyncs, prometheus.CounterValue, float64(p.syncErrors.Load()), "error")
	ch <- prometheus.MustNewConstMetric(descRevision, prometheus.GaugeValue, float64(p.revision.Load()))
	ch <- prometheus.MustNewConstMetric(descEndpoints, prometheus.GaugeValue, float64(p.endpoints.Load()))
	ch <- prometheus.MustNewConstMetric(descRejected, prometheus.GaugeValue, float64(p.rejected.Load()))
	ch <- prometheus.MustNewConstMetric(descFailClosed, prometheus.GaugeValue, float64(p.failClosed.Load()))
	ch <- prometheus.MustNewConstMetric(descCollisions, prometheus.GaugeValue, float64(p.collisions.Load()))
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
	if d, err := c.KernelDrops(); err == nil {
		for reason, v := range d {
			ch <- prometheus.MustNewConstMetric(descKernelDrops, prometheus.CounterValue, float64(v), reason)
		}
	}
	if n, err := c.KernelDropsMissed(); err == nil {
		ch <- prometheus.MustNewConstMetric(descKernelDropsMissed, prometheus.CounterValue, float64(n))
	}
	if s.cfg.L7 == nil {
		return
	}
	if l, err := c.L7Counters(); err == nil {
		seen := map[stream.Protocol]bool{}
		for _, proto := range s.cfg.L7.Ports {
			if seen[proto] {
				continue
			}
			seen[proto] = true
			n := l[proto]
			name := proto.String()
			ch <- prometheus.MustNewConstMetric(descL7Capture, prometheus.CounterValue, float64(n.Captured), name, "captured")
			ch <- prometheus.MustNewConstMetric(descL7Capture, prometheus.CounterValue, float64(n.RingBuf), name, "ringbuf")
			ch <- prometheus.MustNewConstMetric(descL7Capture, prometheus.CounterValue, float64(n.Load), name, "load")
		}
	}
}
