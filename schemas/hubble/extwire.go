package hubble

import (
	"math"
	"strconv"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/flowbus/flowbus/schemas"
)

const structTypeURL = "type.googleapis.com/google.protobuf.Struct"

// structWriter appends the wire form of a google.protobuf.Struct
// (map<string, Value> fields = 1) one entry at a time. Callers add keys in
// sorted order so the bytes equal deterministic protobuf marshalling.
//
// Value: number_value = 2 (double), string_value = 3, struct_value = 5,
// list_value = 6; ListValue: repeated Value values = 1.
type structWriter struct {
	b   []byte
	val []byte // scratch: the Value being written
}

func (w *structWriter) entry(key string) { w.b = appendMapEntry(w.b, key, w.val) }

func appendStringValue(b []byte, s string) []byte {
	b = protowire.AppendTag(b, 3, protowire.BytesType)
	return protowire.AppendString(b, s)
}

func appendNumberValue(b []byte, f float64) []byte {
	b = protowire.AppendTag(b, 2, protowire.Fixed64Type)
	return protowire.AppendFixed64(b, math.Float64bits(f))
}

func (w *structWriter) str(key, s string) {
	w.val = appendStringValue(w.val[:0], s)
	w.entry(key)
}

func (w *structWriter) u64(key string, v uint64) {
	w.val = appendStringValue(w.val[:0], strconv.FormatUint(v, 10))
	w.entry(key)
}

func (w *structWriter) num(key string, f float64) {
	w.val = appendNumberValue(w.val[:0], f)
	w.entry(key)
}

// hist writes h as a list of {"bucket": number, "count": decimal string}.
func (w *structWriter) hist(key string, h schemas.Histogram) {
	var list, st, v []byte
	for _, bk := range h {
		// Struct{"bucket": number, "count": string}, keys sorted.
		st = st[:0]
		v = appendNumberValue(v[:0], float64(bk.Index))
		st = appendMapEntry(st, "bucket", v)
		v = appendStringValue(v[:0], strconv.FormatInt(bk.Count, 10))
		st = appendMapEntry(st, "count", v)
		// ListValue.values += Value{struct_value: st}
		list = protowire.AppendTag(list, 1, protowire.BytesType)
		list = protowire.AppendVarint(list, uint64(protowire.SizeTag(5)+protowire.SizeBytes(len(st))))
		list = protowire.AppendTag(list, 5, protowire.BytesType)
		list = protowire.AppendBytes(list, st)
	}
	w.val = protowire.AppendTag(w.val[:0], 6, protowire.BytesType)
	w.val = protowire.AppendBytes(w.val, list)
	w.entry(key)
}

// appendMapEntry appends one map<string, Value> entry (field 1 of Struct).
func appendMapEntry(b []byte, key string, val []byte) []byte {
	b = protowire.AppendTag(b, 1, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(protowire.SizeTag(1)+protowire.SizeBytes(len(key))+protowire.SizeTag(2)+protowire.SizeBytes(len(val))))
	b = protowire.AppendTag(b, 1, protowire.BytesType)
	b = protowire.AppendString(b, key)
	b = protowire.AppendTag(b, 2, protowire.BytesType)
	return protowire.AppendBytes(b, val)
}
