package policy

import (
	"fmt"
	"slices"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/flowbus/flowbus/agent/cluster"
	"github.com/flowbus/flowbus/agent/identity"
	"github.com/flowbus/flowbus/schemas/hubble"
)

// parseCiliumPolicy reads a CiliumNetworkPolicy or
// CiliumClusterwideNetworkPolicy: its spec and each of its specs is one
// rule (Cilium's api.Rule) with its own endpointSelector.
func parseCiliumPolicy(cp *cluster.CiliumPolicy) *parsed {
	p := &parsed{ref: PolicyRef{Kind: KindCiliumNetworkPolicy, Namespace: cp.Namespace, Name: cp.Name}}
	if cp.Clusterwide {
		p.ref = PolicyRef{Kind: KindCiliumClusterwideNetworkPolicy, Name: cp.Name}
	}
	type spec struct {
		field string
		m     map[string]any
	}
	var specs []spec
	if cp.Spec != nil {
		specs = append(specs, spec{"spec", cp.Spec})
	}
	for i, s := range cp.Specs {
		specs = append(specs, spec{index("specs", i), s})
	}
	// Until the subjects are known, a failure closes the whole namespace
	// (the whole cluster for a clusterwide policy), in the directions the
	// specs name.
	scope := (&selector{}).and(anyNamespace())
	if !cp.Clusterwide {
		scope = (&selector{}).and(inNamespace(cp.Namespace))
	}
	p.failScope = []*selector{scope}
	for _, s := range specs {
		for _, k := range []string{"ingress", "ingressDeny"} {
			if _, ok := s.m[k]; ok {
				p.failDirs[Ingress] = true
			}
		}
		for _, k := range []string{"egress", "egressDeny"} {
			if _, ok := s.m[k]; ok {
				p.failDirs[Egress] = true
			}
		}
	}
	if !p.failDirs[Ingress] && !p.failDirs[Egress] {
		p.failDirs = [2]bool{true, true}
	}
	if len(specs) == 0 {
		return p.fail("spec", fmt.Errorf("the policy has neither spec nor specs"))
	}
	var subjects []*selector
	for _, s := range specs {
		pt, err := p.ciliumRule(s.m, s.field)
		if err != nil {
			return p.fail("", err)
		}
		p.parts = append(p.parts, pt)
		subjects = append(subjects, pt.subject)
	}
	p.failScope = subjects
	return p
}

// ciliumRule reads one api.Rule.
func (p *parsed) ciliumRule(m map[string]any, field string) (part, error) {
	var pt part
	if err := known(m, field, "endpointSelector", "nodeSelector", "ingress", "ingressDeny", "egress", "egressDeny",
		"labels", "enableDefaultDeny", "description", "log"); err != nil {
		return pt, err
	}
	if err := unsupported(m, field, "nodeSelector"); err != nil {
		return pt, err
	}
	es, ok := m["endpointSelector"]
	if !ok {
		return pt, fieldErr(join(field, "endpointSelector"), fmt.Errorf("endpointSelector is required"))
	}
	subject, err := p.ciliumSelector(es, join(field, "endpointSelector"))
	if err != nil {
		return pt, err
	}
	if p.ref.Namespace != "" {
		// The subject is always in the policy's namespace, whatever the
		// selector says of namespaces (Cilium overrides it too).
		subject.reqs = slices.DeleteFunc(subject.reqs, func(r requirement) bool {
			return r.key == identity.LabelNamespace && r.source != srcReserved
		})
		subject = subject.and(inNamespace(p.ref.Namespace))
	}
	pt.subject = subject
	defaultDeny := [2]*bool{}
	if v, ok := m["enableDefaultDeny"]; ok {
		f := join(field, "enableDefaultDeny")
		dd, err := asMap(v, f)
		if err != nil {
			return pt, err
		}
		if err := known(dd, f, "ingress", "egress"); err != nil {
			return pt, err
		}
		for d, k := range []string{"ingress", "egress"} {
			if v, ok := dd[k]; ok {
				b, err := asBool(v, join(f, k))
				if err != nil {
					return pt, err
				}
				defaultDeny[d] = &b
			}
		}
	}
	if v, ok := m["labels"]; ok {
		if _, err := asList(v, join(field, "labels")); err != nil {
			return pt, err
		}
	}
	for _, sec := range []struct {
		key  string
		dir  Direction
		deny bool
	}{{"ingress", Ingress, false}, {"ingressDeny", Ingress, true}, {"egress", Egress, false}, {"egressDeny", Egress, true}} {
		v, ok := m[sec.key]
		if !ok {
			continue
		}
		f := join(field, sec.key)
		rules, err := asList(v, f)
		if err != nil {
			return pt, err
		}
		for i, rv := range rules {
			r, err := p.ciliumPeerRule(rv, index(f, i), sec.dir, sec.deny)
			if err != nil {
				return pt, err
			}
			d := &pt.dirs[sec.dir]
			if sec.deny {
				d.deny = append(d.deny, r)
			} else {
				d.allow = append(d.allow, r)
			}
		}
	}
	for d := range pt.dirs {
		has := len(pt.dirs[d].allow)+len(pt.dirs[d].deny) > 0
		pt.dirs[d].enforce = has && (defaultDeny[d] == nil || *defaultDeny[d])
	}
	return pt, nil
}

// ciliumPeerRule reads one IngressRule, IngressDenyRule, EgressRule or
// EgressDenyRule. As in Cilium, a rule names peers of one kind only; an
// explicitly empty peer list selects nothing; no peers at all means every
// peer, and a rule with neither peers nor ports allows nothing.
func (p *parsed) ciliumPeerRule(v any, field string, dir Direction, deny bool) (rule, error) {
	r := rule{field: field}
	m, err := asMap(v, field)
	if err != nil {
		return r, err
	}
	from := "from"
	if dir == Egress {
		from = "to"
	}
	endpoints, cidrs, cidrSets, entities := from+"Endpoints", from+"CIDR", from+"CIDRSet", from+"Entities"
	keys := []string{endpoints, cidrs, cidrSets, entities, "toPorts", "icmps", from + "Requires", from + "Groups", from + "Nodes"}
	unsup := []string{"icmps", from + "Requires", from + "Groups", from + "Nodes"}
	if dir == Egress {
		keys = append(keys, "toServices", "toFQDNs")
		unsup = append(unsup, "toServices", "toFQDNs")
	}
	if !deny {
		keys = append(keys, "authentication")
		unsup = append(unsup, "authentication")
	}
	if err := known(m, field, keys...); err != nil {
		return r, err
	}
	if err := unsupported(m, field, unsup...); err != nil {
		return r, err
	}
	var l3 []string
	for _, k := range []string{endpoints, cidrs, cidrSets, entities} {
		if l, err := asList(m[k], k); err == nil && len(l) > 0 {
			l3 = append(l3, k)
		}
	}
	if len(l3) > 1 {
		return r, fieldErr(field, fmt.Errorf("combining %s and %s is not supported (as in Cilium)", l3[0], l3[1]))
	}
	l3Given := false
	for _, k := range []string{endpoints, cidrs, cidrSets, entities} {
		v, ok := m[k]
		if !ok {
			continue
		}
		l3Given = true
		f := join(field, k)
		items, err := asList(v, f)
		if err != nil {
			return r, err
		}
		for i, it := range items {
			pe, err := p.ciliumPeer(k, it, index(f, i), endpoints, cidrs, cidrSets)
			if err != nil {
				return r, err
			}
			if pe == nil { // the entity all
				r.anyPeer = true
				continue
			}
			r.peers = append(r.peers, *pe)
		}
	}
	portsGiven := false
	if v, ok := m["toPorts"]; ok {
		f := join(field, "toPorts")
		prs, err := asList(v, f)
		if err != nil {
			return r, err
		}
		if len(prs) > 0 {
			portsGiven = true
			r.ports = []portSpec{} // only what the entries list, maybe nothing
		}
		for i, prv := range prs {
			ps, err := p.ciliumPortRule(prv, index(f, i), deny)
			if err != nil {
				return r, err
			}
			r.ports = append(r.ports, ps...)
		}
	}
	if !l3Given {
		r.anyPeer = portsGiven // with neither peers nor ports a rule allows nothing
	}
	return r, nil
}

// ciliumPeer reads one peer of kind k; nil means every peer.
func (p *parsed) ciliumPeer(k string, v any, field, endpoints, cidrs, cidrSets string) (*peer, error) {
	switch k {
	case endpoints:
		sel, err := p.ciliumSelector(v, field)
		if err != nil {
			return nil, err
		}
		return &peer{sel: p.peerScope(sel)}, nil
	case cidrs:
		s, err := asString(v, field)
		if err != nil {
			return nil, err
		}
		c, err := parseCIDR(s)
		if err != nil {
			return nil, fieldErr(field, err)
		}
		p.prefixes = append(p.prefixes, c)
		return &peer{cidr: c}, nil
	case cidrSets:
		cm, err := asMap(v, field)
		if err != nil {
			return nil, err
		}
		if err := known(cm, field, "cidr", "except", "cidrGroupRef", "cidrGroupSelector"); err != nil {
			return nil, err
		}
		if err := unsupported(cm, field, "cidrGroupRef", "cidrGroupSelector"); err != nil {
			return nil, err
		}
		s, err := asString(cm["cidr"], join(field, "cidr"))
		if err != nil {
			return nil, err
		}
		exl, err := asList(cm["except"], join(field, "except"))
		if err != nil {
			return nil, err
		}
		var except []string
		for i, e := range exl {
			es, err := asString(e, index(join(field, "except"), i))
			if err != nil {
				return nil, err
			}
			except = append(except, es)
		}
		c, ex, err := ipBlock(s, except, field, false)
		if err != nil {
			return nil, err
		}
		p.prefixes = append(append(p.prefixes, c), ex...)
		return &peer{cidr: c, except: ex}, nil
	}
	name, err := asString(v, field)
	if err != nil {
		return nil, err
	}
	switch name {
	case "all":
		return nil, nil
	case "cluster", "cluster-mesh":
		return &peer{cluster: true, reserved: clusterReserved}, nil
	case "none":
		return &peer{}, nil
	}
	if ids, ok := entities[name]; ok {
		return &peer{reserved: ids}, nil
	}
	return nil, fieldErr(field, fmt.Errorf("unknown entity %q", name))
}

// entities are the reserved identities each of Cilium's entities selects
// (pkg/policy/api/entity.go); world also matches every CIDR identity,
// through the kernel's world lookup (see the package doc).
var entities = map[string][]identity.ID{
	"world":          {hubble.IdentityWorld, hubble.IdentityWorldIPv4, hubble.IdentityWorldIPv6},
	"world-ipv4":     {hubble.IdentityWorldIPv4},
	"world-ipv6":     {hubble.IdentityWorldIPv6},
	"host":           {hubble.IdentityHost},
	"remote-node":    {hubble.IdentityRemoteNode},
	"health":         {hubble.IdentityHealth},
	"init":           {hubble.IdentityInit},
	"ingress":        {hubble.IdentityIngress},
	"unmanaged":      {hubble.IdentityUnmanaged},
	"kube-apiserver": {hubble.IdentityKubeAPIServer},
}

// clusterReserved are the reserved identities of the cluster entity, which
// also selects every pod.
var clusterReserved = []identity.ID{hubble.IdentityHost, hubble.IdentityUnmanaged, hubble.IdentityHealth,
	hubble.IdentityInit, hubble.IdentityRemoteNode, hubble.IdentityKubeAPIServer, hubble.IdentityIngress}

// peerScope limits a peer selector as Cilium does (getEndpointSelector):
// one that names a reserved label is left alone; one that names no
// namespace is limited to the policy's namespace (unless it selects by
// namespace labels), or for a clusterwide policy to pods.
func (p *parsed) peerScope(sel *selector) *selector {
	if sel.hasSource(srcReserved) || sel.hasKey(identity.LabelNamespace) {
		return sel
	}
	if p.ref.Namespace == "" {
		return sel.and(anyNamespace())
	}
	if sel.hasKeyPrefix(identity.LabelNamespaceLabels) {
		return sel
	}
	return sel.and(inNamespace(p.ref.Namespace))
}

// ciliumSelector reads an EndpointSelector: matchLabels and
// matchExpressions whose keys may carry a source ("k8s:app",
// "reserved:host", "any:app"; none means any).
func (p *parsed) ciliumSelector(v any, field string) (*selector, error) {
	m, err := asMap(v, field)
	if err != nil {
		return nil, err
	}
	if err := known(m, field, "matchLabels", "matchExpressions"); err != nil {
		return nil, err
	}
	s := &selector{}
	ml, err := asMap(m["matchLabels"], join(field, "matchLabels"))
	if err != nil {
		return nil, err
	}
	for _, k := range sortedKeys(ml) {
		f := join(field, "matchLabels")
		val, err := asString(ml[k], f+"."+k)
		if err != nil {
			return nil, err
		}
		r, err := expression(stripSource(k), string(metav1.LabelSelectorOpIn), []string{val}, f)
		if err != nil {
			return nil, err
		}
		if r.source, err = source(k, f); err != nil {
			return nil, err
		}
		s.reqs = append(s.reqs, r)
	}
	mes, err := asList(m["matchExpressions"], join(field, "matchExpressions"))
	if err != nil {
		return nil, err
	}
	for i, mev := range mes {
		f := index(join(field, "matchExpressions"), i)
		me, err := asMap(mev, f)
		if err != nil {
			return nil, err
		}
		if err := known(me, f, "key", "operator", "values"); err != nil {
			return nil, err
		}
		key, err := asString(me["key"], join(f, "key"))
		if err != nil {
			return nil, err
		}
		op, err := asString(me["operator"], join(f, "operator"))
		if err != nil {
			return nil, err
		}
		vl, err := asList(me["values"], join(f, "values"))
		if err != nil {
			return nil, err
		}
		var vals []string
		for j, vv := range vl {
			s, err := asString(vv, index(join(f, "values"), j))
			if err != nil {
				return nil, err
			}
			vals = append(vals, s)
		}
		r, err := expression(stripSource(key), op, vals, f)
		if err != nil {
			return nil, err
		}
		if r.source, err = source(key, join(f, "key")); err != nil {
			return nil, err
		}
		s.reqs = append(s.reqs, r)
	}
	s.canonical()
	return s, nil
}

func stripSource(k string) string {
	if _, rest, ok := strings.Cut(k, ":"); ok {
		return rest
	}
	return k
}

func source(k, field string) (string, error) {
	src, _, ok := strings.Cut(k, ":")
	switch {
	case !ok || src == srcAny:
		return srcAny, nil
	case src == srcK8s || src == srcReserved:
		return src, nil
	}
	return "", fieldErr(field, fmt.Errorf("label source %q of %q is not supported (want k8s, reserved or any)", src, k))
}
