package main

import (
	"regexp"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

// commandFlagSets builds the flags of every subcommand (every lab verb
// apart) as the subcommands do.
func commandFlagSets(t *testing.T) map[string]*flagSet {
	t.Helper()
	cio := testIO()
	agent, _ := newAgentFlags(cio)
	aggregator, _ := newAggregatorFlags(cio)
	demo, _, _ := newDemoFlags(cio)
	observe, _, _ := newObserveFlags(cio)
	relay, _, _ := newRelayFlags(cio)
	up, _, _ := newLabUpFlags(cio)
	traffic, _, _ := newLabTrafficFlags(cio)
	down, _ := newLabFlags("down", cio)
	status, _ := newLabFlags("status", cio)
	sets := map[string]*flagSet{"agent": agent, "aggregator": aggregator, "demo": demo, "observe": observe,
		"relay": relay, "version": newVersionFlags(cio), "lab up": up, "lab traffic": traffic, "lab down": down,
		"lab status": status}
	for name := range commands() {
		if _, ok := sets[name]; !ok && name != "lab" {
			t.Fatalf("command %s has no flag set in commandFlagSets", name)
		}
	}
	return sets
}

// runCommand runs flowbus with args and returns its exit code and output.
func runCommand(args ...string) (int, string, string) {
	var out, errb strings.Builder
	code := run(args, nil, &out, &errb)
	return code, out.String(), errb.String()
}

var (
	usageLine    = regexp.MustCompile(`^Usage: flowbus \S+( .+)?$`)
	groupHeading = regexp.MustCompile(`^(Flags|[A-Z][A-Za-z ]* flags):$`)
	flagLine     = regexp.MustCompile(`^(  -[a-zA-Z0-9], |      )--[a-z0-9][a-z0-9-]*(\[=[^\]]+\])? `)
	continuation = regexp.MustCompile(`^ {7,}\S`)
)

// checkParagraph checks lines as one paragraph wrapped at paragraphWidth
// and returns what follows it.
func checkParagraph(t *testing.T, lines []string) []string {
	t.Helper()
	n := 0
	for n < len(lines) && lines[n] != "" {
		if l := lines[n]; len([]rune(l)) > paragraphWidth || strings.HasPrefix(l, " ") {
			t.Errorf("paragraph line %q: longer than %d columns or indented", l, paragraphWidth)
		}
		n++
	}
	if n == 0 {
		t.Errorf("no paragraph")
	}
	return lines[n:]
}

// The help of every subcommand: usage line, paragraph, groups of flags
// formatted alike (the Config group, with --config, last), the note on
// variables and the config file; on stdout, exit code 0.
func TestEveryHelpHasTheSharedLayout(t *testing.T) {
	for name := range commandFlagSets(t) {
		t.Run(name, func(t *testing.T) {
			code, out, errOut := runCommand(append(strings.Fields(name), "--help")...)
			if code != 0 || errOut != "" {
				t.Fatalf("exit %d, stderr %q", code, errOut)
			}
			lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
			if !usageLine.MatchString(lines[0]) || !strings.HasPrefix(lines[0], "Usage: flowbus "+name) || lines[1] != "" {
				t.Fatalf("does not start with a usage line and a blank line:\n%s", out)
			}
			rest := checkParagraph(t, lines[2:])
			var groups []string
			flags := 0
			for len(rest) > 0 && rest[0] == "" && len(rest) > 1 && groupHeading.MatchString(rest[1]) {
				groups = append(groups, rest[1])
				rest = rest[2:]
				n := 0
				for ; n < len(rest) && rest[n] != ""; n++ {
					l := rest[n]
					switch {
					case flagLine.MatchString(l):
						flags++
					case n > 0 && continuation.MatchString(l):
					default:
						t.Errorf("in %s: %q is neither a flag nor its usage continued", groups[len(groups)-1], l)
					}
					if len([]rune(l)) > helpWidth && strings.Contains(strings.TrimSpace(l), " ") {
						t.Errorf("line longer than %d columns: %q", helpWidth, l)
					}
				}
				if n == 0 {
					t.Errorf("group %s lists no flag", groups[len(groups)-1])
				}
				rest = rest[n:]
			}
			if len(groups) == 0 || groups[len(groups)-1] != "Config flags:" || !strings.Contains(out, "      --config string ") {
				t.Errorf("groups %q: want the last to be Config flags:, with --config", groups)
			}
			if len(rest) < 2 || rest[0] != "" || strings.Join(rest[1:], " ") != configNote {
				t.Errorf("does not end with the note on variables and the config file: %q", rest)
			}
			visible := 0
			commandFlagSets(t)[name].VisitAll(func(f *pflag.Flag) {
				if !f.Hidden {
					visible++
				}
			})
			if flags != visible+1 { // and --config
				t.Errorf("help lists %d flags, the command has %d and --config", flags, visible)
			}
		})
	}
	for _, args := range [][]string{{"help"}, {"lab", "--help"}} {
		code, out, _ := runCommand(args...)
		lines := strings.Split(out, "\n")
		if code != 0 || !usageLine.MatchString(lines[0]) || lines[1] != "" {
			t.Errorf("flowbus %s: exit %d, no usage line:\n%s", strings.Join(args, " "), code, out)
			continue
		}
		checkParagraph(t, lines[2:])
	}
}
