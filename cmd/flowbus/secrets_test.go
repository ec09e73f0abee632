package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/flowbus/flowbus/internal/pkitest"
	"github.com/flowbus/flowbus/sinks/kafka"
)

// syncBuffer is a bytes.Buffer safe for the goroutines that log.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestSecretsAreNeverShown runs agents and aggregators in-process on NATS
// (mTLS, a user with its password from a file or in the --bus URL, a token
// from a file or FLOWBUS_NATS_TOKEN) and on Kafka (SASL/SCRAM with
// FLOWBUS_KAFKA_SASL_PASSWORD), at debug level, with every secret set, and
// then --help and the errors of wrong credentials and refused flags: no
// secret appears in any log line, stdout or stderr.
func TestSecretsAreNeverShown(t *testing.T) {
	const urlPassword = "url-Pa55-77e1a0" // a wrong password, in the URL
	secrets := []string{natsPassword, natsToken, kafkaPassword, urlPassword}
	pki := pkitest.New(t, t.TempDir())
	_, seedPub := newSeed(t)
	natsURL := startNATS(t, pki, seedPub, false)
	tokenURL := startNATS(t, pki, seedPub, true)
	kc, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.EnableSASL(),
		kfake.Superuser(kafka.MechanismSCRAMSHA256, "flowbus", kafkaPassword))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(kc.Close)
	kafkaURL := "kafka://" + strings.Join(kc.ListenAddrs(), ",")
	passFile := writeSecret(t, "nats-password", natsPassword)
	tokenFile := writeSecret(t, "nats-token", natsToken)
	tlsArgs := []string{"--nats-tls-ca-file", pki.CAFile, "--nats-tls-cert-file", pki.CertFile, "--nats-tls-key-file", pki.KeyFile}
	userURL := strings.Replace(natsURL, "nats://", "nats://flowbus:"+natsPassword+"@", 1)
	wrongURL := strings.Replace(natsURL, "nats://", "nats://flowbus:"+urlPassword+"@", 1)
	t.Setenv("FLOWBUS_KAFKA_SASL_PASSWORD", kafkaPassword)

	var all syncBuffer // every byte any run wrote
	check := func(t *testing.T, what string) {
		t.Helper()
		out := all.String()
		for _, s := range secrets {
			if i := strings.Index(out, s); i >= 0 {
				start, end := max(0, i-300), min(len(out), i+100)
				t.Fatalf("%s: secret %q shown:\n…%s…", what, s, out[start:end])
			}
		}
	}
	cio := func() cmdIO {
		return cmdIO{Stdin: strings.NewReader(""), Stdout: &all, Stderr: &all,
			Log: slog.New(slog.NewTextHandler(&all, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	}
	agentArgs := func(bus string, extra ...string) []string {
		return append([]string{"--source", "synthetic", "--count", "300", "--rate", "0", "--bus", bus, "--node", "n1",
			"--data-dir", t.TempDir(), "--observer-address", "", "--metrics-address", "", "--spool-dir", "off",
			"--linger", "50ms", "--aggregate-window", "100ms", "--nats-partitions", "4", "--kafka-partitions", "4"}, extra...)
	}
	aggregate := func(t *testing.T, args ...string) error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		return runAggregator(ctx, append([]string{"--data-dir", t.TempDir(), "--metrics-address", "", "--window", "1s",
			"--lateness", "100ms", "--nats-partitions", "4"}, args...), cio())
	}

	runs := []struct {
		name string
		env  map[string]string
		args []string // after the bus
		bus  string
	}{
		{name: "NATS, user and password file", bus: natsURL, args: append([]string{"--nats-user", "flowbus", "--nats-password-file", passFile}, tlsArgs...)},
		{name: "NATS, FLOWBUS_NATS_PASSWORD", bus: natsURL, env: map[string]string{"FLOWBUS_NATS_PASSWORD": natsPassword},
			args: append([]string{"--nats-user", "flowbus"}, tlsArgs...)},
		{name: "NATS, user and password in the URL", bus: userURL, args: tlsArgs},
		{name: "NATS, token file", bus: tokenURL, args: append([]string{"--nats-token-file", tokenFile}, tlsArgs...)},
		{name: "NATS, FLOWBUS_NATS_TOKEN", bus: tokenURL, env: map[string]string{"FLOWBUS_NATS_TOKEN": natsToken}, args: tlsArgs},
		{name: "Kafka, FLOWBUS_KAFKA_SASL_PASSWORD", bus: kafkaURL,
			args: []string{"--kafka-sasl-mechanism", "SCRAM-SHA-256", "--kafka-sasl-user", "flowbus"}},
	}
	for _, r := range runs {
		t.Run(r.name, func(t *testing.T) {
			for k, v := range r.env {
				t.Setenv(k, v)
			}
			if err := runAgent(context.Background(), agentArgs(r.bus, r.args...), cio()); err != nil {
				t.Fatalf("agent: %v", err)
			}
			if err := aggregate(t, append([]string{"--bus", r.bus}, r.args...)...); err != nil {
				t.Fatalf("aggregator: %v", err)
			}
			if !strings.Contains(all.String(), "aggregator starting") || !strings.Contains(all.String(), "level=DEBUG") {
				t.Fatalf("no debug log captured:\n%s", all.String())
			}
			check(t, r.name)
		})
	}

	t.Run("wrong credentials", func(t *testing.T) {
		if err := runAgent(context.Background(), agentArgs(wrongURL, tlsArgs...), cio()); err == nil {
			t.Fatal("agent: no error")
		} else {
			io.WriteString(&all, err.Error())
		}
		if err := aggregate(t, append([]string{"--bus", wrongURL}, tlsArgs...)...); err == nil {
			t.Fatal("aggregator: no error")
		} else {
			io.WriteString(&all, err.Error())
		}
		check(t, "errors of wrong credentials")
	})

	t.Run("help, usage errors and refusals through run", func(t *testing.T) {
		t.Setenv("FLOWBUS_LOG_LEVEL", "debug")
		t.Setenv("FLOWBUS_NATS_PASSWORD", natsPassword)
		t.Setenv("FLOWBUS_NATS_TOKEN", natsToken)
		world := filepath.Join(t.TempDir(), "world.yaml")
		if err := os.WriteFile(world, []byte("kafka-sasl-password: "+kafkaPassword+"\nnats-token: "+natsToken+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		for _, args := range [][]string{
			{"agent", "--help"},
			{"aggregator", "--help"},
			{"demo", "--help"},
			{"agent", "--nats-password", natsPassword},
			{"aggregator", "--nats-token=" + natsToken},
			{"aggregator", "--kafka-sasl-password", kafkaPassword, "--bus", "bogus://" + urlPassword + "@x"},
			{"aggregator", "--bus", wrongURL, "--metrics-address", "", "--data-dir", t.TempDir(), "--nats-tls-ca-file", pki.CAFile,
				"--nats-tls-cert-file", pki.CertFile, "--nats-tls-key-file", pki.KeyFile},
			{"agent", "--bus", "nats://" + urlPassword + "@127.0.0.1:1", "--unknown-flag"},
			{"agent", "--config", world},
			{"aggregator", "--config", world},
		} {
			code, out, errs := runCommand(args...)
			io.WriteString(&all, out+errs)
			if len(args) > 1 && args[1] != "--help" && code == 0 {
				t.Errorf("flowbus %s: exit 0", strings.Join(args, " "))
			}
		}
		check(t, "run's output")
	})
}
