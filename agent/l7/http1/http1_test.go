package http1

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	flowpb "github.com/cilium/cilium/api/v1/flow"

	"github.com/flowbus/flowbus/agent/l7"
	"github.com/flowbus/flowbus/schemas"
)

// step is one chunk of a script: its head, extra bytes of the segment that
// were not captured, and a gap of skipped bytes before it.
type step struct {
	dir   l7.Direction
	t     int64
	head  string
	extra uint32
	gap   uint64
}

func c(t int64, head string) step { return step{dir: l7.FromClient, t: t, head: head} }
func s(t int64, head string) step { return step{dir: l7.FromServer, t: t, head: head} }

// run feeds the steps and closes the parser; it returns the exchanges as
// strings and the stats.
func run(t *testing.T, opts Options, steps ...step) ([]string, l7.Stats) {
	t.Helper()
	var stats l7.Stats
	p := New(&stats, opts)
	var got []string
	emit := func(e *l7.Exchange) { got = append(got, format(e)) }
	var off [2]uint64
	for _, st := range steps {
		off[st.dir] += st.gap
		head := []byte(st.head)
		ch := &l7.Chunk{Dir: st.dir, TimeNs: st.t, Offset: off[st.dir], Len: uint32(len(head)) + st.extra, Head: head}
		p.Feed(ch, emit)
		for i := range head { // the parser must not keep Head
			head[i] = 'X'
		}
		off[st.dir] += uint64(ch.Len)
	}
	p.Close(emit)
	return got, stats
}

func format(e *l7.Exchange) string {
	l := &e.L7
	if l.Protocol != schemas.L7HTTP {
		return "not http"
	}
	typ := map[flowpb.L7FlowType]string{flowpb.L7FlowType_REQUEST: "REQ", flowpb.L7FlowType_RESPONSE: "RESP"}[l.Type]
	out := fmt.Sprintf("%s %s %s %s %d %d-%d", typ, l.HTTPMethod, l.HTTPURL, l.HTTPProtocol, l.HTTPStatus, e.RequestNs, e.ResponseNs)
	if len(l.HTTPHeaders) > 0 {
		out += " [" + strings.Join(l.HTTPHeaders, "|") + "]"
	}
	return out
}

func stats(kv ...any) l7.Stats {
	var s l7.Stats
	for i := 0; i < len(kv); i += 2 {
		s[kv[i].(l7.Reason)] = uint64(kv[i+1].(int))
	}
	return s
}

const (
	get1  = "GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
	get2  = "GET /b?q=1 HTTP/1.1\r\nHost: x\r\n\r\n"
	get3  = "GET /c HTTP/1.1\r\nHost: x\r\n\r\n"
	ok5   = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
	nf0   = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"
	ok200 = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
)

func TestParser(t *testing.T) {
	for _, tc := range []struct {
		name  string
		opts  Options
		steps []step
		want  []string
		stats l7.Stats
	}{{
		name:  "keep-alive",
		steps: []step{c(10, get1), s(15, ok5), c(20, get2), s(28, nf0)},
		want:  []string{"RESP GET /a HTTP/1.1 200 10-15", "RESP GET /b?q=1 HTTP/1.1 404 20-28"},
	}, {
		name:  "pipelined in one chunk each way",
		steps: []step{c(10, get1+get2+get3), s(30, ok5+nf0+ok200)},
		want:  []string{"RESP GET /a HTTP/1.1 200 10-30", "RESP GET /b?q=1 HTTP/1.1 404 10-30", "RESP GET /c HTTP/1.1 200 10-30"},
	}, {
		name: "messages split across whole chunks; time of the first byte",
		steps: []step{c(10, "GET /a HT"), c(11, "TP/1.1\r\nHost: x\r"), c(12, "\n\r"), c(13, "\nGET /c HTTP/1.1\r\n\r\n"),
			s(20, "HTTP/1.1 200 OK\r\nContent-Le"), s(21, "ngth: 5\r\n\r\nhel"), s(22, "loHTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")},
		want: []string{"RESP GET /a HTTP/1.1 200 10-20", "RESP GET /c HTTP/1.1 404 13-22"},
	}, {
		name: "bodies skipped by offset, heads shorter than segments",
		steps: []step{
			{dir: l7.FromClient, t: 10, head: "POST /up HTTP/1.1\r\nContent-Length: 100000\r\n\r\nabc", extra: 60000},
			{dir: l7.FromClient, t: 11, head: "body", extra: 39993},
			c(12, get1),
			{dir: l7.FromServer, t: 20, head: "HTTP/1.1 201 Created\r\nContent-Length: 70000\r\n\r\n", extra: 70000},
			s(21, ok5)},
		want: []string{"RESP POST /up HTTP/1.1 201 10-20", "RESP GET /a HTTP/1.1 200 12-21"},
	}, {
		name: "chunked response with size lines in heads",
		steps: []step{c(10, get1), c(11, get2),
			{dir: l7.FromServer, t: 20, head: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel", extra: 4},
			s(21, "a;ext=1\r\n0123456789\r\n0\r\nTrailer: x\r\n\r\n"), s(22, nf0)},
		want: []string{"RESP GET /a HTTP/1.1 200 10-20", "RESP GET /b?q=1 HTTP/1.1 404 11-22"},
	}, {
		name: "chunked request body",
		steps: []step{c(10, "POST /p HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"+get1),
			s(20, ok5+nf0)},
		want: []string{"RESP POST /p HTTP/1.1 200 10-20", "RESP GET /a HTTP/1.1 404 10-20"},
	}, {
		name: "chunk-size line outside the head: truncated, resync at the next response",
		steps: []step{c(10, get1),
			{dir: l7.FromServer, t: 20, head: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", extra: 100},
			s(21, "more data"), c(30, get2), s(40, nf0)},
		want:  []string{"RESP GET /a HTTP/1.1 200 10-20", "RESP GET /b?q=1 HTTP/1.1 404 30-40"},
		stats: stats(l7.ReasonTruncated, 1),
	}, {
		name: "truncated request header: start line kept, resync at a later chunk",
		steps: []step{{dir: l7.FromClient, t: 10, head: "GET /long HTTP/1.1\r\nCookie: aaaa", extra: 500},
			c(11, "rest of the cookie\r\n\r\n"), s(20, ok5), c(30, get2), s(40, nf0)},
		want:  []string{"RESP GET /long HTTP/1.1 200 10-20", "RESP GET /b?q=1 HTTP/1.1 404 30-40"},
		stats: stats(l7.ReasonTruncated, 1),
	}, {
		name: "truncated request start line: its response is consumed",
		steps: []step{{dir: l7.FromClient, t: 10, head: "GET /very-lo", extra: 500},
			s(20, ok5), c(30, get2), s(40, nf0)},
		want:  []string{"RESP GET /b?q=1 HTTP/1.1 404 30-40"},
		stats: stats(l7.ReasonTruncated, 1),
	}, {
		name: "truncated response header answers with its status",
		steps: []step{c(10, get1), {dir: l7.FromServer, t: 20, head: "HTTP/1.1 503 Service Unavailable\r\nX-", extra: 900},
			s(21, "body"), c(30, get2), s(40, nf0)},
		want:  []string{"RESP GET /a HTTP/1.1 503 10-20", "RESP GET /b?q=1 HTTP/1.1 404 30-40"},
		stats: stats(l7.ReasonTruncated, 1),
	}, {
		name: "truncated response status line answers with status 0",
		steps: []step{c(10, get1), {dir: l7.FromServer, t: 20, head: "HTTP/1", extra: 900},
			c(30, get2), s(40, nf0)},
		want:  []string{"RESP GET /a HTTP/1.1 0 10-20", "RESP GET /b?q=1 HTTP/1.1 404 30-40"},
		stats: stats(l7.ReasonTruncated, 1),
	}, {
		name:  "response delimited by close; later request unanswered",
		steps: []step{c(10, get1), s(20, "HTTP/1.0 200 OK\r\n\r\nsome body"), s(21, "HTTP/1.1 200 OK\r\n\r\n"), c(30, get2)},
		want:  []string{"RESP GET /a HTTP/1.1 200 10-20", "REQ GET /b?q=1 HTTP/1.1 0 30-0"},
	}, {
		name: "HEAD, 204 and 304 have no body",
		steps: []step{c(10, "HEAD /h HTTP/1.1\r\n\r\n"+get1+get2+get3),
			s(20, "HTTP/1.1 200 OK\r\nContent-Length: 999\r\n\r\n"+"HTTP/1.1 204 No Content\r\n\r\n"+
				"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n"+ok5)},
		want: []string{"RESP HEAD /h HTTP/1.1 200 10-20", "RESP GET /a HTTP/1.1 204 10-20",
			"RESP GET /b?q=1 HTTP/1.1 304 10-20", "RESP GET /c HTTP/1.1 200 10-20"},
	}, {
		name: "100-continue: the final response answers",
		steps: []step{c(10, "PUT /f HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n"),
			s(12, "HTTP/1.1 100 Continue\r\n\r\n"), c(13, "data"), s(20, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
			c(30, get1), s(40, ok5)},
		want: []string{"RESP PUT /f HTTP/1.1 200 10-20", "RESP GET /a HTTP/1.1 200 30-40"},
	}, {
		name: "101 switching protocols: the rest is not parsed",
		steps: []step{c(10, "GET /ws HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"),
			c(11, "\x81\x85garbage"), s(20, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x05hello"),
			s(21, "more frames"), c(22, "GET /not-http HTTP/1.1\r\n\r\n")},
		want: []string{"RESP GET /ws HTTP/1.1 101 10-20"},
	}, {
		name: "CONNECT 200: a tunnel",
		steps: []step{c(10, "CONNECT db:5432 HTTP/1.1\r\nHost: db:5432\r\n\r\n\x16\x03\x01tls"),
			s(20, "HTTP/1.1 200 Connection established\r\n\r\n"), s(21, "\x16\x03\x03"), c(22, "\x17\x03\x03")},
		want: []string{"RESP CONNECT db:5432 HTTP/1.1 200 10-20"},
	}, {
		name: "CONNECT refused: HTTP goes on",
		steps: []step{c(10, "CONNECT db:5432 HTTP/1.1\r\n\r\n"), s(20, "HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n"),
			c(30, get1), s(40, ok5)},
		want: []string{"RESP CONNECT db:5432 HTTP/1.1 407 10-20", "RESP GET /a HTTP/1.1 200 30-40"},
	}, {
		name: "upgrade declined: HTTP goes on",
		steps: []step{c(10, "GET /ws HTTP/1.1\r\nUpgrade: h2c\r\n\r\n"), s(20, ok5),
			c(30, get1), s(40, nf0)},
		want: []string{"RESP GET /ws HTTP/1.1 200 10-20", "RESP GET /a HTTP/1.1 404 30-40"},
	}, {
		name: "gap in the server direction: older requests unanswered, the newest answered",
		steps: []step{c(10, get1), s(15, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n01234"),
			{dir: l7.FromServer, t: 16, head: "6789", gap: 1}, c(20, get2), c(30, get3),
			{dir: l7.FromServer, t: 35, head: "tail of /b's response", gap: 50}, s(36, nf0)},
		want:  []string{"RESP GET /a HTTP/1.1 200 10-15", "REQ GET /b?q=1 HTTP/1.1 0 20-0", "RESP GET /c HTTP/1.1 404 30-36"},
		stats: stats(l7.ReasonGap, 2),
	}, {
		name: "gap in the client direction: the lost request's response is unpaired",
		steps: []step{c(10, get1), s(15, ok5), {dir: l7.FromClient, t: 20, head: "ost: x\r\n\r\n", gap: 10},
			s(25, nf0), c(30, get3), s(35, ok200)},
		want:  []string{"RESP GET /a HTTP/1.1 200 10-15", "RESP GET /c HTTP/1.1 200 30-35"},
		stats: stats(l7.ReasonGap, 1, l7.ReasonUnpaired, 1),
	}, {
		name:  "response before any request",
		steps: []step{s(5, ok5), c(10, get1), s(20, nf0)},
		want:  []string{"RESP GET /a HTTP/1.1 404 10-20"},
		stats: stats(l7.ReasonUnpaired, 1),
	}, {
		name:  "pending cap: the oldest unanswered, its response consumed",
		opts:  Options{MaxPending: 2},
		steps: []step{c(10, get1), c(11, get2), c(12, get3), s(20, ok5), s(21, nf0), s(22, ok200)},
		want:  []string{"REQ GET /a HTTP/1.1 0 10-0", "RESP GET /b?q=1 HTTP/1.1 404 11-21", "RESP GET /c HTTP/1.1 200 12-22"},
		stats: stats(l7.ReasonStateCap, 1),
	}, {
		name:  "header over MaxHeaderBytes",
		opts:  Options{MaxHeaderBytes: 40},
		steps: []step{c(10, "GET /a HTTP/1.1\r\nHost: a-long-host-name\r\n\r\n"), c(20, get3), s(30, ok5), s(31, "HTTP/1.1 204 No Content\r\n\r\n")},
		want:  []string{"RESP GET /a HTTP/1.1 200 10-30", "RESP GET /c HTTP/1.1 204 20-31"},
		stats: stats(l7.ReasonStateCap, 1),
	}, {
		name:  "malformed, then resync at a request",
		steps: []step{c(10, "\x16\x03\x01 TLS hello\r\n\r\n"), c(11, get1), s(20, ok5)},
		want:  []string{"RESP GET /a HTTP/1.1 200 11-20"},
		stats: stats(l7.ReasonMalformed, 1),
	}, {
		name:  "malformed in a row: the connection is lost",
		opts:  Options{MaxMalformed: 3},
		steps: []step{c(9, get1), c(10, "BAD\r\n\r\n"), c(11, "junk"), c(12, "more junk"), c(13, get2), s(20, ok5), s(21, ok5)},
		want:  []string{"REQ GET /a HTTP/1.1 0 9-0"},
		stats: stats(l7.ReasonMalformed, 3, l7.ReasonLost, 1),
	}, {
		name: "bad framing is malformed",
		steps: []step{c(10, "GET /a HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"), c(11, "POST /x HTTP/1.1\r\nContent-Length: -1\r\n\r\n"),
			c(12, "GET /c HTTP/2.0\r\n\r\n"), c(13, get1), s(20, "HTTP/1.1 2000 OK\r\n\r\n"), s(21, ok5)},
		want:  []string{"RESP GET /a HTTP/1.1 200 13-21"},
		stats: stats(l7.ReasonMalformed, 4, l7.ReasonLost, 0),
	}, {
		name: "headers kept by the allowlist, redacted",
		opts: Options{Headers: []string{"X-Request-Id", "user-agent"}},
		steps: []step{c(10, "GET /a HTTP/1.1\r\nHost: x\r\nuser-agent: curl/8\r\nX-REQUEST-ID: 42\r\nAuthorization: secret\r\n\r\n"),
			s(20, "HTTP/1.1 200 OK\r\nX-Request-Id: 42\r\nContent-Length: 0\r\n\r\n")},
		want: []string{"RESP GET /a HTTP/1.1 200 10-20 [User-Agent: HIDDEN|X-Request-Id: HIDDEN]"},
	}, {
		name:  "headers kept with their values",
		opts:  Options{Headers: []string{"x-request-id"}, HeaderValues: true},
		steps: []step{c(10, "DELETE /a HTTP/1.0\r\nX-Request-Id:  42 \r\n\r\n"), s(20, nf0)},
		want:  []string{"RESP DELETE /a HTTP/1.0 404 10-20 [X-Request-Id: 42]"},
	}, {
		name: "chunk-size and trailer lines split over whole chunks",
		steps: []step{c(10, get1+get2),
			s(20, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1"), s(21, "0\r"), s(22, "\n0123456789abcdef\r\n0\r\nX: y\r"),
			s(23, "\n\r"), s(24, "\n"+nf0)},
		want: []string{"RESP GET /a HTTP/1.1 200 10-20", "RESP GET /b?q=1 HTTP/1.1 404 10-24"},
	}, {
		name:  "an overlapping chunk is read from where the stream was",
		steps: []step{c(10, get1), {dir: l7.FromClient, t: 11, head: get1[len(get1)-4:] + get2, gap: ^uint64(3)}, s(20, ok5+nf0)},
		want:  []string{"RESP GET /a HTTP/1.1 200 10-20", "RESP GET /b?q=1 HTTP/1.1 404 11-20"},
	}, {
		name:  "bare LF line ends are malformed",
		steps: []step{c(10, "GET /lf HTTP/1.1\nHost: x\n\n"), c(11, get1), s(20, ok5)},
		want:  []string{"RESP GET /a HTTP/1.1 200 11-20"},
		stats: stats(l7.ReasonMalformed, 1),
	}, {
		name: "a response to a request not read gives way to the next response (HEAD)",
		steps: []step{c(10, get1), s(15, ok5), {dir: l7.FromClient, t: 20, head: "EAD /h HTTP/1.1\r\n\r\n", gap: 1},
			s(25, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n"), c(30, get2), s(40, nf0)},
		want:  []string{"RESP GET /a HTTP/1.1 200 10-15", "RESP GET /b?q=1 HTTP/1.1 404 30-40"},
		stats: stats(l7.ReasonGap, 1, l7.ReasonUnpaired, 1),
	}, {
		name: "resync on whole chunks too short to tell",
		steps: []step{{dir: l7.FromClient, t: 10, head: "GET /a", extra: 100}, c(11, "Co"), c(12, "okie: x\r\n\r\n"),
			c(13, "GE"), c(14, "T /b HTTP/1.1\r\n\r\n"), s(20, ok5), s(21, "HT"), s(22, "TP/1.1 204 No Content\r\n\r\n")},
		want:  []string{"RESP GET /b HTTP/1.1 204 13-21"},
		stats: stats(l7.ReasonTruncated, 1),
	}, {
		name:  "unanswered at close; uncommon methods",
		steps: []step{c(10, "PROPFIND /dav HTTP/1.1\r\n\r\n"), c(11, "GET * HTTP/1.1\r\n\r\n")},
		want:  []string{"REQ PROPFIND /dav HTTP/1.1 0 10-0", "REQ GET * HTTP/1.1 0 11-0"},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			got, st := run(t, tc.opts, tc.steps...)
			if !slices.Equal(got, tc.want) {
				t.Errorf("exchanges\n got %q\nwant %q", got, tc.want)
			}
			if st != tc.stats {
				t.Errorf("stats %v; want %v", st, tc.stats)
			}
		})
	}
}

func TestFeedToleratesBadChunksAndCloseResets(t *testing.T) {
	var st l7.Stats
	q := New(nil, Options{}) // not counted, no panic
	q.Feed(&l7.Chunk{Dir: l7.FromClient, Head: []byte("junk"), Len: 4}, func(*l7.Exchange) {})
	p := New(&st, Options{})
	var got []string
	emit := func(e *l7.Exchange) { got = append(got, format(e)) }
	p.Feed(nil, emit)
	p.Feed(&l7.Chunk{Dir: 7, Head: []byte(get1), Len: uint32(len(get1))}, emit)
	// a Head longer than Len is read to Len only
	p.Feed(&l7.Chunk{Dir: l7.FromClient, TimeNs: 10, Head: []byte(get1 + "GET /x"), Len: uint32(len(get1))}, emit)
	p.Feed(&l7.Chunk{Dir: l7.FromServer, TimeNs: 20, Head: []byte(ok5), Len: uint32(len(ok5))}, emit)
	p.Close(emit)
	// after Close the parser follows a new connection from offset 0
	p.Feed(&l7.Chunk{Dir: l7.FromClient, TimeNs: 30, Head: []byte(get2), Len: uint32(len(get2))}, emit)
	p.Close(emit)
	want := []string{"RESP GET /a HTTP/1.1 200 10-20", "REQ GET /b?q=1 HTTP/1.1 0 30-0"}
	if !slices.Equal(got, want) || st != (l7.Stats{}) {
		t.Fatalf("got %q, stats %v; want %q", got, st, want)
	}
}
