package relay

import (
	"context"
	"fmt"
	"net"
	"slices"
	"sync"
	"time"

	observerpb "github.com/cilium/cilium/api/v1/observer"
	"google.golang.org/grpc"
)

// peer is one agent the relay reads from.
type peer struct {
	addr   string // host:port dialled
	conn   *grpc.ClientConn
	client observerpb.ObserverClient

	mu   sync.Mutex
	name string // node name learned from the agent's GetNodes; addr until then
}

// learnName records the agent's node name as seen in its responses.
func (p *peer) learnName(name string) {
	if name == "" {
		return
	}
	p.mu.Lock()
	if p.name == "" {
		p.name = name
	}
	p.mu.Unlock()
}

// nodeName returns the agent's node name, asking it once if unknown.
func (p *peer) nodeName(ctx context.Context) string {
	p.mu.Lock()
	name := p.name
	p.mu.Unlock()
	if name != "" {
		return name
	}
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	res, err := p.client.GetNodes(ctx, &observerpb.GetNodesRequest{})
	if err != nil || len(res.GetNodes()) == 0 || res.GetNodes()[0].GetName() == "" {
		return p.addr
	}
	p.mu.Lock()
	p.name = res.GetNodes()[0].GetName()
	p.mu.Unlock()
	return res.GetNodes()[0].GetName()
}

// peerSet tracks the agents behind the configured targets.
type peerSet struct {
	mu    sync.Mutex
	peers map[string]*peer
	dial  func(addr string) (*grpc.ClientConn, error)
}

func (s *peerSet) snapshot() []*peer {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*peer, 0, len(s.peers))
	for _, p := range s.peers {
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b *peer) int {
		switch {
		case a.addr < b.addr:
			return -1
		case a.addr > b.addr:
			return 1
		}
		return 0
	})
	return out
}

// update makes the set equal to addrs: new addresses get a (lazy) client
// connection, vanished ones are closed. It returns the added and removed
// addresses.
func (s *peerSet) update(addrs []string) (added, removed []string, err error) {
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
			err = fmt.Errorf("relay: client for %s: %w", a, derr)
			continue
		}
		s.peers[a] = &peer{addr: a, conn: conn, client: observerpb.NewObserverClient(conn)}
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

func (s *peerSet) closeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for a, p := range s.peers {
		p.conn.Close()
		delete(s.peers, a)
	}
}

// resolve expands targets ("host:port") into addresses: an IP stays as is, a
// name becomes every address it resolves to (a headless Service gives one per
// agent pod). A name that does not resolve now is skipped (logged by the
// caller) and tried again at the next resolution.
func resolve(ctx context.Context, lookup func(context.Context, string) ([]string, error), targets []string) ([]string, []error) {
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
