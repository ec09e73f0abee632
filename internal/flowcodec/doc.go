// Package flowcodec carries flows on the bus: the Arrow schema flow.v1 of
// schemas.Flow (NewArrowSchema), the Encoder that writes a batch of flows as
// one Arrow IPC stream, and the Decoder that reads such a stream back, whole
// or only the columns a Projection names. Every column is documented in
// schemas/README.md; the contract types live in package schemas, which does
// not link Arrow, zstd or cgo.
//
// Files: arrowschema.go (Arrow types, NewArrowSchema), codec.go +
// columns.go + ipcwrite.go + zstdframe*.go (encoder), decode.go +
// decodecols.go + project.go + rawipc.go + zstddec*.go + fbcheck.go
// (decoder). What is per column is generated from schemas.Flow by
// internal/gencols (go generate ./schemas): columns_gen.go (indices, names,
// Arrow fields, enum tables), encode_gen.go (the encoder's column buffers
// and per-row code), decode_gen.go (decoded columns and rows); the
// hand-written files hold one implementation per kind of column.
//
// Decisions:
//
//   - One bus message is one complete Arrow IPC stream (schema, dictionary
//     batches, one record batch, end-of-stream), zstd body compression, so any
//     consumer (arrow-go, pyarrow, DuckDB) decodes a message alone.
//   - The encoder writes the IPC messages itself: the schema message is
//     serialised once by arrow-go and cached; dictionary and record batches
//     are flatbuffers around the encoder's own column buffers, so that each
//     buffer can be stored by its own rule. The tests read every stream
//     back with arrow-go's ipc.Reader, and the golden file
//     testdata/flow.v1.arrows pins the bytes
//     (`go test ./internal/flowcodec -run TestGoldenFile -update` rewrites
//     it after a deliberate change; bump schemas.SchemaVersion when old
//     readers cannot read the new columns). Why not arrow-go's ipc.Writer:
//     README.md, "Arrow IPC written and read by hand".
//   - Body compression is zstd, one frame per buffer as Arrow requires, and
//     most of the encoder's CPU. Buffers of 1 KiB or more go through
//     libzstd by cgo (github.com/DataDog/zstd, which bundles the C source;
//     the binary already needs cgo for DuckDB) at level −1 (zstdLevel):
//     literals stored as they are instead of Huffman coded, so frames decode
//     about twice as fast, which the aggregator pays on every message.
//     Smaller buffers keep klauspost's pure-Go encoder, because libzstd
//     rebuilds its default FSE tables for every frame. Built with
//     CGO_ENABLED=0 (zstdframe_nocgo.go) klauspost does every buffer: the
//     streams are equally valid, only larger and dearer. The decoder
//     likewise uses libzstd under cgo (zstddec_cgo.go) and klauspost
//     without (zstddec_nocgo.go); both read any standard frame. The
//     alternatives and their figures: README.md, "Body compression: libzstd
//     through cgo".
//   - Storage rules around the compressor (ipcwrite.go): a buffer of one
//     repeated byte is written as a zstd RLE frame without running the
//     compressor; a buffer equal to an earlier one of the same record batch
//     (list offsets of same-shaped lists, equal timestamps) is stored once
//     and both buffer entries point at it; in a record batch of 1000 rows
//     or more, a buffer of 4,000 B or more is stored raw (Arrow's -1
//     length) when the ratio zstd last reached at its position saves less
//     than 4/5 of (its size + 512 B), 512 B being what a frame's fixed CPU
//     is worth here, and compressed again after 15 batches to re-measure;
//     buffers under 32 B are always raw. Batches under 1000 rows (the
//     per-partition messages of a lightly loaded agent) therefore stay fully
//     compressed: bytes matter there, CPU in a busy agent's larger ones
//     (README.md, "The raw-storage rule"). latency_hist's counts use libzstd
//     level 3, which finds their long repeats. What each rule costs and
//     saves: bench/HISTORY.md, "Encoding (flowcodec)".
//   - The decoder reads streams whose schema message is byte for byte ours
//     without arrow-go objects (one reused zstd decoder, one reused arena,
//     batch views and arrays reused from message to message, strings copied
//     once per dictionary), and any other flow.v1 stream
//     (another writer's) through arrow-go's ipc.Reader. Both feed the same
//     column decoders. Decoded strings never alias the message.
//   - A reader names the columns it needs (Projection): the fast reader
//     decompresses a buffer only when a column decoder first asks for it,
//     so skipped columns cost neither zstd nor validation, and rows fill
//     only the selected fields. DecodeEach hands rows to a callback in one
//     reused Flow instead of building a slice: the aggregator folds 34 of
//     the 74 columns that way (project.go, decode.go). A whole message is
//     checked before its first row, so a bad message yields no row.
//   - Bad input never panics: framing and flatbuffer vector lengths are
//     checked before arrow-go sees them (arrow-go allocates by those lengths),
//     decompressed sizes are bounded by the message size, offsets and
//     dictionary indices are validated, and any remaining panic is recovered
//     into ErrNotArrow. A cut-off stream is ErrTruncated, another schema
//     version ErrUnknownSchema. FuzzDecode guards this.
//   - Strings are dictionary-encoded (per batch), except uuid: fleets repeat
//     namespaces, workloads, pods and labels, and dictionaries cut both bytes
//     and the bytes zstd must process. The encoder finds a string's index
//     through a cache keyed by the string's data pointer (the agent hands over
//     the same strings from its identity caches), then a map.
//   - Enums are dictionary strings holding Hubble's names ("DROPPED",
//     "POLICY_DENIED"), readable in DuckDB; a number without a name travels
//     as its decimal string and comes back as the same number.
//   - IP addresses are fixed_size_binary(16), IPv4 as IPv4-mapped IPv6. This
//     is the one normalisation of the Arrow round trip: an IPv4-mapped IPv6
//     address (::ffff:a.b.c.d) decodes as the IPv4 address, and IPv6 zones are
//     dropped (Cilium reports neither). Everything else round-trips exactly,
//     including nil versus empty slices (null list versus empty list) and nil
//     versus empty histograms.
//   - Zero times (unknown) are null timestamps, IsReply Unknown is a null
//     bool, the zero netip.Addr is a null address.
package flowcodec
