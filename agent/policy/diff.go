package policy

import (
	"cmp"
	"slices"
)

// EndpointChange is what changes in one endpoint's policy between two
// results: what to write to and delete from its kernel maps.
type EndpointChange struct {
	Namespace, Name string
	Added, Removed  bool // the endpoint is new, or gone (then every key is in the Deletes)
	Ingress, Egress DirectionChange
}

// DirectionChange is what changes in one direction of an endpoint. To
// keep the endpoint from being open or closed by accident while the
// change is applied, apply it in this order: Upsert, UpsertDeny, the
// enforced flag (and SelectedBy), DeleteDeny, Delete. Every state in
// between then allows at most what the old or the new policy allows and
// denies at most what one of them denies.
type DirectionChange struct {
	Enforced          bool // the new value
	EnforcedChanged   bool
	SelectedBy        []PolicyRef // the new value
	SelectedByChanged bool
	FailClosed        string  // the new value
	Upsert            []Entry // allow entries that are new or name other policies
	Delete            []Key   // allow entries that are gone
	UpsertDeny        []Entry
	DeleteDeny        []Key
}

// Empty reports whether nothing changes.
func (c *DirectionChange) Empty() bool {
	return !c.EnforcedChanged && !c.SelectedByChanged && len(c.Upsert)+len(c.Delete)+len(c.UpsertDeny)+len(c.DeleteDeny) == 0
}

// Diff returns what changes from old to new (either may be nil), one
// EndpointChange per endpoint whose policy changes, sorted by namespace
// and name. Its cost is linear in the entries of both, a merge of sorted
// lists.
func Diff(old, new *Result) []EndpointChange {
	var a, b []EndpointPolicy
	if old != nil {
		a = old.Endpoints
	}
	if new != nil {
		b = new.Endpoints
	}
	var out []EndpointChange
	var none EndpointPolicy
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		var c int
		switch {
		case i == len(a):
			c = 1
		case j == len(b):
			c = -1
		default:
			c = cmp.Or(cmp.Compare(a[i].Namespace, b[j].Namespace), cmp.Compare(a[i].Name, b[j].Name))
		}
		var ch EndpointChange
		switch {
		case c < 0:
			ch = EndpointChange{Namespace: a[i].Namespace, Name: a[i].Name, Removed: true,
				Ingress: diffDir(&a[i].Ingress, &none.Ingress), Egress: diffDir(&a[i].Egress, &none.Egress)}
			i++
		case c > 0:
			ch = EndpointChange{Namespace: b[j].Namespace, Name: b[j].Name, Added: true,
				Ingress: diffDir(&none.Ingress, &b[j].Ingress), Egress: diffDir(&none.Egress, &b[j].Egress)}
			j++
		default:
			ch = EndpointChange{Namespace: b[j].Namespace, Name: b[j].Name,
				Ingress: diffDir(&a[i].Ingress, &b[j].Ingress), Egress: diffDir(&a[i].Egress, &b[j].Egress)}
			i, j = i+1, j+1
		}
		if ch.Added || ch.Removed || !ch.Ingress.Empty() || !ch.Egress.Empty() {
			out = append(out, ch)
		}
	}
	return out
}

func diffDir(a, b *DirectionPolicy) DirectionChange {
	c := DirectionChange{Enforced: b.Enforced, EnforcedChanged: a.Enforced != b.Enforced,
		SelectedBy: b.SelectedBy, SelectedByChanged: !slices.Equal(a.SelectedBy, b.SelectedBy), FailClosed: b.FailClosed}
	c.Upsert, c.Delete = diffEntries(a.Allow, b.Allow)
	c.UpsertDeny, c.DeleteDeny = diffEntries(a.Deny, b.Deny)
	return c
}

func diffEntries(a, b []Entry) (upsert []Entry, del []Key) {
	if len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0]) {
		return nil, nil // the same shared list
	}
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		var c int
		switch {
		case i == len(a):
			c = 1
		case j == len(b):
			c = -1
		default:
			c = compareKey(a[i].Key, b[j].Key)
		}
		switch {
		case c < 0:
			del = append(del, a[i].Key)
			i++
		case c > 0:
			upsert = append(upsert, b[j])
			j++
		default:
			if !slices.Equal(a[i].Policies, b[j].Policies) {
				upsert = append(upsert, b[j])
			}
			i, j = i+1, j+1
		}
	}
	return upsert, del
}
