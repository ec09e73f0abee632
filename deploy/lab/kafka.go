package lab

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/kversion"
)

// Kafka roles of a kafka client edge.
const (
	KafkaProduce = "produce" // each tick produces one record, synchronously
	KafkaConsume = "consume" // each tick polls what the client fetched
)

// startKafka runs the lab's Kafka server on one pod: a single-broker kfake
// cluster per address (IPv4 and IPv6), each listening on addr:port and
// advertising that address, with topics seeded (one partition each). A
// connection from an address in deny is reset, as listenTCP does. Close
// each cluster to stop it.
func startKafka(addrs []netip.Addr, port uint16, topics []string, deny map[netip.Addr]bool, log *slog.Logger, opts ...kfake.Opt) ([]*kfake.Cluster, error) {
	var clusters []*kfake.Cluster
	for _, a := range addrs {
		ap := netip.AddrPortFrom(a, port).String()
		listen := func(network, _ string) (net.Listener, error) {
			ln, err := net.Listen(network, ap)
			if err != nil || len(deny) == 0 {
				return ln, err
			}
			return &resetListener{Listener: ln, deny: deny, log: log}, nil
		}
		c, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(1), kfake.SeedTopics(1, topics...), kfake.ListenFn(listen)}, opts...)...)
		if err != nil {
			for _, c := range clusters {
				c.Close()
			}
			return nil, fmt.Errorf("kafka on %s: %w", ap, err)
		}
		clusters = append(clusters, c)
	}
	return clusters, nil
}

// kafkaLatency makes the broker wait latency before it handles each Produce
// and Fetch (its service time), without holding up its other connections
// (kfake's SleepControl); the other requests are answered at once.
func kafkaLatency(c *kfake.Cluster, latency time.Duration) {
	for _, key := range []kmsg.Key{kmsg.Produce, kmsg.Fetch} {
		c.ControlKey(key.Int16(), func(kmsg.Request) (kmsg.Response, error, bool) {
			c.SleepControl(func() { time.Sleep(latency) })
			return nil, nil, false // not handled: the broker answers as usual
		})
	}
}

// setupKafka makes one kgo client per family for a kafka edge. Every
// connection kgo opens goes through dialTCP (counted) and is wrapped in a
// kafkaConn, which writes the ground truth of every request on it.
func (e *edge) setupKafka(extra ...kgo.Opt) error {
	e.kafka = map[netip.Addr]*kgo.Client{}
	e.kafkaTopics = &kafkaTopicNames{ids: map[[16]byte]string{}}
	for _, a := range []netip.Addr{e.target.IPv4, e.target.IPv6} {
		opts := []kgo.Opt{
			kgo.SeedBrokers(netip.AddrPortFrom(a, e.spec.Port).String()),
			kgo.ClientID("flowbus-lab-" + e.from),
			kgo.Dialer(func(ctx context.Context, network, host string) (net.Conn, error) {
				c, err := e.dialTCP(ctx, network, host)
				if err != nil {
					return nil, err
				}
				return newKafkaConn(e, a, c), nil
			}),
			kgo.ProducerLinger(0),
			kgo.FetchMaxWait(500 * time.Millisecond),
			kgo.FetchMaxBytes(1 << 20),
			kgo.RequestRetries(0),
			kgo.RecordDeliveryTimeout(3 * time.Second),
		}
		if e.spec.KafkaVersion != "" {
			opts = append(opts, kgo.MaxVersions(kversion.FromString(e.spec.KafkaVersion)))
		}
		if e.spec.Role == KafkaConsume {
			opts = append(opts, kgo.ConsumeTopics(e.spec.Topics...), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
		}
		cl, err := kgo.NewClient(append(opts, extra...)...)
		if err != nil {
			return fmt.Errorf("kafka client to %s: %w", e.spec.To, err)
		}
		e.kafka[a] = cl
		e.closers = append(e.closers, cl.Close)
	}
	return nil
}

// kafkaRecord is the value of every record the lab produces.
type kafkaRecord struct {
	From string `json:"from"`
	N    uint64 `json:"n"`
}

// doKafka produces one record (role produce) or polls what the client has
// fetched (role consume) and checks it: every record fetched must be one
// a lab client produced to one of the edge's topics.
func (e *edge) doKafka(addr netip.Addr, n uint64) error {
	cl := e.kafka[addr]
	if e.spec.Role == KafkaConsume {
		// One poll at a time; each waits at most 50 ms: a poll that finds
		// nothing new is an answer too.
		e.pollMu.Lock()
		defer e.pollMu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		fs := cl.PollRecords(ctx, 1000)
		for _, fe := range fs.Errors() {
			if errors.Is(fe.Err, context.DeadlineExceeded) || errors.Is(fe.Err, context.Canceled) {
				continue
			}
			return fmt.Errorf("kafka fetch %s/%d: %w", fe.Topic, fe.Partition, fe.Err)
		}
		var bad error
		fs.EachRecord(func(r *kgo.Record) {
			var v kafkaRecord
			if err := json.Unmarshal(r.Value, &v); (err != nil || v.From == "" || !slices.Contains(e.spec.Topics, r.Topic)) && bad == nil {
				bad = fmt.Errorf("kafka fetch: record %s/%d@%d %q is not one the lab produced", r.Topic, r.Partition, r.Offset, r.Value)
			}
		})
		return bad
	}
	topic := e.spec.Topics[(n/2)%uint64(len(e.spec.Topics))]
	v, _ := json.Marshal(kafkaRecord{From: e.from, N: n})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	res := cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: v})
	r, err := res.First()
	if err != nil {
		return fmt.Errorf("kafka produce to %s: %w", topic, err)
	}
	if r.Topic != topic || r.Partition != 0 || r.Offset < 0 {
		return fmt.Errorf("kafka produce to %s: acknowledged as %s/%d@%d", topic, r.Topic, r.Partition, r.Offset)
	}
	return nil
}

// kafkaTopicNames maps the topic IDs a client learned from Metadata
// responses to their names, for requests that name topics by ID.
type kafkaTopicNames struct {
	mu  sync.Mutex
	ids map[[16]byte]string
}

func (k *kafkaTopicNames) name(id [16]byte) string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.ids[id]
}

func (k *kafkaTopicNames) learn(id [16]byte, name string) {
	if id == ([16]byte{}) || name == "" {
		return
	}
	k.mu.Lock()
	k.ids[id] = name
	k.mu.Unlock()
}

// kafkaConn is a connection of a kgo client that writes the ground truth
// of every request on it: kgo writes each request with one Write, so the
// request header (api key, version, correlation ID) and body (topics) are
// read from it; responses are framed from what kgo reads and paired by
// correlation ID. A request still waiting when the connection closes is
// written unanswered (Status -1).
type kafkaConn struct {
	net.Conn
	e    *edge
	addr netip.Addr

	mu      sync.Mutex
	local   uint16
	pending []*kafkaPending
	in      []byte    // bytes of the response frames not yet whole
	inStart time.Time // when the first byte of in was read
	closed  bool
}

type kafkaPending struct {
	rec   TruthRecord
	start time.Time // just before the request's write
	key   int16
	flex  bool // the response header has tagged fields
}

func newKafkaConn(e *edge, addr netip.Addr, c net.Conn) *kafkaConn {
	k := &kafkaConn{Conn: c, e: e, addr: addr}
	if ta, ok := c.LocalAddr().(*net.TCPAddr); ok {
		k.local = uint16(ta.Port)
	}
	return k
}

func (k *kafkaConn) Write(b []byte) (int, error) {
	start := time.Now()
	n, err := k.Conn.Write(b)
	p, perr := k.parseRequest(b)
	if perr != nil {
		return n, err // not a request kmsg knows: nothing to record
	}
	p.rec.Time, p.start = start.UnixNano(), start
	if err != nil {
		p.rec.Error = "write: " + err.Error()
		k.e.truth.write(p.rec)
		return n, err
	}
	k.mu.Lock()
	k.pending = append(k.pending, p)
	k.mu.Unlock()
	return n, err
}

// parseRequest reads one request frame.
func (k *kafkaConn) parseRequest(b []byte) (*kafkaPending, error) {
	if len(b) < 14 || int(binary.BigEndian.Uint32(b)) != len(b)-4 {
		return nil, errors.New("not one whole request")
	}
	key, ver := int16(binary.BigEndian.Uint16(b[4:])), int16(binary.BigEndian.Uint16(b[6:]))
	corr := int32(binary.BigEndian.Uint32(b[8:]))
	req := kmsg.RequestForKey(key)
	if req == nil {
		return nil, fmt.Errorf("api key %d", key)
	}
	req.SetVersion(ver)
	p := &kafkaPending{rec: TruthRecord{To: k.e.spec.To, Family: familyOf(k.addr), Transport: "tcp", LocalPort: k.local, ServerPort: k.e.spec.Port,
		Proto: ProtoKafka, Method: kmsg.NameForKey(key), Status: -1, APIVersion: ver, CorrelationID: corr},
		key: key, flex: req.IsFlexible() && key != int16(kmsg.ApiVersions)}
	body := b[12:]
	if l := int16(binary.BigEndian.Uint16(body)); l > 0 && int(l) <= len(body)-2 { // client ID, nullable
		body = body[2+int(l):]
	} else if l > 0 {
		return p, nil // cut: a request without topics
	} else {
		body = body[2:]
	}
	if req.IsFlexible() {
		var err error
		if body, err = skipTags(body); err != nil {
			return p, nil
		}
	}
	if err := req.ReadFrom(body); err != nil {
		return p, nil
	}
	var wire, names []string
	add := func(name string, id [16]byte) {
		if name != "" {
			wire = append(wire, name)
		} else {
			name = k.e.kafkaTopics.name(id)
		}
		if name != "" {
			names = append(names, name)
		}
	}
	switch r := req.(type) {
	case *kmsg.ProduceRequest:
		for _, t := range r.Topics {
			add(t.Topic, t.TopicID)
		}
	case *kmsg.FetchRequest:
		for _, t := range r.Topics {
			add(t.Topic, t.TopicID)
		}
	case *kmsg.MetadataRequest:
		for _, t := range r.Topics {
			if t.Topic != nil {
				add(*t.Topic, t.TopicID)
			} else {
				add("", t.TopicID)
			}
		}
	case *kmsg.ListOffsetsRequest:
		for _, t := range r.Topics {
			add(t.Topic, [16]byte{})
		}
	}
	p.rec.Path, p.rec.Topics = strings.Join(wire, ","), names
	return p, nil
}

// skipTags skips a tagged-field section.
func skipTags(b []byte) ([]byte, error) {
	n, l := binary.Uvarint(b)
	if l <= 0 {
		return nil, errors.New("tags")
	}
	b = b[l:]
	for range n {
		_, l := binary.Uvarint(b) // tag
		if l <= 0 {
			return nil, errors.New("tag")
		}
		b = b[l:]
		size, l := binary.Uvarint(b)
		if l <= 0 || uint64(len(b)-l) < size {
			return nil, errors.New("tag size")
		}
		b = b[l+int(size):]
	}
	return b, nil
}

func (k *kafkaConn) Read(b []byte) (int, error) {
	n, err := k.Conn.Read(b)
	if n == 0 {
		return n, err
	}
	now := time.Now()
	if s, ok := k.Conn.(*stampConn); ok {
		now = s.lastArrival() // the kernel's receive time of its first byte
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if len(k.in) == 0 {
		k.inStart = now
	}
	k.in = append(k.in, b[:n]...)
	for len(k.in) >= 4 {
		size := int(binary.BigEndian.Uint32(k.in))
		if len(k.in) < 4+size {
			break
		}
		k.response(k.in[4:4+size], k.inStart)
		k.in = k.in[4+size:]
		k.inStart = now // the next frame's first byte came with this read
	}
	if len(k.in) == 0 {
		k.in = nil
	}
	return n, err
}

// response pairs one response frame with its request and writes it.
func (k *kafkaConn) response(frame []byte, first time.Time) {
	if len(frame) < 4 {
		return
	}
	corr := int32(binary.BigEndian.Uint32(frame))
	i := slices.IndexFunc(k.pending, func(p *kafkaPending) bool { return p.rec.CorrelationID == corr })
	if i < 0 {
		return
	}
	p := k.pending[i]
	k.pending = slices.Delete(k.pending, i, i+1)
	p.rec.LatencyNs = int64(first.Sub(p.start))
	p.rec.Status = 0
	body := frame[4:]
	var err error
	if p.flex {
		body, err = skipTags(body)
	}
	if err == nil {
		resp := kmsg.ResponseForKey(p.key)
		resp.SetVersion(p.rec.APIVersion)
		if err = resp.ReadFrom(body); err == nil {
			p.rec.Status = int(kafkaErrorCode(resp, k.e.kafkaTopics))
		}
	}
	if err != nil {
		p.rec.Error = "response does not decode: " + err.Error()
	}
	k.e.truth.write(p.rec)
}

// kafkaErrorCode returns a response's error code: the first non-zero of
// its top level, then of its topics and partitions, for the responses the
// lab's clients get (0 for others); it learns topic IDs from Metadata.
func kafkaErrorCode(resp kmsg.Response, names *kafkaTopicNames) int16 {
	first := func(codes ...int16) int16 {
		for _, c := range codes {
			if c != 0 {
				return c
			}
		}
		return 0
	}
	var codes []int16
	switch r := resp.(type) {
	case *kmsg.ProduceResponse:
		for _, t := range r.Topics {
			for _, p := range t.Partitions {
				codes = append(codes, p.ErrorCode)
			}
		}
	case *kmsg.FetchResponse:
		codes = append(codes, r.ErrorCode)
		for _, t := range r.Topics {
			for _, p := range t.Partitions {
				codes = append(codes, p.ErrorCode)
			}
		}
	case *kmsg.MetadataResponse:
		for _, t := range r.Topics {
			if t.Topic != nil {
				names.learn(t.TopicID, *t.Topic)
			}
			codes = append(codes, t.ErrorCode)
		}
	case *kmsg.ApiVersionsResponse:
		codes = append(codes, r.ErrorCode)
	case *kmsg.InitProducerIDResponse:
		codes = append(codes, r.ErrorCode)
	case *kmsg.FindCoordinatorResponse:
		codes = append(codes, r.ErrorCode)
		for _, c := range r.Coordinators {
			codes = append(codes, c.ErrorCode)
		}
	case *kmsg.ListOffsetsResponse:
		for _, t := range r.Topics {
			for _, p := range t.Partitions {
				codes = append(codes, p.ErrorCode)
			}
		}
	case *kmsg.OffsetForLeaderEpochResponse:
		for _, t := range r.Topics {
			for _, p := range t.Partitions {
				codes = append(codes, p.ErrorCode)
			}
		}
	}
	return first(codes...)
}

// Close writes the requests still waiting as unanswered, then closes.
func (k *kafkaConn) Close() error {
	k.mu.Lock()
	if !k.closed {
		k.closed = true
		for _, p := range k.pending {
			p.rec.Error = "no response before the connection closed"
			k.e.truth.write(p.rec)
		}
		k.pending = nil
	}
	k.mu.Unlock()
	return k.Conn.Close()
}
