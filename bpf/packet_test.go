//go:build linux

package bpf

import (
	"encoding/binary"
	"net/netip"
)

// Packet builders for BPF_PROG_TEST_RUN. Checksums are left zero: the
// program does not verify them.

type l4 struct {
	proto    uint8
	sport    uint16
	dport    uint16
	tcpFlags uint8 // FIN 0x01 SYN 0x02 RST 0x04 PSH 0x08 ACK 0x10
	icmpType uint8
	icmpCode uint8
	icmpID   uint16
	payload  int
}

func (x l4) bytes() []byte {
	var b []byte
	switch x.proto {
	case 6:
		b = make([]byte, 20)
		binary.BigEndian.PutUint16(b[0:], x.sport)
		binary.BigEndian.PutUint16(b[2:], x.dport)
		b[12] = 5 << 4
		b[13] = x.tcpFlags
	case 17:
		b = make([]byte, 8)
		binary.BigEndian.PutUint16(b[0:], x.sport)
		binary.BigEndian.PutUint16(b[2:], x.dport)
		binary.BigEndian.PutUint16(b[4:], uint16(8+x.payload))
	case 132:
		b = make([]byte, 12) // common header; the chunks are payload
		binary.BigEndian.PutUint16(b[0:], x.sport)
		binary.BigEndian.PutUint16(b[2:], x.dport)
	case 1, 58:
		b = make([]byte, 8)
		b[0], b[1] = x.icmpType, x.icmpCode
		binary.BigEndian.PutUint16(b[4:], x.icmpID)
	}
	return append(b, make([]byte, x.payload)...)
}

func eth(proto uint16, payload []byte) []byte {
	b := make([]byte, 14, 14+len(payload))
	copy(b[0:6], []byte{2, 0, 0, 0, 0, 2})
	copy(b[6:12], []byte{2, 0, 0, 0, 0, 1})
	binary.BigEndian.PutUint16(b[12:], proto)
	return append(b, payload...)
}

func ipv4(src, dst string, x l4) []byte {
	p := x.bytes()
	h := make([]byte, 20, 20+len(p))
	h[0] = 0x45
	binary.BigEndian.PutUint16(h[2:], uint16(20+len(p)))
	h[8] = 64
	h[9] = x.proto
	s, d := netip.MustParseAddr(src).As4(), netip.MustParseAddr(dst).As4()
	copy(h[12:], s[:])
	copy(h[16:], d[:])
	return eth(0x0800, append(h, p...))
}

// ext is one IPv6 extension header: its protocol number and total length
// (a multiple of 8).
type ext struct {
	proto uint8
	len   int
}

func ipv6(src, dst string, x l4, exts ...ext) []byte {
	p := x.bytes()
	var chain []byte
	for i, e := range exts {
		next := x.proto
		if i+1 < len(exts) {
			next = exts[i+1].proto
		}
		h := make([]byte, e.len)
		h[0] = next
		switch e.proto {
		case 44:
		case 51:
			h[1] = uint8(e.len/4 - 2)
		default:
			h[1] = uint8(e.len/8 - 1)
		}
		chain = append(chain, h...)
	}
	first := x.proto
	if len(exts) > 0 {
		first = exts[0].proto
	}
	h := make([]byte, 40, 40+len(chain)+len(p))
	h[0] = 0x60
	binary.BigEndian.PutUint16(h[4:], uint16(len(chain)+len(p)))
	h[6] = first
	h[7] = 64
	s, d := netip.MustParseAddr(src).As16(), netip.MustParseAddr(dst).As16()
	copy(h[8:], s[:])
	copy(h[24:], d[:])
	return eth(0x86DD, append(append(h, chain...), p...))
}

func tcp(sport, dport uint16, flags uint8, payload int) l4 {
	return l4{proto: 6, sport: sport, dport: dport, tcpFlags: flags, payload: payload}
}

const (
	fin = 0x01
	syn = 0x02
	rst = 0x04
	psh = 0x08
	ack = 0x10
)
