//go:build linux

package bpf

import (
	"reflect"
	"testing"

	"github.com/cilium/ebpf/btf"
)

// TestBoundaryStructsMatchBTF checks that every struct crossing the kernel
// boundary has the same size and member offsets in Go as in the compiled
// object's BTF, so a stale bpf2go output or a hand edit cannot shift a field.
func TestBoundaryStructsMatchBTF(t *testing.T) {
	spec, err := loadBpf()
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		goType reflect.Type
	}{
		{"flow_key", reflect.TypeFor[bpfFlowKey]()},
		{"flow_key4", reflect.TypeFor[bpfFlowKey4]()},
		{"flow_stats", reflect.TypeFor[bpfFlowStats]()},
		{"flow_event", reflect.TypeFor[bpfFlowEvent]()},
		{"ended", reflect.TypeFor[bpfEnded]()},
		{"ipcache_key", reflect.TypeFor[bpfIpcacheKey]()},
		{"ipcache_value", reflect.TypeFor[bpfIpcacheValue]()},
		{"endpoint", reflect.TypeFor[bpfEndpoint]()},
		{"policy_key", reflect.TypeFor[bpfPolicyKey]()},
		{"policy_value", reflect.TypeFor[bpfPolicyValue]()},
	}
	for _, tc := range cases {
		t.Run("struct "+tc.name+" has the same layout in Go and in BTF", func(t *testing.T) {
			var st *btf.Struct
			if err := spec.Types.TypeByName(tc.name, &st); err != nil {
				t.Fatalf("find %s in BTF: %v", tc.name, err)
			}
			if int(st.Size) != int(tc.goType.Size()) {
				t.Errorf("size: BTF %d, Go %d", st.Size, tc.goType.Size())
			}
			var goFields []reflect.StructField
			for i := range tc.goType.NumField() {
				if f := tc.goType.Field(i); f.Name != "_" {
					goFields = append(goFields, f)
				}
			}
			if len(goFields) != len(st.Members) {
				t.Fatalf("members: BTF %d, Go %d", len(st.Members), len(goFields))
			}
			for i, m := range st.Members {
				f := goFields[i]
				if uint32(m.Offset.Bytes()) != uint32(f.Offset) {
					t.Errorf("member %s: BTF offset %d, Go field %s offset %d", m.Name, m.Offset.Bytes(), f.Name, f.Offset)
				}
				size, err := btf.Sizeof(m.Type)
				if err != nil {
					t.Fatal(err)
				}
				if size != int(f.Type.Size()) {
					t.Errorf("member %s: BTF size %d, Go size %d", m.Name, size, f.Type.Size())
				}
			}
		})
	}
	// flow_key 44 + type, is_reply, ingress, pad 4 + flow_stats 88.
	if eventSize != 136 {
		t.Errorf("event size %d, want 136 (flow.h)", eventSize)
	}
}
