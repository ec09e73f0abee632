package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	flowpb "github.com/cilium/cilium/api/v1/flow"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/flowbus/flowbus/agent/aggregate"
	"github.com/flowbus/flowbus/agent/export"
	"github.com/flowbus/flowbus/agent/stage"
	"github.com/flowbus/flowbus/internal/tick"
	"github.com/flowbus/flowbus/schemas"
)

// Tap sees every raw flow before aggregation, and every loss a source
// reports. The Hubble flow ring and the Hubble metrics implement it. Its
// methods are called synchronously, in order, from one goroutine, on the
// pipeline's hot path: they must not block and must not retain or modify the
// flows slice after returning (copy what they keep; the Flow values' own
// slices may be kept, they are never modified).
type Tap interface {
	Observe(flows []schemas.Flow)
	Lost(source flowpb.LostEventSource, n uint64)
}

// LostFunc is how a source reports events lost before they became flows
// (Hubble lost_events lines, kernel ring buffer overflow).
type LostFunc = func(source flowpb.LostEventSource, n uint64)

// Source produces raw flows. Run sends batches on out (each a new slice whose
// ownership passes to the receiver), reports losses through lost, and returns
// when its input ends (nil) or ctx ends (nil), or on an error that stops it.
// It must not close out.
type Source interface {
	Name() string
	Run(ctx context.Context, out chan<- []schemas.Flow, lost LostFunc) error
}

// Recycler is implemented by sources that reuse batch slices. Once the taps
// and the aggregator are done with a raw batch, the agent hands it back with
// Recycle (from the aggregation goroutine, concurrently with the source's
// Run): the source may overwrite it and send it again. With aggregation
// disabled batches travel on to export and are not handed back.
type Recycler interface {
	Recycle(batch []schemas.Flow)
}

// DefaultChannelDepth is the default number of batches buffered between stages.
const DefaultChannelDepth = 8

// Config configures an Agent.
type Config struct {
	Node      string           // node name; also Export.Node if that is empty
	Source    Source           // required
	Aggregate aggregate.Config // Window is the flush interval
	Export    export.Config
	// ChannelDepth is the batches buffered between stages (default 8).
	ChannelDepth int
}

// Validate reports a Config that cannot work.
func (c Config) Validate() error {
	var errs []error
	if c.Node == "" && c.Export.Node == "" {
		errs = append(errs, errors.New("agent node name is empty"))
	}
	if c.Source == nil {
		errs = append(errs, errors.New("agent has no source"))
	}
	if c.ChannelDepth < 0 {
		errs = append(errs, fmt.Errorf("agent channel depth %d: must not be negative", c.ChannelDepth))
	}
	if err := c.Aggregate.Validate(); err != nil {
		errs = append(errs, err)
	}
	e := c.Export
	if e.Node == "" {
		e.Node = c.Node
	}
	if err := e.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Agent is the node agent's pipeline: source → taps → aggregate → export.
type Agent struct {
	cfg  Config
	log  *slog.Logger
	taps []Tap
	agg  *aggregate.Aggregator
	exp  *export.Exporter

	src, aggSt *stage.Counters
	lostByName map[flowpb.LostEventSource]prometheus.Counter
}

// New builds the pipeline. Metrics go to reg (nil: none): the stage counters
// and those of aggregation, export and the spool. The caller owns pub and
// closes it after Run returns.
func New(cfg Config, logger *slog.Logger, reg prometheus.Registerer, pub export.Publisher, taps ...Tap) (*Agent, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Export.Node == "" {
		cfg.Export.Node = cfg.Node
	}
	if cfg.ChannelDepth == 0 {
		cfg.ChannelDepth = DefaultChannelDepth
	}
	sm, err := stage.NewMetrics(reg)
	if err != nil {
		return nil, err
	}
	agg, err := aggregate.New(cfg.Aggregate, reg)
	if err != nil {
		return nil, err
	}
	exp, err := export.New(cfg.Export, logger, reg, pub, sm.Stage("export"))
	if err != nil {
		return nil, err
	}
	a := &Agent{
		cfg: cfg, log: logger, taps: taps, agg: agg, exp: exp,
		src:        sm.Stage("source"),
		aggSt:      sm.Stage("aggregate"),
		lostByName: map[flowpb.LostEventSource]prometheus.Counter{},
	}
	for name, v := range flowpb.LostEventSource_value {
		a.lostByName[flowpb.LostEventSource(v)] = a.src.Dropped("lost_" + strings.ToLower(name))
	}
	return a, nil
}

type lostEvent struct {
	source flowpb.LostEventSource
	n      uint64
}

// Run runs the pipeline until ctx ends or the source's input ends, then
// shuts down cleanly: the source stops, the current aggregation window is
// flushed, and the exporter publishes (or spools) everything it accepted.
// It returns the first error of a stage. Run must be called once.
func (a *Agent) Run(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	raw := make(chan []schemas.Flow, a.cfg.ChannelDepth)
	lost := make(chan lostEvent, a.cfg.ChannelDepth)
	agg := make(chan []schemas.Flow, a.cfg.ChannelDepth)
	expDone := make(chan struct{})

	g.Go(func() error {
		defer close(raw)
		err := a.cfg.Source.Run(gctx, raw, func(s flowpb.LostEventSource, n uint64) {
			lost <- lostEvent{s, n}
		})
		if err != nil {
			return fmt.Errorf("source %s: %w", a.cfg.Source.Name(), err)
		}
		return nil
	})
	g.Go(func() error {
		defer close(agg)
		a.aggregate(raw, lost, agg, expDone)
		return nil
	})
	g.Go(func() error {
		defer close(expDone)
		if err := a.exp.Run(agg); err != nil {
			return fmt.Errorf("export: %w", err)
		}
		return nil
	})
	return g.Wait()
}

// aggregate is the one goroutine that calls the taps and the aggregator.
func (a *Agent) aggregate(raw <-chan []schemas.Flow, lost <-chan lostEvent, out chan<- []schemas.Flow, expDone <-chan struct{}) {
	send := func(recs []schemas.Flow) {
		if len(recs) == 0 {
			return
		}
		select {
		case out <- recs:
			a.aggSt.Emitted.Add(float64(len(recs)))
		case <-expDone:
			// The exporter failed (its error ends Run); count what it never got.
			a.aggSt.Dropped("export_stopped").Add(float64(len(recs)))
		}
	}
	onLost := func(l lostEvent) {
		c := a.lostByName[l.source]
		if c == nil {
			c = a.src.Dropped("lost_" + strings.ToLower(l.source.String()))
		}
		c.Add(float64(l.n))
		for _, t := range a.taps {
			t.Lost(l.source, l.n)
		}
	}
	recycler, _ := a.cfg.Source.(Recycler)
	if a.agg.Config().Disabled {
		recycler = nil
	}
	// The window closes at each multiple of Window, on the grid of the
	// process's other periodic work (internal/tick).
	windowEnd := tick.NewTimer(a.agg.Config().Window)
	defer windowEnd.Stop()
	for {
		select {
		case flows, ok := <-raw:
			if !ok {
				for {
					select {
					case l := <-lost:
						onLost(l)
					default:
						send(a.agg.Flush())
						return
					}
				}
			}
			n := float64(len(flows))
			a.src.Emitted.Add(n)
			a.aggSt.Received.Add(n)
			for _, t := range a.taps {
				t.Observe(flows)
			}
			send(a.agg.Add(flows))
			if recycler != nil {
				recycler.Recycle(flows)
			}
		case l := <-lost:
			onLost(l)
		case <-windowEnd.C:
			windowEnd.Reset()
			send(a.agg.Flush())
		}
	}
}
