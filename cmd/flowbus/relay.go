package main

import (
	"context"
	"errors"
)

// runRelay is replaced by the real subcommand.
func runRelay(ctx context.Context, args []string, io cmdIO) error {
	return errors.New("not built yet")
}
