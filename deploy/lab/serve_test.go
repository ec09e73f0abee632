package lab

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"golang.org/x/net/dns/dnsmessage"
)

func TestMatchRouteTakesTheIdSegment(t *testing.T) {
	for _, tc := range []struct {
		name, pattern, path, id string
		ok                      bool
	}{
		{"a path with an id matches and yields it", "/v1/accounts/{id}/balance", "/v1/accounts/42/balance", "42", true},
		{"a path without id matches exactly", "/healthz", "/healthz", "", true},
		{"an empty id segment does not match", "/v1/accounts/{id}/balance", "/v1/accounts//balance", "", false},
		{"a longer path does not match", "/v1/score/{id}", "/v1/score/1/x", "", false},
		{"another literal does not match", "/v1/score/{id}", "/v2/score/1", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id, ok := matchRoute(tc.pattern, tc.path)
			if id != tc.id || ok != tc.ok {
				t.Fatalf("matchRoute(%q, %q) = %q, %v; want %q, %v", tc.pattern, tc.path, id, ok, tc.id, tc.ok)
			}
		})
	}
}

func TestHTTPServerAnswersEachRouteDeterministically(t *testing.T) {
	h := &httpHandler{pod: "ledger-svc", routes: []RouteSpec{
		{Path: "/v1/accounts/{id}/balance", Method: "GET", ErrorStatus: 503},
		{Path: "/v1/ledger/entries/{id}", Method: "POST", ErrorEvery: 40, ErrorStatus: 500},
	}}
	for _, tc := range []struct {
		name, method, path string
		status             int
		body               string
	}{
		{"a GET on a route without errors is 200", "GET", "/v1/accounts/40/balance", 200,
			`{"pod":"ledger-svc","route":"/v1/accounts/{id}/balance","id":"40","status":200}` + "\n"},
		{"an id that is a multiple of error_every gets the error status", "POST", "/v1/ledger/entries/80", 500,
			`{"pod":"ledger-svc","route":"/v1/ledger/entries/{id}","id":"80","status":500}` + "\n"},
		{"another id gets 200", "POST", "/v1/ledger/entries/81", 200,
			`{"pod":"ledger-svc","route":"/v1/ledger/entries/{id}","id":"81","status":200}` + "\n"},
		{"a wrong method is 405", "GET", "/v1/ledger/entries/81", 405, "method not allowed\n"},
		{"a non-numeric id on a route with errors is 400", "POST", "/v1/ledger/entries/abc", 400, "id \"abc\" is not a number\n"},
		{"an unknown path is 404", "GET", "/nope", 404, "404 page not found\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(tc.method, tc.path, strings.NewReader("{}")))
			body, _ := io.ReadAll(rec.Result().Body)
			if rec.Code != tc.status || string(body) != tc.body {
				t.Fatalf("%s %s = %d %q; want %d %q", tc.method, tc.path, rec.Code, body, tc.status, tc.body)
			}
		})
	}
	if _, _, err := ExpectedResponse("x", RouteSpec{Path: "/a/{id}", ErrorEvery: 2, ErrorStatus: 500}, "z"); err == nil {
		t.Fatal("ExpectedResponse with a non-numeric id: no error")
	}
	var _ http.Handler = h
}

func query(t testing.TB, id uint16, name string, qtype dnsmessage.Type) []byte {
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: id, RecursionDesired: true})
	_ = b.StartQuestions()
	if err := b.Question(dnsmessage.Question{Name: dnsmessage.MustNewName(name), Type: qtype, Class: dnsmessage.ClassINET}); err != nil {
		t.Fatal(err)
	}
	pkt, err := b.Finish()
	if err != nil {
		t.Fatal(err)
	}
	return pkt
}

func testDNSServer(t testing.TB) *dnsServer {
	topo, err := DefaultTopology()
	if err != nil {
		t.Fatal(err)
	}
	plan, err := NewPlan(topo, "fb", "n")
	if err != nil {
		t.Fatal(err)
	}
	return newDNSServer(plan, map[string]string{"api.payments.svc.cluster.local.": "checkout-api.payments.svc.cluster.local",
		"Pay.payments.svc.cluster.local": "api.payments.svc.cluster.local.", "gone.payments.svc.cluster.local": "nosuch.payments.svc.cluster.local",
		"loop.payments.svc.cluster.local": "loop.payments.svc.cluster.local"}, slog.New(slog.DiscardHandler))
}

func TestDNSServerAnswersServiceNamesAndRefusesJunk(t *testing.T) {
	d := testDNSServer(t)
	for _, tc := range []struct {
		name, qname string
		qtype       dnsmessage.Type
		rcode       dnsmessage.RCode
		ips         []netip.Addr
	}{
		{"A of a service is its IPv4 cluster ip", "ledger-svc.payments.svc.cluster.local.", dnsmessage.TypeA, dnsmessage.RCodeSuccess, []netip.Addr{netip.MustParseAddr("10.96.200.11")}},
		{"AAAA of a service is its IPv6 cluster ip", "Kube-DNS.kube-system.svc.cluster.local.", dnsmessage.TypeAAAA, dnsmessage.RCodeSuccess, []netip.Addr{netip.MustParseAddr("fd00:fb:96::a")}},
		{"MX of a service is an empty success", "ledger-svc.payments.svc.cluster.local.", dnsmessage.TypeMX, dnsmessage.RCodeSuccess, nil},
		{"an unknown name is NXDOMAIN", "nosuch.payments.svc.cluster.local.", dnsmessage.TypeA, dnsmessage.RCodeNameError, nil},
		{"a service in the wrong namespace is NXDOMAIN", "ledger-svc.kube-system.svc.cluster.local.", dnsmessage.TypeA, dnsmessage.RCodeNameError, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := d.answer(query(t, 99, tc.qname, tc.qtype), nil)
			if err != nil {
				t.Fatal(err)
			}
			var m dnsmessage.Message
			if err := m.Unpack(resp); err != nil {
				t.Fatal(err)
			}
			var ips []netip.Addr
			for _, a := range m.Answers {
				if a.Header.TTL != DNSTTL {
					t.Errorf("ttl %d; want %d", a.Header.TTL, DNSTTL)
				}
				switch r := a.Body.(type) {
				case *dnsmessage.AResource:
					ips = append(ips, netip.AddrFrom4(r.A))
				case *dnsmessage.AAAAResource:
					ips = append(ips, netip.AddrFrom16(r.AAAA))
				}
			}
			if m.ID != 99 || !m.Response || !m.Authoritative || m.RCode != tc.rcode || !reflect.DeepEqual(ips, tc.ips) ||
				len(m.Questions) != 1 || m.Questions[0].Name.String() != tc.qname {
				t.Fatalf("answer %+v ips %v; want id 99, rcode %v, ips %v, question echoed", m.Header, ips, tc.rcode, tc.ips)
			}
		})
	}
	t.Run("a response packet is not answered", func(t *testing.T) {
		pkt := query(t, 1, "a.b.", dnsmessage.TypeA)
		pkt[2] |= 0x80
		if _, err := d.answer(pkt, nil); err == nil || err.Error() != "not a query" {
			t.Fatalf("answer(response) err = %v; want not a query", err)
		}
	})
	t.Run("every truncation of a query gets an error, never a panic", func(t *testing.T) {
		pkt := query(t, 1, "ledger-svc.payments.svc.cluster.local.", dnsmessage.TypeA)
		for n := range len(pkt) {
			if _, err := d.answer(pkt[:n], nil); err == nil {
				t.Fatalf("truncated at %d of %d: no error", n, len(pkt))
			}
		}
	})
}

func FuzzDNSServerAnswer(f *testing.F) {
	f.Add(query(f, 7, "ledger-svc.payments.svc.cluster.local.", dnsmessage.TypeA))
	f.Add(query(f, 8, "x.", dnsmessage.TypeAAAA))
	f.Add([]byte{0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 0x0c})
	d := testDNSServer(f)
	f.Fuzz(func(t *testing.T, pkt []byte) {
		resp, err := d.answer(pkt, nil)
		if err != nil {
			return
		}
		var m dnsmessage.Message
		if err := m.Unpack(resp); err != nil {
			t.Fatalf("the server built an answer that does not parse: %v", err)
		}
		if !m.Response {
			t.Fatal("answer without the response flag")
		}
	})
}
