//go:build linux

package bpf

import (
	"net/netip"
	"testing"

	"github.com/cilium/ebpf"
)

const tcActShot = 2

// verdictOf runs one packet and returns the program's verdict: pass
// (TCX_NEXT) or drop (TC_ACT_SHOT); anything else fails the test.
func verdictOf(t *testing.T, prog *ebpf.Program, pkt []byte) (pass bool) {
	t.Helper()
	ret, err := prog.Run(&ebpf.RunOptions{Data: pkt})
	if err != nil {
		t.Fatalf("prog run: %v", err)
	}
	switch ret {
	case tcxNext:
		return true
	case tcActShot:
		return false
	}
	t.Fatalf("program returned %#x, want TCX_NEXT or TC_ACT_SHOT", ret)
	return false
}

// policyFixture is a loaded program whose interface 1 (the one
// BPF_PROG_TEST_RUN's packets arrive on) is the pod 10.0.0.1 (endpoint 5,
// identity 1001), with an ipcache that knows 10.0.0.2 (identity 1000),
// 10.0.0.4 (identity 3000) and 192.0.2.0/24 (a CIDR identity).
func policyFixture(t *testing.T) (*bpfObjects, *PolicyMaps) {
	t.Helper()
	objs := loadTest(t, loadOptions{ringBufSize: 1 << 16, maxFlows: 64})
	m := newPolicyMaps(objs)
	if err := m.SetIPCache(map[netip.Prefix]IPCacheEntry{
		netip.MustParsePrefix("10.0.0.1/32"):  {Identity: 1001},
		netip.MustParsePrefix("10.0.0.2/32"):  {Identity: 1000},
		netip.MustParsePrefix("10.0.0.4/32"):  {Identity: 3000},
		netip.MustParsePrefix("10.0.0.6/32"):  {Identity: 3000, CIDR: 1<<24 + 2}, // a pod inside a policy's ipBlock
		netip.MustParsePrefix("192.0.2.0/24"): {Identity: 1<<24 + 1},
	}); err != nil {
		t.Fatal(err)
	}
	return objs, m
}

func TestPolicyIsEnforcedByTheProgramThatObserves(t *testing.T) {
	ep := Endpoint{IfIndex: 1, ID: 5, Identity: 1001, Enforce: [2]bool{true, true}, DenyID: [2]uint32{98, 99}}
	rules := []Rule{
		{Direction: Egress, Peer: 1000, Proto: 6, Port: 80, PortBits: 16, PolicyID: 7},
		{Direction: Egress, Peer: 1<<24 + 1, PolicyID: 8},                                      // L3: anything to the CIDR
		{Direction: Egress, Peer: 1<<24 + 2, Proto: 6, Port: 5432, PortBits: 16, PolicyID: 12}, // the ipBlock holding 10.0.0.6
		{Direction: Egress, Peer: 9, Proto: 17, Port: 53, PortBits: 16, PolicyID: 13},          // world-ipv4, DNS
		{Direction: Ingress, Peer: 1000, Proto: 6, Port: 8000, PortBits: 10, PolicyID: 9},      // 8000-8063
		{Direction: Ingress, Peer: 0, Proto: 17, Port: 53, PortBits: 16, PolicyID: 10},         // any peer, UDP 53
		{Direction: Ingress, Peer: 1000, Proto: 132, Port: 80, PortBits: 16, PolicyID: 14},     // SCTP 80
		{Direction: Ingress, Peer: 3000, Proto: 17, Port: 0, PortBits: 0, Deny: true, PolicyID: 11},
	}
	out := func(dst string, dport uint16, flags uint8) []byte {
		return ipv4("10.0.0.1", dst, tcp(40000, dport, flags, 0))
	}
	in := func(src string, dport uint16, proto uint8) []byte {
		if proto == 17 || proto == 132 {
			return ipv4(src, "10.0.0.1", l4{proto: proto, sport: 5555, dport: dport, payload: 20})
		}
		return ipv4(src, "10.0.0.1", tcp(5555, dport, syn, 0))
	}
	cases := []struct {
		name     string
		prog     func(*bpfObjects) *ebpf.Program
		pkt      []byte
		pass     bool
		policyID uint32
		peer     uint32
	}{
		{"egress to an allowed identity and port passes", ingressProg, out("10.0.0.2", 80, syn), true, 7, 1000},
		{"egress to the allowed identity on another port is dropped with the endpoint's egress deny id", ingressProg, out("10.0.0.2", 81, syn), false, 99, 1000},
		{"egress to an address the ipcache does not know is the world's, and dropped", ingressProg, out("10.0.0.3", 80, syn), false, 99, IdentityWorld},
		{"egress to the CIDR identity passes on any port (an L3 rule)", ingressProg, out("192.0.2.9", 4444, syn), true, 8, 1<<24 + 1},
		{"ingress from the allowed identity inside the port prefix passes", egressProg, in("10.0.0.2", 8050, 6), true, 9, 1000},
		{"ingress at the prefix's last port passes", egressProg, in("10.0.0.2", 8063, 6), true, 9, 1000},
		{"ingress just past the prefix is dropped", egressProg, in("10.0.0.2", 8064, 6), false, 98, 1000},
		{"egress to a pod inside an ipBlock matches the block's CIDR identity", ingressProg, out("10.0.0.6", 5432, syn), true, 12, 3000},
		{"egress to the world matches a world-ipv4 rule", ingressProg, ipv4("10.0.0.1", "198.51.100.1", l4{proto: 17, sport: 40000, dport: 53, payload: 20}), true, 13, IdentityWorld},
		{"ingress UDP 53 from any peer passes", egressProg, in("10.0.0.2", 53, 17), true, 10, 1000},
		{"ingress SCTP to the allowed port passes: SCTP has ports too", egressProg, in("10.0.0.2", 80, 132), true, 14, 1000},
		{"ingress SCTP to another port is dropped", egressProg, in("10.0.0.2", 81, 132), false, 98, 1000},
		{"ingress TCP to the SCTP rule's port is dropped: SCTP is not TCP", egressProg, in("10.0.0.2", 80, 6), false, 98, 1000},
		{"a wider deny rule wins over a narrower any-peer allow", egressProg, in("10.0.0.4", 53, 17), false, 11, 3000},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			objs, m := policyFixture(t)
			if err := m.SetEndpoint(ep, rules); err != nil {
				t.Fatal(err)
			}
			if _, err := m.Commit(); err != nil {
				t.Fatal(err)
			}
			if got := verdictOf(t, tc.prog(objs), tc.pkt); got != tc.pass {
				t.Fatalf("passed %v, want %v", got, tc.pass)
			}
			// Again: the flow's verdict holds without a second decision.
			if got := verdictOf(t, tc.prog(objs), tc.pkt); got != tc.pass {
				t.Fatalf("second packet passed %v, want %v", got, tc.pass)
			}
			flows := flowsIn(t, objs)
			if len(flows) != 1 {
				t.Fatalf("%d flows, want 1", len(flows))
			}
			for _, st := range flows {
				want := VerdictForwarded
				if !tc.pass {
					want = VerdictDropped
				}
				if st.Verdict != want || st.PolicyId != tc.policyID || st.PeerIdentity != tc.peer {
					t.Errorf("flow verdict %d policy %d peer %d, want %d, %d, %d", st.Verdict, st.PolicyId, st.PeerIdentity, want, tc.policyID, tc.peer)
				}
				if !tc.pass && (st.DropReason != DropReasonPolicyDeny || st.Packets[0] != 1 || st.Flags&uint32(bpfFlowFlagFLOW_CONTINUED) == 0) {
					t.Errorf("denied flow: reason %d, %d packets left after its drop event, flags %#x; want POLICY_DENIED, 1, CONTINUED", st.DropReason, st.Packets[0], st.Flags)
				}
			}
			evs := drain(t, objs)
			if tc.pass && len(evs) != 0 {
				t.Errorf("events %+v for an allowed flow, want none", evs)
			}
			if !tc.pass && (len(evs) != 1 || evs[0].Kind != EventFlowDrop || evs[0].Verdict != VerdictDropped ||
				evs[0].DropReason != DropReasonPolicyDeny || evs[0].PacketsFwd != 1 || evs[0].Continued) {
				t.Errorf("events %+v, want one drop event of the first packet", evs)
			}
		})
	}
}

func ingressProg(o *bpfObjects) *ebpf.Program { return o.FlowIngress }
func egressProg(o *bpfObjects) *ebpf.Program  { return o.FlowEgress }

// A connection allowed, then denied by a policy change, then allowed again:
// replies pass while it is allowed, each change is decided on the next
// packet, and the counts under each verdict are reported apart.
func TestPolicyChangeDecidesEstablishedFlowsAgain(t *testing.T) {
	objs, m := policyFixture(t)
	ep := Endpoint{IfIndex: 1, ID: 5, Identity: 1001, Enforce: [2]bool{false, true}, DenyID: [2]uint32{0, 99}}
	allow := []Rule{{Direction: Egress, Peer: 1000, Proto: 6, Port: 80, PortBits: 16, PolicyID: 7}}
	set := func(rules []Rule) {
		t.Helper()
		if err := m.SetEndpoint(ep, rules); err != nil {
			t.Fatal(err)
		}
		if _, err := m.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	out := func(flags uint8, n int) bool {
		return verdictOf(t, objs.FlowIngress, ipv4("10.0.0.1", "10.0.0.2", tcp(40000, 80, flags, n)))
	}
	back := func(flags uint8, n int) bool {
		return verdictOf(t, objs.FlowEgress, ipv4("10.0.0.2", "10.0.0.1", tcp(80, 40000, flags, n)))
	}
	set(allow)
	if !out(syn, 0) || !back(syn|ack, 0) || !out(ack, 10) || !back(ack, 20) {
		t.Fatal("an allowed connection or its replies were dropped")
	}
	set(nil) // the egress allow is gone: the endpoint is default deny
	if out(ack, 30) || back(ack, 40) {
		t.Fatal("packets of a connection the new policy denies passed")
	}
	set(allow)
	if !out(ack, 50) {
		t.Fatal("the connection is allowed again but its packet was dropped")
	}
	evs := drain(t, objs)
	if len(evs) != 2 || evs[0].Kind != EventFlowVerdict || evs[1].Kind != EventFlowVerdict {
		t.Fatalf("events %+v, want two verdict changes", evs)
	}
	if e := evs[0]; e.Verdict != VerdictForwarded || e.PacketsFwd != 2 || e.PacketsRev != 2 || e.PolicyID != 7 || e.Continued {
		t.Errorf("first verdict event %+v, want the 2/2 forwarded packets, allowed by 7, the flow's first record", e)
	}
	if e := evs[1]; e.Verdict != VerdictDropped || e.DropReason != DropReasonPolicyDeny || e.PacketsFwd != 1 || e.PacketsRev != 1 || e.PolicyID != 99 || !e.Continued {
		t.Errorf("second verdict event %+v, want the 1/1 dropped packets, denied by 99, continued", e)
	}
	for _, st := range flowsIn(t, objs) {
		if st.Verdict != VerdictForwarded || st.Packets != [2]uint64{1, 0} {
			t.Errorf("flow now %d with %v packets, want forwarded with the last packet", st.Verdict, st.Packets)
		}
	}
}

// SetEndpoint writes a changed policy under the other generation and
// removes the old one: the map holds exactly the rules in force.
func TestSetEndpointSwitchesGenerationsAndLeavesNoStaleRule(t *testing.T) {
	objs, m := policyFixture(t)
	ep := Endpoint{IfIndex: 1, ID: 5, Identity: 1001, Enforce: [2]bool{true, false}}
	count := func() map[uint32]int {
		t.Helper()
		n := map[uint32]int{}
		var k bpfPolicyKey
		var v bpfPolicyValue
		for _, mp := range []*ebpf.Map{objs.PolicyAllow, objs.PolicyDeny} {
			it := mp.Iterate()
			for it.Next(&k, &v) {
				n[k.Slot&1]++
			}
			if err := it.Err(); err != nil {
				t.Fatal(err)
			}
		}
		return n
	}
	first := []Rule{{Direction: Ingress, Peer: 1000, Proto: 6, Port: 0, PortBits: 6, PolicyID: 1}, {Direction: Ingress, Peer: 1000, Proto: 6, Port: 1024, PortBits: 16, PolicyID: 1},
		{Direction: Ingress, Peer: 7, Deny: true, PolicyID: 2}}
	if err := m.SetEndpoint(ep, first); err != nil {
		t.Fatal(err)
	}
	if got := count(); got[0] != 3 || got[1] != 0 {
		t.Fatalf("entries by generation %v, want 3 in generation 0", got)
	}
	if err := m.SetEndpoint(ep, []Rule{{Direction: Ingress, Peer: 1000, Proto: 6, Port: 443, PortBits: 16, PolicyID: 2}}); err != nil {
		t.Fatal(err)
	}
	if got := count(); got[0] != 0 || got[1] != 1 {
		t.Fatalf("entries by generation %v after a change, want 1 in generation 1 only", got)
	}
	var v bpfEndpoint
	if err := objs.Endpoints.Lookup(uint32(1), &v); err != nil || v.Gen != 1 || v.HasDeny != [2]uint8{} {
		t.Fatalf("endpoint %+v, %v: want generation 1 and no deny rules", v, err)
	}
	if err := m.RemoveEndpoint(1); err != nil {
		t.Fatal(err)
	}
	if got := count(); len(got) != 0 || len(m.Endpoints()) != 0 {
		t.Fatalf("entries %v and endpoints %v after removing the endpoint, want none", got, m.Endpoints())
	}
}

// KernelMemory reads every policy map's memlock: the LPM tries grow with
// their entries (an empty one is 0), the preallocated endpoints hash does
// not.
func TestKernelMemoryFollowsTheEntries(t *testing.T) {
	_, m := policyFixture(t)
	before, err := m.KernelMemory()
	if err != nil {
		t.Fatal(err)
	}
	if len(before) != 4 || before["endpoints"] == 0 {
		t.Fatalf("kernel memory %v, want the four maps, endpoints preallocated", before)
	}
	var rules []Rule
	for i := range 100 {
		rules = append(rules, Rule{Direction: Ingress, Peer: uint32(2000 + i), Proto: 6, Port: 80, PortBits: 16, PolicyID: 1})
	}
	if err := m.SetEndpoint(Endpoint{IfIndex: 7, ID: 9, Identity: 1001, Enforce: [2]bool{true, false}}, rules); err != nil {
		t.Fatal(err)
	}
	after, err := m.KernelMemory()
	if err != nil {
		t.Fatal(err)
	}
	if after["policy_allow"] <= before["policy_allow"] || after["policy_deny"] != before["policy_deny"] || after["endpoints"] != before["endpoints"] {
		t.Errorf("kernel memory %v after 100 allow rules, was %v: want policy_allow larger, the others unchanged", after, before)
	}
}
