package stream

import (
	"maps"
	"testing"
	"time"
)

func TestParsePorts(t *testing.T) {
	for _, tc := range []struct {
		in, canonical string
		want          Ports
	}{{
		in:        "http:80,8080 grpc:9090 dns:53/udp,53/tcp kafka:9092 auto:7000",
		canonical: "http:80,8080 http2:9090 dns:53 kafka:9092 auto:7000",
		want: Ports{{TCP, 80}: HTTP1, {TCP, 8080}: HTTP1, {TCP, 9090}: HTTP2, {UDP, 53}: DNS, {TCP, 53}: DNS,
			{TCP, 9092}: Kafka, {TCP, 7000}: Auto},
	}, {
		in:        "  dns:5353/udp   dns:53 http2:443/tcp auto:7000/udp,7000\tkafka:9093,9092",
		canonical: "http2:443 dns:53,5353/udp kafka:9092,9093 auto:7000,7000/udp",
		want: Ports{{UDP, 5353}: DNS, {UDP, 53}: DNS, {TCP, 53}: DNS, {TCP, 443}: HTTP2,
			{UDP, 7000}: Auto, {TCP, 7000}: Auto, {TCP, 9092}: Kafka, {TCP, 9093}: Kafka},
	}, {
		in:        "dns:53/tcp",
		canonical: "dns:53/tcp",
		want:      Ports{{TCP, 53}: DNS},
	}, {
		in:        "",
		canonical: "",
		want:      Ports{},
	}} {
		got, err := ParsePorts(tc.in)
		if err != nil {
			t.Fatalf("%q: %v", tc.in, err)
		}
		if !maps.Equal(got, tc.want) {
			t.Errorf("%q: %v; want %v", tc.in, got, tc.want)
		}
		if s := got.String(); s != tc.canonical {
			t.Errorf("%q: String %q; want %q", tc.in, s, tc.canonical)
		}
		again, err := ParsePorts(got.String())
		if err != nil || !maps.Equal(again, got) {
			t.Errorf("%q: String does not read back: %v %v", tc.in, again, err)
		}
	}
}

func TestParsePortsErrors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"http", `"http": want protocol:port[,port…], as http:80,8080`},
		{"ftp:21", `"ftp:21": unknown protocol "ftp": want http, http2, grpc, dns, kafka or auto`},
		{"HTTP:80", `"HTTP:80": unknown protocol "HTTP": want http, http2, grpc, dns, kafka or auto`},
		{"http:", `"http:": no ports after the colon`},
		{"http:0", `"http:0": port "0": want a number from 1 to 65535`},
		{"http:65536", `"http:65536": port "65536": want a number from 1 to 65535`},
		{"http:80,,81", `"http:80,,81": port "": want a number from 1 to 65535`},
		{"http:eighty", `"http:eighty": port "eighty": want a number from 1 to 65535`},
		{"http:80/udp", `"http:80/udp": port 80/udp: http runs over TCP only (only dns and auto take /udp)`},
		{"grpc:9090/udp", `"grpc:9090/udp": port 9090/udp: http2 runs over TCP only (only dns and auto take /udp)`},
		{"kafka:9092/sctp", `"kafka:9092/sctp": port "9092/sctp": transport "sctp": want tcp or udp`},
		{"http:80 kafka:80", `"kafka:80": port 80/tcp is already http`},
		{"dns:53 auto:53/udp", `"auto:53/udp": port 53/udp is already dns`},
		{"http:80,80", `"http:80,80": port 80/tcp is already http`},
	} {
		got, err := ParsePorts(tc.in)
		if err == nil {
			t.Errorf("%q: no error; got %v", tc.in, got)
			continue
		}
		if err.Error() != tc.want {
			t.Errorf("%q: error\n%s\nwant\n%s", tc.in, err, tc.want)
		}
	}
}

// Set adds to the ports there, and nothing when the value has an error.
func TestPortsSetAddsAllOrNothing(t *testing.T) {
	var ps Ports
	if err := ps.Set("http:80"); err != nil {
		t.Fatal(err)
	}
	if err := ps.Set("kafka:9092 http2:80"); err == nil || err.Error() != `"http2:80": port 80/tcp is already http` {
		t.Fatalf("error %v", err)
	}
	if err := ps.Set("dns:53"); err != nil {
		t.Fatal(err)
	}
	if want := (Ports{{TCP, 80}: HTTP1, {UDP, 53}: DNS, {TCP, 53}: DNS}); !maps.Equal(ps, want) {
		t.Fatalf("%v; want %v", ps, want)
	}
	if ps.Type() != "ports" {
		t.Fatal(ps.Type())
	}
}

func TestConfigValidate(t *testing.T) {
	c := Config{Ports: Ports{{TCP, 80}: HTTP1}}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.HeadBytes != 256 || c.MaxConns != 16384 || c.IdleTimeout != time.Minute {
		t.Fatalf("defaults %d %d %v", c.HeadBytes, c.MaxConns, c.IdleTimeout)
	}
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{}, "l7 stream config: Ports is empty: name at least one port to follow, as http:80"},
		{Config{Ports: Ports{{TCP, 80}: HTTP1}, HeadBytes: 16},
			"l7 stream config: HeadBytes 16: want 24 to 8192"},
		{Config{Ports: Ports{{TCP, 80}: HTTP1}, HeadBytes: 9000, MaxConns: -1, IdleTimeout: -time.Second},
			"l7 stream config: HeadBytes 9000: want 24 to 8192\nMaxConns -1: want 1 or more (0 for 16384)\nIdleTimeout -1s: want a positive duration (0 for 1m0s)"},
		{Config{Ports: Ports{{UDP, 80}: HTTP1, {TCP, 81}: 0, {TCP, 82}: Protocol(9), {1, 83}: DNS, {TCP, 0}: Kafka}},
			"l7 stream config: port 0/tcp: want a port from 1 to 65535\n" +
				"port 80/udp: http runs over TCP only (only dns and auto take UDP ports)\n" +
				"port 81/tcp: protocol 0: want HTTP1, HTTP2, DNS, Kafka or Auto\n" +
				"port 82/tcp: protocol 9: want HTTP1, HTTP2, DNS, Kafka or Auto\n" +
				"port 83/proto1: transport 1: want 6 (TCP) or 17 (UDP)"},
	} {
		err := tc.cfg.Validate()
		if err == nil || err.Error() != tc.want {
			t.Errorf("error\n%v\nwant\n%s", err, tc.want)
		}
		if _, err := New(tc.cfg); err == nil {
			t.Errorf("New took %+v", tc.cfg)
		}
	}
}

func TestProtocolNames(t *testing.T) {
	for p, name := range map[Protocol]string{HTTP1: "http", HTTP2: "http2", DNS: "dns", Kafka: "kafka", Auto: "auto", 0: "", 7: "protocol(7)"} {
		if p.String() != name {
			t.Errorf("%d: %q; want %q", p, p.String(), name)
		}
	}
	if p, err := ParseProtocol("grpc"); p != HTTP2 || err != nil {
		t.Errorf("grpc: %v %v", p, err)
	}
	if EventUndetected.String() != "undetected" || NumEvents.String() != "event(6)" {
		t.Error("event names")
	}
}
