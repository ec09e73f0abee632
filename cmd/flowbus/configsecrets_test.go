package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestConfigFileWithSecretsMustBeOwnerOnly: a --config file that sets a
// secret (kafka-sasl-password, nats-password, nats-token) to a value is
// refused, naming the keys and saying chmod 600, when group or others may
// read it; owner-only files, files without secrets and secrets left empty
// are taken. For agent and aggregator alike.
func TestConfigFileWithSecretsMustBeOwnerOnly(t *testing.T) {
	for _, c := range []struct {
		name string
		body string
		mode os.FileMode
		keys string // in the error; "" when the file is taken
	}{
		{"kafka-sasl-password, 0644", "kafka-sasl-password: k\n", 0o644, "kafka-sasl-password"},
		{"nats-password, 0640", "nats-user: u\nnats-password: p\n", 0o640, "nats-password"},
		{"nats-token, 0604", "nats-token: t\n", 0o604, "nats-token"},
		{"all three, 0444", "nats-token: t\nkafka-sasl-password: k\nnats-password: p\n", 0o444, "kafka-sasl-password, nats-password, nats-token"},
		{"secrets, 0600", "kafka-sasl-password: k\nnats-password: p\nnats-user: u\n", 0o600, ""},
		{"secrets, 0400", "nats-token: t\n", 0o400, ""},
		{"no secret, 0644", "nats-user: u\nnats-password-file: /etc/flowbus/nats-password\n", 0o644, ""},
		{"a secret left empty, 0644", "kafka-sasl-password: \"\"\nnats-token:\n", 0o644, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "flowbus.yaml")
			if err := os.WriteFile(p, []byte(c.body), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(p, c.mode); err != nil {
				t.Fatal(err)
			}
			want := ""
			if c.keys != "" {
				want = "config " + p + " holds secrets (" + c.keys + ") and is readable by group or others (mode " + octal(c.mode) + "): chmod 600 " + p
			}
			afs, _ := newAgentFlags(testIO())
			gfs, _ := newAggregatorFlags(testIO())
			for cmd, fs := range map[string]*flagSet{"agent": afs, "aggregator": gfs} {
				err := parseFlags(fs, []string{"--config", p})
				switch {
				case want == "" && err != nil:
					t.Errorf("%s: %v", cmd, err)
				case want != "" && (err == nil || err.Error() != want):
					t.Errorf("%s: got\n%v\nwant\n%s", cmd, err, want)
				}
			}
		})
	}
	t.Run("the exit code is 1 and the message one line", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "agent.yaml")
		if err := os.WriteFile(p, []byte("kafka-sasl-password: k\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, 0o644); err != nil { // whatever the umask
			t.Fatal(err)
		}
		code, out, errs := runCommand("agent", "--config", p)
		want := "flowbus agent: config " + p + " holds secrets (kafka-sasl-password) and is readable by group or others (mode 0644): chmod 600 " + p + "\n"
		if code != 1 || out != "" || errs != want {
			t.Errorf("exit %d, stdout %q, stderr\n%q\nwant exit 1 and\n%q", code, out, errs, want)
		}
	})
}

func octal(m os.FileMode) string {
	const digits = "01234567"
	p := m.Perm()
	return "0" + string(digits[p>>6&7]) + string(digits[p>>3&7]) + string(digits[p&7])
}

// TestSecretFlagsOnTheCommandLine: --nats-password and --nats-token are
// refused on the command line, with a usage error saying where to put them
// instead; --kafka-sasl-password is taken with a warning. None of the
// messages shows the value.
func TestSecretFlagsOnTheCommandLine(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"agent", "--nats-password", "pw1"},
			"flowbus agent: --nats-password is not taken on the command line, where other users see it (ps): set FLOWBUS_NATS_PASSWORD or the config key nats-password, or --nats-password-file\nRun 'flowbus agent --help' for the flags.\n"},
		{[]string{"aggregator", "--nats-token=pw2"},
			"flowbus aggregator: --nats-token is not taken on the command line, where other users see it (ps): set FLOWBUS_NATS_TOKEN or the config key nats-token, or --nats-token-file\nRun 'flowbus aggregator --help' for the flags.\n"},
		{[]string{"aggregator", "--kafka-sasl-password", "pw3", "--bus", "udp://x"},
			"--kafka-sasl-password on the command line is seen by other users (ps): prefer FLOWBUS_KAFKA_SASL_PASSWORD, or --kafka-sasl-password-file\n" +
				"flowbus aggregator: --bus \"udp://x\": scheme must be kafka or nats\nRun 'flowbus aggregator --help' for the flags.\n"},
	} {
		code, out, errs := runCommand(c.args...)
		if code != 2 || out != "" || errs != c.want {
			t.Errorf("flowbus %s: exit %d, stdout %q, stderr\n%q\nwant exit 2 and\n%q", strings.Join(c.args, " "), code, out, errs, c.want)
		}
	}
	t.Run("FLOWBUS_NATS_PASSWORD and the config key are taken", func(t *testing.T) {
		t.Setenv("FLOWBUS_NATS_PASSWORD", "from-env")
		af, err := parseAggregatorFlags([]string{"--nats-user", "u", "--bus", "nats://h:4222"}, testIO())
		if err != nil {
			t.Fatal(err)
		}
		cc, err := af.natsConsumerConfig()
		if err != nil || cc.Auth.Password != "from-env" || cc.Auth.User != "u" {
			t.Fatalf("got %+v, %v", cc.Auth, err)
		}
		t.Setenv("FLOWBUS_NATS_PASSWORD", "")
		os.Unsetenv("FLOWBUS_NATS_PASSWORD")
		af, err = parseAggregatorFlags([]string{"--config", writeConfig(t, "nats-token: from-file\nbus: nats://h:4222\n")}, testIO())
		if err != nil {
			t.Fatal(err)
		}
		if cc, err := af.natsConsumerConfig(); err != nil || cc.Auth.Token != "from-file" {
			t.Fatalf("got %+v, %v", cc.Auth, err)
		}
	})
}

// TestKafkaURLTakesNoPassword: a kafka:// --bus with user:password@ is a
// usage error that does not repeat it, for agent and aggregator.
func TestKafkaURLTakesNoPassword(t *testing.T) {
	want := "usage: --bus: a kafka:// URL takes no user or password: use --kafka-sasl-user and FLOWBUS_KAFKA_SASL_PASSWORD or --kafka-sasl-password-file"
	bus := "kafka://flowbus:pw4@k:9092"
	if _, err := agentPublisher(t, "--bus", bus); err == nil || err.Error() != want {
		t.Errorf("agent: got %v, want %s", err, want)
	}
	if _, err := aggregatorFlagsOf(t, "--bus", bus).kafkaConsumerConfig(); err == nil || err.Error() != want {
		t.Errorf("aggregator: got %v, want %s", err, want)
	}
}
