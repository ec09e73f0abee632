// Package relayclient reads many Observer servers as one: PeerSet keeps a
// gRPC client per server address (Resolve expands DNS names into them, as
// for a headless Service), and Merge sends one GetFlowsRequest to every
// peer and merges their streams in time order, with node status events for
// the peers that cannot be read. The relay service (aggregator/relay) is
// built on it.
package relayclient
