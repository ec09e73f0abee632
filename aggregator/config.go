package aggregator

import (
	"errors"
	"fmt"
	"time"
)

// Config configures an Aggregator. Zero durations and sizes take the
// defaults below; Validate reports values that cannot work.
type Config struct {
	// Out is the output directory: <Out>/pair_rollup/date=…/hour=…/*.parquet
	// and <Out>/route_rollup/…. Required.
	Out string
	// Window is the length of an event-time window (default 1 minute). It
	// must divide a day, so that window starts are aligned the same way by
	// every aggregator.
	Window time.Duration
	// Lateness is the allowed lateness (default 10 s): a window is written
	// once the partition's watermark (latest event time seen minus Lateness)
	// passes its end. Records for a written window go to a later file with
	// late = true.
	Lateness time.Duration
	// RouteTemplates are user rules applied to HTTP paths after the built-in
	// ones (query dropped, ids → {id}).
	RouteTemplates []RouteTemplate
	// RouteMaxLen caps the length of a route in bytes (default 128).
	RouteMaxLen int
	// MaxRoutesPerWorkload caps the distinct routes of one destination
	// workload in one window of one partition (default 500); further routes
	// are written as {other} and counted.
	MaxRoutesPerWorkload int
	// RowGroupRows caps Parquet row groups (default 122,880).
	RowGroupRows int
	// RawFlows also writes every flow record consumed, one Parquet row
	// (schemas.FlowRow) per record, under <Out>/flows/date=…/hour=…/, in a
	// file of the same name as its bucket's rollup files, committed with
	// them (package doc). It makes the aggregator decode every column, not
	// only the rollup's.
	RawFlows bool
	// NoSync skips fsync (benchmarks only; breaks crash safety).
	NoSync bool
}

// Defaults.
const (
	DefaultWindow               = time.Minute
	DefaultLateness             = 10 * time.Second
	DefaultRouteMaxLen          = 128
	DefaultMaxRoutesPerWorkload = 500
)

// MinRouteMaxLen is the shortest Config.RouteMaxLen.
const MinRouteMaxLen = 8

// rawRowGroupRows caps the row groups of raw flow files below RowGroupRows:
// each open bucket holds one row group of raw rows in memory until it is
// flushed, so this bounds memory per open bucket however long the window.
const rawRowGroupRows = 32768

// rawPageBufferBytes is the page buffer of each of the 74 columns of an
// open raw flows file. With parquet-go's default, 256 KiB, an open bucket
// held about 13 MB; with 64 KiB about 9 MB, for 3 % more bytes per row
// (32 KiB: 6.5 MB, but 6 % more bytes and slower). Measured with 8 open
// buckets of the test fleet's flows, live heap after GC.
const rawPageBufferBytes = 64 << 10

// withDefaults returns c with zero fields set to their defaults.
func (c Config) withDefaults() Config {
	if c.Window == 0 {
		c.Window = DefaultWindow
	}
	if c.Lateness == 0 {
		c.Lateness = DefaultLateness
	}
	if c.RouteMaxLen == 0 {
		c.RouteMaxLen = DefaultRouteMaxLen
	}
	if c.MaxRoutesPerWorkload == 0 {
		c.MaxRoutesPerWorkload = DefaultMaxRoutesPerWorkload
	}
	return c
}

// Validate reports whether c (with defaults applied) can work.
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	if c.Out == "" {
		errs = append(errs, errors.New("output directory is required"))
	}
	if c.Window < time.Second || c.Window%time.Second != 0 || (24*time.Hour)%c.Window != 0 {
		errs = append(errs, fmt.Errorf("window %v must be whole seconds and divide 24h", c.Window))
	}
	if c.Lateness < 0 {
		errs = append(errs, fmt.Errorf("lateness %v must not be negative", c.Lateness))
	}
	if c.RouteMaxLen < MinRouteMaxLen {
		errs = append(errs, fmt.Errorf("route max length %d must be at least %d", c.RouteMaxLen, MinRouteMaxLen))
	}
	if c.MaxRoutesPerWorkload < 1 {
		errs = append(errs, fmt.Errorf("max routes per workload %d must be at least 1", c.MaxRoutesPerWorkload))
	}
	if c.RowGroupRows < 0 {
		errs = append(errs, fmt.Errorf("row group rows %d must not be negative", c.RowGroupRows))
	}
	for i, r := range c.RouteTemplates {
		if r.Pattern == nil {
			errs = append(errs, fmt.Errorf("route template %d has no pattern", i))
		}
	}
	return errors.Join(errs...)
}
