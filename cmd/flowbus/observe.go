package main

import (
	"context"
	"errors"
)

// runObserve is replaced by the real subcommand.
func runObserve(ctx context.Context, args []string, io cmdIO) error {
	return errors.New("not built yet")
}
