//go:build !linux

// Command agentcpu measures the flowbus agent on the eBPF source in the
// lab; both need Linux.
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "agentcpu: the eBPF source and the lab need Linux")
	os.Exit(1)
}
