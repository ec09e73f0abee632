package bus

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Delivery is one message read from the bus. Its Key and Value belong to
// the caller.
type Delivery struct {
	Topic     string // Kafka topic, or NATS subject (<prefix>.<partition>)
	Partition int32
	// Offset is the Kafka offset, or the NATS stream sequence: increasing
	// within a partition (with gaps on NATS, where partitions share the
	// stream's sequence).
	Offset int64
	Key    []byte // Kafka record key, or NATS header flowbus-key
	Value  []byte
	// Headers has one value per name: the last of a repeated Kafka header,
	// the first of a repeated NATS one.
	Headers map[string]string
	// Time is the broker's timestamp: the Kafka record timestamp (producer
	// time), or when the NATS stream stored the message.
	Time time.Time
}

// Record is a message to publish that is not a flow message (those are
// schemas.Message): what a transport's PublishRecords sends, for example
// the OCSF events of 'flowbus ocsf'. Key places it as a flow message's key
// does (the Kafka record key; on NATS the partition of the subject and the
// flowbus-key header), Headers are sent in order, and ID, when not empty,
// is the NATS Nats-Msg-Id the stream deduplicates on (Kafka ignores it).
type Record struct {
	Key     string
	Value   []byte
	Headers [][2]string
	ID      string
}

// ErrClosed is wrapped by a consumer's Poll once the consumer is closed.
var ErrClosed = errors.New("consumer closed")

// ErrTooLarge is wrapped when a message cannot fit under the bus limit: by
// Publish, which then sent nothing of that call, and by a Kafka dead letter
// whose key and headers alone exceed the dead-letter topic's limit.
var ErrTooLarge = errors.New("message larger than the bus limit")

// Dead-letter headers, added to a dead letter's own (see the package doc).
const (
	HeaderDLQReason    = "flowbus-dlq-reason"
	HeaderDLQPartition = "flowbus-dlq-partition"
	HeaderDLQOffset    = "flowbus-dlq-offset"
	// HeaderDLQTruncated is set, to the original value's length in bytes,
	// on a dead letter whose value was cut to fit the dead-letter topic or
	// stream.
	HeaderDLQTruncated = "flowbus-dlq-truncated"
)

// MaxReasonBytes bounds the HeaderDLQReason value, so that a message near
// the size limit still fits with it.
const MaxReasonBytes = 1024

// DeadLetterHeaders returns the headers of d's dead letter as name/value
// pairs: d's own headers in name order, without any dead-letter header,
// then HeaderDLQReason (reason, cut to MaxReasonBytes on a rune boundary
// with "..." at the end), HeaderDLQPartition and HeaderDLQOffset.
// HeaderDLQTruncated is the caller's to add when it cuts the value.
func DeadLetterHeaders(d Delivery, reason string) [][2]string {
	hs := make([][2]string, 0, len(d.Headers)+4)
	for k, v := range d.Headers {
		switch k {
		case HeaderDLQReason, HeaderDLQPartition, HeaderDLQOffset, HeaderDLQTruncated:
			continue
		}
		hs = append(hs, [2]string{k, v})
	}
	slices.SortFunc(hs, func(a, b [2]string) int { return strings.Compare(a[0], b[0]) })
	return append(hs,
		[2]string{HeaderDLQReason, clip(reason)},
		[2]string{HeaderDLQPartition, strconv.Itoa(int(d.Partition))},
		[2]string{HeaderDLQOffset, strconv.FormatInt(d.Offset, 10)},
	)
}

// clip cuts reason to MaxReasonBytes on a rune boundary, ending it with
// "...".
func clip(reason string) string {
	if len(reason) <= MaxReasonBytes {
		return reason
	}
	n := MaxReasonBytes - 3
	for n > 0 && !utf8.RuneStart(reason[n]) {
		n--
	}
	return reason[:n] + "..."
}

// CheckTLSFiles checks a transport's TLS files before it connects: a client
// certificate and its key come together, and every file given exists.
func CheckTLSFiles(caFile, certFile, keyFile string) error {
	if (certFile == "") != (keyFile == "") {
		return errors.New("tls: cert file and key file must be given together")
	}
	for _, f := range []string{caFile, certFile, keyFile} {
		if f == "" {
			continue
		}
		if _, err := os.Stat(f); err != nil {
			return fmt.Errorf("tls: %w", err)
		}
	}
	return nil
}
