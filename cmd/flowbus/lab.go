package main

import (
	"context"
	"errors"
)

// runLab is replaced by the real subcommand.
func runLab(ctx context.Context, args []string, io cmdIO) error {
	return errors.New("not built yet")
}
