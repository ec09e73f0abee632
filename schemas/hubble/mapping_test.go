package hubble

import (
	"fmt"
	"reflect"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/flowbus/flowbus/internal/flowtest"
	"github.com/flowbus/flowbus/schemas"
)

// The Hubble mapping is written by hand, column by column. These tests walk
// every field of schemas.Flow (Endpoint, Service and L7 included) by
// reflection, so that a column added to the declaration fails here until
// ToProto and FromProto carry it, where its hubble tag says.

// needs sets what a field needs to be carried at all: ports, flags and
// ICMP fields live in the l4 member of their protocol, L7 fields in the
// block of theirs.
func needs(f *schemas.Flow, field string) {
	switch {
	case field == "SrcPort" || field == "DstPort" || field == "TCPFlags":
		f.L4Protocol = 6
	case strings.HasPrefix(field, "ICMP"):
		f.L4Protocol = 1
	case strings.HasPrefix(field, "L7.HTTP"):
		f.L7.Protocol = schemas.L7HTTP
	case strings.HasPrefix(field, "L7.DNS"):
		f.L7.Protocol = schemas.L7DNS
	case strings.HasPrefix(field, "L7.Kafka"):
		f.L7.Protocol = schemas.L7Kafka
	}
}

// TestEveryFieldIsMapped: each field of Flow, set alone, changes what
// ToProto returns and comes back from FromProto.
func TestEveryFieldIsMapped(t *testing.T) {
	fields := flowtest.Fields()
	if len(fields) < 70 { // flow.v1 has 74

		t.Fatalf("only %d fields found", len(fields))
	}
	for _, fd := range fields {
		t.Run(fd.Name, func(t *testing.T) {
			var base schemas.Flow
			needs(&base, fd.Name)
			f := base
			fd.Set(&f)
			p := ToProto(&f)
			if proto.Equal(p, ToProto(&base)) {
				t.Fatalf("ToProto does not carry %s: the flow.Flow is the same with and without it", fd.Name)
			}
			got, err := FromProto(p)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, f) {
				t.Fatalf("FromProto(ToProto(f)) lost %s: got %v, want %v", fd.Name, fd.Value(&got), fd.Value(&f))
			}
		})
	}
}

// TestHubbleTagsNameTheFieldsThatCarryEachColumn: the hubble tag of every
// field (the Hubble column of schemas/README.md) names fields that exist
// in flow.Flow, and one of them holds the value when the field is set.
func TestHubbleTagsNameTheFieldsThatCarryEachColumn(t *testing.T) {
	for _, fd := range flowtest.Fields() {
		t.Run(fd.Name, func(t *testing.T) {
			var f schemas.Flow
			needs(&f, fd.Name)
			fd.Set(&f)
			p := ToProto(&f)
			var ext structpb.Struct
			if p.GetExtensions() != nil {
				if err := p.GetExtensions().UnmarshalTo(&ext); err != nil {
					t.Fatal(err)
				}
			}
			carried := false
			for _, h := range fd.Hubble {
				if key, ok := strings.CutPrefix(h, "ext:"); ok {
					if !strings.HasPrefix(key, "flowbus.") {
						t.Errorf("extension key %q is not flowbus.…", key)
					}
					_, set := ext.GetFields()[key]
					carried = carried || set
					continue
				}
				set, err := hubbleField(p.ProtoReflect(), h)
				if err != nil {
					t.Fatal(err)
				}
				carried = carried || set
			}
			if !carried {
				t.Fatalf("none of %q holds %s in %v", fd.Hubble, fd.Name, p)
			}
		})
	}
}

// hubbleField reports whether the field at path ("source.workloads[0].name",
// proto field names; [0] is a list's first element) is set in m, and fails
// when the path names a field flow.Flow does not have.
func hubbleField(m protoreflect.Message, path string) (bool, error) {
	md, set := m.Descriptor(), true
	segs := strings.Split(path, ".")
	for i, seg := range segs {
		name, index := strings.CutSuffix(seg, "[0]")
		fd := md.Fields().ByName(protoreflect.Name(name))
		if fd == nil {
			return false, fmt.Errorf("hubble tag %q: %s has no field %q", path, md.FullName(), name)
		}
		if index && !fd.IsList() || !index && fd.IsList() && i < len(segs)-1 {
			return false, fmt.Errorf("hubble tag %q: a list is indexed with [0] to reach into it, and only a list", path)
		}
		if set {
			if set = m.Has(fd); set {
				v := m.Get(fd)
				if index {
					v = v.List().Get(0)
				}
				if fd.Message() != nil && i < len(segs)-1 {
					m = v.Message()
				}
			}
		}
		if i < len(segs)-1 {
			if md = fd.Message(); md == nil {
				return false, fmt.Errorf("hubble tag %q: %q is not a message", path, name)
			}
		}
	}
	return set, nil
}
