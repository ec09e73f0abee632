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

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/flowbus/flowbus/schemas"
	"github.com/flowbus/flowbus/schemas/hubble"
)

// Writer prints flows as `hubble observe -o json` lines to an io.Writer.
// It is safe for concurrent use; each call's lines are written together.
type Writer struct {
	mu      sync.Mutex
	out     *bufio.Writer
	enc     *json.Encoder
	dec     Decoder
	log     *slog.Logger
	line    []byte // the line being written, reused
	flows   []schemas.Flow
	skipped uint64
	closed  bool
}

// Decoder decodes one bus message (an Arrow IPC stream of schema flow.v1)
// and appends its flows to dst; internal/flowcodec's Decoder is one.
// Publish calls it under the Writer's lock, one message at a time.
type Decoder interface {
	Decode(dst []schemas.Flow, msg []byte) ([]schemas.Flow, error)
}

// ErrNoDecoder is returned by Publish on a Writer created without a Decoder.
var ErrNoDecoder = errors.New("stdout sink: no decoder for bus messages")

// New returns a Writer printing to w (typically os.Stdout). dec decodes
// the bus messages Publish prints (nil for a Writer used with Write only);
// log (nil: none) receives one warning per bus message that does not
// decode. Close flushes but does not close w.
func New(w io.Writer, log *slog.Logger, dec Decoder) *Writer {
	out := bufio.NewWriterSize(w, 64<<10)
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Writer{out: out, enc: json.NewEncoder(out), dec: dec, log: log}
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
		var err error
		if w.line, err = AppendResponse(w.line[:0], &flows[i]); err == nil {
			// json.Encoder compacts and HTML-escapes the line, as it does
			// the GetFlowsResponse the hubble CLI prints, and ends it.
			err = w.enc.Encode(json.RawMessage(w.line))
		}
		if err != nil {
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

// protoJSON is how the hubble CLI marshals a GetFlowsResponse (its
// MarshalJSON): protojson with the proto field names.
var protoJSON = protojson.MarshalOptions{UseProtoNames: true}

// AppendResponse appends f as the JSON of the observer.GetFlowsResponse
// that Hubble streams and prints, {"flow": …, "node_name": …, "time": …},
// exactly as protojson writes that message (fields in its order, absent
// when empty, protojson's own whitespace), without linking the Observer
// API's gRPC stubs: the flow, its node name and its time are each
// marshalled by protojson.
func AppendResponse(dst []byte, f *schemas.Flow) ([]byte, error) {
	p := hubble.ToProto(f)
	dst = append(dst, `{"flow":`...)
	dst, err := protoJSON.MarshalAppend(dst, p)
	if err != nil {
		return dst, err
	}
	if p.GetNodeName() != "" {
		dst = append(dst, `,"node_name":`...)
		if dst, err = protoJSON.MarshalAppend(dst, wrapperspb.String(p.GetNodeName())); err != nil {
			return dst, err
		}
	}
	if t := p.GetTime(); t != nil {
		dst = append(dst, `,"time":`...)
		if dst, err = protoJSON.MarshalAppend(dst, t); err != nil {
			return dst, err
		}
	}
	return append(dst, '}'), nil
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
	if w.dec == nil {
		return ErrNoDecoder
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

// OneStream reports that the Writer is one ordered stream, not a
// partitioned bus (agent/export.OneStream): the agent's exporter then
// batches every partition together, so flows are printed in the order
// they reached it.
func (w *Writer) OneStream() bool { return true }

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
