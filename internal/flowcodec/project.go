package flowcodec

import (
	"fmt"
	"slices"
	"strings"

	"github.com/flowbus/flowbus/schemas"
)

// Projection is a set of flow.v1 columns to decode. A projected decode
// fills only the Flow fields of those columns and leaves every other field
// at its zero value (strings "", slices nil, IsReply Unknown); it does not
// decompress, validate or copy the buffers of the columns it skips, so it
// costs in proportion to what the reader needs, as a columnar format
// should. A consumer that aggregates (the aggregator's rollups) reads about
// a third of the bytes a full decode does.
//
// The zero Projection selects every column.
type Projection struct {
	set  [2]uint64
	some bool // false: every column
}

// NewProjection returns the projection of the named columns (names as in
// schemas/README.md and the Arrow schema). An unknown name is an error that
// lists the valid ones.
func NewProjection(columns ...string) (Projection, error) {
	p := Projection{some: true}
	for _, c := range columns {
		i := slices.Index(columnNames[:], c)
		if i < 0 {
			return Projection{}, fmt.Errorf("projection: no column %q in %s (columns: %s)", c, schemas.SchemaVersion, strings.Join(columnNames[:], ", "))
		}
		p.set[i/64] |= 1 << (i % 64)
	}
	return p, nil
}

// has reports whether column col is selected.
func (p *Projection) has(col int) bool {
	return p == nil || !p.some || p.set[col/64]&(1<<(col%64)) != 0
}

// Columns returns the names of the selected columns, in schema order.
func (p Projection) Columns() []string {
	var out []string
	for i, name := range columnNames {
		if p.has(i) {
			out = append(out, name)
		}
	}
	return out
}
