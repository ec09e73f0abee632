package observer

import (
	"testing"

	flowpb "github.com/cilium/cilium/api/v1/flow"
	"github.com/cilium/cilium/pkg/identity"
	monitorAPI "github.com/cilium/cilium/pkg/monitor/api"
	"github.com/gopacket/gopacket/layers"

	"github.com/flowbus/flowbus/schemas/hubble"
)

// TestVocabularyIsCiliums checks every entry of schemas/hubble's vocabulary
// against the Cilium (v1.20) and gopacket code it copies, so that the one
// declaration flowbus keeps cannot drift from what Hubble prints, filters on
// and counts. (The rcode labels of Hubble's DNS metrics are unexported in
// cilium; hubble.DNSRCodeLabel is checked through agent/metrics' tests.)
func TestVocabularyIsCiliums(t *testing.T) {
	t.Run("message types have cilium's numbers and names", func(t *testing.T) {
		consts := map[int32]int{hubble.MsgTypeDrop: monitorAPI.MessageTypeDrop, hubble.MsgTypeDebug: monitorAPI.MessageTypeDebug,
			hubble.MsgTypeCapture: monitorAPI.MessageTypeCapture, hubble.MsgTypeTrace: monitorAPI.MessageTypeTrace,
			hubble.MsgTypePolicyVerdict: monitorAPI.MessageTypePolicyVerdict, hubble.MsgTypeTraceSock: monitorAPI.MessageTypeTraceSock,
			hubble.MsgTypeAccessLog: monitorAPI.MessageTypeAccessLog, hubble.MsgTypeAgent: monitorAPI.MessageTypeAgent}
		for ours, theirs := range consts {
			if int(ours) != theirs {
				t.Errorf("message type %d, cilium %d", ours, theirs)
			}
		}
		for name, want := range monitorAPI.MessageTypeNames {
			if got, ok := hubble.MessageType(name); !ok || int(got) != want {
				t.Errorf("MessageType(%q) = %d, %v; cilium %d", name, got, ok, want)
			}
		}
		if _, ok := hubble.MessageType("l8"); ok {
			t.Error(`MessageType("l8") is known`)
		}
	})
	t.Run("trace observation points have cilium's numbers and names", func(t *testing.T) {
		if hubble.TraceToLxc != monitorAPI.TraceToLxc || hubble.TraceFromLxc != monitorAPI.TraceFromLxc ||
			hubble.TraceToCrypto != monitorAPI.TraceToCrypto || hubble.TraceFromNetwork != monitorAPI.TraceFromNetwork {
			t.Error("trace observation point numbers differ from cilium's")
		}
		for sub := int32(-1); sub <= 300; sub++ {
			if got, want := hubble.TraceObservationPointName(sub), monitorAPI.TraceObservationPoint(uint8(sub)); got != want {
				t.Errorf("TraceObservationPointName(%d) = %q, cilium %q", sub, got, want)
			}
		}
		for sub, name := range monitorAPI.TraceObservationPoints {
			if got, ok := hubble.TraceObservationPointByName(name); !ok || got != int32(sub) {
				t.Errorf("TraceObservationPointByName(%q) = %d, %v; cilium %d", name, got, ok, sub)
			}
		}
	})
	t.Run("drop reasons have cilium's texts", func(t *testing.T) {
		for code := range 256 {
			if got, want := hubble.DropReasonText(uint8(code)), monitorAPI.DropReason(uint8(code)); got != want {
				t.Errorf("DropReasonText(%d) = %q, cilium %q", code, got, want)
			}
		}
	})
	t.Run("policy match types have cilium's names", func(t *testing.T) {
		for m := range uint32(10) {
			if got, want := hubble.PolicyMatchTypeName(m), monitorAPI.PolicyMatchType(m).String(); got != want {
				t.Errorf("PolicyMatchTypeName(%d) = %q, cilium %q", m, got, want)
			}
		}
	})
	t.Run("agent event sub-types are cilium's", func(t *testing.T) {
		for name, want := range map[string]monitorAPI.AgentNotification{"unspecified": monitorAPI.AgentNotifyUnspec,
			"message": monitorAPI.AgentNotifyGeneric, "agent-started": monitorAPI.AgentNotifyStart,
			"policy-updated": monitorAPI.AgentNotifyPolicyUpdated, "policy-deleted": monitorAPI.AgentNotifyPolicyDeleted,
			"endpoint-regenerate-success": monitorAPI.AgentNotifyEndpointRegenerateSuccess,
			"endpoint-regenerate-failure": monitorAPI.AgentNotifyEndpointRegenerateFail,
			"endpoint-created":            monitorAPI.AgentNotifyEndpointCreated, "endpoint-deleted": monitorAPI.AgentNotifyEndpointDeleted,
			"ipcache-upserted": monitorAPI.AgentNotifyIPCacheUpserted, "ipcache-deleted": monitorAPI.AgentNotifyIPCacheDeleted} {
			if got, ok := hubble.AgentEventSubType(name); !ok || got != int32(want) {
				t.Errorf("AgentEventSubType(%q) = %d, %v; cilium %d", name, got, ok, want)
			}
		}
	})
	t.Run("reserved identities have cilium's numbers and names", func(t *testing.T) {
		for id := range uint32(300) {
			nid := identity.NumericIdentity(id)
			got, ok := hubble.ReservedIdentityName(id)
			if ok != nid.IsReservedIdentity() || (ok && got != nid.String()) {
				t.Errorf("ReservedIdentityName(%d) = %q, %v; cilium %q, %v", id, got, ok, nid.String(), nid.IsReservedIdentity())
			}
			if ok {
				back, found := hubble.ReservedIdentity(got)
				want := identity.GetReservedID(got)
				if found != (want != identity.IdentityUnknown) || (found && back != want.Uint32()) {
					t.Errorf("ReservedIdentity(%q) = %d, %v; cilium %d", got, back, found, want)
				}
			}
		}
	})
	t.Run("socket translation points have hubble's names", func(t *testing.T) {
		for sub, want := range map[int32]string{int32(flowpb.SocketTranslationPoint_SOCK_XLATE_POINT_PRE_DIRECTION_FWD): "pre-xlate-fwd",
			int32(flowpb.SocketTranslationPoint_SOCK_XLATE_POINT_POST_DIRECTION_REV): "post-xlate-rev", 99: "SOCK_XLATE_POINT_UNKNOWN"} {
			if got := hubble.SocketTranslationPointName(sub); got != want {
				t.Errorf("SocketTranslationPointName(%d) = %q, want %q", sub, got, want)
			}
		}
	})
	t.Run("dns rcodes have gopacket's names", func(t *testing.T) {
		for rc := range uint32(600) {
			if got, want := hubble.DNSRCodeName(rc), layers.DNSResponseCode(uint8(rc)).String(); got != want {
				t.Errorf("DNSRCodeName(%d) = %q, gopacket %q", rc, got, want)
			}
		}
	})
	t.Run("icmp types and codes have gopacket's names", func(t *testing.T) {
		for typ := range 256 {
			for code := range 256 {
				v4 := layers.CreateICMPv4TypeCode(uint8(typ), uint8(code)).String()
				v6 := layers.CreateICMPv6TypeCode(uint8(typ), uint8(code)).String()
				if got := hubble.ICMPTypeName(false, uint8(typ), uint8(code)); got != v4 {
					t.Fatalf("ICMPTypeName(v4, %d, %d) = %q, gopacket %q", typ, code, got, v4)
				}
				if got := hubble.ICMPTypeName(true, uint8(typ), uint8(code)); got != v6 {
					t.Fatalf("ICMPTypeName(v6, %d, %d) = %q, gopacket %q", typ, code, got, v6)
				}
			}
		}
	})
}
