package spool

import (
	"encoding/binary"
	"errors"
	"hash/crc32"

	"github.com/flowbus/flowbus/schemas"
)

// headerSize is the record header: length, CRC of the length, CRC of the payload.
const headerSize = 12

// maxRecord bounds a record's payload; a larger length is treated as corrupt.
const maxRecord = 1 << 30

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// errBadPayload reports a payload that passed its CRC but does not decode.
var errBadPayload = errors.New("spool record payload does not decode")

// appendRecord appends the framed record of m to dst.
func appendRecord(dst []byte, m *schemas.Message) []byte {
	start := len(dst)
	dst = append(dst, make([]byte, headerSize)...)
	dst = appendString(dst, m.Key)
	dst = appendString(dst, m.Node)
	dst = appendString(dst, m.Run)
	dst = binary.AppendUvarint(dst, m.Seq)
	dst = binary.AppendVarint(dst, int64(m.Rows))
	dst = binary.AppendVarint(dst, m.FirstTS)
	dst = binary.AppendVarint(dst, m.LastTS)
	dst = append(dst, m.Value...)
	payload := dst[start+headerSize:]
	h := dst[start : start+headerSize]
	binary.LittleEndian.PutUint32(h[0:4], uint32(len(payload)))
	binary.LittleEndian.PutUint32(h[4:8], crc32.Checksum(h[0:4], castagnoli))
	binary.LittleEndian.PutUint32(h[8:12], crc32.Checksum(payload, castagnoli))
	return dst
}

func appendString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

// header is a parsed record header.
type header struct {
	length  int64
	lenOK   bool // the length's own CRC holds
	payload uint32
}

func parseHeader(b []byte) header {
	return header{
		length:  int64(binary.LittleEndian.Uint32(b[0:4])),
		lenOK:   crc32.Checksum(b[0:4], castagnoli) == binary.LittleEndian.Uint32(b[4:8]),
		payload: binary.LittleEndian.Uint32(b[8:12]),
	}
}

func payloadOK(h header, payload []byte) bool {
	return crc32.Checksum(payload, castagnoli) == h.payload
}

// decodePayload decodes a record payload into a Message whose strings and
// Value do not alias b.
func decodePayload(b []byte) (schemas.Message, error) {
	var m schemas.Message
	var ok bool
	if m.Key, b, ok = readString(b); !ok {
		return m, errBadPayload
	}
	if m.Node, b, ok = readString(b); !ok {
		return m, errBadPayload
	}
	if m.Run, b, ok = readString(b); !ok {
		return m, errBadPayload
	}
	var n int
	if m.Seq, n = binary.Uvarint(b); n <= 0 {
		return m, errBadPayload
	}
	b = b[n:]
	var v [3]int64
	for i := range v {
		if v[i], n = binary.Varint(b); n <= 0 {
			return m, errBadPayload
		}
		b = b[n:]
	}
	m.Rows, m.FirstTS, m.LastTS = int(v[0]), v[1], v[2]
	m.Value = append([]byte(nil), b...)
	return m, nil
}

func readString(b []byte) (string, []byte, bool) {
	l, n := binary.Uvarint(b)
	if n <= 0 || uint64(len(b)-n) < l {
		return "", b, false
	}
	return string(b[n : n+int(l)]), b[n+int(l):], true
}
