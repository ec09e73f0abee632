package lab

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"reflect"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

// dnsRecords lists an answer's records as "owner TYPE value ttl".
func dnsRecords(t *testing.T, resp []byte) (dnsmessage.Header, []string) {
	t.Helper()
	var m dnsmessage.Message
	if err := m.Unpack(resp); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, a := range m.Answers {
		v := ""
		switch r := a.Body.(type) {
		case *dnsmessage.AResource:
			v = fmt.Sprint(net.IP(r.A[:]))
		case *dnsmessage.AAAAResource:
			v = fmt.Sprint(net.IP(r.AAAA[:]))
		case *dnsmessage.CNAMEResource:
			v = r.CNAME.String()
		}
		out = append(out, fmt.Sprintf("%s %s %s %d", a.Header.Name, strings.TrimPrefix(a.Header.Type.String(), "Type"), v, a.Header.TTL))
	}
	return m.Header, out
}

func TestDNSServerFollowsCNAMEChains(t *testing.T) {
	d := testDNSServer(t)
	for _, tc := range []struct {
		name, qname string
		qtype       dnsmessage.Type
		rcode       dnsmessage.RCode
		records     []string
	}{
		{"A of an alias is the CNAME then the target's A", "api.payments.svc.cluster.local.", dnsmessage.TypeA, dnsmessage.RCodeSuccess, []string{
			"api.payments.svc.cluster.local. CNAME checkout-api.payments.svc.cluster.local. 60",
			"checkout-api.payments.svc.cluster.local. A 10.96.200.10 30"}},
		{"AAAA through a chain of two", "pay.payments.svc.cluster.local.", dnsmessage.TypeAAAA, dnsmessage.RCodeSuccess, []string{
			"pay.payments.svc.cluster.local. CNAME api.payments.svc.cluster.local. 60",
			"api.payments.svc.cluster.local. CNAME checkout-api.payments.svc.cluster.local. 60",
			"checkout-api.payments.svc.cluster.local. AAAA fd00:fb:96::10 30"}},
		{"a CNAME question gets the first CNAME only", "pay.payments.svc.cluster.local.", dnsmessage.TypeCNAME, dnsmessage.RCodeSuccess, []string{
			"pay.payments.svc.cluster.local. CNAME api.payments.svc.cluster.local. 60"}},
		{"a chain to an unknown name is NXDOMAIN with the CNAME", "gone.payments.svc.cluster.local.", dnsmessage.TypeA, dnsmessage.RCodeNameError, []string{
			"gone.payments.svc.cluster.local. CNAME nosuch.payments.svc.cluster.local. 60"}},
		{"a loop stops after 8 CNAMEs, NXDOMAIN", "loop.payments.svc.cluster.local.", dnsmessage.TypeA, dnsmessage.RCodeNameError, func() (r []string) {
			for range 8 {
				r = append(r, "loop.payments.svc.cluster.local. CNAME loop.payments.svc.cluster.local. 60")
			}
			return r
		}()},
		{"AAAA of a service", "ledger-svc.payments.svc.cluster.local.", dnsmessage.TypeAAAA, dnsmessage.RCodeSuccess, []string{
			"ledger-svc.payments.svc.cluster.local. AAAA fd00:fb:96::11 30"}},
		{"an unknown name is NXDOMAIN without records", "nosuch.payments.svc.cluster.local.", dnsmessage.TypeAAAA, dnsmessage.RCodeNameError, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := d.answer(query(t, 5, tc.qname, tc.qtype), nil)
			if err != nil {
				t.Fatal(err)
			}
			h, recs := dnsRecords(t, resp)
			if h.ID != 5 || h.RCode != tc.rcode || !reflect.DeepEqual(recs, tc.records) {
				t.Fatalf("%v %v\n%s\nwant %v\n%s", h.ID, h.RCode, strings.Join(recs, "\n"), tc.rcode, strings.Join(tc.records, "\n"))
			}
		})
	}
}

func TestDNSServerOverTCPAndUDPAnswersFramedQueriesAndCountsJunk(t *testing.T) {
	d := testDNSServer(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go d.serveTCP(ln)
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	go d.serve(pc)

	frame := func(pkt []byte) []byte { return append(binary.BigEndian.AppendUint16(nil, uint16(len(pkt))), pkt...) }
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	// Two queries in one write, the second's length split from its body
	// by a pause: both answered in order, each length-prefixed.
	q1, q2 := frame(query(t, 1, "api.payments.svc.cluster.local.", dnsmessage.TypeA)), frame(query(t, 2, "nosuch.payments.svc.cluster.local.", dnsmessage.TypeA))
	c.Write(append(q1, q2[:1]...))
	time.Sleep(20 * time.Millisecond)
	c.Write(q2[1:])
	for _, want := range []struct {
		id    uint16
		rcode dnsmessage.RCode
		n     int
	}{{1, dnsmessage.RCodeSuccess, 2}, {2, dnsmessage.RCodeNameError, 0}} {
		var l [2]byte
		if _, err := io.ReadFull(c, l[:]); err != nil {
			t.Fatal(err)
		}
		resp := make([]byte, binary.BigEndian.Uint16(l[:]))
		if _, err := io.ReadFull(c, resp); err != nil {
			t.Fatal(err)
		}
		h, recs := dnsRecords(t, resp)
		if h.ID != want.id || h.RCode != want.rcode || len(recs) != want.n {
			t.Fatalf("answer %d %v %v; want id %d %v with %d records", h.ID, h.RCode, recs, want.id, want.rcode, want.n)
		}
	}
	// A frame that is not a query: counted, and the connection closed.
	c.Write(frame([]byte{1, 2, 3}))
	if n, err := c.Read(make([]byte, 10)); err != io.EOF {
		t.Fatalf("after junk: read %d, %v; want the connection closed (EOF)", n, err)
	}
	// Over UDP: junk gets no answer and is counted; a query after it is
	// answered.
	u, err := net.Dial("udp", pc.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	_ = u.SetDeadline(time.Now().Add(5 * time.Second))
	u.Write([]byte("garbage"))
	u.Write(query(t, 3, "ledger-svc.payments.svc.cluster.local.", dnsmessage.TypeA))
	buf := make([]byte, 1500)
	n, err := u.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	if h, _ := dnsRecords(t, buf[:n]); h.ID != 3 {
		t.Fatalf("first UDP answer has id %d; want 3 (the junk unanswered)", h.ID)
	}
	if got := d.bad.Load(); got != 2 {
		t.Fatalf("bad queries %d; want 2 (one over TCP, one over UDP)", got)
	}
}

func TestDNSClientOverTCPAndUDPWritesAnswersToTheTruth(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	pc, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Skipf("udp port %d taken: %v", port, err)
	}
	yaml := fmt.Sprintf(`
pods:
  - name: dns
    namespace: kube-system
    workload: coredns
    labels: {k8s-app: kube-dns}
    servers: [{kind: dns, port: %d, cnames: {api.payments.svc.cluster.local: checkout-api.payments.svc.cluster.local}}]
  - name: shop
    namespace: payments
    labels: {app: shop}
    clients:
      - {to: dns, kind: dns, port: %[1]d, transport: tcp, family: ipv4, names: [api.payments.svc.cluster.local, nosuch.payments.svc.cluster.local]}
      - {to: dns, kind: dns, port: %[1]d, family: ipv4, names: [api.payments.svc.cluster.local]}
services:
  - {name: checkout-api, namespace: payments, cluster_ips: [10.96.200.10, "fd00:fb:96::10"], selector: {app: shop}}
`, port)
	for i, transport := range []string{"tcp", "udp"} {
		e, dir := loopbackEdge(t, yaml, "shop", i)
		spec, _ := e.plan.Spec("dns")
		d := newDNSServer(e.plan, spec.Servers[0].CNAMEs, testDNSServer(t).log)
		if i == 0 {
			go d.serveTCP(ln)
			defer ln.Close()
		} else {
			go d.serve(pc)
			defer pc.Close()
		}
		for range 8 {
			e.sent.Add(1)
			e.do()
		}
		st := e.stats()
		if st.OK != 8 || st.Errors != 0 || st.Connections != 8 {
			t.Fatalf("%s: %+v (%s); want 8 answers on 8 connections", transport, st, st.LastError)
		}
		e.truth.Flush()
		recs, err := ReadTruth(dir)
		if err != nil || len(recs) != 8 {
			t.Fatalf("%s: %d records %v", transport, len(recs), err)
		}
		for j, r := range recs {
			// n/2 picks the name, (n/2/len(names))%2 the type.
			names := e.spec.Names
			name := names[(j/2)%len(names)] + "."
			qtype := []string{"A", "AAAA"}[(j/2/len(names))%2]
			status, answers, cnames, ttl := 0, []string{"10.96.200.10"}, []string{"checkout-api.payments.svc.cluster.local."}, uint32(30)
			if qtype == "AAAA" {
				answers = []string{"fd00:fb:96::10"}
			}
			if strings.HasPrefix(name, "nosuch") {
				status, answers, cnames, ttl = 3, nil, nil, 0
			}
			if r.Transport != transport || r.Path != name || r.Method != qtype || r.Status != status || !reflect.DeepEqual(r.Answers, answers) ||
				!reflect.DeepEqual(r.CNAMEs, cnames) || r.TTL != ttl || r.LocalPort == 0 || r.LatencyNs <= 0 || r.Error != "" || r.ToWorkload != "coredns" {
				t.Errorf("%s record %d: %+v; want %s %s status %d answers %v cnames %v ttl %d", transport, j, r, qtype, name, status, answers, cnames, ttl)
			}
		}
	}
}
