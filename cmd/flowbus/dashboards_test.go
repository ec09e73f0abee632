package main

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/flowbus/flowbus/aggregator"
	"github.com/flowbus/flowbus/deploy/deploytest"
)

// probe is a collector of one descriptor, registered only to ask a
// registry whether a metric name is taken.
type probe struct{ desc *prometheus.Desc }

func (p probe) Describe(ch chan<- *prometheus.Desc) { ch <- p.desc }
func (p probe) Collect(chan<- prometheus.Metric)    {}

// registered reports whether some collector of reg describes a metric
// named name: registering a descriptor of that name with another help
// string fails exactly then. Unlike a scrape, this sees every registered
// metric, a vector that has no series yet included.
func registered(reg *prometheus.Registry, name string) bool {
	p := probe{prometheus.NewDesc(name, "flowbus dashboard test probe", nil, nil)}
	err := reg.Register(p)
	if err == nil {
		reg.Unregister(p)
		return false
	}
	var are prometheus.AlreadyRegisteredError
	return errors.As(err, &are) || strings.Contains(err.Error(), "previously registered descriptor with the same fully-qualified name")
}

// TestDashboardMetricsAreExported: every metric the Grafana dashboards
// (deploy/grafana) query is registered by the agent or the aggregator as
// the Helm chart runs them. The agent is built (not run: nothing is loaded
// into the kernel) from the chart's own arguments, --source ebpf and its
// --l7 and --metrics included, with the bus, the listeners, the data
// directory and the API server pointed at harmless places; the aggregator
// from its chart arguments, with the registry the subcommand makes. Names
// are asked of the registries themselves (registered), so a metric that is
// renamed, or a Hubble metric the chart stops enabling, fails the test.
// Histogram series (_bucket, _sum, _count) are looked up by their base name.
func TestDashboardMetricsAreExported(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the agent of the chart uses --source ebpf, which needs Linux")
	}
	containers := chartContainers(t)
	dir := t.TempDir()
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(kubeconfig, []byte(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
`), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("FLOWBUS_NODE", "node-a")

	fs, f := newAgentFlags(testIO())
	args := append(slices.Clone(containers["agent"].Args[1:]), "--bus=stdout", "--observer-address=127.0.0.1:0",
		"--metrics-address=", "--data-dir="+filepath.Join(dir, "agent"), "--kubeconfig="+kubeconfig)
	if err := parseFlags(fs, args); err != nil {
		t.Fatal(err)
	}
	rt, err := f.build(testIO(), false, "")
	if err != nil {
		t.Fatalf("agent from the chart's arguments: %v", err)
	}
	defer rt.close()

	af, err := parseAggregatorFlags(append(slices.Clone(containers["aggregator"].Args[1:]), "--data-dir="+filepath.Join(dir, "agg")), testIO())
	if err != nil {
		t.Fatal(err)
	}
	aggReg := newProcessRegistry()
	if _, err := aggregator.New(af.cfg, nil, aggReg); err != nil {
		t.Fatal(err)
	}

	regs := map[string]*prometheus.Registry{"agent": rt.reg, "aggregator": aggReg}
	for _, name := range deploytest.Dashboards {
		d, err := deploytest.ReadDashboard(name)
		if err != nil {
			t.Fatal(err)
		}
		var seen []string
		for title, exprs := range d.Exprs() {
			for _, e := range exprs {
				for _, m := range deploytest.MetricNames(e) {
					base := m
					for _, suffix := range []string{"_bucket", "_sum", "_count"} {
						if b, ok := strings.CutSuffix(m, suffix); ok && !registered(rt.reg, m) && !registered(aggReg, m) {
							base = b
						}
					}
					var by []string
					for who, reg := range regs {
						if registered(reg, base) {
							by = append(by, who)
						}
					}
					if len(by) == 0 {
						t.Errorf("%s, panel %q: %s is registered by neither the agent nor the aggregator", name, title, m)
					}
					seen = append(seen, m)
				}
			}
		}
		sort.Strings(seen)
		t.Logf("%s: %d metric selections, %d names", name, len(seen), len(slices.Compact(seen)))
	}
	// The probe itself: a name nobody registers is not found.
	if registered(rt.reg, "flowbus_no_such_metric_total") || registered(aggReg, "flowbus_no_such_metric_total") {
		t.Errorf("the probe finds a metric nobody registers")
	}
}
