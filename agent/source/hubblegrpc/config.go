package hubblegrpc

import (
	"errors"
	"fmt"
	"strings"
	"time"

	flowpb "github.com/cilium/cilium/api/v1/flow"

	"github.com/flowbus/flowbus/internal/observer"
)

// Defaults of Config.
const (
	DefaultBatchSize     = 512
	DefaultFlushInterval = 100 * time.Millisecond
	DefaultBackoffMin    = 100 * time.Millisecond
	DefaultBackoffMax    = 10 * time.Second
	DefaultResumeOverlap = 2 * time.Second
	DefaultHistoryMax    = 1 << 20
	DefaultSaveInterval  = 10 * time.Second
	DefaultNodesInterval = 30 * time.Second
)

// Config configures a Hubble source.
type Config struct {
	// Server is Hubble's Observer API: "unix:///var/run/cilium/hubble.sock"
	// (a node's Cilium agent) or "host:port" (Hubble Relay, :4245; or a
	// Cilium agent's :4244). Any gRPC target works.
	Server string
	// TLS towards the server: plaintext unless Enabled; CAFile is the Hubble
	// CA, CertFile/KeyFile the client certificate of mTLS.
	TLS observer.ClientTLS
	// Whitelist and Blacklist are sent with the request: the server filters
	// (query.FilterArgs builds them from hubble observe's filter flags).
	Whitelist, Blacklist []*flowpb.FlowFilter
	// StateFile keeps where the source stopped (the last flows it
	// delivered), so that a restarted agent resumes there; written
	// atomically every SaveInterval and when Run returns. Empty: kept in
	// memory only (a new process starts from the server's whole buffer).
	StateFile string

	BatchSize     int           // flows per batch sent downstream (512)
	FlushInterval time.Duration // a partial batch waits at most this long (100 ms)
	BackoffMin    time.Duration // first wait before reconnecting (100 ms), doubling…
	BackoffMax    time.Duration // …up to this (10 s)
	// ResumeOverlap is how far before the newest flow seen a resumed
	// stream starts (2 s), so that flows Hubble delivered out of time order
	// are not skipped; what it sends again is recognised and dropped.
	ResumeOverlap time.Duration
	// HistoryMax caps the flows remembered for recognising the overlap
	// (1 Mi, 16 B each); past it the resume point moves forward.
	HistoryMax    int
	SaveInterval  time.Duration // how often StateFile is written (10 s)
	NodesInterval time.Duration // how often the server's node list is read again (30 s)
}

func (c Config) withDefaults() Config {
	set := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	if c.BatchSize == 0 {
		c.BatchSize = DefaultBatchSize
	}
	if c.HistoryMax == 0 {
		c.HistoryMax = DefaultHistoryMax
	}
	set(&c.FlushInterval, DefaultFlushInterval)
	set(&c.BackoffMin, DefaultBackoffMin)
	set(&c.BackoffMax, DefaultBackoffMax)
	set(&c.ResumeOverlap, DefaultResumeOverlap)
	set(&c.SaveInterval, DefaultSaveInterval)
	set(&c.NodesInterval, DefaultNodesInterval)
	return c
}

// Validate reports a Config that cannot work.
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	if c.Server == "" {
		errs = append(errs, errors.New("hubble server is empty: give unix:///var/run/cilium/hubble.sock (a node's Cilium agent) or host:port (Hubble Relay, :4245)"))
	} else if strings.HasPrefix(c.Server, "http://") || strings.HasPrefix(c.Server, "https://") {
		errs = append(errs, fmt.Errorf("hubble server %q: give host:port or unix:///path, not a URL (TLS is its own setting)", c.Server))
	}
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		errs = append(errs, errors.New("hubble TLS: a client certificate needs both its certificate and its key file"))
	}
	if !c.TLS.Enabled && (c.TLS.CAFile != "" || c.TLS.CertFile != "" || c.TLS.ServerName != "") {
		errs = append(errs, errors.New("hubble TLS: a CA, client certificate or server name is given but TLS is not enabled"))
	}
	if c.BatchSize < 1 || c.HistoryMax < 1 || c.FlushInterval <= 0 || c.BackoffMin <= 0 || c.BackoffMax < c.BackoffMin ||
		c.ResumeOverlap < 0 || c.SaveInterval <= 0 || c.NodesInterval <= 0 {
		errs = append(errs, fmt.Errorf("hubble source: batch size %d, history %d, flush %v, backoff %v–%v, overlap %v, save %v, nodes %v: sizes must be ≥ 1, durations > 0 (overlap ≥ 0), backoff min ≤ max",
			c.BatchSize, c.HistoryMax, c.FlushInterval, c.BackoffMin, c.BackoffMax, c.ResumeOverlap, c.SaveInterval, c.NodesInterval))
	}
	return errors.Join(errs...)
}
