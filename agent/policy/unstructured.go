package policy

import (
	"fmt"
	"math"
	"slices"
	"strconv"
)

// Reading the unstructured specs of Cilium's policies: every accessor
// names the field it failed on, and known checks that an object has no key
// the compiler does not know, so that a typo is an error rather than a rule
// silently left out.

func asMap(v any, field string) (map[string]any, error) {
	switch m := v.(type) {
	case map[string]any:
		return m, nil
	case nil:
		return map[string]any{}, nil
	}
	return nil, fieldErr(field, fmt.Errorf("want an object, got %s", typeName(v)))
}

func asList(v any, field string) ([]any, error) {
	switch l := v.(type) {
	case []any:
		return l, nil
	case []map[string]any:
		out := make([]any, len(l))
		for i := range l {
			out[i] = l[i]
		}
		return out, nil
	case []string:
		out := make([]any, len(l))
		for i := range l {
			out[i] = l[i]
		}
		return out, nil
	case nil:
		return []any{}, nil
	}
	return nil, fieldErr(field, fmt.Errorf("want a list, got %s", typeName(v)))
}

func asString(v any, field string) (string, error) {
	if s, ok := v.(string); ok {
		return s, nil
	}
	return "", fieldErr(field, fmt.Errorf("want a string, got %s", typeName(v)))
}

func asBool(v any, field string) (bool, error) {
	if b, ok := v.(bool); ok {
		return b, nil
	}
	return false, fieldErr(field, fmt.Errorf("want true or false, got %s", typeName(v)))
}

// asInt reads a whole number (JSON and YAML decoders give int, int64 or
// float64), or a string of digits where Cilium's API has a string.
func asInt(v any, field string, strOK bool) (int64, error) {
	switch n := v.(type) {
	case int:
		return int64(n), nil
	case int32:
		return int64(n), nil
	case int64:
		return n, nil
	case uint64:
		if n <= math.MaxInt64 {
			return int64(n), nil
		}
	case float64:
		if n == math.Trunc(n) && math.Abs(n) < 1<<53 {
			return int64(n), nil
		}
	case string:
		if strOK {
			if i, err := strconv.ParseInt(n, 10, 64); err == nil {
				return i, nil
			}
		}
	}
	return 0, fieldErr(field, fmt.Errorf("want a whole number, got %s", typeName(v)))
}

func typeName(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case string:
		return fmt.Sprintf("the string %q", x)
	case bool:
		return fmt.Sprint(x)
	case map[string]any:
		return "an object"
	case []any:
		return "a list"
	}
	return fmt.Sprintf("%v", v)
}

// known fails on the first key of m (in sorted order) that is not one of
// keys.
func known(m map[string]any, field string, keys ...string) error {
	var unknown []string
	for k := range m {
		if !slices.Contains(keys, k) {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) == 0 {
		return nil
	}
	slices.Sort(unknown)
	return fieldErr(join(field, unknown[0]), fmt.Errorf("unknown field %q", unknown[0]))
}

// unsupported fails on the first key of m (in sorted order) that is one of
// keys: fields of Cilium's API that flowbus does not enforce, rejected so
// that a policy never means less than it says.
func unsupported(m map[string]any, field string, keys ...string) error {
	var found []string
	for _, k := range keys {
		if _, ok := m[k]; ok {
			found = append(found, k)
		}
	}
	if len(found) == 0 {
		return nil
	}
	slices.Sort(found)
	return fieldErr(join(field, found[0]), fmt.Errorf("%s is not supported by flowbus", found[0]))
}

func join(field, key string) string {
	if field == "" {
		return key
	}
	return field + "." + key
}

func index(field string, i int) string { return fmt.Sprintf("%s[%d]", field, i) }

// sortedKeys returns m's keys in order.
func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
