package stdout

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"

	observerpb "github.com/cilium/cilium/api/v1/observer"

	"github.com/flowbus/flowbus/internal/flowcodec"
	"github.com/flowbus/flowbus/schemas"
	"github.com/flowbus/flowbus/schemas/hubble"
)

// Writer prints flows as `hubble observe -o json` lines to an io.Writer.
// It is safe for concurrent use; each call's lines are written together.
type Writer struct {
	mu      sync.Mutex
	out     *bufio.Writer
	enc     *json.Encoder
	dec     *flowcodec.Decoder
	log     *slog.Logger
	flows   []schemas.Flow
	skipped uint64
	closed  bool
}

// New returns a Writer printing to w (typically os.Stdout); log (nil: none)
// receives one warning per bus message that does not decode. Close flushes
// but does not close w.
func New(w io.Writer, log *slog.Logger) *Writer {
	out := bufio.NewWriterSize(w, 64<<10)
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Writer{out: out, enc: json.NewEncoder(out), dec: flowcodec.NewDecoder(), log: log}
}

// Skipped returns how many bus messages Publish skipped because they did
// not decode.
func (w *Writer) Skipped() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.skipped
}

// ErrClosed is returned by calls after Close.
var ErrClosed = errors.New("stdout sink closed")

// Write prints one line per flow, in order.
func (w *Writer) Write(flows []schemas.Flow) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return ErrClosed
	}
	if err := w.write(flows); err != nil {
		return err
	}
	return w.flush()
}

func (w *Writer) write(flows []schemas.Flow) error {
	for i := range flows {
		if err := w.enc.Encode(Response(&flows[i])); err != nil {
			return fmt.Errorf("write flow as hubble json: %w", err)
		}
	}
	return nil
}

func (w *Writer) flush() error {
	if err := w.out.Flush(); err != nil {
		return fmt.Errorf("flush stdout sink: %w", err)
	}
	return nil
}

// Response wraps a flow as the GetFlowsResponse Hubble streams and prints:
// the flow, its node name and its time.
func Response(f *schemas.Flow) *observerpb.GetFlowsResponse {
	p := hubble.ToProto(f)
	return &observerpb.GetFlowsResponse{
		ResponseTypes: &observerpb.GetFlowsResponse_Flow{Flow: p},
		NodeName:      p.GetNodeName(),
		Time:          p.GetTime(),
	}
}

// Publish decodes every message (an Arrow IPC stream of schema flow.v1) and
// prints its flows; it lets the agent's exporter use the terminal as its
// bus (agent/export.Publisher). A message that does not decode can never be
// printed, so it is skipped, counted (Skipped) and logged with its ID and
// the decode error, and the others are printed; Publish then still returns
// nil, so the exporter does not retry it forever. Publish returns an error
// only when ctx is done (checked between messages) or the output fails;
// lines already printed are not retracted, so a retried call prints them
// again (this sink accepts duplicates).
func (w *Writer) Publish(ctx context.Context, msgs []schemas.Message) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return ErrClosed
	}
	defer clear(w.flows) // do not keep the last batch's strings alive
	for i := range msgs {
		if err := ctx.Err(); err != nil {
			return errors.Join(w.flush(), err)
		}
		var err error
		w.flows, err = w.dec.Decode(w.flows[:0], msgs[i].Value)
		if err != nil {
			w.skipped++
			w.log.Warn("skipping bus message that does not decode", "id", msgs[i].ID(), "key", msgs[i].Key, "err", err)
			continue
		}
		if err := w.write(w.flows); err != nil {
			return err
		}
	}
	return w.flush()
}

// Close flushes buffered output. Later calls return ErrClosed.
func (w *Writer) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return nil
	}
	w.closed = true
	return w.flush()
}
