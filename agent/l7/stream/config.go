package stream

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/flowbus/flowbus/agent/l7/dns"
	"github.com/flowbus/flowbus/agent/l7/http1"
	"github.com/flowbus/flowbus/agent/l7/http2"
	"github.com/flowbus/flowbus/agent/l7/kafka"
)

// Protocol is what a port's connections carry. The zero value is no
// protocol.
type Protocol uint8

// Protocols. Auto is only a port's setting: a connection's protocol is
// detected from its first bytes, and records carry the one detected.
const (
	HTTP1 Protocol = iota + 1 // HTTP/1.x
	HTTP2                     // HTTP/2, gRPC included
	DNS
	Kafka
	Auto
	numProtocols
)

var protocolNames = [numProtocols]string{"", "http", "http2", "dns", "kafka", "auto"}

// String is the protocol's name as the port flag spells it ("http",
// "http2", "dns", "kafka", "auto"; "" for the zero value).
func (p Protocol) String() string {
	if p < numProtocols {
		return protocolNames[p]
	}
	return "protocol(" + strconv.Itoa(int(p)) + ")"
}

// ParseProtocol reads a protocol's name; "grpc" is HTTP2.
func ParseProtocol(s string) (Protocol, error) {
	if s == "grpc" {
		return HTTP2, nil
	}
	for p := HTTP1; p < numProtocols; p++ {
		if s == protocolNames[p] {
			return p, nil
		}
	}
	return 0, fmt.Errorf("unknown protocol %q: want http, http2, grpc, dns, kafka or auto", s)
}

// Transports of a Port.
const (
	TCP uint8 = 6
	UDP uint8 = 17
)

// Port is a server's port: its transport (TCP or UDP) and number.
type Port struct {
	Proto uint8
	Port  uint16
}

func (p Port) String() string {
	switch p.Proto {
	case TCP:
		return strconv.Itoa(int(p.Port)) + "/tcp"
	case UDP:
		return strconv.Itoa(int(p.Port)) + "/udp"
	}
	return strconv.Itoa(int(p.Port)) + "/proto" + strconv.Itoa(int(p.Proto))
}

// Ports says which protocol the connections to each server port carry.
// It implements pflag.Value (Set, String, Type), so a flag can fill it.
//
// The flag's form is groups separated by spaces, each a protocol, a colon
// and its ports separated by commas:
//
//	http:80,8080 grpc:9090 dns:53 kafka:9092 auto:7000,5353/udp
//
// A port is a number, optionally followed by /tcp or /udp. A bare number
// is TCP, except for dns, where it is both UDP and TCP (dns:53 is
// dns:53/udp,53/tcp). Only dns and auto may name UDP ports (auto on UDP
// detects DNS only); grpc is http2. A port may be named once. Set adds to
// the ports already there; the empty string adds nothing.
type Ports map[Port]Protocol

// ParsePorts reads a flag value of the form Ports describes.
func ParsePorts(s string) (Ports, error) {
	ps := Ports{}
	if err := ps.Set(s); err != nil {
		return nil, err
	}
	return ps, nil
}

// Set adds the ports of a flag value (the form Ports describes); on an
// error it adds none of them.
func (ps *Ports) Set(s string) error {
	add := Ports{}
	for _, group := range strings.Fields(s) {
		name, list, ok := strings.Cut(group, ":")
		if !ok {
			return fmt.Errorf("%q: want protocol:port[,port…], as http:80,8080", group)
		}
		proto, err := ParseProtocol(name)
		if err != nil {
			return fmt.Errorf("%q: %w", group, err)
		}
		if list == "" {
			return fmt.Errorf("%q: no ports after the colon", group)
		}
		for _, item := range strings.Split(list, ",") {
			ports, err := parsePort(item, proto)
			if err != nil {
				return fmt.Errorf("%q: %w", group, err)
			}
			for _, p := range ports {
				if old, dup := (*ps)[p]; dup {
					return fmt.Errorf("%q: port %s is already %s", group, p, old)
				}
				if old, dup := add[p]; dup {
					return fmt.Errorf("%q: port %s is already %s", group, p, old)
				}
				add[p] = proto
			}
		}
	}
	if *ps == nil {
		*ps = Ports{}
	}
	for p, proto := range add {
		(*ps)[p] = proto
	}
	return nil
}

// parsePort reads one port of a group: "53", "53/udp", "53/tcp".
func parsePort(item string, proto Protocol) ([]Port, error) {
	num, transport, explicit := strings.Cut(item, "/")
	n, err := strconv.ParseUint(num, 10, 16)
	if err != nil || n == 0 {
		return nil, fmt.Errorf("port %q: want a number from 1 to 65535", num)
	}
	port := uint16(n)
	if !explicit {
		if proto == DNS {
			return []Port{{UDP, port}, {TCP, port}}, nil
		}
		return []Port{{TCP, port}}, nil
	}
	switch transport {
	case "tcp":
		return []Port{{TCP, port}}, nil
	case "udp":
		if proto != DNS && proto != Auto {
			return nil, fmt.Errorf("port %s: %s runs over TCP only (only dns and auto take /udp)", item, proto)
		}
		return []Port{{UDP, port}}, nil
	}
	return nil, fmt.Errorf("port %q: transport %q: want tcp or udp", item, transport)
}

// String gives the ports in the form Set reads, groups in the order of the
// protocols (http, http2, dns, kafka, auto) and ports in ascending order:
// ParsePorts(ps.String()) is ps.
func (ps Ports) String() string {
	var groups []string
	for proto := HTTP1; proto < numProtocols; proto++ {
		keys := sortedPorts(ps, proto)
		if len(keys) == 0 {
			continue
		}
		var items []string
		for i := 0; i < len(keys); i++ {
			p := keys[i]
			switch {
			case proto == DNS && p.Proto == TCP && i+1 < len(keys) && keys[i+1] == Port{UDP, p.Port}:
				items = append(items, strconv.Itoa(int(p.Port))) // both
				i++
			case p.Proto == TCP && proto != DNS:
				items = append(items, strconv.Itoa(int(p.Port)))
			default:
				items = append(items, p.String())
			}
		}
		groups = append(groups, proto.String()+":"+strings.Join(items, ","))
	}
	return strings.Join(groups, " ")
}

// sortedPorts gives the ports of protocol proto (all of them for 0) by
// number, then transport.
func sortedPorts(ps Ports, proto Protocol) []Port {
	var keys []Port
	for p, pr := range ps {
		if proto == 0 || pr == proto {
			keys = append(keys, p)
		}
	}
	slices.SortFunc(keys, func(a, b Port) int {
		if a.Port != b.Port {
			return int(a.Port) - int(b.Port)
		}
		return int(a.Proto) - int(b.Proto)
	})
	return keys
}

// Type names the flag's value type for pflag's help.
func (ps *Ports) Type() string { return "ports" }

// Defaults and bounds of Config.
const (
	DefaultHeadBytes   = 256
	MinHeadBytes       = 24 // the HTTP/2 client preface: detection needs it whole
	MaxHeadBytes       = 8192
	DefaultMaxConns    = 16384
	DefaultIdleTimeout = 60 * time.Second
)

// Config sets up a Tracker. The zero values of all but Ports take the
// defaults.
type Config struct {
	// Ports are the server ports followed and their protocols; at least
	// one.
	Ports Ports
	// HeadBytes is how many bytes of each segment's payload the kernel
	// captures (DefaultHeadBytes, from MinHeadBytes to MaxHeadBytes). A
	// longer Segment.Head is cut to it.
	HeadBytes int
	// MaxConns caps the connections followed at once (DefaultMaxConns); a
	// new one over the cap evicts the least recently active.
	MaxConns int
	// IdleTimeout is how long a connection may go without a segment
	// before Expire closes it (DefaultIdleTimeout).
	IdleTimeout time.Duration
	// The parsers' options, as each package documents them.
	HTTP1 http1.Options
	HTTP2 http2.Options
	DNS   dns.Options
	Kafka kafka.Options
}

// Validate checks the config and fills in the defaults.
func (c *Config) Validate() error {
	var errs []error
	if len(c.Ports) == 0 {
		errs = append(errs, errors.New("Ports is empty: name at least one port to follow, as http:80"))
	}
	for _, port := range sortedPorts(c.Ports, 0) {
		proto := c.Ports[port]
		switch {
		case port.Proto != TCP && port.Proto != UDP:
			errs = append(errs, fmt.Errorf("port %s: transport %d: want 6 (TCP) or 17 (UDP)", port, port.Proto))
		case port.Port == 0:
			errs = append(errs, fmt.Errorf("port %s: want a port from 1 to 65535", port))
		case proto == 0 || proto >= numProtocols:
			errs = append(errs, fmt.Errorf("port %s: protocol %d: want HTTP1, HTTP2, DNS, Kafka or Auto", port, proto))
		case port.Proto == UDP && proto != DNS && proto != Auto:
			errs = append(errs, fmt.Errorf("port %s: %s runs over TCP only (only dns and auto take UDP ports)", port, proto))
		}
	}
	if c.HeadBytes == 0 {
		c.HeadBytes = DefaultHeadBytes
	} else if c.HeadBytes < MinHeadBytes || c.HeadBytes > MaxHeadBytes {
		errs = append(errs, fmt.Errorf("HeadBytes %d: want %d to %d", c.HeadBytes, MinHeadBytes, MaxHeadBytes))
	}
	if c.MaxConns == 0 {
		c.MaxConns = DefaultMaxConns
	} else if c.MaxConns < 0 {
		errs = append(errs, fmt.Errorf("MaxConns %d: want 1 or more (0 for %d)", c.MaxConns, DefaultMaxConns))
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = DefaultIdleTimeout
	} else if c.IdleTimeout < 0 {
		errs = append(errs, fmt.Errorf("IdleTimeout %v: want a positive duration (0 for %v)", c.IdleTimeout, DefaultIdleTimeout))
	}
	if len(errs) > 0 {
		return fmt.Errorf("l7 stream config: %w", errors.Join(errs...))
	}
	return nil
}
