package main

import (
	"fmt"
	"maps"
	"os"
	"regexp"
	"slices"
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
	ocsfFlags, _ := newOCSFFlags(cio)
	up, _, _ := newLabUpFlags(cio)
	traffic, _, _ := newLabTrafficFlags(cio)
	down, _ := newLabFlags("down", cio)
	status, _ := newLabFlags("status", cio)
	labExec, _ := newLabFlags("exec", cio)
	sets := map[string]*flagSet{"agent": agent, "aggregator": aggregator, "demo": demo, "observe": observe,
		"ocsf": ocsfFlags, "relay": relay, "version": newVersionFlags(cio), "sql": newSQLFlags(cio), "lab up": up, "lab traffic": traffic, "lab down": down,
		"lab status": status, "lab exec": labExec}
	for verb := range bpfVerbs {
		sets["bpf "+verb], _ = newBpfFlags(verb, cio)
	}
	for verb := range auditVerbs {
		sets["audit "+verb], _, _ = newAuditFlags(verb, cio)
	}
	for name := range commands() {
		if _, ok := sets[name]; !ok && name != "lab" && name != "bpf" && name != "audit" {
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
	for _, args := range [][]string{{"help"}, {"lab", "--help"}, {"bpf", "--help"}, {"audit", "--help"}} {
		code, out, _ := runCommand(args...)
		lines := strings.Split(out, "\n")
		if code != 0 || !usageLine.MatchString(lines[0]) || lines[1] != "" {
			t.Errorf("flowbus %s: exit %d, no usage line:\n%s", strings.Join(args, " "), code, out)
			continue
		}
		checkParagraph(t, lines[2:])
	}
}

// concepts: one flag name per concept across subcommands. others are names
// the same concept had, or could be given, that no subcommand may use (a
// renamed flag's old name lives on only as a hidden deprecated alias).
var concepts = []struct {
	concept, name string
	others        []string
}{
	{"directory a command keeps its files in", "data-dir", []string{"out", "out-dir", "output-dir", "state-dir", "dir", "datadir"}},
	{"address Prometheus metrics are served on", "metrics-address", []string{"metrics-addr", "metrics-listen-address", "metrics-server", "prometheus-address"}},
	{"address the Observer API is served on", "observer-address", []string{"listen-address", "observer-addr", "observer-listen-address", "grpc-address"}},
	{"Observer API server certificate", "observer-tls-cert-file", []string{"observer-tls-cert", "tls-cert-file", "tls-cert", "tls-server-cert-file"}},
	{"Observer API server key", "observer-tls-key-file", []string{"observer-tls-key", "tls-key-file", "tls-key", "tls-server-key-file"}},
	{"Observer API client CA (mTLS)", "observer-tls-client-ca-file", []string{"observer-tls-client-ca", "tls-client-ca-file", "tls-client-ca", "tls-client-ca-files"}},
	{"Kafka CA bundle", "kafka-tls-ca-file", []string{"kafka-tls-ca", "kafka-ca-file", "kafka-ca"}},
	{"Kafka client certificate", "kafka-tls-cert-file", []string{"kafka-tls-cert", "kafka-cert-file"}},
	{"Kafka client key", "kafka-tls-key-file", []string{"kafka-tls-key", "kafka-key-file"}},
	{"Kafka flows topic", "kafka-topic", []string{"topic", "flows-topic"}},
	{"Kafka dead-letter topic", "kafka-dlq-topic", []string{"dlq-topic", "dlq"}},
	{"NATS partitions", "nats-partitions", []string{"partitions"}},
	{"Kafka partitions of a created topic", "kafka-partitions", []string{"topic-partitions"}},
	{"where flows are published or consumed", "bus", []string{"bus-url", "broker", "brokers", "nats-url", "kafka-brokers"}},
	{"node name", "node", []string{"node-id", "hostname"}},
	{"endpoints file", "endpoints", []string{"endpoints-file"}},
	{"how long a command runs", "duration", []string{"run-for", "time"}},
	{"where an agent's eBPF maps are pinned", "bpf-pin-dir", []string{"pin-dir", "bpffs-dir", "bpf-dir", "pin-path"}},
}

// TestOneFlagNamePerConcept: no subcommand names a concept otherwise than
// the table says, every concept of the table is a flag somewhere, and every
// hidden flag is the deprecated alias of its concept's flag.
func TestOneFlagNamePerConcept(t *testing.T) {
	sets := commandFlagSets(t)
	conceptOf := map[string]string{}
	for _, c := range concepts {
		for _, o := range c.others {
			conceptOf[o] = c.name
		}
	}
	used := map[string]bool{}
	for _, cmd := range slices.Sorted(maps.Keys(sets)) {
		fs := sets[cmd]
		fs.VisitAll(func(f *pflag.Flag) {
			used[f.Name] = true
			want, isOther := conceptOf[f.Name]
			switch {
			case f.Hidden && (fs.aliases[f.Name] == "" || f.Deprecated == ""):
				t.Errorf("flowbus %s --%s is hidden but not a deprecated alias", cmd, f.Name)
			case f.Hidden && isOther && fs.aliases[f.Name] != want:
				t.Errorf("flowbus %s --%s is an alias of --%s, want --%s", cmd, f.Name, fs.aliases[f.Name], want)
			case !f.Hidden && isOther:
				t.Errorf("flowbus %s --%s: this concept is --%s in flowbus", cmd, f.Name, want)
			}
		})
	}
	for _, c := range concepts {
		if !used[c.name] {
			t.Errorf("no subcommand has --%s (%s): update the table", c.name, c.concept)
		}
	}
}

// renamed lists every renamed flag (old → new) by subcommand, as the
// deprecation notes of the release say.
var renamed = map[string]map[string]string{
	"agent": {"kafka-tls-ca": "kafka-tls-ca-file", "kafka-tls-cert": "kafka-tls-cert-file", "kafka-tls-key": "kafka-tls-key-file",
		"observer-tls-cert": "observer-tls-cert-file", "observer-tls-key": "observer-tls-key-file",
		"observer-tls-client-ca": "observer-tls-client-ca-file"},
	"aggregator": {"out": "data-dir", "metrics-addr": "metrics-address", "topic": "kafka-topic", "dlq-topic": "kafka-dlq-topic"},
	"relay": {"listen-address": "observer-address", "tls-cert-file": "observer-tls-cert-file",
		"tls-key-file": "observer-tls-key-file", "tls-client-ca-file": "observer-tls-client-ca-file"},
	"lab up": {"state-dir": "data-dir"}, "lab traffic": {"state-dir": "data-dir"},
	"lab down": {"state-dir": "data-dir"}, "lab status": {"state-dir": "data-dir"},
}

// TestRenamedFlagsKeepTheirOldNames: an old name still sets the flag, on the
// command line, as a variable and as a config key, each with one warning
// line; the new name wins over the old.
func TestRenamedFlagsKeepTheirOldNames(t *testing.T) {
	for cmd, fs := range commandFlagSets(t) {
		want := renamed[cmd]
		if cmd == "demo" {
			want = renamed["agent"]
		}
		if !maps.Equal(fs.aliases, want) && len(fs.aliases)+len(want) > 0 {
			t.Errorf("flowbus %s: aliases %v, want %v", cmd, fs.aliases, want)
		}
	}
	for _, cmd := range slices.Sorted(maps.Keys(renamed)) {
		for old, name := range renamed[cmd] {
			value := "/x/" + old
			parse := func(t *testing.T, args ...string) (string, string) {
				t.Helper()
				var stderr strings.Builder
				cio := testIO()
				cio.Stderr = &stderr
				fs := map[string]func() *flagSet{
					"agent":      func() *flagSet { fs, _ := newAgentFlags(cio); return fs },
					"aggregator": func() *flagSet { fs, _ := newAggregatorFlags(cio); return fs },
					"relay":      func() *flagSet { fs, _, _ := newRelayFlags(cio); return fs },
				}[cmd]
				var set *flagSet
				if fs != nil {
					set = fs()
				} else {
					set, _ = newLabFlags(strings.TrimPrefix(cmd, "lab "), cio)
				}
				if err := parseFlags(set, args); err != nil {
					t.Fatal(err)
				}
				return set.Lookup(name).Value.String(), stderr.String()
			}
			t.Run(cmd+" --"+old, func(t *testing.T) {
				got, warn := parse(t, "--"+old, value)
				if got != value || warn != fmt.Sprintf("Flag --%s has been deprecated, use --%s instead\n", old, name) {
					t.Errorf("--%s %s: --%s = %q, warning %q", old, value, name, got, warn)
				}
				t.Setenv(envName(old), value)
				got, warn = parse(t)
				if got != value || warn != fmt.Sprintf("%s has been deprecated, use %s instead\n", envName(old), envName(name)) {
					t.Errorf("%s: --%s = %q, warning %q", envName(old), name, got, warn)
				}
				if got, _ = parse(t, "--"+name, "/new"); got != "/new" {
					t.Errorf("--%s /new with %s set: got %q", name, envName(old), got)
				}
				os.Unsetenv(envName(old)) // restored by t.Setenv's cleanup
				got, warn = parse(t, "--config", writeConfig(t, old+": "+value+"\n"))
				if got != value || warn != fmt.Sprintf("config key %q has been deprecated, use %q instead\n", old, name) {
					t.Errorf("config key %s: --%s = %q, warning %q", old, name, got, warn)
				}
			})
		}
	}
}
