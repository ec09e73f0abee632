package main

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

// anyValue are the numeric flags every value of their type suits.
var anyValue = map[string]string{
	"seed":  "a seed (agent, lab traffic)",
	"count": "0 = until stopped (agent)",
	"last":  "hubble's 0 = the default number (observe)",
	"first": "hubble's: any number of flows (observe)",
}

// TestEveryNumericFlagHasARange: every numeric or duration flag of every
// subcommand has a rule (flagSet.check), but those anyValue lists.
func TestEveryNumericFlagHasARange(t *testing.T) {
	sets := commandFlagSets(t)
	for _, cmd := range slices.Sorted(maps.Keys(sets)) {
		fs := sets[cmd]
		checked := map[string]bool{}
		for _, c := range fs.checks {
			checked[c.name] = true
		}
		fs.VisitAll(func(f *pflag.Flag) {
			typ := f.Value.Type()
			numeric := typ == "duration" || typ == "float64" || strings.HasPrefix(typ, "int") || strings.HasPrefix(typ, "uint")
			if numeric && !f.Hidden && !checked[f.Name] && anyValue[f.Name] == "" {
				t.Errorf("flowbus %s --%s (%s) has no range check", cmd, f.Name, typ)
			}
		})
	}
}

// TestOutOfRangeValuesAreUsageErrors: a numeric or duration flag out of its
// range is a usage error (exit code 2): one line naming the flag, its value
// (as parsed) and the range, and the hint to run --help, before the command
// does anything; so is a value from a variable.
func TestOutOfRangeValuesAreUsageErrors(t *testing.T) {
	cases := []struct {
		cmd, flag, value, want string
	}{
		{"agent", "ring-size", "-1", "from 1 to 1048576"},
		{"agent", "ring-size", "0", "from 1 to 1048576"},
		{"agent", "ring-size", "9223372036854775807", "from 1 to 1048576"},
		{"agent", "clock-offset", "-25h0m0s", "from -24h0m0s to 24h0m0s"},
		{"agent", "clock-offset", "24h0m1s", "from -24h0m0s to 24h0m0s"},
		{"agent", "rate", "-1", "a number of at least 0"},
		{"agent", "rate", "NaN", "a number of at least 0"},
		{"agent", "rate", "+Inf", "a number of at least 0"},
		{"agent", "active-timeout", "0s", "more than 0s"},
		{"agent", "active-timeout", "-1s", "more than 0s"},
		{"agent", "ringbuf-size", "0", "a power of two from"},
		{"agent", "ringbuf-size", "1000000", "a power of two from"},
		{"agent", "ringbuf-size", "2147483648", "a power of two from"},
		{"agent", "max-flows", "0", "at least 1"},
		{"agent", "l7-head-bytes", "23", "from 24 to 1024"},
		{"agent", "l7-head-bytes", "1025", "from 24 to 1024"},
		{"agent", "l7-ringbuf-size", "1000000", "a power of two from"},
		{"agent", "l7-max-conns", "0", "from 1 to 4194304"},
		{"agent", "fqdn-grace", "-1s", "at least 0s"},
		{"agent", "aggregate-window", "0s", "at least 1ms"},
		{"agent", "aggregate-window", "500µs", "at least 1ms"},
		{"agent", "aggregate-max-keys", "0", "from 1 to 16777216"},
		{"agent", "aggregate-max-keys", "16777217", "from 1 to 16777216"},
		{"agent", "batch-rows", "0", "at least 1"},
		{"agent", "batch-bytes", "-5", "at least 1"},
		{"agent", "linger", "0s", "more than 0s"},
		{"agent", "linger", "-1s", "more than 0s"},
		{"agent", "queue-messages", "0", "at least 1"},
		{"agent", "spool-max-bytes", "4096", "at least 16777216"},
		{"agent", "nats-port", "0", "-1 (a free port) or from 1 to 65535"},
		{"agent", "nats-port", "-2", "-1 (a free port) or from 1 to 65535"},
		{"agent", "nats-port", "65536", "-1 (a free port) or from 1 to 65535"},
		{"agent", "nats-partitions", "0", "from 1 to 4096"},
		{"agent", "nats-partitions", "4097", "from 1 to 4096"},
		{"agent", "kafka-partitions", "0", "from 1 to 2147483647"},
		{"agent", "kafka-partitions", "4294967297", "from 1 to 2147483647"},
		{"agent", "metrics-max-label-sets", "0", "at least 1"},
		{"agent", "policy-enforcement", "always", "one of default, never"},
		{"agent", "socket-lb-algorithm", "roundrobin", "one of random, maglev"},
		{"agent", "ocsf-rotate-bytes", "1023", "at least 1024"},
		{"agent", "ocsf-rotate-age", "0s", "more than 0s"},
		{"agent", "ocsf-max-files", "0", "at least 1"},
		{"agent", "ocsf-kafka-output-partitions", "0", "from 1 to 2147483647"},
		{"agent", "ocsf-nats-output-partitions", "4097", "from 1 to 4096"},
		{"agent", "ocsf-output-timeout", "0s", "more than 0s"},
		{"agent", "ocsf-queue-records", "0", "from 1 to 4194304"},
		{"agent", "ocsf-queue-records", "4194305", "from 1 to 4194304"},
		{"agent", "ocsf-drain-timeout", "-1s", "more than 0s"},
		{"demo", "duration", "0s", "more than 0s"},
		{"demo", "top", "0", "at least 1"},
		{"demo", "ring-size", "-1", "from 1 to 1048576"},
		{"aggregator", "window", "0s", "whole seconds from 1s to 24h0m0s that divide 24h"},
		{"aggregator", "window", "7s", "whole seconds from 1s to 24h0m0s that divide 24h"},
		{"aggregator", "window", "1.5s", "whole seconds from 1s to 24h0m0s that divide 24h"},
		{"aggregator", "window", "48h0m0s", "whole seconds from 1s to 24h0m0s that divide 24h"},
		{"aggregator", "lateness", "0s", "more than 0s"},
		{"aggregator", "lateness", "-1s", "more than 0s"},
		{"aggregator", "nats-partitions", "0", "from 1 to 4096"},
		{"aggregator", "nats-assigned", "-1", "comma-separated partitions, each from 0 to --nats-partitions - 1"},
		{"aggregator", "nats-assigned", "16", "comma-separated partitions, each from 0 to --nats-partitions - 1"},
		{"aggregator", "nats-assigned", "1,x", "comma-separated partitions, each from 0 to --nats-partitions - 1"},
		{"aggregator", "max-routes-per-workload", "0", "at least 1"},
		{"aggregator", "route-max-len", "7", "at least 8"},
		{"aggregator", "row-group-rows", "-1", "at least 0"},
		{"aggregator", "kafka-instance-id", "a b", "auto, none, or an id of 1 to 249 characters without white space"},
		{"ocsf", "nats-partitions", "0", "from 1 to 4096"},
		{"ocsf", "kafka-instance-id", "a b", "auto, none, or an id of 1 to 249 characters without white space"},
		{"ocsf", "nats-assigned", "16", "comma-separated partitions, each from 0 to --nats-partitions - 1"},
		{"ocsf", "rotate-bytes", "1023", "at least 1024"},
		{"ocsf", "rotate-age", "0s", "more than 0s"},
		{"ocsf", "max-files", "0", "at least 1"},
		{"ocsf", "progress-interval", "-1s", "more than 0s"},
		{"ocsf", "kafka-output-partitions", "0", "from 1 to 2147483647"},
		{"ocsf", "nats-output-partitions", "4097", "from 1 to 4096"},
		{"ocsf", "output-timeout", "0s", "more than 0s"},
		{"observe", "timeout", "0s", "more than 0s"},
		{"relay", "resolve-interval", "0s", "more than 0s"},
		{"relay", "retry-interval", "-1s", "more than 0s"},
		{"relay", "sort-window", "-1s", "more than 0s"},
		{"relay", "batch-window", "0s", "more than 0s"},
		{"lab up", "ready-timeout", "0s", "more than 0s"},
		{"lab traffic", "duration", "-1s", "more than 0s"},
		{"lab traffic", "rate", "0", "a number more than 0"},
		{"lab traffic", "rate", "NaN", "a number more than 0"},
		{"bpf ct list", "output", "yaml", "one of table, json"},
		{"bpf lb list", "output", "wide", "one of table, json"},
		{"bpf policy get", "output", "text", "one of table, json"},
		{"bpf ipcache list", "output", "yaml", "one of table, json"},
		{"bpf flows list", "output", "csv", "one of table, json"},
		{"audit diff", "output", "table", "one of text, json"},
		{"audit diff", "list-max", "-2", "at least -1"},
	}
	covered := map[string]bool{}
	for _, c := range cases {
		covered[c.cmd+" --"+c.flag] = true
		t.Run(fmt.Sprintf("%s --%s %s", c.cmd, c.flag, c.value), func(t *testing.T) {
			code, out, errOut := runCommand(append(strings.Fields(c.cmd), "--"+c.flag+"="+c.value)...)
			want := fmt.Sprintf("flowbus %s: --%s %s: must be %s", c.cmd, c.flag, c.value, c.want)
			hint := fmt.Sprintf("\nRun 'flowbus %s --help' for the flags.\n", c.cmd)
			if code != 2 || !strings.HasPrefix(errOut, want) || !strings.HasSuffix(errOut, hint) || strings.Count(errOut, "\n") != 2 || out != "" {
				t.Errorf("exit %d, stderr %q, stdout %q; want exit 2 and %q", code, errOut, out, want)
			}
		})
	}
	t.Run("a value from a variable is checked too", func(t *testing.T) {
		t.Setenv("FLOWBUS_SORT_WINDOW", "-1s")
		code, _, errOut := runCommand("relay", "--agents", "a:4244")
		if code != 2 || !strings.Contains(errOut, "--sort-window -1s: must be more than 0s") {
			t.Errorf("exit %d, stderr %q", code, errOut)
		}
	})
	// Every checked flag has a case.
	for cmd, fs := range commandFlagSets(t) {
		for _, c := range fs.checks {
			if !covered[cmd+" --"+c.name] && (cmd != "demo" || !covered["agent --"+c.name]) {
				t.Errorf("no case for flowbus %s --%s", cmd, c.name)
			}
		}
	}
}
