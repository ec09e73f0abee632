package filter

import (
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"unicode"
)

// Label selectors (source_label, destination_label) are evaluated exactly
// as Hubble evaluates them, in three steps that each port cilium v1.20 code:
//
//  1. translateSelector (pkg/hubble/filters/labelparser.go) rewrites the
//     Cilium label keys of the selector into Kubernetes keys: "k8s:app"
//     becomes "k8s.app", a key without a source "any.app";
//  2. parseSelector is Kubernetes' label selector grammar (the lexer and
//     parser of k8s.io/apimachinery/pkg/labels, as cilium's slim copy has
//     them), with its validation of keys and values: requirements
//     separated by commas, each "key", "!key", "key=v", "key==v", "key!=v",
//     "key in (a,b)", "key notin (a,b)", "key>n" or "key<n";
//  3. a requirement looks its key up in the flow's labels as Cilium's
//     K8sLabelArray does (pkg/labels): the flow's labels are parsed from
//     "source:key=value" and sorted by key, the selector's key is split at
//     its first '.' into source and key, source "any" matches every source,
//     and two "cidr" labels match when the selector's prefix contains the
//     label's.
//
// The code is ours (k8s.io/apimachinery and cilium's pkg/labels would pull
// large trees); the conformance test runs cilium's own filters beside it.

// translateSelector is cilium's translateSelector.
func translateSelector(selector string) string {
	in := []rune(selector)
	var out strings.Builder
	i := 0
	for i < len(in) {
		for i < len(in) && (unicode.IsSpace(in[i]) || in[i] == '!') { // advance to the next key
			out.WriteRune(in[i])
			i++
		}
		start := i // the key
		for i < len(in) && !unicode.IsSpace(in[i]) && in[i] != '=' && in[i] != '!' && in[i] != ',' {
			i++
		}
		key := string(in[start:i])
		if !strings.Contains(key, ":") {
			key = "any:" + key
		}
		out.WriteString(strings.Replace(key, ":", ".", 1))
		for nesting := 0; i < len(in); { // advance to the next requirement
			r := in[i]
			i++
			switch r {
			case '(':
				nesting++
			case ')':
				nesting--
			}
			out.WriteRune(r)
			if r == ',' && nesting == 0 {
				break
			}
		}
	}
	return out.String()
}

type selOp uint8

const (
	opExists selOp = iota
	opNotExists
	opIn // also = and ==
	opNotIn
	opGreater
	opLess
)

// A requirement of a selector, its key already parsed as a selecting label.
type requirement struct {
	key    label
	op     selOp
	values []string
	number int64 // the value of > and <
}

// selector is a parsed label selector; the empty selector matches every
// flow.
type selector []requirement

// label is one parsed Cilium label.
type label struct {
	source, key, value string
	cidr               netip.Prefix // of a "cidr" label whose key is a prefix
}

const (
	sourceAny    = "any"
	sourceUnspec = "unspec"
	sourceCIDR   = "cidr"
)

// parseLabel is cilium's parseLabel: "source<delim>key=value", "$key" for
// a reserved label, source "unspec" when there is none.
func parseLabel(s string, delim byte) label {
	var l label
	var next string
	switch {
	case s == "":
	case s[0] == '$':
		l.source, next = "reserved", s[1:]
	default:
		if i := strings.IndexByte(s, delim); i >= 0 {
			l.source, next = s[:i], s[i+1:]
		} else {
			next = s
		}
	}
	if l.source == "" {
		l.source = sourceUnspec
	}
	if i := strings.IndexByte(next, '='); i < 0 {
		l.key = next
	} else if i == 0 && l.source == "reserved" {
		l.key = next[1:]
	} else {
		l.key, l.value = next[:i], next[i+1:]
	}
	if l.source == sourceCIDR {
		l.cidr, _ = netip.ParsePrefix(strings.ReplaceAll(l.key, "-", ":"))
	}
	return l
}

// flowLabels parses a flow's labels as cilium's ParseLabelArrayFromArray
// does, sorted by key with the same (unstable) sort, so that a lookup finds
// the same label when two share a key.
func flowLabels(ls []string) []label {
	out := make([]label, len(ls))
	for i, s := range ls {
		out[i] = parseLabel(s, ':')
	}
	sort.Slice(out, func(i, j int) bool { return out[i].key < out[j].key })
	return out
}

// hasKey is cilium's Label.HasKey: l is a flow label, target a selecting one.
func (l *label) hasKey(target *label) bool {
	if target.source != sourceAny && l.source != target.source {
		return false
	}
	if target.source == sourceCIDR && l.source == sourceCIDR {
		tc, lc := target.cidr, l.cidr
		return tc.IsValid() && lc.IsValid() && tc.Bits() <= lc.Bits() && tc.Contains(lc.Addr())
	}
	return l.key == target.key
}

func (r *requirement) lookup(ls []label) (string, bool) {
	for i := range ls {
		if ls[i].hasKey(&r.key) {
			return ls[i].value, true
		}
	}
	return "", false
}

func (s selector) matches(ls []label) bool {
	for i := range s {
		if !s[i].matches(ls) {
			return false
		}
	}
	return true
}

func (r *requirement) matches(ls []label) bool {
	v, ok := r.lookup(ls)
	switch r.op {
	case opExists:
		return ok
	case opNotExists:
		return !ok
	case opIn:
		return ok && slices.Contains(r.values, v)
	case opNotIn:
		return !ok || !slices.Contains(r.values, v)
	case opGreater, opLess:
		if !ok {
			return false
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return false
		}
		return (r.op == opGreater && n > r.number) || (r.op == opLess && n < r.number)
	}
	return false
}

// Tokens of the Kubernetes selector grammar.
type token uint8

const (
	tokEnd token = iota
	tokClosePar
	tokComma
	tokNot
	tokDoubleEquals
	tokEquals
	tokGreater
	tokIdent
	tokIn
	tokLess
	tokNotEquals
	tokNotIn
	tokOpenPar
)

var keywords = map[string]token{")": tokClosePar, ",": tokComma, "!": tokNot, "==": tokDoubleEquals, "=": tokEquals,
	">": tokGreater, "in": tokIn, "<": tokLess, "!=": tokNotEquals, "notin": tokNotIn, "(": tokOpenPar}

type item struct {
	tok token
	lit string
}

func isSelectorSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

func isSelectorSymbol(c byte) bool { return strings.IndexByte("=!(),><", c) >= 0 }

// lexer splits a selector into tokens as Kubernetes' Lexer does, byte by
// byte: read returns 0 at the end (without moving), and a NUL byte ends the
// token it is in or, where a token starts, the input.
type lexer struct {
	s   string
	pos int
}

func (l *lexer) read() byte {
	if l.pos < len(l.s) {
		l.pos++
		return l.s[l.pos-1]
	}
	return 0
}

func (l *lexer) unread() { l.pos-- }

func (l *lexer) lex() item {
	c := l.read()
	for isSelectorSpace(c) {
		c = l.read()
	}
	switch {
	case c == 0:
		return item{tok: tokEnd}
	case isSelectorSymbol(c):
		l.unread()
		var buf []byte
		var last item
		for {
			c := l.read()
			if c == 0 {
				break
			}
			if !isSelectorSymbol(c) {
				l.unread()
				break
			}
			buf = append(buf, c)
			if t, ok := keywords[string(buf)]; ok {
				last = item{t, string(buf)}
			} else {
				l.unread()
				break
			}
		}
		return last // every symbol alone is a token: last is set
	default:
		l.unread()
		var buf []byte
		for {
			c := l.read()
			if c == 0 {
				break
			}
			if isSelectorSymbol(c) || isSelectorSpace(c) {
				l.unread()
				break
			}
			buf = append(buf, c)
		}
		if t, ok := keywords[string(buf)]; ok {
			return item{t, string(buf)}
		}
		return item{tokIdent, string(buf)}
	}
}

// lex returns the tokens of s, up to and including the end.
func lex(s string) []item {
	l := &lexer{s: s}
	var items []item
	for {
		it := l.lex()
		items = append(items, it)
		if it.tok == tokEnd {
			return items
		}
	}
}

type parser struct {
	items []item
	pos   int
}

// peek and next read the current token; in a value position "in" and
// "notin" are identifiers.
func (p *parser) peek(values bool) item {
	it := p.items[p.pos]
	if values && (it.tok == tokIn || it.tok == tokNotIn) {
		it.tok = tokIdent
	}
	return it
}

func (p *parser) next(values bool) item {
	it := p.peek(values)
	p.pos++
	return it
}

// parseSelector parses a Cilium label selector (see the top of the file).
func parseSelector(s string) (selector, error) {
	p := &parser{items: lex(translateSelector(s))}
	var sel selector
	for {
		switch it := p.peek(true); it.tok {
		case tokIdent, tokNot:
			r, err := p.requirement()
			if err != nil {
				return nil, fmt.Errorf("label selector %q: %w", s, err)
			}
			sel = append(sel, r)
			switch it := p.next(true); it.tok {
			case tokEnd:
				return sel, nil
			case tokComma:
				if t := p.peek(true).tok; t != tokIdent && t != tokNot {
					return nil, fmt.Errorf("label selector %q: found '%s', expected: identifier after ','", s, p.peek(true).lit)
				}
			default:
				return nil, fmt.Errorf("label selector %q: found '%s', expected: ',' or 'end of string'", s, it.lit)
			}
		case tokEnd:
			return sel, nil
		default:
			return nil, fmt.Errorf("label selector %q: found '%s', expected: !, identifier, or 'end of string'", s, it.lit)
		}
	}
}

func (p *parser) requirement() (requirement, error) {
	var r requirement
	it := p.next(true)
	negated := it.tok == tokNot
	if negated {
		it = p.next(true)
	}
	if it.tok != tokIdent {
		return r, fmt.Errorf("found '%s', expected: identifier", it.lit)
	}
	if err := validKey(it.lit); err != nil {
		return r, err
	}
	r.key = parseLabel(it.lit, '.')
	if r.key.source == sourceUnspec {
		r.key.source = sourceAny
	}
	if t := p.peek(true).tok; negated || t == tokEnd || t == tokComma {
		r.op = opExists
		if negated {
			r.op = opNotExists
		}
		return r, nil
	}
	var values []string
	switch op := p.next(false); op.tok {
	case tokIn, tokNotIn:
		r.op = opIn
		if op.tok == tokNotIn {
			r.op = opNotIn
		}
		var err error
		if values, err = p.setValues(); err != nil {
			return r, err
		}
	case tokEquals, tokDoubleEquals, tokNotEquals, tokGreater, tokLess:
		r.op = map[token]selOp{tokEquals: opIn, tokDoubleEquals: opIn, tokNotEquals: opNotIn, tokGreater: opGreater, tokLess: opLess}[op.tok]
		switch it := p.peek(true); it.tok {
		case tokEnd, tokComma:
			values = []string{""}
		case tokIdent:
			values = []string{p.next(true).lit}
		default:
			return r, fmt.Errorf("found '%s', expected: identifier", p.next(true).lit)
		}
		if r.op == opGreater || r.op == opLess {
			n, err := strconv.ParseInt(values[0], 10, 64)
			if err != nil {
				return r, fmt.Errorf("for 'Gt', 'Lt' operators, the value must be an integer: %q", values[0])
			}
			r.number = n
		}
	default:
		return r, fmt.Errorf("found '%s', expected: in, notin, =, ==, !=, gt, lt", op.lit)
	}
	for _, v := range values {
		if err := validValue(v); err != nil {
			return r, err
		}
	}
	r.values = values
	return r, nil
}

// setValues parses "(a,b,...)"; empty entries are the empty value.
func (p *parser) setValues() ([]string, error) {
	if it := p.next(true); it.tok != tokOpenPar {
		return nil, fmt.Errorf("found '%s' expected: '('", it.lit)
	}
	var vs []string
	switch it := p.peek(true); it.tok {
	case tokClosePar:
		p.next(true)
		return []string{""}, nil
	case tokIdent, tokComma:
	default:
		return nil, fmt.Errorf("found '%s', expected: ',', ')' or identifier", it.lit)
	}
	for {
		switch it := p.next(true); it.tok {
		case tokIdent:
			vs = append(vs, it.lit)
			switch p.peek(true).tok {
			case tokComma:
				continue
			case tokClosePar:
				p.next(true)
				return vs, nil
			default:
				return nil, fmt.Errorf("found '%s', expected: ',' or ')'", p.peek(true).lit)
			}
		case tokComma:
			if len(vs) == 0 {
				vs = append(vs, "")
			}
			switch p.peek(true).tok {
			case tokClosePar:
				p.next(true)
				return append(vs, ""), nil
			case tokComma:
				vs = append(vs, "")
			}
		default:
			return nil, fmt.Errorf("found '%s', expected: ',', or identifier", it.lit)
		}
	}
}

var (
	labelKeyName = regexp.MustCompile(`^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$`)
	labelValue   = regexp.MustCompile(`^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$`)
	dnsSubdomain = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)
)

// validKey is Kubernetes' label key validation: [prefix/]name, prefix a DNS
// subdomain, name at most 63 characters.
func validKey(k string) error {
	parts := strings.Split(k, "/")
	name := parts[0]
	switch len(parts) {
	case 1:
	case 2:
		if p := parts[0]; p == "" || len(p) > 253 || !dnsSubdomain.MatchString(p) {
			return fmt.Errorf("invalid label key %q: bad prefix", k)
		}
		name = parts[1]
	default:
		return fmt.Errorf("invalid label key %q", k)
	}
	if len(name) > 63 || !labelKeyName.MatchString(name) {
		return fmt.Errorf("invalid label key %q: bad name", k)
	}
	return nil
}

// validValue is Kubernetes' label value validation.
func validValue(v string) error {
	if len(v) > 63 || !labelValue.MatchString(v) {
		return fmt.Errorf("invalid label value %q", v)
	}
	return nil
}
