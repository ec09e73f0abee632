package schemas

import "errors"

// Errors of Decoder.Decode; a consumer labels bad messages by them
// (flowbus_aggregator_bad_messages_total{reason}).
var (
	ErrNotArrow      = errors.New("not an Arrow IPC stream")
	ErrTruncated     = errors.New("truncated Arrow IPC stream")
	ErrUnknownSchema = errors.New("unknown flowbus schema version")
)

// Encoder turns flows into one self-describing Arrow IPC stream (schema
// message + record batch(es), zstd body compression). It reuses its builders
// between calls; not safe for concurrent use.
type Encoder struct{}

// NewEncoder returns an Encoder.
func NewEncoder() *Encoder { return &Encoder{} }

// Encode appends to dst one Arrow IPC stream holding flows, in order.
func (e *Encoder) Encode(dst []byte, flows []Flow) ([]byte, error) {
	panic("schemas: Encoder.Encode not implemented yet")
}

// Decoder decodes Arrow IPC streams written by Encoder. Not safe for concurrent use.
type Decoder struct{}

// NewDecoder returns a Decoder.
func NewDecoder() *Decoder { return &Decoder{} }

// Decode decodes one whole message and appends its flows to dst. It returns
// an error wrapping ErrNotArrow, ErrTruncated or ErrUnknownSchema for bad
// input, and appends nothing then. Strings in the result do not alias msg.
func (d *Decoder) Decode(dst []Flow, msg []byte) ([]Flow, error) {
	panic("schemas: Decoder.Decode not implemented yet")
}
