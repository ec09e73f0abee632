package lab

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/spf13/pflag"
)

// Child is the entry point of the processes the lab starts inside pods:
// args[0] is "serve" (run the pod's servers until ctx ends) or "client" (run
// the pod's clients for --duration, reports as JSON lines on stdout). The
// program that Config.Self names must call it with the arguments that follow
// Self, and cancel ctx on SIGTERM and SIGINT.
func Child(ctx context.Context, args []string, stdout io.Writer, log *slog.Logger) error {
	if len(args) == 0 {
		return fmt.Errorf("lab child: want serve or client")
	}
	fs := pflag.NewFlagSet("lab "+args[0], pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	prefix := fs.String("flowbus-lab", "", "prefix of the lab (marks the process for down)")
	stateDir := fs.String("state-dir", DefaultStateDir, "lab state directory")
	pod := fs.String("pod", "", "pod whose servers or clients to run")
	duration := fs.Duration("duration", 30*time.Second, "client: how long to send")
	rate := fs.Float64("rate", 10, "client: requests per second per edge")
	seed := fs.Uint64("seed", 1, "client: seed of ids and choices")
	if err := fs.Parse(args[1:]); err != nil {
		return fmt.Errorf("lab %s: %w", args[0], err)
	}
	if *prefix == "" || *pod == "" {
		return fmt.Errorf("lab %s: --flowbus-lab and --pod are required (this command is started by 'flowbus lab up' and 'traffic')", args[0])
	}
	log = log.With("pod", *pod)
	switch args[0] {
	case "serve":
		return serve(ctx, *stateDir, *pod, log)
	case "client":
		return runClients(ctx, *stateDir, *pod, *duration, *rate, *seed, stdout, log)
	}
	return fmt.Errorf("lab child %q: want serve or client", args[0])
}
