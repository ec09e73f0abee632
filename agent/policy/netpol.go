package policy

import (
	"fmt"
	"net/netip"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/flowbus/flowbus/agent/identity"
)

// parsed is a policy object in the compiler's terms: parts (a Cilium
// object has one per spec), each a subject and per direction whether it
// puts the subject in default deny and what it allows and denies.
type parsed struct {
	ref      PolicyRef
	parts    []part
	notes    []Note
	prefixes []netip.Prefix // every CIDR its peers name, excepts included
	err      *Error
	// On error: the endpoints and directions that fail closed.
	failScope []*selector
	failDirs  [2]bool
}

type part struct {
	subject *selector
	dirs    [2]partDir
}

type partDir struct {
	enforce     bool
	allow, deny []rule
}

// rule allows (or denies) traffic from or to its peers on its ports.
type rule struct {
	field   string
	anyPeer bool
	peers   []peer
	ports   []portSpec // nil: every protocol and port
}

// peer is one peer of a rule: identities by selector, a CIDR with
// exceptions, or reserved identities (with every pod's for the cluster
// entity).
type peer struct {
	sel      *selector
	cidr     netip.Prefix // valid for a CIDR peer
	except   []netip.Prefix
	reserved []identity.ID
	cluster  bool
}

// portSpec is one protocol and port range, or named port, of a rule.
type portSpec struct {
	field     string
	proto     uint8  // 0: any protocol
	port, end uint16 // port 0: every port; end 0: port alone
	name      string // a named port, resolved on the pods' container ports
}

func (p *parsed) fail(field string, err error) *parsed {
	if fe, ok := err.(*fieldError); ok {
		field, err = fe.field, fe.err
	}
	p.err = &Error{Policy: p.ref, Field: field, Err: err}
	return p
}

// parseNetworkPolicy reads a Kubernetes NetworkPolicy.
func parseNetworkPolicy(np *networkingv1.NetworkPolicy) *parsed {
	p := &parsed{ref: PolicyRef{Kind: KindNetworkPolicy, Namespace: np.Namespace, Name: np.Name}}
	ns := np.Namespace
	p.failScope = []*selector{(&selector{}).and(inNamespace(ns))}
	p.failDirs = [2]bool{true, true}

	var dirs [2]bool
	if len(np.Spec.PolicyTypes) == 0 {
		dirs[Ingress], dirs[Egress] = true, len(np.Spec.Egress) > 0
	}
	for i, t := range np.Spec.PolicyTypes {
		switch t {
		case networkingv1.PolicyTypeIngress:
			dirs[Ingress] = true
		case networkingv1.PolicyTypeEgress:
			dirs[Egress] = true
		default:
			return p.fail(fmt.Sprintf("spec.policyTypes[%d]", i), fmt.Errorf("unknown policy type %q (want Ingress or Egress)", t))
		}
	}
	p.failDirs = dirs
	subject, err := k8sSelector(&np.Spec.PodSelector, "spec.podSelector", "")
	if err != nil {
		return p.fail("spec.podSelector", err)
	}
	pt := part{subject: subject.and(inNamespace(ns))}
	p.failScope = []*selector{pt.subject}
	for i, r := range np.Spec.Ingress {
		rl, err := p.netpolRule(r.From, r.Ports, fmt.Sprintf("spec.ingress[%d]", i), "from")
		if err != nil {
			return p.fail("", err)
		}
		if dirs[Ingress] {
			pt.dirs[Ingress].allow = append(pt.dirs[Ingress].allow, rl)
		}
	}
	for i, r := range np.Spec.Egress {
		rl, err := p.netpolRule(r.To, r.Ports, fmt.Sprintf("spec.egress[%d]", i), "to")
		if err != nil {
			return p.fail("", err)
		}
		if dirs[Egress] {
			pt.dirs[Egress].allow = append(pt.dirs[Egress].allow, rl)
		}
	}
	pt.dirs[Ingress].enforce, pt.dirs[Egress].enforce = dirs[Ingress], dirs[Egress]
	p.parts = []part{pt}
	return p
}

// netpolRule reads one ingress or egress rule: an empty or absent peer
// list allows every peer, an empty or absent port list every port.
func (p *parsed) netpolRule(peers []networkingv1.NetworkPolicyPeer, ports []networkingv1.NetworkPolicyPort, field, peersName string) (rule, error) {
	r := rule{field: field, anyPeer: len(peers) == 0}
	ns := p.ref.Namespace
	for i, pe := range peers {
		f := fmt.Sprintf("%s.%s[%d]", field, peersName, i)
		switch {
		case pe.IPBlock != nil:
			if pe.PodSelector != nil || pe.NamespaceSelector != nil {
				return r, fieldErr(f, fmt.Errorf("ipBlock cannot be combined with podSelector or namespaceSelector"))
			}
			cidr, except, err := ipBlock(pe.IPBlock.CIDR, pe.IPBlock.Except, f+".ipBlock", true)
			if err != nil {
				return r, err
			}
			r.peers = append(r.peers, peer{cidr: cidr, except: except})
			p.prefixes = append(append(p.prefixes, cidr), except...)
		case pe.PodSelector == nil && pe.NamespaceSelector == nil:
			return r, fieldErr(f, fmt.Errorf("a peer needs podSelector, namespaceSelector or ipBlock"))
		default:
			sel := &selector{}
			if pe.PodSelector != nil {
				ps, err := k8sSelector(pe.PodSelector, f+".podSelector", "")
				if err != nil {
					return r, err
				}
				sel = ps
			}
			if pe.NamespaceSelector == nil {
				sel = sel.and(inNamespace(ns))
			} else {
				nss, err := k8sSelector(pe.NamespaceSelector, f+".namespaceSelector", identity.LabelNamespaceLabels)
				if err != nil {
					return r, err
				}
				sel = sel.and(append(nss.reqs, anyNamespace())...)
			}
			r.peers = append(r.peers, peer{sel: sel})
		}
	}
	for i, pp := range ports {
		f := fmt.Sprintf("%s.ports[%d]", field, i)
		ps := portSpec{field: f, proto: ProtoTCP}
		if pp.Protocol != nil {
			switch *pp.Protocol {
			case corev1.ProtocolTCP:
			case corev1.ProtocolUDP:
				ps.proto = ProtoUDP
			case corev1.ProtocolSCTP:
				ps.proto = ProtoSCTP
			default:
				return r, fieldErr(f+".protocol", fmt.Errorf("unknown protocol %q (want TCP, UDP or SCTP)", *pp.Protocol))
			}
		}
		switch {
		case pp.Port == nil:
			if pp.EndPort != nil {
				return r, fieldErr(f+".endPort", fmt.Errorf("endPort needs port"))
			}
		case pp.Port.Type == intstr.String:
			if errs := validation.IsValidPortName(pp.Port.StrVal); len(errs) > 0 {
				return r, fieldErr(f+".port", fmt.Errorf("named port %q: %s", pp.Port.StrVal, strings.Join(errs, "; ")))
			}
			if pp.EndPort != nil {
				return r, fieldErr(f+".endPort", fmt.Errorf("endPort needs a numeric port, not the named port %q", pp.Port.StrVal))
			}
			ps.name = pp.Port.StrVal
		default:
			if pp.Port.IntVal < 1 || pp.Port.IntVal > 65535 {
				return r, fieldErr(f+".port", fmt.Errorf("port %d is not in 1-65535", pp.Port.IntVal))
			}
			ps.port = uint16(pp.Port.IntVal)
			if pp.EndPort != nil {
				if *pp.EndPort < pp.Port.IntVal || *pp.EndPort > 65535 {
					return r, fieldErr(f+".endPort", fmt.Errorf("endPort %d is not in %d-65535", *pp.EndPort, pp.Port.IntVal))
				}
				ps.end = uint16(*pp.EndPort)
			}
		}
		r.ports = append(r.ports, ps)
	}
	return r, nil
}

// ipBlock parses a CIDR and its exceptions. A CIDR may have host bits set
// (Kubernetes accepts "10.1.2.3/8"); each exception must lie inside it
// (strictly, if strict).
func ipBlock(cidr string, except []string, field string, strict bool) (netip.Prefix, []netip.Prefix, error) {
	c, err := parseCIDR(cidr)
	if err != nil {
		return c, nil, fieldErr(field+".cidr", err)
	}
	var out []netip.Prefix
	for i, e := range except {
		x, err := parseCIDR(e)
		if err != nil {
			return c, nil, fieldErr(fmt.Sprintf("%s.except[%d]", field, i), err)
		}
		inside := x.Addr().Is4() == c.Addr().Is4() && c.Contains(x.Addr()) && x.Bits() >= c.Bits()
		if !inside || (strict && x.Bits() == c.Bits()) {
			return c, nil, fieldErr(fmt.Sprintf("%s.except[%d]", field, i), fmt.Errorf("%s is not inside %s", e, cidr))
		}
		out = append(out, x)
	}
	return c, out, nil
}

// parseCIDR parses a prefix, or an address as its host prefix, masked.
func parseCIDR(s string) (netip.Prefix, error) {
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("malformed CIDR %q", s)
		}
		a = a.Unmap()
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("malformed CIDR %q", s)
	}
	if p.Addr().Is4In6() {
		if p.Bits() < 96 {
			return netip.Prefix{}, fmt.Errorf("malformed CIDR %q", s)
		}
		p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
	}
	return p.Masked(), nil
}
