package filter

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// A selector is a Kubernetes label selector as Hubble accepts it in
// source_label / destination_label: requirements separated by commas, each
// one of "key", "!key", "key=value", "key==value", "key!=value",
// "key in (a,b)", "key notin (a,b)". A key may carry a Cilium source prefix
// ("k8s:app", "reserved:world"); without one it matches a label of any
// source, as Hubble's translation to "any." does. The parser is our own
// (k8s.io/apimachinery would pull a large tree for forty lines).
type selector []requirement

type selOp uint8

const (
	opExists selOp = iota
	opNotExists
	opEquals
	opNotEquals
	opIn
	opNotIn
)

type requirement struct {
	source string // "" matches any source
	key    string
	op     selOp
	values []string
}

// label is one parsed Cilium label "source:key=value".
type label struct{ source, key, value string }

var setRequirement = regexp.MustCompile(`^(\S+)\s+(in|notin)\s*\((.*)\)$`)

func parseSelector(s string) (selector, error) {
	var sel selector
	for _, part := range splitTopLevel(s) {
		r := strings.TrimSpace(part)
		if r == "" {
			return nil, fmt.Errorf("label selector %q: empty requirement", s)
		}
		var req requirement
		var key string
		switch {
		case strings.HasPrefix(r, "!"):
			key, req.op = strings.TrimSpace(r[1:]), opNotExists
		case setRequirement.MatchString(r):
			m := setRequirement.FindStringSubmatch(r)
			key, req.op = m[1], opIn
			if m[2] == "notin" {
				req.op = opNotIn
			}
			for v := range strings.SplitSeq(m[3], ",") {
				req.values = append(req.values, strings.TrimSpace(v))
			}
		case strings.Contains(r, "!="):
			k, v, _ := strings.Cut(r, "!=")
			key, req.op, req.values = strings.TrimSpace(k), opNotEquals, []string{strings.TrimSpace(v)}
		case strings.Contains(r, "="):
			k, v, _ := strings.Cut(r, "=")
			v = strings.TrimPrefix(v, "=")
			key, req.op, req.values = strings.TrimSpace(k), opEquals, []string{strings.TrimSpace(v)}
		default:
			key, req.op = r, opExists
		}
		if key == "" || strings.ContainsAny(key, " \t()=!,") {
			return nil, fmt.Errorf("label selector %q: invalid key %q", s, key)
		}
		for _, v := range req.values {
			if strings.ContainsAny(v, " \t()=!,") {
				return nil, fmt.Errorf("label selector %q: invalid value %q", s, v)
			}
		}
		if src, k, ok := strings.Cut(key, ":"); ok {
			req.source, req.key = src, k
			if req.source == "any" {
				req.source = ""
			}
		} else {
			req.key = key
		}
		sel = append(sel, req)
	}
	if len(sel) == 0 {
		return nil, errors.New("empty label selector")
	}
	return sel, nil
}

// splitTopLevel splits s at commas outside parentheses.
func splitTopLevel(s string) []string {
	var parts []string
	depth, start := 0, 0
	for i, r := range s {
		switch r {
		case '(':
			depth++
		case ')':
			depth--
		case ',':
			if depth == 0 {
				parts = append(parts, s[start:i])
				start = i + 1
			}
		}
	}
	return append(parts, s[start:])
}

// parseLabels parses Cilium labels "source:key=value" ("source:key" for an
// empty value; a label without source has source "unspec").
func parseLabels(ls []string) []label {
	out := make([]label, 0, len(ls))
	for _, l := range ls {
		var lb label
		src, rest, ok := strings.Cut(l, ":")
		if ok && !strings.Contains(src, "=") {
			lb.source = src
		} else {
			lb.source, rest = "unspec", l
		}
		lb.key, lb.value, _ = strings.Cut(rest, "=")
		out = append(out, lb)
	}
	return out
}

func (s selector) matches(ls []label) bool {
	for _, r := range s {
		if !r.matches(ls) {
			return false
		}
	}
	return true
}

func (r requirement) lookup(ls []label) (string, bool) {
	for _, l := range ls {
		if l.key == r.key && (r.source == "" || r.source == l.source) {
			return l.value, true
		}
	}
	return "", false
}

func (r requirement) matches(ls []label) bool {
	v, ok := r.lookup(ls)
	switch r.op {
	case opExists:
		return ok
	case opNotExists:
		return !ok
	case opEquals, opIn:
		return ok && slices.Contains(r.values, v)
	case opNotEquals, opNotIn:
		return !ok || !slices.Contains(r.values, v)
	}
	return false
}
