package http2

import (
	"encoding/binary"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	flowpb "github.com/cilium/cilium/api/v1/flow"

	"github.com/flowbus/flowbus/agent/l7"
)

// encodeChunks is the fuzz input's form: per chunk, a direction byte, its
// length (u16) and its head's length (u16), then the head.
func encodeChunks(cs []l7.Chunk) []byte {
	var b []byte
	for _, c := range cs {
		b = append(b, byte(c.Dir))
		b = binary.BigEndian.AppendUint16(b, uint16(c.Len))
		b = binary.BigEndian.AppendUint16(b, uint16(len(c.Head)))
		b = append(b, c.Head...)
	}
	return b
}

func decodeChunks(b []byte) []l7.Chunk {
	var cs []l7.Chunk
	var off [2]uint64
	for t := int64(1); len(b) >= 5; t++ {
		dir := l7.Direction(b[0] & 1)
		n := uint32(binary.BigEndian.Uint16(b[1:]))
		h := min(int(binary.BigEndian.Uint16(b[3:])), len(b)-5, int(n))
		cs = append(cs, l7.Chunk{Dir: dir, TimeNs: t, Offset: off[dir], Len: n, Head: b[5 : 5+h]})
		off[dir] += uint64(n)
		b = b[5+h:]
	}
	return cs
}

func FuzzParser(f *testing.F) {
	f.Add(encodeChunks([]l7.Chunk{{Dir: l7.FromClient, Len: 24, Head: []byte(preface)}}))
	f.Fuzz(func(t *testing.T, b []byte) {
		cs := decodeChunks(b)
		for _, opts := range []Options{{}, {MaxStreams: 1, MaxTableSize: 64, MaxStringLength: 16}} {
			var st l7.Stats
			p := New(&st, opts)
			n := 0
			emit := func(e *l7.Exchange) {
				n++
				if e.L7.HTTPProtocol != "HTTP/2" || e.ResponseNs == 0 && (e.L7.HTTPStatus != 0 || e.L7.Type != flowpb.L7FlowType_REQUEST) {
					t.Fatalf("exchange %+v", e)
				}
			}
			for i := range cs {
				c := cs[i]
				head := append([]byte(nil), c.Head...)
				c.Head = head
				p.Feed(&c, emit)
				for j := range head {
					head[j] = 0
				}
			}
			p.Close(emit)
			if st[l7.ReasonLost] > 1 {
				t.Fatalf("lost %d times", st[l7.ReasonLost])
			}
		}
	})
}

var updateSeeds = flag.Bool("update-seeds", false, "write testdata/fuzz/FuzzParser seeds from recorded gRPC and h2c traffic")

// TestWriteFuzzSeeds writes the seed corpus (go test -run WriteFuzzSeeds
// -update-seeds).
func TestWriteFuzzSeeds(t *testing.T) {
	if !*updateSeeds {
		t.Skip("-update-seeds not set")
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzParser")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	reads, _ := recordGRPC(t, 2)
	h2c, _ := recordH2C(t)
	seeds := map[string][]l7.Chunk{
		"grpc-whole":      chunks(reads),
		"grpc-smallheads": splitReadsFixed(reads, 16),
		"grpc-heads64":    splitReadsFixed(reads, 64),
		"h2c-heads256":    splitReadsFixed(h2c, 256),
	}
	for name, cs := range seeds {
		body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", encodeChunks(cs))
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func splitReadsFixed(reads []read, head int) []l7.Chunk {
	cs := chunks(reads)
	for i := range cs {
		cs[i].Head = cs[i].Head[:min(head, len(cs[i].Head))]
	}
	return cs
}
