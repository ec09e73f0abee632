// Package stream is the per-connection tracker between the kernel's
// captures and the L7 parsers: it turns the segments of the connections on
// the configured ports into the parsers' chunks and their exchanges into
// records.
package stream
