package http1

import (
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"sort"
	"strconv"
	"strings"
	"testing"

	flowpb "github.com/cilium/cilium/api/v1/flow"

	"github.com/flowbus/flowbus/agent/l7"
	"github.com/flowbus/flowbus/agent/l7/l7test"
)

// read is one read of the recording proxy (l7test).
type read = l7test.Read

// did is what the client did: a request and the status it got.
type did struct {
	method, url string
	status      int
}

// netHTTPSession runs a net/http client against a net/http server through
// the recorder: requests of every framing (Content-Length and chunked
// bodies both ways, HEAD, 204, 304, 100-continue).
func netHTTPSession(t *testing.T) ([]read, []did) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		body := strings.Repeat("abcdefghij", n/10+1)[:n]
		switch {
		case strings.HasPrefix(r.URL.Path, "/len"):
			w.Header().Set("Content-Length", strconv.Itoa(n))
			io.WriteString(w, body)
		case strings.HasPrefix(r.URL.Path, "/chunked"):
			for i := 0; i < 3; i++ {
				io.WriteString(w, body)
				w.(http.Flusher).Flush()
			}
		case r.URL.Path == "/empty":
			w.WriteHeader(http.StatusNoContent)
		case r.URL.Path == "/cached":
			w.WriteHeader(http.StatusNotModified)
		default:
			w.WriteHeader(http.StatusNotFound)
			io.WriteString(w, "not found")
		}
	}))
	defer srv.Close()
	rec := l7test.NewRecorder(t, srv.Listener.Addr().String())
	tr := &http.Transport{MaxConnsPerHost: 1, DisableCompression: true}
	client := &http.Client{Transport: tr}
	base := "http://" + rec.Addr()
	var dids []did
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 120 {
		var method, path string
		var body io.Reader
		n := rng.IntN(3000)
		switch i % 8 {
		case 0:
			method, path = "GET", fmt.Sprintf("/len?n=%d", n)
		case 1:
			method, path = "GET", fmt.Sprintf("/chunked?n=%d", n+1)
		case 2:
			method, path = "HEAD", fmt.Sprintf("/len?n=%d", n)
		case 3:
			method, path = "POST", fmt.Sprintf("/len?n=%d", n)
			body = strings.NewReader(strings.Repeat("x", n))
		case 4:
			method, path = "PUT", "/len?n=5"
			body = io.MultiReader(strings.NewReader(strings.Repeat("y", n))) // unknown length: chunked
		case 5:
			method, path = "GET", "/empty"
		case 6:
			method, path = "GET", "/cached"
		case 7:
			method, path = "DELETE", "/nowhere"
		}
		path += fmt.Sprintf("&i=%d", i)
		if !strings.Contains(path, "?") {
			path = strings.Replace(path, "&", "?", 1)
		}
		req, err := http.NewRequest(method, base+path, body)
		if err != nil {
			t.Fatal(err)
		}
		if i%16 == 3 {
			req.Header.Set("Expect", "100-continue")
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		dids = append(dids, did{method, path, resp.StatusCode})
	}
	tr.CloseIdleConnections()
	conns := rec.Wait()
	if len(conns) != 1 {
		t.Fatalf("%d connections; want 1 (keep-alive)", len(conns))
	}
	return conns[0], dids
}

// chunks cuts the reads into chunks of random sizes with random head
// limits (headMin..headMax; 0: whole heads).
func chunks(reads []read, rng *rand.Rand, maxLen, headMin, headMax int) []l7.Chunk {
	var out []l7.Chunk
	var off [2]uint64
	for _, r := range reads {
		for b := r.Data; len(b) > 0; {
			n := min(len(b), 1+rng.IntN(maxLen))
			h := n
			if headMax > 0 {
				h = min(n, headMin+rng.IntN(headMax-headMin+1))
			}
			out = append(out, l7.Chunk{Dir: r.Dir, TimeNs: r.Seq, Offset: off[r.Dir], Len: uint32(n), Head: b[:h]})
			off[r.Dir] += uint64(n)
			b = b[n:]
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].TimeNs < out[j].TimeNs })
	return out
}

func feedAll(cs []l7.Chunk, opts Options) ([]l7.Exchange, l7.Stats) {
	var st l7.Stats
	p := New(&st, opts)
	var got []l7.Exchange
	emit := func(e *l7.Exchange) { got = append(got, *e) }
	for i := range cs {
		p.Feed(&cs[i], emit)
	}
	p.Close(emit)
	return got, st
}

// TestNetHTTP feeds a real net/http exchange cut into random chunks. With
// whole heads every exchange is what the client did; with heads cut at
// 64–512 bytes each exchange is still what the client did for its
// request, and what differs (requests missing, unanswered or answered
// with status 0) and the responses counted unpaired are together no more
// than the truncations counted.
func TestNetHTTP(t *testing.T) {
	reads, dids := netHTTPSession(t)
	check := func(t *testing.T, ex []l7.Exchange, st l7.Stats, exact bool) {
		t.Helper()
		k := 0
		diff := 0
		for _, e := range ex {
			for k < len(dids) && dids[k].url != e.L7.HTTPURL {
				k++
				diff++ // missing
			}
			if k == len(dids) {
				t.Fatalf("exchange %s not done by the client (or out of order)", format(&e))
			}
			d := dids[k]
			k++
			if e.L7.HTTPMethod != d.method || e.L7.HTTPProtocol != "HTTP/1.1" {
				t.Fatalf("exchange %s; client did %v", format(&e), d)
			}
			switch {
			case e.L7.Type == flowpb.L7FlowType_RESPONSE && int(e.L7.HTTPStatus) == d.status:
				if e.RequestNs <= 0 || e.ResponseNs <= e.RequestNs {
					t.Fatalf("exchange %s: times", format(&e))
				}
			case e.L7.Type == flowpb.L7FlowType_RESPONSE && e.L7.HTTPStatus == 0, e.L7.Type == flowpb.L7FlowType_REQUEST:
				diff++
			default:
				t.Fatalf("exchange %s; client did %v", format(&e), d)
			}
		}
		diff += len(dids) - k
		if exact && (diff != 0 || st != (l7.Stats{})) {
			t.Fatalf("%d differences, stats %v; want none", diff, st)
		}
		if st[l7.ReasonGap] != 0 || st[l7.ReasonMalformed] != 0 || st[l7.ReasonLost] != 0 || st[l7.ReasonStateCap] != 0 {
			t.Fatalf("stats %v", st)
		}
		if uint64(diff)+st[l7.ReasonUnpaired] > st[l7.ReasonTruncated] {
			t.Fatalf("%d differences, %d unpaired for %d truncated", diff, st[l7.ReasonUnpaired], st[l7.ReasonTruncated])
		}
	}
	var totals [2]int
	var stTotal l7.Stats
	for seed := range uint64(200) {
		rng := rand.New(rand.NewPCG(seed, 7))
		ex, st := feedAll(chunks(reads, rng, 1+rng.IntN(1500), 0, 0), Options{})
		check(t, ex, st, true)
		ex, st = feedAll(chunks(reads, rng, 1+rng.IntN(1500), 64, 512), Options{})
		check(t, ex, st, false)
		totals[0] += len(dids)
		for _, e := range ex {
			if e.L7.Type == flowpb.L7FlowType_RESPONSE && e.L7.HTTPStatus != 0 {
				totals[1]++
			}
		}
		for r := range st {
			stTotal[r] += st[r]
		}
	}
	t.Logf("heads of 64-512 bytes: %d of %d exchanges answered with their status; stats %v", totals[1], totals[0], stTotal)
}
