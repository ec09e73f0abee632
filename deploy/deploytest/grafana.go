package deploytest

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
)

// Dashboards are the Grafana dashboards deploy/grafana ships.
var Dashboards = []string{"flowbus-hubble.json", "flowbus-internals.json"}

// Dashboard is the part of a Grafana dashboard the tests read.
type Dashboard struct {
	UID    string  `json:"uid"`
	Title  string  `json:"title"`
	Panels []Panel `json:"panels"`
}

// Panel is a dashboard panel; rows hold panels of their own.
type Panel struct {
	ID      int     `json:"id"`
	Type    string  `json:"type"`
	Title   string  `json:"title"`
	Panels  []Panel `json:"panels"`
	Targets []struct {
		RefID string `json:"refId"`
		Expr  string `json:"expr"`
	} `json:"targets"`
}

// ReadDashboard reads a dashboard of deploy/grafana.
func ReadDashboard(name string) (*Dashboard, error) {
	b, err := ReadFile(filepath.Join("grafana", name))
	if err != nil {
		return nil, err
	}
	var d Dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return &d, nil
}

// Exprs returns every PromQL expression of the dashboard's panels, rows'
// panels included, each with the title of its panel.
func (d *Dashboard) Exprs() map[string][]string {
	out := map[string][]string{}
	var walk func([]Panel)
	walk = func(ps []Panel) {
		for _, p := range ps {
			for _, t := range p.Targets {
				out[p.Title] = append(out[p.Title], t.Expr)
			}
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	return out
}

var (
	// In PromQL a metric name is an identifier that is not in a label
	// matcher ({...}), a range or subquery ([...]), a grouping list
	// (by/without/on/ignoring/group_left/group_right (...)) or a string,
	// is not a function (followed by '(') and is not a keyword.
	promString   = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'`)
	promMatchers = regexp.MustCompile(`\{[^{}]*\}`)
	promRange    = regexp.MustCompile(`\[[^\[\]]*\]`)
	promGrouping = regexp.MustCompile(`\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)`)
	promIdent    = regexp.MustCompile(`[A-Za-z_:][A-Za-z0-9_:]*(\s*\()?`)
	promKeywords = []string{"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or",
		"unless", "offset", "inf", "nan", "Inf", "NaN"}
)

// MetricNames returns the metric names a PromQL expression selects, in
// order of appearance, without repeats.
func MetricNames(expr string) []string {
	s := promString.ReplaceAllString(expr, `""`)
	s = promMatchers.ReplaceAllString(s, " ")
	s = promRange.ReplaceAllString(s, " ")
	s = promGrouping.ReplaceAllString(s, " ")
	var names []string
	for _, m := range promIdent.FindAllStringIndex(s, -1) {
		tok := s[m[0]:m[1]]
		if strings.HasSuffix(tok, "(") || slices.Contains(promKeywords, tok) {
			continue // a function or an aggregation operator, or a keyword
		}
		if m[0] > 0 && (s[m[0]-1] == '.' || s[m[0]-1] >= '0' && s[m[0]-1] <= '9') {
			continue // the exponent or tail of a number (1e3)
		}
		if !slices.Contains(names, tok) {
			names = append(names, tok)
		}
	}
	return names
}
