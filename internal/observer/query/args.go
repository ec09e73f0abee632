package query

import (
	"errors"
	"fmt"
	"io"
	"strings"

	flowpb "github.com/cilium/cilium/api/v1/flow"
	"github.com/spf13/pflag"
)

// AddFilterFlags adds every filter flag of `hubble observe` (FilterFlags)
// to fs, each applied to filters in command-line order.
func AddFilterFlags(fs *pflag.FlagSet, filters *Filters) {
	for _, f := range FilterFlags() {
		fl := fs.VarPF(filters.Value(f.Name), f.Name, f.Shorthand, f.Usage)
		if f.NoOptDefault != "" {
			fl.NoOptDefVal = f.NoOptDefault
		}
	}
}

// FilterArgs builds the whitelist and blacklist of hubble observe's filter
// flags given as words of a command line, e.g. ["--not", "--label",
// "reserved:health"]: the same flags, in the same order, with the same
// meaning (--not negates the next flag) as `hubble observe` and `flowbus
// observe`. Anything that is not a filter flag is an error.
func FilterArgs(args []string) (white, black []*flowpb.FlowFilter, err error) {
	fs := pflag.NewFlagSet("filter", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	filters := &Filters{}
	AddFilterFlags(fs, filters)
	if err := fs.Parse(args); err != nil {
		return nil, nil, err
	}
	if fs.NArg() > 0 {
		return nil, nil, fmt.Errorf("unexpected %q: filters are hubble observe's filter flags (e.g. --not --label reserved:health)", fs.Arg(0))
	}
	return filters.Lists()
}

// SplitArgs splits s into words as a shell does for simple quoting: words
// are separated by white space; single quotes keep everything up to the
// next single quote, double quotes everything up to the next unescaped
// double quote, and a backslash outside single quotes keeps the next
// character. So a label selector with spaces can be one word:
// `--label 'k8s:app in (a, b)'`.
func SplitArgs(s string) ([]string, error) {
	var words []string
	var w strings.Builder
	inWord := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n':
			if inWord {
				words, inWord = append(words, w.String()), false
				w.Reset()
			}
			continue
		case c == '\'':
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				return nil, errors.New("unterminated ' quote")
			}
			w.WriteString(s[i+1 : i+1+j])
			i += j + 1
		case c == '"':
			i++
			for ; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' && i+1 < len(s) && (s[i+1] == '"' || s[i+1] == '\\') {
					i++
				}
				w.WriteByte(s[i])
			}
			if i >= len(s) {
				return nil, errors.New(`unterminated " quote`)
			}
		case c == '\\' && i+1 < len(s):
			i++
			w.WriteByte(s[i])
		default:
			w.WriteByte(c)
		}
		inWord = true
	}
	if inWord {
		words = append(words, w.String())
	}
	return words, nil
}
