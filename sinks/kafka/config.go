package kafka

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/flowbus/flowbus/sinks/bus"
)

// Defaults, see doc.go for the reasons.
const (
	DefaultTopic             = "flowbus.flows.v1"
	DefaultDLQSuffix         = ".dlq"
	DefaultGroup             = "flowbus-aggregator"
	DefaultClientID          = "flowbus"
	DefaultMaxMessageBytes   = 1<<20 + 64<<10 // a 1 MiB Arrow value plus key, headers and batch overhead
	DefaultMaxBufferedBytes  = 256 << 20
	DefaultPartitions        = 16
	DefaultReplicationFactor = -1 // the broker's default.replication.factor
	DefaultMaxPollRecords    = 1000
)

// SASL mechanisms accepted by SASL.Mechanism.
const (
	MechanismPlain       = "PLAIN"
	MechanismSCRAMSHA256 = "SCRAM-SHA-256"
	MechanismSCRAMSHA512 = "SCRAM-SHA-512"
)

// TLS configures TLS to the brokers. TLS is used when Enable is set or any
// file is given. CAFile adds a PEM CA bundle to verify brokers (the system
// pool otherwise); CertFile and KeyFile, both or neither, give a client
// certificate; InsecureSkipVerify turns off verification (tests only).
type TLS struct {
	Enable             bool
	CAFile             string
	CertFile           string
	KeyFile            string
	ServerName         string // overrides the name checked in the broker certificate
	InsecureSkipVerify bool
}

func (t TLS) enabled() bool {
	return t.Enable || t.CAFile != "" || t.CertFile != "" || t.KeyFile != "" || t.InsecureSkipVerify || t.ServerName != ""
}

func (t TLS) validate() error { return bus.CheckTLSFiles(t.CAFile, t.CertFile, t.KeyFile) }

// Config builds the *tls.Config, or nil when TLS is off.
func (t TLS) config() (*tls.Config, error) {
	if !t.enabled() {
		return nil, nil
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName, InsecureSkipVerify: t.InsecureSkipVerify} //nolint:gosec // opt-in
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("read tls ca file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls ca file %s: no PEM certificate found", t.CAFile)
		}
		c.RootCAs = pool
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("load tls client certificate: %w", err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}

// SASL configures SASL authentication; an empty Mechanism means none.
type SASL struct {
	Mechanism string // MechanismPlain, MechanismSCRAMSHA256 or MechanismSCRAMSHA512
	User      string
	Password  string
}

func (s SASL) validate() error {
	switch strings.ToUpper(s.Mechanism) {
	case "":
		if s.User != "" || s.Password != "" {
			return errors.New("sasl: user or password given without a mechanism (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512)")
		}
		return nil
	case MechanismPlain, MechanismSCRAMSHA256, MechanismSCRAMSHA512:
		if s.User == "" {
			return fmt.Errorf("sasl %s: user is empty", s.Mechanism)
		}
		return nil
	default:
		return fmt.Errorf("sasl: unknown mechanism %q (want PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512)", s.Mechanism)
	}
}

func (s SASL) opt() kgo.Opt {
	switch strings.ToUpper(s.Mechanism) {
	case MechanismPlain:
		return kgo.SASL(plain.Auth{User: s.User, Pass: s.Password}.AsMechanism())
	case MechanismSCRAMSHA256:
		return kgo.SASL(scram.Auth{User: s.User, Pass: s.Password}.AsSha256Mechanism())
	case MechanismSCRAMSHA512:
		return kgo.SASL(scram.Auth{User: s.User, Pass: s.Password}.AsSha512Mechanism())
	}
	return nil
}

// Conn is what producers and consumers share: where the brokers are and how
// to reach them.
type Conn struct {
	Brokers  []string // host:port seed brokers; required
	ClientID string   // default DefaultClientID
	TLS      TLS
	SASL     SASL
}

func (c Conn) validate() error {
	if len(c.Brokers) == 0 {
		return errors.New("no brokers given (want host:port)")
	}
	for _, b := range c.Brokers {
		if b == "" || !strings.Contains(b, ":") || strings.Contains(b, "://") {
			return fmt.Errorf("broker %q: want host:port", b)
		}
	}
	if err := c.TLS.validate(); err != nil {
		return err
	}
	return c.SASL.validate()
}

// opts returns the client options of c (seeds, id, TLS, SASL).
func (c Conn) opts() ([]kgo.Opt, error) {
	id := c.ClientID
	if id == "" {
		id = DefaultClientID
	}
	opts := []kgo.Opt{kgo.SeedBrokers(c.Brokers...), kgo.ClientID(id)}
	tc, err := c.TLS.config()
	if err != nil {
		return nil, err
	}
	if tc != nil {
		opts = append(opts, kgo.DialTLSConfig(tc))
	}
	if o := c.SASL.opt(); o != nil {
		opts = append(opts, o)
	}
	return opts, nil
}

// ProducerConfig configures a Producer. Zero fields take the Default* values.
type ProducerConfig struct {
	Conn
	Topic string // default DefaultTopic
	// MaxMessageBytes bounds one record (key + value + headers + batch
	// overhead). It is the producer's batch limit and, on topic creation,
	// the topic's max.message.bytes. An existing topic whose
	// max.message.bytes is smaller lowers both limits to it (see doc.go).
	// Default DefaultMaxMessageBytes.
	MaxMessageBytes int
	// MaxBufferedBytes bounds what the client holds unacknowledged; Publish
	// blocks beyond it. Default DefaultMaxBufferedBytes.
	MaxBufferedBytes int
	// Linger is how long a partition waits for more records before a
	// request; 0 (the default) sends at once: the agent already batches.
	Linger time.Duration
	// CreateTopic creates Topic with Partitions and ReplicationFactor when
	// it is missing, before the first publish.
	CreateTopic       bool
	Partitions        int32 // default DefaultPartitions
	ReplicationFactor int16 // default DefaultReplicationFactor (-1: broker default)
	Logger            *slog.Logger
}

func (c ProducerConfig) withDefaults() ProducerConfig {
	if c.Topic == "" {
		c.Topic = DefaultTopic
	}
	if c.MaxMessageBytes == 0 {
		c.MaxMessageBytes = DefaultMaxMessageBytes
	}
	if c.MaxBufferedBytes == 0 {
		c.MaxBufferedBytes = DefaultMaxBufferedBytes
	}
	if c.Partitions == 0 {
		c.Partitions = DefaultPartitions
	}
	if c.ReplicationFactor == 0 {
		c.ReplicationFactor = DefaultReplicationFactor
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Validate reports the first problem with c (after defaults), naming the field.
func (c ProducerConfig) Validate() error {
	c = c.withDefaults()
	if err := c.Conn.validate(); err != nil {
		return fmt.Errorf("kafka producer: %w", err)
	}
	if err := validTopic(c.Topic); err != nil {
		return fmt.Errorf("kafka producer: %w", err)
	}
	if c.MaxMessageBytes < 1024 || c.MaxMessageBytes > 1<<30 {
		return fmt.Errorf("kafka producer: max message bytes %d out of range [1024, 1GiB]", c.MaxMessageBytes)
	}
	if c.MaxBufferedBytes < c.MaxMessageBytes {
		return fmt.Errorf("kafka producer: max buffered bytes %d is below max message bytes %d", c.MaxBufferedBytes, c.MaxMessageBytes)
	}
	if c.Linger < 0 {
		return fmt.Errorf("kafka producer: negative linger %s", c.Linger)
	}
	if c.Partitions < 1 {
		return fmt.Errorf("kafka producer: partitions %d, want >= 1", c.Partitions)
	}
	if c.ReplicationFactor < -1 {
		return fmt.Errorf("kafka producer: replication factor %d, want >= 1 or -1 for the broker default", c.ReplicationFactor)
	}
	return nil
}

// validTopic applies Kafka's topic name rules.
func validTopic(t string) error {
	if t == "" || t == "." || t == ".." || len(t) > 249 {
		return fmt.Errorf("invalid topic name %q", t)
	}
	for _, r := range t {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return fmt.Errorf("invalid topic name %q: only [a-zA-Z0-9._-] allowed", t)
		}
	}
	return nil
}
