package flowcodec

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"
	flowpb "github.com/cilium/cilium/api/v1/flow"

	"github.com/flowbus/flowbus/internal/flowtest"
	"github.com/flowbus/flowbus/schemas"
)

var update = flag.Bool("update", false, "rewrite testdata/flow.v1.arrows from goldenFlows")

func checkEqual(t *testing.T, got, want []schemas.Flow) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d flows, want %d", len(got), len(want))
	}
	for i := range want {
		if !reflect.DeepEqual(got[i], want[i]) {
			flowtest.DiffFlows(t, i, &got[i], &want[i])
			if t.Failed() {
				return
			}
		}
	}
}

// arrowNormal is the one normalisation of the Arrow round trip: addresses
// are stored in 16 bytes, so an IPv4-mapped IPv6 address (::ffff:a.b.c.d)
// comes back as the IPv4 address a.b.c.d (and an IPv6 zone is dropped).
func arrowNormal(f schemas.Flow) schemas.Flow {
	f.SrcIP, f.DstIP = f.SrcIP.Unmap().WithZone(""), f.DstIP.Unmap().WithZone("")
	return f
}

// TestArrowRoundTrip: random flows encode and decode to deeply equal flows,
// after arrowNormal: nil and empty slices, zero and maximal counters, IPv4
// and IPv6 addresses, every enum value, unset timestamps, histograms.
func TestArrowRoundTrip(t *testing.T) {
	g := flowtest.NewGen(1)
	enc, dec := NewEncoder(), NewDecoder()
	var msg []byte
	var got []schemas.Flow
	total := 0
	for _, size := range []int{0, 1, 2, 7, 100, 1000, 3000} {
		flows := make([]schemas.Flow, size)
		for i := range flows {
			flows[i] = g.Flow()
		}
		var err error
		// The encoder and decoder are reused: state must not leak between calls.
		msg, err = enc.Encode(msg[:0], flows)
		if err != nil {
			t.Fatalf("encode %d flows: %v", size, err)
		}
		got, err = dec.Decode(got[:0], msg)
		if err != nil {
			t.Fatalf("decode %d flows: %v", size, err)
		}
		want := make([]schemas.Flow, len(flows))
		for i := range flows {
			want[i] = arrowNormal(flows[i])
		}
		checkEqual(t, got, want)
		total += size
	}
	if total < 4000 {
		t.Fatalf("only %d random flows tested", total)
	}
}

// The decoder reuses its buffers, views and arrays from one message to the
// next: flows decoded earlier must not change when later messages are
// decoded, whole or projected.
func TestDecodedFlowsOutliveLaterDecodes(t *testing.T) {
	g := flowtest.NewGen(7)
	enc, dec := NewEncoder(), NewDecoder()
	proj, err := NewProjection("src_namespace", "src_workload", "dst_pod_name", "l7_http_url", "l7_dns_qtypes", "src_labels", "latency_hist")
	if err != nil {
		t.Fatal(err)
	}
	var kept, want [][]schemas.Flow
	for round, size := range []int{300, 5, 1000, 64, 2000} {
		flows := make([]schemas.Flow, size)
		for i := range flows {
			flows[i] = g.Flow()
		}
		msg, err := enc.Encode(nil, flows)
		if err != nil {
			t.Fatal(err)
		}
		whole, err := dec.Decode(nil, msg)
		if err != nil {
			t.Fatal(err)
		}
		some, err := dec.DecodeProjected(nil, msg, proj)
		if err != nil {
			t.Fatal(err)
		}
		kept = append(kept, whole, some)
		w := make([]schemas.Flow, size)
		for i := range flows {
			w[i] = arrowNormal(flows[i])
		}
		projected, err := NewDecoder().DecodeProjected(nil, msg, proj) // a decoder of its own: nothing shared
		if err != nil || len(projected) != size {
			t.Fatalf("round %d: projected decode: %d flows, %v", round, len(projected), err)
		}
		want = append(want, w, projected)
	}
	for i := range kept {
		checkEqual(t, kept[i], want[i])
	}
}

// TestEncoderHistoryDoesNotChangeContent: an encoder stores buffers that
// did not compress raw for a while; every stream still decodes the same.
func TestEncoderHistoryDoesNotChangeContent(t *testing.T) {
	flows := flowtest.Fleet(23, rawRuleRows+2*rawStreak) // every batch under the raw rule
	enc, dec := NewEncoder(), NewDecoder()
	rawBatches, firstRaw := 0, 0
	for i := range 2 * rawStreak {
		msg, err := enc.Encode(nil, flows[i:])
		if err != nil {
			t.Fatal(err)
		}
		// The first batch compresses every buffer to measure it; buffers
		// the rule stores raw are the large raw ones beyond that batch's.
		if n := rawBuffersOf(enc.w, rawRuleMin); i == 0 {
			firstRaw = n
		} else if n > firstRaw {
			rawBatches++
		}
		got, err := dec.Decode(nil, msg)
		if err != nil {
			t.Fatalf("batch %d: %v", i, err)
		}
		checkEqual(t, got, flows[i:])
	}
	if rawBatches < rawStreak {
		t.Fatalf("the raw rule stored buffers raw in %d of %d batches: the test does not exercise it", rawBatches, 2*rawStreak)
	}
}

func TestIPv4MappedAddressesDecodeAsIPv4(t *testing.T) {
	flows := []schemas.Flow{{
		SrcIP: netip.MustParseAddr("::ffff:10.0.0.1"),
		DstIP: netip.MustParseAddr("fe80::1%eth0"),
	}}
	msg, err := NewEncoder().Encode(nil, flows)
	if err != nil {
		t.Fatal(err)
	}
	got, err := NewDecoder().Decode(nil, msg)
	if err != nil {
		t.Fatal(err)
	}
	if want := netip.MustParseAddr("10.0.0.1"); got[0].SrcIP != want {
		t.Errorf("src_ip = %v, want %v", got[0].SrcIP, want)
	}
	if want := netip.MustParseAddr("fe80::1"); got[0].DstIP != want {
		t.Errorf("dst_ip = %v, want %v", got[0].DstIP, want)
	}
}

func TestDecodeAppendsToDst(t *testing.T) {
	flows := flowtest.Fleet(7, 50)
	msg, err := NewEncoder().Encode([]byte("prefix"), flows)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(msg, []byte("prefix")) {
		t.Fatalf("Encode did not append to dst")
	}
	dst := []schemas.Flow{{UUID: "keep"}}
	dst, err = NewDecoder().Decode(dst, msg[len("prefix"):])
	if err != nil {
		t.Fatal(err)
	}
	checkEqual(t, dst, append([]schemas.Flow{{UUID: "keep"}}, flows...))
}

// TestDecodedListsAreCapped: decoded lists share backing arrays (with the
// next row's, and with rows holding the same list); appending to one must
// not write into another.
func TestDecodedListsAreCapped(t *testing.T) {
	flows := []schemas.Flow{
		{Src: schemas.Endpoint{Labels: []string{"a"}}},
		{Src: schemas.Endpoint{Labels: []string{"b"}}},
		{Src: schemas.Endpoint{Labels: []string{"a"}}},
		{Src: schemas.Endpoint{Labels: []string{"a"}}},
	}
	msg, err := NewEncoder().Encode(nil, flows)
	if err != nil {
		t.Fatal(err)
	}
	got, err := NewDecoder().Decode(nil, msg)
	if err != nil {
		t.Fatal(err)
	}
	_ = append(got[0].Src.Labels, "x")
	_ = append(got[2].Src.Labels, "y")
	got[3].Src.Labels = append(got[3].Src.Labels, "z")
	for i, want := range [][]string{{"a"}, {"b"}, {"a"}, {"a", "z"}} {
		if !reflect.DeepEqual(got[i].Src.Labels, want) {
			t.Errorf("row %d labels = %q after appends to other rows, want %q", i, got[i].Src.Labels, want)
		}
	}
}

func TestEncodedStreamIsSelfDescribing(t *testing.T) {
	msg, err := NewEncoder().Encode(nil, flowtest.Fleet(3, 10))
	if err != nil {
		t.Fatal(err)
	}
	r, err := ipc.NewReader(bytes.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Release()
	md := r.Schema().Metadata()
	if v, ok := md.GetValue(SchemaMetadataKey); !ok || v != schemas.SchemaVersion {
		t.Fatalf("schema metadata %s = %q, %v; want %q", SchemaMetadataKey, v, ok, schemas.SchemaVersion)
	}
	if !r.Next() {
		t.Fatalf("no record batch: %v", r.Err())
	}
	rec := r.RecordBatch()
	if rec.NumRows() != 10 || rec.NumCols() != numCols {
		t.Fatalf("record batch %d rows × %d cols, want 10 × %d", rec.NumRows(), rec.NumCols(), numCols)
	}
	flows := flowtest.Fleet(3, 10)
	ns := rec.Column(colDstNamespace).(*array.Dictionary)
	if got := ns.Dictionary().(*array.String).Value(ns.GetValueIndex(9)); got != flows[9].Dst.Namespace {
		t.Fatalf("dst_namespace[9] = %q, want %q", got, flows[9].Dst.Namespace)
	}
	labels := rec.Column(colSrcLabels).(*array.List)
	lo, hi := labels.ValueOffsets(4)
	words := labels.ListValues().(*array.Dictionary)
	var got []string
	for j := lo; j < hi; j++ {
		got = append(got, words.Dictionary().(*array.String).Value(words.GetValueIndex(int(j))))
	}
	if !reflect.DeepEqual(got, flows[4].Src.Labels) {
		t.Fatalf("src_labels[4] = %q, want %q", got, flows[4].Src.Labels)
	}
	v := rec.Column(colVerdict).(*array.Dictionary)
	if got := v.Dictionary().(*array.String).Value(v.GetValueIndex(0)); got != "FORWARDED" && got != "DROPPED" {
		t.Fatalf("verdict[0] = %q", got)
	}
	if r.Next() {
		t.Fatalf("more than one record batch")
	}
}

// TestArrowGoReadsOurStreams: arrow-go's ipc.Reader, a standard Arrow
// reader, reads our streams to the same records as our own decoder, at the
// batch sizes the agent sends (zstd frames with entropy-coded literals,
// tiny buffers stored raw).
func TestArrowGoReadsOurStreams(t *testing.T) {
	for _, n := range []int{1000, 10000} {
		t.Run(fmt.Sprintf("%d rows", n), func(t *testing.T) {
			flows := flowtest.Fleet(5, n)
			msg, err := NewEncoder().Encode(nil, flows)
			if err != nil {
				t.Fatal(err)
			}
			r, err := ipc.NewReader(bytes.NewReader(msg))
			if err != nil {
				t.Fatal(err)
			}
			defer r.Release()
			var got []schemas.Flow
			for r.Next() {
				rec := r.RecordBatch()
				cols := make([]*rawArray, rec.NumCols())
				for i := range cols {
					if cols[i], err = fromArrow(rec.Column(i).Data()); err != nil {
						t.Fatal(err)
					}
				}
				b, err := decodeCols(cols, int(rec.NumRows()), nil)
				if err != nil {
					t.Fatal(err)
				}
				for i := 0; i < b.n; i++ {
					got = append(got, schemas.Flow{})
					b.row(&got[len(got)-1], i)
				}
			}
			if err := r.Err(); err != nil {
				t.Fatalf("arrow-go reader: %v", err)
			}
			checkEqual(t, got, flows)
		})
	}
}

// goldenFlows is the fixed record set of testdata/flow.v1.arrows.
func goldenFlows() []schemas.Flow {
	f := flowtest.Fleet(42, 6)
	g := flowtest.NewGen(42)
	for range 4 {
		f = append(f, g.Flow())
	}
	return append(f, schemas.Flow{}) // the zero flow
}

// TestGoldenFile pins the wire format: the encoder must produce the golden
// file byte for byte, and the golden file must decode to goldenFlows. Run
// `go test ./internal/flowcodec -run TestGoldenFile -update` after a
// deliberate schema change (and bump schemas.SchemaVersion if old readers
// cannot read it).
func TestGoldenFile(t *testing.T) {
	path := filepath.Join("testdata", "flow.v1.arrows")
	flows := goldenFlows()
	msg, err := NewEncoder().Encode(nil, flows)
	if err != nil {
		t.Fatal(err)
	}
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, msg, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	golden, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden file (run with -update to create it): %v", err)
	}
	got, err := NewDecoder().Decode(nil, golden)
	if err != nil {
		t.Fatalf("decode golden file: %v", err)
	}
	for i := range flows {
		flows[i] = arrowNormal(flows[i])
	}
	checkEqual(t, got, flows)
	if !bytes.Equal(msg, golden) {
		t.Errorf("encoder output (%d bytes) differs from %s (%d bytes): the wire format changed; if deliberate, run with -update", len(msg), path, len(golden))
	}
}

func TestDecodeBadInput(t *testing.T) {
	valid, err := NewEncoder().Encode(nil, flowtest.Fleet(5, 20))
	if err != nil {
		t.Fatal(err)
	}
	otherVersion := encodeWithMetadata(t, map[string]string{SchemaMetadataKey: "flow.v2"})
	noVersion := encodeWithMetadata(t, map[string]string{})
	for _, tc := range []struct {
		name string
		msg  []byte
		want error
	}{
		{"an empty message is not Arrow", nil, ErrNotArrow},
		{"JSON is not Arrow", []byte(`{"flow":{"verdict":"FORWARDED"}}`), ErrNotArrow},
		{"random bytes are not Arrow", bytes.Repeat([]byte{0x13, 0x37, 0x42}, 100), ErrNotArrow},
		{"a continuation marker followed by garbage is not Arrow", append([]byte{0xff, 0xff, 0xff, 0xff, 16, 0, 0, 0}, bytes.Repeat([]byte{0xee}, 24)...), ErrNotArrow},
		{"bytes after the end-of-stream marker are rejected", append(append([]byte{}, valid...), 1, 2, 3), ErrNotArrow},
		{"two streams back to back are rejected", append(append([]byte{}, valid...), valid...), ErrNotArrow},
		{"a stream cut before its end marker is truncated", valid[:len(valid)-8], ErrTruncated},
		{"a stream cut in the middle is truncated", valid[:len(valid)/2], ErrTruncated},
		{"a schema version other than flow.v1 is unknown", otherVersion, ErrUnknownSchema},
		{"a stream without schema version is unknown", noVersion, ErrUnknownSchema},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dst := []schemas.Flow{{UUID: "keep"}}
			got, err := NewDecoder().Decode(dst, tc.msg)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if len(got) != 1 || got[0].UUID != "keep" {
				t.Fatalf("Decode appended %d flows on error", len(got)-1)
			}
		})
	}
}

// encodeWithMetadata writes a valid flow.v1 stream of two flows whose schema
// metadata is md instead of ours.
func encodeWithMetadata(t *testing.T, md map[string]string) []byte {
	t.Helper()
	msg, err := NewEncoder().Encode(nil, flowtest.Fleet(9, 2))
	if err != nil {
		t.Fatal(err)
	}
	return rewrite(t, msg, md, ipc.WithZstd())
}

// rewrite reads msg with arrow-go and writes it again with arrow-go's own
// ipc.Writer, with schema metadata md (nil: unchanged) and writer options.
func rewrite(t *testing.T, msg []byte, md map[string]string, opts ...ipc.Option) []byte {
	t.Helper()
	r, err := ipc.NewReader(bytes.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Release()
	s := r.Schema()
	if md != nil {
		meta := arrow.MetadataFrom(md)
		s = arrow.NewSchema(s.Fields(), &meta)
	}
	var out bytes.Buffer
	w := ipc.NewWriter(&out, append(opts, ipc.WithSchema(s), ipc.WithAllocator(memory.NewGoAllocator()))...)
	for r.Next() {
		rec := array.NewRecordBatch(s, r.RecordBatch().Columns(), r.RecordBatch().NumRows())
		err := w.Write(rec)
		rec.Release()
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := r.Err(); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// TestDecodeStreamsOfOtherWriters: a flow.v1 stream written by arrow-go's
// own ipc.Writer decodes to the same flows, compressed or not, and also
// when its schema message differs from ours (extra metadata), which takes
// the arrow-go reading path.
func TestDecodeStreamsOfOtherWriters(t *testing.T) {
	g := flowtest.NewGen(21)
	flows := flowtest.Fleet(19, 300)
	for range 300 {
		flows = append(flows, g.Flow())
	}
	msg, err := NewEncoder().Encode(nil, flows)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		md   map[string]string
		opts []ipc.Option
	}{
		{"arrow-go zstd stream", nil, []ipc.Option{ipc.WithZstd()}},
		{"arrow-go uncompressed stream", nil, nil},
		{"arrow-go lz4 stream with extra schema metadata", map[string]string{SchemaMetadataKey: schemas.SchemaVersion, "producer": "pyarrow"}, []ipc.Option{ipc.WithLZ4()}},
		{"arrow-go zstd stream with extra schema metadata", map[string]string{SchemaMetadataKey: schemas.SchemaVersion, "producer": "pyarrow"}, []ipc.Option{ipc.WithZstd()}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := NewDecoder().Decode(nil, rewrite(t, msg, tc.md, tc.opts...))
			if err != nil {
				t.Fatal(err)
			}
			want := make([]schemas.Flow, len(flows))
			for i := range flows {
				want[i] = arrowNormal(flows[i])
			}
			checkEqual(t, got, want)
		})
	}
}

// TestDecodeTruncatedAtEveryOffset cuts a valid message at every length
// and expects ErrTruncated (or ErrNotArrow), never a panic or a result.
func TestDecodeTruncatedAtEveryOffset(t *testing.T) {
	valid, err := NewEncoder().Encode(nil, flowtest.Fleet(11, 3))
	if err != nil {
		t.Fatal(err)
	}
	dec := NewDecoder()
	truncated := 0
	for n := 0; n < len(valid); n++ {
		got, err := dec.Decode(nil, valid[:n])
		if len(got) != 0 {
			t.Fatalf("cut at %d: decoded %d flows", n, len(got))
		}
		switch {
		case errors.Is(err, ErrTruncated):
			truncated++
		case errors.Is(err, ErrNotArrow):
		default:
			t.Fatalf("cut at %d of %d: err = %v, want ErrTruncated or ErrNotArrow", n, len(valid), err)
		}
	}
	if truncated < len(valid)-8 {
		t.Fatalf("only %d of %d cuts reported ErrTruncated", truncated, len(valid))
	}
}

// TestDecodeCorruptBytes flips bytes of a valid message: Decode may succeed
// or fail with one of its errors, but must never panic.
func TestDecodeCorruptBytes(t *testing.T) {
	valid, err := NewEncoder().Encode(nil, flowtest.Fleet(13, 5))
	if err != nil {
		t.Fatal(err)
	}
	dec := NewDecoder()
	for i := 0; i < len(valid); i += 1 + i/512 { // every byte of the metadata, then sparser
		for _, x := range []byte{0xff, 0x01, 0x80} {
			msg := append([]byte(nil), valid...)
			msg[i] ^= x
			_, err := dec.Decode(nil, msg)
			if err != nil && !errors.Is(err, ErrNotArrow) && !errors.Is(err, ErrTruncated) && !errors.Is(err, ErrUnknownSchema) {
				t.Fatalf("flip byte %d: unexpected error kind %v", i, err)
			}
		}
	}
}

func FuzzDecode(f *testing.F) {
	valid, err := NewEncoder().Encode(nil, flowtest.Fleet(17, 3))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(valid)
	f.Add(valid[:len(valid)/3])
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0})
	f.Add([]byte("not arrow"))
	dec := NewDecoder()
	proj, err := NewProjection("time", "src_workload", "dst_pod_name", "bytes_fwd", "latency_hist", "l7_http_url", "l7_dns_qtypes", "is_reply")
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, msg []byte) {
		// A projected decode reads less, so it may accept what Decode
		// rejects, but never panics, and DecodeEach hands over exactly the
		// rows DecodeProjected returns.
		some, perr := dec.DecodeProjected(nil, msg, proj)
		var each []schemas.Flow
		n, eerr := dec.DecodeEach(msg, proj, func(f *schemas.Flow) { each = append(each, *f) })
		if (perr == nil) != (eerr == nil) || n != len(each) || perr == nil && n != len(some) {
			t.Fatalf("DecodeProjected: %d rows, %v; DecodeEach: %d rows, %v", len(some), perr, n, eerr)
		}
		if perr == nil {
			checkEqual(t, each, some)
		}
		got, err := dec.Decode(nil, msg)
		if err != nil {
			if len(got) != 0 {
				t.Fatalf("error %v with %d flows", err, len(got))
			}
			if !errors.Is(err, ErrNotArrow) && !errors.Is(err, ErrTruncated) && !errors.Is(err, ErrUnknownSchema) {
				t.Fatalf("unexpected error kind %v", err)
			}
			return
		}
		// What decodes must re-encode and decode to the same flows.
		again, err := NewEncoder().Encode(nil, got)
		if err != nil {
			t.Fatal(err)
		}
		back, err := dec.Decode(nil, again)
		if err != nil {
			t.Fatal(err)
		}
		checkEqual(t, back, got)
	})
}

// TestEnumColumnsHoldHubbleNames: enum columns are dictionary strings with
// Hubble's names (what DuckDB users filter on), and a number without a name
// travels as its decimal string and comes back as the same number.
func TestEnumColumnsHoldHubbleNames(t *testing.T) {
	flows := []schemas.Flow{
		{Verdict: flowpb.Verdict_DROPPED, DropReason: flowpb.DropReason_POLICY_DENIED, L7: schemas.L7{Protocol: schemas.L7HTTP}},
		{Verdict: flowpb.Verdict(99), DropReason: flowpb.DropReason(-7), L7: schemas.L7{Protocol: schemas.L7Protocol(200)}},
	}
	msg, err := NewEncoder().Encode(nil, flows)
	if err != nil {
		t.Fatal(err)
	}
	rec := readColumns(t, msg)
	for _, c := range []struct {
		col  int
		want [2]string
	}{
		{colVerdict, [2]string{"DROPPED", "99"}},
		{colDropReason, [2]string{"POLICY_DENIED", "-7"}},
		{colL7Protocol, [2]string{"http", "200"}},
		{colDirection, [2]string{"TRAFFIC_DIRECTION_UNKNOWN", "TRAFFIC_DIRECTION_UNKNOWN"}},
	} {
		d := rec.Column(c.col).(*array.Dictionary)
		for i, w := range c.want {
			if got := d.Dictionary().(*array.String).Value(d.GetValueIndex(i)); got != w {
				t.Errorf("column %s row %d = %q, want %q", rec.ColumnName(c.col), i, got, w)
			}
		}
	}
	got, err := NewDecoder().Decode(nil, msg)
	if err != nil {
		t.Fatal(err)
	}
	checkEqual(t, got, flows)
}
