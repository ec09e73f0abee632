package main

import (
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// testIO is a cmdIO that keeps nothing.
func testIO() cmdIO {
	return cmdIO{Stdout: io.Discard, Stderr: io.Discard, Log: slog.New(slog.DiscardHandler)}
}

func newTestFlags() (*flagSet, *string, *int, *time.Duration, *[]string) {
	fs := newFlagSet("agent", "agent [flags]", "Test.", testIO())
	bus := fs.String("bus", "embedded", "bus")
	rate := fs.Int("rate", 100, "rate")
	linger := fs.Duration("linger", time.Second, "linger")
	ifaces := fs.StringSlice("interfaces", nil, "interfaces")
	return fs, bus, rate, linger, ifaces
}

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "flowbus.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestParseFlagsPrecedence(t *testing.T) {
	cfg := writeConfig(t, "bus: nats://file:4222\nrate: 7\nlinger: 3s\ninterfaces: [veth*, lxc*]\n")

	t.Run("the file fills flags not given", func(t *testing.T) {
		fs, bus, rate, linger, ifaces := newTestFlags()
		if err := parseFlags(fs, []string{"--config", cfg}); err != nil {
			t.Fatal(err)
		}
		if *bus != "nats://file:4222" || *rate != 7 || *linger != 3*time.Second || strings.Join(*ifaces, "|") != "veth*|lxc*" {
			t.Fatalf("got bus=%q rate=%d linger=%v ifaces=%v", *bus, *rate, *linger, *ifaces)
		}
	})
	t.Run("a variable wins over the file", func(t *testing.T) {
		t.Setenv("FLOWBUS_RATE", "9")
		fs, bus, rate, _, _ := newTestFlags()
		if err := parseFlags(fs, []string{"--config", cfg}); err != nil {
			t.Fatal(err)
		}
		if *rate != 9 || *bus != "nats://file:4222" {
			t.Fatalf("got rate=%d bus=%q", *rate, *bus)
		}
	})
	t.Run("a flag wins over the variable and the file", func(t *testing.T) {
		t.Setenv("FLOWBUS_RATE", "9")
		fs, _, rate, _, _ := newTestFlags()
		if err := parseFlags(fs, []string{"--config", cfg, "--rate", "11"}); err != nil {
			t.Fatal(err)
		}
		if *rate != 11 {
			t.Fatalf("got rate=%d", *rate)
		}
	})
	t.Run("FLOWBUS_CONFIG names the file", func(t *testing.T) {
		t.Setenv("FLOWBUS_CONFIG", cfg)
		fs, bus, _, _, _ := newTestFlags()
		if err := parseFlags(fs, nil); err != nil {
			t.Fatal(err)
		}
		if *bus != "nats://file:4222" {
			t.Fatalf("got bus=%q", *bus)
		}
	})
}

func TestParseFlagsBadInput(t *testing.T) {
	cases := []struct {
		name, file, env string
		args            []string
		want            string
		usage           bool
	}{
		{name: "an unknown key in the file is named", file: "bsu: x\n", want: `unknown key "bsu"`},
		{name: "a malformed file is reported", file: "bus: [\n", want: "flowbus.yaml"},
		{name: "a bad value in the file names the key", file: "rate: many\n", want: "rate"},
		{name: "a bad variable names the variable", file: "", env: "nope", want: "FLOWBUS_RATE"},
		{name: "an unknown flag is a usage error", args: []string{"--nope"}, want: "unknown flag", usage: true},
		{name: "a missing file is reported", args: []string{"--config", "/nonexistent/x.yaml"}, want: "read config"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			args := c.args
			if c.file != "" {
				args = append(args, "--config", writeConfig(t, c.file))
			}
			if c.env != "" {
				t.Setenv("FLOWBUS_RATE", c.env)
			}
			fs, _, _, _, _ := newTestFlags()
			err := parseFlags(fs, args)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want it to mention %q", err, c.want)
			}
			if errors.Is(err, errUsage) != c.usage {
				t.Fatalf("usage error = %v, want %v", errors.Is(err, errUsage), c.usage)
			}
		})
	}
}

func TestRunUnknownCommandExitsTwo(t *testing.T) {
	var out, errb strings.Builder
	if code := run([]string{"frobnicate"}, nil, &out, &errb); code != 2 {
		t.Fatalf("exit %d", code)
	}
	if !strings.Contains(errb.String(), `unknown command "frobnicate"`) || !strings.Contains(errb.String(), "observe") {
		t.Fatalf("stderr: %s", errb.String())
	}
}

func TestExampleAgentConfigIsValid(t *testing.T) {
	var stderr strings.Builder
	fs, f := newAgentFlags(cmdIO{Stderr: &stderr})
	if err := parseFlags(fs, []string{"--config", "../../deploy/agent.yaml"}); err != nil {
		t.Fatal(err)
	}
	if *f.source != "ebpf" || *f.bus != "kafka://kafka-0.kafka:9092,kafka-1.kafka:9092" || len(*f.metricSpecs) != 5 ||
		(*f.metricSpecs)[1] != "drop:sourceContext=namespace;destinationContext=workload-name" {
		t.Fatalf("source=%q bus=%q metrics=%q", *f.source, *f.bus, *f.metricSpecs)
	}
	if *f.kafkaCA != "/etc/flowbus/kafka-ca.pem" || stderr.Len() != 0 {
		t.Fatalf("kafka-tls-ca-file=%q, warnings: %s", *f.kafkaCA, stderr.String())
	}
}
