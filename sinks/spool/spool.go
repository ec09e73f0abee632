package spool

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/flowbus/flowbus/schemas"
)

// Defaults of Config.
const (
	DefaultSegmentBytes = 16 << 20
	DefaultMaxBytes     = 1 << 30
)

// ErrClosed is returned by operations on a closed Spool.
var ErrClosed = errors.New("spool closed")

// Config configures a Spool.
type Config struct {
	Dir          string // required; created if missing
	SegmentBytes int64  // segment size before roll-over (default 16 MiB)
	MaxBytes     int64  // byte cap of all segments (default 1 GiB)
}

func (c Config) withDefaults() Config {
	if c.SegmentBytes == 0 {
		c.SegmentBytes = DefaultSegmentBytes
	}
	if c.MaxBytes == 0 {
		c.MaxBytes = DefaultMaxBytes
	}
	return c
}

// Validate reports a Config that cannot work.
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	if c.Dir == "" {
		errs = append(errs, errors.New("spool dir is empty"))
	}
	if c.SegmentBytes < 4096 {
		errs = append(errs, fmt.Errorf("spool segment bytes %d: must be at least 4096", c.SegmentBytes))
	}
	if c.MaxBytes < c.SegmentBytes {
		errs = append(errs, fmt.Errorf("spool max bytes %d: must be at least the segment size %d", c.MaxBytes, c.SegmentBytes))
	}
	return errors.Join(errs...)
}

// segment is one segment file and what it holds.
type segment struct {
	id   uint64
	size int64           // bytes in the file
	msgs int             // good records
	rows int64           // rows of the good records
	bad  map[int64]int64 // offset → length of records whose payload is corrupt
}

func (seg *segment) markBad(off, length int64) {
	if seg.bad == nil {
		seg.bad = map[int64]int64{}
	}
	seg.bad[off] = length
}

// position is a read position: a segment id and a byte offset in it.
type position struct {
	seg uint64
	off int64
}

// peeked is what Ack needs to know of a message returned by Peek.
type peeked struct {
	after position // position just after the message
	rows  int64
}

// Spool is a disk queue of messages. Safe for concurrent use.
type Spool struct {
	cfg Config
	log *slog.Logger

	mu        sync.Mutex
	closed    bool
	segs      []*segment // oldest first; the last one is appended to
	nextID    uint64     // id of the next segment to create
	w         *os.File   // open last segment, nil until the next Append
	read      position   // next unacked record (segs[0])
	ackedMsgs int        // messages acked in segs[0]
	ackedRows int64
	peek      []peeked
	buf       []byte

	bytes, segments, messages prometheus.Gauge
	droppedMsgs, droppedRows  prometheus.Counter
	corrupt, torn             prometheus.Counter
}

// Open opens (creating if needed) the spool in cfg.Dir, scans its segments and
// restores the read position. Metrics are registered on reg (nil: none).
func Open(cfg Config, logger *slog.Logger, reg prometheus.Registerer) (*Spool, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Spool{cfg: cfg.withDefaults(), log: logger}
	s.initMetrics()
	if reg != nil {
		for _, c := range []prometheus.Collector{s.bytes, s.segments, s.messages, s.droppedMsgs, s.droppedRows, s.corrupt, s.torn} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("register spool metrics: %w", err)
			}
		}
	}
	if err := os.MkdirAll(cfg.Dir, 0o750); err != nil {
		return nil, fmt.Errorf("create spool dir: %w", err)
	}
	if err := s.load(); err != nil {
		return nil, err
	}
	s.updateGauges()
	return s, nil
}

func (s *Spool) initMetrics() {
	g := func(name, help string) prometheus.Gauge {
		return prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help})
	}
	c := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
	}
	s.bytes = g("flowbus_spool_bytes", "Bytes of unacknowledged messages in the disk spool.")
	s.segments = g("flowbus_spool_segments", "Segment files in the disk spool.")
	s.messages = g("flowbus_spool_messages", "Unacknowledged messages in the disk spool.")
	s.droppedMsgs = c("flowbus_spool_dropped_messages_total", "Messages dropped from the spool because it reached its byte cap (oldest segment first).")
	s.droppedRows = c("flowbus_spool_dropped_rows_total", "Flow rows in messages dropped from the spool at its byte cap.")
	s.corrupt = c("flowbus_spool_corrupt_records_total", "Spool records skipped because their checksum failed.")
	s.torn = c("flowbus_spool_torn_tails_total", "Segment files truncated at a partly written record (crash while appending).")
}

func segPath(dir string, id uint64) string {
	return filepath.Join(dir, fmt.Sprintf("%016x.seg", id))
}

// Append adds m at the end of the queue. It drops the oldest segments first
// if the spool would exceed its byte cap.
func (s *Spool) Append(m *schemas.Message) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	s.buf = appendRecord(s.buf[:0], m)
	n := int64(len(s.buf))
	last := s.last()
	if last == nil || (last.size > 0 && last.size+n > s.cfg.SegmentBytes) {
		if err := s.roll(); err != nil {
			return err
		}
	}
	for s.diskBytes()+n > s.cfg.MaxBytes && len(s.segs) > 0 {
		if len(s.segs) == 1 {
			if s.segs[0].size == 0 {
				break // the record alone is bigger than the cap; keep it
			}
			if err := s.roll(); err != nil {
				return err
			}
		}
		if err := s.dropOldest(); err != nil {
			return err
		}
	}
	if s.w == nil {
		f, err := os.OpenFile(segPath(s.cfg.Dir, s.last().id), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
		if err != nil {
			return fmt.Errorf("open spool segment: %w", err)
		}
		s.w = f
	}
	last = s.last()
	if _, err := s.w.Write(s.buf); err != nil {
		// A full disk may have taken part of the record: cut it off, or the
		// next records would land behind bytes the spool does not know of
		// and read back as corrupt.
		if terr := s.w.Truncate(last.size); terr != nil {
			// Append to a new segment instead; this one's reader stops
			// at last.size, and Open cuts the rest off as a torn tail.
			_ = s.roll()
			return fmt.Errorf("append to spool segment: %w (and cutting the partial record off: %v)", err, terr)
		}
		return fmt.Errorf("append to spool segment: %w", err)
	}
	last.size += n
	last.msgs++
	last.rows += int64(m.Rows)
	s.updateGauges()
	return nil
}

func (s *Spool) last() *segment {
	if len(s.segs) == 0 {
		return nil
	}
	return s.segs[len(s.segs)-1]
}

// roll closes the open segment (fsynced) and starts a new, empty one.
func (s *Spool) roll() error {
	if err := s.closeWriter(true); err != nil {
		return err
	}
	id := s.nextID
	s.nextID++
	s.segs = append(s.segs, &segment{id: id})
	if len(s.segs) == 1 {
		s.read = position{seg: id}
		s.ackedMsgs, s.ackedRows = 0, 0
	}
	return nil
}

func (s *Spool) closeWriter(sync bool) error {
	if s.w == nil {
		return nil
	}
	var err error
	if sync {
		err = s.w.Sync()
	}
	if cerr := s.w.Close(); err == nil {
		err = cerr
	}
	s.w = nil
	if err != nil {
		return fmt.Errorf("close spool segment: %w", err)
	}
	return nil
}

// dropOldest deletes segs[0], counting its unacked messages and rows.
func (s *Spool) dropOldest() error {
	seg := s.segs[0]
	msgs, rows := seg.msgs-s.ackedMsgs, seg.rows-s.ackedRows
	s.droppedMsgs.Add(float64(msgs))
	s.droppedRows.Add(float64(rows))
	s.log.Warn("spool: byte cap reached, dropped the oldest segment", "segment", seg.id, "messages", msgs, "rows", rows)
	if err := os.Remove(segPath(s.cfg.Dir, seg.id)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("drop spool segment: %w", err)
	}
	s.segs = s.segs[1:]
	s.ackedMsgs, s.ackedRows = 0, 0
	if len(s.segs) > 0 {
		s.read = position{seg: s.segs[0].id}
	} else {
		s.read = position{seg: s.nextID}
	}
	return s.writeCursor()
}

// diskBytes is the size of all segment files.
func (s *Spool) diskBytes() int64 {
	var t int64
	for _, seg := range s.segs {
		t += seg.size
	}
	return t
}

// Bytes returns the bytes of unacknowledged records.
func (s *Spool) Bytes() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.unackedBytes()
}

func (s *Spool) unackedBytes() int64 {
	if len(s.segs) == 0 {
		return 0
	}
	return s.diskBytes() - s.read.off
}

// Len returns the number of unacknowledged messages.
func (s *Spool) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.unackedMsgs()
}

func (s *Spool) unackedMsgs() int {
	n := -s.ackedMsgs
	for _, seg := range s.segs {
		n += seg.msgs
	}
	return n
}

func (s *Spool) updateGauges() {
	s.bytes.Set(float64(s.unackedBytes()))
	s.segments.Set(float64(len(s.segs)))
	s.messages.Set(float64(s.unackedMsgs()))
}

// Peek returns up to max of the oldest unacknowledged messages, in order,
// without removing them; Ack removes them. A Peek replaces the previous
// one's view. The returned messages share no memory with the spool.
func (s *Spool) Peek(max int) ([]schemas.Message, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	s.peek = s.peek[:0]
	if err := s.dropConsumedHeads(); err != nil {
		return nil, err
	}
	var out []schemas.Message
	pos := s.read
	for i := 0; i < len(s.segs) && len(out) < max; i++ {
		seg := s.segs[i]
		if seg.id != pos.seg {
			pos = position{seg: seg.id}
		}
		if pos.off >= seg.size || seg.msgs == 0 {
			continue
		}
		f, err := os.Open(segPath(s.cfg.Dir, seg.id))
		if err != nil {
			return nil, fmt.Errorf("open spool segment: %w", err)
		}
		out, pos, err = s.readFrom(f, seg, pos, out, max)
		f.Close()
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// readFrom reads good records of seg from pos until max messages are in
// out. A record found corrupt now (changed on disk since Open) is skipped and
// counted like one found at Open; a corrupt header ends the segment there.
func (s *Spool) readFrom(f *os.File, seg *segment, pos position, out []schemas.Message, max int) ([]schemas.Message, position, error) {
	var hdr [headerSize]byte
	readHere := 0
	for pos.off < seg.size && len(out) < max {
		if l, ok := seg.bad[pos.off]; ok {
			pos.off += l
			continue
		}
		_, err := f.ReadAt(hdr[:], pos.off)
		h := parseHeader(hdr[:])
		if err != nil || !h.lenOK || pos.off+headerSize+h.length > seg.size {
			s.corrupt.Inc()
			s.log.Warn("spool: record header unreadable or changed on disk; dropping the rest of the segment",
				"file", f.Name(), "offset", pos.off, "err", err)
			before := 0
			if seg.id == s.read.seg {
				before = s.ackedMsgs
			}
			seg.size, seg.msgs = pos.off, before+readHere
			break
		}
		next := position{seg: pos.seg, off: pos.off + headerSize + h.length}
		payload := make([]byte, h.length)
		if _, err := f.ReadAt(payload, pos.off+headerSize); err != nil && !(errors.Is(err, io.EOF) && int64(len(payload)) == h.length) {
			return out, pos, fmt.Errorf("read spool record at %s:%d: %w", filepath.Base(f.Name()), pos.off, err)
		}
		m, derr := decodePayload(payload)
		if !payloadOK(h, payload) || derr != nil {
			s.corrupt.Inc()
			s.log.Warn("spool: skipping record changed on disk (checksum mismatch)", "file", f.Name(), "offset", pos.off)
			seg.markBad(pos.off, headerSize+h.length)
			seg.msgs--
			pos = next
			continue
		}
		out = append(out, m)
		readHere++
		s.peek = append(s.peek, peeked{after: next, rows: int64(m.Rows)})
		pos = next
	}
	return out, pos, nil
}

// Ack removes the first n messages returned by the last Peek. Segments that
// are entirely acknowledged are deleted; when everything is acknowledged, all
// segment files are gone.
func (s *Spool) Ack(n int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if n <= 0 {
		return nil
	}
	if n > len(s.peek) {
		return fmt.Errorf("spool ack %d: only %d messages peeked", n, len(s.peek))
	}
	for _, p := range s.peek[:n] {
		if len(s.segs) == 0 || p.after.seg < s.segs[0].id {
			continue // its segment was dropped at the byte cap meanwhile
		}
		for len(s.segs) > 0 && s.segs[0].id < p.after.seg {
			if err := s.removeHead(); err != nil {
				return err
			}
		}
		s.read = p.after
		s.ackedMsgs++
		s.ackedRows += p.rows
	}
	s.peek = s.peek[n:]
	if len(s.segs) > 0 && s.read.seg == s.segs[0].id {
		for l, ok := s.segs[0].bad[s.read.off]; ok; l, ok = s.segs[0].bad[s.read.off] {
			s.read.off += l // corrupt records right after the acked ones
		}
	}
	if err := s.dropConsumedHeads(); err != nil {
		return err
	}
	s.updateGauges()
	return s.writeCursor()
}

// dropConsumedHeads deletes head segments whose good messages are all acked
// (what may follow them is corrupt records only), including the open last
// segment, so that a drained spool holds no files.
func (s *Spool) dropConsumedHeads() error {
	for len(s.segs) > 0 && s.ackedMsgs >= s.segs[0].msgs {
		if len(s.segs) == 1 {
			if err := s.closeWriter(false); err != nil {
				return err
			}
		}
		if err := s.removeHead(); err != nil {
			return err
		}
	}
	return nil
}

// removeHead deletes the fully acked segs[0].
func (s *Spool) removeHead() error {
	if err := os.Remove(segPath(s.cfg.Dir, s.segs[0].id)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("delete acked spool segment: %w", err)
	}
	s.segs = s.segs[1:]
	s.ackedMsgs, s.ackedRows = 0, 0
	if len(s.segs) > 0 {
		s.read = position{seg: s.segs[0].id}
	} else {
		s.read = position{seg: s.nextID}
	}
	return nil
}

// Sync flushes appended records to stable storage.
func (s *Spool) Sync() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.w == nil {
		return nil
	}
	if err := s.w.Sync(); err != nil {
		return fmt.Errorf("sync spool segment: %w", err)
	}
	return nil
}

// Close syncs and closes the spool. Unacked messages stay on disk for the
// next Open.
func (s *Spool) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	return s.closeWriter(true)
}
