package flowcodec

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"

	"github.com/flowbus/flowbus/internal/flowtest"
	"github.com/flowbus/flowbus/schemas"
)

// readColumns reads a stream with arrow-go and returns its one record batch.
func readColumns(t *testing.T, msg []byte) arrow.RecordBatch {
	t.Helper()
	r, err := ipc.NewReader(bytes.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Release)
	if !r.Next() {
		t.Fatalf("no record batch: %v", r.Err())
	}
	rec := r.RecordBatch()
	rec.Retain()
	t.Cleanup(rec.Release)
	return rec
}

// TestProjectedDecodeFillsExactlyItsColumns decodes random flows with a
// projection of each single column, and of a few columns at once, and
// encodes the result again: as arrow-go reads it, every selected column
// equals the original's and every other column equals that of all-zero
// flows.
func TestProjectedDecodeFillsExactlyItsColumns(t *testing.T) {
	g := flowtest.NewGen(41)
	flows := flowtest.Fleet(43, 200)
	for range 300 {
		flows = append(flows, g.Flow())
	}
	enc, dec := NewEncoder(), NewDecoder()
	orig, err := enc.Encode(nil, flows)
	if err != nil {
		t.Fatal(err)
	}
	zero, err := NewEncoder().Encode(nil, make([]schemas.Flow, len(flows)))
	if err != nil {
		t.Fatal(err)
	}
	origRec, zeroRec := readColumns(t, orig), readColumns(t, zero)
	fields := NewArrowSchema().Fields()
	sets := [][]string{{"time", "src_workload", "l7_http_url", "latency_hist", "is_reply"}}
	for _, f := range fields {
		sets = append(sets, []string{f.Name})
	}
	for _, set := range sets {
		t.Run(strings.Join(set, "+"), func(t *testing.T) {
			p, err := NewProjection(set...)
			if err != nil {
				t.Fatal(err)
			}
			got, err := dec.DecodeProjected(nil, orig, p)
			if err != nil {
				t.Fatal(err)
			}
			re, err := enc.Encode(nil, got)
			if err != nil {
				t.Fatal(err)
			}
			rec := readColumns(t, re)
			for k, f := range fields {
				want := zeroRec.Column(k)
				if p.has(k) {
					want = origRec.Column(k)
				}
				if !array.Equal(rec.Column(k), want) {
					t.Fatalf("column %s differs from the %s", f.Name, map[bool]string{true: "original", false: "zero flows'"}[p.has(k)])
				}
			}
		})
	}
}

func TestProjectionOfEveryColumnIsDecode(t *testing.T) {
	flows := flowtest.Fleet(47, 500)
	msg, err := NewEncoder().Encode(nil, flows)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range NewArrowSchema().Fields() {
		names = append(names, f.Name)
	}
	p, err := NewProjection(names...)
	if err != nil {
		t.Fatal(err)
	}
	if got := p.Columns(); len(got) != len(names) {
		t.Fatalf("Columns() = %d names, want %d", len(got), len(names))
	}
	dec := NewDecoder()
	full, err := dec.Decode(nil, msg)
	if err != nil {
		t.Fatal(err)
	}
	got, err := dec.DecodeProjected(nil, msg, p)
	if err != nil {
		t.Fatal(err)
	}
	checkEqual(t, got, full)
	// The zero Projection selects every column too.
	if got, err = dec.DecodeProjected(got[:0], msg, Projection{}); err != nil {
		t.Fatal(err)
	}
	checkEqual(t, got, full)
}

func TestNewProjectionRejectsUnknownColumns(t *testing.T) {
	_, err := NewProjection("time", "src_podname")
	if err == nil || !strings.Contains(err.Error(), `no column "src_podname"`) || !strings.Contains(err.Error(), "src_pod_name") {
		t.Fatalf("err = %v, want one naming the unknown column and listing the valid ones", err)
	}
}

// TestProjectedDecodeOfBadInput: truncated and corrupted messages give an
// error of the documented kinds (or, for a flip in a skipped column, the
// selected columns), never a panic.
func TestProjectedDecodeOfBadInput(t *testing.T) {
	valid, err := NewEncoder().Encode(nil, flowtest.Fleet(13, 50))
	if err != nil {
		t.Fatal(err)
	}
	p, err := NewProjection("time", "src_workload", "dst_workload", "bytes_fwd", "latency_hist", "l7_http_url")
	if err != nil {
		t.Fatal(err)
	}
	dec := NewDecoder()
	for n := 0; n < len(valid); n += 1 + n/256 {
		if got, err := dec.DecodeProjected(nil, valid[:n], p); len(got) != 0 || err == nil {
			t.Fatalf("cut at %d: %d flows, err %v", n, len(got), err)
		}
	}
	for i := 0; i < len(valid); i += 1 + i/512 {
		msg := append([]byte(nil), valid...)
		msg[i] ^= 0xff
		got, err := dec.DecodeProjected(nil, msg, p)
		if err != nil && !errors.Is(err, ErrNotArrow) && !errors.Is(err, ErrTruncated) && !errors.Is(err, ErrUnknownSchema) {
			t.Fatalf("flip byte %d: unexpected error kind %v", i, err)
		}
		if err != nil && len(got) != 0 {
			t.Fatalf("flip byte %d: error %v with %d flows", i, err, len(got))
		}
	}
}

// TestDecodeEachCallsInOrder: DecodeEach hands over the same rows as
// DecodeProjected, in order; on a bad message it calls fn for none.
func TestDecodeEachCallsInOrder(t *testing.T) {
	g := flowtest.NewGen(53)
	flows := flowtest.Fleet(59, 400)
	for range 100 {
		flows = append(flows, g.Flow())
	}
	msg, err := NewEncoder().Encode(nil, flows)
	if err != nil {
		t.Fatal(err)
	}
	p, err := NewProjection("time", "src_workload", "dst_pod_name", "latency_hist", "l7_dns_qtypes", "is_reply")
	if err != nil {
		t.Fatal(err)
	}
	dec := NewDecoder()
	want, err := dec.DecodeProjected(nil, msg, p)
	if err != nil {
		t.Fatal(err)
	}
	var got []schemas.Flow
	n, err := dec.DecodeEach(msg, p, func(f *schemas.Flow) { got = append(got, *f) })
	if err != nil || n != len(flows) {
		t.Fatalf("DecodeEach = %d, %v; want %d rows", n, err, len(flows))
	}
	checkEqual(t, got, want)

	calls := 0
	for _, bad := range [][]byte{msg[:len(msg)-9], append(append([]byte(nil), msg[:len(msg)/2]...), make([]byte, len(msg)/2)...)} {
		n, err := dec.DecodeEach(bad, p, func(*schemas.Flow) { calls++ })
		if err == nil || n != 0 {
			t.Fatalf("bad message: %d rows, err %v", n, err)
		}
	}
	if calls != 0 {
		t.Fatalf("fn called %d times for bad messages", calls)
	}
}

func TestDecodeEachDoesNotRecoverPanicsOfFn(t *testing.T) {
	msg, err := NewEncoder().Encode(nil, flowtest.Fleet(61, 3))
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if r := recover(); r != "consumer bug" {
			t.Fatalf("recovered %v, want the consumer's panic", r)
		}
	}()
	NewDecoder().DecodeEach(msg, Projection{}, func(*schemas.Flow) { panic("consumer bug") })
	t.Fatal("DecodeEach returned after fn panicked")
}

// TestEveryFieldIsItsColumn walks every field of schemas.Flow by
// reflection: the flow.v1 columns are its fields, in order, and each field
// set alone round-trips through Encode and Decode, comes back from a
// projection of its own column, and stays zero in a projection of all the
// others. A field added to the declaration is tested here without an edit.
func TestEveryFieldIsItsColumn(t *testing.T) {
	fields := flowtest.Fields()
	names := columnNames[:]
	if len(fields) != len(names) {
		t.Fatalf("%d fields, %d columns", len(fields), len(names))
	}
	enc, dec := NewEncoder(), NewDecoder()
	for i, fd := range fields {
		t.Run(fd.Column, func(t *testing.T) {
			if names[i] != fd.Column || NewArrowSchema().Field(i).Name != fd.Column {
				t.Fatalf("column %d is %q, field %s declares %q", i, names[i], fd.Name, fd.Column)
			}
			var f schemas.Flow
			fd.Set(&f)
			want := []schemas.Flow{f, {}}
			msg, err := enc.Encode(nil, want)
			if err != nil {
				t.Fatal(err)
			}
			got, err := dec.Decode(nil, msg)
			if err != nil {
				t.Fatal(err)
			}
			checkEqual(t, got, want)
			own, err := NewProjection(fd.Column)
			if err != nil {
				t.Fatal(err)
			}
			if got, err = dec.DecodeProjected(got[:0], msg, own); err != nil {
				t.Fatal(err)
			}
			checkEqual(t, got, want)
			others, err := NewProjection(append(append([]string(nil), names[:i]...), names[i+1:]...)...)
			if err != nil {
				t.Fatal(err)
			}
			if got, err = dec.DecodeProjected(got[:0], msg, others); err != nil {
				t.Fatal(err)
			}
			checkEqual(t, got, make([]schemas.Flow, 2))
		})
	}
}
