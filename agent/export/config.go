package export

import (
	"errors"
	"fmt"
	"time"

	"github.com/flowbus/flowbus/sinks/spool"
)

// Defaults of Config.
const (
	DefaultMaxRows         = 8192
	DefaultMaxBytes        = 1 << 20
	DefaultLinger          = time.Second
	DefaultMaxMessageBytes = 1<<20 - 16<<10 // NATS's default max_payload (1 MiB) less room for headers
	DefaultQueueMessages   = 64
	DefaultPublishBatch    = 16
	DefaultDrainTimeout    = 5 * time.Second
	DefaultRetryMin        = 100 * time.Millisecond
	DefaultRetryMax        = 2 * time.Second
)

// Config configures an Exporter. Zero fields take the defaults above.
type Config struct {
	Node string // node name, in every message (required)
	Run  string // producer run ID; default: the start time, RFC 3339 with ns

	MaxRows  int           // rows per batch before it is sent (8192)
	MaxBytes int           // estimated in-memory bytes per batch before it is sent (1 MiB)
	Linger   time.Duration // longest a batch waits for more rows (1 s)

	// MaxMessageBytes bounds one encoded message (1008 KiB: NATS's default
	// max_payload of 1 MiB, which counts headers too, less 16 KiB for them);
	// a larger encoded batch is split in halves.
	MaxMessageBytes int

	QueueMessages int // in-memory queue of encoded messages (64)
	PublishBatch  int // messages per Publish call (16)
	// PublishTimeout bounds one Publish call; 0 (the default) means no
	// bound: a Publish may block while the bus is down (the queue then fills
	// and new messages go to the spool) and is only cancelled at the end of
	// the shutdown drain. A bound makes a sink that retries inside Publish
	// (sinks/kafka, sinks/nats) give up and be called again with the same
	// messages; records of the abandoned call may still land, which NATS
	// deduplicates by Nats-Msg-Id but Kafka does not.
	PublishTimeout time.Duration
	// DrainTimeout is how long Run keeps trying the bus after its input
	// closed before it spools what is left (5 s).
	DrainTimeout time.Duration
	RetryMin     time.Duration // first retry delay after a failed Publish (100 ms)
	RetryMax     time.Duration // longest retry delay (2 s)

	// Spool is the disk spool used while the bus is down or slow. An empty
	// Spool.Dir disables it: a message that finds the queue full is then
	// dropped and counted (reason queue_full).
	Spool spool.Config
}

func (c Config) withDefaults() Config {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	defd := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	def(&c.MaxRows, DefaultMaxRows)
	def(&c.MaxBytes, DefaultMaxBytes)
	def(&c.MaxMessageBytes, DefaultMaxMessageBytes)
	def(&c.QueueMessages, DefaultQueueMessages)
	def(&c.PublishBatch, DefaultPublishBatch)
	defd(&c.Linger, DefaultLinger)
	defd(&c.DrainTimeout, DefaultDrainTimeout)
	defd(&c.RetryMin, DefaultRetryMin)
	defd(&c.RetryMax, DefaultRetryMax)
	return c
}

// Validate reports a Config that cannot work.
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	if c.Node == "" {
		errs = append(errs, errors.New("export node name is empty"))
	}
	for _, v := range []struct {
		name string
		v    int
	}{{"max rows", c.MaxRows}, {"max bytes", c.MaxBytes}, {"max message bytes", c.MaxMessageBytes}, {"queue messages", c.QueueMessages}, {"publish batch", c.PublishBatch}} {
		if v.v < 1 {
			errs = append(errs, fmt.Errorf("export %s %d: must be positive", v.name, v.v))
		}
	}
	if c.MaxMessageBytes < 4096 {
		errs = append(errs, fmt.Errorf("export max message bytes %d: must be at least 4096", c.MaxMessageBytes))
	}
	for _, v := range []struct {
		name string
		v    time.Duration
	}{{"linger", c.Linger}, {"publish timeout", c.PublishTimeout}, {"drain timeout", c.DrainTimeout}, {"retry min", c.RetryMin}, {"retry max", c.RetryMax}} {
		if v.v < 0 {
			errs = append(errs, fmt.Errorf("export %s %v: must not be negative", v.name, v.v))
		}
	}
	if c.Spool.Dir != "" {
		if err := c.Spool.Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
