package schemas

// FlowRow itself and its set are generated from Flow (flowrow_gen.go).

// FlowRowOf returns f as a Parquet row. The row shares f's strings and
// string slices (not its histogram): if f's memory is reused (a Decoder's
// DecodeEach row), write the row before that.
func FlowRowOf(f *Flow) FlowRow {
	var r FlowRow
	r.set(f)
	return r
}

// AppendFlowRow appends f as a Parquet row to dst, reusing the histogram
// memory of a row left in dst's spare capacity. Sharing as FlowRowOf.
func AppendFlowRow(dst []FlowRow, f *Flow) []FlowRow {
	if len(dst) < cap(dst) {
		dst = dst[:len(dst)+1]
	} else {
		dst = append(dst, FlowRow{})
	}
	dst[len(dst)-1].set(f)
	return dst
}

// reuse stores v in *p, allocating p if nil, and returns p: set keeps a
// row's nullable columns in the memory of the row it overwrites.
func reuse[T any](p *T, v T) *T {
	if p == nil {
		p = new(T)
	}
	*p = v
	return p
}
