package spool

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/flowbus/flowbus/schemas"
)

func msg(seq uint64, size int) schemas.Message {
	return schemas.Message{
		Key: fmt.Sprintf("payments/svc-%d", seq%3), Node: "node-a", Run: "r1", Seq: seq,
		Rows: int(seq) * 10, FirstTS: int64(seq) * 1000, LastTS: int64(seq)*1000 + 999,
		Value: bytes.Repeat([]byte{byte(seq)}, size),
	}
}

func open(t *testing.T, dir string, cfg Config) (*Spool, *prometheus.Registry) {
	t.Helper()
	cfg.Dir = dir
	reg := prometheus.NewRegistry()
	s, err := Open(cfg, nil, reg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s, reg
}

func appendAll(t *testing.T, s *Spool, msgs ...schemas.Message) {
	t.Helper()
	for i := range msgs {
		if err := s.Append(&msgs[i]); err != nil {
			t.Fatalf("Append seq %d: %v", msgs[i].Seq, err)
		}
	}
}

// drain peeks and acks everything, n at a time, and returns the sequence numbers.
func drain(t *testing.T, s *Spool, n int) []uint64 {
	t.Helper()
	var seqs []uint64
	for {
		got, err := s.Peek(n)
		if err != nil {
			t.Fatalf("Peek: %v", err)
		}
		if len(got) == 0 {
			return seqs
		}
		for _, m := range got {
			if want := msg(m.Seq, len(m.Value)); !reflect.DeepEqual(m, want) {
				t.Fatalf("message seq %d differs:\n got %+v\nwant %+v", m.Seq, m, want)
			}
			seqs = append(seqs, m.Seq)
		}
		if err := s.Ack(len(got)); err != nil {
			t.Fatalf("Ack: %v", err)
		}
	}
}

func seqRange(from, to uint64) []uint64 {
	var s []uint64
	for i := from; i <= to; i++ {
		s = append(s, i)
	}
	return s
}

func segFiles(t *testing.T, dir string) []string {
	t.Helper()
	m, _ := filepath.Glob(filepath.Join(dir, "*.seg"))
	return m
}

func TestRoundTripInOrderAcrossSegments(t *testing.T) {
	dir := t.TempDir()
	s, _ := open(t, dir, Config{SegmentBytes: 4096, MaxBytes: 1 << 20})
	for i := uint64(1); i <= 100; i++ {
		appendAll(t, s, msg(i, 100))
	}
	if got := s.Len(); got != 100 {
		t.Errorf("Len = %d, want 100", got)
	}
	if n := len(segFiles(t, dir)); n < 3 {
		t.Errorf("%d segment files, want several at 4 KiB each", n)
	}
	if got := drain(t, s, 7); !reflect.DeepEqual(got, seqRange(1, 100)) {
		t.Errorf("drained %v, want 1..100 in order", got)
	}
	if b := s.Bytes(); b != 0 {
		t.Errorf("Bytes after draining = %d, want 0", b)
	}
	if f := segFiles(t, dir); len(f) != 0 {
		t.Errorf("segment files left after draining: %v", f)
	}
	// Appending after a full drain starts a new segment and still works.
	appendAll(t, s, msg(101, 10))
	if got := drain(t, s, 10); !reflect.DeepEqual(got, []uint64{101}) {
		t.Errorf("after refill drained %v, want [101]", got)
	}
}

func TestPeekWithoutAckRepeats(t *testing.T) {
	s, _ := open(t, t.TempDir(), Config{})
	appendAll(t, s, msg(1, 5), msg(2, 5), msg(3, 5))
	a, _ := s.Peek(2)
	b, _ := s.Peek(2)
	if !reflect.DeepEqual(a, b) || len(a) != 2 || a[0].Seq != 1 {
		t.Fatalf("two Peeks without Ack differ or are wrong: %v vs %v", a, b)
	}
	if err := s.Ack(1); err != nil {
		t.Fatal(err)
	}
	c, _ := s.Peek(5)
	if len(c) != 2 || c[0].Seq != 2 || c[1].Seq != 3 {
		t.Errorf("after Ack(1) Peek = %d messages starting %d, want 2 and 3", len(c), c[0].Seq)
	}
	if err := s.Ack(3); err == nil {
		t.Error("Ack of more than peeked succeeded, want error")
	}
}

func TestRestartResumesAfterAckedMessages(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{SegmentBytes: 4096, MaxBytes: 1 << 20}
	s, _ := open(t, dir, cfg)
	for i := uint64(1); i <= 60; i++ {
		appendAll(t, s, msg(i, 100))
	}
	got, _ := s.Peek(25)
	if err := s.Ack(len(got)); err != nil {
		t.Fatal(err)
	}
	wantBytes := s.Bytes()
	s.Close()

	s2, _ := open(t, dir, cfg)
	if s2.Len() != 35 || s2.Bytes() != wantBytes {
		t.Errorf("after restart Len=%d Bytes=%d, want 35 and %d", s2.Len(), s2.Bytes(), wantBytes)
	}
	appendAll(t, s2, msg(61, 100))
	if got := drain(t, s2, 4); !reflect.DeepEqual(got, seqRange(26, 61)) {
		t.Errorf("after restart drained %v, want 26..61", got)
	}
}

func TestTornTailIsTruncatedAndCounted(t *testing.T) {
	for _, cut := range []int{5, headerSize + 3} {
		t.Run(fmt.Sprintf("a record cut %d bytes in is removed and the ones before it survive", cut), func(t *testing.T) {
			dir := t.TempDir()
			s, _ := open(t, dir, Config{})
			appendAll(t, s, msg(1, 50), msg(2, 50))
			s.Close()
			seg := segFiles(t, dir)[0]
			good, _ := os.ReadFile(seg)
			torn := appendRecord(nil, ptr(msg(3, 50)))[:cut]
			os.WriteFile(seg, append(good, torn...), 0o640)

			s2, reg := open(t, dir, Config{})
			if v := counter(t, reg, "flowbus_spool_torn_tails_total"); v != 1 {
				t.Errorf("torn tails = %v, want 1", v)
			}
			if fi, _ := os.Stat(seg); fi.Size() != int64(len(good)) {
				t.Errorf("segment is %d bytes after Open, want truncated to %d", fi.Size(), len(good))
			}
			appendAll(t, s2, msg(4, 50))
			if got := drain(t, s2, 10); !reflect.DeepEqual(got, []uint64{1, 2, 4}) {
				t.Errorf("drained %v, want [1 2 4]", got)
			}
		})
	}
}

func TestCorruptRecords(t *testing.T) {
	t.Run("a record with a bad payload checksum is skipped, counted, and the next ones read", func(t *testing.T) {
		dir := t.TempDir()
		s, _ := open(t, dir, Config{})
		appendAll(t, s, msg(1, 50), msg(2, 50), msg(3, 50))
		s.Close()
		seg := segFiles(t, dir)[0]
		b, _ := os.ReadFile(seg)
		recLen := len(appendRecord(nil, ptr(msg(1, 50))))
		b[recLen+headerSize+20] ^= 0xff // inside record 2's payload
		os.WriteFile(seg, b, 0o640)

		s2, reg := open(t, dir, Config{})
		if v := counter(t, reg, "flowbus_spool_corrupt_records_total"); v != 1 {
			t.Errorf("corrupt records = %v, want 1", v)
		}
		if s2.Len() != 2 {
			t.Errorf("Len = %d, want 2", s2.Len())
		}
		if got := drain(t, s2, 10); !reflect.DeepEqual(got, []uint64{1, 3}) {
			t.Errorf("drained %v, want [1 3]", got)
		}
		if s2.Bytes() != 0 || len(segFiles(t, dir)) != 0 {
			t.Errorf("Bytes=%d files=%v after draining, want 0 and none", s2.Bytes(), segFiles(t, dir))
		}
	})
	t.Run("a record with a bad header cuts the rest of its segment and is counted", func(t *testing.T) {
		dir := t.TempDir()
		s, _ := open(t, dir, Config{})
		appendAll(t, s, msg(1, 50), msg(2, 50), msg(3, 50))
		s.Close()
		seg := segFiles(t, dir)[0]
		b, _ := os.ReadFile(seg)
		recLen := len(appendRecord(nil, ptr(msg(1, 50))))
		b[recLen+1] ^= 0x40 // record 2's length
		os.WriteFile(seg, b, 0o640)

		s2, reg := open(t, dir, Config{})
		if v := counter(t, reg, "flowbus_spool_corrupt_records_total"); v != 1 {
			t.Errorf("corrupt records = %v, want 1", v)
		}
		if got := drain(t, s2, 10); !reflect.DeepEqual(got, []uint64{1}) {
			t.Errorf("drained %v, want [1]", got)
		}
	})
	t.Run("a damaged cursor replays from the oldest segment", func(t *testing.T) {
		dir := t.TempDir()
		s, _ := open(t, dir, Config{})
		appendAll(t, s, msg(1, 50), msg(2, 50))
		s.Peek(1)
		s.Ack(1)
		s.Close()
		os.WriteFile(filepath.Join(dir, "cursor"), []byte("garbage"), 0o640)
		s2, _ := open(t, dir, Config{})
		if got := drain(t, s2, 10); !reflect.DeepEqual(got, []uint64{1, 2}) {
			t.Errorf("drained %v, want [1 2]", got)
		}
	})
}

func TestByteCapDropsOldestSegment(t *testing.T) {
	dir := t.TempDir()
	// Records are 1040 to 1046 bytes long: 4 fit a segment, and the cap is 3 segments.
	const seg = 4*1046 + 10
	s, reg := open(t, dir, Config{SegmentBytes: seg, MaxBytes: 3 * seg})
	for i := uint64(1); i <= 12; i++ {
		appendAll(t, s, msg(i, 1000))
	}
	if v := counter(t, reg, "flowbus_spool_dropped_messages_total"); v != 0 {
		t.Fatalf("dropped %v messages at exactly the cap, want 0", v)
	}
	appendAll(t, s, msg(13, 1000)) // needs a 4th segment: segment 1 (seq 1-4) goes
	if v := counter(t, reg, "flowbus_spool_dropped_messages_total"); v != 4 {
		t.Errorf("dropped messages = %v, want 4", v)
	}
	if v := counter(t, reg, "flowbus_spool_dropped_rows_total"); v != 10+20+30+40 {
		t.Errorf("dropped rows = %v, want 100", v)
	}
	if v := testutil.ToFloat64(s.segments); v != 3 {
		t.Errorf("flowbus_spool_segments = %v, want 3", v)
	}
	if got := drain(t, s, 5); !reflect.DeepEqual(got, seqRange(5, 13)) {
		t.Errorf("drained %v, want 5..13", got)
	}
	if v := testutil.ToFloat64(s.bytes); v != 0 {
		t.Errorf("flowbus_spool_bytes = %v after draining, want 0", v)
	}
}

func TestAckOfDroppedSegmentIsTolerated(t *testing.T) {
	dir := t.TempDir()
	const seg = 4*1046 + 10
	s, _ := open(t, dir, Config{SegmentBytes: seg, MaxBytes: 2 * seg})
	for i := uint64(1); i <= 4; i++ {
		appendAll(t, s, msg(i, 1000))
	}
	got, _ := s.Peek(2) // the reader is publishing 1 and 2 ...
	for i := uint64(5); i <= 9; i++ {
		appendAll(t, s, msg(i, 1000)) // ... while the cap drops segment 1..4
	}
	if err := s.Ack(len(got)); err != nil {
		t.Fatalf("Ack after the peeked segment was dropped: %v", err)
	}
	if got := drain(t, s, 3); !reflect.DeepEqual(got, seqRange(5, 9)) {
		t.Errorf("drained %v, want 5..9", got)
	}
}

func TestConfigValidate(t *testing.T) {
	for name, c := range map[string]Config{
		"an empty dir is refused":                 {},
		"a tiny segment is refused":               {Dir: "x", SegmentBytes: 10},
		"a cap smaller than a segment is refused": {Dir: "x", SegmentBytes: 1 << 20, MaxBytes: 1 << 10},
	} {
		t.Run(name, func(t *testing.T) {
			if err := c.Validate(); err == nil {
				t.Errorf("Validate(%+v) = nil, want error", c)
			}
		})
	}
}

func ptr(m schemas.Message) *schemas.Message { return &m }

func counter(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatalf("metric %s not registered", name)
	return 0
}

func TestCorruptionAtTheTailOrAfterOpen(t *testing.T) {
	recLen := len(appendRecord(nil, ptr(msg(1, 50))))
	t.Run("a corrupt last record does not keep the spool from emptying", func(t *testing.T) {
		dir := t.TempDir()
		s, _ := open(t, dir, Config{})
		appendAll(t, s, msg(1, 50), msg(2, 50))
		s.Close()
		seg := segFiles(t, dir)[0]
		b, _ := os.ReadFile(seg)
		b[recLen+headerSize+30] ^= 1
		os.WriteFile(seg, b, 0o640)
		s2, _ := open(t, dir, Config{})
		if got := drain(t, s2, 10); !reflect.DeepEqual(got, []uint64{1}) {
			t.Errorf("drained %v, want [1]", got)
		}
		if s2.Bytes() != 0 || len(segFiles(t, dir)) != 0 {
			t.Errorf("Bytes=%d files=%v after draining, want 0 and none", s2.Bytes(), segFiles(t, dir))
		}
	})
	t.Run("a segment of only corrupt records is removed at Open", func(t *testing.T) {
		dir := t.TempDir()
		s, _ := open(t, dir, Config{})
		appendAll(t, s, msg(1, 50))
		s.Close()
		seg := segFiles(t, dir)[0]
		b, _ := os.ReadFile(seg)
		b[headerSize+30] ^= 1
		os.WriteFile(seg, b, 0o640)
		s2, reg := open(t, dir, Config{})
		if s2.Len() != 0 || s2.Bytes() != 0 || len(segFiles(t, dir)) != 0 {
			t.Errorf("Len=%d Bytes=%d files=%v, want an empty spool", s2.Len(), s2.Bytes(), segFiles(t, dir))
		}
		if v := counter(t, reg, "flowbus_spool_corrupt_records_total"); v != 1 {
			t.Errorf("corrupt records = %v, want 1", v)
		}
	})
	for _, tc := range []struct {
		name string
		at   int // byte to flip, in record 2
		want []uint64
	}{
		{"a payload changed on disk after Open is skipped and counted", headerSize + 300, []uint64{1, 3, 4}},
		{"a header changed on disk after Open drops the rest of its segment, counted", 1, []uint64{1, 4}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			// Three records per segment: 1 2 3 | 4 (values sized to fill 4 KiB segments).
			s, reg := open(t, dir, Config{SegmentBytes: 4096})
			appendAll(t, s, msg(1, 1300), msg(2, 1300), msg(3, 1300), msg(4, 1300))
			f, err := os.OpenFile(segFiles(t, dir)[0], os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			b := make([]byte, 1)
			rec1 := len(appendRecord(nil, ptr(msg(1, 1300))))
			f.ReadAt(b, int64(rec1+tc.at))
			b[0] ^= 0x10
			f.WriteAt(b, int64(rec1+tc.at))
			f.Close()
			if got := drain(t, s, 10); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("drained %v, want %v", got, tc.want)
			}
			if v := counter(t, reg, "flowbus_spool_corrupt_records_total"); v != 1 {
				t.Errorf("corrupt records = %v, want 1", v)
			}
			if s.Len() != 0 || s.Bytes() != 0 || len(segFiles(t, dir)) != 0 {
				t.Errorf("Len=%d Bytes=%d files=%v after draining, want an empty spool", s.Len(), s.Bytes(), segFiles(t, dir))
			}
		})
	}
}
