// Package bus holds what flowbus's two transports, sinks/kafka and
// sinks/nats, have in common, so that the aggregator consumes either through
// one set of types: Delivery, the message a consumer's Poll returns and its
// DeadLetter takes; the sentinel errors ErrClosed and ErrTooLarge; and the
// dead-letter headers with DeadLetterHeaders, which builds them.
//
// It imports nothing of flowbus, and holds no transport code: connecting,
// publishing, committing and dead-lettering stay in the transport packages.
// The aggregator consumes bus.Delivery as it comes from either transport.
// Package bustest holds what the two transports' tests share.
//
// # Dead letters
//
// A message the aggregator cannot process is copied, with its key, value
// and headers, to the transport's dead-letter topic (Kafka) or stream
// (NATS), with three headers added: HeaderDLQReason (the reason label, cut
// at MaxReasonBytes on a rune boundary), HeaderDLQPartition and
// HeaderDLQOffset (where the original stays while retention keeps it). A
// value too large for the dead-letter destination is cut to fit rather than
// refused, and HeaderDLQTruncated then gives its original length in bytes.
// Dead-letter headers the message already carries (a dead letter read back
// and dead-lettered again) are replaced, never repeated.
package bus
