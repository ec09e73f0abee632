// Package hubbletest is a deterministic Hubble for tests and benchmarks of
// the Hubble source: Upstream is a node's Hubble server (flowbus's own
// Observer server over a ring, with Hubble's since/first/follow and lost
// events, restarted empty as a Cilium agent restarts) and Cluster generates
// the events a Cilium cluster's Hubble reports for the synthetic payments
// fleet, each marked with whether it carries its connection under the
// count-once rule, so that tests can compute exact expected totals
// independently of the rule's implementation (schemas/hubble.CountAs).
package hubbletest
