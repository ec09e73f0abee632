package nats

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/flowbus/flowbus/internal/syncbuf"
)

// A connection we close ourselves (every run's shutdown, the demo's last
// line) is not reported as a disconnect; a server that goes away is.
func TestOnlyALostServerIsLoggedAsADisconnect(t *testing.T) {
	s, u := startServer(t, t.TempDir(), -1)
	var logs syncbuf.Buffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	waitFor := func(what string) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); !strings.Contains(logs.String(), what); {
			if time.Now().After(deadline) {
				t.Fatalf("no %q in the log:\n%s", what, logs.String())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}

	nc, err := connect(Conn{URL: u}, log)
	if err != nil {
		t.Fatal(err)
	}
	nc.Close()
	waitFor("nats connection closed")
	if strings.Contains(logs.String(), "nats disconnected") {
		t.Fatalf("our own Close was logged as a disconnect:\n%s", logs.String())
	}

	nc, err = connect(Conn{URL: u}, log)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	s.Shutdown()
	s.WaitForShutdown()
	waitFor("level=INFO msg=\"nats disconnected\"")
}
