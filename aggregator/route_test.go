package aggregator

import (
	"math/rand/v2"
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/flowbus/flowbus/schemas"
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

func TestRouteTemplateEdges(t *testing.T) {
	tp := newTemplater(128, nil)
	for _, tc := range []struct{ url, want string }{
		{"http://host", "/"},
		{"http://host?x/1", "/"},
		{"http://host#a/1", "/"},
		{"https://h/", "/"},
		{"https:///a/1", "/a/{id}"},
		{"://", "/"},
		{":///1", "/{id}"},
		{"a://b/c?d", "/c"},
		{"x/y://h/z", "/z"},
		{"a?b://c/d", "a"},
		{"a#b://c/d", "a"},
		{"/x://h/1", "/x://h/{id}"},
		{"?x", "/"},
		{"#", "/"},
		{"?", "/"},
		{"/", "/"},
		{"//", "//"},
		{"/a//b", "/a//b"},
		{"/a//1/", "/a//{id}/"},
		{"/?x/1", "/"},
		{"/v1/12?x", "/v1/{id}"},
		{"/v1/12#x/3", "/v1/{id}"},
		{"v1/12", "v1/{id}"},
		{"12", "{id}"},
		{"12/x", "{id}/x"},
		{"/v1/12a", "/v1/12a"},
		{"/v1/-", "/v1/-"},
		{"/v1/1-2", "/v1/1-2"},
		{"/blobs/deadbeefdeadbee", "/blobs/deadbeefdeadbee"},
		{"/blobs/deadbeefdeadbeef", "/blobs/{id}"},
		{"/blobs/DEADBEEFdeadBEEF", "/blobs/{id}"},
		{"/blobs/deadbeefdeadbeeg", "/blobs/deadbeefdeadbeeg"},
		{"/x/0F8FAD5B-D9CB-469F-A165-70867728950E/y", "/x/{id}/y"},
		{"/x/0f8fad5b-d9cb-469f-a165-7086772895-e", "/x/0f8fad5b-d9cb-469f-a165-7086772895-e"},
		{"/x/0f8fad5bd-9cb-469f-a165-70867728950e", "/x/0f8fad5bd-9cb-469f-a165-70867728950e"},
		{"/x/0f8fad5b-d9cb-469f-a165-70867728950g", "/x/0f8fad5b-d9cb-469f-a165-70867728950g"},
		{"/x/0f8fad5b-d9cb-469f-a165-70867728950", "/x/0f8fad5b-d9cb-469f-a165-70867728950"},
		{"/x/0f8fad5b-d9cb-469f-a165-70867728950e0", "/x/0f8fad5b-d9cb-469f-a165-70867728950e0"},
		{"/x/------------------------------------", "/x/------------------------------------"},
		{"/x/0f8fad5b-d9cb-469f-a165-70867728950e-", "/x/0f8fad5b-d9cb-469f-a165-70867728950e-"},
		{"/é/123", "/é/{id}"},
	} {
		if got := tp.route(tc.url); got != tc.want {
			t.Errorf("route(%q) = %q, want %q", tc.url, got, tc.want)
		}
		if got, want := tp.route(strings.Clone(tc.url)), refRoute(tc.url, 128, nil); got != want {
			t.Errorf("route(%q) = %q, reference %q", tc.url, got, want)
		}
	}
}

// refRoute is route written plainly: the reference the templater must
// equal on every URL.
func refRoute(url string, maxLen int, rules []RouteTemplate) string {
	p := url
	if i := strings.IndexAny(p, "?#"); i >= 0 {
		p = p[:i]
	}
	if !strings.HasPrefix(p, "/") {
		if _, rest, ok := strings.Cut(p, "://"); ok {
			p = "/"
			if _, path, ok := strings.Cut(rest, "/"); ok {
				p = "/" + path
			}
		}
	}
	if p == "" {
		p = "/"
	}
	segs := strings.Split(p, "/")
	for i, s := range segs {
		if refIsID(s) {
			segs[i] = RouteID
		}
	}
	r := strings.Join(segs, "/")
	for _, rule := range rules {
		r = rule.Pattern.ReplaceAllString(r, rule.Replace)
	}
	if maxLen > 0 && len(r) > maxLen {
		n := maxLen
		for n > 0 && !utf8.RuneStart(r[n]) {
			n--
		}
		r = r[:n]
	}
	return r
}

func refIsID(s string) bool {
	const hex = "0123456789abcdefABCDEF"
	allIn := func(s, set string) bool {
		for i := 0; i < len(s); i++ {
			if !strings.Contains(set, s[i:i+1]) {
				return false
			}
		}
		return true
	}
	if s == "" {
		return false
	}
	if allIn(s, "0123456789") || len(s) >= 16 && allIn(s, hex) {
		return true
	}
	parts := strings.Split(s, "-")
	if len(parts) != 5 {
		return false
	}
	for i, n := range []int{8, 4, 4, 4, 12} {
		if len(parts[i]) != n || !allIn(parts[i], hex) {
			return false
		}
	}
	return true
}

// randomURL joins pieces that touch every branch of the templater: ids of
// each kind and near misses, words, empty segments, query strings,
// fragments, schemes and hosts.
func randomURL(rng *rand.Rand) string {
	const hexDigits = "0123456789abcdefABCDEF"
	hexN := func(n int) string {
		b := make([]byte, n)
		for i := range b {
			b[i] = hexDigits[rng.IntN(len(hexDigits))]
		}
		return string(b)
	}
	piece := func() string {
		switch rng.IntN(16) {
		case 0:
			return ""
		case 1:
			return strings.Repeat("0123456789", 3)[:1+rng.IntN(25)]
		case 2:
			return hexN(12 + rng.IntN(8))
		case 3:
			return hexN(8) + "-" + hexN(4) + "-" + hexN(4) + "-" + hexN(4) + "-" + hexN(12)
		case 4: // a UUID with one byte changed
			u := []byte(hexN(8) + "-" + hexN(4) + "-" + hexN(4) + "-" + hexN(4) + "-" + hexN(12))
			u[rng.IntN(len(u))] = "-g0/?#é"[rng.IntN(7)]
			return string(u)
		case 5:
			return []string{"v1", "users", "cafe", "beef", "healthz", "é", "-", "x:", "12a", "a1"}[rng.IntN(10)]
		case 6:
			return "?"
		case 7:
			return "#"
		case 8:
			return "://"
		case 9:
			return []string{"http://", "https://h", "http://checkout-api:8080", "h:1"}[rng.IntN(4)]
		case 10:
			return hexN(1 + rng.IntN(40))
		case 11:
			return string(rune(rng.IntN(256)))
		default:
			return "/"
		}
	}
	var b strings.Builder
	if rng.IntN(2) == 0 {
		b.WriteByte('/')
	}
	for n := rng.IntN(8); n >= 0; n-- {
		b.WriteString(piece())
		if rng.IntN(3) > 0 {
			b.WriteByte('/')
		}
	}
	return b.String()
}

// The templater equals the plain reference on many random URLs, fresh
// and repeated, with and without user rules and a cut.
func TestRouteMatchesReference(t *testing.T) {
	rule, err := ParseRouteTemplate(`/users/[^/]+=>/users/{user}`)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for _, cfg := range []struct {
		maxLen int
		rules  []RouteTemplate
	}{{128, nil}, {20, nil}, {24, []RouteTemplate{rule}}} {
		tp := newTemplater(cfg.maxLen, cfg.rules)
		var urls []string
		for i := 0; i < 50_000; i++ {
			u := randomURL(rng)
			if i%5 == 0 && len(urls) > 0 {
				u = urls[rng.IntN(len(urls))] // the same string again: the cache
			}
			urls = append(urls, u)
			if got, want := tp.route(u), refRoute(u, cfg.maxLen, cfg.rules); got != want {
				t.Fatalf("maxLen %d rules %d: route(%q) = %q, reference %q", cfg.maxLen, len(cfg.rules), u, got, want)
			}
		}
	}
}

// FuzzRouteMatchesReference: the templater equals the plain reference.
func FuzzRouteMatchesReference(f *testing.F) {
	for _, s := range []string{"/v1/orders/123?x=1", "http://h:1/a/0f8fad5b-d9cb-469f-a165-70867728950e", "", "?", "//", "a://b/c", "x?y://z/1", "/blobs/DEADBEEFdeadbeef"} {
		f.Add(s)
	}
	tp := newTemplater(64, nil)
	f.Fuzz(func(t *testing.T, url string) {
		if got, want := tp.route(url), refRoute(url, 64, nil); got != want {
			t.Fatalf("route(%q) = %q, reference %q", url, got, want)
		}
	})
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
	f.Dst, f.L7.Protocol, f.L7.HTTPMethod, f.L7.HTTPStatus, f.CountAs = ep("p", "api"), 1, "GET", 200, schemas.CountFlow
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

// BenchmarkTemplate templates the HTTP URLs of the generator: numeric ids,
// UUIDs with a query string, long hex tokens behind a scheme and host, and
// a repeated literal. cpu-ns/op is process CPU time per URL, steadier than
// ns/op on a shared machine.
func BenchmarkTemplate(b *testing.B) {
	g := generate(11, 200_000, 0, 0)
	var urls []string
	for i := range g.flows {
		if u := g.flows[i].L7.HTTPURL; u != "" {
			urls = append(urls, u)
		}
	}
	t := newTemplater(128, nil)
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := cpuTime()
	for i := 0; i < b.N; i++ {
		t.route(urls[i%len(urls)])
	}
	b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/op")
}
