package nats

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Defaults, see doc.go for the reasons.
const (
	DefaultURL           = "nats://127.0.0.1:4222"
	DefaultStream        = "FLOWBUS_FLOWS"
	DefaultSubjectPrefix = "flowbus.flows.v1" // subjects are <prefix>.<partition>
	DefaultPartitions    = 16
	MaxPartitions        = 4096 // the most partitions publishers and consumers take
	DefaultMaxAge        = 24 * time.Hour
	DefaultMaxBytes      = 4 << 30
	DefaultMaxMsgSize    = 1 << 20 // NATS's default max_payload; headers count
	DefaultDuplicates    = 2 * time.Minute
	DefaultAckTimeout    = 5 * time.Second

	DefaultDLQStream  = "FLOWBUS_DLQ"
	DefaultDLQSubject = "flowbus.dlq.flows.v1"
	DefaultDLQMaxAge  = 7 * 24 * time.Hour
	DefaultDLQBytes   = 1 << 30

	DefaultDurable        = "flowbus-aggregator"
	DefaultAckWait        = 5 * time.Minute
	DefaultMaxAckPending  = 1 << 16
	DefaultPullMaxBytes   = 2 << 20
	DefaultMaxPollRecords = 1000
)

// HeaderKey carries schemas.Message.Key: NATS has no record key, and the
// subject only says the partition.
const HeaderKey = "flowbus-key"

// StreamConfig is the JetStream stream flows are published to. It is applied
// only when the stream is missing and flowbus creates it; an existing stream
// is used as its operator configured it.
type StreamConfig struct {
	Name          string        // default DefaultStream
	SubjectPrefix string        // default DefaultSubjectPrefix; the stream binds <prefix>.>
	MaxAge        time.Duration // default DefaultMaxAge
	MaxBytes      int64         // default DefaultMaxBytes; oldest messages go first (discard old)
	MaxMsgSize    int32         // default DefaultMaxMsgSize (headers + value)
	Duplicates    time.Duration // Nats-Msg-Id dedupe window; default DefaultDuplicates
	Replicas      int           // default 1
	// Description is the stream's description; default one that says it
	// holds flow records.
	Description string
}

func (s StreamConfig) withDefaults() StreamConfig {
	if s.Name == "" {
		s.Name = DefaultStream
	}
	if s.SubjectPrefix == "" {
		s.SubjectPrefix = DefaultSubjectPrefix
	}
	if s.MaxAge == 0 {
		s.MaxAge = DefaultMaxAge
	}
	if s.MaxBytes == 0 {
		s.MaxBytes = DefaultMaxBytes
	}
	if s.MaxMsgSize == 0 {
		s.MaxMsgSize = DefaultMaxMsgSize
	}
	if s.Duplicates == 0 {
		s.Duplicates = DefaultDuplicates
	}
	if s.Replicas == 0 {
		s.Replicas = 1
	}
	if s.Description == "" {
		s.Description = "flowbus flow records, Arrow IPC streams, one subject per partition"
	}
	return s
}

func (s StreamConfig) validate() error {
	if err := validName(s.Name); err != nil {
		return fmt.Errorf("stream: %w", err)
	}
	if err := validSubject(s.SubjectPrefix); err != nil {
		return fmt.Errorf("stream subject prefix: %w", err)
	}
	if s.MaxAge < 0 || s.MaxBytes < 0 || s.Duplicates < 0 {
		return errors.New("stream: negative max age, max bytes or duplicate window")
	}
	if s.MaxMsgSize < 1024 {
		return fmt.Errorf("stream: max msg size %d, want >= 1024", s.MaxMsgSize)
	}
	if s.MaxBytes < int64(s.MaxMsgSize) {
		return fmt.Errorf("stream: max bytes %d below max msg size %d", s.MaxBytes, s.MaxMsgSize)
	}
	if s.Duplicates < 100*time.Millisecond {
		return fmt.Errorf("stream: duplicate window %s, want >= 100ms", s.Duplicates)
	}
	if s.Duplicates > s.MaxAge {
		return fmt.Errorf("stream: duplicate window %s longer than max age %s", s.Duplicates, s.MaxAge)
	}
	if s.Replicas < 1 || s.Replicas > 5 {
		return fmt.Errorf("stream: replicas %d, want 1..5", s.Replicas)
	}
	return nil
}

func (s StreamConfig) jetstream() jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:         s.Name,
		Description:  s.Description,
		Subjects:     []string{s.SubjectPrefix + ".>"},
		Storage:      jetstream.FileStorage,
		Retention:    jetstream.LimitsPolicy,
		Discard:      jetstream.DiscardOld,
		MaxAge:       s.MaxAge,
		MaxBytes:     s.MaxBytes,
		MaxMsgSize:   s.MaxMsgSize,
		Duplicates:   s.Duplicates,
		Replicas:     s.Replicas,
		MaxMsgs:      -1,
		MaxConsumers: -1,
	}
}

// dlqStream is the dead-letter stream's configuration.
func dlqStream(name, subject string, maxMsgSize int32, replicas int) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:         name,
		Description:  "flowbus messages the aggregator could not process",
		Subjects:     []string{subject},
		Storage:      jetstream.FileStorage,
		Discard:      jetstream.DiscardOld,
		MaxAge:       DefaultDLQMaxAge,
		MaxBytes:     DefaultDLQBytes,
		MaxMsgSize:   maxMsgSize + 4096, // the dead-letter headers
		Duplicates:   DefaultDuplicates,
		Replicas:     replicas,
		MaxMsgs:      -1,
		MaxConsumers: -1,
	}
}

// Conn says where the server is and how to reach it.
type Conn struct {
	// URL of the server(s), comma-separated; user:password@ or a token in
	// the URL authenticate (Auth is better: logs show URLs redacted, but a
	// URL is a flag value). Default DefaultURL.
	URL  string
	Name string // client name shown by the server; default "flowbus"
	TLS  TLS
	Auth Auth
}

func (c Conn) withDefaults() Conn {
	if c.URL == "" {
		c.URL = DefaultURL
	}
	if c.Name == "" {
		c.Name = "flowbus"
	}
	return c
}

func (c Conn) validate() error {
	for _, u := range strings.Split(c.URL, ",") {
		u = strings.TrimSpace(u)
		scheme, rest, ok := strings.Cut(u, "://")
		if !ok || rest == "" {
			return fmt.Errorf("url %q: want nats://host:port", RedactURL(u))
		}
		switch scheme {
		case "nats", "tls", "ws", "wss":
		default:
			return fmt.Errorf("url %q: unknown scheme %q (want nats, tls, ws or wss)", RedactURL(u), scheme)
		}
	}
	if err := c.TLS.validate(); err != nil {
		return err
	}
	return c.Auth.validate()
}

// PublisherConfig configures a Publisher. Zero fields take the defaults.
type PublisherConfig struct {
	Conn
	Stream     StreamConfig
	Partitions int           // subjects per stream; default DefaultPartitions. Must match the consumers'.
	AckTimeout time.Duration // wait for one publish acknowledgement before retrying; default DefaultAckTimeout
	Logger     *slog.Logger
}

func (c PublisherConfig) withDefaults() PublisherConfig {
	c.Conn = c.Conn.withDefaults()
	c.Stream = c.Stream.withDefaults()
	if c.Partitions == 0 {
		c.Partitions = DefaultPartitions
	}
	if c.AckTimeout == 0 {
		c.AckTimeout = DefaultAckTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Validate reports the first problem with c (after defaults), naming the field.
func (c PublisherConfig) Validate() error {
	c = c.withDefaults()
	if err := c.Conn.validate(); err != nil {
		return fmt.Errorf("nats publisher: %w", err)
	}
	if err := c.Stream.validate(); err != nil {
		return fmt.Errorf("nats publisher: %w", err)
	}
	if c.Partitions < 1 || c.Partitions > MaxPartitions {
		return fmt.Errorf("nats publisher: partitions %d, want 1..%d", c.Partitions, MaxPartitions)
	}
	if c.AckTimeout < 0 {
		return fmt.Errorf("nats publisher: negative ack timeout %s", c.AckTimeout)
	}
	return nil
}

// validName applies JetStream's stream and consumer name rules.
func validName(n string) error {
	if n == "" {
		return errors.New("empty name")
	}
	if strings.ContainsAny(n, ".*> \t\r\n/\\") {
		return fmt.Errorf("name %q may not contain '.', '*', '>', '/', '\\' or whitespace", n)
	}
	return nil
}

func validSubject(s string) error {
	if s == "" || strings.HasPrefix(s, ".") || strings.HasSuffix(s, ".") || strings.Contains(s, "..") {
		return fmt.Errorf("subject %q: want dot-separated tokens", s)
	}
	if strings.ContainsAny(s, "*> \t\r\n") {
		return fmt.Errorf("subject %q: no wildcards or whitespace", s)
	}
	return nil
}
