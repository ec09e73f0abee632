package policy

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/flowbus/flowbus/agent/identity"
	"github.com/flowbus/flowbus/agent/policy/netpoltest"
)

var protoByName = map[string]uint8{"TCP": ProtoTCP, "UDP": ProtoUDP, "SCTP": ProtoSCTP}

// TestConformance replays the upstream Kubernetes NetworkPolicy e2e
// scenarios (agent/policy/netpoltest) through the compiler and the
// datapath's reference model: every probe of every step, from every pod to
// every other pod, must match upstream's expected truth table. It also
// checks that each step's Diff, applied to the previous step's policy maps,
// gives this step's.
func TestConformance(t *testing.T) {
	scenarios, err := netpoltest.Scenarios()
	if err != nil {
		t.Fatal(err)
	}
	if len(scenarios) < 40 {
		t.Fatalf("%d scenarios, want at least 40", len(scenarios))
	}
	probes := 0
	for _, s := range scenarios {
		t.Run(s.Name, func(t *testing.T) {
			ips := netpoltest.DefaultIPs(s.Pods)
			st := netpoltest.NewState(s, ips)
			var prev *Result
			for i := range s.Steps {
				step := &s.Steps[i]
				snap, err := st.Step(step)
				if err != nil {
					t.Fatalf("step %d: %v", i, err)
				}
				res, ids := Compile(snap, identity.Allocator{Node: "node-1"})
				if len(res.Errors) > 0 {
					t.Fatalf("step %d: policies rejected: %v", i, res.Errors)
				}
				checkDiff(t, prev, res)
				prev = res
				for _, pr := range step.Probes {
					want := pr.Expected(s.Pods)
					got := netpoltest.Table{}
					wrong := 0
					for _, from := range s.Pods {
						got[from] = map[string]bool{}
						for _, to := range s.Pods {
							v := Evaluate(res, ids, Flow{Src: ips[from], Dst: ips[to], Proto: protoByName[pr.Protocol], Port: pr.Port})
							got[from][to] = v.Allowed
							if from != to { // loopback is not compared, as upstream
								probes++
								if v.Allowed != want[from][to] {
									wrong++
								}
							}
						}
					}
					if wrong > 0 {
						t.Errorf("step %d, %s/%d: %d wrong probes\nexpected:\n%s\nobserved:\n%s", i, pr.Protocol, pr.Port, wrong,
							want.Format(s.Pods), got.Format(s.Pods))
					}
				}
			}
		})
	}
	t.Logf("%d scenarios, %d probes compared", len(scenarios), probes)
}

// checkDiff applies Diff(prev, cur) to prev's maps and compares the result
// with cur's.
func checkDiff(t *testing.T, prev, cur *Result) {
	t.Helper()
	state := map[string]*[2]mapState{}
	if prev != nil {
		for i := range prev.Endpoints {
			ep := &prev.Endpoints[i]
			state[ep.Namespace+"/"+ep.Name] = &[2]mapState{load(&ep.Ingress), load(&ep.Egress)}
		}
	}
	for _, ch := range Diff(prev, cur) {
		k := ch.Namespace + "/" + ch.Name
		if ch.Removed {
			delete(state, k)
			continue
		}
		if state[k] == nil {
			state[k] = &[2]mapState{newMapState(), newMapState()}
		}
		state[k][Ingress].apply(&ch.Ingress)
		state[k][Egress].apply(&ch.Egress)
	}
	if len(state) != len(cur.Endpoints) {
		t.Errorf("after the diff: %d endpoints, want %d", len(state), len(cur.Endpoints))
	}
	for i := range cur.Endpoints {
		ep := &cur.Endpoints[i]
		s := state[ep.Namespace+"/"+ep.Name]
		if s == nil {
			t.Errorf("after the diff: endpoint %s/%s missing", ep.Namespace, ep.Name)
			continue
		}
		for d, dp := range []*DirectionPolicy{&ep.Ingress, &ep.Egress} {
			if got, want := s[d].String(), load(dp).String(); got != want {
				t.Errorf("after the diff, %s/%s %s:\n%s\nwant\n%s", ep.Namespace, ep.Name, Direction(d), got, want)
			}
		}
	}
}

// mapState is a direction's kernel state as a diff leaves it.
type mapState struct {
	enforced    bool
	selectedBy  []PolicyRef
	allow, deny map[Key][]PolicyRef
}

func newMapState() mapState {
	return mapState{allow: map[Key][]PolicyRef{}, deny: map[Key][]PolicyRef{}}
}

func load(dp *DirectionPolicy) mapState {
	m := newMapState()
	m.enforced, m.selectedBy = dp.Enforced, dp.SelectedBy
	for _, e := range dp.Allow {
		m.allow[e.Key] = e.Policies
	}
	for _, e := range dp.Deny {
		m.deny[e.Key] = e.Policies
	}
	return m
}

func (m *mapState) apply(c *DirectionChange) {
	for _, e := range c.Upsert {
		m.allow[e.Key] = e.Policies
	}
	for _, e := range c.UpsertDeny {
		m.deny[e.Key] = e.Policies
	}
	m.enforced = c.Enforced
	if c.SelectedByChanged {
		m.selectedBy = c.SelectedBy
	}
	for _, k := range c.DeleteDeny {
		delete(m.deny, k)
	}
	for _, k := range c.Delete {
		delete(m.allow, k)
	}
}

func (m mapState) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "enforced=%v selectedBy=%v", m.enforced, m.selectedBy)
	for _, l := range []map[Key][]PolicyRef{m.allow, m.deny} {
		var lines []string
		for k, p := range l {
			lines = append(lines, fmt.Sprintf("\n  %v %v", k, p))
		}
		slices.Sort(lines)
		b.WriteString(strings.Join(lines, ""))
		b.WriteString("\n  --")
	}
	return b.String()
}
