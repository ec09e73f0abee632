// Package spool is the agent's disk buffer for bus messages: an append-only
// queue of schemas.Message in segment files under one directory, used by the
// exporter while the bus is down or slow and replayed in order when it returns.
//
// On disk:
//
//	<dir>/<id>.seg    segment files, id = 16 hex digits, increasing; a segment
//	                  is closed once it would exceed Config.SegmentBytes
//	<dir>/cursor      the read position: segment id, byte offset and the
//	                  messages/rows acked in that segment, with a CRC32C;
//	                  replaced atomically (write temp, rename) on every Ack
//
// A record is a 12-byte header — payload length (uint32 LE), CRC32C of those
// 4 length bytes, CRC32C of the payload — followed by the payload, which is
// the Message's fields (uvarint-prefixed strings, varints) and its Value.
//
// Decisions:
//   - Restart: Open scans every segment. A header whose length is cut off by
//     the end of the file is a torn tail (a crash while appending): the file
//     is truncated there, counted in flowbus_spool_torn_tails_total. A header
//     whose own CRC fails means record boundaries can no longer be trusted:
//     the rest of that segment is cut off and counted as one corrupt record. A
//     payload whose CRC fails is skipped (its length is trusted, since the
//     header CRC held) and counted in flowbus_spool_corrupt_records_total; the
//     records after it are read normally.
//   - A record found corrupt while reading (the file changed on disk after
//     Open) is treated the same way: skipped and counted, or, for a bad
//     header, the rest of the segment is dropped and counted. A segment left
//     with no readable message is deleted, so corruption never keeps the
//     spool from draining to zero.
//   - Durability: Append writes with one write(2) per record and does not
//     fsync; Sync, segment roll-over and Close do. The spool survives the
//     process being killed (the page cache holds the data); an OS crash may
//     lose the tail, which the torn-tail check then cuts cleanly. The cursor is
//     not fsynced either: after an OS crash the last acked messages may be
//     replayed once, which NATS deduplicates by Nats-Msg-Id.
//   - Byte cap (Config.MaxBytes): when an Append would take the spool over
//     the cap, the oldest segments are deleted until it fits; their unacked
//     messages and rows are counted in flowbus_spool_dropped_messages_total
//     and flowbus_spool_dropped_rows_total. Dropping whole segments keeps the
//     cost O(1) and the rest of the queue in order.
//   - A full disk (or any failed write) fails that Append only: the part of
//     the record the disk took is cut off again (ftruncate to the last whole
//     record), so the segment holds whole records and later Appends, once
//     the disk has room, read back normally. The caller counts the message
//     it could not spool (export: reason spool_error).
//   - Once every message is acked, all segment files are deleted, so Bytes
//     and flowbus_spool_bytes return to 0.
//
// A Spool is safe for concurrent use; one reader (Peek/Ack) is expected.
package spool
