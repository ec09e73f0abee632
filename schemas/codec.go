package schemas

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/apache/arrow-go/v18/arrow"
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
	for _, c := range []int{colVerdict, colDropReason, colDirection, colObsPoint, colIPVersion, colL7Type, colL7Protocol} {
		names, _ := enumMaps(c)
		e.enums[c] = newEnumCol(enumName(names))
	}
	return e
}

func (e *Encoder) reset() {
	e.time, e.firstSeen, e.lastSeen = e.time[:0], e.firstSeen[:0], e.lastSeen[:0]
	e.timeV.reset()
	e.firstSeenV.reset()
	e.lastSeenV.reset()
	e.uuid.reset()
	e.node.reset()
	for _, c := range e.enums {
		if c != nil {
			c.reset()
		}
	}
	e.eventType, e.eventSubType = e.eventType[:0], e.eventSubType[:0]
	e.isReply = e.isReply[:0]
	e.isReplyV.reset()
	e.srcIP, e.dstIP = e.srcIP[:0], e.dstIP[:0]
	e.srcIPV.reset()
	e.dstIPV.reset()
	e.srcPort, e.dstPort = e.srcPort[:0], e.dstPort[:0]
	e.l4, e.icmpType, e.icmpCode = e.l4[:0], e.icmpType[:0], e.icmpCode[:0]
	e.tcpFlags = e.tcpFlags[:0]
	for i := range e.ep {
		p := &e.ep[i]
		p.id, p.identity = p.id[:0], p.identity[:0]
		p.cluster.reset()
		p.ns.reset()
		p.pod.reset()
		p.wl.reset()
		p.wlKind.reset()
		p.labels.reset()
	}
	for i := range e.svc {
		e.svc[i].reset()
	}
	e.srcNames.reset()
	e.dstNames.reset()
	e.bytesFwd, e.bytesRev, e.pktsFwd, e.pktsRev = e.bytesFwd[:0], e.bytesRev[:0], e.pktsFwd[:0], e.pktsRev[:0]
	e.count, e.latency = e.count[:0], e.latency[:0]
	e.hist.reset()
	e.ifIndex = e.ifIndex[:0]
	e.ifName.reset()
	e.httpMethod.reset()
	e.httpURL.reset()
	e.httpStatus = e.httpStatus[:0]
	e.httpProto.reset()
	e.httpHeaders.reset()
	e.dnsQuery.reset()
	e.dnsRCode, e.dnsTTL = e.dnsRCode[:0], e.dnsTTL[:0]
	e.dnsQTypes.reset()
	e.dnsRRTypes.reset()
	e.dnsIPs.reset()
	e.dnsCNAMEs.reset()
	e.dnsObsSource.reset()
	e.kafkaAPIKey.reset()
	e.kafkaAPIVersion, e.kafkaCorrID, e.kafkaErrorCode = e.kafkaAPIVersion[:0], e.kafkaCorrID[:0], e.kafkaErrorCode[:0]
	e.kafkaTopic.reset()
	e.kafkaClientID.reset()
}

// addTime appends a timestamp; 0 (unknown) is written as null.
func addTime(vals []int64, v *validity, ns int64) []int64 {
	v.add(ns != 0)
	return append(vals, ns)
}

// addIP appends an address as 16 bytes (IPv4 mapped into IPv6, zone
// dropped); the zero Addr is null.
func addIP(c [][16]byte, v *validity, a netip.Addr) [][16]byte {
	v.add(a.IsValid())
	return append(c, a.As16())
}

func (p *endpointCols) add(ep *Endpoint) {
	p.id = append(p.id, ep.ID)
	p.identity = append(p.identity, ep.Identity)
	p.cluster.add(ep.ClusterName)
	p.ns.add(ep.Namespace)
	p.pod.add(ep.PodName)
	p.wl.add(ep.Workload)
	p.wlKind.add(ep.WorkloadKind)
	p.labels.add(ep.Labels)
}

func (e *Encoder) addRow(f *Flow) {
	e.time = addTime(e.time, &e.timeV, f.TimeNs)
	e.uuid.add(f.UUID)
	e.node.add(f.NodeName)
	e.enums[colVerdict].add(int32(f.Verdict))
	e.enums[colDropReason].add(int32(f.DropReason))
	e.enums[colDirection].add(int32(f.Direction))
	e.enums[colObsPoint].add(int32(f.ObservationPoint))
	e.eventType = append(e.eventType, f.EventType)
	e.eventSubType = append(e.eventSubType, f.EventSubType)
	n := e.isReplyV.n
	if n&7 == 0 {
		e.isReply = append(e.isReply, 0)
	}
	if f.IsReply == True {
		e.isReply[n>>3] |= 1 << (n & 7)
	}
	e.isReplyV.add(f.IsReply != Unknown)
	e.enums[colIPVersion].add(int32(f.IPVersion))
	e.srcIP = addIP(e.srcIP, &e.srcIPV, f.SrcIP)
	e.dstIP = addIP(e.dstIP, &e.dstIPV, f.DstIP)
	e.srcPort = append(e.srcPort, f.SrcPort)
	e.dstPort = append(e.dstPort, f.DstPort)
	e.l4 = append(e.l4, f.L4Protocol)
	e.tcpFlags = append(e.tcpFlags, uint16(f.TCPFlags))
	e.icmpType = append(e.icmpType, f.ICMPType)
	e.icmpCode = append(e.icmpCode, f.ICMPCode)
	e.ep[0].add(&f.Src)
	e.ep[1].add(&f.Dst)
	e.svc[0].add(f.SrcService.Namespace)
	e.svc[1].add(f.SrcService.Name)
	e.svc[2].add(f.DstService.Namespace)
	e.svc[3].add(f.DstService.Name)
	e.srcNames.add(f.SrcNames)
	e.dstNames.add(f.DstNames)
	e.bytesFwd = append(e.bytesFwd, f.BytesFwd)
	e.bytesRev = append(e.bytesRev, f.BytesRev)
	e.pktsFwd = append(e.pktsFwd, f.PacketsFwd)
	e.pktsRev = append(e.pktsRev, f.PacketsRev)
	e.firstSeen = addTime(e.firstSeen, &e.firstSeenV, f.FirstSeenNs)
	e.lastSeen = addTime(e.lastSeen, &e.lastSeenV, f.LastSeenNs)
	e.count = append(e.count, f.Count)
	e.latency = append(e.latency, f.LatencyNs)
	e.hist.add(f.LatencyHist)
	e.ifIndex = append(e.ifIndex, f.IfIndex)
	e.ifName.add(f.IfName)
	l7 := &f.L7
	e.enums[colL7Type].add(int32(l7.Type))
	e.enums[colL7Protocol].add(int32(l7.Protocol))
	e.httpMethod.add(l7.HTTPMethod)
	e.httpURL.add(l7.HTTPURL)
	e.httpStatus = append(e.httpStatus, l7.HTTPStatus)
	e.httpProto.add(l7.HTTPProtocol)
	e.httpHeaders.add(l7.HTTPHeaders)
	e.dnsQuery.add(l7.DNSQuery)
	e.dnsRCode = append(e.dnsRCode, l7.DNSRCode)
	e.dnsQTypes.add(l7.DNSQTypes)
	e.dnsRRTypes.add(l7.DNSRRTypes)
	e.dnsIPs.add(l7.DNSIPs)
	e.dnsTTL = append(e.dnsTTL, l7.DNSTTL)
	e.dnsCNAMEs.add(l7.DNSCNAMEs)
	e.dnsObsSource.add(l7.DNSObservationSource)
	e.kafkaAPIKey.add(l7.KafkaAPIKey)
	e.kafkaAPIVersion = append(e.kafkaAPIVersion, l7.KafkaAPIVersion)
	e.kafkaCorrID = append(e.kafkaCorrID, l7.KafkaCorrelationID)
	e.kafkaTopic.add(l7.KafkaTopic)
	e.kafkaErrorCode = append(e.kafkaErrorCode, l7.KafkaErrorCode)
	e.kafkaClientID.add(l7.KafkaClientID)
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
	return err
}

// Encode appends to dst one Arrow IPC stream holding flows, in order: the
// schema message, one dictionary batch per dictionary column, one record
// batch with len(flows) rows, and the end-of-stream marker. Every call
// writes a complete, self-describing stream. Flows are not retained.
func (e *Encoder) Encode(dst []byte, flows []Flow) ([]byte, error) {
	if int64(len(flows)) > 1<<31-1 {
		return dst, fmt.Errorf("encode flows: %d rows do not fit one record batch", len(flows))
	}
	e.reset()
	if err := e.addRows(flows); err != nil {
		return dst, err
	}
	for _, c := range e.enums {
		if c != nil && c.full {
			return dst, errors.New("encode flows: more than 32767 distinct values in an enum column")
		}
	}
	e.w.startBatch()
	if err := e.emit(e.w, len(flows)); err != nil {
		e.w.dicts = e.w.dicts[:0]
		return dst, err
	}
	return e.w.finish(dst, len(flows)), nil
}

// errColumnTooBig is panicked by strCol.add when a column's values exceed
// the 2 GiB an Arrow utf8 column can address; addRows turns it into an error.
var errColumnTooBig = errors.New("encode flows: a string column exceeds 2 GiB; send smaller batches")

func (e *Encoder) addRows(flows []Flow) (err error) {
	defer func() {
		if r := recover(); r != nil {
			if r != errColumnTooBig {
				panic(r)
			}
			err = errColumnTooBig
		}
	}()
	for i := range flows {
		e.addRow(&flows[i])
	}
	return nil
}
