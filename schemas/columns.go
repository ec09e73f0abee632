package schemas

import (
	"strconv"
	"unsafe"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	flowpb "github.com/cilium/cilium/api/v1/flow"
)

// Column buffers of the Encoder. Each is a plain Go slice the encoder appends
// to row by row and hands to Arrow without copying (memory.NewBufferBytes);
// they are truncated, not freed, between Encode calls so a steady stream of
// batches allocates nothing for them.

// validity is an Arrow validity bitmap built one row at a time.
type validity struct {
	bits  []byte
	n     int
	nulls int
}

func (v *validity) reset() { v.bits, v.n, v.nulls = v.bits[:0], 0, 0 }

func (v *validity) add(ok bool) {
	if v.n&7 == 0 {
		v.bits = append(v.bits, 0)
	}
	if ok {
		v.bits[v.n>>3] |= 1 << (v.n & 7)
	} else {
		v.nulls++
	}
	v.n++
}

// buffer returns the bitmap as an Arrow buffer, nil when no row is null.
func (v *validity) buffer() *memory.Buffer {
	if v.nulls == 0 {
		return nil
	}
	return memory.NewBufferBytes(v.bits)
}

func bytesOf[T any](s []T) []byte {
	if len(s) == 0 {
		return nil
	}
	var z T
	return unsafe.Slice((*byte)(unsafe.Pointer(&s[0])), len(s)*int(unsafe.Sizeof(z)))
}

func fixedData[T any](dt arrow.DataType, vals []T, v *validity) arrow.ArrayData {
	var vb *memory.Buffer
	nulls := 0
	if v != nil {
		vb, nulls = v.buffer(), v.nulls
	}
	return array.NewData(dt, len(vals), []*memory.Buffer{vb, memory.NewBufferBytes(bytesOf(vals))}, nil, nulls, 0)
}

// strCol is a utf8 (or binary) column: offsets plus concatenated values.
type strCol struct {
	offs []int32
	data []byte
}

func (c *strCol) reset() { c.offs, c.data = append(c.offs[:0], 0), c.data[:0] }

func (c *strCol) add(s string) {
	c.data = append(c.data, s...)
	if len(c.data) > 1<<31-1 {
		panic(errColumnTooBig)
	}
	c.offs = append(c.offs, int32(len(c.data)))
}

func (c *strCol) arrayData(dt arrow.DataType, v *validity) arrow.ArrayData {
	var vb *memory.Buffer
	nulls := 0
	if v != nil {
		vb, nulls = v.buffer(), v.nulls
	}
	return array.NewData(dt, len(c.offs)-1, []*memory.Buffer{vb, memory.NewBufferBytes(bytesOf(c.offs)), memory.NewBufferBytes(c.data)}, nil, nulls, 0)
}

// strListCol is a list<utf8> column; a nil slice is a null list, an empty
// non-nil slice an empty list.
type strListCol struct {
	offs  []int32
	valid validity
	child strCol
}

func (c *strListCol) reset() {
	c.offs = append(c.offs[:0], 0)
	c.valid.reset()
	c.child.reset()
}

func (c *strListCol) add(s []string) {
	for _, x := range s {
		c.child.add(x)
	}
	c.offs = append(c.offs, int32(len(c.child.offs)-1))
	c.valid.add(s != nil)
}

func (c *strListCol) arrayData() arrow.ArrayData {
	child := c.child.arrayData(arrow.BinaryTypes.String, nil)
	defer child.Release()
	return array.NewData(strList, len(c.offs)-1, []*memory.Buffer{c.valid.buffer(), memory.NewBufferBytes(bytesOf(c.offs))}, []arrow.ArrayData{child}, c.valid.nulls, 0)
}

// histCol is the latency_hist column: list<struct<bucket int16, count int64>>.
type histCol struct {
	offs    []int32
	valid   validity
	buckets []int16
	counts  []int64
}

func (c *histCol) reset() {
	c.offs = append(c.offs[:0], 0)
	c.valid.reset()
	c.buckets, c.counts = c.buckets[:0], c.counts[:0]
}

func (c *histCol) add(h Histogram) {
	for _, b := range h {
		c.buckets = append(c.buckets, b.Index)
		c.counts = append(c.counts, b.Count)
	}
	c.offs = append(c.offs, int32(len(c.buckets)))
	c.valid.add(h != nil)
}

func (c *histCol) arrayData() arrow.ArrayData {
	b := fixedData(arrow.PrimitiveTypes.Int16, c.buckets, nil)
	defer b.Release()
	n := fixedData(arrow.PrimitiveTypes.Int64, c.counts, nil)
	defer n.Release()
	st := array.NewData(histEntry, len(c.buckets), []*memory.Buffer{nil}, []arrow.ArrayData{b, n}, 0, 0)
	defer st.Release()
	return array.NewData(histType, len(c.offs)-1, []*memory.Buffer{c.valid.buffer(), memory.NewBufferBytes(bytesOf(c.offs))}, []arrow.ArrayData{st}, c.valid.nulls, 0)
}

// enumCol is a dictionary<int16, utf8> column holding enum names. The
// dictionary holds the names of the values present in the batch, in order of
// first appearance.
type enumCol struct {
	idx   []int16
	small [256]int16 // value → dictionary index + 1, for values 0..255
	big   map[int32]int16
	nums  []int32 // dictionary entries, as numbers
	name  func(int32) string
	dict  strCol
	// full is set when a batch holds more distinct values than an int16
	// index can address; Encode then fails.
	full bool
}

func newEnumCol(name func(int32) string) *enumCol {
	return &enumCol{name: name, big: map[int32]int16{}}
}

func (c *enumCol) reset() {
	for _, v := range c.nums {
		if uint32(v) < 256 {
			c.small[v] = 0
		}
	}
	clear(c.big)
	c.nums, c.idx, c.full = c.nums[:0], c.idx[:0], false
}

func (c *enumCol) add(v int32) {
	if uint32(v) < 256 {
		if j := c.small[v]; j != 0 {
			c.idx = append(c.idx, j-1)
			return
		}
		c.small[v] = int16(len(c.nums) + 1)
	} else if j, ok := c.big[v]; ok {
		c.idx = append(c.idx, j)
		return
	} else {
		c.big[v] = int16(len(c.nums))
	}
	if len(c.nums) >= 1<<15-1 {
		c.full = true
		c.idx = append(c.idx, 0)
		return
	}
	c.idx = append(c.idx, int16(len(c.nums)))
	c.nums = append(c.nums, v)
}

func (c *enumCol) arrayData() arrow.ArrayData {
	c.dict.reset()
	for _, v := range c.nums {
		c.dict.add(c.name(v))
	}
	dict := c.dict.arrayData(arrow.BinaryTypes.String, nil)
	defer dict.Release()
	return array.NewDataWithDictionary(enumType, len(c.idx), []*memory.Buffer{nil, memory.NewBufferBytes(bytesOf(c.idx))}, 0, 0, dict.(*array.Data))
}

// Enum names. A value without a name is written as its decimal number, so
// any int32 round-trips.

func enumName(names map[int32]string) func(int32) string {
	return func(v int32) string {
		if s, ok := names[v]; ok {
			return s
		}
		return strconv.FormatInt(int64(v), 10)
	}
}

func enumParse(values map[string]int32, s string) (int32, bool) {
	if v, ok := values[s]; ok {
		return v, true
	}
	v, err := strconv.ParseInt(s, 10, 32)
	return int32(v), err == nil
}

var l7ProtocolNames = map[int32]string{0: "", 1: "http", 2: "dns", 3: "kafka"}
var l7ProtocolValues = map[string]int32{"": 0, "http": 1, "dns": 2, "kafka": 3}

// enumNameMaps lists, per dictionary column, the names and values maps.
func enumMaps(col int) (map[int32]string, map[string]int32) {
	switch col {
	case colVerdict:
		return flowpb.Verdict_name, flowpb.Verdict_value
	case colDropReason:
		return flowpb.DropReason_name, flowpb.DropReason_value
	case colDirection:
		return flowpb.TrafficDirection_name, flowpb.TrafficDirection_value
	case colObsPoint:
		return flowpb.TraceObservationPoint_name, flowpb.TraceObservationPoint_value
	case colIPVersion:
		return flowpb.IPVersion_name, flowpb.IPVersion_value
	case colL7Type:
		return flowpb.L7FlowType_name, flowpb.L7FlowType_value
	case colL7Protocol:
		return l7ProtocolNames, l7ProtocolValues
	}
	return nil, nil
}
