package fqdn

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	flowpb "github.com/cilium/cilium/api/v1/flow"
	"golang.org/x/net/dns/dnsmessage"

	"github.com/flowbus/flowbus/agent/l7"
	"github.com/flowbus/flowbus/agent/l7/dns"
	"github.com/flowbus/flowbus/schemas"
)

const sec = int64(time.Second)

var (
	ip1 = netip.MustParseAddr("192.0.2.1")
	ip2 = netip.MustParseAddr("2001:db8::2")
	ip3 = netip.MustParseAddr("192.0.2.3")
)

func want(t *testing.T, c *Cache, pod string, ip netip.Addr, now int64, names ...string) {
	t.Helper()
	got := c.Names(pod, ip, now)
	if !slices.Equal(got, names) || (len(names) == 0 && got != nil) {
		t.Fatalf("Names(%s, %s, %d) = %q; want %q", pod, ip, now, got, names)
	}
}

func TestExpiryIsExactlyAtTTLPlusGrace(t *testing.T) {
	t0 := 1000 * sec
	c := New(Options{Grace: 5 * time.Second})
	c.Add("payments/ledger-0", t0, 30, []netip.Addr{ip1}, "api.stripe.com.")
	want(t, c, "payments/ledger-0", ip1, t0, "api.stripe.com")
	want(t, c, "payments/ledger-0", ip1, t0+35*sec, "api.stripe.com") // alive at its expiry, as Cilium
	want(t, c, "payments/ledger-0", ip1, t0+35*sec+1)
	c.Expire(t0 + 35*sec)
	if c.Len() != 1 {
		t.Fatalf("len %d at expiry; want 1", c.Len())
	}
	c.Expire(t0 + 35*sec + 1)
	if c.Len() != 0 || c.Stats() != (Stats{Expired: 1}) {
		t.Fatalf("len %d, stats %+v after expiry; want 0, expired 1", c.Len(), c.Stats())
	}
	// no grace by default; MinTTL raises short TTLs
	c = New(Options{MinTTL: 10})
	c.Add("p", t0, 2, []netip.Addr{ip1}, "a.example.")
	c.Add("p", t0, 0, []netip.Addr{ip3}, "b.example.")
	want(t, c, "p", ip1, t0+10*sec, "a.example")
	want(t, c, "p", ip1, t0+10*sec+1)
	c = New(Options{})
	c.Add("p", t0, 2, []netip.Addr{ip1}, "a.example.")
	want(t, c, "p", ip1, t0+2*sec, "a.example")
	want(t, c, "p", ip1, t0+2*sec+1)
	// a huge TTL does not overflow
	c.Add("p", t0, 1<<32-1, []netip.Addr{ip3}, "forever.example.")
	want(t, c, "p", ip3, t0+(1<<32-1)*sec, "forever.example")
}

func TestCNAMEChainsMapTheIPsToEveryName(t *testing.T) {
	c := New(Options{})
	c.Add("p", 0, 60, []netip.Addr{ip1, netip.MustParseAddr("::ffff:192.0.2.3")}, "API.stripe.com.", "api.stripe.com.cdn.cloudflare.net.", "edge.example.net.")
	want(t, c, "p", ip1, 0, "api.stripe.com", "api.stripe.com.cdn.cloudflare.net", "edge.example.net")
	want(t, c, "p", ip3, 0, "api.stripe.com", "api.stripe.com.cdn.cloudflare.net", "edge.example.net") // v4-mapped is the v4 address
	want(t, c, "p", ip2, 0)
	if c.Len() != 6 {
		t.Fatalf("len %d; want 6", c.Len())
	}
}

func TestRefreshKeepsTheLaterExpiry(t *testing.T) {
	c := New(Options{})
	c.Add("p", 0, 60, []netip.Addr{ip1}, "a.example.")
	c.Add("p", 10*sec, 5, []netip.Addr{ip1}, "a.example.") // shorter: the 60 s stand
	want(t, c, "p", ip1, 60*sec, "a.example")
	c.Add("p", 50*sec, 30, []netip.Addr{ip1}, "a.example.") // later: 80 s
	want(t, c, "p", ip1, 80*sec, "a.example")
	want(t, c, "p", ip1, 80*sec+1)
	if c.Len() != 1 {
		t.Fatalf("len %d; want 1", c.Len())
	}
}

func TestPodsAreIsolated(t *testing.T) {
	c := New(Options{})
	c.Add("payments/ledger-0", 0, 60, []netip.Addr{ip1}, "a.example.")
	c.Add("shop/web-1", 0, 60, []netip.Addr{ip1}, "b.example.")
	want(t, c, "payments/ledger-0", ip1, 0, "a.example")
	want(t, c, "shop/web-1", ip1, 0, "b.example")
	want(t, c, "shop/web-2", ip1, 0)
}

func TestCapsEvictTheSoonestExpiring(t *testing.T) {
	c := New(Options{MaxPerPod: 3, MaxEntries: 5})
	c.Add("a", 0, 40, []netip.Addr{ip1}, "one.example.")
	c.Add("a", 0, 10, []netip.Addr{ip2}, "two.example.")
	c.Add("a", 0, 30, []netip.Addr{ip3}, "three.example.")
	c.Add("a", 0, 20, []netip.Addr{ip3}, "four.example.") // pod over 3: two (10 s) goes
	want(t, c, "a", ip2, 0)
	want(t, c, "a", ip3, 0, "four.example", "three.example")
	if c.Len() != 3 || c.Stats() != (Stats{Evicted: 1}) {
		t.Fatalf("len %d, stats %+v; want 3, evicted 1", c.Len(), c.Stats())
	}
	c.Add("b", 0, 50, []netip.Addr{ip1}, "b1.example.", "b2.example.")
	c.Add("b", 0, 60, []netip.Addr{ip2}, "b3.example.") // cache over 5: a's four (20 s) goes
	want(t, c, "a", ip3, 0, "three.example")
	want(t, c, "b", ip1, 0, "b1.example", "b2.example")
	if c.Len() != 5 || c.Stats() != (Stats{Evicted: 2}) {
		t.Fatalf("len %d, stats %+v; want 5, evicted 2", c.Len(), c.Stats())
	}
	// expired entries go before any eviction
	c.Add("c", 45*sec, 100, []netip.Addr{ip1}, "c.example.")
	if c.Len() != 4 || c.Stats() != (Stats{Evicted: 2, Expired: 2}) {
		t.Fatalf("len %d, stats %+v; want 4, evicted 2, expired 2", c.Len(), c.Stats())
	}
	want(t, c, "a", ip1, 45*sec)
}

func TestAddExchangeTakesAnsweredDNSResponses(t *testing.T) {
	c := New(Options{})
	e := l7.Exchange{RequestNs: 5, ResponseNs: 7 * sec, L7: schemas.L7{Type: flowpb.L7FlowType_RESPONSE, Protocol: schemas.L7DNS,
		DNSQuery: "api.stripe.com.", DNSIPs: []string{"54.187.174.169", "bogus"}, DNSTTL: 30, DNSCNAMEs: []string{"Edge.example.net."}}}
	c.AddExchange("p", &e)
	ip := netip.MustParseAddr("54.187.174.169")
	want(t, c, "p", ip, 37*sec, "api.stripe.com", "edge.example.net")
	want(t, c, "p", ip, 37*sec+1)
	nx := e
	nx.L7.DNSRCode, nx.L7.DNSQuery = 3, "nope.example."
	req := e
	req.L7.Type, req.L7.DNSQuery = flowpb.L7FlowType_REQUEST, "req.example."
	c.AddExchange("q", &nx)
	c.AddExchange("q", &req)
	if c.Len() != 2 {
		t.Fatalf("len %d; want 2 (NXDOMAIN and requests ignored)", c.Len())
	}
}

// TestAgreesWithAModel: random answers and lookups against a map of
// (pod, IP, name) to the latest expiry, with caps out of reach.
func TestAgreesWithAModel(t *testing.T) {
	type key struct {
		pod  string
		ip   netip.Addr
		name string
	}
	model := map[key]int64{}
	c := New(Options{Grace: time.Second})
	rng := uint64(1)
	next := func(n int) int { rng = rng*6364136223846793005 + 1442695040888963407; return int(rng>>33) % n }
	pods := []string{"a", "b", "c"}
	names := []string{"x.example.", "y.example.", "z.example.", "w.example."}
	var ips []netip.Addr
	for i := range 6 {
		ips = append(ips, netip.AddrFrom4([4]byte{10, 0, 0, byte(i)}))
	}
	now := int64(0)
	for range 5000 {
		now += int64(next(3)) * sec / 2
		if next(2) == 0 {
			pod, ttl := pods[next(len(pods))], uint32(next(20))
			as := []netip.Addr{ips[next(len(ips))], ips[next(len(ips))]}
			ns := names[:1+next(len(names))]
			c.Add(pod, now, ttl, as, ns...)
			for _, ip := range as {
				for _, n := range ns {
					k := key{pod, ip, strings.TrimSuffix(n, ".")} // as Hubble puts names on flows
					model[k] = max(model[k], now+int64(ttl)*sec+sec)
				}
			}
			continue
		}
		pod, ip := pods[next(len(pods))], ips[next(len(ips))]
		var w []string
		for k, exp := range model {
			if k.pod == pod && k.ip == ip && now <= exp {
				w = append(w, k.name)
			}
		}
		slices.Sort(w)
		want(t, c, pod, ip, now, w...)
	}
	live := 0
	for _, exp := range model {
		if now <= exp {
			live++
		}
	}
	c.Expire(now)
	if c.Len() != live {
		t.Fatalf("len %d; want %d live", c.Len(), live)
	}
}

// TestFromTheDNSParser: an answer parsed by agent/l7/dns names its
// addresses until its TTL.
func TestFromTheDNSParser(t *testing.T) {
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: 9, Response: true})
	_ = b.StartQuestions()
	name := dnsmessage.MustNewName("WWW.Example.com.")
	_ = b.Question(dnsmessage.Question{Name: name, Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET})
	_ = b.StartAnswers()
	_ = b.CNAMEResource(dnsmessage.ResourceHeader{Name: name, Class: dnsmessage.ClassINET, TTL: 300}, dnsmessage.CNAMEResource{CNAME: dnsmessage.MustNewName("edge.example.net.")})
	_ = b.AResource(dnsmessage.ResourceHeader{Name: dnsmessage.MustNewName("edge.example.net."), Class: dnsmessage.ClassINET, TTL: 20}, dnsmessage.AResource{A: ip1.As4()})
	msg, err := b.Finish()
	if err != nil {
		t.Fatal(err)
	}
	var st l7.Stats
	c := New(Options{})
	p := dns.New(17, &st, dns.Options{})
	p.Feed(&l7.Chunk{Dir: l7.FromServer, TimeNs: 100 * sec, Len: uint32(len(msg)), Head: msg}, func(e *l7.Exchange) { c.AddExchange("payments/ledger-0", e) })
	want(t, c, "payments/ledger-0", ip1, 120*sec, "edge.example.net", "www.example.com")
	want(t, c, "payments/ledger-0", ip1, 120*sec+1)
}

// TestNamesBeforeTheAnswerAreNone: a record stamped before the answer that
// named its address does not carry the name, even when it is made after
// the answer came; a refresh does not move the first instant.
func TestNamesBeforeTheAnswerAreNone(t *testing.T) {
	c := New(Options{})
	c.Add("p", 10*sec, 30, []netip.Addr{ip1}, "a.example.")
	want(t, c, "p", ip1, 10*sec-1)
	want(t, c, "p", ip1, 10*sec, "a.example")
	c.Add("p", 20*sec, 30, []netip.Addr{ip1}, "a.example.")
	want(t, c, "p", ip1, 15*sec, "a.example")
	want(t, c, "p", ip1, 50*sec, "a.example")
}
