package kafka

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"testing"

	flowpb "github.com/cilium/cilium/api/v1/flow"
	"github.com/google/go-cmp/cmp"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/flowbus/flowbus/agent/l7"
	"github.com/flowbus/flowbus/schemas"
)

const client = "flowbus-test"

// reqFrame is a request as a client writes it.
func reqFrame(r kmsg.Request, corr int32) []byte {
	return kmsg.NewRequestFormatter(kmsg.FormatterClientID(client)).AppendRequest(nil, r, corr)
}

// respFrame is a response as a broker writes it.
func respFrame(r kmsg.Response, corr int32) []byte {
	b := binary.BigEndian.AppendUint32(make([]byte, 4), uint32(corr))
	if r.IsFlexible() && r.Key() != 18 {
		b = append(b, 0)
	}
	b = r.AppendTo(b)
	binary.BigEndian.PutUint32(b, uint32(len(b)-4))
	return b
}

func produceReq(ver int16, acks int16, records int, topics ...string) *kmsg.ProduceRequest {
	r := kmsg.NewPtrProduceRequest()
	r.Version, r.Acks, r.TimeoutMillis = ver, acks, 5000
	for _, t := range topics {
		rt := kmsg.NewProduceRequestTopic()
		rt.Topic = t
		p := kmsg.NewProduceRequestTopicPartition()
		p.Records = bytes.Repeat([]byte{0xab}, records)
		rt.Partitions = append(rt.Partitions, p)
		r.Topics = append(r.Topics, rt)
	}
	return r
}

func produceResp(ver int16, code int16, topics ...string) *kmsg.ProduceResponse {
	r := kmsg.NewPtrProduceResponse()
	r.Version = ver
	for i, t := range topics {
		rt := kmsg.NewProduceResponseTopic()
		rt.Topic = t
		for j := range 2 {
			p := kmsg.NewProduceResponseTopicPartition()
			p.Partition = int32(j)
			if i == len(topics)-1 && j == 1 {
				p.ErrorCode = code
			}
			rt.Partitions = append(rt.Partitions, p)
		}
		r.Topics = append(r.Topics, rt)
	}
	return r
}

func fetchReq(ver int16, topics ...string) *kmsg.FetchRequest {
	r := kmsg.NewPtrFetchRequest()
	r.Version = ver
	for _, t := range topics {
		rt := kmsg.NewFetchRequestTopic()
		rt.Topic = t
		rt.Partitions = append(rt.Partitions, kmsg.NewFetchRequestTopicPartition())
		r.Topics = append(r.Topics, rt)
	}
	return r
}

func fetchResp(ver int16, code int16, topics ...string) *kmsg.FetchResponse {
	r := kmsg.NewPtrFetchResponse()
	r.Version = ver
	for _, t := range topics {
		rt := kmsg.NewFetchResponseTopic()
		rt.Topic = t
		p := kmsg.NewFetchResponseTopicPartition()
		p.ErrorCode = code
		rt.Partitions = append(rt.Partitions, p)
		r.Topics = append(r.Topics, rt)
	}
	return r
}

func metadataReq(ver int16, topics ...string) *kmsg.MetadataRequest {
	r := kmsg.NewPtrMetadataRequest()
	r.Version = ver
	for _, t := range topics {
		rt := kmsg.NewMetadataRequestTopic()
		rt.Topic = kmsg.StringPtr(t)
		r.Topics = append(r.Topics, rt)
	}
	return r
}

func metadataResp(ver int16, code int16, topics ...string) *kmsg.MetadataResponse {
	r := kmsg.NewPtrMetadataResponse()
	r.Version = ver
	for _, t := range topics {
		rt := kmsg.NewMetadataResponseTopic()
		rt.Topic = kmsg.StringPtr(t)
		rt.ErrorCode = code
		r.Topics = append(r.Topics, rt)
	}
	return r
}

// seg is one segment of a direction's stream.
type seg struct {
	dir  l7.Direction
	time int64
	data []byte
}

// chunks cuts segments into chunks of at most mss bytes whose heads hold
// at most head bytes, at their stream offsets.
func chunks(segs []seg, mss, head int) []l7.Chunk {
	var off [2]uint64
	var out []l7.Chunk
	for _, s := range segs {
		for b := s.data; len(b) > 0; {
			n := min(len(b), mss)
			h := b[:min(n, head)]
			out = append(out, l7.Chunk{Dir: s.dir, TimeNs: s.time, Offset: off[s.dir], Len: uint32(n), Head: bytes.Clone(h)})
			off[s.dir] += uint64(n)
			b = b[n:]
		}
	}
	return out
}

// run feeds chunks to a new parser and closes it, giving the exchanges
// and the stats. Each head is overwritten after Feed, as the capture
// reuses it.
func run(opts Options, cs []l7.Chunk) ([]l7.Exchange, l7.Stats) {
	var st l7.Stats
	var got []l7.Exchange
	emit := func(e *l7.Exchange) { got = append(got, *e) }
	p := New(&st, opts)
	cs = append([]l7.Chunk(nil), cs...)
	for i := range cs {
		cs[i].Head = bytes.Clone(cs[i].Head)
		p.Feed(&cs[i], emit)
		for j := range cs[i].Head {
			cs[i].Head[j] = 0xee
		}
	}
	p.Close(emit)
	return got, st
}

func ex(req, resp int64, key string, ver int16, corr int32, topic string, code int16) l7.Exchange {
	e := l7.Exchange{RequestNs: req, ResponseNs: resp, L7: schemas.L7{
		Type: flowpb.L7FlowType_RESPONSE, Protocol: schemas.L7Kafka, KafkaAPIKey: key,
		KafkaAPIVersion: int32(ver), KafkaCorrelationID: corr, KafkaTopic: topic,
		KafkaErrorCode: int32(code), KafkaClientID: client,
	}}
	if resp == 0 {
		e.L7.Type = flowpb.L7FlowType_REQUEST
	}
	return e
}

func check(t *testing.T, got []l7.Exchange, st l7.Stats, want []l7.Exchange, wantSt l7.Stats) {
	t.Helper()
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("exchanges (-want +got):\n%s", d)
	}
	if st != wantSt {
		t.Errorf("stats %v; want %v", st, wantSt)
	}
}

func TestRequestsAndResponsesAcrossVersions(t *testing.T) {
	type tc struct {
		name      string
		req       kmsg.Request
		resp      kmsg.Response
		key       string
		topics    []string
		code      int16
		wantTopic []string
	}
	var cases []tc
	for _, v := range []int16{3, 7, 8, 9, 11} {
		cases = append(cases, tc{fmt.Sprintf("produce v%d", v), produceReq(v, -1, 40, "orders", "payments"),
			produceResp(v, 6, "orders", "payments"), "produce", nil, 6, []string{"orders", "payments"}})
	}
	for _, v := range []int16{4, 7, 11, 12} {
		cases = append(cases, tc{fmt.Sprintf("fetch v%d", v), fetchReq(v, "orders"), fetchResp(v, 1, "orders"),
			"fetch", nil, 1, []string{"orders"}})
	}
	for _, v := range []int16{1, 4, 8, 9, 12} {
		cases = append(cases, tc{fmt.Sprintf("metadata v%d", v), metadataReq(v, "a", "b", "c"), metadataResp(v, 3, "a", "b"),
			"metadata", nil, 3, []string{"a", "b", "c"}})
	}
	for _, v := range []int16{0, 2, 3} {
		req := kmsg.NewPtrApiVersionsRequest()
		req.Version = v
		if v >= 3 {
			req.ClientSoftwareName, req.ClientSoftwareVersion = "franz-go", "1.0"
		}
		resp := kmsg.NewPtrApiVersionsResponse()
		resp.Version, resp.ErrorCode = v, 35
		cases = append(cases, tc{fmt.Sprintf("apiversions v%d", v), req, resp, "apiversions", nil, 35, []string{""}})
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			segs := []seg{
				{l7.FromClient, 1000, reqFrame(c.req, 41)},
				{l7.FromServer, 1500, respFrame(c.resp, 41)},
			}
			var want []l7.Exchange
			for _, topic := range c.wantTopic {
				want = append(want, ex(1000, 1500, c.key, c.req.GetVersion(), 41, topic, c.code))
			}
			got, st := run(Options{}, chunks(segs, 1<<16, 1<<16))
			check(t, got, st, want, l7.Stats{})
		})
	}
}

// A Produce request longer than the head: its topic names come from the
// head, its records are skipped by their lengths.
func TestProduceLongerThanTheHead(t *testing.T) {
	for _, v := range []int16{3, 8, 9, 12} {
		req := reqFrame(produceReq(v, 1, 5000, "orders"), 7)
		resp := respFrame(produceResp(v, 0, "orders"), 7)
		segs := []seg{{l7.FromClient, 10, req}, {l7.FromServer, 30, resp}, {l7.FromClient, 40, reqFrame(produceReq(v, 1, 10, "x"), 8)}}
		got, st := run(Options{}, chunks(segs, 1448, 128))
		want := []l7.Exchange{ex(10, 30, "produce", v, 7, "orders", 0), ex(40, 0, "produce", v, 8, "x", 0)}
		check(t, got, st, want, l7.Stats{})

		// Two topics: the second is past the first's records.
		req = reqFrame(produceReq(v, 1, 5000, "orders", "refunds"), 7)
		got, st = run(Options{}, chunks([]seg{{l7.FromClient, 10, req}, {l7.FromServer, 30, resp}}, 1448, 128))
		check(t, got, st, []l7.Exchange{ex(10, 30, "produce", v, 7, "orders", 0)}, l7.Stats{l7.ReasonTruncated: 1})
	}
}

func TestProduceWithoutAcksIsNotAnswered(t *testing.T) {
	segs := []seg{
		{l7.FromClient, 10, reqFrame(produceReq(7, 0, 3000, "logs"), 1)},
		{l7.FromClient, 20, reqFrame(fetchReq(11, "logs"), 2)},
		{l7.FromServer, 30, respFrame(fetchResp(11, 0, "logs"), 2)},
	}
	for _, head := range []int{64, 1 << 16} {
		got, st := run(Options{}, chunks(segs, 1<<16, head))
		want := []l7.Exchange{ex(10, 0, "produce", 7, 1, "logs", 0)}
		if head == 64 { // the fetch's topic is past the 64 bytes kept
			want = append(want, ex(20, 30, "fetch", 11, 2, "", 0))
			check(t, got, st, want, l7.Stats{l7.ReasonTruncated: 1})
			continue
		}
		want = append(want, ex(20, 30, "fetch", 11, 2, "logs", 0))
		check(t, got, st, want, l7.Stats{})
	}
}

// Every way of cutting the streams into segments gives the same exchanges
// when the heads hold whole segments: a length prefix split over
// segments, several frames in one segment, one byte a segment.
func TestSegmentationDoesNotMatter(t *testing.T) {
	var cli, srv []byte
	var want []l7.Exchange
	for i := int32(0); i < 6; i++ {
		cli = append(cli, reqFrame(metadataReq(9, "t1", "t2"), 100+i)...)
		cli = append(cli, reqFrame(fetchReq(12, "t3"), 200+i)...)
		srv = append(srv, respFrame(metadataResp(9, 0, "t1"), 100+i)...)
		srv = append(srv, respFrame(fetchResp(12, 0, "t3"), 200+i)...)
		want = append(want, ex(1, 2, "metadata", 9, 100+i, "t1", 0), ex(1, 2, "metadata", 9, 100+i, "t2", 0),
			ex(1, 2, "fetch", 12, 200+i, "t3", 0))
	}
	for _, mss := range []int{1, 2, 3, 5, 7, 64, 1448, 1 << 20} {
		// The client sends everything, then the server answers.
		got, st := run(Options{}, chunks([]seg{{l7.FromClient, 1, cli}, {l7.FromServer, 2, srv}}, mss, mss))
		check(t, got, st, want, l7.Stats{})
	}
}

// Heads that cut the header: the exchange is kept as far as the head
// goes, and counted.
func TestHeadsCuttingTheHeader(t *testing.T) {
	req := reqFrame(fetchReq(11, "orders"), 9)
	resp := respFrame(fetchResp(11, 0, "orders"), 9)
	noClient := ex(1, 2, "fetch", 11, 9, "", 0)
	noClient.L7.KafkaClientID = ""
	for _, tc := range []struct {
		head int
		want []l7.Exchange
		st   l7.Stats
	}{
		{2, nil, l7.Stats{l7.ReasonTruncated: 1, l7.ReasonLost: 1}},                           // not even the length
		{10, nil, l7.Stats{l7.ReasonTruncated: 1, l7.ReasonUnpaired: 1}},                      // no correlation ID
		{14, []l7.Exchange{noClient}, l7.Stats{l7.ReasonTruncated: 1}},                        // no client ID, no topic
		{40, []l7.Exchange{ex(1, 2, "fetch", 11, 9, "", 0)}, l7.Stats{l7.ReasonTruncated: 1}}, // no topic
	} {
		got, st := run(Options{}, chunks([]seg{{l7.FromClient, 1, req}, {l7.FromServer, 2, resp}}, 1448, tc.head))
		t.Logf("head %d", tc.head)
		check(t, got, st, tc.want, tc.st)
	}
}

func TestUnansweredUnpairedAndOutOfOrder(t *testing.T) {
	segs := []seg{
		{l7.FromClient, 1, reqFrame(metadataReq(9, "a"), 1)},
		{l7.FromClient, 2, reqFrame(metadataReq(9, "b"), 2)},
		{l7.FromClient, 3, reqFrame(metadataReq(9, "c"), 3)},
		{l7.FromServer, 4, respFrame(metadataResp(9, 0, "b"), 2)},  // 1 is passed over: never answered
		{l7.FromServer, 5, respFrame(metadataResp(9, 0, "z"), 99)}, // nobody asked
	}
	got, st := run(Options{}, chunks(segs, 1448, 1448))
	want := []l7.Exchange{
		ex(1, 0, "metadata", 9, 1, "a", 0), ex(2, 4, "metadata", 9, 2, "b", 0), ex(3, 0, "metadata", 9, 3, "c", 0),
	}
	check(t, got, st, want, l7.Stats{l7.ReasonUnpaired: 1})
}

func TestPendingCap(t *testing.T) {
	var segs []seg
	for i := range int32(5) {
		segs = append(segs, seg{l7.FromClient, int64(i + 1), reqFrame(metadataReq(4, "t"), i)})
	}
	segs = append(segs, seg{l7.FromServer, 9, respFrame(metadataResp(4, 0), 1)})
	got, st := run(Options{MaxPending: 2}, chunks(segs, 1448, 1448))
	want := []l7.Exchange{
		ex(3, 0, "metadata", 4, 2, "t", 0), ex(4, 0, "metadata", 4, 3, "t", 0), ex(5, 0, "metadata", 4, 4, "t", 0),
		ex(1, 0, "metadata", 4, 0, "t", 0), ex(2, 9, "metadata", 4, 1, "t", 0),
	}
	check(t, got, st, want, l7.Stats{l7.ReasonStateCap: 3})
}

func TestGaps(t *testing.T) {
	big := reqFrame(produceReq(9, -1, 9000, "orders"), 1)
	cs := chunks([]seg{
		{l7.FromClient, 1, big},
		{l7.FromClient, 2, reqFrame(metadataReq(9, "m"), 2)},
		{l7.FromClient, 3, reqFrame(metadataReq(9, "n"), 3)},
	}, 1448, 100)
	last := len(cs) - 1
	produce := ex(1, 0, "produce", 9, 1, "orders", 0)
	m, n := ex(2, 0, "metadata", 9, 2, "m", 0), ex(3, 0, "metadata", 9, 3, "n", 0)
	drop := func(i int) []l7.Chunk { return append(append([]l7.Chunk{}, cs[:i]...), cs[i+1:]...) }

	// Gaps inside the produce's records, up to its very end: harmless,
	// counted.
	got, st := run(Options{}, drop(2))
	check(t, got, st, []l7.Exchange{produce, m, n}, l7.Stats{l7.ReasonGap: 1})
	got, st = run(Options{}, drop(last-2))
	check(t, got, st, []l7.Exchange{produce, m, n}, l7.Stats{l7.ReasonGap: 1})
	// A gap over a whole frame: the connection is given up.
	got, st = run(Options{}, drop(last-1))
	check(t, got, st, []l7.Exchange{produce}, l7.Stats{l7.ReasonGap: 1, l7.ReasonLost: 1})
	// A chunk overlapping the last one is not the capture's contract.
	overlap := append([]l7.Chunk{}, cs...)
	overlap[1].Offset--
	got, st = run(Options{}, overlap)
	check(t, got, st, []l7.Exchange{produce}, l7.Stats{l7.ReasonGap: 1, l7.ReasonLost: 1})
}

func TestFrameTooLargeIsMalformed(t *testing.T) {
	b := []byte{0x10, 0, 0, 0, 0, 3, 0, 9, 0, 0, 0, 1}
	cs := []l7.Chunk{{Dir: l7.FromClient, TimeNs: 1, Len: uint32(len(b)), Head: b},
		{Dir: l7.FromClient, TimeNs: 2, Offset: uint64(len(b)), Len: 10, Head: b[:10]}}
	got, st := run(Options{}, cs)
	check(t, got, st, nil, l7.Stats{l7.ReasonMalformed: 1, l7.ReasonLost: 1})
}

func TestAPIKeyNames(t *testing.T) {
	for k, want := range map[int16]string{0: "produce", 1: "fetch", 3: "metadata", 18: "apiversions", 33: "alterconfigs", 34: "34", -1: "-1"} {
		if got := APIKeyName(k); got != want {
			t.Errorf("key %d: %q; want %q", k, got, want)
		}
	}
}

// Random segment sizes and head sizes never panic, and with heads holding
// whole segments give the exchanges of one big segment.
func TestRandomChunkings(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var cli, srv []byte
	for i := int32(0); i < 20; i++ {
		cli = append(cli, reqFrame(produceReq(int16(3+i%10), -1, int(rng.IntN(3000)), "p"), i)...)
		srv = append(srv, respFrame(produceResp(int16(3+i%10), 0, "p"), i)...)
	}
	segs := []seg{{l7.FromClient, 1, cli}, {l7.FromServer, 2, srv}}
	want, _ := run(Options{}, chunks(segs, 1<<20, 1<<20))
	if len(want) != 20 {
		t.Fatalf("%d exchanges; want 20", len(want))
	}
	for range 200 {
		mss := 1 + rng.IntN(2000)
		got, st := run(Options{}, chunks(segs, mss, mss))
		check(t, got, st, want, l7.Stats{})
		run(Options{}, chunks(segs, mss, rng.IntN(mss+1)))
	}
}

// ControlledShutdown v0 has a header without client ID; a key this parser
// does not know keeps its header; a response with a bad body is malformed.
func TestHeaderVariants(t *testing.T) {
	// (kmsg's formatter writes no body nor length for it: by hand.)
	cs0 := []byte{0, 0, 0, 12, 0, 7, 0, 0, 0, 0, 0, 5, 0, 0, 0, 3}
	unknown := []byte{0, 0, 0, 14, 0, 99, 0, 1, 0, 0, 0, 8, 0, 2, 'i', 'd', 0xff, 0xff}
	badResp := []byte{0, 0, 0, 6, 0, 0, 0, 7, 0xff, 0xff} // ApiVersions' body is not 2 bytes
	av := kmsg.NewPtrApiVersionsRequest()
	av.Version = 1
	segs := []seg{
		{l7.FromClient, 1, cs0},
		{l7.FromClient, 2, unknown},
		{l7.FromClient, 3, reqFrame(av, 7)},
		{l7.FromServer, 4, respFrame(kmsg.NewPtrControlledShutdownResponse(), 5)},
		{l7.FromServer, 5, []byte{0, 0, 0, 4, 0, 0, 0, 8}},
		{l7.FromServer, 6, badResp},
	}
	got, st := run(Options{}, chunks(segs, 1448, 1448))
	shutdown := ex(1, 4, "controlledshutdown", 0, 5, "", 0)
	shutdown.L7.KafkaClientID = ""
	other := ex(2, 5, "99", 1, 8, "", 0)
	other.L7.KafkaClientID = "id"
	check(t, got, st, []l7.Exchange{shutdown, other, ex(3, 6, "apiversions", 1, 7, "", 0)}, l7.Stats{l7.ReasonMalformed: 1})
}
