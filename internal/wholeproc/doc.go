// Package wholeproc holds what the whole-process measurements of bench/
// (bench/agentcpu, bench/soak) share: starting a flowbus (or NATS) process
// with its own log, stopping it, reading its CPU and memory from /proc,
// scraping its Prometheus metrics, and waiting for ports. Linux only: it
// reads /proc and has the kernel kill a child when its parent dies.
package wholeproc
