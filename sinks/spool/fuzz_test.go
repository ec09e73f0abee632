package spool

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// FuzzDecodePayload: any bytes decode to a message or an error, never a panic;
// an encoded message decodes back to itself.
func FuzzDecodePayload(f *testing.F) {
	f.Add(appendRecord(nil, ptr(msg(3, 10)))[headerSize:])
	f.Add([]byte{})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodePayload(b)
		if err != nil {
			return
		}
		again, err := decodePayload(appendRecord(nil, &m)[headerSize:])
		if err != nil || !reflect.DeepEqual(again, m) {
			t.Fatalf("re-encoded message does not decode to itself: %v", err)
		}
	})
}

// FuzzOpenSegment: Open survives any segment file content and leaves a
// spool that can be drained.
func FuzzOpenSegment(f *testing.F) {
	good := appendRecord(nil, ptr(msg(1, 20)))
	f.Add(good)
	f.Add(append(append([]byte{}, good...), good[:7]...))
	f.Add([]byte("not a spool segment at all"))
	f.Fuzz(func(t *testing.T, b []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "0000000000000001.seg"), b, 0o640); err != nil {
			t.Fatal(err)
		}
		s, err := Open(Config{Dir: dir}, nil, nil)
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		defer s.Close()
		for range 1000 {
			got, err := s.Peek(10)
			if err != nil {
				t.Fatalf("Peek after Open: %v", err)
			}
			if len(got) == 0 {
				break
			}
			if err := s.Ack(len(got)); err != nil {
				t.Fatal(err)
			}
		}
		if s.Len() != 0 {
			t.Fatalf("Len = %d after draining", s.Len())
		}
	})
}
