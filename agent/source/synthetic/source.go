package synthetic

import (
	"context"
	"errors"
	"fmt"
	"time"

	flowpb "github.com/cilium/cilium/api/v1/flow"

	"github.com/flowbus/flowbus/schemas"
)

// Defaults of Config.
const (
	DefaultNode      = "node-1"
	DefaultBatchSize = 512
)

// Config configures the synthetic source.
type Config struct {
	Seed  int64   // same seed, same flows
	Rate  float64 // flows per second; 0 = as fast as possible
	Count uint64  // stop after this many flows; 0 = until the context ends
	Node  string  // node name of every flow (default "node-1")
	// Start is the timestamp of the first flow; flow i is at Start + i/Rate
	// (i µs apart when Rate is 0). Zero means the time New is called, so a
	// live run carries current times; tests set it for determinism.
	Start           time.Time
	BatchSize       int  // flows per batch sent downstream (default 512)
	RecordLatencies bool // keep every HTTP latency in Totals (memory grows with Count)
}

func (c Config) withDefaults() Config {
	if c.Node == "" {
		c.Node = DefaultNode
	}
	if c.BatchSize == 0 {
		c.BatchSize = DefaultBatchSize
	}
	if c.Start.IsZero() {
		c.Start = time.Now()
	}
	return c
}

// Validate reports a Config that cannot work.
func (c Config) Validate() error {
	var errs []error
	if c.Rate < 0 {
		errs = append(errs, fmt.Errorf("synthetic rate %v: must not be negative", c.Rate))
	}
	if c.BatchSize < 0 {
		errs = append(errs, fmt.Errorf("synthetic batch size %d: must not be negative", c.BatchSize))
	}
	return errors.Join(errs...)
}

// Source is the synthetic flow source: a Generator paced to Config.Rate.
type Source struct {
	gen  *Generator
	cfg  Config
	free chan []schemas.Flow // batches handed back by Recycle
}

// New returns a synthetic Source.
func New(cfg Config) (*Source, error) {
	cfg = cfg.withDefaults()
	g, err := NewGenerator(cfg)
	if err != nil {
		return nil, err
	}
	return &Source{gen: g, cfg: cfg, free: make(chan []schemas.Flow, 32)}, nil
}

// Name returns "synthetic".
func (s *Source) Name() string { return "synthetic" }

// Totals returns the exact totals of the flows generated so far.
func (s *Source) Totals() Totals { return s.gen.Totals() }

// Recycle takes back a batch the receiver is done with, to be filled again
// (agent.Recycler). Safe for concurrent use with Run.
func (s *Source) Recycle(batch []schemas.Flow) {
	select {
	case s.free <- batch[:cap(batch)]:
	default:
	}
}

// Run sends batches of generated flows on out until Config.Count flows are
// sent or ctx ends, pacing them to Config.Rate; it returns nil then. Each
// batch is owned by the receiver until it hands it back with Recycle. The synthetic source loses
// nothing, so lost is never called.
func (s *Source) Run(ctx context.Context, out chan<- []schemas.Flow, lost func(flowpb.LostEventSource, uint64)) error {
	batch := s.cfg.BatchSize
	if s.cfg.Rate > 0 {
		// At least ~100 batches a second, so a slow rate still flows smoothly.
		batch = max(1, min(batch, int(s.cfg.Rate/100)))
	}
	start := time.Now()
	var sent uint64
	for {
		n := batch
		if s.cfg.Count > 0 {
			if sent >= s.cfg.Count {
				return nil
			}
			n = int(min(uint64(n), s.cfg.Count-sent))
		}
		if s.cfg.Rate > 0 {
			due := start.Add(time.Duration(float64(sent) / s.cfg.Rate * float64(time.Second)))
			if d := time.Until(due); d > 0 {
				t := time.NewTimer(d)
				select {
				case <-ctx.Done():
					t.Stop()
					return nil
				case <-t.C:
				}
			}
		}
		var flows []schemas.Flow
		select {
		case flows = <-s.free:
		default:
		}
		if cap(flows) >= n {
			flows = flows[:n]
		} else {
			flows = make([]schemas.Flow, n)
		}
		s.gen.fill(flows)
		select {
		case out <- flows:
			s.gen.commit()
			sent += uint64(n)
		case <-ctx.Done():
			return nil
		}
	}
}
