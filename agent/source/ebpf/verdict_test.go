//go:build linux

package ebpf

import (
	"net/netip"
	"reflect"
	"slices"
	"testing"

	flowpb "github.com/cilium/cilium/api/v1/flow"

	"github.com/flowbus/flowbus/agent/identity"
	"github.com/flowbus/flowbus/agent/policy"
	"github.com/flowbus/flowbus/bpf"
	"github.com/flowbus/flowbus/schemas"
	"github.com/flowbus/flowbus/schemas/hubble"
)

func TestMatchTypeNamesWhatARuleMatchesAsCilium(t *testing.T) {
	peer := identity.ID(70000)
	for _, tc := range []struct {
		key  policy.Key
		want uint32
		name string
	}{
		{policy.Key{Peer: peer}, 1, "L3-Only"},
		{policy.Key{Peer: peer, Proto: 6, Port: 8080, PortBits: 16}, 2, "L3-L4"},
		{policy.Key{Peer: peer, Proto: 6, Port: 8000, PortBits: 10}, 2, "L3-L4"}, // a port range
		{policy.Key{Proto: 17, Port: 53, PortBits: 16}, 3, "L4-Only"},
		{policy.Key{}, 4, "all"},
		{policy.Key{Peer: peer, Proto: 132}, 5, "L3-Proto"},
		{policy.Key{Proto: 6}, 6, "Proto-Only"},
	} {
		if got := matchType(tc.key); got != tc.want || hubble.PolicyMatchTypeName(got) != tc.name {
			t.Errorf("matchType(%+v) = %d (%s), want %d (%s)", tc.key, got, hubble.PolicyMatchTypeName(got), tc.want, tc.name)
		}
	}
}

func TestPolicyIDsLeaveTheirTopBitsToTheMatchType(t *testing.T) {
	d := newDatapath(nil, identity.Allocator{})
	refs := []policy.PolicyRef{{Kind: "NetworkPolicy", Namespace: "shop", Name: "allow-frontend"}}
	id := d.policyID(refs)
	if id == 0 || id > policyIDMask {
		t.Fatalf("policyID = %#x, want 1..%#x", id, policyIDMask)
	}
	withMatch := id | matchType(policy.Key{Proto: 6, Port: 80, PortBits: 16})<<policyMatchShift
	if got := d.policyNames(withMatch); !slices.Equal(got, []string{"NetworkPolicy:shop/allow-frontend"}) {
		t.Errorf("policyNames(%#x) = %v", withMatch, got)
	}
	if got := policyMatch(withMatch); got != 3 {
		t.Errorf("policyMatch(%#x) = %d, want 3 (L4-Only)", withMatch, got)
	}
}

func TestPolicyVerdictRepeatsAConnectionsFirstDecidedRecord(t *testing.T) {
	a, b := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2")
	d := newDatapath(nil, identity.Allocator{})
	id := d.policyID([]policy.PolicyRef{{Kind: "NetworkPolicy", Namespace: "shop", Name: "allow-web"}})
	ev := bpf.Event{Kind: bpf.EventFlowEnd, IPVersion: 4, Protocol: 6, Src: a, Dst: b, SrcPort: 40000, DstPort: 80, Ingress: true,
		TCPFlags: bpf.TCPFlagSYN | bpf.TCPFlagACK | bpf.TCPFlagFIN, FirstSeenNs: 1_000, LastSeenNs: 9_000,
		BytesFwd: 500, BytesRev: 900, PacketsFwd: 5, PacketsRev: 4, HandshakeNs: 70,
		Verdict: bpf.VerdictForwarded, PolicyID: id | 2<<policyMatchShift}
	var f schemas.Flow
	toFlow(&ev, "n1", nil, d.policyNames, &f)
	pv, ok := policyVerdict(&f, &ev)
	if !ok {
		t.Fatal("no policy verdict for a connection's first record decided by a policy")
	}
	want := f
	want.EventType, want.EventSubType, want.ObservationPoint = hubble.MsgTypePolicyVerdict, 0, flowpb.TraceObservationPoint_UNKNOWN_POINT
	want.PolicyMatchType, want.CountAs, want.IsReply = 2, schemas.CountNone, schemas.False
	want.TimeNs, want.LastSeenNs, want.LatencyNs = 1_000, 1_000, 0
	want.BytesFwd, want.BytesRev, want.PacketsFwd, want.PacketsRev = 0, 0, 0, 0
	want.TCPFlags = schemas.FlagSYN
	if !slices.Equal(pv.EgressAllowedBy, []string{"NetworkPolicy:shop/allow-web"}) || pv.Direction != flowpb.TrafficDirection_EGRESS ||
		pv.Verdict != flowpb.Verdict_FORWARDED {
		t.Errorf("verdict %v, direction %v, egress allowed by %v", pv.Verdict, pv.Direction, pv.EgressAllowedBy)
	}
	pv.EgressAllowedBy, want.EgressAllowedBy = nil, nil
	if !reflect.DeepEqual(pv, want) {
		t.Errorf("policy verdict\n%+v\nwant\n%+v", pv, want)
	}

	// A drop by the default deny (match none).
	drop := ev
	drop.Kind, drop.Verdict, drop.DropReason, drop.PolicyID = bpf.EventFlowDrop, bpf.VerdictDropped, bpf.DropReasonPolicyDeny, id
	toFlow(&drop, "n1", nil, d.policyNames, &f)
	if pv, ok := policyVerdict(&f, &drop); !ok || pv.Verdict != flowpb.Verdict_DROPPED || pv.PolicyMatchType != 0 ||
		pv.DropReason != flowpb.DropReason_POLICY_DENIED || !slices.Equal(pv.EgressDeniedBy, []string{"NetworkPolicy:shop/allow-web"}) {
		t.Errorf("drop: %v, %+v", ok, pv)
	}

	// None for what is not a connection's first decided record.
	for name, mod := range map[string]func(e *bpf.Event){
		"no policy":    func(e *bpf.Event) { e.PolicyID = 0 },
		"continued":    func(e *bpf.Event) { e.Continued = true },
		"mid-stream":   func(e *bpf.Event) { e.Midstream = true },
		"one packet":   func(e *bpf.Event) { e.Kind = bpf.EventPacket },
		"map full":     func(e *bpf.Event) { e.Kind = bpf.EventInsertFailed },
		"kernel drop":  func(e *bpf.Event) { e.Kind = bpf.EventKernelDrop },
		"a flow start": func(e *bpf.Event) { e.Kind = bpf.EventFlowStart },
	} {
		e := ev
		mod(&e)
		toFlow(&e, "n1", nil, d.policyNames, &f)
		if _, ok := policyVerdict(&f, &e); ok {
			t.Errorf("%s: a policy verdict", name)
		}
	}
}
