//go:build cgo

package flowcodec

import (
	"fmt"
	"slices"

	czstd "github.com/DataDog/zstd"
	"github.com/klauspost/compress/zstd"
)

// frameCompressor writes one standard zstd frame per buffer: libzstd
// (github.com/DataDog/zstd, which bundles its C source) for buffers of
// cgoMin bytes or more, klauspost's pure-Go encoder below that. On the
// fleet's column buffers libzstd level 1 takes ~60 % of klauspost's
// SpeedFastest time and writes ~11 % fewer bytes, but it rebuilds its
// default FSE tables for every frame (~1 µs here), which on small buffers
// costs more than it saves. The encoder calls it at level −1 (zstdLevel).
// Built without cgo, zstdframe_nocgo.go uses klauspost for every buffer.
type frameCompressor struct {
	small *zstd.Encoder
	big   czstd.Ctx // one libzstd context, reused: it keeps its tables
}

// cgoMin is the buffer size from which libzstd compresses.
const cgoMin = 1024

func newFrameCompressor() (*frameCompressor, error) {
	small, err := newGoZstd()
	if err != nil {
		return nil, err
	}
	return &frameCompressor{small: small, big: czstd.NewCtx()}, nil
}

// appendFrame appends src (not empty) compressed as one zstd frame to dst,
// at libzstd level level for large buffers.
func (z *frameCompressor) appendFrame(dst, src []byte, level int) []byte {
	if constantByte(src) {
		return appendRLEFrame(dst, src[0], len(src))
	}
	if len(src) < cgoMin {
		return z.small.EncodeAll(src, dst)
	}
	dst = slices.Grow(dst, czstd.CompressBound(len(src)))
	out, err := z.big.CompressLevel(dst[len(dst):cap(dst)], src, level)
	if err != nil {
		// libzstd fails only on a destination shorter than its bound,
		// which slices.Grow rules out, or on an invalid level.
		panic(fmt.Sprintf("flowcodec: libzstd compress: %v", err))
	}
	return dst[:len(dst)+len(out)]
}
