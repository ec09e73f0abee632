package netpoltest

import (
	"net/netip"
	"strings"
	"testing"
)

func TestScenariosLoad(t *testing.T) {
	ss, err := Scenarios()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, s := range ss {
		if names[s.Name] {
			t.Errorf("%s: name %q used twice", s.File, s.Name)
		}
		names[s.Name] = true
		if !strings.HasSuffix(s.Name, " [Feature:NetworkPolicy]") {
			t.Errorf("%s: name %q is not upstream's", s.File, s.Name)
		}
	}
	if len(ss) != 48 {
		t.Errorf("%d scenarios, want the 48 of kubernetes v1.36.4", len(ss))
	}
}

func TestParseRejectsWhatItDoesNotKnow(t *testing.T) {
	for _, c := range []struct{ name, yaml, err string }{
		{"unknown key", "name: n\npods: [x/a]\nprotocols: [TCP]\nports: [80]\nsteps: [{probes: []}]\nextra: 1\n", "extra"},
		{"pod outside the model", "name: n\npods: [w/a]\nprotocols: [TCP]\nports: [80]\nsteps: [{}]\n", "w/a"},
		{"probe with no server", "name: n\npods: [x/a]\nprotocols: [TCP]\nports: [80]\nsteps: [{probes: [{port: 81, protocol: TCP}]}]\n", "no server"},
		{"bad pattern", "name: n\npods: [x/a]\nprotocols: [TCP]\nports: [80]\nsteps: [{probes: [{port: 80, protocol: TCP, expect: [{from: a, to: '*'}]}]}]\n", "patterns"},
	} {
		if _, err := Parse([]byte(c.yaml)); err == nil || !strings.Contains(err.Error(), c.err) {
			t.Errorf("%s: err %v, want one mentioning %q", c.name, err, c.err)
		}
	}
}

func TestExpectedAppliesOverridesInOrder(t *testing.T) {
	pods := []string{"x/a", "x/b", "y/a"}
	p := Probe{Default: true, Expect: []Expect{{From: "*", To: "x/*", Connected: false}, {From: "x/b", To: "x/a", Connected: true}}}
	want := "-\tx/a\tx/b\ty/a\nx/a\tX\tX\t.\nx/b\t.\tX\t.\ny/a\tX\tX\t."
	if got := p.Expected(pods).Format(pods); got != want {
		t.Errorf("table:\n%s\nwant\n%s", got, want)
	}
}

func TestPlaceholdersAreTheReplaysAddresses(t *testing.T) {
	s := &Scenario{Pods: []string{"x/a", "x/b"}, Protocols: []string{"TCP"}, Ports: []uint16{80}}
	st := NewState(s, map[string]netip.Addr{"x/a": netip.MustParseAddr("10.1.2.3"), "x/b": netip.MustParseAddr("172.20.0.9")})
	m := Manifest{"kind": "NetworkPolicy", "metadata": map[string]any{"name": "p", "namespace": "x"},
		"spec": map[string]any{"podSelector": map[string]any{}, "egress": []any{map[string]any{"to": []any{
			map[string]any{"ipBlock": map[string]any{"cidr": "${large:x/b}", "except": []any{"${host:x/b}"}}}}}}}}
	if err := st.Apply(&Step{Create: []Manifest{m}}); err != nil {
		t.Fatal(err)
	}
	nps, err := st.NetworkPolicies()
	if err != nil {
		t.Fatal(err)
	}
	b := nps[0].Spec.Egress[0].To[0].IPBlock
	if b.CIDR != "160.0.0.0/4" || b.Except[0] != "172.20.0.9/32" {
		t.Errorf("ipBlock %+v, want 160.0.0.0/4 except 172.20.0.9/32", b)
	}
	if err := st.Apply(&Step{Create: []Manifest{m}}); err == nil {
		t.Error("creating a policy twice succeeded")
	}
	snap, err := st.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if p := snap.Pods[1]; p.Labels["pod"] != "b" || p.Ports[0].Name != "serve-80-tcp" || p.IPs[0].String() != "172.20.0.9" {
		t.Errorf("pod x/b %+v", p)
	}
}
