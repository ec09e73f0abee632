//go:build cgo

package flowcodec

import (
	"fmt"

	czstd "github.com/DataDog/zstd"
)

// frameDecoder decompresses body buffers. With cgo it is libzstd (the
// reference C implementation, bundled by github.com/DataDog/zstd, as the
// encoder uses): on the buffers the aggregator reads from a 1000-row
// message it takes ~60 % of klauspost/compress's time, the difference
// being per-frame setup, RLE blocks and short overlapping matches, which
// matter because every Arrow buffer is its own frame. Built without cgo,
// zstddec_nocgo.go uses klauspost; both decode any standard frame to the
// same bytes.
type frameDecoder struct{ ctx czstd.Ctx }

func newFrameDecoder() *frameDecoder { return &frameDecoder{ctx: czstd.NewCtx()} }

// decode decompresses the frame src into exactly dst (len(dst) > 0): a
// frame that decodes to more or fewer bytes is an error. libzstd's one-shot
// decompression writes into dst only and allocates no window, so a forged
// frame header cannot make it allocate.
func (d *frameDecoder) decode(dst, src []byte) error {
	if decodeRLEFrame(dst, src) {
		return nil
	}
	n, err := d.ctx.DecompressInto(dst, src)
	if err != nil {
		return err
	}
	if n != len(dst) {
		return fmt.Errorf("frame holds %d bytes", n)
	}
	return nil
}
