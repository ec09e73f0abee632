package filter

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
)

// The FQDN and node name patterns mirror Hubble's pkg/hubble/filters
// patterns.go: '*' matches any run of [-.0-9a-z], patterns are lower-cased,
// a trailing dot is dropped, and a node name pattern is "cluster/node" where
// a missing part matches any name.

const fqdnRegexpStr = `(?:[-0-9_a-z]+(?:\.[-0-9_a-z]+)*)`

var (
	errEmptyPattern          = errors.New("empty pattern")
	errMultipleTrailingDots  = errors.New("multiple trailing dots in pattern")
	errTooManySlashesPattern = errors.New("too many slashes in pattern")
)

func appendFQDNPatternRegexp(sb *strings.Builder, pattern string) error {
	pattern = strings.ToLower(strings.TrimSuffix(strings.TrimSpace(pattern), "."))
	switch {
	case pattern == "":
		return errEmptyPattern
	case strings.HasSuffix(pattern, "."):
		return errMultipleTrailingDots
	}
	for _, r := range pattern {
		switch {
		case r == '.':
			sb.WriteString(`\.`)
		case r == '*':
			sb.WriteString(`[-.0-9a-z]*`)
		case r == '-', r == '_', '0' <= r && r <= '9', 'a' <= r && r <= 'z':
			sb.WriteRune(r)
		default:
			return fmt.Errorf("%q: invalid rune in pattern", r)
		}
	}
	return nil
}

func compileFQDNPattern(patterns []string) (*regexp.Regexp, error) {
	var sb strings.Builder
	sb.WriteString(`\A(?:`)
	for i, p := range patterns {
		if i > 0 {
			sb.WriteByte('|')
		}
		if err := appendFQDNPatternRegexp(&sb, p); err != nil {
			return nil, fmt.Errorf("pattern %q: %w", p, err)
		}
	}
	sb.WriteString(`)\z`)
	return regexp.Compile(sb.String())
}

func compileNodeNamePattern(patterns []string) (*regexp.Regexp, error) {
	var sb strings.Builder
	sb.WriteString(`\A(?:`)
	for i, p := range patterns {
		if i > 0 {
			sb.WriteByte('|')
		}
		if p == "" {
			return nil, errEmptyPattern
		}
		var cluster, node string
		parts := strings.Split(p, "/")
		switch len(parts) {
		case 1:
			node = parts[0]
		case 2:
			cluster, node = parts[0], parts[1]
		default:
			return nil, fmt.Errorf("pattern %q: %w", p, errTooManySlashesPattern)
		}
		for j, part := range []string{cluster, node} {
			if j == 1 {
				sb.WriteByte('/')
			}
			if part == "" {
				sb.WriteString(fqdnRegexpStr)
			} else if err := appendFQDNPatternRegexp(&sb, part); err != nil {
				return nil, fmt.Errorf("pattern %q: %w", p, err)
			}
		}
	}
	sb.WriteString(`)\z`)
	return regexp.Compile(sb.String())
}
