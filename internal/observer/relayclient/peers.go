package relayclient

import (
	"context"
	"fmt"
	"net"
	"slices"
	"sync"
	"time"

	observerpb "github.com/cilium/cilium/api/v1/observer"
	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
)

// Peer is one Observer server (an agent) the relay reads from. Safe for
// concurrent use.
type Peer struct {
	Addr   string // host:port dialled
	Client observerpb.ObserverClient
	conn   *grpc.ClientConn

	mu   sync.Mutex
	name string // node name learned from the agent's GetNodes; addr until then
}

// LearnName records the agent's node name as seen in its responses.
func (p *Peer) LearnName(name string) {
	if name == "" {
		return
	}
	p.mu.Lock()
	if p.name == "" {
		p.name = name
	}
	p.mu.Unlock()
}

// NodeName returns the agent's node name, asking it once if unknown.
func (p *Peer) NodeName(ctx context.Context) string {
	p.mu.Lock()
	name := p.name
	p.mu.Unlock()
	if name != "" {
		return name
	}
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	res, err := p.Client.GetNodes(ctx, &observerpb.GetNodesRequest{})
	if err != nil || len(res.GetNodes()) == 0 || res.GetNodes()[0].GetName() == "" {
		return p.Addr
	}
	p.mu.Lock()
	p.name = res.GetNodes()[0].GetName()
	p.mu.Unlock()
	return res.GetNodes()[0].GetName()
}

// Available reports whether the peer's connection can carry a stream, as
// Hubble Relay judges its peers (anything but TRANSIENT_FAILURE and
// SHUTDOWN). A connection that is idle is asked to connect, and one that
// is connecting is given until ctx ends to succeed or fail, so that a
// freshly started relay or a peer just added is judged by its first
// attempt rather than counted connected while that attempt is under way.
func (p *Peer) Available(ctx context.Context) bool {
	if p.conn == nil {
		return true // a test peer with a bare client
	}
	for {
		st := p.conn.GetState()
		switch st {
		case connectivity.Ready:
			return true
		case connectivity.TransientFailure, connectivity.Shutdown:
			return false
		case connectivity.Idle:
			p.conn.Connect()
		}
		if !p.conn.WaitForStateChange(ctx, st) {
			return true // still connecting: Hubble Relay counts it connected
		}
	}
}

// ResetConnectBackoff makes the peer's connection try again now if it is
// waiting out gRPC's reconnect backoff (which grows to minutes while a
// peer is down).
func (p *Peer) ResetConnectBackoff() {
	if p.conn != nil {
		p.conn.ResetConnectBackoff()
	}
}

// KnownName returns the node name learned so far ("" if none).
func (p *Peer) KnownName() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.name
}

// PeerSet tracks the Observer servers behind the configured targets. Safe
// for concurrent use.
type PeerSet struct {
	mu    sync.Mutex
	peers map[string]*Peer
	dial  func(addr string) (*grpc.ClientConn, error)
}

// NewPeerSet returns an empty set whose peers are connected with dial.
func NewPeerSet(dial func(addr string) (*grpc.ClientConn, error)) *PeerSet {
	return &PeerSet{peers: map[string]*Peer{}, dial: dial}
}

// Snapshot returns the current peers, sorted by address.
func (s *PeerSet) Snapshot() []*Peer {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*Peer, 0, len(s.peers))
	for _, p := range s.peers {
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b *Peer) int {
		switch {
		case a.Addr < b.Addr:
			return -1
		case a.Addr > b.Addr:
			return 1
		}
		return 0
	})
	return out
}

// Update makes the set equal to addrs: new addresses get a client
// connection, which starts connecting at once, vanished ones are closed. It returns the added and removed
// addresses.
func (s *PeerSet) Update(addrs []string) (added, removed []string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	want := map[string]bool{}
	for _, a := range addrs {
		want[a] = true
		if _, ok := s.peers[a]; ok {
			continue
		}
		conn, derr := s.dial(a)
		if derr != nil {
			err = fmt.Errorf("client for %s: %w", a, derr)
			continue
		}
		conn.Connect() // keep a connection up, as Hubble Relay's peer pool does
		s.peers[a] = &Peer{Addr: a, conn: conn, Client: observerpb.NewObserverClient(conn)}
		added = append(added, a)
	}
	for a, p := range s.peers {
		if !want[a] {
			p.conn.Close()
			delete(s.peers, a)
			removed = append(removed, a)
		}
	}
	return added, removed, err
}

// CloseAll closes every peer's connection and empties the set.
func (s *PeerSet) CloseAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for a, p := range s.peers {
		p.conn.Close()
		delete(s.peers, a)
	}
}

// Resolve expands targets ("host:port") into addresses: an IP stays as is, a
// name becomes every address it resolves to (a headless Service gives one per
// agent pod). A name that does not resolve now is skipped (logged by the
// caller) and tried again at the next resolution.
func Resolve(ctx context.Context, lookup func(context.Context, string) ([]string, error), targets []string) ([]string, []error) {
	var out []string
	var errs []error
	for _, t := range targets {
		host, port, err := net.SplitHostPort(t)
		if err != nil {
			errs = append(errs, fmt.Errorf("agent %q: %w", t, err))
			continue
		}
		if net.ParseIP(host) != nil {
			out = append(out, t)
			continue
		}
		ips, err := lookup(ctx, host)
		if err != nil {
			errs = append(errs, fmt.Errorf("resolve agent %q: %w", host, err))
			continue
		}
		for _, ip := range ips {
			out = append(out, net.JoinHostPort(ip, port))
		}
	}
	slices.Sort(out)
	return slices.Compact(out), errs
}
