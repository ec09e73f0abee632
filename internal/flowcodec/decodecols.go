package flowcodec

import (
	"bytes"
	"fmt"
	"net/netip"
	"unsafe"

	flowpb "github.com/cilium/cilium/api/v1/flow"

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
	_, values := enumMaps(col)
	nums := make([]int32, dict.Len())
	for j := range nums {
		v, ok := enumParse(values, names.get(j))
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

// batchCols holds every decoded column of one record batch of n rows.
type batchCols struct {
	n                            int
	has                          [numCols]bool // the decoded columns
	time, firstSeen, lastSeen    []int64
	timeV, firstSeenV, lastSeenV []byte
	uuid                         strVals
	node                         dictVals
	verdict, dropReason, dir     enumVals
	obsPoint, ipVersion          enumVals
	l7Type, l7Proto              enumVals
	countAs                      enumVals
	eventType, eventSubType      []int32
	isReply, isReplyV            []byte
	srcIP, dstIP                 ipVals
	srcPort, dstPort, tcpFlags   []uint16
	l4, icmpType, icmpCode       []uint8
	epID, epIdentity             [2][]uint32
	epStr                        [2][5]dictVals // cluster, namespace, pod, workload, kind
	epLabels                     [2]strLists
	svc                          [4]dictVals
	srcNames, dstNames           strLists
	bytesFwd, bytesRev           []uint64
	pktsFwd, pktsRev             []uint64
	count, latency               []uint64
	hist                         histVals
	ifIndex                      []uint32
	ifName                       dictVals
	httpMethod, httpURL          dictVals
	httpProto                    dictVals
	httpStatus                   []uint32
	httpHeaders                  strLists
	dnsQuery, dnsObsSource       dictVals
	dnsRCode, dnsTTL             []uint32
	dnsQTypes, dnsRRTypes        strLists
	dnsIPs, dnsCNAMEs            strLists
	kafkaAPIKey, kafkaTopic      dictVals
	kafkaClientID                dictVals
	kafkaAPIVersion, kafkaCorrID []int32
	kafkaErrorCode               []int32
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

// decodeCols decodes and checks the columns of p (every column if p is
// nil) of a record batch of n rows.
func decodeCols(cols []*rawArray, n int, p *Projection) (*batchCols, error) {
	if len(cols) != numCols {
		return nil, fmt.Errorf("%w: record batch of %d columns", ErrNotArrow, len(cols))
	}
	cd := &columnDecoder{cols: cols, n: n, p: p}
	b := &batchCols{n: n}
	for k := range b.has {
		b.has[k] = p.has(k)
	}
	b.time, b.timeV = fixedCol[int64](cd, colTime), cd.valid(colTime)
	b.uuid, b.node = cd.strs(colUUID), cd.dict(colNodeName)
	b.verdict, b.dropReason, b.dir, b.obsPoint = cd.enum(colVerdict), cd.enum(colDropReason), cd.enum(colDirection), cd.enum(colObsPoint)
	b.eventType, b.eventSubType = fixedCol[int32](cd, colEventType), fixedCol[int32](cd, colEventSubType)
	b.isReplyV = cd.valid(colIsReply)
	if !cd.skip(colIsReply) {
		if rb := buf(cd.cols[colIsReply], 1); len(rb) < (n+7)/8 {
			cd.err = corrupt(colIsReply, "values buffer too short")
		} else {
			b.isReply = rb
		}
	}
	b.ipVersion = cd.enum(colIPVersion)
	b.srcIP, b.dstIP = cd.ips(colSrcIP), cd.ips(colDstIP)
	b.srcPort, b.dstPort = fixedCol[uint16](cd, colSrcPort), fixedCol[uint16](cd, colDstPort)
	b.l4, b.tcpFlags = fixedCol[uint8](cd, colL4Protocol), fixedCol[uint16](cd, colTCPFlags)
	b.icmpType, b.icmpCode = fixedCol[uint8](cd, colICMPType), fixedCol[uint8](cd, colICMPCode)
	for s, base := range [2]int{colSrcID, colDstID} {
		b.epID[s] = fixedCol[uint32](cd, base)
		b.epIdentity[s] = fixedCol[uint32](cd, base+1)
		for k := range 5 {
			b.epStr[s][k] = cd.dict(base + 2 + k)
		}
		b.epLabels[s] = cd.lists(base + 7)
	}
	for k := range b.svc {
		b.svc[k] = cd.dict(colSrcSvcNamespace + k)
	}
	b.srcNames, b.dstNames = cd.lists(colSrcNames), cd.lists(colDstNames)
	b.bytesFwd, b.bytesRev = fixedCol[uint64](cd, colBytesFwd), fixedCol[uint64](cd, colBytesRev)
	b.pktsFwd, b.pktsRev = fixedCol[uint64](cd, colPacketsFwd), fixedCol[uint64](cd, colPacketsRev)
	b.firstSeen, b.firstSeenV = fixedCol[int64](cd, colFirstSeen), cd.valid(colFirstSeen)
	b.lastSeen, b.lastSeenV = fixedCol[int64](cd, colLastSeen), cd.valid(colLastSeen)
	b.count, b.latency = fixedCol[uint64](cd, colCount), fixedCol[uint64](cd, colLatency)
	b.hist = cd.hist(colLatencyHist)
	b.ifIndex, b.ifName = fixedCol[uint32](cd, colIfIndex), cd.dict(colIfName)
	b.l7Type, b.l7Proto = cd.enum(colL7Type), cd.enum(colL7Protocol)
	b.httpMethod, b.httpURL = cd.dict(colHTTPMethod), cd.dict(colHTTPURL)
	b.httpStatus, b.httpProto = fixedCol[uint32](cd, colHTTPStatus), cd.dict(colHTTPProtocol)
	b.httpHeaders = cd.lists(colHTTPHeaders)
	b.dnsQuery, b.dnsRCode = cd.dict(colDNSQuery), fixedCol[uint32](cd, colDNSRCode)
	b.dnsQTypes, b.dnsRRTypes, b.dnsIPs = cd.lists(colDNSQTypes), cd.lists(colDNSRRTypes), cd.lists(colDNSIPs)
	b.dnsTTL, b.dnsCNAMEs = fixedCol[uint32](cd, colDNSTTL), cd.lists(colDNSCNAMEs)
	b.dnsObsSource = cd.dict(colDNSObsSource)
	b.kafkaAPIKey = cd.dict(colKafkaAPIKey)
	b.kafkaAPIVersion, b.kafkaCorrID = fixedCol[int32](cd, colKafkaAPIVersion), fixedCol[int32](cd, colKafkaCorrelationID)
	b.kafkaTopic, b.kafkaErrorCode = cd.dict(colKafkaTopic), fixedCol[int32](cd, colKafkaErrorCode)
	b.kafkaClientID = cd.dict(colKafkaClientID)
	b.countAs = cd.enum(colCountAs)
	if cd.err != nil {
		return nil, cd.err
	}
	return b, nil
}

func timeAt(vals []int64, valid []byte, i int) int64 {
	if !isValid(valid, i) {
		return 0
	}
	return vals[i]
}

// endpoint fills the selected fields of e from row i of endpoint s
// (0 source, 1 destination).
func (b *batchCols) endpoint(e *schemas.Endpoint, s, i int) {
	base := colSrcID + s*(colDstID-colSrcID)
	h, st := &b.has, &b.epStr[s]
	if h[base] {
		e.ID = b.epID[s][i]
	}
	if h[base+1] {
		e.Identity = b.epIdentity[s][i]
	}
	if h[base+2] {
		e.ClusterName = st[0].get(i)
	}
	if h[base+3] {
		e.Namespace = st[1].get(i)
	}
	if h[base+4] {
		e.PodName = st[2].get(i)
	}
	if h[base+5] {
		e.Workload = st[3].get(i)
	}
	if h[base+6] {
		e.WorkloadKind = st[4].get(i)
	}
	if h[base+7] {
		e.Labels = b.epLabels[s].get(i)
	}
}

// row fills the fields of the decoded columns of f from row i and leaves
// the others alone: f must be zero, or have been filled by row of a batch
// of the same projection (DecodeEach reuses one Flow, whose unselected
// fields thus stay zero without being cleared for every row).
func (b *batchCols) row(f *schemas.Flow, i int) {
	h := &b.has
	if h[colTime] {
		f.TimeNs = timeAt(b.time, b.timeV, i)
	}
	if h[colUUID] {
		f.UUID = b.uuid.get(i)
	}
	if h[colNodeName] {
		f.NodeName = b.node.get(i)
	}
	if h[colVerdict] {
		f.Verdict = flowpb.Verdict(b.verdict.get(i))
	}
	if h[colDropReason] {
		f.DropReason = flowpb.DropReason(b.dropReason.get(i))
	}
	if h[colDirection] {
		f.Direction = flowpb.TrafficDirection(b.dir.get(i))
	}
	if h[colObsPoint] {
		f.ObservationPoint = flowpb.TraceObservationPoint(b.obsPoint.get(i))
	}
	if h[colEventType] {
		f.EventType = b.eventType[i]
	}
	if h[colEventSubType] {
		f.EventSubType = b.eventSubType[i]
	}
	if h[colIsReply] {
		f.IsReply = schemas.Unknown
		if isValid(b.isReplyV, i) {
			f.IsReply = schemas.False
			if b.isReply[i>>3]&(1<<(i&7)) != 0 {
				f.IsReply = schemas.True
			}
		}
	}
	if h[colCountAs] {
		f.CountAs = schemas.CountAs(b.countAs.get(i))
	}
	if h[colIPVersion] {
		f.IPVersion = flowpb.IPVersion(b.ipVersion.get(i))
	}
	if h[colSrcIP] {
		f.SrcIP = b.srcIP.get(i)
	}
	if h[colDstIP] {
		f.DstIP = b.dstIP.get(i)
	}
	if h[colSrcPort] {
		f.SrcPort = b.srcPort[i]
	}
	if h[colDstPort] {
		f.DstPort = b.dstPort[i]
	}
	if h[colL4Protocol] {
		f.L4Protocol = b.l4[i]
	}
	if h[colTCPFlags] {
		f.TCPFlags = schemas.TCPFlags(b.tcpFlags[i])
	}
	if h[colICMPType] {
		f.ICMPType = b.icmpType[i]
	}
	if h[colICMPCode] {
		f.ICMPCode = b.icmpCode[i]
	}
	b.endpoint(&f.Src, 0, i)
	b.endpoint(&f.Dst, 1, i)
	if h[colSrcSvcNamespace] {
		f.SrcService.Namespace = b.svc[0].get(i)
	}
	if h[colSrcSvcName] {
		f.SrcService.Name = b.svc[1].get(i)
	}
	if h[colDstSvcNamespace] {
		f.DstService.Namespace = b.svc[2].get(i)
	}
	if h[colDstSvcName] {
		f.DstService.Name = b.svc[3].get(i)
	}
	if h[colSrcNames] {
		f.SrcNames = b.srcNames.get(i)
	}
	if h[colDstNames] {
		f.DstNames = b.dstNames.get(i)
	}
	if h[colBytesFwd] {
		f.BytesFwd = b.bytesFwd[i]
	}
	if h[colBytesRev] {
		f.BytesRev = b.bytesRev[i]
	}
	if h[colPacketsFwd] {
		f.PacketsFwd = b.pktsFwd[i]
	}
	if h[colPacketsRev] {
		f.PacketsRev = b.pktsRev[i]
	}
	if h[colFirstSeen] {
		f.FirstSeenNs = timeAt(b.firstSeen, b.firstSeenV, i)
	}
	if h[colLastSeen] {
		f.LastSeenNs = timeAt(b.lastSeen, b.lastSeenV, i)
	}
	if h[colCount] {
		f.Count = b.count[i]
	}
	if h[colLatency] {
		f.LatencyNs = b.latency[i]
	}
	if h[colLatencyHist] {
		f.LatencyHist = b.hist.get(i)
	}
	if h[colIfIndex] {
		f.IfIndex = b.ifIndex[i]
	}
	if h[colIfName] {
		f.IfName = b.ifName.get(i)
	}
	b.l7(&f.L7, i)
}

// l7 is row for the L7 block.
func (b *batchCols) l7(l *schemas.L7, i int) {
	h := &b.has
	if h[colL7Type] {
		l.Type = flowpb.L7FlowType(b.l7Type.get(i))
	}
	if h[colL7Protocol] {
		l.Protocol = schemas.L7Protocol(b.l7Proto.get(i))
	}
	if h[colHTTPMethod] {
		l.HTTPMethod = b.httpMethod.get(i)
	}
	if h[colHTTPURL] {
		l.HTTPURL = b.httpURL.get(i)
	}
	if h[colHTTPStatus] {
		l.HTTPStatus = b.httpStatus[i]
	}
	if h[colHTTPProtocol] {
		l.HTTPProtocol = b.httpProto.get(i)
	}
	if h[colHTTPHeaders] {
		l.HTTPHeaders = b.httpHeaders.get(i)
	}
	if h[colDNSQuery] {
		l.DNSQuery = b.dnsQuery.get(i)
	}
	if h[colDNSRCode] {
		l.DNSRCode = b.dnsRCode[i]
	}
	if h[colDNSQTypes] {
		l.DNSQTypes = b.dnsQTypes.get(i)
	}
	if h[colDNSRRTypes] {
		l.DNSRRTypes = b.dnsRRTypes.get(i)
	}
	if h[colDNSIPs] {
		l.DNSIPs = b.dnsIPs.get(i)
	}
	if h[colDNSTTL] {
		l.DNSTTL = b.dnsTTL[i]
	}
	if h[colDNSCNAMEs] {
		l.DNSCNAMEs = b.dnsCNAMEs.get(i)
	}
	if h[colDNSObsSource] {
		l.DNSObservationSource = b.dnsObsSource.get(i)
	}
	if h[colKafkaAPIKey] {
		l.KafkaAPIKey = b.kafkaAPIKey.get(i)
	}
	if h[colKafkaAPIVersion] {
		l.KafkaAPIVersion = b.kafkaAPIVersion[i]
	}
	if h[colKafkaCorrelationID] {
		l.KafkaCorrelationID = b.kafkaCorrID[i]
	}
	if h[colKafkaTopic] {
		l.KafkaTopic = b.kafkaTopic.get(i)
	}
	if h[colKafkaErrorCode] {
		l.KafkaErrorCode = b.kafkaErrorCode[i]
	}
	if h[colKafkaClientID] {
		l.KafkaClientID = b.kafkaClientID.get(i)
	}
}
