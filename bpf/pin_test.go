//go:build linux

package bpf

import "testing"

// ruleFromKey gives back the rule ruleKey wrote, its port masked to its
// prefix as the key holds it.
func TestRuleFromKeyInvertsRuleKey(t *testing.T) {
	for _, r := range []Rule{
		{Direction: Ingress, Peer: 300, Proto: 6, Port: 8080, PortBits: 16, PolicyID: 7},
		{Direction: Egress, Peer: 0, Proto: 17, Port: 53, PortBits: 16, Deny: true, PolicyID: 1<<28 | 9},
		{Direction: Ingress, Peer: 2, Proto: 6, Port: 0x1f90, PortBits: 12, PolicyID: 3},
		{Direction: Egress, Peer: 401, Proto: 6, PortBits: 0, PolicyID: 4},
		{Direction: Ingress, Peer: 401, PolicyID: 5},
	} {
		k := ruleKey(12, 1, r)
		if k.Slot != 12<<1|1 {
			t.Fatalf("slot %d", k.Slot)
		}
		got := ruleFromKey(&k, r.Deny, r.PolicyID)
		want := r
		if want.PortBits < 16 {
			want.Port &^= 0xffff >> want.PortBits
		}
		if got != want {
			t.Errorf("ruleFromKey(ruleKey(%+v)) = %+v, want %+v", r, got, want)
		}
	}
}
