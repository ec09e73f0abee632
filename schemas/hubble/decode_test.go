package hubble

import (
	"net/netip"
	"reflect"
	"testing"

	flowpb "github.com/cilium/cilium/api/v1/flow"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/flowbus/flowbus/internal/flowtest"
	"github.com/flowbus/flowbus/schemas"
)

// viaProto is the reference DecodeFlow is held to: proto.Unmarshal, then
// FromProto and CountAs's extension test.
func viaProto(b []byte) (schemas.Flow, bool, error) {
	var p flowpb.Flow
	if err := proto.Unmarshal(b, &p); err != nil {
		return schemas.Flow{}, false, err
	}
	f, err := FromProto(&p)
	served := ServedByFlowbus(&p)
	return f, served, err
}

func checkDecode(t *testing.T, d *Decoder, b []byte) {
	t.Helper()
	want, wantServed, err := viaProto(b)
	if err != nil {
		t.Fatalf("the reference fails: %v", err)
	}
	var got schemas.Flow
	served, err := d.DecodeFlow(b, &got)
	if err != nil {
		t.Fatalf("DecodeFlow: %v", err)
	}
	if !reflect.DeepEqual(got, want) || served != wantServed {
		flowtest.DiffFlows(t, 0, &got, &want)
		t.Fatalf("DecodeFlow differs from FromProto (served by flowbus %v, want %v)", served, wantServed)
	}
}

// Every field of the flow record, set alone, decodes as FromProto reads it:
// a field FromProto learns to read fails here until DecodeFlow reads it too.
func TestDecodeFlowReadsEveryFieldAsFromProto(t *testing.T) {
	d := NewDecoder()
	for _, fd := range flowtest.Fields() {
		t.Run(fd.Name, func(t *testing.T) {
			var f schemas.Flow
			needs(&f, fd.Name)
			fd.Set(&f)
			b, err := proto.Marshal(ToProto(&f))
			if err != nil {
				t.Fatal(err)
			}
			checkDecode(t, d, b)
		})
	}
}

// Random flows of every shape, and Hubble's own output, decode as FromProto
// reads them, again and again with the same Decoder (its caches shared).
func TestDecodeFlowEqualsFromProto(t *testing.T) {
	d := NewDecoder()
	g := flowtest.NewGen(7)
	for i := range 3000 {
		f := g.Flow()
		p := ToProto(&f)
		if i%3 == 0 {
			p.Extensions = nil // as Hubble sends it
		}
		b, err := proto.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		checkDecode(t, d, b)
	}
	for _, f := range flowtest.Fleet(3, 500) {
		b, _ := proto.Marshal(ToProto(&f))
		checkDecode(t, d, b)
	}
	var p flowpb.Flow
	if err := protojson.Unmarshal([]byte(hubbleOutput), &p); err != nil {
		t.Fatal(err)
	}
	b, _ := proto.Marshal(&p)
	checkDecode(t, d, b)
}

// Protobuf's merge rules: a field repeated in the wire form (a message
// merged, a scalar overwritten, a oneof member replaced) decodes as
// proto.Unmarshal merges it.
func TestDecodeFlowMergesAsProtobuf(t *testing.T) {
	d := NewDecoder()
	parts := []*flowpb.Flow{
		{Source: &flowpb.Endpoint{Namespace: "a", Labels: []string{"k8s:app=x"}, Workloads: []*flowpb.Workload{{Name: "w1", Kind: "Deployment"}}},
			L4: &flowpb.Layer4{Protocol: &flowpb.Layer4_TCP{TCP: &flowpb.TCP{SourcePort: 1, Flags: &flowpb.TCPFlags{SYN: true}}}},
			L7: &flowpb.Layer7{Type: flowpb.L7FlowType_REQUEST, Record: &flowpb.Layer7_Http{Http: &flowpb.HTTP{Method: "GET", Headers: []*flowpb.HTTPHeader{{Key: "a", Value: "1"}}}}}},
		{Source: &flowpb.Endpoint{PodName: "p", Labels: []string{"k8s:team=y"}, Workloads: []*flowpb.Workload{{Name: "w2"}}},
			L4: &flowpb.Layer4{Protocol: &flowpb.Layer4_TCP{TCP: &flowpb.TCP{DestinationPort: 2, Flags: &flowpb.TCPFlags{ACK: true}}}},
			L7: &flowpb.Layer7{Record: &flowpb.Layer7_Http{Http: &flowpb.HTTP{Code: 200, Headers: []*flowpb.HTTPHeader{{Key: "b", Value: "2"}}}}}},
		{L4: &flowpb.Layer4{Protocol: &flowpb.Layer4_UDP{UDP: &flowpb.UDP{DestinationPort: 53}}},
			L7: &flowpb.Layer7{Record: &flowpb.Layer7_Dns{Dns: &flowpb.DNS{Query: "x.", Qtypes: []string{"A"}}}}, Verdict: flowpb.Verdict_DROPPED},
	}
	var b []byte
	for i, p := range parts {
		m, err := proto.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		b = append(b, m...)
		checkDecode(t, d, b) // after the first part, after two, after three
		if i == 1 {
			var f schemas.Flow
			d.DecodeFlow(b, &f)
			if f.Src.Namespace != "a" || f.Src.PodName != "p" || len(f.Src.Labels) != 2 || f.Src.Workload != "w1" || f.TCPFlags != schemas.FlagSYN|schemas.FlagACK {
				t.Errorf("merge of two parts: %+v", f)
			}
		}
	}
}

// Malformed input fails, wrapped in ErrBadProto, where the reference fails
// too; it never panics.
func TestDecodeFlowRejectsWhatProtobufRejects(t *testing.T) {
	good, _ := proto.Marshal(ToProto(&schemas.Flow{UUID: "u", NodeName: "n", SrcIP: netip.MustParseAddr("10.0.0.1")}))
	bad := map[string][]byte{
		"truncated":             good[:len(good)-1],
		"an invalid IP":         mustMarshal(&flowpb.Flow{IP: &flowpb.IP{Source: "10.0.0.300"}}),
		"invalid UTF-8":         append([]byte{0x5a, 0x02}, 0xff, 0xfe), // node_name
		"a time out of range":   mustMarshal(&flowpb.Flow{Time: &timestamppb.Timestamp{Seconds: 1 << 50}}),
		"a field number of 0":   {0x00, 0x01},
		"a malformed extension": mustMarshal(&flowpb.Flow{Extensions: mustAny(t, `{"flowbus.count":"x"}`)}),
	}
	d := NewDecoder()
	for name, b := range bad {
		t.Run(name, func(t *testing.T) {
			var f schemas.Flow
			if _, err := d.DecodeFlow(b, &f); err == nil {
				t.Fatal("no error")
			}
			if _, _, err := viaProto(b); err == nil {
				t.Fatal("the reference accepts it")
			}
		})
	}
}

func mustMarshal(p *flowpb.Flow) []byte {
	b, err := proto.Marshal(p)
	if err != nil {
		panic(err)
	}
	return b
}

func mustAny(t *testing.T, js string) *anypb.Any {
	var st structpb.Struct
	if err := protojson.Unmarshal([]byte(js), &st); err != nil {
		t.Fatal(err)
	}
	a, err := anypb.New(&st)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// FuzzDecodeFlow: any input decodes without a panic, and what the
// reference accepts decodes to what the reference gives.
func FuzzDecodeFlow(f *testing.F) {
	g := flowtest.NewGen(11)
	for range 20 {
		fl := g.Flow()
		b, _ := proto.Marshal(ToProto(&fl))
		f.Add(b)
	}
	d := NewDecoder()
	f.Fuzz(func(t *testing.T, b []byte) {
		var got schemas.Flow
		served, err := d.DecodeFlow(b, &got)
		want, wantServed, werr := viaProto(b)
		if werr != nil {
			return
		}
		if err != nil {
			t.Fatalf("DecodeFlow fails (%v) where the reference reads %+v", err, want)
		}
		if !reflect.DeepEqual(got, want) || served != wantServed {
			flowtest.DiffFlows(t, 0, &got, &want)
			t.Fatal("DecodeFlow differs from the reference")
		}
	})
}

// ListCache gives equal lists one backing array, never an unequal one, and
// keeps nothing of the caller's slice.
func TestListCacheSharesEqualListsOnly(t *testing.T) {
	var c ListCache
	buf := []string{"k8s:app=chat", "k8s:tier=web"}
	a := c.Shared(buf)
	buf[0] = "k8s:app=other" // the caller reuses its slice
	if a[0] != "k8s:app=chat" {
		t.Fatalf("Shared kept the caller's slice: %v", a)
	}
	b := c.Shared([]string{"k8s:app=chat", "k8s:tier=web"})
	if &a[0] != &b[0] {
		t.Error("an equal list got a new backing array")
	}
	// The separator keeps ["ab"] and ["a","b"] apart, and unequal lists
	// never share.
	x, y := c.Shared([]string{"ab"}), c.Shared([]string{"a", "b"})
	if len(x) != 1 || len(y) != 2 || x[0] != "ab" || y[1] != "b" {
		t.Errorf("Shared(ab) = %v, Shared(a, b) = %v", x, y)
	}
	if c.Shared(nil) != nil || c.Shared([]string{}) != nil {
		t.Error("an empty list is not nil")
	}
}
