package nats

import (
	"strings"
	_ "unsafe" // go:linkname

	_ "github.com/nats-io/nats-server/v2/server/pse"
)

// The NATS server's pse package (the process's CPU and memory for the
// server's /varz and $SYS statistics) reads /proc/<pid>/stat once a second,
// from its init, in every process that links the server: every flowbus
// process, whether it runs an embedded server or not. In an idle agent that
// read was about 14 % of the process's CPU (perf, bench/HISTORY.md, "Idle").
// The sampling stops for good the first time the read fails, and the path
// it reads is this variable.
//
//go:linkname pseProcStatFile github.com/nats-io/nats-server/v2/server/pse.procStatFile
var pseProcStatFile string

// StopServerSampling stops the NATS server's once-a-second sampling of this
// process (above) at its next tick. An embedded server started after it
// reports 0 CPU and memory in its monitoring statistics, which flowbus
// does not serve; nothing else changes. The path is replaced by one of the
// same length with a NUL byte, which the open refuses before any system
// call: the sampler's timer goroutine may read the variable meanwhile, and
// a string of the same length is safe to read half-written. Idempotent.
func StopServerSampling() {
	p := pseProcStatFile
	if p == "" || strings.IndexByte(p, 0) >= 0 {
		return
	}
	pseProcStatFile = "\x00" + p[1:]
}
