//go:build !linux

// Command soak runs the real flowbus agent, a NATS server and the
// aggregator for a long time and samples their /proc; it needs Linux.
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "soak: reads /proc/<pid>: needs Linux")
	os.Exit(1)
}
