package flowcodec

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/flowbus/flowbus/internal/flowtest"
	"github.com/flowbus/flowbus/schemas"
)

// TestDecodeRLEFrameAgreesWithZstd checks the RLE fast path against a zstd
// decoder: the frames appendRLEFrame writes decode to the same bytes, and
// every frame it does not take (other flags, sizes, block types, bytes
// after the frame) is left to the decoder, dst untouched.
func TestDecodeRLEFrameAgreesWithZstd(t *testing.T) {
	zd, err := zstd.NewReader(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer zd.Close()
	for _, n := range []int{1, 7, 255, 256, 257, 65791, 65792, 128 << 10, 128<<10 + 1, 300_000} {
		frame := appendRLEFrame(nil, 0xa5, n)
		want, err := zd.DecodeAll(frame, nil)
		if err != nil || len(want) != n {
			t.Fatalf("n=%d: zstd: %d bytes, %v", n, len(want), err)
		}
		dst := make([]byte, n)
		if !decodeRLEFrame(dst, frame) || !bytes.Equal(dst, want) {
			t.Fatalf("n=%d: the fast path did not decode the frame to zstd's bytes", n)
		}
		if err := newFrameDecoder().decode(dst, frame); err != nil || !bytes.Equal(dst, want) {
			t.Fatalf("n=%d: frameDecoder: %v", n, err)
		}
	}

	frame := appendRLEFrame(nil, 7, 1000) // 4 magic, FHD, 2-byte FCS, one block
	mut := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(frame)) }
	cases := map[string][]byte{
		"checksum flag":   mut(func(b []byte) []byte { b[4] |= 1 << 2; return b }),
		"reserved bit":    mut(func(b []byte) []byte { b[4] |= 1 << 3; return b }),
		"dictionary id":   mut(func(b []byte) []byte { b[4] |= 1; return b }),
		"not single":      mut(func(b []byte) []byte { b[4] &^= 1 << 5; return b }),
		"bad magic":       mut(func(b []byte) []byte { b[0]++; return b }),
		"content size":    mut(func(b []byte) []byte { b[5]++; return b }),
		"raw block":       mut(func(b []byte) []byte { b[7] &^= 3 << 1; return b }),
		"not last":        mut(func(b []byte) []byte { b[7] &^= 1; return b }),
		"block too short": mut(func(b []byte) []byte { b[7] -= 8; return b }),
		"trailing byte":   append(bytes.Clone(frame), 0),
		"cut":             frame[:len(frame)-1],
		"two frames":      append(bytes.Clone(frame), frame...),
		"block over 128 KiB": binary.LittleEndian.AppendUint32(
			[]byte{0x28, 0xb5, 0x2f, 0xfd, 2<<6 | 1<<5}, 200_000), // header only; block below
	}
	h := uint32(200_000)<<3 | 1<<1 | 1
	cases["block over 128 KiB"] = append(cases["block over 128 KiB"], byte(h), byte(h>>8), byte(h>>16), 9)
	for name, f := range cases {
		n := 1000
		if name == "block over 128 KiB" {
			n = 200_000
		}
		dst := bytes.Repeat([]byte{0xee}, n)
		if decodeRLEFrame(dst, f) {
			t.Errorf("%s: taken by the fast path", name)
		}
		if !bytes.Equal(dst, bytes.Repeat([]byte{0xee}, n)) {
			t.Errorf("%s: dst written", name)
		}
	}
}

// TestKnownSchemaMessagePassesTheCheck holds scanStream's shortcut to what
// it skips: the schema message Encoder writes is one whole frame that
// passes checkMessage as a Schema message, and every encoded stream starts
// with it.
func TestKnownSchemaMessagePassesTheCheck(t *testing.T) {
	d := NewDecoder()
	known := d.schemaMsg
	mlen := int64(int32(binary.LittleEndian.Uint32(known[4:8])))
	if int64(len(known)) != 8+mlen {
		t.Fatalf("schema message: %d bytes, metadata %d", len(known), mlen)
	}
	meta := known[8 : 8+mlen]
	if body, ok := fbBodyLength(meta); !ok || body != 0 {
		t.Fatalf("schema message body length %d, %v", body, ok)
	}
	if typ, ok := checkMessage(meta); typ != 1 || !ok {
		t.Fatalf("checkMessage(schema) = %d, %v; want 1, true", typ, ok)
	}
	msg, err := NewEncoder().Encode(nil, []schemas.Flow{{TimeNs: 1}})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(msg, known) {
		t.Fatal("an encoded stream does not start with the known schema message")
	}
	// A stream whose schema message differs in one byte is checked (and
	// fails as before): the shortcut needs the whole message equal.
	bad := bytes.Clone(msg)
	bad[len(known)-9] ^= 0xff
	if _, err := d.Decode(nil, bad); err == nil {
		t.Fatal("a stream with a changed schema message decoded")
	}
}

// TestEqualBuffersDecompressedOnceDecodeAlike: buffers the encoder stored
// once (time equal to last_seen, unset columns) are decompressed once and
// copied for the others; every projection, in any order of first use,
// decodes the same flows as before.
func TestEqualBuffersDecompressedOnceDecodeAlike(t *testing.T) {
	g := flowtest.NewGen(5)
	flows := make([]schemas.Flow, 300)
	for i := range flows {
		flows[i] = g.Flow()
		flows[i].LastSeenNs = flows[i].TimeNs
	}
	msg, err := NewEncoder().Encode(nil, flows)
	if err != nil {
		t.Fatal(err)
	}
	want := make([]schemas.Flow, len(flows))
	for i := range flows {
		want[i] = arrowNormal(flows[i])
	}
	dec := NewDecoder()
	got, err := dec.Decode(nil, msg)
	if err != nil {
		t.Fatal(err)
	}
	checkEqual(t, got, want)
	shared := 0
	for _, v := range dec.fast.views[:dec.fast.nviews] {
		shared += v.copied
	}
	if shared == 0 {
		t.Fatal("no buffer was found stored once for two")
	}
	for _, cols := range [][]string{{"last_seen"}, {"last_seen", "time"}, {"time", "last_seen", "src_workload", "bytes_fwd"}} {
		proj, err := NewProjection(cols...)
		if err != nil {
			t.Fatal(err)
		}
		full, err := NewDecoder().DecodeProjected(nil, msg, proj)
		if err != nil {
			t.Fatal(err)
		}
		again, err := dec.DecodeProjected(nil, msg, proj)
		if err != nil {
			t.Fatal(err)
		}
		checkEqual(t, again, full)
		for i := range full {
			if full[i].LastSeenNs != want[i].LastSeenNs {
				t.Fatalf("%v: row %d last_seen %d, want %d", cols, i, full[i].LastSeenNs, want[i].LastSeenNs)
			}
		}
	}
}
