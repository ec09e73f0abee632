//go:build linux

package bpf

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/flowbus/flowbus/bpf/nettest"
)

// TestKernelDropNoSocket sends UDP datagrams from pod A to a port of pod B
// with no socket: B's kernel drops each (SKB_DROP_REASON_NO_SOCKET) inside
// B's namespace, on B's eth0, which the kfree_skb program attributes to
// B's host-side veth. It checks the exact per-reason counter and one
// EventKernelDrop per datagram with its 5-tuple, verdict and Hubble reason.
func TestKernelDropNoSocket(t *testing.T) {
	f := nettest.New(t, false)
	requireBPF(t)
	rec := &recorder{}
	c, stop := startCollector(t, Config{Interfaces: []string{f.HostA, f.HostB}}, rec)
	if e := c.Stats().KernelDropsError; e != "" {
		t.Fatalf("kernel drops not attached: %s", e)
	}
	hostB, err := net.InterfaceByName(f.HostB)
	if err != nil {
		t.Fatal(err)
	}

	const n, payload, dport = 3, 100, 9
	var sport uint16
	err = nettest.In(f.NSA, func() error {
		// Unconnected: the ICMP port unreachable B answers does not fail
		// the later writes.
		conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: f.A.AsSlice()})
		if err != nil {
			return err
		}
		defer conn.Close()
		sport = uint16(conn.LocalAddr().(*net.UDPAddr).Port)
		dst := net.UDPAddrFromAddrPort(netip.AddrPortFrom(f.B, dport))
		for range n {
			if _, err := conn.WriteToUDP(make([]byte, payload), dst); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	kernelDrops := func() []Event {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		var out []Event
		for _, ev := range rec.events {
			if ev.Kind == EventKernelDrop {
				out = append(out, ev)
			}
		}
		return out
	}
	deadline := time.Now().Add(5 * time.Second)
	var drops map[string]uint64
	for {
		if drops, err = c.KernelDrops(); err != nil {
			t.Fatal(err)
		}
		if (drops["NO_SOCKET"] >= n && len(kernelDrops()) >= n) || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Anything more would have come by now.
	time.Sleep(200 * time.Millisecond)
	if drops, err = c.KernelDrops(); err != nil {
		t.Fatal(err)
	}
	// A drop the program missed (it ran on that CPU already, for any
	// drop on the machine) is in neither the counts nor the records, and
	// counted as missed.
	missed, err := c.KernelDropsMissed()
	if err != nil {
		t.Fatal(err)
	}
	stop()
	t.Logf("kernel drops by reason: %v; missed %d", drops, missed)
	if len(drops) != 1 || drops["NO_SOCKET"] > n || drops["NO_SOCKET"]+missed < n {
		t.Errorf("kernel drops %v (%d missed), want exactly NO_SOCKET: %d", drops, missed, n)
	}
	evs := kernelDrops()
	if uint64(len(evs)) != drops["NO_SOCKET"] {
		t.Fatalf("%d kernel drop events, want %d: %+v", len(evs), drops["NO_SOCKET"], evs)
	}
	for _, ev := range evs {
		if ev.IfIndex != uint32(hostB.Index) || ev.IfName != f.HostB || ev.IPVersion != 4 || ev.Protocol != 17 ||
			ev.Src != f.A || ev.Dst != f.B || ev.SrcPort != sport || ev.DstPort != dport {
			t.Errorf("event on %d %q v%d proto %d %v:%d → %v:%d, want on %d %q v4 proto 17 %v:%d → %v:%d",
				ev.IfIndex, ev.IfName, ev.IPVersion, ev.Protocol, ev.Src, ev.SrcPort, ev.Dst, ev.DstPort,
				hostB.Index, f.HostB, f.A, sport, f.B, dport)
		}
		if ev.Verdict != VerdictDropped || ev.DropReason != HubbleDropReason("NO_SOCKET") || ev.DropReason != 178 {
			t.Errorf("verdict %d reason %d, want %d (dropped) and 178 (SOCKET_LOOKUP_FAILED)",
				ev.Verdict, ev.DropReason, VerdictDropped)
		}
		// Received by pod B: not sent by the pod behind HostB.
		if ev.Ingress || ev.IsReply {
			t.Errorf("ingress %v reply %v, want false, false", ev.Ingress, ev.IsReply)
		}
		// One frame: Ethernet, IPv4, UDP headers and the payload.
		if ev.PacketsFwd != 1 || ev.BytesFwd != 14+20+8+payload || ev.PacketsRev != 0 || ev.BytesRev != 0 {
			t.Errorf("packets %d/%d bytes %d/%d, want 1/0 and %d/0",
				ev.PacketsFwd, ev.PacketsRev, ev.BytesFwd, ev.BytesRev, 14+20+8+payload)
		}
	}
}
