package hubble

import (
	flowpb "github.com/cilium/cilium/api/v1/flow"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/flowbus/flowbus/schemas"
)

// The L4 and L7 parts of DecodeFlow: Layer4 and Layer7 with their oneofs.

// layer4 reads the Layer4 oneof: a member that replaces another starts
// from nothing, as protobuf's oneof does; the same member again merges.
func (d *Decoder) layer4(b []byte, f *schemas.Flow) error {
	s := &d.st
	return fields(b, func(num protowire.Number, typ protowire.Type, _ uint64, data []byte) error {
		if typ != wireBytes || num < 1 || num > 7 {
			return nil
		}
		if s.l4 != num {
			s.l4 = num
			f.L4Protocol, f.SrcPort, f.DstPort, f.TCPFlags, f.ICMPType, f.ICMPCode = 0, 0, 0, 0, 0, 0
		}
		proto := [...]uint8{1: 6, 2: 17, 3: 1, 4: 58, 5: 132, 6: 0}[min(num, 6)]
		if proto == 0 {
			return nil // VRRP, IGMP: FromProto carries neither
		}
		f.L4Protocol = proto
		return fields(data, func(n protowire.Number, typ protowire.Type, v uint64, data []byte) error {
			switch {
			case num == 3 || num == 4: // ICMP
				switch {
				case typ == wireVarint && n == 1:
					f.ICMPType = uint8(v)
				case typ == wireVarint && n == 2:
					f.ICMPCode = uint8(v)
				}
			case typ == wireVarint && n == 1:
				f.SrcPort = uint16(v)
			case typ == wireVarint && n == 2:
				f.DstPort = uint16(v)
			case num == 1 && typ == wireBytes && n == 3: // TCP flags
				return fields(data, func(n protowire.Number, typ protowire.Type, v uint64, _ []byte) error {
					if typ == wireVarint && n >= 1 && n <= 9 {
						if v != 0 {
							f.TCPFlags |= tcpFlagBits[n-1]
						} else {
							f.TCPFlags &^= tcpFlagBits[n-1]
						}
					}
					return nil
				})
			}
			return nil
		})
	})
}

// layer7 reads a Layer7 and its record oneof (DNS, HTTP, Kafka).
func (d *Decoder) layer7(b []byte, f *schemas.Flow) error {
	s, l := &d.st, &f.L7
	s.hasL7 = true
	err := fields(b, func(num protowire.Number, typ protowire.Type, v uint64, data []byte) error {
		switch {
		case typ == wireVarint && num == 1:
			l.Type = flowpb.L7FlowType(int32(v))
		case typ == wireVarint && num == 2:
			f.LatencyNs = v
		case typ == wireBytes && num >= 100 && num <= 102:
			if s.l7 != num {
				s.l7 = num
				*l = schemas.L7{Type: l.Type, KafkaClientID: l.KafkaClientID}
				s.dnsIPs, s.dnsCNAMEs, s.dnsQTypes, s.dnsRRType, s.headers = s.dnsIPs[:0], s.dnsCNAMEs[:0], s.dnsQTypes[:0], s.dnsRRType[:0], s.headers[:0]
			}
			switch num {
			case 100:
				l.Protocol = schemas.L7DNS
				return d.dns(data, l)
			case 101:
				l.Protocol = schemas.L7HTTP
				return d.http(data, l)
			default:
				l.Protocol = schemas.L7Kafka
				return d.kafka(data, l)
			}
		}
		return nil
	})
	return err
}

func (d *Decoder) http(b []byte, l *schemas.L7) error {
	s := &d.st
	return fields(b, func(num protowire.Number, typ protowire.Type, v uint64, data []byte) (err error) {
		switch {
		case typ == wireVarint && num == 1:
			l.HTTPStatus = uint32(v)
		case typ != wireBytes:
		case num == 2:
			l.HTTPMethod, err = d.str(data)
		case num == 3:
			l.HTTPURL, err = unique(data)
		case num == 4:
			l.HTTPProtocol, err = d.str(data)
		case num == 5:
			var key, val string
			err = fields(data, func(num protowire.Number, typ protowire.Type, _ uint64, data []byte) (err error) {
				switch {
				case typ == wireBytes && num == 1:
					key, err = d.str(data)
				case typ == wireBytes && num == 2:
					val, err = unique(data)
				}
				return err
			})
			s.headers = append(s.headers, key+": "+val)
		}
		return err
	})
}

func (d *Decoder) dns(b []byte, l *schemas.L7) error {
	s := &d.st
	return fields(b, func(num protowire.Number, typ protowire.Type, v uint64, data []byte) error {
		switch {
		case typ == wireVarint && num == 3:
			l.DNSTTL = uint32(v)
		case typ == wireVarint && num == 6:
			l.DNSRCode = uint32(v)
		case typ != wireBytes:
		default:
			str, err := d.str(data)
			if err != nil {
				return err
			}
			switch num {
			case 1:
				l.DNSQuery = str
			case 2:
				s.dnsIPs = append(s.dnsIPs, str)
			case 4:
				s.dnsCNAMEs = append(s.dnsCNAMEs, str)
			case 5:
				l.DNSObservationSource = str
			case 7:
				s.dnsQTypes = append(s.dnsQTypes, str)
			case 8:
				s.dnsRRType = append(s.dnsRRType, str)
			}
		}
		return nil
	})
}

func (d *Decoder) kafka(b []byte, l *schemas.L7) error {
	return fields(b, func(num protowire.Number, typ protowire.Type, v uint64, data []byte) (err error) {
		switch {
		case typ == wireVarint && num == 1:
			l.KafkaErrorCode = int32(v)
		case typ == wireVarint && num == 2:
			l.KafkaAPIVersion = int32(v)
		case typ == wireVarint && num == 4:
			l.KafkaCorrelationID = int32(v)
		case typ == wireBytes && num == 3:
			l.KafkaAPIKey, err = d.str(data)
		case typ == wireBytes && num == 5:
			l.KafkaTopic, err = d.str(data)
		}
		return err
	})
}
