package kafka

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flowbus/flowbus/sinks/bus/bustest"
	"github.com/twmb/franz-go/pkg/kfake"
)

func TestValidateNamesTheBadField(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	ok := Conn{Brokers: []string{"kafka-0:9092"}}
	producers := []struct {
		name string
		cfg  ProducerConfig
		want string // "" = valid
	}{
		{"a config with only brokers is valid", ProducerConfig{Conn: ok}, ""},
		{"no brokers are rejected", ProducerConfig{}, "no brokers given"},
		{"a broker URL instead of host:port is rejected", ProducerConfig{Conn: Conn{Brokers: []string{"kafka://k:9092"}}}, `broker "kafka://k:9092": want host:port`},
		{"a broker without port is rejected", ProducerConfig{Conn: Conn{Brokers: []string{"kafka-0"}}}, "want host:port"},
		{"a topic with a slash is rejected", ProducerConfig{Conn: ok, Topic: "flows/v1"}, `invalid topic name "flows/v1"`},
		{"a tiny max message size is rejected", ProducerConfig{Conn: ok, MaxMessageBytes: 100}, "max message bytes 100 out of range"},
		{"a buffer smaller than one message is rejected", ProducerConfig{Conn: ok, MaxBufferedBytes: 4096}, "max buffered bytes 4096 is below max message bytes"},
		{"negative linger is rejected", ProducerConfig{Conn: ok, Linger: -time.Second}, "negative linger"},
		{"negative partitions are rejected", ProducerConfig{Conn: ok, Partitions: -3}, "partitions -3"},
		{"replication factor below -1 is rejected", ProducerConfig{Conn: ok, ReplicationFactor: -2}, "replication factor -2"},
		{"an unknown SASL mechanism is rejected", ProducerConfig{Conn: Conn{Brokers: ok.Brokers, SASL: SASL{Mechanism: "GSSAPI", User: "u"}}}, `unknown mechanism "GSSAPI"`},
		{"SASL without user is rejected", ProducerConfig{Conn: Conn{Brokers: ok.Brokers, SASL: SASL{Mechanism: MechanismSCRAMSHA512}}}, "sasl SCRAM-SHA-512: user is empty"},
		{"SASL credentials without mechanism are rejected", ProducerConfig{Conn: Conn{Brokers: ok.Brokers, SASL: SASL{User: "u", Password: "p"}}}, "without a mechanism"},
		{"a client cert without key is rejected", ProducerConfig{Conn: Conn{Brokers: ok.Brokers, TLS: TLS{CertFile: notPEM}}}, "cert file and key file must be given together"},
		{"a missing CA file is rejected", ProducerConfig{Conn: Conn{Brokers: ok.Brokers, TLS: TLS{CAFile: filepath.Join(dir, "nope.pem")}}}, "nope.pem: no such file"},
	}
	for _, tc := range producers {
		t.Run(tc.name, func(t *testing.T) {
			checkErr(t, tc.cfg.Validate(), tc.want)
		})
	}
	consumers := []struct {
		name string
		cfg  ConsumerConfig
		want string
	}{
		{"a consumer config with only brokers is valid", ConsumerConfig{Conn: ok}, ""},
		{"a dead-letter topic equal to the topic is rejected", ConsumerConfig{Conn: ok, Topic: "a", DLQTopic: "a"}, "dead-letter topic equals the topic a"},
		{"a bad dead-letter topic is rejected", ConsumerConfig{Conn: ok, DLQTopic: "a b"}, `dead-letter invalid topic name "a b"`},
		{"a negative max poll is rejected", ConsumerConfig{Conn: ok, MaxPollRecords: -1}, "max poll records -1"},
		{"a negative session timeout is rejected", ConsumerConfig{Conn: ok, SessionTimeout: -time.Second}, "negative group timeout"},
	}
	for _, tc := range consumers {
		t.Run(tc.name, func(t *testing.T) {
			checkErr(t, tc.cfg.Validate(), tc.want)
		})
	}
	t.Run("a CA file without a PEM certificate fails the producer's construction", func(t *testing.T) {
		_, err := NewProducer(ProducerConfig{Conn: Conn{Brokers: ok.Brokers, TLS: TLS{CAFile: notPEM}}})
		checkErr(t, err, "no PEM certificate found")
	})
}

func checkErr(t *testing.T, err error, want string) {
	t.Helper()
	switch {
	case want == "" && err != nil:
		t.Errorf("got %v, want valid", err)
	case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
		t.Errorf("got %v, want an error containing %q", err, want)
	}
}

func TestSASLMechanismsAuthenticateAgainstTheBroker(t *testing.T) {
	for _, mech := range []string{MechanismPlain, MechanismSCRAMSHA256, MechanismSCRAMSHA512} {
		t.Run(mech+" with the right password publishes and a wrong one does not", func(t *testing.T) {
			c := newCluster(t, kfake.EnableSASL(), kfake.Superuser(mech, "agent", "s3cret"), kfake.SeedTopics(2, DefaultTopic))
			good := newProducer(t, ProducerConfig{Conn: Conn{Brokers: c.ListenAddrs(), SASL: SASL{Mechanism: mech, User: "agent", Password: "s3cret"}}})
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := good.Publish(ctx, bustest.Messages("node-s", 1, 4)); err != nil {
				t.Fatalf("publish with the right password: %v", err)
			}
			bad := newProducer(t, ProducerConfig{Conn: Conn{Brokers: c.ListenAddrs(), SASL: SASL{Mechanism: mech, User: "agent", Password: "wrong"}}})
			bctx, bcancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
			defer bcancel()
			err := bad.Publish(bctx, bustest.Messages("node-s", 5, 4))
			if err == nil || !strings.Contains(err.Error(), "last broker connection error") || !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("publish with a wrong password: got %v, want a deadline error naming the connection failure", err)
			}
			cons := newConsumer(t, ConsumerConfig{Conn: Conn{Brokers: c.ListenAddrs(), SASL: SASL{Mechanism: mech, User: "agent", Password: "s3cret"}}, Group: "g-sasl"})
			defer cons.Close()
			ds := bustest.PollN(t, cons, 4, 10*time.Second)
			ds = append(ds, bustest.PollQuiet(t, cons, 300*time.Millisecond)...)
			checkDeliveries(t, ds, bustest.Messages("node-s", 1, 4), 2)
		})
	}
}
