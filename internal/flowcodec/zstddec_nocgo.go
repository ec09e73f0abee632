//go:build !cgo

package flowcodec

import (
	"fmt"

	"github.com/klauspost/compress/zstd"
)

// frameDecoder decompresses body buffers; built without cgo it is
// klauspost/compress (zstddec_cgo.go has the default).
type frameDecoder struct{ z *zstd.Decoder }

func newFrameDecoder() *frameDecoder {
	// WithDecodeAllCapLimit: a frame that decodes to more than dst's
	// capacity fails instead of growing the output; the limits bound what a
	// forged frame header can make the decoder allocate.
	z, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecodeAllCapLimit(true),
		zstd.WithDecoderMaxMemory(256<<20), zstd.WithDecoderMaxWindow(64<<20))
	if err != nil {
		panic("flowcodec: create zstd decoder: " + err.Error()) // constant options cannot fail
	}
	return &frameDecoder{z: z}
}

// decode decompresses the frame src into exactly dst (len(dst) > 0; dst
// has zstdSlack bytes of spare capacity, which klauspost may write into: it
// copies in 16-byte words, about twice as fast as its bounds-exact loop).
func (d *frameDecoder) decode(dst, src []byte) error {
	if decodeRLEFrame(dst, src) {
		return nil
	}
	out, err := d.z.DecodeAll(src, dst[:0])
	if err != nil {
		return err
	}
	if len(out) != len(dst) || &out[0] != &dst[0] {
		return fmt.Errorf("frame holds %d bytes", len(out))
	}
	return nil
}
