package lab

import (
	"fmt"
	"sort"
	"strings"
)

// Status is what exists of a lab.
type Status struct {
	Prefix    string
	Plan      *Plan // nil if the state directory holds no lab
	Leftovers Leftovers
}

// Leftovers is what exists on the host under one prefix.
type Leftovers struct {
	NetNS     []string // network namespaces <prefix>-*
	Links     []string // host interfaces <prefix><N>h
	Processes []int    // processes of the lab: marked on their command line, or inside a lab namespace
	Files     []string // state files (set by Down: the ones it removed)
	Cgroups   []string // the lab's cgroup and its pods' (CgroupName), deepest first
}

// Empty reports whether nothing of the lab exists.
func (l Leftovers) Empty() bool {
	return len(l.NetNS) == 0 && len(l.Links) == 0 && len(l.Processes) == 0 && len(l.Files) == 0 && len(l.Cgroups) == 0
}

func (l Leftovers) String() string {
	var parts []string
	if len(l.NetNS) > 0 {
		parts = append(parts, "netns "+strings.Join(l.NetNS, ","))
	}
	if len(l.Links) > 0 {
		parts = append(parts, "links "+strings.Join(l.Links, ","))
	}
	if len(l.Processes) > 0 {
		parts = append(parts, fmt.Sprintf("processes %v", l.Processes))
	}
	if len(l.Cgroups) > 0 {
		parts = append(parts, fmt.Sprintf("%d cgroups", len(l.Cgroups)))
	}
	if len(l.Files) > 0 {
		parts = append(parts, fmt.Sprintf("%d state files", len(l.Files)))
	}
	if len(parts) == 0 {
		return "nothing"
	}
	return strings.Join(parts, "; ")
}

// TrafficReport is the outcome of Traffic: the final counters of every edge,
// in topology order.
type TrafficReport struct {
	Edges []EdgeStats
}

// Total sums every edge.
func (r TrafficReport) Total() EdgeStats {
	var t EdgeStats
	for _, e := range r.Edges {
		t.Sent += e.Sent
		t.OK += e.OK
		t.Status5xx += e.Status5xx
		t.Resets += e.Resets
		t.Timeouts += e.Timeouts
		t.Errors += e.Errors
		t.Skipped += e.Skipped
		t.Connections += e.Connections
	}
	return t
}

// SortedEdges returns the report's edges sorted by name, for printing.
func (r TrafficReport) SortedEdges() []EdgeStats {
	out := append([]EdgeStats(nil), r.Edges...)
	sort.SliceStable(out, func(i, j int) bool { return out[i].Name() < out[j].Name() })
	return out
}
