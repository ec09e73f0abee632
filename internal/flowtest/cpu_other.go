//go:build !unix

package flowtest

import "time"

// ThreadCPU is 0 where getrusage does not exist (Windows): benchmarks that
// charge encoders their thread's CPU run on Linux.
func ThreadCPU() time.Duration { return 0 }
