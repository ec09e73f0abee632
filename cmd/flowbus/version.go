package main

import (
	"context"
	"fmt"
	"runtime/debug"

	"github.com/spf13/pflag"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func runVersion(ctx context.Context, args []string, io cmdIO) error {
	fs := pflag.NewFlagSet("version", pflag.ContinueOnError)
	fs.SetOutput(io.Stderr)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	rev := ""
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				rev = " " + s.Value
			}
		}
		fmt.Fprintf(io.Stdout, "flowbus %s%s (%s, schema flow.v1)\n", version, rev, bi.GoVersion)
		return nil
	}
	fmt.Fprintf(io.Stdout, "flowbus %s (schema flow.v1)\n", version)
	return nil
}
