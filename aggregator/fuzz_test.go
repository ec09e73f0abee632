package aggregator

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzRouteTemplate feeds arbitrary URLs (they come from traffic): the
// template never panics, never exceeds the cap, stays valid UTF-8 when the
// input was, never keeps a query string, and (under the cap) is stable when applied
// again.
func FuzzRouteTemplate(f *testing.F) {
	for _, s := range []string{"/v1/orders/123?x=1", "http://h:1/a/0f8fad5b-d9cb-469f-a165-70867728950e", "", "?", "//", "/ééé/123", "://", "#frag"} {
		f.Add(s)
	}
	tp := newTemplater(64, nil)
	f.Fuzz(func(t *testing.T, url string) {
		r := tp.route(url)
		if len(r) > 64 {
			t.Fatalf("route %q longer than the cap", r)
		}
		if utf8.ValidString(url) && !utf8.ValidString(r) {
			t.Fatalf("route %q of valid UTF-8 %q is not valid UTF-8", r, url)
		}
		if strings.ContainsAny(r, "?#") {
			t.Fatalf("route %q keeps a query or fragment", r)
		}
		// A cut can turn the last segment into an identifier, so stability
		// holds for routes under the cap only.
		if len(tp.template(url)) <= 64 && !strings.Contains(r, "://") && tp.route(r) != r {
			t.Fatalf("route of route %q = %q: not stable", r, tp.route(r))
		}
	})
}

// FuzzParseName: names found in the output directory are outside input.
func FuzzParseName(f *testing.F) {
	f.Add("p1-w1764064800-o5-9-late.parquet")
	f.Add("p-w-o--.parquet")
	f.Fuzz(func(t *testing.T, name string) {
		id, ok := parseName(name)
		if !ok {
			return
		}
		if id.first > id.last {
			t.Fatalf("parsed %q with first %d > last %d", name, id.first, id.last)
		}
		if back, ok := parseName(id.name()); !ok || back != id {
			t.Fatalf("%q → %+v → %q does not round-trip", name, id, id.name())
		}
	})
}
