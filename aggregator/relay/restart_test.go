package relay

import (
	"context"
	"testing"
	"time"

	observerpb "github.com/cilium/cilium/api/v1/observer"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/flowbus/flowbus/internal/servetest"
)

// TestRelayReadmitsARestartedAgentWithinTheRetryInterval: an agent that
// was down long enough for gRPC's reconnect backoff to grow (default: up
// to 120 s between attempts) and then restarts on the same address is
// read again by a follow stream within one retry interval (plus 2 s of
// slack), not when the backoff next lets the connection try.
func TestRelayReadmitsARestartedAgentWithinTheRetryInterval(t *testing.T) {
	if testing.Short() {
		t.Skip("keeps an agent down 16 s")
	}
	const retry = 500 * time.Millisecond
	a := startAgent(t, 1, "127.0.0.1:0")
	a.ring.Observe(agentFlows(1, 1, 0))
	r, err := New(Config{Agents: []string{a.addr}, RetryInterval: retry, SortWindow: 50 * time.Millisecond}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	addr := servetest.Serve(t, r.Serve)
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, err := observerpb.NewObserverClient(conn).GetFlows(ctx, &observerpb.GetFlowsRequest{Follow: true, Number: 1})
	if err != nil {
		t.Fatal(err)
	}
	flows := make(chan string, 100)
	go func() {
		for {
			res, err := s.Recv()
			if err != nil {
				close(flows)
				return
			}
			if f := res.GetFlow(); f != nil {
				flows <- f.GetUuid()
			}
		}
	}()
	if uuid := <-flows; uuid != "a1-000" {
		t.Fatalf("first flow %q, want a1-000", uuid)
	}

	a.stop()
	// Down long enough for several failed connection attempts: the
	// backoff between them is then ~10 s.
	time.Sleep(16 * time.Second)
	a = startAgent(t, 1, a.addr)
	restarted := time.Now()
	bound := retry + 2*time.Second
	deadline := time.NewTimer(bound)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for k := 1; ; k++ {
		select {
		case uuid, ok := <-flows:
			if !ok {
				t.Fatal("the relay's stream ended")
			}
			t.Logf("first flow %s of the restarted agent after %v", uuid, time.Since(restarted))
			return
		case <-tick.C:
			a.ring.Observe(agentFlows(1, 1, k)) // new flows until the relay reads them
		case <-deadline.C:
			t.Fatalf("no flow of the restarted agent within %v (retry interval %v + 2 s)", bound, retry)
		}
	}
}
