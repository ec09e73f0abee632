package ocsf

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/flowbus/flowbus/schemas"
	"github.com/flowbus/flowbus/sinks/spool"
)

// HECConfig configures a HECSink.
type HECConfig struct {
	URL        string // the collector's event endpoint, e.g. https://splunk:8088/services/collector/event
	Token      string // HEC token, sent as "Authorization: Splunk <token>"
	SourceType string // default "ocsf:flowbus"
	Source     string // optional
	Index      string // optional
	Host       string // optional

	Gzip        bool          // gzip request bodies
	BatchEvents int           // events per request (default 500)
	BatchBytes  int           // body bytes per request before gzip (default 1 MiB)
	Retries     int           // retries of a batch before it is spooled (default 4)
	BackoffMin  time.Duration // first retry delay (default 100 ms); doubles per retry, ±50 % jitter
	BackoffMax  time.Duration // delay cap, also between replay attempts while down (default 30 s)
	Timeout     time.Duration // per request (default 10 s)

	SpoolDir      string // batches that exhaust their retries wait here; "" drops them (counted)
	SpoolMaxBytes int64  // spool cap (default spool.DefaultMaxBytes); the oldest batches go first

	Client  *http.Client // default: a client with Timeout
	Encoder *Encoder     // for WriteFlow (default: the package's)
	Logger  *slog.Logger
}

// HECStats counts events (not requests) through a HECSink.
type HECStats struct {
	Sent     uint64 // events the collector accepted (2xx), replayed ones included
	Retried  uint64 // requests retried after a failure
	Spooled  uint64 // events written to the spool
	Replayed uint64 // spooled events the collector accepted
	Dropped  uint64 // events given up: rejected as malformed (400, 413), or failed with no spool
	Refused  uint64 // flows the encoder refused (WriteFlow)
}

// HECSink sends OCSF events to a Splunk HTTP Event Collector, in batches of
// HEC's envelope lines ({"time":…,"sourcetype":…,"event":{…}}).
//
// Delivery is at least once, in order. A batch counts as delivered only on
// a 2xx reply. A failed request (connection refused or reset, timeout, 429,
// 5xx, 401/403/404, which a configuration fix can cure) is retried with
// exponential backoff and jitter; once its retries are spent the batch goes
// to the on-disk spool (sinks/spool), and while the spool holds anything
// every new batch goes behind it, so order is kept. The spool is replayed
// oldest first, one batch per attempt, at most every BackoffMax after a
// failure, on the next Write or Flush. Duplicates happen only when the
// collector indexed a batch but its reply was lost (timeout, connection
// cut after the request was read): that whole batch is sent again. A 400 or
// 413 means the collector will never take the batch: it is dropped and
// counted, not retried.
//
// Write blocks while its batch is retried (at most Retries backoffs); run
// the sink on its own goroutine. Safe for concurrent use.
type HECSink struct {
	cfg    HECConfig
	log    *slog.Logger
	spool  *spool.Spool
	run    string
	header []byte

	mu        sync.Mutex
	batch     []byte
	batchN    int
	firstMs   int64
	lastMs    int64
	seq       uint64
	scr       []byte
	gz        *gzip.Writer
	gzBuf     bytes.Buffer
	nextDrain time.Time
	drainWait time.Duration
	stats     HECStats
}

// Defaults of HECConfig.
const (
	DefaultHECBatchEvents = 500
	DefaultHECBatchBytes  = 1 << 20
	DefaultHECRetries     = 4
)

// NewHEC returns a HECSink; it opens the spool when SpoolDir is set, so a
// sink restarted on the same directory replays what the last one left.
func NewHEC(cfg HECConfig) (*HECSink, error) {
	if cfg.URL == "" {
		return nil, errors.New("ocsf HEC sink: URL is empty")
	}
	if cfg.SourceType == "" {
		cfg.SourceType = "ocsf:flowbus"
	}
	if cfg.BatchEvents <= 0 {
		cfg.BatchEvents = DefaultHECBatchEvents
	}
	if cfg.BatchBytes <= 0 {
		cfg.BatchBytes = DefaultHECBatchBytes
	}
	if cfg.Retries < 0 {
		return nil, fmt.Errorf("ocsf HEC sink: Retries %d is negative", cfg.Retries)
	}
	if cfg.Retries == 0 {
		cfg.Retries = DefaultHECRetries
	}
	if cfg.BackoffMin <= 0 {
		cfg.BackoffMin = 100 * time.Millisecond
	}
	if cfg.BackoffMax <= 0 {
		cfg.BackoffMax = 30 * time.Second
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: cfg.Timeout}
	}
	if cfg.Encoder == nil {
		cfg.Encoder = &defaultEncoder
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	h := &HECSink{cfg: cfg, log: cfg.Logger, run: strconv.FormatInt(time.Now().UnixNano(), 10)}
	if cfg.SpoolDir != "" {
		sp, err := spool.Open(spool.Config{Dir: cfg.SpoolDir, MaxBytes: cfg.SpoolMaxBytes}, cfg.Logger, nil)
		if err != nil {
			return nil, fmt.Errorf("ocsf HEC sink: %w", err)
		}
		h.spool = sp
	}
	// The envelope's fixed fields, after "time".
	h.header = kStr(h.header, "sourcetype", cfg.SourceType)
	if cfg.Source != "" {
		h.header = kStr(h.header, "source", cfg.Source)
	}
	if cfg.Index != "" {
		h.header = kStr(h.header, "index", cfg.Index)
	}
	if cfg.Host != "" {
		h.header = kStr(h.header, "host", cfg.Host)
	}
	if cfg.Gzip {
		h.gz = gzip.NewWriter(&h.gzBuf)
	}
	return h, nil
}

// Write adds one event (a JSON object) with its time in ms to the batch,
// sending the batch when it is full.
func (h *HECSink) Write(ctx context.Context, event []byte, timeMs int64) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.add(ctx, event, timeMs)
}

// WriteFlow encodes f with the sink's Encoder and writes it.
func (h *HECSink) WriteFlow(ctx context.Context, f *schemas.Flow) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	var err error
	h.scr, err = h.cfg.Encoder.Append(h.scr[:0], f)
	if err != nil {
		h.stats.Refused++
		return err
	}
	return h.add(ctx, h.scr, f.TimeNs/int64(time.Millisecond))
}

func (h *HECSink) add(ctx context.Context, event []byte, timeMs int64) error {
	if h.batchN > 0 && len(h.batch)+len(event)+len(h.header)+40 > h.cfg.BatchBytes {
		if err := h.flush(ctx); err != nil {
			return err
		}
	}
	b := append(h.batch, `{"time":`...)
	b = strconv.AppendInt(b, timeMs/1000, 10)
	b = append(b, '.')
	ms := timeMs % 1000
	b = append(b, byte('0'+ms/100), byte('0'+ms/10%10), byte('0'+ms%10))
	b = append(append(b, ','), h.header...)
	b = append(key(b, "event"), event...)
	h.batch = append(b, '}', '\n')
	if h.batchN == 0 {
		h.firstMs = timeMs
	}
	h.lastMs = timeMs
	h.batchN++
	if h.batchN >= h.cfg.BatchEvents {
		return h.flush(ctx)
	}
	return nil
}

// Flush sends the current batch and tries to replay the spool.
func (h *HECSink) Flush(ctx context.Context) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.flush(ctx)
}

// Close flushes and closes the spool; what could not be sent stays in it.
func (h *HECSink) Close(ctx context.Context) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	err := h.flush(ctx)
	if h.spool != nil {
		err = errors.Join(err, h.spool.Close())
	}
	return err
}

// Sync fsyncs the spool, so that the batches spooled so far survive a
// crash of the machine, not only of the process (Append does not fsync).
func (h *HECSink) Sync() error {
	if h.spool == nil {
		return nil
	}
	if err := h.spool.Sync(); err != nil {
		return fmt.Errorf("ocsf HEC sink: %w", err)
	}
	return nil
}

// Stats returns the counters.
func (h *HECSink) Stats() HECStats {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.stats
}

// Spooled returns the batches waiting in the spool.
func (h *HECSink) Spooled() int {
	if h.spool == nil {
		return 0
	}
	return h.spool.Len()
}

// flush sends the batch: behind the spool if it holds anything, else
// directly with retries, spooling it if they fail. Errors returned are the
// spool's (disk) or ctx's; a collector that is down is not an error.
func (h *HECSink) flush(ctx context.Context) error {
	if err := h.drain(ctx); err != nil {
		return err
	}
	if h.batchN == 0 {
		return nil
	}
	body, n := h.batch, h.batchN
	defer func() { h.batch, h.batchN = h.batch[:0], 0 }()
	if h.spool != nil && h.spool.Len() > 0 {
		return h.toSpool(body, n)
	}
	switch err := h.sendRetrying(ctx, body); {
	case err == nil:
		h.stats.Sent += uint64(n)
		return nil
	case errors.Is(err, errRejected):
		h.stats.Dropped += uint64(n)
		h.log.Error("HEC rejected a batch; dropped", "events", n, "err", err)
		return nil
	case ctx.Err() != nil:
		if e := h.toSpool(body, n); e != nil {
			return e
		}
		return ctx.Err()
	default:
		h.log.Warn("HEC unreachable; spooling", "events", n, "err", err)
		h.nextDrain, h.drainWait = time.Now().Add(h.cfg.BackoffMin), h.cfg.BackoffMin
		return h.toSpool(body, n)
	}
}

func (h *HECSink) toSpool(body []byte, n int) error {
	if h.spool == nil {
		h.stats.Dropped += uint64(n)
		return nil
	}
	h.seq++
	m := schemas.Message{Key: "hec", Run: h.run, Seq: h.seq, Rows: n, FirstTS: h.firstMs, LastTS: h.lastMs, Value: body}
	if err := h.spool.Append(&m); err != nil {
		return fmt.Errorf("ocsf HEC sink: spool: %w", err)
	}
	h.stats.Spooled += uint64(n)
	return nil
}

// drain replays the spool, oldest batch first, until it is empty or a
// request fails; after a failure it waits (BackoffMin doubling to
// BackoffMax, jittered) before the next attempt.
func (h *HECSink) drain(ctx context.Context) error {
	if h.spool == nil || h.spool.Len() == 0 || time.Now().Before(h.nextDrain) {
		return nil
	}
	for h.spool.Len() > 0 {
		ms, err := h.spool.Peek(1)
		if err != nil {
			return fmt.Errorf("ocsf HEC sink: spool: %w", err)
		}
		if len(ms) == 0 {
			return nil
		}
		m := ms[0]
		err = h.post(ctx, m.Value)
		switch {
		case err == nil:
			h.stats.Sent += uint64(m.Rows)
			h.stats.Replayed += uint64(m.Rows)
		case errors.Is(err, errRejected):
			h.stats.Dropped += uint64(m.Rows)
			h.log.Error("HEC rejected a spooled batch; dropped", "events", m.Rows, "err", err)
		default:
			h.stats.Retried++
			h.drainWait = min(max(2*h.drainWait, h.cfg.BackoffMin), h.cfg.BackoffMax)
			h.nextDrain = time.Now().Add(jitter(h.drainWait))
			return nil
		}
		if err := h.spool.Ack(1); err != nil {
			return fmt.Errorf("ocsf HEC sink: spool: %w", err)
		}
		h.drainWait = 0
	}
	return nil
}

func jitter(d time.Duration) time.Duration {
	return d/2 + time.Duration(rand.Int64N(int64(d)+1))
}

func (h *HECSink) sendRetrying(ctx context.Context, body []byte) error {
	wait := h.cfg.BackoffMin
	for attempt := 0; ; attempt++ {
		err := h.post(ctx, body)
		if err == nil || errors.Is(err, errRejected) || attempt == h.cfg.Retries {
			return err
		}
		h.stats.Retried++
		t := time.NewTimer(jitter(wait))
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		wait = min(2*wait, h.cfg.BackoffMax)
	}
}

// errRejected marks a reply that retrying cannot change.
var errRejected = errors.New("rejected")

func (h *HECSink) post(ctx context.Context, body []byte) error {
	if h.gz != nil {
		h.gzBuf.Reset()
		h.gz.Reset(&h.gzBuf)
		_, _ = h.gz.Write(body)
		if err := h.gz.Close(); err != nil {
			return err
		}
		body = h.gzBuf.Bytes()
	}
	// The request gets its own copy of the body: when the collector answers
	// before reading all of it (a 503 at once), net/http may still be
	// copying the body to the connection after Do returned, while the sink
	// already refills its batch buffer.
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.cfg.URL, bytes.NewReader(bytes.Clone(body)))
	if err != nil {
		return fmt.Errorf("%w: %v", errRejected, err)
	}
	req.Header.Set("Content-Type", "application/json")
	if h.cfg.Token != "" {
		req.Header.Set("Authorization", "Splunk "+h.cfg.Token)
	}
	if h.gz != nil {
		req.Header.Set("Content-Encoding", "gzip")
	}
	resp, err := h.cfg.Client.Do(req)
	if err != nil {
		return err
	}
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	resp.Body.Close()
	switch {
	case resp.StatusCode/100 == 2:
		return nil
	case resp.StatusCode == http.StatusBadRequest || resp.StatusCode == http.StatusRequestEntityTooLarge:
		return fmt.Errorf("%w: HEC %s: %s", errRejected, resp.Status, bytes.TrimSpace(msg))
	}
	return fmt.Errorf("HEC %s: %s", resp.Status, bytes.TrimSpace(msg))
}
