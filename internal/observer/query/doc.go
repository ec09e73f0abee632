// Package query is the client side of `hubble observe`, as `flowbus
// observe` runs it against an agent or a relay: its filter flags build
// FlowFilters as the hubble CLI builds them (Filters, FilterFlags), its
// other flags the GetFlowsRequest (Request, Plan), and Observe.Run streams
// the answers to package printer. The command itself only wires the flags.
package query
