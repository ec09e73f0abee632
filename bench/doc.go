// Package bench holds the benchmarks of whole flowbus paths, each beside its
// baselines in the same run; the figures and the exact commands that
// produced them are in RESULTS.md, which `make bench` regenerates
// (bench/mkresults), and their history in HISTORY.md. Benchmarks of one
// component live beside that component (agent, aggregator, bpf,
// internal/flowcodec, internal/observer, sinks).
package bench
