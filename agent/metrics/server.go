package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// DefaultListenAddress is Hubble's metrics port.
const DefaultListenAddress = ":9965"

// Handler serves g in the Prometheus exposition format on /metrics.
func Handler(g prometheus.Gatherer) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError}))
	return mux
}

// Serve serves g on /metrics of lis until ctx ends. Every flowbus_* counter
// registered on the same registry by other stages is served with the
// hubble_* metrics. It closes lis.
func Serve(ctx context.Context, lis net.Listener, g prometheus.Gatherer, log *slog.Logger) error {
	srv := &http.Server{Handler: Handler(g), ReadHeaderTimeout: 10 * time.Second}
	if log != nil {
		// TLS handshakes that fail (a plain HTTP scrape of an HTTPS
		// endpoint, a scraper without a client certificate) are logged at
		// debug level, not on the process's stderr.
		srv.ErrorLog = slog.NewLogLogger(log.Handler(), slog.LevelDebug)
	}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	if log != nil {
		log.Info("serving metrics", "address", lis.Addr().String())
	}
	if err := srv.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("metrics: serve: %w", err)
	}
	return nil
}

// ListenAndServe listens on addr (DefaultListenAddress if empty) and Serves.
func ListenAndServe(ctx context.Context, addr string, g prometheus.Gatherer, log *slog.Logger) error {
	if addr == "" {
		addr = DefaultListenAddress
	}
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("metrics: listen: %w", err)
	}
	return Serve(ctx, lis, g, log)
}
