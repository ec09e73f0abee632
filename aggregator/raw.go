package aggregator

import (
	"fmt"

	"github.com/flowbus/flowbus/schemas"
	"github.com/flowbus/flowbus/sinks/parquet"
)

// rawFile is the raw flows file of one bucket (Config.RawFlows): a
// temporary Parquet file opened on the bucket's first row and committed
// with the bucket.
type rawFile struct {
	w *parquet.FileWriter[schemas.FlowRow]
}

// rawStage holds the raw rows of the message being folded, with the bucket
// of each, until the message is done: the decoder reuses the rows' memory
// after that, and the Parquet writer copies them. One stage serves every
// bucket, so an open bucket holds no row buffer of its own.
type rawStage struct {
	rows   []schemas.FlowRow
	bucket []*bucket
}

// addRaw is add for Config.RawFlows: it also stages f's raw row for the
// bucket f went to, unless f was skipped as already committed. (add itself
// stays as it is, so the rollup-only path pays nothing for raw flows.)
func (fo *fold) addRaw(f *schemas.Flow) {
	skipped := fo.skipped
	fo.add(f)
	if fo.skipped == skipped {
		st := &fo.a.stage
		st.rows = schemas.AppendFlowRow(st.rows, f)
		st.bucket = append(st.bucket, fo.cur)
	}
}

// flushRaw writes the rows staged by the message into their buckets'
// files, a run of rows of one bucket at a time.
func (fo *fold) flushRaw() error {
	st := &fo.a.stage
	defer func() {
		clear(st.bucket)
		st.rows, st.bucket = st.rows[:0], st.bucket[:0]
	}()
	for i := 0; i < len(st.rows); {
		j := i + 1
		for j < len(st.rows) && st.bucket[j] == st.bucket[i] {
			j++
		}
		if err := fo.a.writeRaw(fo.ps.id, st.bucket[i], st.rows[i:j]); err != nil {
			return err
		}
		i = j
	}
	return nil
}

// writeRaw writes rows to b's raw flows file, opening it on the first. The
// temporary file is named after the bucket's first offset only (its final
// name needs the last): removeTemp finds the partition in it.
func (a *Aggregator) writeRaw(partition int32, b *bucket, rows []schemas.FlowRow) error {
	if b.raw == nil {
		id := fileID{partition: partition, start: b.start, first: b.first, last: b.first, late: b.late}
		w, err := parquet.Create[schemas.FlowRow](id.path(a.cfg.Out, FlowsTable), a.rawOpts)
		if err != nil {
			return fmt.Errorf("write raw flows: %w", err)
		}
		b.raw = &rawFile{w: w}
	}
	if err := b.raw.w.Write(rows); err != nil {
		b.abortRaw()
		return fmt.Errorf("write raw flows: %w", err)
	}
	return nil
}

// commitRaw commits b's raw flows file under the bucket's name (the first
// file of a bucket's commit).
func (a *Aggregator) commitRaw(id fileID, b *bucket) error {
	r := b.raw
	b.raw = nil
	if r == nil {
		return nil
	}
	st, err := r.w.CommitAs(id.path(a.cfg.Out, FlowsTable))
	if err != nil {
		return fmt.Errorf("write raw flows: %w", err)
	}
	a.m.wrote(FlowsTable, st)
	if a.hook != nil {
		return a.hook("flows-written", nil)
	}
	return nil
}

// abortRaw closes and removes b's uncommitted raw flows file, if any.
func (b *bucket) abortRaw() {
	if b.raw != nil {
		b.raw.w.Abort()
	}
	b.raw = nil
}
