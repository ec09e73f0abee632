package ocsf

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/flowbus/flowbus/schemas"
)

// FileConfig configures a FileSink.
type FileConfig struct {
	Dir      string        // required; created if missing
	Name     string        // file name stem (default "flowbus-ocsf")
	MaxBytes int64         // rotate before the active file would exceed this (default 128 MiB)
	MaxAge   time.Duration // rotate once the active file is this old (default 1 h)
	MaxFiles int           // rotated files kept, the oldest removed (default 24)
	Encoder  *Encoder      // for WriteFlow (default: the package's)
	Now      func() time.Time
}

// Defaults of FileConfig.
const (
	DefaultFileMaxBytes = 128 << 20
	DefaultFileMaxAge   = time.Hour
	DefaultFileMaxFiles = 24
	fileBuffer          = 64 << 10
	rotatedTimeFormat   = "20060102T150405.000000000Z"
)

// FileStats counts what a FileSink did.
type FileStats struct {
	Events    uint64 // events written
	Bytes     uint64 // bytes written, newlines included
	Rotations uint64 // active files renamed
	Removed   uint64 // rotated files removed beyond MaxFiles
	Refused   uint64 // flows the encoder refused (WriteFlow)
}

// FileSink writes OCSF events as JSON lines to <Dir>/<Name>.jsonl and
// rotates it by size and age: the file is renamed, atomically, to
// <Name>-<UTC time of rotation>.jsonl (a name that sorts in time order) and
// a new one started; rotated files beyond MaxFiles are removed, oldest first.
//
// Readers: a rotated file is complete and never changes again. The active
// file only grows, by whole lines: events are buffered and written in
// whole-line chunks of up to 64 KiB, never rewritten or truncated. A chunk
// being written may be seen half-copied by a concurrent read (the kernel
// copies large writes page by page), so a reader takes the lines up to the
// last newline and reads the rest later, as tail -F, Fluent Bit or a Splunk
// forwarder do; those lines are always whole events. Flush writes the
// buffer; Close flushes and fsyncs. A non-empty active file left by an
// earlier process is rotated when the sink opens.
//
// Safe for concurrent use.
type FileSink struct {
	cfg FileConfig

	mu     sync.Mutex
	f      *os.File
	size   int64
	opened time.Time
	buf    []byte
	scr    []byte
	stats  FileStats
	closed bool
}

// OpenFile opens the sink, creating Dir.
func OpenFile(cfg FileConfig) (*FileSink, error) {
	if cfg.Dir == "" {
		return nil, errors.New("ocsf file sink: Dir is empty")
	}
	if cfg.Name == "" {
		cfg.Name = "flowbus-ocsf"
	}
	if strings.ContainsAny(cfg.Name, `/\`) {
		return nil, fmt.Errorf("ocsf file sink: Name %q must be a file name, not a path", cfg.Name)
	}
	if cfg.MaxBytes <= 0 {
		cfg.MaxBytes = DefaultFileMaxBytes
	}
	if cfg.MaxAge <= 0 {
		cfg.MaxAge = DefaultFileMaxAge
	}
	if cfg.MaxFiles <= 0 {
		cfg.MaxFiles = DefaultFileMaxFiles
	}
	if cfg.Encoder == nil {
		cfg.Encoder = &defaultEncoder
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if err := os.MkdirAll(cfg.Dir, 0o750); err != nil {
		return nil, fmt.Errorf("ocsf file sink: %w", err)
	}
	s := &FileSink{cfg: cfg}
	if fi, err := os.Stat(s.activePath()); err == nil && fi.Size() > 0 {
		if err := s.rename(); err != nil {
			return nil, err
		}
	}
	if err := s.open(); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *FileSink) activePath() string {
	return filepath.Join(s.cfg.Dir, s.cfg.Name+".jsonl")
}

func (s *FileSink) open() error {
	f, err := os.OpenFile(s.activePath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return fmt.Errorf("ocsf file sink: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("ocsf file sink: %w", err)
	}
	s.f, s.size, s.opened = f, fi.Size(), s.cfg.Now()
	return nil
}

// Write writes one event (a JSON object without newline) as one line.
func (s *FileSink) Write(event []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.write(event)
}

// WriteFlow encodes f with the sink's Encoder and writes it. A flow the
// encoder refuses is counted in Refused and its error returned.
func (s *FileSink) WriteFlow(f *schemas.Flow) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var err error
	s.scr, err = s.cfg.Encoder.Append(s.scr[:0], f)
	if err != nil {
		s.stats.Refused++
		return err
	}
	return s.write(s.scr)
}

func (s *FileSink) write(event []byte) error {
	if s.closed {
		return errors.New("ocsf file sink: closed")
	}
	line := int64(len(event) + 1)
	pending := s.size + int64(len(s.buf))
	if pending > 0 && (pending+line > s.cfg.MaxBytes || s.cfg.Now().Sub(s.opened) >= s.cfg.MaxAge) {
		if err := s.rotate(); err != nil {
			return err
		}
	}
	s.buf = append(s.buf, event...)
	s.buf = append(s.buf, '\n')
	s.stats.Events++
	s.stats.Bytes += uint64(line)
	if len(s.buf) >= fileBuffer {
		return s.flush()
	}
	return nil
}

func (s *FileSink) flush() error {
	if len(s.buf) == 0 {
		return nil
	}
	n, err := s.f.Write(s.buf)
	s.size += int64(n)
	s.buf = s.buf[:0]
	if err != nil {
		return fmt.Errorf("ocsf file sink: write %s: %w", s.activePath(), err)
	}
	return nil
}

// Flush writes buffered events to the active file.
func (s *FileSink) Flush() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	return s.flush()
}

// Sync writes buffered events to the active file and fsyncs it: what was
// written before Sync survives a crash of the machine, not only of the
// process.
func (s *FileSink) Sync() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	if err := s.flush(); err != nil {
		return err
	}
	if err := s.f.Sync(); err != nil {
		return fmt.Errorf("ocsf file sink: sync: %w", err)
	}
	return nil
}

// Rotate rotates now (if the active file holds anything).
func (s *FileSink) Rotate() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.size+int64(len(s.buf)) == 0 {
		return nil
	}
	return s.rotate()
}

func (s *FileSink) rotate() error {
	if err := s.flush(); err != nil {
		return err
	}
	if err := s.f.Sync(); err != nil {
		return fmt.Errorf("ocsf file sink: sync: %w", err)
	}
	if err := s.f.Close(); err != nil {
		return fmt.Errorf("ocsf file sink: close: %w", err)
	}
	if err := s.rename(); err != nil {
		return err
	}
	return s.open()
}

// rename moves the active file to its rotated name and prunes old ones.
func (s *FileSink) rename() error {
	stamp := s.cfg.Now().UTC().Format(rotatedTimeFormat)
	name := filepath.Join(s.cfg.Dir, s.cfg.Name+"-"+stamp+".jsonl")
	for i := 1; ; i++ {
		if _, err := os.Lstat(name); errors.Is(err, os.ErrNotExist) {
			break
		}
		name = filepath.Join(s.cfg.Dir, fmt.Sprintf("%s-%s~%d.jsonl", s.cfg.Name, stamp, i)) // "~" sorts after "."
	}
	if err := os.Rename(s.activePath(), name); err != nil {
		return fmt.Errorf("ocsf file sink: rotate: %w", err)
	}
	s.stats.Rotations++
	rotated, err := s.Rotated()
	if err != nil {
		return err
	}
	for len(rotated) > s.cfg.MaxFiles {
		if err := os.Remove(rotated[0]); err != nil {
			return fmt.Errorf("ocsf file sink: remove old file: %w", err)
		}
		rotated = rotated[1:]
		s.stats.Removed++
	}
	return nil
}

// Rotated returns the rotated files' paths, oldest first.
func (s *FileSink) Rotated() ([]string, error) {
	all, err := filepath.Glob(filepath.Join(s.cfg.Dir, s.cfg.Name+"-*.jsonl"))
	if err != nil {
		return nil, err
	}
	slices.Sort(all)
	return all, nil
}

// ActivePath is the file being written.
func (s *FileSink) ActivePath() string { return s.activePath() }

// Stats returns the counters.
func (s *FileSink) Stats() FileStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

// Close flushes, fsyncs and closes the active file (it is not rotated).
func (s *FileSink) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	err := s.flush()
	if e := s.f.Sync(); err == nil && e != nil {
		err = fmt.Errorf("ocsf file sink: sync: %w", e)
	}
	if e := s.f.Close(); err == nil && e != nil {
		err = fmt.Errorf("ocsf file sink: close: %w", e)
	}
	return err
}
