package policy

import (
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
)

// ciliumPortRule reads one PortRule (PortDenyRule when deny): its ports,
// and its L7 parts, which are parsed and noted as not enforced.
func (p *parsed) ciliumPortRule(v any, field string, deny bool) ([]portSpec, error) {
	m, err := asMap(v, field)
	if err != nil {
		return nil, err
	}
	keys := []string{"ports"}
	if !deny {
		keys = append(keys, "rules", "terminatingTLS", "originatingTLS", "serverNames", "listener")
	}
	if err := known(m, field, keys...); err != nil {
		return nil, err
	}
	pl, err := asList(m["ports"], join(field, "ports"))
	if err != nil {
		return nil, err
	}
	var out []portSpec
	for i, pv := range pl {
		ps, err := ciliumPort(pv, index(join(field, "ports"), i))
		if err != nil {
			return nil, err
		}
		out = append(out, ps...)
	}
	for _, k := range []string{"terminatingTLS", "originatingTLS", "serverNames", "listener"} {
		if _, ok := m[k]; ok {
			p.notes = append(p.notes, Note{Policy: p.ref, Field: join(field, k), Rules: 1,
				What: k + " is not enforced: the datapath allows the port at L4"})
		}
	}
	if rv, ok := m["rules"]; ok {
		if err := p.l7Rules(rv, join(field, "rules")); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// ciliumPort reads one PortProtocol. Protocol ANY (or none) stands for TCP,
// UDP and SCTP, as in Cilium; port 0 (or none) for every port.
func ciliumPort(v any, field string) ([]portSpec, error) {
	m, err := asMap(v, field)
	if err != nil {
		return nil, err
	}
	if err := known(m, field, "port", "endPort", "protocol"); err != nil {
		return nil, err
	}
	ps := portSpec{field: field}
	if pv, ok := m["port"]; ok {
		n, err := asInt(pv, join(field, "port"), true)
		switch s, isStr := pv.(string); {
		case err == nil:
			if n < 0 || n > 65535 {
				return nil, fieldErr(join(field, "port"), fmt.Errorf("port %d is not in 0-65535", n))
			}
			ps.port = uint16(n)
		case isStr:
			if errs := validation.IsValidPortName(s); len(errs) > 0 {
				return nil, fieldErr(join(field, "port"), fmt.Errorf("port %q is neither a number nor a port name: %s", s, strings.Join(errs, "; ")))
			}
			ps.name = s
		default:
			return nil, err
		}
	}
	if ev, ok := m["endPort"]; ok {
		n, err := asInt(ev, join(field, "endPort"), false)
		if err != nil {
			return nil, err
		}
		if ps.name != "" || ps.port == 0 || n < int64(ps.port) || n > 65535 {
			return nil, fieldErr(join(field, "endPort"), fmt.Errorf("endPort %d needs a numeric port at most it (port %q)", n, fmt.Sprint(m["port"])))
		}
		ps.end = uint16(n)
	}
	protos := []uint8{ProtoTCP, ProtoUDP, ProtoSCTP}
	if pv, ok := m["protocol"]; ok {
		s, err := asString(pv, join(field, "protocol"))
		if err != nil {
			return nil, err
		}
		switch strings.ToUpper(s) {
		case "TCP":
			protos = []uint8{ProtoTCP}
		case "UDP":
			protos = []uint8{ProtoUDP}
		case "SCTP":
			protos = []uint8{ProtoSCTP}
		case "ICMP":
			protos = []uint8{ProtoICMP}
		case "ICMPV6":
			protos = []uint8{ProtoICMPv6}
		case "VRRP":
			protos = []uint8{ProtoVRRP}
		case "IGMP":
			protos = []uint8{ProtoIGMP}
		case "ANY", "":
		default:
			return nil, fieldErr(join(field, "protocol"), fmt.Errorf("unknown protocol %q", s))
		}
		if len(protos) == 1 && protos[0] != ProtoTCP && protos[0] != ProtoUDP && protos[0] != ProtoSCTP && (ps.port != 0 || ps.name != "") {
			return nil, fieldErr(join(field, "port"), fmt.Errorf("protocol %s has no ports", s))
		}
	}
	out := make([]portSpec, len(protos))
	for i, pr := range protos {
		out[i] = ps
		out[i].proto = pr
	}
	return out, nil
}

// l7Rules parses L7Rules (http, kafka, dns, l7proto with l7), checking
// their field names, and notes them as not enforced.
func (p *parsed) l7Rules(v any, field string) error {
	m, err := asMap(v, field)
	if err != nil {
		return err
	}
	if err := known(m, field, "http", "kafka", "dns", "l7proto", "l7"); err != nil {
		return err
	}
	fields := map[string][]string{
		"http":  {"method", "path", "host", "headers", "headerMatches"},
		"kafka": {"role", "apiKey", "apiVersion", "clientID", "topic"},
		"dns":   {"matchName", "matchPattern"},
		"l7":    nil, // free-form key/value pairs of the l7proto parser
	}
	var kinds []string
	n := 0
	for _, k := range []string{"http", "kafka", "dns", "l7"} {
		lv, ok := m[k]
		if !ok {
			continue
		}
		items, err := asList(lv, join(field, k))
		if err != nil {
			return err
		}
		for i, it := range items {
			f := index(join(field, k), i)
			im, err := asMap(it, f)
			if err != nil {
				return err
			}
			if fields[k] != nil {
				if err := known(im, f, fields[k]...); err != nil {
					return err
				}
			}
		}
		kinds = append(kinds, k)
		n += max(len(items), 1)
	}
	if pv, ok := m["l7proto"]; ok {
		if _, err := asString(pv, join(field, "l7proto")); err != nil {
			return err
		}
	}
	if n == 0 {
		return nil
	}
	p.notes = append(p.notes, Note{Policy: p.ref, Field: field, Rules: n,
		What: fmt.Sprintf("%d L7 rule(s) (%s) not enforced: the datapath allows the port at L4", n, strings.Join(kinds, ", "))})
	return nil
}
