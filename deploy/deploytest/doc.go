// Package deploytest reads what deploy/ ships, for the tests that check it
// against the binary and Kubernetes: the Helm chart (deploy/helm/flowbus)
// rendered with the Helm SDK as `helm template` would, the systemd units
// (deploy/systemd) as INI sections of keys, and the metric names in the
// PromQL of the Grafana dashboards (deploy/grafana).
//
// The tests of the files themselves are this package's; the checks that
// need the binary's flag sets and metric registries (every --flag a
// template or unit passes exists, every metric a dashboard queries is
// registered) are in cmd/flowbus, which imports this package from its tests.
package deploytest
