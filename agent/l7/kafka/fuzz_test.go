package kafka

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/flowbus/flowbus/agent/l7"
	"github.com/flowbus/flowbus/schemas"
)

// seeds are real conversations: a client stream, a server stream.
func seeds() [][2][]byte {
	var out [][2][]byte
	add := func(req kmsg.Request, resp kmsg.Response) {
		out = append(out, [2][]byte{reqFrame(req, 5), respFrame(resp, 5)})
	}
	add(produceReq(3, -1, 100, "orders", "payments"), produceResp(3, 6, "orders", "payments"))
	add(produceReq(9, 1, 700, "orders"), produceResp(9, 0, "orders"))
	add(produceReq(7, 0, 10, "logs"), produceResp(7, 0))
	add(fetchReq(11, "orders"), fetchResp(11, 1, "orders"))
	add(fetchReq(12, "a", "b"), fetchResp(12, 0, "a", "b"))
	add(metadataReq(9, "x", "y"), metadataResp(9, 3, "x"))
	add(metadataReq(1), metadataResp(1, 0))
	av := kmsg.NewPtrApiVersionsRequest()
	av.Version, av.ClientSoftwareName, av.ClientSoftwareVersion = 3, "franz-go", "1"
	avr := kmsg.NewPtrApiVersionsResponse()
	avr.Version = 3
	add(av, avr)
	// Two in a row, and an unpaired response.
	two := append(reqFrame(metadataReq(4, "t"), 1), reqFrame(fetchReq(4, "t"), 2)...)
	out = append(out, [2][]byte{two, append(respFrame(metadataResp(4, 0, "t"), 1), respFrame(fetchResp(4, 0, "t"), 9)...)})
	return out
}

type fuzzCase struct {
	cli, srv  []byte
	mss, head uint16
}

func fuzzCases() []fuzzCase {
	var out []fuzzCase
	for i, s := range seeds() {
		for j, cut := range [][2]uint16{{1448, 1448}, {7, 7}, {1448, 24}, {3, 2}} {
			if (i+j)%2 == 0 || j == 0 {
				out = append(out, fuzzCase{s[0], s[1], cut[0], cut[1]})
			}
		}
	}
	return out
}

// feedFuzz cuts the two streams into chunks of mss bytes with heads of at
// most head bytes, alternating a client chunk and a server chunk.
func feedFuzz(cli, srv []byte, mss, head int, scribble bool) ([]l7.Exchange, l7.Stats) {
	var st l7.Stats
	var got []l7.Exchange
	emit := func(e *l7.Exchange) { got = append(got, *e) }
	p := New(&st, Options{MaxHeader: 256, MaxPending: 8})
	streams := [2][]byte{cli, srv}
	var off [2]int
	for t := int64(1); off[0] < len(cli) || off[1] < len(srv); t++ {
		for d := range streams {
			b := streams[d][off[d]:]
			if len(b) == 0 {
				continue
			}
			n := min(len(b), mss)
			h := append([]byte(nil), b[:min(n, head)]...)
			c := l7.Chunk{Dir: l7.Direction(d), TimeNs: t, Offset: uint64(off[d]), Len: uint32(n), Head: h}
			p.Feed(&c, emit)
			if scribble {
				for i := range h {
					h[i] ^= 0x5a
				}
			}
			off[d] += n
		}
	}
	p.Close(emit)
	return got, st
}

func FuzzParser(f *testing.F) {
	for _, c := range fuzzCases() {
		f.Add(c.cli, c.srv, c.mss, c.head)
	}
	f.Fuzz(func(t *testing.T, cli, srv []byte, mss, head uint16) {
		m := max(int(mss)%4096, 1)
		got, st := feedFuzz(cli, srv, m, int(head)%4096, true)
		again, st2 := feedFuzz(cli, srv, m, int(head)%4096, false)
		if d := cmp.Diff(got, again); d != "" || st != st2 {
			t.Fatalf("heads were kept past Feed:\n%s", d)
		}
		for _, e := range got {
			if e.L7.Protocol != schemas.L7Kafka || (e.ResponseNs != 0 && e.ResponseNs < e.RequestNs) {
				t.Fatalf("bad exchange %+v", e)
			}
		}
		// Every exchange comes from a frame of at least 12 bytes (length,
		// key, version, correlation ID), times its topics.
		if len(got) > (len(cli)/12+1)*(len(cli)/2+1) {
			t.Fatalf("%d exchanges from %d client bytes", len(got), len(cli))
		}
	})
}

// TestWriteFuzzSeeds writes the seed corpus of FuzzParser under
// testdata/fuzz when FLOWBUS_WRITE_SEEDS is set (go generate style).
func TestWriteFuzzSeeds(t *testing.T) {
	if os.Getenv("FLOWBUS_WRITE_SEEDS") == "" {
		t.Skip("FLOWBUS_WRITE_SEEDS not set")
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzParser")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for i, c := range fuzzCases() {
		s := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n[]byte(%q)\nuint16(%d)\nuint16(%d)\n", c.cli, c.srv, c.mss, c.head)
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed-%02d", i)), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
