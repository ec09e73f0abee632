// Package filter evaluates the FlowFilters of a GetFlowsRequest (whitelist
// and blacklist) on schemas.Flow records, as cilium's pkg/hubble/filters
// evaluates them on flow.Flow: the Observer server compiles a request's
// filters once (CompileFilters) and tests every ring entry with Filters.Pass,
// without converting it. The decisions behind it are in package observer.
package filter
