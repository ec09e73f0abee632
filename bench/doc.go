// Package bench holds the benchmarks of whole flowbus paths, each beside its
// baselines in the same run; the figures and the exact commands that
// produced them are in RESULTS.md, which `make bench` regenerates
// (bench/mkresults), and their history in HISTORY.md. Whole-process
// measurements are commands of their own: bench/agentcpu (the agent on the
// eBPF source in the lab, steady rates and a connect storm) and bench/soak
// (`make soak`: the agent, a NATS server and the aggregator for 30 minutes
// at 10k flows/s; soak.csv, soak-*.png and soak.md here). Benchmarks of one
// component live beside that component (agent, aggregator, bpf,
// internal/flowcodec, internal/observer, sinks).
package bench
