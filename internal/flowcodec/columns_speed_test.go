package flowcodec

import (
	"fmt"
	"testing"

	"github.com/flowbus/flowbus/internal/flowtest"
)

// BenchmarkEncodeColumns is the column-building part of Encode alone
// (reset and addRows, no IPC writing or compression): the per-row cost the
// encoder controls, measured without libzstd's noise.
//
//	go test ./internal/flowcodec -run '^$' -bench 'EncodeColumns' -count 4
func BenchmarkEncodeColumns(b *testing.B) {
	for _, n := range []int{100, 1000, 10000} {
		b.Run(fmt.Sprintf("rows=%d", n), func(b *testing.B) {
			flows := flowtest.Fleet(1, n)
			enc := NewEncoder()
			measure(b, n, func() int {
				enc.reset(len(flows))
				if err := enc.addRows(flows); err != nil {
					b.Fatal(err)
				}
				return 0
			})
		})
	}
}
