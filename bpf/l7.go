//go:build linux

package bpf

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"
)

// L7Capture is one capture of the L7 ring buffer (struct l7_event): a TCP
// segment with payload, a SYN, FIN or RST, or a UDP datagram, of a flow
// whose server port is enabled, as one interface saw it.
type L7Capture struct {
	Src, Dst         netip.Addr // IPv4 as IPv4, not IPv4-mapped
	SrcPort, DstPort uint16
	IfIndex          uint32
	// TimeNs is when the program saw it (CLOCK_MONOTONIC ns).
	TimeNs int64
	// Seq is the TCP sequence number of its first payload byte (a SYN's:
	// its ISN); 0 for UDP.
	Seq uint32
	// Len is its payload length; Head its first bytes (at most
	// L7Config.HeadBytes). Head aliases the ring buffer record: it is only
	// valid during L7Sink.Capture.
	Len      uint32
	Head     []byte
	Proto    uint8 // 6 TCP, 17 UDP
	TCPFlags uint8 // FIN 1, SYN 2, RST 4, PSH 8, ACK 16, …
	// IsReply: sent by the flow's responder (the server).
	IsReply bool
	// Ingress: it passed tc ingress (the pod behind the interface sent it).
	Ingress bool
	// Class is the server port's class (L7Port.Class).
	Class uint8
}

// L7Sink receives captures on the goroutine running RunL7.
type L7Sink interface {
	// Capture is called once per capture; c is reused after it returns.
	Capture(c *L7Capture)
	// Idle is called when the ring buffer is drained and at least every
	// poll interval: a sink that batches passes its batch on, one that
	// times connections out looks at the clock.
	Idle()
}

// L7ClassCounters are the kernel's capture counters of one class.
type L7ClassCounters struct {
	// Captured is the captures the ring buffer took.
	Captured uint64
	// RingBuf is the captures the ring buffer refused: their segments are
	// missing from the streams userspace follows (it sees a gap).
	RingBuf uint64
	// Load is the captures sent without their head because the payload
	// could not be read.
	Load uint64
}

// L7Counters are the capture counters per class, summed over CPUs.
type L7Counters [L7ClassMax]L7ClassCounters

var l7EventHeader = int(unsafe.Offsetof(bpfL7Event{}.Head))

// L7CounterMax is the number of capture counters per class (l7_counters).
const L7CounterMax = int(bpfL7CounterL7COUNTER_MAX)

// L7Counters reads the kernel's capture counters.
func (c *Collector) L7Counters() (L7Counters, error) {
	var out L7Counters
	var per []uint64
	n := uint32(bpfL7CounterL7COUNTER_MAX)
	for class := range uint32(L7ClassMax) {
		for k := range n {
			if err := c.objs.L7Counters.Lookup(class*n+k, &per); err != nil {
				return out, fmt.Errorf("read L7 counters: %w", err)
			}
			var sum uint64
			for _, v := range per {
				sum += v
			}
			switch bpfL7Counter(k) {
			case bpfL7CounterL7COUNTER_CAPTURED:
				out[class].Captured = sum
			case bpfL7CounterL7COUNTER_RINGBUF:
				out[class].RingBuf = sum
			case bpfL7CounterL7COUNTER_LOAD:
				out[class].Load = sum
			}
		}
	}
	return out, nil
}

// RunL7 passes every L7 capture to sink until ctx is done, then returns
// nil. It returns nil at once when L7 capture is off. It runs beside Run,
// on its own goroutine: captures never wait for flow records, nor flow
// records for them.
func (c *Collector) RunL7(ctx context.Context, sink L7Sink) error {
	if c.l7reader == nil {
		return nil
	}
	stop := context.AfterFunc(ctx, func() { c.l7reader.Flush() })
	defer stop()
	var rec ringbuf.Record
	var capt L7Capture
	poll := c.l7poll
	c.l7reader.SetDeadline(time.Now().Add(poll))
	for {
		err := c.l7reader.ReadInto(&rec)
		switch {
		case err == nil:
			if decodeL7(rec.RawSample, &capt) {
				c.l7Captures.Add(1)
				sink.Capture(&capt)
			} else {
				c.l7Bad.Add(1)
			}
			if c.l7reader.AvailableBytes() == 0 {
				sink.Idle()
			}
			continue
		case errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, ringbuf.ErrFlushed):
		default:
			return fmt.Errorf("read L7 ring buffer: %w", err)
		}
		sink.Idle()
		if ctx.Err() != nil {
			return nil
		}
		c.l7reader.SetDeadline(time.Now().Add(poll))
	}
}

// decodeL7 decodes a ring buffer record into out, reporting false for one
// that is not a capture.
func decodeL7(raw []byte, out *L7Capture) bool {
	if len(raw) < l7EventHeader {
		return false
	}
	var h bpfL7Event
	// Only the header: the head bytes are read in place.
	hdr := unsafe.Slice((*byte)(unsafe.Pointer(&h)), l7EventHeader)
	copy(hdr, raw[:l7EventHeader])
	hl := int(h.HeadLen)
	if hl > len(raw)-l7EventHeader || hl > L7HeadMax || uint32(hl) > h.Len || (h.Proto != 6 && h.Proto != 17) {
		return false
	}
	*out = L7Capture{
		Src: netip.AddrFrom16(h.Src).Unmap(), Dst: netip.AddrFrom16(h.Dst).Unmap(),
		SrcPort: h.Sport, DstPort: h.Dport, IfIndex: h.Ifindex,
		TimeNs: int64(h.TsNs), Seq: h.Seq, Len: h.Len,
		Head:  raw[l7EventHeader : l7EventHeader+hl],
		Proto: h.Proto, TCPFlags: h.TcpFlags,
		IsReply: h.IsReply != 0, Ingress: h.Ingress != 0, Class: h.Class,
	}
	return true
}

// setL7 sets the L7 capture's switches and sizes before load. Off, the
// capture's maps take their least sizes and the program has no capture.
func setL7(spec *ebpf.CollectionSpec, l7 L7Config) error {
	set := func(name string, v any) error {
		if err := spec.Variables[name].Set(v); err != nil {
			return fmt.Errorf("set %s: %w", name, err)
		}
		return nil
	}
	if !l7.Enabled() {
		spec.Maps["l7_ports"].MaxEntries = 1
		spec.Maps["l7_events"].MaxEntries = uint32(os.Getpagesize())
		return set("l7_enabled", uint8(0))
	}
	var top uint16
	for _, p := range l7.Ports {
		top = max(top, p.Port)
	}
	spec.Maps["l7_ports"].MaxEntries = uint32(top) + 1
	spec.Maps["l7_events"].MaxEntries = l7.RingBufSize
	if err := set("l7_enabled", uint8(1)); err != nil {
		return err
	}
	if err := set("l7_head_bytes", l7.HeadBytes); err != nil {
		return err
	}
	return set("l7_wakeup_bytes", l7.RingBufSize/4)
}

// fillL7Ports writes the enabled ports' classes into l7_ports.
func fillL7Ports(m *ebpf.Map, ports []L7Port) error {
	for _, p := range ports {
		var v bpfL7Port
		if err := m.Lookup(uint32(p.Port), &v); err != nil {
			return fmt.Errorf("read L7 port %d: %w", p.Port, err)
		}
		v.Class[boolByte(p.Proto == 17)] = p.Class
		if err := m.Update(uint32(p.Port), &v, ebpf.UpdateExist); err != nil {
			return fmt.Errorf("enable L7 port %d: %w", p.Port, err)
		}
	}
	return nil
}
