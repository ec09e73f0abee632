package aggregator

import (
	"fmt"

	"github.com/flowbus/flowbus/schemas"
	"github.com/flowbus/flowbus/sinks/parquet"
)

// rawFile is the raw flows file of one bucket (Config.RawFlows): rows of
// the message being folded are staged, then streamed into a temporary
// Parquet file opened on the first row, and committed with the bucket.
type rawFile struct {
	w     *parquet.FileWriter[schemas.FlowRow]
	stage []schemas.FlowRow // rows of the current message, not yet written
}

// addRaw is add for Config.RawFlows: it also stages f's raw row in the
// bucket f went to, unless f was skipped as already committed. (add itself
// stays as it is, so the rollup-only path pays nothing for raw flows.)
func (fo *fold) addRaw(f *schemas.Flow) {
	skipped := fo.skipped
	fo.add(f)
	if fo.skipped == skipped {
		fo.stageRaw(f)
	}
}

// stageRaw keeps f's row for the current bucket. f's memory belongs to the
// decoder and is valid until the message is done: flushRaw writes the rows
// (the Parquet writer copies them) before that.
func (fo *fold) stageRaw(f *schemas.Flow) {
	b := fo.cur
	if b.raw == nil {
		b.raw = &rawFile{}
	}
	if len(b.raw.stage) == 0 {
		fo.touched = append(fo.touched, b)
	}
	b.raw.stage = schemas.AppendFlowRow(b.raw.stage, f)
}

// flushRaw writes the rows staged by the message into their buckets' files.
func (fo *fold) flushRaw() error {
	for _, b := range fo.touched {
		if err := fo.a.writeRaw(fo.ps.id, b); err != nil {
			return err
		}
	}
	fo.touched = fo.touched[:0]
	return nil
}

// writeRaw writes b's staged raw rows, opening its file on the first. The
// temporary file is named after the bucket's first offset only (its final
// name needs the last): removeTemp finds the partition in it.
func (a *Aggregator) writeRaw(partition int32, b *bucket) error {
	r := b.raw
	if r == nil || len(r.stage) == 0 {
		return nil
	}
	if r.w == nil {
		id := fileID{partition: partition, start: b.start, first: b.first, last: b.first, late: b.late}
		w, err := parquet.Create[schemas.FlowRow](id.path(a.cfg.Out, FlowsTable), a.rawOpts)
		if err != nil {
			return fmt.Errorf("write raw flows: %w", err)
		}
		r.w = w
	}
	err := r.w.Write(r.stage)
	r.stage = r.stage[:0]
	if err != nil {
		b.abortRaw()
		return fmt.Errorf("write raw flows: %w", err)
	}
	return nil
}

// commitRaw commits b's raw flows file under the bucket's name (the first
// file of a bucket's commit).
func (a *Aggregator) commitRaw(id fileID, b *bucket) error {
	if err := a.writeRaw(id.partition, b); err != nil {
		return err
	}
	r := b.raw
	b.raw = nil
	if r == nil || r.w == nil {
		return nil
	}
	st, err := r.w.CommitAs(id.path(a.cfg.Out, FlowsTable))
	if err != nil {
		return fmt.Errorf("write raw flows: %w", err)
	}
	a.m.filesWritten.WithLabelValues(FlowsTable).Inc()
	a.m.rowsWritten.WithLabelValues(FlowsTable).Add(float64(st.Rows))
	a.m.bytesWritten.WithLabelValues(FlowsTable).Add(float64(st.Bytes))
	if a.hook != nil {
		return a.hook("flows-written", nil)
	}
	return nil
}

// abortRaw closes and removes b's uncommitted raw flows file, if any.
func (b *bucket) abortRaw() {
	if b.raw != nil && b.raw.w != nil {
		b.raw.w.Abort()
	}
	b.raw = nil
}
