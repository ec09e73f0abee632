package schemas

import "strconv"

// Bus message headers (schemas/README.md "Bus message"). Kafka carries them as record
// headers, NATS as message headers.
const (
	HeaderContentType = "content-type"
	HeaderSchema      = "flowbus-schema"
	HeaderNode        = "flowbus-node"
	HeaderRows        = "flowbus-rows"
	HeaderFirstTS     = "flowbus-first-ts" // Unix ns of the earliest flow in the message
	HeaderLastTS      = "flowbus-last-ts"  // Unix ns of the latest flow in the message
	HeaderSeq         = "flowbus-seq"      // per-node message sequence, see Message.Seq

	ContentTypeArrowStream = "application/vnd.apache.arrow.stream"
)

// Message is one bus message: a self-describing Arrow IPC stream of flows
// (Value) and its metadata. It is what the agent's exporter hands to a sink
// and what a sink's consumer hands to the aggregator.
type Message struct {
	Key     string // partition key, Flow.PartitionKey of every flow in it
	Node    string // node that produced it
	Run     string // producer run ID (start time); with Seq, unique per message
	Seq     uint64 // sequence number within Run, from 1, in publish order
	Rows    int
	FirstTS int64
	LastTS  int64
	Value   []byte // Arrow IPC stream, schema SchemaVersion
}

// ID is the message's globally unique, stable identity ("node/run/seq"): the
// NATS Nats-Msg-Id, so a message replayed from the spool is deduplicated.
func (m *Message) ID() string {
	return m.Node + "/" + m.Run + "/" + strconv.FormatUint(m.Seq, 10)
}

// Headers returns the message's headers as name/value pairs, in the order
// of schemas/README.md "Bus message".
func (m *Message) Headers() [][2]string {
	return [][2]string{
		{HeaderContentType, ContentTypeArrowStream},
		{HeaderSchema, SchemaVersion},
		{HeaderNode, m.Node},
		{HeaderRows, strconv.Itoa(m.Rows)},
		{HeaderFirstTS, strconv.FormatInt(m.FirstTS, 10)},
		{HeaderLastTS, strconv.FormatInt(m.LastTS, 10)},
		{HeaderSeq, m.Run + "/" + strconv.FormatUint(m.Seq, 10)},
	}
}

// PartitionOf maps a partition key onto one of n partitions with Kafka's
// default partitioner (murmur2 of the key, positive, modulo n), so that Kafka
// and NATS place a key in the same partition number.
func PartitionOf(key string, n int) int {
	if n <= 1 {
		return 0
	}
	return int(murmur2([]byte(key))&0x7fffffff) % n
}

// murmur2 is Kafka's murmur2 hash (org.apache.kafka.common.utils.Utils.murmur2).
func murmur2(data []byte) uint32 {
	const (
		seed uint32 = 0x9747b28c
		m    uint32 = 0x5bd1e995
		r           = 24
	)
	length := len(data)
	h := seed ^ uint32(length)
	length4 := length / 4
	for i := 0; i < length4; i++ {
		i4 := i * 4
		k := uint32(data[i4]) | uint32(data[i4+1])<<8 | uint32(data[i4+2])<<16 | uint32(data[i4+3])<<24
		k *= m
		k ^= k >> r
		k *= m
		h *= m
		h ^= k
	}
	switch length % 4 {
	case 3:
		h ^= uint32(data[(length&^3)+2]) << 16
		fallthrough
	case 2:
		h ^= uint32(data[(length&^3)+1]) << 8
		fallthrough
	case 1:
		h ^= uint32(data[length&^3])
		h *= m
	}
	h ^= h >> 13
	h *= m
	h ^= h >> 15
	return h
}
