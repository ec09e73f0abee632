package aggregator

import (
	"fmt"
	"regexp"
	"strings"
)

// RouteTemplate is one user rule applied to a URL path after the built-in
// rules: every match of Pattern is replaced by Replace (regexp.ReplaceAllString
// syntax, so "$1" refers to a group).
type RouteTemplate struct {
	Pattern *regexp.Regexp
	Replace string
}

// ParseRouteTemplate parses a rule written "REGEX=>REPLACEMENT" (the form of
// the --route-template flag), e.g. `^/users/[^/]+/avatar$=>/users/{id}/avatar`.
func ParseRouteTemplate(s string) (RouteTemplate, error) {
	pat, rep, ok := strings.Cut(s, "=>")
	if !ok {
		return RouteTemplate{}, fmt.Errorf("route template %q: want REGEX=>REPLACEMENT", s)
	}
	re, err := regexp.Compile(pat)
	if err != nil {
		return RouteTemplate{}, fmt.Errorf("route template %q: %w", s, err)
	}
	return RouteTemplate{Pattern: re, Replace: rep}, nil
}

// Route placeholders.
const (
	RouteID    = "{id}"    // a path segment that is an identifier
	RouteOther = "{other}" // a route past a workload's cardinality cap
)

// templater turns URLs into route templates. A URL seen last in its slot
// of a small direct-mapped cache (keyed by the identity of its bytes, see
// sameStr: a URL repeated in a message is one dictionary entry) is not
// templated again. Templates are built in a reused buffer and interned, so
// a route costs no allocation once its template was seen. User rules,
// which are regular expressions, run once per distinct built-in template
// and are cached. The maps are dropped whole at cacheMax entries. Not safe
// for concurrent use.
type templater struct {
	maxLen int
	rules  []RouteTemplate
	cache  map[string]string // built-in template → after user rules
	intern map[string]string
	recent [keyCacheSize]struct{ url, route string }
	buf    []byte
}

const cacheMax = 1 << 14

func newTemplater(maxLen int, rules []RouteTemplate) *templater {
	return &templater{maxLen: maxLen, rules: rules, cache: make(map[string]string), intern: make(map[string]string)}
}

// route returns the template of a URL: the path only (scheme, host, query
// string and fragment dropped), every segment that is a number, a UUID or a
// hex token of 16 or more digits replaced by {id}, then the user rules
// applied in order, then cut to maxLen bytes (on a UTF-8 boundary).
func (t *templater) route(url string) string {
	sl := &t.recent[slotOf(strAddr(url))]
	if sameStr(sl.url, url) && url != "" {
		return sl.route
	}
	r := t.template(url)
	if len(t.rules) > 0 {
		if c, ok := t.cache[r]; ok {
			r = c
		} else {
			in := r
			for _, rule := range t.rules {
				r = rule.Pattern.ReplaceAllString(r, rule.Replace)
			}
			if len(t.cache) >= cacheMax {
				clear(t.cache)
			}
			t.cache[in] = r
		}
	}
	r = truncate(r, t.maxLen)
	sl.url, sl.route = url, r
	return r
}

func (t *templater) template(url string) string {
	p := url
	for i := 0; i < len(p); i++ { // a byte loop: IndexAny is dearer for two bytes
		if p[i] == '?' || p[i] == '#' {
			p = p[:i]
			break
		}
	}
	if i := strings.Index(p, "://"); i >= 0 && (len(p) == 0 || p[0] != '/') {
		p = p[i+3:]
		if j := strings.IndexByte(p, '/'); j >= 0 {
			p = p[j:]
		} else {
			p = "/"
		}
	}
	if p == "" {
		p = "/"
	}
	// One pass: copy each segment, or {id} for an identifier, into buf;
	// then intern (a lookup by buf's bytes allocates nothing).
	b := t.buf[:0]
	for i := 0; i <= len(p); i++ {
		j, digits, hex := i, true, true
		for ; j < len(p) && p[j] != '/'; j++ {
			switch c := p[j]; {
			case c >= '0' && c <= '9':
			case c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F':
				digits = false
			default:
				digits, hex = false, false
			}
		}
		seg := p[i:j]
		if seg != "" && (digits || hex && len(seg) >= 16 || isUUID(seg)) {
			b = append(b, RouteID...)
		} else {
			b = append(b, seg...)
		}
		if j < len(p) {
			b = append(b, '/')
		}
		i = j
	}
	t.buf = b
	if r, ok := t.intern[string(b)]; ok {
		return r
	}
	return t.keep(string(b))
}

// keep interns r.
func (t *templater) keep(r string) string {
	if len(t.intern) >= cacheMax {
		clear(t.intern)
	}
	t.intern[r] = r
	return r
}

// isUUID reports whether s is a UUID (8-4-4-4-12 hex digits). A path
// segment is an identifier when it is all decimal digits, 16 or more hex
// digits, or a UUID.
func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < 36; i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
				return false
			}
		}
	}
	return true
}

// truncate cuts s to at most n bytes without splitting a UTF-8 sequence.
func truncate(s string, n int) string {
	if n <= 0 || len(s) <= n {
		return s
	}
	for n > 0 && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n]
}
