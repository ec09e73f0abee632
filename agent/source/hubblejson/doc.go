// Package hubblejson is the hubble-json flow source: it reads the JSON lines
// that `hubble observe -o json` prints and that Hubble's flow exporter writes
// (one observer.GetFlowsResponse per line), from a file, a directory of
// rotated files, or stdin, and can follow a growing file.
//
// Each line is decoded with protojson (DiscardUnknown, so newer Hubble fields
// do not break us) and routed by its response type:
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
