// Package bench holds the benchmarks of whole flowbus paths, each beside its
// baselines in the same run; the figures and the exact commands that
// produced them are in RESULTS.md. Whole-process measurements are commands
// of their own: bench/agentcpu (the agent on the eBPF source in the lab) and
// bench/soak (`make soak`: the agent, a NATS server and the aggregator for
// 30 minutes at 10k flows/s; soak.csv, soak-*.png and soak.md here). Benchmarks of one component live beside
// that component (schemas, agent, aggregator, bpf, internal/observer).
package bench
