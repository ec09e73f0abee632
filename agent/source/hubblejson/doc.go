// Package hubblejson is the hubble-json flow source: it reads the JSON lines
// that `hubble observe -o json` prints and that Hubble's flow exporter writes
// (one observer.GetFlowsResponse per line), from a file, a directory of
// rotated files, or stdin, and can follow a growing file.
//
// Each line holding a flow is decoded by a hand-written JSON decoder
// (fastjson.go) straight into a schemas.Flow; any other line, and any line
// that decoder declines, is decoded with protojson (DiscardUnknown, so newer
// Hubble fields do not break us) and routed by its response type:
//   - flow: converted with hubble.FromProto, given its count_as by
//     hubble.CountAs (Hubble reports a connection at several observation
//     points; one of its events counts it) and sent downstream in batches;
//   - lost_events: not a flow; reported through the lost callback (which the
//     agent turns into Tap.Lost and hubble_lost_events_total) and counted in
//     flowbus_source_lost_events_total{lost_source};
//   - node_status and other non-flow responses: counted in
//     flowbus_source_skipped_total{type}.
//
// Decisions:
//   - Decision: a hand-written decoder for the common line, protojson for
//     the rest. protojson and FromProto cost ~20 µs of the ~26 µs the whole
//     agent spent per line (reflection, ~200 allocations, string copies);
//     the fast path reads the same line in ~2.3 µs with 3 allocations,
//     sharing the strings, label lists and addresses that repeat, as
//     hubble.Decoder does for the gRPC source. It stays correct by
//     declining rather than guessing: it returns a record only for a line
//     it reads exactly as protojson + FromProto do, and declines (the line
//     goes to protojson, which gives the record or the error as before)
//     anything else: lost_events, node_status and bare flows, duplicate
//     fields, two members of a oneof, null, numbers in any form but plain
//     integers (quoted for 64-bit fields), enums by number or unknown name,
//     times not in YYYY-MM-DDTHH:MM:SS[.f]Z, escaped keys or surrogates,
//     flowbus's own extension, VRRP and IGMP, and everything protojson or
//     FromProto rejects (bad JSON or UTF-8, out-of-range numbers, bad
//     addresses). Flow fields flowbus does not read (Summary, ethernet,
//     trace_context, ...) are checked against their descriptor as protojson
//     checks them, and unknown ones skipped as any JSON value, so that no
//     line protojson would reject is taken. Tests decode every fixture line
//     (hubbletest's cluster in both JSON name styles, random Hubble flows
//     with every field, testdata/observe.json) both ways and require equal
//     records, and FuzzLines requires equal records or a decline on every
//     line it makes.
//   - Bad input never stops the stream: a line that is not JSON, is cut off,
//     is empty, is JSON but neither a GetFlowsResponse nor a Flow, is longer
//     than Config.MaxLineBytes, or holds a flow FromProto rejects is counted
//     in flowbus_source_malformed_total{source="hubble-json"} and logged at
//     Warn with its file and 1-based line number (a *LineError); the next
//     line is read normally.
//   - A line that parses as JSON but has no response type is tried as a bare
//     flow.Flow, which older hubble CLIs printed for -o json; it is accepted
//     if it has any flow content (time, IP, L4, verdict or UUID).
//   - Lines are read with a bufio.Reader and assembled across its buffer, so
//     lines of any length up to MaxLineBytes (16 MiB) work, not only 64 KiB.
//   - Directories are read oldest first: logrotate backups (name.N[.gz],
//     highest N first), then lumberjack/Hubble exporter backups
//     (name-2006-01-02T15-04-05.000.ext[.gz]) by timestamp, then files with no
//     rotation mark (the active file). Files ending in .gz are gunzipped.
//     With Follow, the newest file is followed after the others are read.
//   - Follow polls (Config.PollInterval, 250 ms) rather than using inotify:
//     it works on every filesystem and costs one stat per interval. A
//     half-written last line is left until its newline arrives. A file that
//     shrinks is re-read from the start (truncation); when the path names a
//     new file (rotation by rename), the rest of the old one is read first.
package hubblejson
