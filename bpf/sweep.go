//go:build linux

package bpf

import (
	"errors"
	"fmt"
	"time"

	"github.com/cilium/ebpf"
)

const sweepBatch = 4096

// lastScan is what the last scan of the flows maps saw.
type lastScan struct {
	at      time.Time
	flows   int    // entries in both maps
	husks   int    // of them, reported ends with no packet since (sweep_husks frees them)
	events  uint64 // Collector.events after it
	refused uint64 // CounterRingBufEnd + CounterMapInsert before it
	// counters is the sum sweepDue read last, per its per-CPU values.
	counters uint64
	per      []uint64
}

// sweepDue reports whether the flows maps are to be scanned now. A scan
// walks every bucket and copies every entry, whatever changed: ~0.1 ms
// for two empty maps of 65536 entries and ~0.2 µs per entry, and a flow
// that waits for its idle timeout (a DNS query's UDP flow) is copied again
// at every scan. So the maps are scanned every SweepInterval only while
// they are busy: the last scan found MaxFlows/2 flows or more, MaxFlows/4
// events or more came since (each leaves an ended entry to free), or the
// kernel refused an end event (its flow waits in the map to be recovered)
// or a new flow (the map is full) since. Otherwise every MaxSweepInterval.
func (c *Collector) sweepDue(now time.Time) bool {
	l := &c.last
	if !now.Before(l.at.Add(c.cfg.MaxSweepInterval)) {
		return true
	}
	limit := uint64(c.cfg.MaxFlows)
	if uint64(l.flows) >= limit/2 || c.events.Load()-l.events >= limit/4 {
		return true
	}
	l.counters = 0
	for _, i := range []Counter{CounterRingBufEnd, CounterMapInsert} {
		n, err := readCounter(c.objs.Counters, i, &l.per)
		if err != nil {
			return true
		}
		l.counters += n
	}
	return l.counters != l.refused
}

// scanned records a scan that sweep made at now (sweep counted the flows).
func (c *Collector) scanned(now time.Time) {
	c.last.at = now
	c.last.events = c.events.Load()
	c.last.refused = c.last.counters
}

// sweep scans the flows map (batch lookups; iteration where batches are not
// supported) and reports and removes flows by the rules of doc.go: the
// tails of ended flows once quiet for EndLinger, ended flows whose end event
// was lost, idle flows, and flows due an active-timeout record.
//
// Removal is per key with lookup-and-delete, so the counts reported are
// exactly those removed; an entry that changed since the scan (a packet
// arrived, or a new connection restarted an ended entry) is put back.
func (c *Collector) sweep(sink Sink, ev *Event, mono int64) error {
	start := time.Now()
	now := uint64(MonoNow())
	linger := uint64(c.cfg.EndLinger)
	idle := uint64(c.cfg.IdleTimeout)
	active := uint64(c.cfg.ActiveTimeout)
	type candidate struct {
		key  bpfFlowKey
		seen bpfFlowStats
	}
	var evict []candidate

	// Reported ends with no packet since, the bulk of all flows, are freed
	// in the kernel (sweep_husks, one program run for both maps) before
	// the scan: nothing of them is left to report, and the kernel claims
	// each one so that a new connection on its tuple is never freed with
	// it (doc.go, "Ends and tails").
	// Only when the last scan saw some: the program walks every bucket of
	// both maps (about 0.3 ms), which an idle agent would otherwise pay at
	// every sweep for nothing. Ends since the last scan wait for the next.
	var freed uint32
	if c.last.husks > 0 {
		var err error
		if freed, err = freeHusks(c.objs.SweepHusks); err != nil {
			return err
		}
	}
	reported := uint32(bpfFlowFlagFLOW_ENDED | bpfFlowFlagFLOW_REPORTED)
	flows, husks := 0, 0
	visit := func(k *bpfFlowKey, st *bpfFlowStats) {
		flows++
		quiet := now - min(now, st.LastSeenNs)
		switch {
		case st.Flags&uint32(bpfFlowFlagFLOW_FREEING) != 0:
			// Being freed or replaced by the kernel this instant.
		case st.Flags&reported == reported && st.Packets == [2]uint64{}:
			// A reported end in its linger (sweep_husks frees it).
			husks++
		case st.Flags&uint32(bpfFlowFlagFLOW_ENDED) != 0:
			if quiet >= linger {
				evict = append(evict, candidate{*k, *st})
			}
		case quiet >= idle:
			evict = append(evict, candidate{*k, *st})
		default:
			since := st.FirstSeenNs
			if r, ok := c.reported[*k]; ok {
				since = r.LastSeenNs
			}
			if now-min(now, since) >= active {
				c.report(sink, ev, EventActiveTimeout, k, st, mono)
			}
		}
	}
	if err := scanFlowsInto(c.objs, &c.scanBuf, false, visit); err != nil {
		return err
	}
	c.last.flows = flows
	c.last.husks = husks
	evicted := uint64(freed)
	var firstErr error
	for i := range evict {
		k, seen := &evict[i].key, &evict[i].seen
		var st bpfFlowStats
		if err := lookupAndDeleteFlow(c.objs, k, &st); err != nil {
			if !errors.Is(err, ebpf.ErrKeyNotExist) && firstErr == nil {
				firstErr = fmt.Errorf("remove flow: %w", err)
			}
			continue
		}
		if st.FirstSeenNs != seen.FirstSeenNs || st.LastSeenNs != seen.LastSeenNs {
			// It moved on since the scan: put it back. If a packet opened a
			// new entry in the instant it was out of the map, it cannot go
			// back: report what it holds now, below, so nothing is lost.
			err := updateFlow(c.objs, k, &st, ebpf.UpdateNoExist)
			if err == nil {
				continue
			}
			if !errors.Is(err, ebpf.ErrKeyExist) {
				if firstErr == nil {
					firstErr = fmt.Errorf("restore flow: %w", err)
				}
				continue
			}
		}
		evicted++
		switch {
		case st.Flags&uint32(bpfFlowFlagFLOW_ENDED) == 0:
			c.report(sink, ev, EventIdleTimeout, k, &st, mono)
		case st.Flags&uint32(bpfFlowFlagFLOW_REPORTED) == 0:
			c.report(sink, ev, EventRecovered, k, &st, mono)
		case st.Packets[0]+st.Packets[1] > 0:
			c.report(sink, ev, EventFlowTail, k, &st, mono)
		}
	}
	c.statsMu.Lock()
	c.stats.Sweeps++
	c.stats.Evicted += evicted
	c.statsMu.Unlock()
	c.log.Debug("swept flows maps", "flows", flows, "freed_ended", freed, "removed", len(evict),
		"took", time.Since(start).Round(time.Microsecond))
	return firstErr
}

// flushAll removes every flow from the map and reports what was not
// reported yet: flows (EventFlush) and the tails of reported ends
// (EventFlowTail). Lookup-and-delete is atomic per entry, so counts are exact.
func (c *Collector) flushAll(sink Sink, ev *Event, mono int64) {
	err := scanFlowsInto(c.objs, &c.scanBuf, true, func(k *bpfFlowKey, st *bpfFlowStats) {
		if st.Flags&uint32(bpfFlowFlagFLOW_ENDED|bpfFlowFlagFLOW_REPORTED) ==
			uint32(bpfFlowFlagFLOW_ENDED|bpfFlowFlagFLOW_REPORTED) {
			if st.Packets[0]+st.Packets[1] > 0 {
				c.report(sink, ev, EventFlowTail, k, st, mono)
			}
			return
		}
		c.report(sink, ev, EventFlush, k, st, mono)
	})
	if err != nil {
		c.log.Warn("flush flows map", "err", err)
	}
}

// report passes one flow to the sink, with the counters not reported yet.
func (c *Collector) report(sink Sink, ev *Event, kind EventKind, k *bpfFlowKey, st *bpfFlowStats, mono int64) {
	ev.fill(kind, k, st, mono)
	_, hadRecord := c.reported[*k]
	c.subtractReported(k, ev)
	if !kind.Final() {
		c.reported[*k] = *st
	}
	if (hadRecord || ev.Continued) && ev.PacketsFwd+ev.PacketsRev == 0 {
		// Nothing since the flow's last record: an active-timeout one, or
		// one the kernel sent (a drop's first packet, a verdict change).
		// A dropped SYN would otherwise show as two drops.
		return
	}
	ev.IfName = c.ifName(k.Ifindex)
	c.events.Add(1)
	sink.Event(ev)
}

// subtractReported removes from an event of a flow that had an
// active-timeout record the counters that record reported, and the
// handshake and SYN/FIN/RST flags it carried, and marks the event
// Continued. An event after which the kernel's counters start again (a
// final one, a drop or a verdict change) forgets what was reported.
func (c *Collector) subtractReported(k *bpfFlowKey, ev *Event) {
	r, ok := c.reported[*k]
	if !ok {
		return
	}
	if ev.Kind.resets() {
		delete(c.reported, *k)
	}
	ev.BytesFwd -= min(ev.BytesFwd, r.Bytes[0])
	ev.BytesRev -= min(ev.BytesRev, r.Bytes[1])
	ev.PacketsFwd -= min(ev.PacketsFwd, r.Packets[0])
	ev.PacketsRev -= min(ev.PacketsRev, r.Packets[1])
	ev.TCPFlags &^= uint16(r.Flags) & tcpEventFlags
	ev.HandshakeNs = 0
	ev.Continued = true
}

// freeHusks runs sweep_husks, which frees the entries of reported ends
// quiet for EndLinger with no packet since, and returns how many it freed.
func freeHusks(prog *ebpf.Program) (uint32, error) {
	var frame [14]byte // BPF_PROG_TEST_RUN wants an Ethernet header
	n, err := prog.Run(&ebpf.RunOptions{Data: frame[:]})
	if err != nil {
		return 0, fmt.Errorf("free ended flows: %w", err)
	}
	return n, nil
}
