package flowcodec

import (
	"encoding/binary"
	"fmt"

	"github.com/klauspost/compress/zstd"
)

// newGoZstd returns the pure-Go zstd encoder the Encoder uses for small
// buffers (and for every buffer when built without cgo): level
// SpeedFastest, no checksum, and zstd's default literal handling: forcing
// Huffman coding of every block's literals shrank messages by 8–10 % but
// cost ~25 % more encode CPU at 10k rows. Measured and not kept either:
// frames without entropy coding for buffers under 8 KiB saved no CPU and
// cost 7 % more bytes at 1k rows.
func newGoZstd() (*zstd.Encoder, error) {
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1),
		zstd.WithEncoderCRC(false), zstd.WithZeroFrames(true), zstd.WithAllLitEntropyCompression(false))
	if err != nil {
		return nil, fmt.Errorf("create zstd encoder: %w", err)
	}
	return enc, nil
}

// constantByte reports whether every byte of b equals b[0].
func constantByte(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	w := uint64(b[0]) * 0x0101010101010101
	i := 0
	for ; i+8 <= len(b); i += 8 {
		if binary.LittleEndian.Uint64(b[i:]) != w {
			return false
		}
	}
	for ; i < len(b); i++ {
		if b[i] != b[0] {
			return false
		}
	}
	return true
}

// appendRLEFrame appends a zstd frame that regenerates n (> 0) copies of
// c: a single-segment frame header with the content size, then RLE blocks
// of at most 128 KiB (RFC 8878 sections 3.1.1.1 and 3.1.1.2). Any zstd
// decoder reads it; writing it costs nothing next to running a compressor
// over a column that holds one value (unset fields, empty lists' offsets).
func appendRLEFrame(dst []byte, c byte, n int) []byte {
	dst = append(dst, 0x28, 0xb5, 0x2f, 0xfd) // magic number
	const single = 1 << 5                     // Single_Segment_Flag: the window is the content
	switch {
	case n < 256:
		dst = append(dst, single, byte(n))
	case n < 256+1<<16:
		dst = binary.LittleEndian.AppendUint16(append(dst, 1<<6|single), uint16(n-256))
	case uint64(n) < 1<<32:
		dst = binary.LittleEndian.AppendUint32(append(dst, 2<<6|single), uint32(n))
	default:
		dst = binary.LittleEndian.AppendUint64(append(dst, 3<<6|single), uint64(n))
	}
	const maxBlock = 128 << 10
	for n > 0 {
		m := min(n, maxBlock)
		n -= m
		h := uint32(m)<<3 | 1<<1 // Block_Size, Block_Type RLE
		if n == 0 {
			h |= 1 // Last_Block
		}
		dst = append(dst, byte(h), byte(h>>8), byte(h>>16), c)
	}
	return dst
}

// decodeRLEFrame decodes src into dst when src is exactly one zstd frame
// made of RLE blocks only, as appendRLEFrame writes them (a single-segment
// frame whose content size is len(dst), no dictionary, no checksum, blocks
// of at most 128 KiB that regenerate len(dst) bytes in all, the last one
// flagged, nothing after it), and reports whether it did; for any other
// input it writes nothing and returns false, and the caller hands src to
// the zstd decoder, which decodes or rejects it as before. The encoder writes
// such a frame for every buffer of one repeated byte (an unset column, the
// offsets of empty lists), a good part of the buffers of a small message,
// and filling dst here costs less than a call into libzstd (cgo and frame
// setup) per buffer.
func decodeRLEFrame(dst, src []byte) bool {
	if len(src) < 4+1+1+4 || binary.LittleEndian.Uint32(src) != 0xfd2fb528 {
		return false
	}
	fhd := src[4]
	// Single_Segment_Flag set; Unused, Reserved, Content_Checksum and
	// Dictionary_ID flags clear.
	if fhd&(1<<5) == 0 || fhd&0x1f != 0 {
		return false
	}
	p := 5
	var size uint64
	switch fhd >> 6 {
	case 0:
		size = uint64(src[p])
		p++
	case 1:
		if len(src) < p+2 {
			return false
		}
		size = uint64(binary.LittleEndian.Uint16(src[p:])) + 256
		p += 2
	case 2:
		if len(src) < p+4 {
			return false
		}
		size = uint64(binary.LittleEndian.Uint32(src[p:]))
		p += 4
	default:
		if len(src) < p+8 {
			return false
		}
		size = binary.LittleEndian.Uint64(src[p:])
		p += 8
	}
	if size != uint64(len(dst)) {
		return false
	}
	// Check every block before writing anything.
	const maxBlock = 128 << 10
	total, q := 0, p
	for {
		if len(src) < q+4 {
			return false
		}
		h := uint32(src[q]) | uint32(src[q+1])<<8 | uint32(src[q+2])<<16
		n := int(h >> 3)
		if h>>1&3 != 1 || n > maxBlock || n > len(dst)-total {
			return false
		}
		total += n
		q += 4
		if h&1 != 0 {
			break
		}
	}
	if q != len(src) || total != len(dst) {
		return false
	}
	for at := 0; p < len(src); p += 4 {
		h := uint32(src[p]) | uint32(src[p+1])<<8 | uint32(src[p+2])<<16
		n := int(h >> 3)
		fill(dst[at:at+n], src[p+3])
		at += n
	}
	return true
}

// fill sets every byte of b to c.
func fill(b []byte, c byte) {
	if len(b) == 0 {
		return
	}
	b[0] = c
	for n := 1; n < len(b); n *= 2 {
		copy(b[n:], b[:n])
	}
}
