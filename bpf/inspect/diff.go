package inspect

import (
	"cmp"
	"fmt"
	"io"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// DefaultListMax is how many connections of each kind Compare lists by
// default.
const DefaultListMax = 20

// Diff is what changed from one snapshot (From) to another (To).
type Diff struct {
	From        Header         `json:"from"`
	To          Header         `json:"to"`
	Connections ConnDiff       `json:"connections"`
	Services    []ServiceDiff  `json:"services"`
	Endpoints   []EndpointDiff `json:"endpoints"`
	IPCache     IPCacheDiff    `json:"ipcache"`
	Identities  IdentityDiff   `json:"identities"`
}

// Header names a snapshot.
type Header struct {
	Time time.Time `json:"time"`
	Node string    `json:"node"`
}

// ConnDiff holds the connections in To only (New) and in From only
// (Ended), each list capped; the counts are all of them.
type ConnDiff struct {
	NewCount   int          `json:"new_count"`
	New        []Connection `json:"new"`
	EndedCount int          `json:"ended_count"`
	Ended      []Connection `json:"ended"`
}

// ServiceDiff is one frontend that changed: new, removed or changed
// (backends or algorithm). Backends are by address and port.
type ServiceDiff struct {
	Frontend        string           `json:"frontend"`
	ID              uint32           `json:"id"`
	Change          string           `json:"change"` // new, removed, changed
	BackendsAdded   []netip.AddrPort `json:"backends_added"`
	BackendsRemoved []netip.AddrPort `json:"backends_removed"`
	AlgorithmFrom   string           `json:"algorithm_from,omitempty"`
	AlgorithmTo     string           `json:"algorithm_to,omitempty"`
}

// EndpointDiff is one endpoint whose policy entries changed, or that is
// new or removed (with all its entries added or removed).
type EndpointDiff struct {
	ID           uint32 `json:"id"`
	IfIndex      uint32 `json:"ifindex"`
	Change       string `json:"change"` // new, removed, changed
	RulesAdded   []Rule `json:"rules_added"`
	RulesRemoved []Rule `json:"rules_removed"`
	IdentityFrom uint32 `json:"identity_from,omitempty"` // when its identity changed
	IdentityTo   uint32 `json:"identity_to,omitempty"`
}

// IPCacheDiff holds the ipcache entries added, removed, and changed.
type IPCacheDiff struct {
	Added   []IPEntry `json:"added"`
	Removed []IPEntry `json:"removed"`
	Changed []IPMove  `json:"changed"`
}

// IPMove is a prefix whose entry changed.
type IPMove struct {
	Prefix netip.Prefix `json:"prefix"`
	From   IPEntry      `json:"from"`
	To     IPEntry      `json:"to"`
}

// IdentityDiff holds the identities the ipcache holds in To and not in
// From (New) and the other way (Gone), as a prefix's identity or CIDR
// identity.
type IdentityDiff struct {
	New  []uint32 `json:"new"`
	Gone []uint32 `json:"gone"`
}

// Empty reports whether nothing changed.
func (d *Diff) Empty() bool {
	return d.Connections.NewCount == 0 && d.Connections.EndedCount == 0 && len(d.Services) == 0 &&
		len(d.Endpoints) == 0 && len(d.IPCache.Added) == 0 && len(d.IPCache.Removed) == 0 &&
		len(d.IPCache.Changed) == 0 && len(d.Identities.New) == 0 && len(d.Identities.Gone) == 0
}

// Compare returns what changed from a to b, listing at most listMax
// connections of each kind (negative: all).
func Compare(a, b *Snapshot, listMax int) *Diff {
	d := &Diff{From: Header{a.Time, a.Node}, To: Header{b.Time, b.Node},
		Connections: ConnDiff{New: []Connection{}, Ended: []Connection{}},
		Services:    []ServiceDiff{}, Endpoints: []EndpointDiff{},
		IPCache:    IPCacheDiff{Added: []IPEntry{}, Removed: []IPEntry{}, Changed: []IPMove{}},
		Identities: IdentityDiff{New: []uint32{}, Gone: []uint32{}}}
	d.Connections.New, d.Connections.NewCount = onlyIn(b.Connections, a.Connections, listMax)
	d.Connections.Ended, d.Connections.EndedCount = onlyIn(a.Connections, b.Connections, listMax)
	d.Services = compareServices(a.Services, b.Services)
	d.Endpoints = compareEndpoints(a.Endpoints, b.Endpoints)
	d.IPCache = compareIPCache(a.IPCache, b.IPCache)
	ia, ib := identities(a.IPCache), identities(b.IPCache)
	for id := range ib {
		if !ia[id] {
			d.Identities.New = append(d.Identities.New, id)
		}
	}
	for id := range ia {
		if !ib[id] {
			d.Identities.Gone = append(d.Identities.Gone, id)
		}
	}
	slices.Sort(d.Identities.New)
	slices.Sort(d.Identities.Gone)
	return d
}

// onlyIn returns the connections of x not in y, sorted, at most max of
// them, and how many there are.
func onlyIn(x, y []Connection, max int) ([]Connection, int) {
	in := make(map[string]bool, len(y))
	for _, c := range y {
		in[c.Key()] = true
	}
	out := []Connection{}
	for _, c := range x {
		if !in[c.Key()] {
			out = append(out, c)
		}
	}
	slices.SortFunc(out, compareConns)
	n := len(out)
	if max >= 0 && n > max {
		out = out[:max]
	}
	return out, n
}

func compareServices(a, b []Service) []ServiceDiff {
	byA, byB := map[string]Service{}, map[string]Service{}
	for _, s := range a {
		byA[s.Frontend] = s
	}
	for _, s := range b {
		byB[s.Frontend] = s
	}
	out := []ServiceDiff{}
	for _, f := range slices.Sorted(maps.Keys(byA)) {
		if _, ok := byB[f]; !ok {
			s := byA[f]
			out = append(out, ServiceDiff{Frontend: f, ID: s.ID, Change: "removed", BackendsAdded: []netip.AddrPort{},
				BackendsRemoved: backendAddrs(s.Backends, nil)})
		}
	}
	for _, f := range slices.Sorted(maps.Keys(byB)) {
		sb := byB[f]
		sa, ok := byA[f]
		if !ok {
			out = append(out, ServiceDiff{Frontend: f, ID: sb.ID, Change: "new", BackendsAdded: backendAddrs(sb.Backends, nil),
				BackendsRemoved: []netip.AddrPort{}})
			continue
		}
		sd := ServiceDiff{Frontend: f, ID: sb.ID, Change: "changed",
			BackendsAdded: backendAddrs(sb.Backends, sa.Backends), BackendsRemoved: backendAddrs(sa.Backends, sb.Backends)}
		if sa.Algorithm != sb.Algorithm {
			sd.AlgorithmFrom, sd.AlgorithmTo = sa.Algorithm, sb.Algorithm
		}
		if len(sd.BackendsAdded) > 0 || len(sd.BackendsRemoved) > 0 || sd.AlgorithmTo != "" {
			out = append(out, sd)
		}
	}
	slices.SortStableFunc(out, func(x, y ServiceDiff) int { return cmp.Compare(x.Frontend, y.Frontend) })
	return out
}

// backendAddrs returns the addresses of x not in y, sorted.
func backendAddrs(x, y []Backend) []netip.AddrPort {
	in := map[netip.AddrPort]bool{}
	for _, b := range y {
		in[b.Addr] = true
	}
	out := []netip.AddrPort{}
	for _, b := range x {
		if !in[b.Addr] {
			out = append(out, b.Addr)
		}
	}
	slices.SortFunc(out, netip.AddrPort.Compare)
	return slices.Compact(out)
}

func compareEndpoints(a, b []Endpoint) []EndpointDiff {
	byA, byB := map[uint32]Endpoint{}, map[uint32]Endpoint{}
	for _, e := range a {
		byA[e.ID] = e
	}
	for _, e := range b {
		byB[e.ID] = e
	}
	ids := slices.Sorted(maps.Keys(byA))
	for id := range byB {
		if _, ok := byA[id]; !ok {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	out := []EndpointDiff{}
	for _, id := range ids {
		ea, inA := byA[id]
		eb, inB := byB[id]
		d := EndpointDiff{ID: id, IfIndex: eb.IfIndex, Change: "changed"}
		switch {
		case !inA:
			d.Change = "new"
		case !inB:
			d.Change, d.IfIndex = "removed", ea.IfIndex
		case ea.Identity != eb.Identity:
			d.IdentityFrom, d.IdentityTo = ea.Identity, eb.Identity
		}
		d.RulesAdded, d.RulesRemoved = rulesOnlyIn(eb.Rules, ea.Rules), rulesOnlyIn(ea.Rules, eb.Rules)
		if d.Change != "changed" || len(d.RulesAdded) > 0 || len(d.RulesRemoved) > 0 || d.IdentityTo != 0 {
			out = append(out, d)
		}
	}
	return out
}

func rulesOnlyIn(x, y []Rule) []Rule {
	in := map[string]bool{}
	for _, r := range y {
		in[r.key()] = true
	}
	out := []Rule{}
	for _, r := range x {
		if !in[r.key()] {
			out = append(out, r)
		}
	}
	return out
}

func compareIPCache(a, b []IPEntry) IPCacheDiff {
	d := IPCacheDiff{Added: []IPEntry{}, Removed: []IPEntry{}, Changed: []IPMove{}}
	byA := map[netip.Prefix]IPEntry{}
	for _, e := range a {
		byA[e.Prefix] = e
	}
	seen := map[netip.Prefix]bool{}
	for _, e := range b {
		seen[e.Prefix] = true
		old, ok := byA[e.Prefix]
		switch {
		case !ok:
			d.Added = append(d.Added, e)
		case old != e:
			d.Changed = append(d.Changed, IPMove{Prefix: e.Prefix, From: old, To: e})
		}
	}
	for _, e := range a {
		if !seen[e.Prefix] {
			d.Removed = append(d.Removed, e)
		}
	}
	sortIPCache(d.Added)
	sortIPCache(d.Removed)
	slices.SortFunc(d.Changed, func(x, y IPMove) int { return x.Prefix.Addr().Compare(y.Prefix.Addr()) })
	return d
}

func identities(es []IPEntry) map[uint32]bool {
	out := map[uint32]bool{}
	for _, e := range es {
		out[e.Identity] = true
		if e.CIDR != 0 {
			out[e.CIDR] = true
		}
	}
	return out
}

// WriteText writes the diff as sentences, one change a line or paragraph.
func (d *Diff) WriteText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "From %s to %s", d.From.Time.Format(time.RFC3339), d.To.Time.Format(time.RFC3339))
	if d.From.Node == d.To.Node {
		fmt.Fprintf(&b, " on node %s:\n", d.From.Node)
	} else {
		fmt.Fprintf(&b, ", node %s then node %s (two different agents):\n", d.From.Node, d.To.Node)
	}
	if d.Empty() {
		b.WriteString("Nothing changed.\n")
	}
	conns := func(n int, list []Connection, what string) {
		if n == 0 {
			return
		}
		fmt.Fprintf(&b, "%s %s:\n", plural(n, "connection", "connections"), what)
		for _, c := range list {
			fmt.Fprintf(&b, "  %s\n", c)
		}
		if n > len(list) {
			fmt.Fprintf(&b, "  … and %d more\n", n-len(list))
		}
	}
	newVerb, endVerb := "are new", "ended"
	if d.Connections.NewCount == 1 {
		newVerb = "is new"
	}
	conns(d.Connections.NewCount, d.Connections.New, newVerb)
	conns(d.Connections.EndedCount, d.Connections.Ended, endVerb)
	for _, s := range d.Services {
		name := fmt.Sprintf("Service %s (id %d)", s.Frontend, s.ID)
		switch s.Change {
		case "new":
			fmt.Fprintf(&b, "%s is new, with %s.\n", name, backendList(s.BackendsAdded))
		case "removed":
			fmt.Fprintf(&b, "%s was removed; it had %s.\n", name, backendList(s.BackendsRemoved))
		default:
			var parts []string
			if len(s.BackendsAdded) > 0 {
				parts = append(parts, "gained "+backendList(s.BackendsAdded))
			}
			if len(s.BackendsRemoved) > 0 {
				parts = append(parts, "lost "+backendList(s.BackendsRemoved))
			}
			if s.AlgorithmTo != "" {
				parts = append(parts, fmt.Sprintf("changed its algorithm from %s to %s", s.AlgorithmFrom, s.AlgorithmTo))
			}
			fmt.Fprintf(&b, "%s %s.\n", name, strings.Join(parts, " and "))
		}
	}
	for _, e := range d.Endpoints {
		name := fmt.Sprintf("Endpoint %d (ifindex %d)", e.ID, e.IfIndex)
		switch e.Change {
		case "new":
			fmt.Fprintf(&b, "%s is new, with %s%s\n", name, plural(len(e.RulesAdded), "policy entry", "policy entries"), ruleList(e.RulesAdded))
		case "removed":
			fmt.Fprintf(&b, "%s was removed, with %s%s\n", name, plural(len(e.RulesRemoved), "policy entry", "policy entries"), ruleList(e.RulesRemoved))
		default:
			if e.IdentityTo != 0 {
				fmt.Fprintf(&b, "%s changed identity from %d to %d.\n", name, e.IdentityFrom, e.IdentityTo)
			}
			if len(e.RulesAdded) > 0 {
				fmt.Fprintf(&b, "%s gained %s%s\n", name, plural(len(e.RulesAdded), "policy entry", "policy entries"), ruleList(e.RulesAdded))
			}
			if len(e.RulesRemoved) > 0 {
				fmt.Fprintf(&b, "%s lost %s%s\n", name, plural(len(e.RulesRemoved), "policy entry", "policy entries"), ruleList(e.RulesRemoved))
			}
		}
	}
	for _, id := range d.Identities.New {
		fmt.Fprintf(&b, "Identity %d is new in the ipcache%s.\n", id, prefixesOf(id, d.IPCache.Added, d.IPCache.Changed, true, ": "))
	}
	for _, id := range d.Identities.Gone {
		fmt.Fprintf(&b, "Identity %d is gone from the ipcache%s.\n", id, prefixesOf(id, d.IPCache.Removed, d.IPCache.Changed, false, "; it had "))
	}
	isNew := func(id uint32) bool { _, ok := slices.BinarySearch(d.Identities.New, id); return ok }
	isGone := func(id uint32) bool { _, ok := slices.BinarySearch(d.Identities.Gone, id); return ok }
	for _, e := range d.IPCache.Added {
		if !isNew(e.Identity) {
			fmt.Fprintf(&b, "%s joined identity %d in the ipcache.\n", e.Prefix, e.Identity)
		}
	}
	for _, e := range d.IPCache.Removed {
		if !isGone(e.Identity) {
			fmt.Fprintf(&b, "%s left identity %d in the ipcache.\n", e.Prefix, e.Identity)
		}
	}
	for _, m := range d.IPCache.Changed {
		fmt.Fprintf(&b, "%s moved from identity %d to %d in the ipcache.\n", m.Prefix, m.From.Identity, m.To.Identity)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

func backendList(bs []netip.AddrPort) string {
	if len(bs) == 0 {
		return "no backend"
	}
	s := make([]string, len(bs))
	for i, b := range bs {
		s[i] = b.String()
	}
	word := "backend "
	if len(bs) > 1 {
		word = "backends "
	}
	return word + strings.Join(s, ", ")
}

func ruleList(rs []Rule) string {
	if len(rs) == 0 {
		return "."
	}
	s := make([]string, len(rs))
	for i, r := range rs {
		s[i] = r.String()
	}
	return ": " + strings.Join(s, "; ") + "."
}

// prefixesOf lists the prefixes of identity id among es and the moved
// entries (their new identity if to, else their old one).
func prefixesOf(id uint32, es []IPEntry, moved []IPMove, to bool, lead string) string {
	var s []string
	for _, e := range es {
		if e.Identity == id {
			s = append(s, e.Prefix.String())
		}
	}
	for _, m := range moved {
		if e := m.From; to && m.To.Identity == id || !to && e.Identity == id {
			s = append(s, m.Prefix.String())
		}
	}
	if len(s) == 0 {
		return ""
	}
	return lead + strings.Join(s, ", ")
}
