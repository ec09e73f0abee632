package observer

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	observerpb "github.com/cilium/cilium/api/v1/observer"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// ListenAndServe listens on addr (TCP) and runs serve on the listener; the
// agent's Server and the relay both start this way.
func ListenAndServe(ctx context.Context, addr string, serve func(context.Context, net.Listener) error) error {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	return serve(ctx, lis)
}

// ServeObserver serves srv as Hubble's Observer service on lis, with TLS
// (and mTLS) from tls, until ctx ends (see ServeGRPC). It also serves the
// standard gRPC health service reporting Hubble's service name as serving,
// which `hubble status` asks first. It closes lis. The agent and the relay
// both serve through it.
func ServeObserver(ctx context.Context, srv observerpb.ObserverServer, tls ServerTLS, lis net.Listener) error {
	var opts []grpc.ServerOption
	opt, err := tls.ServerOption()
	if err != nil {
		lis.Close()
		return err
	}
	if opt != nil {
		opts = append(opts, opt)
	}
	g := grpc.NewServer(opts...)
	observerpb.RegisterObserverServer(g, srv)
	hs := health.NewServer()
	hs.SetServingStatus("hubble.server.Observer", healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(g, hs)
	return ServeGRPC(ctx, g, lis)
}

// ServeGRPC runs g on lis until ctx ends; on cancellation it stops g,
// waiting at most a second for a graceful stop.
func ServeGRPC(ctx context.Context, g *grpc.Server, lis net.Listener) error {
	done := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
			stopped := make(chan struct{})
			go func() { g.GracefulStop(); close(stopped) }()
			select {
			case <-stopped:
			case <-time.After(time.Second):
				g.Stop()
			}
		case <-done:
		}
	}()
	err := g.Serve(lis)
	close(done)
	if err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return fmt.Errorf("grpc serve: %w", err)
	}
	return nil
}
