package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

func freeLocalAddr(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	return lis.Addr().String()
}

// TestRelayCommandServesObserve runs `flowbus relay` in front of an agent
// and reads it with `flowbus observe`, as an operator would.
func TestRelayCommandServesObserve(t *testing.T) {
	agent := startObserveServer(t)
	addr := freeLocalAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	var relayErr bytes.Buffer
	go func() {
		done <- runRelay(ctx, []string{"--agents", agent, "--observer-address", addr},
			cmdIO{Stdout: &relayErr, Stderr: &relayErr, Log: slog.New(slog.NewTextHandler(&relayErr, nil))})
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("relay: %v", err)
		}
	}()
	var out string
	var err error
	for i := 0; i < 50; i++ {
		out, _, err = runObserveArgs(t, addr, "-o", "json", "--last", "100", "--not", "--verdict", "DROPPED")
		if err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("observe through the relay: %v (relay log %s)", err, relayErr.String())
	}
	var got []string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var res struct {
			Flow struct {
				UUID string `json:"uuid"`
			} `json:"flow"`
		}
		if err := json.Unmarshal([]byte(line), &res); err != nil {
			t.Fatal(err)
		}
		got = append(got, res.Flow.UUID)
	}
	if want := []string{"o1", "o2", "o4", "o5", "o6"}; !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

func TestRelayCommandUsage(t *testing.T) {
	var out bytes.Buffer
	cio := cmdIO{Stdout: &out, Stderr: &out, Log: slog.New(slog.DiscardHandler)}
	err := runRelay(context.Background(), nil, cio)
	if !errors.Is(err, errUsage) || !strings.Contains(err.Error(), "--agents is required") {
		t.Errorf("no agents: err = %v", err)
	}
	out.Reset()
	if err := runRelay(context.Background(), []string{"--help"}, cio); !errors.Is(err, pflag.ErrHelp) {
		t.Fatalf("--help: err = %v", err)
	}
	for _, flag := range []string{"--agents", "--observer-address", "--resolve-interval", "--observer-tls-cert-file", "--agent-tls"} {
		if !strings.Contains(out.String(), flag) {
			t.Errorf("--help lacks %s", flag)
		}
	}
	out.Reset()
	if err := runObserve(context.Background(), []string{"--help"}, cio); !errors.Is(err, pflag.ErrHelp) {
		t.Fatalf("observe --help: err = %v", err)
	}
	for _, flag := range []string{"--to-pod", "--verdict", "--not", "--output", "--follow", "--since", "--server"} {
		if !strings.Contains(out.String(), flag) {
			t.Errorf("observe --help lacks %s", flag)
		}
	}
}
