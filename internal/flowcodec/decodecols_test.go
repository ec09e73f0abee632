package flowcodec

import (
	"encoding/binary"
	"strings"
	"testing"
)

// TestDictionaryIndicesAreChecked: every index of a dictionary column must
// address one of the dictionary's m entries; one negative or too large
// index anywhere in the column is a corrupt column, at every index width.
func TestDictionaryIndicesAreChecked(t *testing.T) {
	const m = 5
	indices := func(width int, vals ...int) *rawArray {
		b := make([]byte, 0, 8*len(vals))
		for _, v := range vals {
			switch width {
			case 1:
				b = append(b, byte(int8(v)))
			case 2:
				b = binary.LittleEndian.AppendUint16(b, uint16(int16(v)))
			case 4:
				b = binary.LittleEndian.AppendUint32(b, uint32(int32(v)))
			}
		}
		return &rawArray{length: len(vals), width: width, bufs: [][]byte{nil, b}}
	}
	for _, width := range []int{1, 2, 4} {
		for _, tc := range []struct {
			name string
			vals []int
			ok   bool
		}{
			{"indices within the dictionary are accepted", []int{0, 4, 2, 0}, true},
			{"a negative index is rejected", []int{0, 1, -1, 2}, false},
			{"an index equal to the dictionary length is rejected", []int{0, m, 1}, false},
			{"an index past the end, last in the column, is rejected", []int{0, 0, 0, 100}, false},
			{"a negative index after the unrolled blocks is rejected", []int{0, 1, 2, 3, 4, 0, 1, 2, -3}, false},
			{"an index past the end in the second block is rejected", []int{0, 1, 2, 3, 4, m + 1, 1, 2, 3}, false},
			{"nine good indices are accepted", []int{4, 3, 2, 1, 0, 1, 2, 3, 4}, true},
			{"a column of one value reads as index 0", []int{0, 0, 0, 0, 0, 0}, true},
		} {
			t.Run(tc.name, func(t *testing.T) {
				x, err := readIndices(indices(width, tc.vals...), 7, len(tc.vals), m)
				if tc.ok {
					if err != nil {
						t.Fatalf("width %d: %v", width, err)
					}
					for i, v := range tc.vals {
						if got := x.at(i); int(got) != v {
							t.Fatalf("width %d: index %d = %d, want %d", width, i, got, v)
						}
					}
					return
				}
				if err == nil || !strings.Contains(err.Error(), "corrupt column 7: dictionary index out of range") {
					t.Fatalf("width %d: err = %v, want a corrupt column error", width, err)
				}
			})
		}
		// A dictionary longer than the index type can address (a forged
		// one): a negative index must still be refused.
		if _, err := readIndices(indices(width, 0, -1), 7, 2, 1<<33); err == nil {
			t.Errorf("width %d: a negative index into a huge dictionary was accepted", width)
		}
	}
}
