package lab

// The lab is made of Linux network namespaces, veths and routes: lab.go
// (Up, Down, GetStatus), netns.go and traffic.go (Traffic) build for Linux
// only, and on other systems (lab_other.go) those calls return
// ErrNeedsLinux. The topology, the plan, the endpoints file, the pods'
// servers and clients, and this file build everywhere.

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"time"
)

// Defaults of Config.
const (
	DefaultPrefix   = "fb"
	DefaultStateDir = "/run/flowbus-lab"
)

// Config says where a lab lives and how to start its processes.
type Config struct {
	// Prefix names everything the lab makes on the host: namespaces
	// "<prefix>-<pod>", host veths "<prefix><N>h", and the marker argument
	// of its processes. 1 to 8 lower-case letters; two labs with different
	// prefixes (and address ranges) can coexist.
	Prefix string
	// StateDir holds lab.json, endpoints.yaml, policies.yaml, logs/, ready/
	// and truth/ (the clients' ground-truth logs, TruthPath).
	StateDir string
	// Node overrides the topology's node name in the endpoints file.
	Node string
	// EndpointsFile is where Up writes the endpoints file; default
	// <StateDir>/endpoints.yaml. Its path is saved in lab.json, and Down
	// removes it.
	EndpointsFile string
	// Kubeconfig, when set, is the kubeconfig file of a Kubernetes API
	// server Up registers the lab in (RegisterKubernetes), for an agent
	// with --endpoints-source kubernetes. It is saved in lab.json, and
	// Down unregisters the lab from it.
	Kubeconfig string
	// Self is the command line that runs this program's Child entry point:
	// Up runs Self + ["serve", ...] and Traffic Self + ["client", ...] inside
	// the pods' namespaces. For the flowbus binary: [<executable>, "lab"].
	Self []string
	// ReadyTimeout bounds the wait for the servers to listen; default 15 s.
	ReadyTimeout time.Duration
	Log          *slog.Logger
}

// Validate checks the config and fills defaults.
func (c *Config) Validate() error {
	if c.Prefix == "" {
		c.Prefix = DefaultPrefix
	}
	if !prefixRE.MatchString(c.Prefix) {
		return fmt.Errorf("prefix %q: want 1 to 8 lower-case letters", c.Prefix)
	}
	if c.StateDir == "" {
		c.StateDir = DefaultStateDir
	}
	if c.EndpointsFile == "" {
		c.EndpointsFile = EndpointsPath(c.StateDir)
	}
	// Absolute, so that down finds it from any working directory.
	if abs, err := filepath.Abs(c.EndpointsFile); err == nil {
		c.EndpointsFile = abs
	}
	if abs, err := filepath.Abs(c.StateDir); err == nil {
		c.StateDir = abs
	}
	if c.ReadyTimeout <= 0 {
		c.ReadyTimeout = 15 * time.Second
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	return nil
}

// ErrNotRoot is returned when the lab is asked for something that needs root.
var ErrNotRoot = errors.New("the lab needs root (network namespaces, veths, routes): run it with sudo")

// ErrNeedsLinux is what Up, Down, GetStatus, Traffic and InNetNS return,
// wrapped with the system the binary was built for, on any system but Linux.
var ErrNeedsLinux = errors.New("needs Linux network namespaces")

// TrafficOptions says how much traffic to make.
type TrafficOptions struct {
	Duration time.Duration // how long the clients run; default 30 s
	Rate     float64       // requests per second per client edge; default 10
	Seed     uint64        // seeds the ids and choices of the clients
	Progress io.Writer     // one line per second; nil for none
}
