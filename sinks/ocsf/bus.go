package ocsf

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"

	"github.com/flowbus/flowbus/sinks/bus"
)

// Headers of the events BusSink publishes, beside the transport's own
// (the NATS flowbus-key and Nats-Msg-Id).
const (
	HeaderContentType = "content-type"   // ContentTypeJSON
	HeaderSchema      = "flowbus-schema" // BusSchema
	HeaderClassUID    = "ocsf-class-uid" // the event's class_uid: 4001, 4002 or 4003

	ContentTypeJSON = "application/json"
	// BusSchema names what a record of a BusSink holds: one OCSF event of
	// SchemaVersion as JSON.
	BusSchema = "ocsf/" + SchemaVersion
)

// RecordPublisher is what a BusSink publishes with: sinks/kafka's Producer
// or sinks/nats's Publisher. PublishRecords returns nil only once the
// broker acknowledged every record, and blocks, retrying, while it is
// unreachable, until ctx ends.
type RecordPublisher interface {
	PublishRecords(ctx context.Context, recs []bus.Record) error
}

// BusConfig configures a BusSink.
type BusConfig struct {
	Publisher RecordPublisher
	// Name says where the events go in errors ("kafka topic flowbus.ocsf.v1").
	Name string
	// BatchEvents and BatchBytes bound the events held before they are
	// published (defaults DefaultBusBatchEvents, DefaultBusBatchBytes).
	BatchEvents int
	BatchBytes  int
}

// Defaults of BusConfig.
const (
	DefaultBusBatchEvents = 2000
	DefaultBusBatchBytes  = 4 << 20
)

// BusStats counts the events through a BusSink.
type BusStats struct {
	Published uint64 // events the broker acknowledged
	Batches   uint64 // PublishRecords calls that succeeded
}

// BusSink publishes OCSF events to a Kafka topic or NATS subjects, one
// record per event, keyed as the flows are on the flows topic (the
// destination workload, schemas.Flow.PartitionKey), so that the events of
// one workload stay in order in one partition. Each record has the headers
// content-type (application/json), flowbus-schema (BusSchema) and
// ocsf-class-uid.
//
// Delivery is at least once: Write holds events and publishes them in
// batches, and Flush returns nil only once the broker acknowledged
// everything written before it; a caller commits its input after Flush.
// After an error the events not acknowledged stay held and the next Flush
// publishes them again (some may then be stored twice, as after a restart;
// NATS drops the repeats of an ID within its duplicate window). Safe for
// concurrent use; Write and Flush block while a batch is published.
type BusSink struct {
	cfg   BusConfig
	mu    sync.Mutex
	recs  []bus.Record
	lens  []int  // of each held event
	arena []byte // the held events' bytes, back to back
	stats BusStats
}

// NewBus returns a BusSink publishing with cfg.Publisher.
func NewBus(cfg BusConfig) (*BusSink, error) {
	if cfg.Publisher == nil {
		return nil, errors.New("ocsf bus sink: no publisher")
	}
	if cfg.Name == "" {
		cfg.Name = "bus"
	}
	if cfg.BatchEvents <= 0 {
		cfg.BatchEvents = DefaultBusBatchEvents
	}
	if cfg.BatchBytes <= 0 {
		cfg.BatchBytes = DefaultBusBatchBytes
	}
	return &BusSink{cfg: cfg}, nil
}

// classHeaders are the headers of each class, shared by its records.
var classHeaders = map[int][][2]string{}

func headersOf(class int) [][2]string {
	if hs, ok := classHeaders[class]; ok {
		return hs
	}
	return [][2]string{{HeaderContentType, ContentTypeJSON}, {HeaderSchema, BusSchema}, {HeaderClassUID, strconv.Itoa(class)}}
}

func init() {
	for _, c := range []int{ClassNetworkActivity, ClassHTTPActivity, ClassDNSActivity} {
		classHeaders[c] = [][2]string{{HeaderContentType, ContentTypeJSON}, {HeaderSchema, BusSchema}, {HeaderClassUID, strconv.Itoa(c)}}
	}
}

// Write holds event (copied) with its partition key, its class_uid and id,
// a stable identity of the record it comes from (the NATS Nats-Msg-Id, so
// that an event emitted again after a restart is stored once within the
// stream's duplicate window); it publishes the held events once they reach
// BatchEvents or BatchBytes.
func (s *BusSink) Write(ctx context.Context, event []byte, key string, class int, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.recs) >= s.cfg.BatchEvents || len(s.arena) > 0 && len(s.arena)+len(event) > s.cfg.BatchBytes {
		if err := s.flush(ctx); err != nil {
			return err
		}
	}
	if len(s.recs) == 0 {
		s.arena = s.arena[:0]
	}
	// The arena may grow (and move) while events are added: the records
	// take their slices of it once the batch is published.
	s.arena = append(s.arena, event...)
	s.recs = append(s.recs, bus.Record{Key: key, Headers: headersOf(class), ID: id})
	s.lens = append(s.lens, len(event))
	return nil
}

// Flush publishes the held events and returns once the broker acknowledged
// them all.
func (s *BusSink) Flush(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.flush(ctx)
}

func (s *BusSink) flush(ctx context.Context) error {
	if len(s.recs) == 0 {
		return nil
	}
	off := 0
	for i := range s.recs {
		n := s.lens[i]
		s.recs[i].Value = s.arena[off : off+n : off+n]
		off += n
	}
	if err := s.cfg.Publisher.PublishRecords(ctx, s.recs); err != nil {
		return fmt.Errorf("ocsf to %s: %d events not acknowledged: %w", s.cfg.Name, len(s.recs), err)
	}
	s.stats.Published += uint64(len(s.recs))
	s.stats.Batches++
	clear(s.recs)
	s.recs, s.lens = s.recs[:0], s.lens[:0]
	return nil
}

// Held is the number of events written and not yet acknowledged.
func (s *BusSink) Held() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.recs)
}

// Stats returns the counters.
func (s *BusSink) Stats() BusStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}
