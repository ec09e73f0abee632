//go:build !cgo

package flowcodec

import "github.com/klauspost/compress/zstd"

// frameCompressor writes one standard zstd frame per buffer. Built without
// cgo it is klauspost's pure-Go encoder for every buffer (the cgo build uses
// libzstd for large ones: zstdframe_cgo.go). The streams are equally valid;
// only their size and the CPU spent differ.
type frameCompressor struct {
	small *zstd.Encoder
}

func newFrameCompressor() (*frameCompressor, error) {
	small, err := newGoZstd()
	if err != nil {
		return nil, err
	}
	return &frameCompressor{small: small}, nil
}

// appendFrame appends src compressed as one zstd frame to dst; level is
// libzstd's and is ignored here.
func (z *frameCompressor) appendFrame(dst, src []byte, level int) []byte {
	if constantByte(src) {
		return appendRLEFrame(dst, src[0], len(src))
	}
	return z.small.EncodeAll(src, dst)
}
