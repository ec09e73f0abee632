package main

import (
	"context"
	"errors"
)

// runAggregator is replaced by the real subcommand.
func runAggregator(ctx context.Context, args []string, io cmdIO) error {
	return errors.New("not built yet")
}
