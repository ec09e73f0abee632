package stream

import (
	"bytes"
	"encoding/binary"

	"github.com/twmb/franz-go/pkg/kmsg"
	"golang.org/x/net/dns/dnsmessage"
)

// h2Preface is the start of the HTTP/2 client connection preface (RFC 9113
// section 3.4) that detection requires.
const h2Preface = "PRI * HTTP/2.0"

// methods are the HTTP/1 request methods detection recognises: RFC 9110's,
// PATCH, WebDAV's and the common extensions (the http1 parser's list).
var methods = [...]string{"GET", "POST", "PUT", "HEAD", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE",
	"PROPFIND", "PROPPATCH", "MKCOL", "COPY", "MOVE", "LOCK", "UNLOCK", "REPORT", "SEARCH", "PURGE"}

// detect says which protocol a client's first bytes begin, 0 when none:
// head is the captured start of the payload, whole whether it is all of
// it; udp the transport.
func detect(head []byte, whole, udp bool, maxKafkaFrame int) Protocol {
	if udp {
		if isDNS(head, whole) {
			return DNS
		}
		return 0
	}
	switch {
	case isHTTP2(head):
		return HTTP2
	case isHTTP1(head):
		return HTTP1
	case isKafka(head, maxKafkaFrame):
		return Kafka
	case len(head) >= 2 && isDNSOverTCP(head, whole):
		return DNS
	}
	return 0
}

func isHTTP2(head []byte) bool { return bytes.HasPrefix(head, []byte(h2Preface)) }

// isHTTP1: one of the methods, a space and a byte that can start a
// request-target.
func isHTTP1(head []byte) bool {
	sp := bytes.IndexByte(head[:min(len(head), 10)], ' ')
	if sp <= 0 || sp+1 >= len(head) || head[sp+1] <= ' ' || head[sp+1] >= 0x7f {
		return false
	}
	for _, m := range methods {
		if string(head[:sp]) == m {
			return true
		}
	}
	return false
}

// isDNSOverTCP: a length prefix (RFC 1035 section 4.2.2) of at least a
// header and a root question (17 bytes), then a query.
func isDNSOverTCP(head []byte, whole bool) bool {
	n := int(binary.BigEndian.Uint16(head))
	return n >= 17 && isDNS(head[2:], whole && n <= len(head)-2)
}

// isKafka: a request header (as Kafka's protocol guide gives it): a size of
// at least the header's 8 bytes and at most maxFrame, an API key that
// franz-go's kmsg knows with a version it knows, a correlation ID of 0 or
// more and, when captured, a client ID length that fits the frame and
// printable client ID bytes.
func isKafka(head []byte, maxFrame int) bool {
	if len(head) < 12 {
		return false
	}
	size := int32(binary.BigEndian.Uint32(head))
	key := int16(binary.BigEndian.Uint16(head[4:]))
	ver := int16(binary.BigEndian.Uint16(head[6:]))
	corr := int32(binary.BigEndian.Uint32(head[8:]))
	if size < 8 || int64(size) > int64(maxFrame) || corr < 0 || ver < 0 {
		return false
	}
	req := kmsg.RequestForKey(key)
	if req == nil || ver > req.MaxVersion() {
		return false
	}
	if key == 7 && ver == 0 || len(head) < 14 { // ControlledShutdown v0 has no client ID
		return true
	}
	n := int16(binary.BigEndian.Uint16(head[12:]))
	if n == -1 {
		return true
	}
	if n < 0 || int32(n) > size-10 {
		return false
	}
	for _, b := range head[14:min(len(head), 14+int(n))] {
		if b < ' ' || b > '~' {
			return false
		}
	}
	return true
}

// isDNS: a query's header (QR 0, an opcode in use: QUERY, IQUERY, STATUS,
// NOTIFY, UPDATE, DSO; one question, no answer) and, when the message was
// captured whole, a question that parses.
func isDNS(msg []byte, whole bool) bool {
	if len(msg) < 12 {
		return false
	}
	flags := binary.BigEndian.Uint16(msg[2:])
	opcode := flags >> 11 & 0xf
	if flags&0x8000 != 0 || opcode == 3 || opcode > 6 ||
		binary.BigEndian.Uint16(msg[4:]) != 1 || binary.BigEndian.Uint16(msg[6:]) != 0 {
		return false
	}
	if !whole {
		return true
	}
	var p dnsmessage.Parser
	if _, err := p.Start(msg); err != nil {
		return false
	}
	_, err := p.Question()
	return err == nil
}
