package observer

import (
	flowpb "github.com/cilium/cilium/api/v1/flow"

	"github.com/flowbus/flowbus/internal/observer/observertest"
	"github.com/flowbus/flowbus/schemas"
)

// The shared fixture (observertest) under the names these tests use.
var baseTime = observertest.BaseTime

func fixtureFlows() []schemas.Flow                 { return observertest.Flows() }
func filterCases() []observertest.Case             { return observertest.Cases() }
func ff(f *flowpb.FlowFilter) []*flowpb.FlowFilter { return observertest.FF(f) }
func without(ex ...string) []string                { return observertest.Without(ex...) }
