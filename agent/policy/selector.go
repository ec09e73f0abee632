package policy

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/api/validate/content"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/flowbus/flowbus/agent/identity"
)

// Label sources a selector requirement can name.
const (
	srcK8s      = identity.SourceK8s
	srcReserved = identity.SourceReserved
	srcAny      = "any"
)

// requirement is one condition of a selector on an identity's labels.
type requirement struct {
	source string // srcK8s, srcReserved or srcAny
	key    string
	op     metav1.LabelSelectorOperator
	values []string // sorted
}

// selector selects identities by their labels: all requirements hold. It
// never selects a CIDR identity.
type selector struct {
	reqs []requirement // sorted by source, key, op
	key  string        // canonical form, for caching
}

func (s *selector) canonical() {
	slices.SortFunc(s.reqs, func(a, b requirement) int {
		return strings.Compare(a.source+"\x00"+a.key+"\x00"+string(a.op), b.source+"\x00"+b.key+"\x00"+string(b.op))
	})
	var b strings.Builder
	for _, r := range s.reqs {
		fmt.Fprintf(&b, "%s:%s %s %q;", r.source, r.key, r.op, r.values)
	}
	s.key = b.String()
}

// and returns a selector that needs both s's and o's requirements.
func (s *selector) and(o ...requirement) *selector {
	out := &selector{reqs: append(slices.Clone(s.reqs), o...)}
	out.canonical()
	return out
}

// hasKey reports whether s has a requirement on key (of source k8s or
// any).
func (s *selector) hasKey(key string) bool {
	return slices.ContainsFunc(s.reqs, func(r requirement) bool { return r.key == key && r.source != srcReserved })
}

func (s *selector) hasKeyPrefix(prefix string) bool {
	return slices.ContainsFunc(s.reqs, func(r requirement) bool {
		return strings.HasPrefix(r.key, prefix) && r.source != srcReserved
	})
}

func (s *selector) hasSource(src string) bool {
	return slices.ContainsFunc(s.reqs, func(r requirement) bool { return r.source == src })
}

func inNamespace(ns string) requirement {
	return requirement{source: srcK8s, key: identity.LabelNamespace, op: metav1.LabelSelectorOpIn, values: []string{ns}}
}

func anyNamespace() requirement {
	return requirement{source: srcK8s, key: identity.LabelNamespace, op: metav1.LabelSelectorOpExists}
}

// k8sSelector converts a Kubernetes label selector whose keys are
// identity label keys once keyPrefix is put before them (""
// for pod labels, identity.LabelNamespaceLabels for a namespace's).
// Errors name the field, under field.
func k8sSelector(ls *metav1.LabelSelector, field, keyPrefix string) (*selector, error) {
	s := &selector{}
	keys := make([]string, 0, len(ls.MatchLabels))
	for k := range ls.MatchLabels {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		v := ls.MatchLabels[k]
		if err := checkKey(k); err != nil {
			return nil, fieldErr(field+".matchLabels", err)
		}
		if errs := content.IsLabelValue(v); len(errs) > 0 {
			return nil, fieldErr(field+".matchLabels", fmt.Errorf("value %q of %q: %s", v, k, strings.Join(errs, "; ")))
		}
		s.reqs = append(s.reqs, requirement{source: srcK8s, key: keyPrefix + k, op: metav1.LabelSelectorOpIn, values: []string{v}})
	}
	for i, e := range ls.MatchExpressions {
		r, err := expression(e.Key, string(e.Operator), e.Values, fmt.Sprintf("%s.matchExpressions[%d]", field, i))
		if err != nil {
			return nil, err
		}
		r.source, r.key = srcK8s, keyPrefix+r.key
		s.reqs = append(s.reqs, r)
	}
	s.canonical()
	return s, nil
}

// expression checks one matchExpressions entry; the key is returned as
// given.
func expression(key, op string, values []string, field string) (requirement, error) {
	if err := checkKey(key); err != nil {
		return requirement{}, fieldErr(field+".key", err)
	}
	r := requirement{key: key, op: metav1.LabelSelectorOperator(op), values: slices.Sorted(slices.Values(values))}
	switch r.op {
	case metav1.LabelSelectorOpIn, metav1.LabelSelectorOpNotIn:
		if len(values) == 0 {
			return r, fieldErr(field+".values", fmt.Errorf("operator %s needs values", op))
		}
	case metav1.LabelSelectorOpExists, metav1.LabelSelectorOpDoesNotExist:
		if len(values) != 0 {
			return r, fieldErr(field+".values", fmt.Errorf("operator %s takes no values", op))
		}
	default:
		return r, fieldErr(field+".operator", fmt.Errorf("unknown operator %q (want In, NotIn, Exists or DoesNotExist)", op))
	}
	for _, v := range values {
		if errs := content.IsLabelValue(v); len(errs) > 0 {
			return r, fieldErr(field+".values", fmt.Errorf("value %q: %s", v, strings.Join(errs, "; ")))
		}
	}
	return r, nil
}

func checkKey(k string) error {
	if errs := content.IsLabelKey(k); len(errs) > 0 {
		return fmt.Errorf("key %q: %s", k, strings.Join(errs, "; "))
	}
	return nil
}

// fieldError is an error about one field of a policy object; the
// compiler wraps it into an *Error naming the object.
type fieldError struct {
	field string
	err   error
}

func (e *fieldError) Error() string { return e.field + ": " + e.err.Error() }

func fieldErr(field string, err error) error {
	var fe *fieldError
	if errors.As(err, &fe) {
		return err
	}
	return &fieldError{field: field, err: err}
}

// idLabels are one identity's labels, indexed for selectors.
type idLabels struct {
	k8s      map[string]string
	reserved map[string]bool
}

func indexLabels(labels []string) idLabels {
	l := idLabels{k8s: make(map[string]string, len(labels))}
	for _, s := range labels {
		src, k, v := identity.ParseLabel(s)
		switch src {
		case srcK8s:
			l.k8s[k] = v
		case srcReserved:
			if l.reserved == nil {
				l.reserved = map[string]bool{}
			}
			l.reserved[k] = true
		}
	}
	return l
}

func (l idLabels) get(source, key string) (string, bool) {
	if source != srcReserved {
		if v, ok := l.k8s[key]; ok {
			return v, true
		}
		if source == srcK8s {
			return "", false
		}
	}
	return "", l.reserved[key]
}

func (s *selector) matches(l idLabels) bool {
	for _, r := range s.reqs {
		v, ok := l.get(r.source, r.key)
		switch r.op {
		case metav1.LabelSelectorOpIn:
			if !ok || !slices.Contains(r.values, v) {
				return false
			}
		case metav1.LabelSelectorOpNotIn:
			if ok && slices.Contains(r.values, v) {
				return false
			}
		case metav1.LabelSelectorOpExists:
			if !ok {
				return false
			}
		case metav1.LabelSelectorOpDoesNotExist:
			if ok {
				return false
			}
		}
	}
	return true
}
