package flowcodec

import (
	"bytes"
	"fmt"
	"net/netip"
	"unsafe"

	"github.com/flowbus/flowbus/schemas"
)

// Column decoders: from the buffers of one record batch (rawArray, built by
// either reader) to Flows. Each validates what it reads (lengths, offsets,
// dictionary indices) so that bad input is an error, not a panic.

// corrupt reports a column whose buffers do not hold what its length claims.
func corrupt(col int, what string) error {
	return fmt.Errorf("%w: corrupt column %d: %s", ErrNotArrow, col, what)
}

func buf(d *rawArray, i int) []byte {
	if d.lazy != nil {
		return d.lazy.buffer(d.at + i)
	}
	if i >= len(d.bufs) {
		return nil
	}
	return d.bufs[i]
}

// fixedVals returns the n values of a fixed-width column.
func fixedVals[T any](d *rawArray, col, n int) ([]T, error) {
	var z T
	size := int(unsafe.Sizeof(z))
	b := buf(d, 1)
	if d.Len() != n || d.Offset() != 0 || len(b) < n*size {
		return nil, corrupt(col, "values buffer too short")
	}
	if n == 0 {
		return nil, nil
	}
	if uintptr(unsafe.Pointer(&b[0]))%unsafe.Alignof(z) != 0 {
		return nil, corrupt(col, "misaligned values buffer")
	}
	return unsafe.Slice((*T)(unsafe.Pointer(&b[0])), n), nil
}

// validBits returns the validity bitmap of a column, nil when no value is null.
func validBits(d *rawArray, col, n int) ([]byte, error) {
	if d.NullN() == 0 {
		return nil, nil
	}
	b := buf(d, 0)
	if len(b) < (n+7)/8 {
		return nil, corrupt(col, "validity bitmap too short")
	}
	return b, nil
}

func isValid(bits []byte, i int) bool { return bits == nil || bits[i>>3]&(1<<(i&7)) != 0 }

// strVals is a decoded utf8/binary column: every value is a substring of all.
type strVals struct {
	offs []int32
	base int32
	all  string
}

func (s *strVals) get(i int) string { return s.all[s.offs[i]-s.base : s.offs[i+1]-s.base] }

func decodeStrings(d *rawArray, col, n int) (strVals, error) {
	if d.Len() != n || d.Offset() != 0 {
		return strVals{}, corrupt(col, "length differs from the record batch")
	}
	ob := buf(d, 1)
	if n == 0 && len(ob) == 0 {
		return strVals{offs: []int32{0}}, nil
	}
	if len(ob) < 4*(n+1) || uintptr(unsafe.Pointer(&ob[0]))%4 != 0 {
		return strVals{}, corrupt(col, "offsets buffer too short or misaligned")
	}
	offs := unsafe.Slice((*int32)(unsafe.Pointer(&ob[0])), n+1)
	data := buf(d, 2)
	if offs[0] < 0 || int(offs[n]) > len(data) {
		return strVals{}, corrupt(col, "offsets out of range")
	}
	for i := 0; i < n; i++ {
		if offs[i] > offs[i+1] {
			return strVals{}, corrupt(col, "offsets decrease")
		}
	}
	return strVals{offs: offs, base: offs[0], all: string(data[offs[0]:offs[n]])}, nil
}

// dictIndex holds the indices of a dictionary column in their stored width.
type dictIndex struct {
	width int // bytes per index as stored
	mode  int // width, or 0 when every index is 0 (a column holding one value)
	i8    []int8
	i16   []int16
	i32   []int32
}

func (x *dictIndex) at(i int) int32 {
	switch x.mode {
	case 0:
		return 0
	case 1:
		return int32(x.i8[i])
	case 2:
		return int32(x.i16[i])
	}
	return x.i32[i]
}

// readIndices reads the n indices of dictionary array d and checks that each
// addresses one of m dictionary entries.
func readIndices(d *rawArray, col, n, m int) (dictIndex, error) {
	if d.NullN() != 0 {
		return dictIndex{}, corrupt(col, "null dictionary index")
	}
	x := dictIndex{width: d.width}
	var err error
	// One unsigned maximum, checked once, is cheaper than a branch (or a
	// signed min and max) per index: a negative index reads as 2^(w−1) or
	// more unsigned, past any entry an index of that width can address.
	var hi uint64
	lim := uint64(m)
	switch d.width {
	case 1:
		if x.i8, err = fixedVals[int8](d, col, n); err == nil {
			hi, lim = uint64(maxUnsigned[int8, uint8](x.i8)), min(lim, 1<<7)
		}
	case 2:
		if x.i16, err = fixedVals[int16](d, col, n); err == nil {
			hi, lim = uint64(maxUnsigned[int16, uint16](x.i16)), min(lim, 1<<15)
		}
	case 4:
		if x.i32, err = fixedVals[int32](d, col, n); err == nil {
			hi, lim = uint64(maxUnsigned[int32, uint32](x.i32)), min(lim, 1<<31)
		}
	default:
		return x, corrupt(col, "dictionary index type is not int8, int16 or int32")
	}
	if err != nil {
		return x, err
	}
	if n > 0 && hi >= lim {
		return x, corrupt(col, "dictionary index out of range")
	}
	// A column with one value (a message's destination, most optional
	// fields) is read without touching its indices.
	x.mode = x.width
	if hi == 0 {
		x.mode = 0
	}
	return x, nil
}

// maxUnsigned is the largest of v read as unsigned, 0 for none: four
// independent maxima, so that the loop is not one dependency chain.
func maxUnsigned[S int8 | int16 | int32, U uint8 | uint16 | uint32](v []S) U {
	var a, b, c, d U
	i := 0
	for ; i+4 <= len(v); i += 4 {
		a, b = max(a, U(v[i])), max(b, U(v[i+1]))
		c, d = max(c, U(v[i+2])), max(d, U(v[i+3]))
	}
	for ; i < len(v); i++ {
		a = max(a, U(v[i]))
	}
	return max(a, b, c, d)
}

// dictVals is a decoded dictionary<intN, utf8> column: row i is vals[ix.at(i)].
type dictVals struct {
	ix   dictIndex
	vals []string
}

func (d *dictVals) get(i int) string { return d.vals[d.ix.at(i)] }

func decodeDict(d *rawArray, col, n int) (dictVals, error) {
	dict := d.Dictionary()
	if dict == nil {
		return dictVals{}, corrupt(col, "dictionary missing")
	}
	words, err := decodeStrings(dict, col, dict.Len())
	if err != nil {
		return dictVals{}, err
	}
	ix, err := readIndices(d, col, n, dict.Len())
	if err != nil {
		return dictVals{}, err
	}
	vals := make([]string, dict.Len())
	for j := range vals {
		vals[j] = words.get(j)
	}
	return dictVals{ix: ix, vals: vals}, nil
}

// listOffsets validates the offsets of a list column against its child length.
func listOffsets(d *rawArray, col, n, childLen int) ([]int32, error) {
	if d.Len() != n || d.Offset() != 0 {
		return nil, corrupt(col, "length differs from the record batch")
	}
	ob := buf(d, 1)
	if n == 0 && len(ob) == 0 {
		return []int32{0}, nil
	}
	if len(ob) < 4*(n+1) || uintptr(unsafe.Pointer(&ob[0]))%4 != 0 {
		return nil, corrupt(col, "list offsets too short or misaligned")
	}
	offs := unsafe.Slice((*int32)(unsafe.Pointer(&ob[0])), n+1)
	if offs[0] < 0 || int(offs[n]) > childLen {
		return nil, corrupt(col, "list offsets out of range")
	}
	for i := 0; i < n; i++ {
		if offs[i] > offs[i+1] {
			return nil, corrupt(col, "list offsets decrease")
		}
	}
	return offs, nil
}

// strLists is a decoded list<dictionary<utf8>> column: row i is
// vals[start[i] : start[i]+offs[i+1]-offs[i]], or nil where the list is null.
// Rows whose lists hold the same dictionary indices share one backing range
// of vals (labels repeat per identity): the decoder then materialises each
// distinct list once, and allocates little, which keeps the garbage
// collector (and its write barriers on the Flow stores) quiet. The slices
// are capped, so appending to one never writes into another.
type strLists struct {
	offs  []int32
	start []int32
	valid []byte
	vals  []string
}

func (s *strLists) get(i int) []string {
	if !isValid(s.valid, i) {
		return nil
	}
	lo := s.start[i]
	hi := lo + s.offs[i+1] - s.offs[i]
	return s.vals[lo:hi:hi]
}

func decodeStrLists(d *rawArray, col, n int) (strLists, error) {
	ch := d.Children()
	if len(ch) != 1 {
		return strLists{}, corrupt(col, "list without child")
	}
	child, err := decodeDict(ch[0], col, ch[0].Len())
	if err != nil {
		return strLists{}, err
	}
	offs, err := listOffsets(d, col, n, ch[0].Len())
	if err != nil {
		return strLists{}, err
	}
	valid, err := validBits(d, col, n)
	if err != nil {
		return strLists{}, err
	}
	// The raw index bytes of the child identify a list's content.
	w := child.ix.width
	raw := buf(ch[0], 1)
	// Non-nil even when nothing is stored, so an empty (not null) list
	// decodes as an empty non-nil slice.
	vals := make([]string, 0, 16)
	start := make([]int32, n)
	seen := map[string]int32{}
	var prev []byte
	prevStart := int32(-1)
	for i := 0; i < n; i++ {
		lo, hi := offs[i], offs[i+1]
		key := raw[int(lo)*w : int(hi)*w]
		if prevStart >= 0 && bytes.Equal(key, prev) {
			start[i] = prevStart
			continue
		}
		st, ok := seen[string(key)]
		if !ok {
			st = int32(len(vals))
			for j := lo; j < hi; j++ {
				vals = append(vals, child.get(int(j)))
			}
			seen[string(key)] = st
		}
		start[i] = st
		prev, prevStart = key, st
	}
	return strLists{offs: offs, start: start, valid: valid, vals: vals}, nil
}

// enumVals is a decoded enum column: row i is nums[ix.at(i)].
type enumVals struct {
	ix   dictIndex
	nums []int32
}

func decodeEnum(d *rawArray, col, n int) (enumVals, error) {
	dict := d.Dictionary()
	if dict == nil {
		return enumVals{}, corrupt(col, "dictionary missing")
	}
	names, err := decodeStrings(dict, col, dict.Len())
	if err != nil {
		return enumVals{}, err
	}
	t := enumTables[col]
	nums := make([]int32, dict.Len())
	for j := range nums {
		v, ok := t.parse(names.get(j))
		if !ok {
			return enumVals{}, corrupt(col, fmt.Sprintf("unknown enum name %q", names.get(j)))
		}
		nums[j] = v
	}
	ix, err := readIndices(d, col, n, len(nums))
	if err != nil {
		return enumVals{}, err
	}
	return enumVals{ix: ix, nums: nums}, nil
}

func (e *enumVals) get(i int) int32 { return e.nums[e.ix.at(i)] }

// histVals is the decoded latency_hist column.
type histVals struct {
	offs  []int32
	valid []byte
	vals  []schemas.Bucket
}

func (h *histVals) get(i int) schemas.Histogram {
	if !isValid(h.valid, i) {
		return nil
	}
	lo, hi := h.offs[i], h.offs[i+1]
	return schemas.Histogram(h.vals[lo:hi:hi])
}

func decodeHist(d *rawArray, col, n int) (histVals, error) {
	ch := d.Children()
	if len(ch) != 1 || len(ch[0].Children()) != 2 {
		return histVals{}, corrupt(col, "histogram list without struct child")
	}
	st := ch[0]
	m := st.Len()
	if st.NullN() != 0 || st.Offset() != 0 {
		return histVals{}, corrupt(col, "null or offset histogram entry")
	}
	bk, err := fixedVals[int16](st.Children()[0], col, m)
	if err != nil {
		return histVals{}, err
	}
	cn, err := fixedVals[int64](st.Children()[1], col, m)
	if err != nil {
		return histVals{}, err
	}
	offs, err := listOffsets(d, col, n, m)
	if err != nil {
		return histVals{}, err
	}
	valid, err := validBits(d, col, n)
	if err != nil {
		return histVals{}, err
	}
	base := offs[0]
	vals := make([]schemas.Bucket, int(offs[n]-base))
	for j := range vals {
		vals[j] = schemas.Bucket{Index: bk[int(base)+j], Count: cn[int(base)+j]}
	}
	if base != 0 {
		o := make([]int32, n+1)
		for i := range o {
			o[i] = offs[i] - base
		}
		offs = o
	}
	return histVals{offs: offs, valid: valid, vals: vals}, nil
}

// ipVals is a decoded src_ip/dst_ip column.
type ipVals struct {
	addrs []byte // 16 bytes per row
	valid []byte
}

func decodeIPs(d *rawArray, col, n int) (ipVals, error) {
	b := buf(d, 1)
	if d.Len() != n || len(b) < 16*n {
		return ipVals{}, corrupt(col, "values buffer too short")
	}
	valid, err := validBits(d, col, n)
	if err != nil {
		return ipVals{}, err
	}
	return ipVals{addrs: b, valid: valid}, nil
}

// get returns row i's address; IPv4-mapped addresses come back as IPv4.
func (p *ipVals) get(i int) netip.Addr {
	if !isValid(p.valid, i) {
		return netip.Addr{}
	}
	return netip.AddrFrom16([16]byte(p.addrs[16*i : 16*i+16])).Unmap()
}

// columnDecoder collects the first error of a sequence of column decodes.
// Columns outside its projection are not read (row does not read them).
type columnDecoder struct {
	cols []*rawArray
	n    int
	err  error
	p    *Projection
}

// skip reports whether col is outside the projection, or an earlier
// column failed.
func (c *columnDecoder) skip(col int) bool { return c.err != nil || !c.p.has(col) }

func (c *columnDecoder) strs(col int) strVals {
	if c.skip(col) {
		return strVals{}
	}
	v, err := decodeStrings(c.cols[col], col, c.n)
	c.err = err
	return v
}

func (c *columnDecoder) dict(col int) dictVals {
	if c.skip(col) {
		return dictVals{}
	}
	v, err := decodeDict(c.cols[col], col, c.n)
	c.err = err
	return v
}

func (c *columnDecoder) lists(col int) strLists {
	if c.skip(col) {
		return strLists{}
	}
	v, err := decodeStrLists(c.cols[col], col, c.n)
	c.err = err
	return v
}

func (c *columnDecoder) enum(col int) enumVals {
	if c.skip(col) {
		return enumVals{}
	}
	v, err := decodeEnum(c.cols[col], col, c.n)
	c.err = err
	return v
}

func (c *columnDecoder) ips(col int) ipVals {
	if c.skip(col) {
		return ipVals{}
	}
	v, err := decodeIPs(c.cols[col], col, c.n)
	c.err = err
	return v
}

func (c *columnDecoder) hist(col int) histVals {
	if c.skip(col) {
		return histVals{}
	}
	v, err := decodeHist(c.cols[col], col, c.n)
	c.err = err
	return v
}

func (c *columnDecoder) valid(col int) []byte {
	if c.skip(col) {
		return nil
	}
	v, err := validBits(c.cols[col], col, c.n)
	c.err = err
	return v
}

func fixedCol[T any](c *columnDecoder, col int) []T {
	if c.skip(col) {
		return nil
	}
	v, err := fixedVals[T](c.cols[col], col, c.n)
	c.err = err
	return v
}

// bits returns the bit-packed values of a bool column.
func (c *columnDecoder) bits(col int) []byte {
	if c.skip(col) {
		return nil
	}
	b := buf(c.cols[col], 1)
	if len(b) < (c.n+7)/8 {
		c.err = corrupt(col, "values buffer too short")
		return nil
	}
	return b
}

// timeAt is row i of a ts column: 0 where null.
func timeAt(vals []int64, valid []byte, i int) int64 {
	if !isValid(valid, i) {
		return 0
	}
	return vals[i]
}

// tristateAt is row i of a bool column: Unknown where null.
func tristateAt(bits, valid []byte, i int) schemas.Tristate {
	if !isValid(valid, i) {
		return schemas.Unknown
	}
	if bits[i>>3]&(1<<(i&7)) != 0 {
		return schemas.True
	}
	return schemas.False
}
