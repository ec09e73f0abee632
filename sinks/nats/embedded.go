package nats

import (
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// StartEmbedded runs a NATS server with JetStream in this process, listening
// on 127.0.0.1:port (-1 picks a free port), with its JetStream state under
// dir (created if needed; the same dir after a restart brings the streams
// back). It returns once the server accepts connections, with its client URL.
// The caller stops it with Shutdown and WaitForShutdown. The server logs
// nothing and installs no signal handlers.
func StartEmbedded(dir string, port int) (*server.Server, string, error) {
	if dir == "" {
		return nil, "", errors.New("embedded nats: empty store dir")
	}
	opts := &server.Options{
		ServerName: "flowbus-embedded",
		Host:       "127.0.0.1",
		Port:       port,
		JetStream:  true,
		StoreDir:   dir,
		NoSigs:     true,
		NoLog:      true,
		MaxPayload: DefaultMaxMsgSize,
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, "", fmt.Errorf("embedded nats: %w", err)
	}
	s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		s.WaitForShutdown()
		return nil, "", fmt.Errorf("embedded nats on port %d with store %s: not ready after 10s (port in use, or store dir unusable?)", port, dir)
	}
	if !s.JetStreamEnabled() {
		s.Shutdown()
		s.WaitForShutdown()
		return nil, "", fmt.Errorf("embedded nats: jetstream did not start with store %s", dir)
	}
	return s, s.ClientURL(), nil
}
