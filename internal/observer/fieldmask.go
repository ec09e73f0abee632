package observer

import (
	"fmt"
	"strings"

	flowpb "github.com/cilium/cilium/api/v1/flow"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
)

// fieldMask is a parsed GetFlowsRequest.field_mask: a tree of Flow field
// names. A leaf copies the whole field; an inner node copies the named
// sub-fields of a message field. The hubble CLI sends one by default in its
// non-JSON modes to save bandwidth.
type fieldMask map[protoreflect.Name]fieldMask

func newFieldMask(fm *fieldmaskpb.FieldMask) (fieldMask, error) {
	if len(fm.GetPaths()) == 0 {
		return nil, nil
	}
	if !fm.IsValid(&flowpb.Flow{}) {
		return nil, fmt.Errorf("field_mask: invalid paths %v for flow.Flow", fm.GetPaths())
	}
	root := fieldMask{}
	for _, p := range fm.GetPaths() {
		node := root
		parts := strings.Split(p, ".")
		for i, part := range parts {
			name := protoreflect.Name(part)
			child, ok := node[name]
			if ok && child == nil {
				break // a shorter path already copies the whole field
			}
			if i == len(parts)-1 {
				node[name] = nil
				break
			}
			if !ok {
				child = fieldMask{}
				node[name] = child
			}
			node = child
		}
	}
	return root, nil
}

// copy sets in dst the fields of src selected by m.
func (m fieldMask) copy(dst, src protoreflect.Message) {
	fields := src.Descriptor().Fields()
	for name, sub := range m {
		fd := fields.ByName(name)
		if fd == nil || !src.Has(fd) {
			continue
		}
		if sub == nil || fd.IsList() || fd.IsMap() || fd.Message() == nil {
			dst.Set(fd, src.Get(fd))
			continue
		}
		sub.copy(dst.Mutable(fd).Message(), src.Get(fd).Message())
	}
}

// apply returns f reduced to the masked fields (f itself without a mask).
func (m fieldMask) apply(f *flowpb.Flow) *flowpb.Flow {
	if m == nil {
		return f
	}
	out := &flowpb.Flow{}
	m.copy(out.ProtoReflect(), f.ProtoReflect())
	return out
}
