package main

import (
	"context"
	"fmt"
	"runtime/debug"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// newVersionFlags returns the flags of `flowbus version`: none of its own.
func newVersionFlags(io cmdIO) *flagSet {
	return newFlagSet("version", "version [flags]", "Print the version of flowbus, the commit and Go it was built from, "+
		"and the schema of the flows it publishes.", io)
}

func runVersion(ctx context.Context, args []string, io cmdIO) error {
	fs := newVersionFlags(io)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected arguments %q", errUsage, fs.Args())
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
