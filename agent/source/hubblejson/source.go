package hubblejson

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	flowpb "github.com/cilium/cilium/api/v1/flow"
	"github.com/cilium/cilium/api/v1/observer"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/flowbus/flowbus/schemas"
	"github.com/flowbus/flowbus/schemas/hubble"
)

// Defaults of Config.
const (
	DefaultPollInterval = 250 * time.Millisecond
	DefaultBatchSize    = 256
	DefaultMaxLineBytes = 16 << 20
)

// Config configures a hubble-json source.
type Config struct {
	// Path is a file, a directory of rotated files (read oldest first), or
	// "-" for Stdin.
	Path  string
	Stdin io.Reader // read when Path is "-"
	// Follow keeps reading the file (or the directory's newest file) as it
	// grows, across truncation and rotation, until the context ends.
	Follow       bool
	PollInterval time.Duration // how often a followed file is checked (250 ms)
	BatchSize    int           // flows per batch sent downstream (256)
	MaxLineBytes int           // longer lines are malformed (16 MiB)
}

func (c Config) withDefaults() Config {
	if c.PollInterval == 0 {
		c.PollInterval = DefaultPollInterval
	}
	if c.BatchSize == 0 {
		c.BatchSize = DefaultBatchSize
	}
	if c.MaxLineBytes == 0 {
		c.MaxLineBytes = DefaultMaxLineBytes
	}
	return c
}

// Validate reports a Config that cannot work.
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	switch {
	case c.Path == "":
		errs = append(errs, errors.New("hubble-json path is empty (a file, a directory, or - for stdin)"))
	case c.Path == "-" && c.Stdin == nil:
		errs = append(errs, errors.New("hubble-json path is - but no stdin was given"))
	case c.Path == "-" && c.Follow:
		errs = append(errs, errors.New("hubble-json follow needs a file or directory, not stdin"))
	}
	if c.PollInterval < time.Millisecond || c.BatchSize < 1 || c.MaxLineBytes < 1024 {
		errs = append(errs, fmt.Errorf("hubble-json poll interval %v, batch size %d, max line bytes %d: must be ≥ 1ms, ≥ 1, ≥ 1024",
			c.PollInterval, c.BatchSize, c.MaxLineBytes))
	}
	return errors.Join(errs...)
}

// finalFlushWait bounds how long Run waits to deliver its last batch.
const finalFlushWait = 5 * time.Second

// LineError is a malformed input line: where it is and what is wrong.
type LineError struct {
	File string // path, or "-" for stdin
	Line int    // 1-based
	Err  error
}

func (e *LineError) Error() string { return fmt.Sprintf("%s:%d: %v", e.File, e.Line, e.Err) }
func (e *LineError) Unwrap() error { return e.Err }

// Errors of malformed lines, wrapped in LineError.
var (
	ErrEmptyLine   = errors.New("empty line")
	ErrLineTooLong = errors.New("line too long")
	ErrNotResponse = errors.New("JSON is neither a GetFlowsResponse (flow, node_status, lost_events) nor a Flow")
)

// Source reads Hubble JSON lines. Create with New; Run once.
type Source struct {
	cfg Config
	log *slog.Logger

	malformed prometheus.Counter
	skipped   *prometheus.CounterVec
	lostC     *prometheus.CounterVec

	fast  *fastDecoder
	resp  observer.GetFlowsResponse
	fl    flowpb.Flow
	unm   protojson.UnmarshalOptions
	batch []schemas.Flow
	out   chan<- []schemas.Flow
	lost  func(flowpb.LostEventSource, uint64)
}

// New returns a hubble-json source with its counters registered on reg (nil: none):
// flowbus_source_malformed_total{source="hubble-json"},
// flowbus_source_skipped_total{source="hubble-json",type} and
// flowbus_source_lost_events_total{source="hubble-json",lost_source}.
func New(cfg Config, logger *slog.Logger, reg prometheus.Registerer) (*Source, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	constLabels := prometheus.Labels{"source": "hubble-json"}
	s := &Source{
		cfg: cfg.withDefaults(),
		log: logger,
		malformed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "flowbus_source_malformed_total", ConstLabels: constLabels,
			Help: "Input lines that could not be read as a Hubble GetFlowsResponse or Flow.",
		}),
		skipped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flowbus_source_skipped_total", ConstLabels: constLabels,
			Help: "Valid input lines that carry no flow (node_status, ...), by type.",
		}, []string{"type"}),
		lostC: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flowbus_source_lost_events_total", ConstLabels: constLabels,
			Help: "Events reported lost by lost_events lines of the input, by where they were lost.",
		}, []string{"lost_source"}),
		fast: newFastDecoder(),
		unm:  protojson.UnmarshalOptions{DiscardUnknown: true},
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{s.malformed, s.skipped, s.lostC} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("register hubble-json metrics: %w", err)
			}
		}
	}
	return s, nil
}

// Name returns "hubble-json".
func (s *Source) Name() string { return "hubble-json" }

// Run reads the input and sends its flows in batches (new slices, owned by
// the receiver) on out. lost_events lines call lost (if not nil) with their
// source and count. Without Follow, Run returns nil at the end of the input;
// with it, when ctx ends. Malformed lines are counted and logged with file
// and line, and reading goes on; Run fails only when the input cannot be
// opened or read.
func (s *Source) Run(ctx context.Context, out chan<- []schemas.Flow, lost func(flowpb.LostEventSource, uint64)) error {
	s.out, s.lost = out, lost
	err := s.run(ctx)
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		err = nil // ctx ended: a normal stop
	}
	// Lines already read are delivered even when ctx has ended (the agent
	// drains its sources at shutdown), but Run does not wait forever for a reader.
	fctx, cancel := context.WithTimeout(context.Background(), finalFlushWait)
	defer cancel()
	if n := len(s.batch); n > 0 {
		if ferr := s.flush(fctx); ferr != nil && err == nil {
			err = fmt.Errorf("hubble-json: %d flows read but not delivered at shutdown: %w", n, ferr)
		}
	}
	return err
}

func (s *Source) run(ctx context.Context) error {
	if s.cfg.Path == "-" {
		_, _, err := s.readStream(ctx, "-", s.cfg.Stdin, 0, false)
		return err
	}
	fi, err := os.Stat(s.cfg.Path)
	if err != nil {
		return fmt.Errorf("open hubble-json input: %w", err)
	}
	if !fi.IsDir() {
		return s.readFile(ctx, s.cfg.Path, s.cfg.Follow)
	}
	files, err := rotatedFiles(s.cfg.Path)
	if err != nil {
		return err
	}
	if len(files) == 0 && !s.cfg.Follow {
		s.log.Warn("hubble-json: directory has no files", "dir", s.cfg.Path)
		return nil
	}
	for i, f := range files {
		last := i == len(files)-1
		if err := s.readFile(ctx, f, s.cfg.Follow && last); err != nil {
			return err
		}
	}
	return nil
}

// readFile reads one file (gzip if it ends in .gz), following it if asked.
func (s *Source) readFile(ctx context.Context, path string, follow bool) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("open hubble-json input: %w", err)
	}
	if follow && !strings.HasSuffix(path, ".gz") {
		return s.follow(ctx, path, f)
	}
	defer f.Close()
	var r io.Reader = f
	if strings.HasSuffix(path, ".gz") {
		zr, err := gzip.NewReader(f)
		if err != nil {
			return fmt.Errorf("open hubble-json input %s: %w", path, err)
		}
		r = zr
	}
	_, _, err = s.readStream(ctx, path, r, 0, false)
	return err
}

// readStream reads lines from r, numbering them after line, and returns the
// bytes consumed and the number of the last line read. In partial mode an
// unterminated last line is not consumed (a followed file's writer may be
// in the middle of it).
func (s *Source) readStream(ctx context.Context, name string, r io.Reader, line int, partial bool) (consumed int64, last int, err error) {
	br := bufio.NewReaderSize(r, 64<<10)
	var long []byte // a line longer than the buffer, assembled
	tooLong := false
	for {
		chunk, rerr := br.ReadSlice('\n')
		if rerr == bufio.ErrBufferFull {
			if !tooLong {
				long = append(long, chunk...)
				if len(long) > s.cfg.MaxLineBytes {
					tooLong, long = true, long[:0]
				}
			}
			continue
		}
		if rerr != nil && rerr != io.EOF {
			return consumed, line, fmt.Errorf("read hubble-json input %s: %w", name, rerr)
		}
		complete := rerr == nil
		if !complete && partial {
			return consumed, line, nil // leave the unterminated tail for the next poll
		}
		data := chunk
		if len(long) > 0 || tooLong {
			long = append(long, chunk...)
			data = long
		}
		if complete || len(data) > 0 || tooLong {
			line++
			consumed += int64(len(data))
			if tooLong {
				s.bad(name, line, ErrLineTooLong)
			} else if complete || len(bytes.TrimSpace(data)) > 0 {
				if err := s.handle(ctx, name, line, data); err != nil {
					return consumed, line, err
				}
			}
		}
		long, tooLong = long[:0], false
		if !complete {
			return consumed, line, nil
		}
	}
}

// follow reads f to its end, then polls for growth, truncation and
// rotation until ctx ends. It owns f and closes it (or its successor).
func (s *Source) follow(ctx context.Context, path string, f *os.File) error {
	defer func() { f.Close() }()
	var off int64
	line := 0
	for {
		n, last, err := s.readStream(ctx, path, io.NewSectionReader(f, off, 1<<62), line, true)
		if err != nil {
			return err
		}
		off, line = off+n, last
		if err := s.flush(ctx); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(s.cfg.PollInterval):
		}
		cur, err := f.Stat()
		if err != nil {
			return fmt.Errorf("stat followed hubble-json file: %w", err)
		}
		if cur.Size() < off {
			s.log.Warn("hubble-json: followed file was truncated; reading it from the start", "file", path)
			off, line = 0, 0
			continue
		}
		onDisk, err := os.Stat(path)
		if err != nil || os.SameFile(cur, onDisk) {
			continue // not rotated (or the new file is not there yet)
		}
		// Rotated: read what was appended to the old file, then switch.
		n, last, err = s.readStream(ctx, path, io.NewSectionReader(f, off, 1<<62), line, true)
		if err != nil {
			return err
		}
		if off+n < cur.Size() {
			s.bad(path, last+1, fmt.Errorf("unterminated last line before rotation: %w", io.ErrUnexpectedEOF))
		}
		nf, err := os.Open(path)
		if err != nil {
			return fmt.Errorf("open rotated hubble-json file: %w", err)
		}
		f.Close()
		f = nf
		s.log.Info("hubble-json: followed file was rotated; reading the new one", "file", path)
		off, line = 0, 0
	}
}

// handle parses one line and routes what it holds.
func (s *Source) handle(ctx context.Context, name string, line int, data []byte) error {
	data = bytes.TrimSpace(data)
	if len(data) == 0 {
		s.bad(name, line, ErrEmptyLine)
		return nil
	}
	// The fast path reads the common line, a flow, straight into the batch;
	// what it declines is read by protojson and FromProto below, to the
	// same record or to the same error.
	s.batch = append(s.batch, schemas.Flow{})
	if f := &s.batch[len(s.batch)-1]; s.fast.decode(data, f) {
		f.CountAs = hubble.CountAs(f, false) // the fast path declines flowbus's extension
		if len(s.batch) >= s.cfg.BatchSize {
			return s.flush(ctx)
		}
		return nil
	}
	s.batch = s.batch[:len(s.batch)-1]
	s.resp.Reset()
	if err := s.unm.Unmarshal(data, &s.resp); err != nil {
		s.bad(name, line, err)
		return nil
	}
	var fl *flowpb.Flow
	switch r := s.resp.ResponseTypes.(type) {
	case *observer.GetFlowsResponse_Flow:
		fl = r.Flow
	case *observer.GetFlowsResponse_LostEvents:
		le := r.LostEvents
		s.lostC.WithLabelValues(le.GetSource().String()).Add(float64(le.GetNumEventsLost()))
		if s.lost != nil {
			s.lost(le.GetSource(), le.GetNumEventsLost())
		}
		return nil
	case *observer.GetFlowsResponse_NodeStatus:
		s.skipped.WithLabelValues("node_status").Inc()
		return nil
	default:
		// Older `hubble observe -o json` printed the Flow itself.
		s.fl.Reset()
		if err := s.unm.Unmarshal(data, &s.fl); err != nil || !looksLikeFlow(&s.fl) {
			s.bad(name, line, ErrNotResponse)
			return nil
		}
		fl = &s.fl
	}
	f, err := hubble.FromProto(fl)
	if err != nil {
		s.bad(name, line, fmt.Errorf("convert flow: %w", err))
		return nil
	}
	f.CountAs = hubble.CountAs(&f, hubble.ServedByFlowbus(fl))
	s.batch = append(s.batch, f)
	if len(s.batch) >= s.cfg.BatchSize {
		return s.flush(ctx)
	}
	return nil
}

// looksLikeFlow reports whether a Flow parsed from a line has any flow content.
func looksLikeFlow(f *flowpb.Flow) bool {
	return f.GetTime() != nil || f.GetIP() != nil || f.GetL4() != nil || f.GetVerdict() != 0 || f.GetUuid() != ""
}

func (s *Source) bad(name string, line int, err error) {
	s.malformed.Inc()
	s.log.Warn("hubble-json: skipping malformed line", "err", &LineError{File: name, Line: line, Err: err}, "file", name, "line", line)
}

// flush sends the current batch.
func (s *Source) flush(ctx context.Context) error {
	if len(s.batch) == 0 {
		return nil
	}
	select {
	case s.out <- s.batch:
		s.batch = make([]schemas.Flow, 0, s.cfg.BatchSize)
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
