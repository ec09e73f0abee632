package filter

import (
	"github.com/flowbus/flowbus/internal/observer/observertest"
	"github.com/flowbus/flowbus/schemas"
)

// The shared fixture (observertest) under the names these tests use.
func fixtureFlows() []schemas.Flow     { return observertest.Flows() }
func filterCases() []observertest.Case { return observertest.Cases() }
