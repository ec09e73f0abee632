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
	tpls   [1 << tplBits]string // interned templates by tplHash
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
	if p == "" || p[0] != '/' {
		p = pathOf(p)
	}
	// One pass over p, which starts with '/' or is hostless: classify each
	// byte by table, end at '?' or '#', and copy into buf only when a
	// segment is an identifier (text before it, then {id}). A path without
	// identifiers is its own template and is looked up as is; interning
	// either (a lookup by buf's bytes allocates nothing).
	b, last, i := t.buf[:0], 0, 0
	for {
		seg := p[i:]
		n, m := scanSegment(seg)
		j := i + n
		// A segment is an identifier when it is all decimal digits, 16 or
		// more hex digits, or a UUID.
		if n > 0 && (m&classDigit != 0 || m&classHex != 0 && n >= 16 ||
			n == 36 && m&classHexDash != 0 && uuidDashes(seg[:n])) {
			b = append(b, p[last:i]...)
			b = append(b, RouteID...)
			last = j
		}
		if j == len(p) || p[j] != '/' {
			p = p[:j]
			break
		}
		i = j + 1
	}
	if last == 0 { // no identifier: no segment ends at 0, p is not empty
		return t.lookup(p, nil)
	}
	b = append(b, p[last:]...)
	t.buf = b
	return t.lookup("", b)
}

// lookup interns the template s, or b if s is empty: from its slot of
// tpls when there, else from (or into) the intern map. A template is not
// empty.
func (t *templater) lookup(s string, b []byte) string {
	var h uint64
	if s != "" {
		h = tplHash(s)
	} else {
		h = tplHash(b)
	}
	sl := &t.tpls[h>>(64-tplBits)]
	if s != "" {
		if *sl == s {
			return *sl
		}
		r, ok := t.intern[s]
		if !ok {
			r = t.keep(strings.Clone(s))
		}
		*sl = r
		return r
	}
	if *sl == string(b) {
		return *sl
	}
	r, ok := t.intern[string(b)]
	if !ok {
		r = t.keep(string(b))
	}
	*sl = r
	return r
}

const tplBits = 6

// tplHash hashes a non-empty template by its length and four of its bytes:
// enough to tell a workload's few templates apart, and a collision only
// costs a map lookup.
func tplHash[T string | []byte](s T) uint64 {
	n := len(s)
	h := uint64(n) | uint64(s[n-1])<<16 | uint64(s[n/2])<<24 | uint64(s[n/3])<<32 | uint64(s[n*2/3])<<40
	return h * 0x9e3779b97f4a7c15
}

// scanSegment returns the length of the segment s starts with (up to a
// '/', '?' or '#') and the classes all its bytes have.
func scanSegment(s string) (int, uint8) {
	cls, m := &byteClass, uint8(classAll)
	for n := 0; n < len(s); n++ { // n from 0: no bounds check
		c := cls[s[n]]
		if c&classStop != 0 {
			return n, m
		}
		m &= c
	}
	return len(s), m
}

// pathOf returns the path of a URL that does not start with '/': scheme
// and host dropped if it has "://" before any '?' or '#', the root if
// nothing is left before a '?' or '#', else the URL as is (template ends
// the path at the '?' or '#').
func pathOf(p string) string {
	if i := strings.Index(p, "://"); i >= 0 && !hasEnd(p[:i]) {
		for j := i + 3; j < len(p); j++ {
			if byteClass[p[j]]&classStop != 0 {
				if p[j] == '/' {
					return p[j:]
				}
				break
			}
		}
		return "/"
	}
	if p == "" || byteClass[p[0]]&classEnd != 0 {
		return "/"
	}
	return p
}

// hasEnd reports whether s has a '?' or '#'.
func hasEnd(s string) bool {
	for i := 0; i < len(s); i++ {
		if byteClass[s[i]]&classEnd != 0 {
			return true
		}
	}
	return false
}

// Byte classes of byteClass. A byte of no class has none of the bits.
const (
	classDigit   = 1 << iota // '0'-'9'
	classHex                 // '0'-'9', 'a'-'f', 'A'-'F'
	classHexDash             // a hex digit or '-'
	classEnd                 // '?' or '#': the path ends
	classStop                // '/', '?' or '#': the segment ends
	classAll     = classDigit | classHex | classHexDash
)

var byteClass = func() (t [256]uint8) {
	for c := '0'; c <= '9'; c++ {
		t[c] = classDigit | classHex | classHexDash
	}
	for c := 'a'; c <= 'f'; c++ {
		t[c], t[c-'a'+'A'] = classHex|classHexDash, classHex|classHexDash
	}
	t['-'] = classHexDash
	t['?'], t['#'] = classEnd|classStop, classEnd|classStop
	t['/'] = classStop
	return t
}()

// keep interns r.
func (t *templater) keep(r string) string {
	if len(t.intern) >= cacheMax {
		clear(t.intern)
	}
	t.intern[r] = r
	return r
}

// uuidDashes reports whether s, 36 hex digits or dashes, has its dashes
// where a UUID (8-4-4-4-12 hex digits) has them and nowhere else.
func uuidDashes(s string) bool {
	return len(s) == 36 && s[8] == '-' && s[13] == '-' && s[18] == '-' && s[23] == '-' &&
		strings.Count(s, "-") == 4
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
