package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/flowbus/flowbus/agent/export"
	"github.com/flowbus/flowbus/internal/pkitest"
	"github.com/flowbus/flowbus/schemas"
	"github.com/flowbus/flowbus/sinks/bus"
	"github.com/flowbus/flowbus/sinks/bus/bustest"
	"github.com/flowbus/flowbus/sinks/kafka"
	"github.com/flowbus/flowbus/sinks/nats"
)

// Secrets of the tests: none may appear in any output.
const (
	natsPassword  = "nats-Pa55-4c2f9e"
	natsToken     = "nats-T0ken-81b7d3"
	kafkaPassword = "kafka-Pa55-5e0a6c"
)

// writeSecret writes a 0600 file holding value and a newline.
func writeSecret(t *testing.T, name, value string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(value+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// startNATS starts a JetStream server requiring mTLS of pki, with users
// (flowbus/natsPassword and the NKey of seedPub) or, with token, the token
// natsToken. It returns its nats:// URL.
func startNATS(t *testing.T, pki pkitest.PKI, seedPub string, token bool) string {
	t.Helper()
	opts := &server.Options{ServerName: "flowbus-busauth", Host: "127.0.0.1", Port: -1, JetStream: true,
		StoreDir: t.TempDir(), NoSigs: true, NoLog: true, MaxPayload: nats.DefaultMaxMsgSize,
		TLSConfig: pki.ServerTLS(), TLS: true, TLSVerify: true, TLSTimeout: 2}
	if token {
		opts.Authorization = natsToken
	} else {
		opts.Users = []*server.User{{Username: "flowbus", Password: natsPassword}}
		opts.Nkeys = []*server.NkeyUser{{Nkey: seedPub}}
	}
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server not ready")
	}
	return strings.Replace(s.ClientURL(), "tls://", "nats://", 1)
}

func newSeed(t *testing.T) (file, pub string) {
	t.Helper()
	kp, _ := nkeys.CreateUser()
	seed, _ := kp.Seed()
	pub, _ = kp.PublicKey()
	return writeSecret(t, "user.nk", string(seed)), pub
}

// agentPublisher builds the publisher of 'flowbus agent args'.
func agentPublisher(t *testing.T, args ...string) (export.Publisher, error) {
	t.Helper()
	fs, f := newAgentFlags(testIO())
	if err := parseFlags(fs, append([]string{"--data-dir", t.TempDir()}, args...)); err != nil {
		t.Fatalf("agent flags: %v", err)
	}
	p, err := f.newPublisher(testIO(), &agentRuntime{})
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { p.Close() })
	return p, nil
}

// aggregatorFlagsOf parses 'flowbus aggregator args'.
func aggregatorFlagsOf(t *testing.T, args ...string) aggregatorFlags {
	t.Helper()
	af, err := parseAggregatorFlags(append([]string{"--data-dir", t.TempDir(), "--metrics-address", ""}, args...), testIO())
	if err != nil {
		t.Fatalf("aggregator flags: %v", err)
	}
	return af
}

// TestNATSBusTLSAndAuthEndToEnd: flows go from the agent's publisher to the
// aggregator's consumer, both built from their flags, through a NATS server
// that requires mTLS and credentials: a user with its password from a file
// or FLOWBUS_NATS_PASSWORD, an NKey seed, a token from a file or
// FLOWBUS_NATS_TOKEN. Wrong or missing credentials fail both commands at
// start, naming what the server refused.
func TestNATSBusTLSAndAuthEndToEnd(t *testing.T) {
	pki := pkitest.New(t, t.TempDir())
	seedFile, seedPub := newSeed(t)
	tlsArgs := []string{"--nats-tls-ca-file", pki.CAFile, "--nats-tls-cert-file", pki.CertFile, "--nats-tls-key-file", pki.KeyFile}
	passFile := writeSecret(t, "nats-password", natsPassword)
	tokenFile := writeSecret(t, "nats-token", natsToken)

	for i, c := range []struct {
		name  string
		token bool // a token server
		args  []string
		env   map[string]string
	}{
		{name: "user, password file", args: []string{"--nats-user", "flowbus", "--nats-password-file", passFile}},
		{name: "user, FLOWBUS_NATS_PASSWORD", args: []string{"--nats-user", "flowbus"}, env: map[string]string{"FLOWBUS_NATS_PASSWORD": natsPassword}},
		{name: "nkey seed file", args: []string{"--nats-nkey-seed-file", seedFile}},
		{name: "token file", token: true, args: []string{"--nats-token-file", tokenFile}},
		{name: "FLOWBUS_NATS_TOKEN", token: true, env: map[string]string{"FLOWBUS_NATS_TOKEN": natsToken}},
	} {
		t.Run(c.name, func(t *testing.T) {
			for k, v := range c.env {
				t.Setenv(k, v)
			}
			u := startNATS(t, pki, seedPub, c.token)
			args := append(append([]string{"--bus", u, "--nats-partitions", "4"}, tlsArgs...), c.args...)
			pub, err := agentPublisher(t, args...)
			if err != nil {
				t.Fatalf("agent publisher: %v", err)
			}
			msgs := bustest.Messages("node-"+c.name, 100*i+1, 12)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			if err := pub.Publish(ctx, msgs); err != nil {
				t.Fatalf("publish: %v", err)
			}
			cc, err := aggregatorFlagsOf(t, args...).natsConsumerConfig()
			if err != nil {
				t.Fatal(err)
			}
			cons, err := nats.NewConsumer(cc)
			if err != nil {
				t.Fatalf("aggregator consumer: %v", err)
			}
			defer cons.Close()
			ds := bustest.PollN(t, cons, len(msgs), 20*time.Second)
			bustest.CheckDeliveries(t, ds, msgs, 4, func(*bus.Delivery, *schemas.Message) {})
		})
	}

	u := startNATS(t, pki, seedPub, false)
	wrongFile := writeSecret(t, "wrong", "not-the-password")
	for _, c := range []struct {
		name string
		args []string
		want string // after "nats publisher: " or "nats consumer: "
	}{
		{"a wrong password", []string{"--nats-user", "flowbus", "--nats-password-file", wrongFile},
			"connect " + u + `: the server refused user "flowbus" and its password: nats: Authorization Violation`},
		{"no credentials", nil,
			"connect " + u + ": the server requires credentials and none were given (a user and password, token, nkey seed or credentials file): nats: Authorization Violation"},
		{"no client certificate", []string{"--nats-tls-ca-file", pki.CAFile, "--nats-user", "flowbus", "--nats-password-file", passFile},
			"connect " + u + ": TLS: the server refused the handshake (no client certificate was given): "},
	} {
		t.Run(c.name, func(t *testing.T) {
			args := append([]string{"--bus", u}, c.args...)
			if !strings.HasPrefix(c.name, "no client") {
				args = append(args, tlsArgs...)
			}
			_, err := agentPublisher(t, args...)
			if err == nil || !strings.HasPrefix(err.Error(), "nats publisher: "+c.want) {
				t.Errorf("agent: got %v, want nats publisher: %s", err, c.want)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			err = runAggregator(ctx, append([]string{"--data-dir", t.TempDir(), "--metrics-address", ""}, args...), testIO())
			if err == nil || !strings.Contains(err.Error(), "nats consumer: "+c.want) {
				t.Errorf("aggregator: got %v, want nats consumer: %s", err, c.want)
			}
			if ctx.Err() != nil {
				t.Error("the aggregator waited for its context instead of failing")
			}
		})
	}
}

// TestNATSConnFlagErrors: what the NATS flags cannot mean together is a
// usage error saying so.
func TestNATSConnFlagErrors(t *testing.T) {
	passFile := writeSecret(t, "nats-password", natsPassword)
	empty := filepath.Join(t.TempDir(), "empty")
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		args []string
		env  string // FLOWBUS_NATS_PASSWORD
		want string
	}{
		{"a user without a password", []string{"--nats-user", "flowbus"}, "",
			`usage: --nats-user "flowbus" needs a password: --nats-password-file or FLOWBUS_NATS_PASSWORD`},
		{"a password without a user", []string{"--nats-password-file", passFile}, "",
			"usage: a NATS password needs --nats-user"},
		{"a password file and FLOWBUS_NATS_PASSWORD", []string{"--nats-user", "u", "--nats-password-file", passFile}, natsPassword,
			"usage: both --nats-password-file and FLOWBUS_NATS_PASSWORD (or the config key nats-password) are set: give one"},
		{"an empty password file", []string{"--nats-user", "u", "--nats-password-file", empty}, "",
			"--nats-password-file " + empty + " is empty"},
		{"two ways to authenticate", []string{"--nats-user", "u", "--nats-password-file", passFile, "--nats-creds-file", passFile}, "",
			"usage: give one NATS authentication: --nats-user (and its password), --nats-token-file (or FLOWBUS_NATS_TOKEN), --nats-nkey-seed-file or --nats-creds-file"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.env != "" {
				t.Setenv("FLOWBUS_NATS_PASSWORD", c.env)
			}
			af := aggregatorFlagsOf(t, append([]string{"--bus", "nats://127.0.0.1:1"}, c.args...)...)
			if _, err := af.natsConsumerConfig(); err == nil || err.Error() != c.want {
				t.Errorf("aggregator: got %v, want %s", err, c.want)
			}
			if _, err := agentPublisher(t, append([]string{"--bus", "nats://127.0.0.1:1"}, c.args...)...); err == nil || err.Error() != c.want {
				t.Errorf("agent: got %v, want %s", err, c.want)
			}
		})
	}
	t.Run("the embedded server takes no NATS TLS or authentication", func(t *testing.T) {
		_, err := agentPublisher(t, "--bus", "embedded", "--nats-user", "u", "--nats-tls-ca-file", passFile)
		want := "usage: --nats-tls-ca-file, --nats-user: for --bus nats://...; the embedded NATS server has no TLS or users"
		if err == nil || err.Error() != want {
			t.Errorf("got %v, want %s", err, want)
		}
	})
}

// TestKafkaBusTLSAndSASLEndToEnd: flows go from the agent's producer to the
// aggregator's consumer, both built from the same --kafka-tls* and
// --kafka-sasl-* flags (the password from FLOWBUS_KAFKA_SASL_PASSWORD or
// --kafka-sasl-password-file), through a broker that requires mTLS and
// SASL/SCRAM; with a wrong password nothing is published.
func TestKafkaBusTLSAndSASLEndToEnd(t *testing.T) {
	pki := pkitest.New(t, t.TempDir())
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.TLS(pki.ServerTLS()), kfake.EnableSASL(),
		kfake.Superuser(kafka.MechanismSCRAMSHA256, "flowbus", kafkaPassword))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	busURL := "kafka://" + strings.Join(c.ListenAddrs(), ",")
	conn := []string{"--bus", busURL, "--kafka-tls-ca-file", pki.CAFile, "--kafka-tls-cert-file", pki.CertFile, "--kafka-tls-key-file", pki.KeyFile,
		"--kafka-sasl-mechanism", "SCRAM-SHA-256", "--kafka-sasl-user", "flowbus"}
	passFile := writeSecret(t, "kafka-password", kafkaPassword)

	for i, p := range []struct {
		name string
		args []string
		env  string
	}{
		{"FLOWBUS_KAFKA_SASL_PASSWORD", nil, kafkaPassword},
		{"--kafka-sasl-password-file", []string{"--kafka-sasl-password-file", passFile}, ""},
	} {
		t.Run(p.name, func(t *testing.T) {
			if p.env != "" {
				t.Setenv("FLOWBUS_KAFKA_SASL_PASSWORD", p.env)
			}
			topic := "flows-" + string(rune('a'+i))
			args := append(append([]string{"--kafka-topic", topic}, conn...), p.args...)
			pub, err := agentPublisher(t, append(args, "--kafka-partitions", "3")...)
			if err != nil {
				t.Fatalf("agent producer: %v", err)
			}
			msgs := bustest.Messages("node-kafka", 100*i+1, 12)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			if err := pub.Publish(ctx, msgs); err != nil {
				t.Fatalf("publish: %v", err)
			}
			// A group per case: the first case's consumer is a static
			// member that stays in its group after Close until its
			// session expires (45 s), and would hold up this one's join.
			cc, err := aggregatorFlagsOf(t, append(args, "--group", "agg-"+topic)...).kafkaConsumerConfig()
			if err != nil {
				t.Fatal(err)
			}
			cons, err := kafka.NewConsumer(cc)
			if err != nil {
				t.Fatalf("aggregator consumer: %v", err)
			}
			defer cons.Close()
			ds := bustest.PollN(t, cons, len(msgs), 20*time.Second)
			bustest.CheckDeliveries(t, ds, msgs, 3, func(*bus.Delivery, *schemas.Message) {})
		})
	}
	t.Run("a wrong password is refused", func(t *testing.T) {
		t.Setenv("FLOWBUS_KAFKA_SASL_PASSWORD", "not-the-password")
		pub, err := agentPublisher(t, conn...)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		err = pub.Publish(ctx, bustest.Messages("node-kafka", 900, 1))
		// kfake closes the connection on a failed SCRAM exchange (a broker
		// answers SASL_AUTHENTICATION_FAILED, which franz-go reports).
		if err == nil || !strings.Contains(err.Error(), "last broker connection error: EOF") {
			t.Fatalf("publish: got %v, want the broker to close the connection", err)
		}
		if strings.Contains(err.Error(), "not-the-password") {
			t.Errorf("the error shows the password: %v", err)
		}
	})
}
