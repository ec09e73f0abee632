package main

import (
	"context"
	"errors"
)

func runDemo(ctx context.Context, args []string, io cmdIO) error {
	return errors.New("not built yet")
}
