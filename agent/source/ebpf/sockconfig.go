package ebpf

import (
	"fmt"

	"github.com/flowbus/flowbus/internal/cgroupv2"
)

// SockLBConfig turns on socket-layer service load balancing (doc.go,
// "Socket load balancing"): bpf/socklb's cgroup programs attached to
// Cgroup translate the cluster's ClusterIP:port to a ready backend at
// connect() and sendmsg(), and their decisions become TRANSLATED (or, for
// a service without backends, DROPPED) records.
type SockLBConfig struct {
	// Cgroup is the cgroup v2 directory the programs are attached to:
	// every process in it or below is load balanced. "" is the cgroup v2
	// root (CgroupV2Root).
	Cgroup string
	// Algorithm picks a backend: "random" (the default) or "maglev".
	Algorithm string
	// NoTCPPeer: getpeername() on a translated TCP socket returns the
	// backend, and connect() stores nothing per socket (about half its
	// cost); see socklb.Config.NoTCPPeer.
	NoTCPPeer bool
}

// Validate reports a setting that cannot work.
func (c *SockLBConfig) Validate() error {
	switch c.Algorithm {
	case "", "random", "maglev":
	default:
		return fmt.Errorf("socket LB algorithm %q: want random or maglev", c.Algorithm)
	}
	return nil
}

// ErrNoCgroup2 is what CgroupV2Root returns when no cgroup v2 hierarchy is
// mounted.
var ErrNoCgroup2 = cgroupv2.ErrNotMounted

// CgroupV2Root returns where the cgroup v2 hierarchy is mounted
// (cgroupv2.Root).
func CgroupV2Root() (string, error) { return cgroupv2.Root() }
