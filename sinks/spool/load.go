package spool

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// load scans the directory: segments, then the cursor.
func (s *Spool) load() error {
	entries, err := os.ReadDir(s.cfg.Dir)
	if err != nil {
		return fmt.Errorf("read spool dir: %w", err)
	}
	var ids []uint64
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, ".seg") {
			continue
		}
		id, err := strconv.ParseUint(strings.TrimSuffix(name, ".seg"), 16, 64)
		if err != nil {
			s.log.Warn("spool: ignoring file with a bad segment name", "file", name)
			continue
		}
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	cur, hasCur := s.readCursor()
	s.nextID = 1
	if len(ids) > 0 {
		s.nextID = ids[len(ids)-1] + 1
	}
	if hasCur && cur.seg >= s.nextID {
		s.nextID = cur.seg
	}
	s.read = position{seg: s.nextID}
	for _, id := range ids {
		if hasCur && id < cur.seg {
			// Fully acked before a restart; its deletion did not happen.
			os.Remove(segPath(s.cfg.Dir, id))
			continue
		}
		seg, err := s.scan(id)
		if err != nil {
			return err
		}
		if seg.msgs == 0 {
			// Nothing readable in it (empty, or only corrupt records).
			if err := os.Remove(segPath(s.cfg.Dir, id)); err != nil {
				return fmt.Errorf("remove empty spool segment: %w", err)
			}
			continue
		}
		s.segs = append(s.segs, seg)
	}
	if len(s.segs) > 0 {
		s.read = position{seg: s.segs[0].id}
		if hasCur && cur.seg == s.segs[0].id && cur.off <= s.segs[0].size {
			s.read.off = cur.off
			s.ackedMsgs, s.ackedRows = cur.msgs, cur.rows
		}
	}
	return nil
}

// scan validates one segment file, truncating a torn or unreadable tail.
func (s *Spool) scan(id uint64) (*segment, error) {
	path := segPath(s.cfg.Dir, id)
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read spool segment: %w", err)
	}
	seg := &segment{id: id}
	off := int64(0)
	for off < int64(len(data)) {
		rest := data[off:]
		if len(rest) < headerSize {
			s.torn.Inc()
			s.log.Warn("spool: truncating torn record header", "file", path, "offset", off)
			break
		}
		h := parseHeader(rest)
		if !h.lenOK || h.length > maxRecord {
			s.corrupt.Inc()
			s.log.Warn("spool: corrupt record header, cutting the rest of the segment", "file", path, "offset", off, "bytes_lost", len(rest))
			break
		}
		if int64(len(rest)) < headerSize+h.length {
			s.torn.Inc()
			s.log.Warn("spool: truncating torn record", "file", path, "offset", off)
			break
		}
		payload := rest[headerSize : headerSize+h.length]
		m, derr := decodePayload(payload)
		if !payloadOK(h, payload) || derr != nil {
			s.corrupt.Inc()
			s.log.Warn("spool: skipping record with a bad checksum", "file", path, "offset", off)
			seg.markBad(off, headerSize+h.length)
		} else {
			seg.msgs++
			seg.rows += int64(m.Rows)
		}
		off += headerSize + h.length
	}
	seg.size = off
	if off < int64(len(data)) {
		if err := os.Truncate(path, off); err != nil {
			return nil, fmt.Errorf("truncate spool segment: %w", err)
		}
	}
	return seg, nil
}

const cursorSize = 36

// writeCursor persists the read position atomically.
func (s *Spool) writeCursor() error {
	var b [cursorSize]byte
	binary.LittleEndian.PutUint64(b[0:], s.read.seg)
	binary.LittleEndian.PutUint64(b[8:], uint64(s.read.off))
	binary.LittleEndian.PutUint64(b[16:], uint64(s.ackedMsgs))
	binary.LittleEndian.PutUint64(b[24:], uint64(s.ackedRows))
	binary.LittleEndian.PutUint32(b[32:], crc32.Checksum(b[:32], castagnoli))
	path := filepath.Join(s.cfg.Dir, "cursor")
	if err := os.WriteFile(path+".tmp", b[:], 0o640); err != nil {
		return fmt.Errorf("write spool cursor: %w", err)
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		return fmt.Errorf("write spool cursor: %w", err)
	}
	return nil
}

type cursor struct {
	seg  uint64
	off  int64
	msgs int
	rows int64
}

// readCursor reads the persisted read position; a missing or damaged cursor
// means "from the start of the oldest segment".
func (s *Spool) readCursor() (cursor, bool) {
	b, err := os.ReadFile(filepath.Join(s.cfg.Dir, "cursor"))
	if err != nil {
		return cursor{}, false
	}
	if len(b) != cursorSize || crc32.Checksum(b[:32], castagnoli) != binary.LittleEndian.Uint32(b[32:]) {
		s.log.Warn("spool: ignoring damaged cursor file; replaying from the oldest segment")
		return cursor{}, false
	}
	return cursor{
		seg:  binary.LittleEndian.Uint64(b[0:]),
		off:  int64(binary.LittleEndian.Uint64(b[8:])),
		msgs: int(binary.LittleEndian.Uint64(b[16:])),
		rows: int64(binary.LittleEndian.Uint64(b[24:])),
	}, true
}
