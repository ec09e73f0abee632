//go:build linux

package bpf

import (
	"errors"
	"fmt"
	"net"
	"path"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

// attachment is the pair of tcx links on one interface.
type attachment struct {
	name    string
	ingress link.Link
	egress  link.Link
}

func (a *attachment) close() error {
	return errors.Join(a.ingress.Close(), a.egress.Close())
}

// matchInterface reports whether name matches one of the patterns
// (path.Match globs: "veth*", "lxc*", "eth0").
func matchInterface(patterns []string, name string) bool {
	for _, p := range patterns {
		if ok, _ := path.Match(p, name); ok {
			return true
		}
	}
	return false
}

// attachTCX attaches ingress and egress at the head of the interface's tcx
// chains, so the flow programs see packets before programs that may drop or
// redirect them; they return TCX_NEXT, or drop a packet the policy denies.
func attachTCX(ingress, egress *ebpf.Program, ifc net.Interface) (*attachment, error) {
	in, err := link.AttachTCX(link.TCXOptions{
		Interface: ifc.Index, Program: ingress, Attach: ebpf.AttachTCXIngress, Anchor: link.Head(),
	})
	if err != nil {
		return nil, fmt.Errorf("attach tcx ingress %s: %w", ifc.Name, err)
	}
	out, err := link.AttachTCX(link.TCXOptions{
		Interface: ifc.Index, Program: egress, Attach: ebpf.AttachTCXEgress, Anchor: link.Head(),
	})
	if err != nil {
		in.Close()
		return nil, fmt.Errorf("attach tcx egress %s: %w", ifc.Name, err)
	}
	return &attachment{name: ifc.Name, ingress: in, egress: out}, nil
}

// reconcile attaches to every present interface that matches and is not
// attached yet, and forgets attachments whose interface is gone (the kernel
// removes a device's tcx links with it). It returns the first attach error;
// the other interfaces are still handled.
func (c *Collector) reconcile() error {
	ifcs, err := net.Interfaces()
	if err != nil {
		return fmt.Errorf("list interfaces: %w", err)
	}
	present := make(map[int]bool, len(ifcs))
	var next []Interface
	changed := false
	for _, ifc := range ifcs {
		if !matchInterface(c.cfg.Interfaces, ifc.Name) {
			continue
		}
		present[ifc.Index] = true
		next = append(next, Interface{Index: ifc.Index, Name: ifc.Name})
		if a, ok := c.attached[ifc.Index]; !ok || a.name != ifc.Name {
			changed = true
		}
	}
	for idx := range c.attached {
		if !present[idx] {
			changed = true
		}
	}
	if changed && c.cfg.BeforeAttach != nil {
		c.cfg.BeforeAttach(next)
	}
	var first error
	for _, ifc := range ifcs {
		if !present[ifc.Index] {
			continue
		}
		if a, ok := c.attached[ifc.Index]; ok && a.name == ifc.Name {
			continue
		} else if ok {
			a.close()
		}
		a, err := attachTCX(c.objs.FlowIngress, c.objs.FlowEgress, ifc)
		if err != nil {
			if first == nil {
				first = err
			}
			delete(c.attached, ifc.Index)
			c.objs.KdropIfaces.Delete(uint32(ifc.Index))
			continue
		}
		c.attached[ifc.Index] = a
		// The kfree_skb program takes drops on attached interfaces only.
		if err := c.objs.KdropIfaces.Put(uint32(ifc.Index), uint8(1)); err != nil {
			c.log.Warn("kernel drops: add interface", "interface", ifc.Name, "err", err)
		}
		c.log.Info("attached flow programs", "interface", ifc.Name, "ifindex", ifc.Index)
	}
	for idx, a := range c.attached {
		if !present[idx] {
			a.close()
			delete(c.attached, idx)
			c.objs.KdropIfaces.Delete(uint32(idx))
			c.log.Info("interface gone", "interface", a.name, "ifindex", idx)
		}
	}
	c.publishAttached()
	return first
}
