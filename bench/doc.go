// Package bench holds the benchmarks of whole flowbus paths, each beside its
// baselines in the same run; the figures and the exact commands that
// produced them are in RESULTS.md. Benchmarks of one component live beside
// that component (schemas, agent, aggregator, bpf, internal/observer).
package bench
