package http2

import (
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	flowpb "github.com/cilium/cilium/api/v1/flow"

	"github.com/flowbus/flowbus/agent/l7"
	"github.com/flowbus/flowbus/agent/l7/l7test"
	"github.com/flowbus/flowbus/schemas"
)

// recordH2C makes plain HTTP/2 (h2c with prior knowledge: net/http's
// unencrypted HTTP/2, which golang.org/x/net/http2/h2c now defers to)
// requests through the recording proxy.
func recordH2C(t *testing.T) ([]read, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		switch r.URL.Path {
		case "/missing":
			http.NotFound(w, r)
		case "/big":
			w.Write([]byte(strings.Repeat("x", 100000)))
		default:
			w.Write([]byte("ok"))
		}
	})
	var protos http.Protocols
	protos.SetUnencryptedHTTP2(true)
	srv := &http.Server{Handler: h, Protocols: &protos}
	go srv.Serve(ln)
	defer srv.Close()

	rec := l7test.NewRecorder(t, ln.Addr().String())
	tr := &http.Transport{Protocols: &protos}
	c := &http.Client{Transport: tr}
	base := "http://" + rec.Addr()
	for _, r := range []struct{ method, path, body string }{
		{"GET", "/a?x=1", ""}, {"POST", "/b", strings.Repeat("y", 70000)}, {"GET", "/missing", ""}, {"GET", "/big", ""},
	} {
		req, err := http.NewRequest(r.method, base+r.path, strings.NewReader(r.body))
		if err != nil {
			t.Fatal(err)
		}
		if r.body == "" {
			req.Body = nil
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	tr.CloseIdleConnections()
	return record(t, rec), rec.Addr()
}

func TestH2CRequests(t *testing.T) {
	reads, addr := recordH2C(t)
	x := func(method, path string, status uint32) l7.Exchange {
		return l7.Exchange{L7: schemas.L7{Type: flowpb.L7FlowType_RESPONSE, Protocol: schemas.L7HTTP,
			HTTPMethod: method, HTTPURL: "http://" + addr + path, HTTPStatus: status, HTTPProtocol: "HTTP/2"}}
	}
	want := expected(t, reads, []l7.Exchange{x("GET", "/a?x=1", 200), x("POST", "/b", 200), x("GET", "/missing", 404), x("GET", "/big", 200)})
	got, st := run(chunks(reads))
	diff(t, "whole reads", got, want)
	if st != (l7.Stats{}) {
		t.Fatalf("stats %v", st)
	}
	rng := newRand()
	for range 100 {
		got, st := run(frameChunks(rng, reads))
		diff(t, "frame heads", got, want)
		if st != (l7.Stats{}) {
			t.Fatalf("stats %v", st)
		}
	}
}
