package deploytest

import (
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestMetricNames(t *testing.T) {
	for expr, want := range map[string][]string{
		`sum by (reason) (rate(hubble_drop_total[$__rate_interval]))`: {"hubble_drop_total"},
		`histogram_quantile(0.99, sum by (le) (rate(hubble_http_request_duration_seconds_bucket{job="a"}[5m])))`: {
			"hubble_http_request_duration_seconds_bucket"},
		`sum(rate(a_total{status=~"5.."}[1m])) / sum(rate(b_total[1m]))`:            {"a_total", "b_total"},
		`sum by (instance) (x) - on (instance) group_left (node) y offset 5m > 1e3`: {"x", "y"},
		`max(flowbus_policy_revision)`:                                              {"flowbus_policy_revision"},
	} {
		if diff := cmp.Diff(want, MetricNames(expr)); diff != "" {
			t.Errorf("%s (-want +got):\n%s", expr, diff)
		}
	}
}

// TestDashboardsAreWellFormed: each dashboard has its own uid, unique panel
// ids, and every query selects at least one metric; the Hubble dashboard
// queries Hubble's metrics (and the agent's label-overflow counter beside
// them), the other flowbus's own and the processes'.
func TestDashboardsAreWellFormed(t *testing.T) {
	uids := map[string]bool{}
	for _, name := range Dashboards {
		d, err := ReadDashboard(name)
		if err != nil {
			t.Fatal(err)
		}
		if d.UID == "" || uids[d.UID] || d.Title == "" {
			t.Errorf("%s: uid %q (repeated or empty), title %q", name, d.UID, d.Title)
		}
		uids[d.UID] = true
		ids := map[int]bool{}
		var walk func([]Panel)
		walk = func(ps []Panel) {
			for _, p := range ps {
				if ids[p.ID] {
					t.Errorf("%s: panel id %d twice", name, p.ID)
				}
				ids[p.ID] = true
				walk(p.Panels)
			}
		}
		walk(d.Panels)
		n := 0
		for title, exprs := range d.Exprs() {
			for _, e := range exprs {
				ms := MetricNames(e)
				if len(ms) == 0 {
					t.Errorf("%s %q: %s selects no metric", name, title, e)
				}
				for _, m := range ms {
					n++
					ok := slices.ContainsFunc([]string{"flowbus_", "process_"}, func(p string) bool { return len(m) > len(p) && m[:len(p)] == p })
					if name == "flowbus-hubble.json" {
						ok = len(m) > 7 && m[:7] == "hubble_" || m == "flowbus_metrics_label_overflow_total"
					}
					if !ok {
						t.Errorf("%s %q: metric %s does not belong on this dashboard", name, title, m)
					}
				}
			}
		}
		if n < 15 {
			t.Errorf("%s: only %d metric selections", name, n)
		}
	}
}
