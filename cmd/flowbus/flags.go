package main

import (
	"cmp"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/spf13/pflag"
)

// helpWidth is the width the flag lists of --help are wrapped to; the
// paragraphs are wrapped to paragraphWidth.
const (
	helpWidth      = 100
	paragraphWidth = 80
)

// configNote ends every subcommand's --help.
const configNote = "Every flag is also a key of the YAML file given by --config and an environment " +
	"variable FLOWBUS_<FLAG> (upper case, '-' as '_'); the command line wins over the variable, " +
	"which wins over the file."

// flagSet is a subcommand's flags, in groups, with what its --help prints
// around them (see the package doc): the usage line, a paragraph, the groups
// of flags, configNote. It also holds the deprecated names of renamed flags
// and the checks of the flags' values, which parseFlags applies.
type flagSet struct {
	*pflag.FlagSet
	usage   string // the usage line after "flowbus "
	about   string // one paragraph: what the command does
	help    io.Writer
	groups  []flagGroup
	aliases map[string]string // deprecated name → flag name
	checks  []flagCheck
}

// flagGroup is a titled run of flags, in definition order from first.
type flagGroup struct {
	title string
	first int
}

// flagCheck is a rule a flag's value must follow, checked after parsing.
type flagCheck struct {
	name string
	bound
}

// bound is a rule on one value: ok reports whether it holds, want says what
// the value must be ("from 1 to 1048576", "more than 0s").
type bound struct {
	ok   func() bool
	want string
}

// newFlagSet returns the flags of 'flowbus <usage>': --help prints to
// cio.Stdout; parse errors are returned, and pflag's deprecation warnings
// go to cio.Stderr.
func newFlagSet(name, usage, about string, cio cmdIO) *flagSet {
	fs := &flagSet{FlagSet: pflag.NewFlagSet(name, pflag.ContinueOnError), usage: usage, about: about,
		help: cio.Stdout, aliases: map[string]string{}}
	fs.SortFlags = false
	fs.SetOutput(cio.Stderr)
	if fs.help == nil {
		fs.help = io.Discard
	}
	fs.Usage = func() { fs.printHelp(fs.help) }
	return fs
}

// group starts a group: the flags defined next are listed under
// "<title> flags:". Flags defined before the first group are under "Flags:".
func (fs *flagSet) group(title string) {
	n := 0
	fs.VisitAll(func(*pflag.Flag) { n++ })
	fs.groups = append(fs.groups, flagGroup{title: title, first: n})
}

// alias keeps old, the former name of flag name, working: hidden from
// --help, it sets the same value and prints a one-line deprecation warning.
// parseFlags also takes FLOWBUS_<OLD> and the config key old, with a warning.
func (fs *flagSet) alias(old, name string) {
	f := fs.Lookup(name)
	if f == nil {
		panic("alias of an undefined flag --" + name)
	}
	fs.AddFlag(&pflag.Flag{Name: old, Usage: f.Usage, Value: f.Value, DefValue: f.DefValue, NoOptDefVal: f.NoOptDefVal,
		Hidden: true, Deprecated: "use --" + name + " instead"})
	fs.aliases[old] = name
}

// check adds a rule that the value of flag name must follow; parseFlags
// reports the first flag that breaks its rule as a usage error.
func (fs *flagSet) check(name string, b bound) {
	if fs.Lookup(name) == nil {
		panic("check of an undefined flag --" + name)
	}
	fs.checks = append(fs.checks, flagCheck{name: name, bound: b})
}

// checkValues returns the first rule broken, naming the flag, its value and
// what it must be.
func (fs *flagSet) checkValues() error {
	for _, c := range fs.checks {
		if !c.ok() {
			return fmt.Errorf("%w: --%s %s: must be %s", errUsage, c.name, fs.Lookup(c.name).Value, c.want)
		}
	}
	return nil
}

// between: lo ≤ *p ≤ hi.
func between[T cmp.Ordered](p *T, lo, hi T) bound {
	return bound{func() bool { return *p >= lo && *p <= hi }, fmt.Sprintf("from %v to %v", lo, hi)}
}

// atLeast: *p ≥ lo.
func atLeast[T cmp.Ordered](p *T, lo T) bound {
	return bound{func() bool { return *p >= lo }, fmt.Sprintf("at least %v", lo)}
}

// positive: a duration more than zero.
func positive(p *time.Duration) bound {
	return bound{func() bool { return *p > 0 }, "more than 0s"}
}

// finiteAtLeast: a finite number ≥ lo.
func finiteAtLeast(p *float64, lo float64) bound {
	return bound{func() bool { return !math.IsNaN(*p) && !math.IsInf(*p, 0) && *p >= lo }, fmt.Sprintf("a number of at least %v", lo)}
}

// oneOf: one of the words.
func oneOf(p *string, words ...string) bound {
	return bound{func() bool { return slices.Contains(words, *p) }, "one of " + strings.Join(words, ", ")}
}

// finitePositive: a finite number > 0.
func finitePositive(p *float64) bound {
	return bound{func() bool { return !math.IsNaN(*p) && !math.IsInf(*p, 0) && *p > 0 }, "a number more than 0"}
}

// printHelp writes the command's help (see the package doc).
func (fs *flagSet) printHelp(w io.Writer) {
	fmt.Fprintf(w, "Usage: flowbus %s\n\n%s\n", fs.usage, wrap(fs.about, paragraphWidth))
	var all []*pflag.Flag
	fs.VisitAll(func(f *pflag.Flag) { all = append(all, f) })
	groups := fs.groups
	if len(groups) == 0 || groups[0].first > 0 {
		groups = append([]flagGroup{{}}, groups...)
	}
	for i, g := range groups {
		end := len(all)
		if i+1 < len(groups) {
			end = groups[i+1].first
		}
		set := pflag.NewFlagSet(fs.Name(), pflag.ContinueOnError)
		set.SortFlags = false
		for _, f := range all[g.first:end] {
			if !f.Hidden {
				set.AddFlag(f)
			}
		}
		if !set.HasAvailableFlags() {
			continue
		}
		title := "Flags:"
		if g.title != "" {
			title = g.title + " flags:"
		}
		fmt.Fprintf(w, "\n%s\n%s", title, set.FlagUsagesWrapped(helpWidth))
	}
	fmt.Fprintf(w, "\n%s\n", wrap(configNote, paragraphWidth))
}

// wrap breaks text into lines of at most width columns at spaces.
func wrap(text string, width int) string {
	var b strings.Builder
	n := 0
	for i, word := range strings.Fields(text) {
		switch {
		case i == 0:
		case n+1+utf8.RuneCountInString(word) > width:
			b.WriteByte('\n')
			n = 0
		default:
			b.WriteByte(' ')
			n++
		}
		b.WriteString(word)
		n += utf8.RuneCountInString(word)
	}
	return b.String()
}
