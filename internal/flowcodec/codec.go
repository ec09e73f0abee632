package flowcodec

import (
	"errors"
	"fmt"
	"unsafe"

	"github.com/apache/arrow-go/v18/arrow"

	"github.com/flowbus/flowbus/schemas"
)

// Errors of Decoder.Decode; a consumer labels bad messages by them
// (flowbus_aggregator_bad_messages_total{reason}).
var (
	ErrNotArrow      = errors.New("not an Arrow IPC stream")
	ErrTruncated     = errors.New("truncated Arrow IPC stream")
	ErrUnknownSchema = errors.New("unknown flowbus schema version")
)

// Encoder turns flows into one self-describing Arrow IPC stream (schema
// message + record batch(es), zstd body compression). It reuses its builders
// between calls; not safe for concurrent use.
//
// The column buffers are plain Go slices kept between calls (truncated, not
// freed), handed to Arrow without copying; only the IPC writer and the zstd
// output are allocated per call.
type Encoder struct {
	schema *arrow.Schema

	time, firstSeen, lastSeen    []int64
	timeV, firstSeenV, lastSeenV validity
	uuid                         strCol
	node                         dictCol
	enums                        [numCols]*enumCol
	eventType, eventSubType      []int32
	isReply                      []byte // bit-packed values
	isReplyV                     validity
	srcIP, dstIP                 [][16]byte
	srcIPV, dstIPV               validity
	srcPort, dstPort             []uint16
	l4, icmpType, icmpCode       []uint8
	tcpFlags                     []uint16
	ep                           [2]endpointCols
	svc                          [4]dictCol
	srcNames, dstNames           strListCol
	bytesFwd, bytesRev           []uint64
	pktsFwd, pktsRev             []uint64
	count, latency               []uint64
	hist                         histCol
	ifIndex                      []uint32
	ifName                       dictCol
	httpMethod, httpURL          dictCol
	httpStatus                   []uint32
	httpProto                    dictCol
	httpHeaders                  strListCol
	dnsQuery                     dictCol
	dnsRCode, dnsTTL             []uint32
	dnsQTypes, dnsRRTypes        strListCol
	dnsIPs, dnsCNAMEs            strListCol
	dnsObsSource                 dictCol
	kafkaAPIKey                  dictCol
	kafkaAPIVersion, kafkaCorrID []int32
	kafkaTopic                   dictCol
	kafkaErrorCode               []int32
	kafkaClientID                dictCol

	w *ipcWriter
}

type endpointCols struct {
	id, identity                 []uint32
	cluster, ns, pod, wl, wlKind dictCol
	labels                       strListCol
	gen                          uint32
	seen                         [epCacheSize]epCacheEntry
}

// An endpoint's five strings and label list usually come together from the
// agent's endpoint cache, so the same six headers recur row after row. A
// direct-mapped cache keyed by all six headers (data pointer and length)
// answers the five dictionary indices and the labels' first child index in
// one probe instead of six. Like dictCol's, it is valid for one Encode call
// (gen); indices it answers are those the columns would look up again.
const epCacheSize = 256

type epKey struct {
	p [6]uintptr // data pointers: cluster, namespace, pod, workload, kind, labels
	n [6]int32   // lengths; -1 for nil labels
}

type epCacheEntry struct {
	k     epKey
	gen   uint32
	idx   [5]int32 // cluster, namespace, pod, workload, kind
	start int32    // labels' first index in labels.child.idx
}

func strKey(s string) (uintptr, int32) {
	return uintptr(unsafe.Pointer(unsafe.StringData(s))), int32(len(s))
}

func (p *endpointCols) reset(n int) {
	p.id, p.identity = fit(p.id, n), fit(p.identity, n)
	p.cluster.resetRows(n)
	p.ns.resetRows(n)
	p.pod.resetRows(n)
	p.wl.resetRows(n)
	p.wlKind.resetRows(n)
	p.labels.reset(n)
	p.gen++
	if p.gen == 0 {
		p.seen = [epCacheSize]epCacheEntry{}
		p.gen = 1
	}
}

// NewEncoder returns an Encoder.
func NewEncoder() *Encoder {
	e := &Encoder{schema: NewArrowSchema()}
	w, err := newIPCWriter(e.schema)
	if err != nil {
		// Serialising our own constant schema and creating a zstd encoder
		// with constant options cannot fail.
		panic("schemas: " + err.Error())
	}
	e.w = w
	for _, c := range []int{colVerdict, colDropReason, colDirection, colObsPoint, colIPVersion, colL7Type, colL7Protocol, colCountAs} {
		names, _ := enumMaps(c)
		e.enums[c] = newEnumCol(enumName(names))
	}
	return e
}

// reset empties every column for a batch of n rows: the per-row columns
// take length n here, once, and addRow assigns row i of each.
func (e *Encoder) reset(n int) {
	e.time, e.firstSeen, e.lastSeen = fit(e.time, n), fit(e.firstSeen, n), fit(e.lastSeen, n)
	e.timeV.reset(n)
	e.firstSeenV.reset(n)
	e.lastSeenV.reset(n)
	e.uuid.reset()
	e.node.resetRows(n)
	for _, c := range e.enums {
		if c != nil {
			c.reset(n)
		}
	}
	e.eventType, e.eventSubType = fit(e.eventType, n), fit(e.eventSubType, n)
	e.isReply = fit(e.isReply, (n+7)>>3)
	clear(e.isReply)
	e.isReplyV.reset(n)
	e.srcIP, e.dstIP = fit(e.srcIP, n), fit(e.dstIP, n)
	e.srcIPV.reset(n)
	e.dstIPV.reset(n)
	e.srcPort, e.dstPort = fit(e.srcPort, n), fit(e.dstPort, n)
	e.l4, e.icmpType, e.icmpCode = fit(e.l4, n), fit(e.icmpType, n), fit(e.icmpCode, n)
	e.tcpFlags = fit(e.tcpFlags, n)
	for i := range e.ep {
		e.ep[i].reset(n)
	}
	for i := range e.svc {
		e.svc[i].resetRows(n)
	}
	e.srcNames.reset(n)
	e.dstNames.reset(n)
	e.bytesFwd, e.bytesRev, e.pktsFwd, e.pktsRev = fit(e.bytesFwd, n), fit(e.bytesRev, n), fit(e.pktsFwd, n), fit(e.pktsRev, n)
	e.count, e.latency = fit(e.count, n), fit(e.latency, n)
	e.hist.reset(n)
	e.ifIndex = fit(e.ifIndex, n)
	e.ifName.resetRows(n)
	e.httpMethod.resetRows(n)
	e.httpURL.resetRows(n)
	e.httpStatus = fit(e.httpStatus, n)
	e.httpProto.resetRows(n)
	e.httpHeaders.reset(n)
	e.dnsQuery.resetRows(n)
	e.dnsRCode, e.dnsTTL = fit(e.dnsRCode, n), fit(e.dnsTTL, n)
	e.dnsQTypes.reset(n)
	e.dnsRRTypes.reset(n)
	e.dnsIPs.reset(n)
	e.dnsCNAMEs.reset(n)
	e.dnsObsSource.resetRows(n)
	e.kafkaAPIKey.resetRows(n)
	e.kafkaAPIVersion, e.kafkaCorrID, e.kafkaErrorCode = fit(e.kafkaAPIVersion, n), fit(e.kafkaCorrID, n), fit(e.kafkaErrorCode, n)
	e.kafkaTopic.resetRows(n)
	e.kafkaClientID.resetRows(n)
}

func (p *endpointCols) set(i int, ep *schemas.Endpoint) {
	p.id[i] = ep.ID
	p.identity[i] = ep.Identity
	var k epKey
	k.p[0], k.n[0] = strKey(ep.ClusterName)
	k.p[1], k.n[1] = strKey(ep.Namespace)
	k.p[2], k.n[2] = strKey(ep.PodName)
	k.p[3], k.n[3] = strKey(ep.Workload)
	k.p[4], k.n[4] = strKey(ep.WorkloadKind)
	k.p[5], k.n[5] = uintptr(unsafe.Pointer(unsafe.SliceData(ep.Labels))), int32(len(ep.Labels))
	if ep.Labels == nil {
		k.n[5] = -1
	}
	c := &p.seen[(uint64(k.p[2]+k.p[3]+k.p[5])*0x9e3779b97f4a7c15)>>(64-8)]
	// k == c.k, spelled out: == on the arrays calls memequal.
	d := (k.p[0] ^ c.k.p[0]) | (k.p[1] ^ c.k.p[1]) | (k.p[2] ^ c.k.p[2]) | (k.p[3] ^ c.k.p[3]) | (k.p[4] ^ c.k.p[4]) | (k.p[5] ^ c.k.p[5])
	m := (k.n[0] ^ c.k.n[0]) | (k.n[1] ^ c.k.n[1]) | (k.n[2] ^ c.k.n[2]) | (k.n[3] ^ c.k.n[3]) | (k.n[4] ^ c.k.n[4]) | (k.n[5] ^ c.k.n[5])
	if c.gen == p.gen && d == 0 && m == 0 {
		p.cluster.idx[i] = c.idx[0]
		p.ns.idx[i] = c.idx[1]
		p.pod.idx[i] = c.idx[2]
		p.wl.idx[i] = c.idx[3]
		p.wlKind.idx[i] = c.idx[4]
		l := &p.labels
		if n := len(ep.Labels); n > 0 {
			l.child.idx = append(l.child.idx, l.child.idx[c.start:c.start+int32(n)]...)
		}
		l.offs[i+1] = int32(len(l.child.idx))
		l.valid.set(i, ep.Labels != nil)
		return
	}
	c.k, c.gen = k, p.gen
	c.idx[0] = p.cluster.index(ep.ClusterName)
	c.idx[1] = p.ns.index(ep.Namespace)
	c.idx[2] = p.pod.index(ep.PodName)
	c.idx[3] = p.wl.index(ep.Workload)
	c.idx[4] = p.wlKind.index(ep.WorkloadKind)
	p.cluster.idx[i] = c.idx[0]
	p.ns.idx[i] = c.idx[1]
	p.pod.idx[i] = c.idx[2]
	p.wl.idx[i] = c.idx[3]
	p.wlKind.idx[i] = c.idx[4]
	c.start = int32(len(p.labels.child.idx))
	p.labels.set(i, ep.Labels)
}

// addRow writes f as row i of every column (enum columns get the raw
// value, which addRows maps to dictionary indices afterwards). A timestamp of 0 (unknown) and
// the zero netip.Addr are written as nulls; addresses take 16 bytes (IPv4
// mapped into IPv6, zone dropped).
func (e *Encoder) addRow(i int, f *schemas.Flow) {
	en := &e.enums
	e.time[i] = f.TimeNs
	e.timeV.set(i, f.TimeNs != 0)
	e.uuid.add(f.UUID)
	e.node.idx[i] = e.node.index(f.NodeName)
	en[colVerdict].idx[i] = int32(f.Verdict)
	en[colDropReason].idx[i] = int32(f.DropReason)
	en[colDirection].idx[i] = int32(f.Direction)
	en[colObsPoint].idx[i] = int32(f.ObservationPoint)
	e.eventType[i] = f.EventType
	e.eventSubType[i] = f.EventSubType
	if f.IsReply == schemas.True {
		e.isReply[i>>3] |= 1 << (i & 7)
	}
	e.isReplyV.set(i, f.IsReply != schemas.Unknown)
	en[colCountAs].idx[i] = int32(f.CountAs)
	en[colIPVersion].idx[i] = int32(f.IPVersion)
	e.srcIP[i] = f.SrcIP.As16()
	e.srcIPV.set(i, f.SrcIP.IsValid())
	e.dstIP[i] = f.DstIP.As16()
	e.dstIPV.set(i, f.DstIP.IsValid())
	e.srcPort[i] = f.SrcPort
	e.dstPort[i] = f.DstPort
	e.l4[i] = f.L4Protocol
	e.tcpFlags[i] = uint16(f.TCPFlags)
	e.icmpType[i] = f.ICMPType
	e.icmpCode[i] = f.ICMPCode
	e.ep[0].set(i, &f.Src)
	e.ep[1].set(i, &f.Dst)
	e.svc[0].idx[i] = e.svc[0].index(f.SrcService.Namespace)
	e.svc[1].idx[i] = e.svc[1].index(f.SrcService.Name)
	e.svc[2].idx[i] = e.svc[2].index(f.DstService.Namespace)
	e.svc[3].idx[i] = e.svc[3].index(f.DstService.Name)
	// Lists: null for a nil slice, written out here for each list column
	// because a put(i, s) method doing the same costs 86 against the
	// inliner's 80 and would be a call per row and column.
	if f.SrcNames == nil {
		e.srcNames.null(i)
	} else {
		e.srcNames.set(i, f.SrcNames)
	}
	if f.DstNames == nil {
		e.dstNames.null(i)
	} else {
		e.dstNames.set(i, f.DstNames)
	}
	e.bytesFwd[i] = f.BytesFwd
	e.bytesRev[i] = f.BytesRev
	e.pktsFwd[i] = f.PacketsFwd
	e.pktsRev[i] = f.PacketsRev
	e.firstSeen[i] = f.FirstSeenNs
	e.firstSeenV.set(i, f.FirstSeenNs != 0)
	e.lastSeen[i] = f.LastSeenNs
	e.lastSeenV.set(i, f.LastSeenNs != 0)
	e.count[i] = f.Count
	e.latency[i] = f.LatencyNs
	e.hist.set(i, f.LatencyHist)
	e.ifIndex[i] = f.IfIndex
	e.ifName.idx[i] = e.ifName.index(f.IfName)
	l7 := &f.L7
	en[colL7Type].idx[i] = int32(l7.Type)
	en[colL7Protocol].idx[i] = int32(l7.Protocol)
	e.httpMethod.idx[i] = e.httpMethod.index(l7.HTTPMethod)
	e.httpURL.idx[i] = e.httpURL.index(l7.HTTPURL)
	e.httpStatus[i] = l7.HTTPStatus
	e.httpProto.idx[i] = e.httpProto.index(l7.HTTPProtocol)
	if l7.HTTPHeaders == nil {
		e.httpHeaders.null(i)
	} else {
		e.httpHeaders.set(i, l7.HTTPHeaders)
	}
	e.dnsQuery.idx[i] = e.dnsQuery.index(l7.DNSQuery)
	e.dnsRCode[i] = l7.DNSRCode
	if l7.DNSQTypes == nil {
		e.dnsQTypes.null(i)
	} else {
		e.dnsQTypes.set(i, l7.DNSQTypes)
	}
	if l7.DNSRRTypes == nil {
		e.dnsRRTypes.null(i)
	} else {
		e.dnsRRTypes.set(i, l7.DNSRRTypes)
	}
	if l7.DNSIPs == nil {
		e.dnsIPs.null(i)
	} else {
		e.dnsIPs.set(i, l7.DNSIPs)
	}
	e.dnsTTL[i] = l7.DNSTTL
	if l7.DNSCNAMEs == nil {
		e.dnsCNAMEs.null(i)
	} else {
		e.dnsCNAMEs.set(i, l7.DNSCNAMEs)
	}
	e.dnsObsSource.idx[i] = e.dnsObsSource.index(l7.DNSObservationSource)
	e.kafkaAPIKey.idx[i] = e.kafkaAPIKey.index(l7.KafkaAPIKey)
	e.kafkaAPIVersion[i] = l7.KafkaAPIVersion
	e.kafkaCorrID[i] = l7.KafkaCorrelationID
	e.kafkaTopic.idx[i] = e.kafkaTopic.index(l7.KafkaTopic)
	e.kafkaErrorCode[i] = l7.KafkaErrorCode
	e.kafkaClientID.idx[i] = e.kafkaClientID.index(l7.KafkaClientID)
}

// histCountLevel is the libzstd level of latency_hist's count buffer (int64
// counts, most of them 1, several per flow): its double-hash match finder
// finds the long repeats level 1's single hash misses, measured ~3× faster
// and 2–3× smaller on the payments fleet. Every other buffer uses
// zstdLevel (−1).
const histCountLevel = 3

// emit appends the nodes and buffers of every column, in schema order, to
// the IPC writer and registers the dictionaries.
func (e *Encoder) emit(w *ipcWriter, n int) (err error) {
	fixed := func(vals []byte, v *validity) {
		nulls := 0
		if v != nil {
			nulls = v.nulls
		}
		w.node(n, nulls)
		w.validity(v)
		w.buffer(vals)
	}
	dict := func(c *dictCol) { w.dict(&c.dict, c.idx) }
	few := func(c *dictCol) { // int16 indices
		if len(c.dict.offs)-1 > 1<<15-1 && err == nil {
			err = fmt.Errorf("encode flows: %d distinct values in an int16-indexed string column; send smaller batches", len(c.dict.offs)-1)
		}
		w.dictNarrow(&c.dict, c.idx, 2)
	}
	enum := func(col int) {
		c := e.enums[col]
		c.dict.reset()
		for _, v := range c.nums {
			c.dict.add(c.name(v))
		}
		width := 1
		if col == colDropReason {
			width = 2
		}
		if len(c.nums) > 1<<(8*width-1)-1 && err == nil {
			err = fmt.Errorf("encode flows: %d distinct values in enum column %d", len(c.nums), col)
		}
		w.dictNarrow(&c.dict, c.idx, width)
	}
	list := func(c *strListCol, narrow bool) {
		w.node(n, c.valid.nulls)
		w.validity(&c.valid)
		w.buffer(bytesOf(c.offs))
		if narrow {
			few(&c.child)
		} else {
			dict(&c.child)
		}
	}
	fixed(bytesOf(e.time), &e.timeV)
	w.strings(&e.uuid, nil)
	few(&e.node)
	enum(colVerdict)
	enum(colDropReason)
	enum(colDirection)
	enum(colObsPoint)
	fixed(bytesOf(e.eventType), nil)
	fixed(bytesOf(e.eventSubType), nil)
	fixed(e.isReply, &e.isReplyV)
	enum(colIPVersion)
	fixed(bytesOf(e.srcIP), &e.srcIPV)
	fixed(bytesOf(e.dstIP), &e.dstIPV)
	fixed(bytesOf(e.srcPort), nil)
	fixed(bytesOf(e.dstPort), nil)
	fixed(e.l4, nil)
	fixed(bytesOf(e.tcpFlags), nil)
	fixed(e.icmpType, nil)
	fixed(e.icmpCode, nil)
	for i := range e.ep {
		p := &e.ep[i]
		fixed(bytesOf(p.id), nil)
		fixed(bytesOf(p.identity), nil)
		few(&p.cluster)
		few(&p.ns)
		dict(&p.pod)
		few(&p.wl)
		few(&p.wlKind)
		list(&p.labels, false)
	}
	for i := range e.svc {
		few(&e.svc[i])
	}
	list(&e.srcNames, false)
	list(&e.dstNames, false)
	fixed(bytesOf(e.bytesFwd), nil)
	fixed(bytesOf(e.bytesRev), nil)
	fixed(bytesOf(e.pktsFwd), nil)
	fixed(bytesOf(e.pktsRev), nil)
	fixed(bytesOf(e.firstSeen), &e.firstSeenV)
	fixed(bytesOf(e.lastSeen), &e.lastSeenV)
	fixed(bytesOf(e.count), nil)
	fixed(bytesOf(e.latency), nil)
	h := &e.hist
	w.node(n, h.valid.nulls)
	w.validity(&h.valid)
	w.buffer(bytesOf(h.offs))
	m := len(h.buckets)
	w.node(m, 0) // struct<bucket, count>
	w.buffer(nil)
	w.node(m, 0)
	w.buffer(nil)
	w.buffer(bytesOf(h.buckets))
	w.node(m, 0)
	w.buffer(nil)
	w.bufferLevel(bytesOf(h.counts), histCountLevel)
	fixed(bytesOf(e.ifIndex), nil)
	few(&e.ifName)
	enum(colL7Type)
	enum(colL7Protocol)
	few(&e.httpMethod)
	dict(&e.httpURL)
	fixed(bytesOf(e.httpStatus), nil)
	few(&e.httpProto)
	list(&e.httpHeaders, false)
	dict(&e.dnsQuery)
	fixed(bytesOf(e.dnsRCode), nil)
	list(&e.dnsQTypes, true)
	list(&e.dnsRRTypes, true)
	list(&e.dnsIPs, false)
	fixed(bytesOf(e.dnsTTL), nil)
	list(&e.dnsCNAMEs, false)
	few(&e.dnsObsSource)
	few(&e.kafkaAPIKey)
	fixed(bytesOf(e.kafkaAPIVersion), nil)
	fixed(bytesOf(e.kafkaCorrID), nil)
	dict(&e.kafkaTopic)
	fixed(bytesOf(e.kafkaErrorCode), nil)
	dict(&e.kafkaClientID)
	enum(colCountAs)
	return err
}

// Encode appends to dst one Arrow IPC stream holding flows, in order: the
// schema message, one dictionary batch per dictionary column, one record
// batch with len(flows) rows, and the end-of-stream marker. Every call
// writes a complete, self-describing stream. Flows are not retained.
func (e *Encoder) Encode(dst []byte, flows []schemas.Flow) ([]byte, error) {
	if int64(len(flows)) > 1<<31-1 {
		return dst, fmt.Errorf("encode flows: %d rows do not fit one record batch", len(flows))
	}
	e.reset(len(flows))
	if err := e.addRows(flows); err != nil {
		return dst, err
	}
	for _, c := range e.enums {
		if c != nil && c.full {
			return dst, errors.New("encode flows: more than 32767 distinct values in an enum column")
		}
	}
	e.w.startBatch(len(flows))
	if err := e.emit(e.w, len(flows)); err != nil {
		e.w.dicts = e.w.dicts[:0]
		return dst, err
	}
	return e.w.finish(dst, len(flows)), nil
}

// errColumnTooBig is panicked by strCol.add when a column's values exceed
// the 2 GiB an Arrow utf8 column can address; addRows turns it into an error.
var errColumnTooBig = errors.New("encode flows: a string column exceeds 2 GiB; send smaller batches")

func (e *Encoder) addRows(flows []schemas.Flow) (err error) {
	defer func() {
		if r := recover(); r != nil {
			if r != errColumnTooBig {
				panic(r)
			}
			err = errColumnTooBig
		}
	}()
	for i := range flows {
		e.addRow(i, &flows[i])
	}
	for _, c := range e.enums {
		if c != nil {
			c.mapRows()
		}
	}
	return nil
}
