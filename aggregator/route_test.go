package aggregator

import (
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestRouteTemplate(t *testing.T) {
	rule, err := ParseRouteTemplate(`^/users/[^/]+/avatar$=>/users/{user}/avatar`)
	if err != nil {
		t.Fatal(err)
	}
	tp := newTemplater(32, []RouteTemplate{rule})
	for _, tc := range []struct{ name, url, want string }{
		{"a plain path is kept", "/healthz", "/healthz"},
		{"the query string is dropped", "/v1/charges?user=42&x=y", "/v1/charges"},
		{"a fragment is dropped", "/docs#intro", "/docs"},
		{"numeric ids become {id}", "/v1/orders/12345/items/7", "/v1/orders/{id}/items/{id}"},
		{"a UUID becomes {id}", "/v1/payments/0f8fad5b-d9cb-469f-a165-70867728950e/refund", "/v1/payments/{id}/refund"},
		{"a long hex token becomes {id}", "/blobs/deadbeefdeadbeef01", "/blobs/{id}"},
		{"a short hex word is kept", "/cafe/beef", "/cafe/beef"},
		{"scheme and host are dropped", "http://checkout:8080/v1/orders/9?a=1", "/v1/orders/{id}"},
		{"a bare host is the root", "https://checkout", "/"},
		{"an empty URL is the root", "", "/"},
		{"a trailing slash is kept", "/v1/orders/", "/v1/orders/"},
		{"user rules run after the built-in ones", "/users/alice/avatar", "/users/{user}/avatar"},
		{"long routes are cut", "/a/very/long/path/that/goes/on/and/on/forever", "/a/very/long/path/that/goes/on/a"},
		{"cutting never splits a UTF-8 rune", "/ééééééééééééééééé", "/" + strings.Repeat("é", 15)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tp.route(tc.url); got != tc.want {
				t.Errorf("route(%q) = %q, want %q", tc.url, got, tc.want)
			}
			if got := tp.route(tc.url); got != tc.want {
				t.Errorf("cached route(%q) = %q, want %q", tc.url, got, tc.want)
			}
		})
	}
}

func TestParseRouteTemplateRejectsBadRules(t *testing.T) {
	for _, s := range []string{"no-arrow", "([=>x"} {
		if _, err := ParseRouteTemplate(s); err == nil {
			t.Errorf("ParseRouteTemplate(%q) = nil error", s)
		}
	}
}

func TestRouteCardinalityCapOverflowsToOther(t *testing.T) {
	a, reg := newTestAggregator(t, Config{Out: t.TempDir(), MaxRoutesPerWorkload: 2})
	b := newBucket(genStart, false, 0)
	g := generate(9, 1, time.Second, 0)
	f := g.flows[0]
	f.Dst, f.L7.Protocol, f.L7.HTTPMethod, f.L7.HTTPStatus = ep("p", "api"), 1, "GET", 200
	overflow := 0
	for _, u := range []string{"/a", "/b", "/a?x=1", "/c", "/d", "/b"} {
		f.L7.HTTPURL = u
		if b.add(&f, a) {
			overflow++
		}
	}
	got := map[string]int64{}
	for _, r := range b.routeRows() {
		got[r.Route] = r.Requests
	}
	want := map[string]int64{"/a": 2 * int64(f.FlowCount()), "/b": 2 * int64(f.FlowCount()), RouteOther: 2 * int64(f.FlowCount())}
	if len(got) != len(want) || got["/a"] != want["/a"] || got["/b"] != want["/b"] || got[RouteOther] != want[RouteOther] {
		t.Errorf("routes = %v, want %v", got, want)
	}
	if overflow != 2 {
		t.Errorf("overflowed %d records, want 2", overflow)
	}
	_ = reg
}

func TestFileNamesRoundTrip(t *testing.T) {
	for _, id := range []fileID{
		{partition: 0, start: genStart, first: 0, last: 0},
		{partition: 15, start: genStart + int64(time.Minute), first: 1234, last: 99999, late: true},
	} {
		got, ok := parseName(id.name())
		if !ok || got != id {
			t.Errorf("parseName(%q) = %+v, %v; want %+v", id.name(), got, ok, id)
		}
	}
	for _, bad := range []string{"x.parquet", "p1-w2-o3.parquet", "p1-w2-o5-3.parquet", "p1-w2-o3-4.csv", "pa-w2-o3-4.parquet", ".p1-w2-o3-4.parquet.tmp"} {
		if _, ok := parseName(bad); ok {
			t.Errorf("parseName(%q) accepted a name the aggregator never writes", bad)
		}
	}
	if p := (fileID{partition: 3, start: genStart}).path("/o", PairTable); p != "/o/pair_rollup/date=2026-11-25/hour=10/p3-w1795600800-o0-0.parquet" {
		t.Errorf("path = %s", p)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"defaults with an output directory are valid", Config{Out: "x"}, ""},
		{"an output directory is required", Config{}, "output directory"},
		{"a window must divide a day", Config{Out: "x", Window: 7 * time.Minute}, "divide 24h"},
		{"a window must be whole seconds", Config{Out: "x", Window: 1500 * time.Millisecond}, "whole seconds"},
		{"lateness must not be negative", Config{Out: "x", Lateness: -time.Second}, "lateness"},
		{"a rule needs a pattern", Config{Out: "x", RouteTemplates: []RouteTemplate{{}}}, "no pattern"},
		{"a rule with a pattern is fine", Config{Out: "x", RouteTemplates: []RouteTemplate{{Pattern: regexp.MustCompile("a")}}}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Errorf("Validate() = %v, want error containing %q", err, tc.want)
			}
		})
	}
}
