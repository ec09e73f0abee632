package nats

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/flowbus/flowbus/schemas"
	"github.com/flowbus/flowbus/sinks/bus"
	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Publisher publishes bus messages to the JetStream stream, one subject per
// partition, with Nats-Msg-Id dedupe. Safe for concurrent use, though calls
// are serialized so that each keeps its order.
type Publisher struct {
	cfg PublisherConfig

	mu          sync.Mutex // serializes Publish; guards streamReady
	streamReady bool

	connMu   sync.Mutex // guards the rest (Close may race Publish)
	nc       *natsgo.Conn
	js       jetstream.JetStream
	closed   bool
	lastDial time.Time // of the last redial
}

// NewPublisher connects to cfg.URL. A server that is down is not an error:
// the connection keeps retrying and Publish blocks until it is up.
func NewPublisher(cfg PublisherConfig) (*Publisher, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	nc, js, err := dialJetStream(cfg)
	if err != nil {
		return nil, fmt.Errorf("nats publisher: %w", err)
	}
	return &Publisher{cfg: cfg, nc: nc, js: js}, nil
}

func dialJetStream(cfg PublisherConfig) (*natsgo.Conn, jetstream.JetStream, error) {
	nc, err := connect(cfg.Conn, cfg.Logger)
	if err != nil {
		return nil, nil, err
	}
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncTimeout(cfg.AckTimeout), jetstream.WithPublishAsyncMaxPending(4096))
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("jetstream: %w", err)
	}
	return nc, js, nil
}

// redialEvery is how often Publish dials again while nats.go keeps closing
// its connections for good (a server that keeps refusing it). A variable
// for tests.
var redialEvery = 10 * time.Second

// jetStream returns the current connection's JetStream context. When
// nats.go has closed the connection for good (a server error it does not
// retry), it dials a new one first (at once the first time, then at most
// every redialEvery), so that publishing resumes once the server accepts us
// again instead of waiting for a restart. Publish notices such a close at
// its next attempt, which comes once the acknowledgements then in flight
// have timed out (AckTimeout): nats.go leaves them pending. Called with
// p.mu held.
func (p *Publisher) jetStream() (jetstream.JetStream, error) {
	p.connMu.Lock()
	defer p.connMu.Unlock()
	if p.closed {
		return nil, errPublisherClosed
	}
	if !p.nc.IsClosed() || (!p.lastDial.IsZero() && time.Since(p.lastDial) < redialEvery) {
		return p.js, nil
	}
	p.lastDial = time.Now()
	nc, js, err := dialJetStream(p.cfg)
	if err != nil {
		p.cfg.Logger.Warn("nats: dialling again failed", "url", RedactURL(p.cfg.Conn.URL), "next_try_in", redialEvery, "err", err)
		return p.js, err
	}
	p.cfg.Logger.Info("nats: dialled again after the client library closed the connection", "url", RedactURL(p.cfg.Conn.URL))
	p.nc, p.js = nc, js
	return js, nil
}

var errPublisherClosed = errors.New("nats publisher closed")

// connect dials with unlimited reconnects and no reconnect buffer: a publish
// while disconnected fails at once (and Publish retries it in order) instead
// of being sent later, behind messages published after it.
func connect(c Conn, log *slog.Logger) (*natsgo.Conn, error) {
	url := RedactURL(c.URL)
	secure, err := c.options()
	if err != nil {
		return nil, err
	}
	// A server that cannot be reached is retried for ever; say so at once and
	// then every 10 s, so that a wrong --bus is visible in the log.
	var mu sync.Mutex
	var lastWarn time.Time
	opts := append(secure,
		natsgo.ReconnectErrHandler(func(_ *natsgo.Conn, err error) {
			mu.Lock()
			defer mu.Unlock()
			if time.Since(lastWarn) >= 10*time.Second {
				lastWarn = time.Now()
				log.Warn("nats server unreachable, retrying", "url", url, "err", err)
			}
		}),
		natsgo.Name(c.Name),
		natsgo.MaxReconnects(-1),
		natsgo.ReconnectWait(250*time.Millisecond),
		natsgo.ReconnectBufSize(-1),
		// Our own Close (every run's shutdown) fires no callback; a server
		// that goes away, or a connection nats.go gives up on, does.
		natsgo.NoCallbacksAfterClientClose(),
		natsgo.DisconnectErrHandler(func(_ *natsgo.Conn, err error) {
			log.Info("nats disconnected", "url", url, "err", err)
		}),
		natsgo.ClosedHandler(func(nc *natsgo.Conn) {
			log.Warn("nats connection closed by the client library and not retried: fix the cause in err (a publisher dials again, a consumer stops: restart it)", "url", url, "err", nc.LastError())
		}),
		natsgo.ReconnectHandler(func(nc *natsgo.Conn) {
			log.Info("nats reconnected", "url", nc.ConnectedUrlRedacted())
		}),
		// Without a handler nats.go prints asynchronous errors to stderr.
		natsgo.ErrorHandler(func(_ *natsgo.Conn, sub *natsgo.Subscription, err error) {
			if sub != nil {
				log.Warn("nats async error", "subject", sub.Subject, "err", err)
				return
			}
			log.Warn("nats async error", "err", err)
		}),
	)
	// One attempt first: a server that answers and refuses our credentials
	// or TLS is an error now, naming what it refused, rather than a
	// connection retried for ever. A server that does not answer is not an
	// error: the second dial retries it in the background.
	nc, err := natsgo.Connect(c.URL, append(opts, natsgo.RetryOnFailedConnect(false))...)
	if err == nil {
		return nc, nil
	}
	if cerr := c.connectError(err); cerr != nil {
		return nil, cerr
	}
	nc, err = natsgo.Connect(c.URL, append(opts, natsgo.RetryOnFailedConnect(true))...)
	if err != nil {
		return nil, fmt.Errorf("connect %s: %w", url, err)
	}
	return nc, nil
}

// Subject returns the subject of partition p under prefix.
func Subject(prefix string, p int) string { return prefix + "." + strconv.Itoa(p) }

// Publish sends msgs and returns nil once JetStream acknowledged every one
// (stored in the stream, or recognized as a duplicate by its Nats-Msg-Id).
// Message i goes to subject <prefix>.<schemas.PartitionOf(Key, Partitions)>
// with headers Headers(), HeaderKey and Nats-Msg-Id = ID(). Messages are sent
// pipelined (async publish) and the acknowledged prefix is kept; from the
// first failure on, they are sent again, in order, after a backoff, until
// ctx is done (then the error wraps ctx.Err() and the last failure). A
// message over the stream's MaxMsgSize fails the call with an error wrapping
// bus.ErrTooLarge before anything is sent; other refusals by the server are
// returned at once.
func (p *Publisher) Publish(ctx context.Context, msgs []schemas.Message) error {
	if len(msgs) == 0 {
		return nil
	}
	out := make([]*natsgo.Msg, len(msgs))
	for i := range msgs {
		out[i] = p.message(&msgs[i])
		if n := msgSize(out[i]); n > int(p.cfg.Stream.MaxMsgSize) {
			return fmt.Errorf("nats publish %s: %d bytes over the stream's max msg size %d: %w", msgs[i].ID(), n, p.cfg.Stream.MaxMsgSize, bus.ErrTooLarge)
		}
	}
	return p.publish(ctx, out)
}

// PublishRecords is Publish for records that are not flow messages (the
// OCSF events of 'flowbus ocsf'): record i goes to subject
// <prefix>.<schemas.PartitionOf(Key, Partitions)> with its Headers,
// HeaderKey and, when ID is set, Nats-Msg-Id = ID. Same acknowledgement,
// retry and size rules as Publish; a record is named by its index in
// errors.
func (p *Publisher) PublishRecords(ctx context.Context, recs []bus.Record) error {
	if len(recs) == 0 {
		return nil
	}
	out := make([]*natsgo.Msg, len(recs))
	for i := range recs {
		r := &recs[i]
		h := make(natsgo.Header, len(r.Headers)+2)
		for _, kv := range r.Headers {
			h[kv[0]] = []string{kv[1]}
		}
		h[HeaderKey] = []string{r.Key}
		if r.ID != "" {
			h[jetstream.MsgIDHeader] = []string{r.ID}
		}
		out[i] = &natsgo.Msg{Subject: Subject(p.cfg.Stream.SubjectPrefix, schemas.PartitionOf(r.Key, p.cfg.Partitions)), Header: h, Data: r.Value}
		if n := msgSize(out[i]); n > int(p.cfg.Stream.MaxMsgSize) {
			return fmt.Errorf("nats publish record %d (key %q): %d bytes over the stream's max msg size %d: %w", i, r.Key, n, p.cfg.Stream.MaxMsgSize, bus.ErrTooLarge)
		}
	}
	return p.publish(ctx, out)
}

// Ready returns once the stream exists (created when missing, as the first
// Publish does), so that a command finds an unreachable server or a
// refused stream at start rather than at its first message. While the
// server is unreachable it retries until ctx is done; the error then says
// the last failure.
func (p *Publisher) Ready(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.streamReady {
		return nil
	}
	js, err := p.jetStream()
	if err != nil {
		return err
	}
	if err := ensureStream(ctx, js, p.cfg.Stream.jetstream(), p.cfg.Logger); err != nil {
		p.connMu.Lock()
		nc := p.nc
		p.connMu.Unlock()
		if !nc.IsConnected() {
			if last := nc.LastError(); last != nil {
				return fmt.Errorf("%w: the server %s is not reachable (last connection error: %v)", err, RedactURL(p.cfg.Conn.URL), last)
			}
			return fmt.Errorf("%w: the server %s is not reachable", err, RedactURL(p.cfg.Conn.URL))
		}
		return err
	}
	p.streamReady = true
	return nil
}

// publish sends out in order until every message is acknowledged (see
// Publish).
func (p *Publisher) publish(ctx context.Context, out []*natsgo.Msg) error {
	total := len(out)
	p.mu.Lock()
	defer p.mu.Unlock()
	backoff := 50 * time.Millisecond
	for {
		js, err := p.jetStream()
		if errors.Is(err, errPublisherClosed) {
			return err
		}
		if !p.streamReady {
			// A connection nats.go closed for good waits for the next
			// redial; anything else ensureStream retried until ctx ended.
			if err = ensureStream(ctx, js, p.cfg.Stream.jetstream(), p.cfg.Logger); err != nil && !gone(err) {
				return err
			}
			p.streamReady = err == nil
		}
		if p.streamReady {
			var n int
			n, err = p.publishOnce(ctx, js, out)
			out = out[n:]
			if len(out) == 0 {
				return nil
			}
		}
		if ctx.Err() != nil {
			return fmt.Errorf("nats publish: %d of %d messages unacknowledged: %w (last error: %v)", len(out), total, ctx.Err(), plain(err))
		}
		if fatal(err) {
			return fmt.Errorf("nats publish to %s: %w", out[0].Subject, err)
		}
		p.cfg.Logger.Debug("nats publish retry", "pending", len(out), "err", err)
		if !sleep(ctx, backoff) {
			return fmt.Errorf("nats publish: %d of %d messages unacknowledged: %w (last error: %v)", len(out), total, ctx.Err(), plain(err))
		}
		backoff = min(2*backoff, time.Second)
	}
}

// publishOnce sends msgs pipelined and returns how many, from the start,
// were acknowledged, and the first error. It stops sending at the first
// refused send, so that nothing is sent after a message that was not.
func (p *Publisher) publishOnce(ctx context.Context, js jetstream.JetStream, msgs []*natsgo.Msg) (int, error) {
	futs := make([]jetstream.PubAckFuture, 0, len(msgs))
	var sendErr, ackErr error
	for _, m := range msgs {
		var opts []jetstream.PublishOpt
		if id := m.Header.Get(jetstream.MsgIDHeader); id != "" {
			opts = append(opts, jetstream.WithMsgID(id))
		}
		f, err := js.PublishMsgAsync(m, opts...)
		if err != nil {
			sendErr = err
			break
		}
		futs = append(futs, f)
	}
	acked := 0
	for _, f := range futs {
		select {
		case <-f.Ok():
			if ackErr == nil {
				acked++
			}
		case err := <-f.Err():
			if ackErr == nil {
				ackErr = err
			}
		case <-ctx.Done():
			return acked, ctx.Err()
		}
	}
	if ackErr != nil {
		return acked, ackErr
	}
	return acked, sendErr
}

// plain says what nats.go's "outbound buffer limit exceeded" means here:
// with no reconnect buffer, a publish or request while disconnected fails
// with it.
func plain(err error) error {
	if errors.Is(err, natsgo.ErrReconnectBufExceeded) {
		return fmt.Errorf("not connected to the server, reconnecting (%w)", err)
	}
	return err
}

// gone reports whether err says the connection is closed for good: retrying
// on it cannot succeed, only a new connection can.
func gone(err error) bool { return errors.Is(err, natsgo.ErrConnectionClosed) }

// fatal reports errors that retrying cannot fix: the server refused the
// message or request itself (too large, bad config, wrong stream), as
// opposed to being unavailable (503), slow (408) or unreachable.
func fatal(err error) bool {
	if errors.Is(err, natsgo.ErrMaxPayload) || errors.Is(err, natsgo.ErrBadHeaderMsg) {
		return true
	}
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) {
		return false
	}
	switch apiErr.Code {
	case 408, 429, 503:
		return false
	}
	return true
}

// message builds the NATS message of m.
func (p *Publisher) message(m *schemas.Message) *natsgo.Msg {
	hs := m.Headers()
	h := make(natsgo.Header, len(hs)+2)
	for _, kv := range hs {
		h[kv[0]] = []string{kv[1]}
	}
	h[HeaderKey] = []string{m.Key}
	h[jetstream.MsgIDHeader] = []string{m.ID()}
	return &natsgo.Msg{
		Subject: Subject(p.cfg.Stream.SubjectPrefix, schemas.PartitionOf(m.Key, p.cfg.Partitions)),
		Header:  h,
		Data:    m.Value,
	}
}

// msgSize is the size JetStream checks against MaxMsgSize: the header
// block ("NATS/1.0\r\n", "k: v\r\n"..., "\r\n") plus the payload, plus
// 64 bytes of slack.
func msgSize(m *natsgo.Msg) int {
	n := len("NATS/1.0\r\n\r\n") + len(m.Data) + 64
	for k, vs := range m.Header {
		for _, v := range vs {
			n += len(k) + len(v) + 4
		}
	}
	return n
}

// ensureStream creates the stream if it is missing, retrying while the
// server or JetStream is unavailable, until ctx is done.
func ensureStream(ctx context.Context, js jetstream.JetStream, cfg jetstream.StreamConfig, log interface{ Info(string, ...any) }) error {
	backoff := 50 * time.Millisecond
	for {
		err := tryEnsureStream(ctx, js, cfg, log)
		if err == nil {
			return nil
		}
		if fatal(err) || gone(err) {
			return fmt.Errorf("nats stream %s: %w", cfg.Name, err)
		}
		if !sleep(ctx, backoff) {
			return fmt.Errorf("nats stream %s: %w (last error: %v)", cfg.Name, ctx.Err(), plain(err))
		}
		backoff = min(2*backoff, time.Second)
	}
}

func tryEnsureStream(ctx context.Context, js jetstream.JetStream, cfg jetstream.StreamConfig, log interface{ Info(string, ...any) }) error {
	actx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, err := js.Stream(actx, cfg.Name)
	if err == nil {
		return nil
	}
	if !errors.Is(err, jetstream.ErrStreamNotFound) {
		return err
	}
	_, err = js.CreateStream(actx, cfg)
	if err == nil {
		log.Info("nats stream created", "stream", cfg.Name, "subjects", cfg.Subjects, "max_age", cfg.MaxAge, "max_bytes", cfg.MaxBytes)
		return nil
	}
	if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		return nil
	}
	return err
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// Close closes the connection; a Publish in progress or later fails. Safe
// to call after a failed Publish.
func (p *Publisher) Close() error {
	p.connMu.Lock()
	defer p.connMu.Unlock()
	p.closed = true
	p.nc.Close()
	return nil
}
