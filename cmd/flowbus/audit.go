package main

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/flowbus/flowbus/bpf/inspect"
)

const auditUsage = `Usage: flowbus audit <snapshot|diff> [flags]

Record what a running agent holds in the kernel and say what changed: every
map it pinned (connections, socket LB services and backends, endpoints' policy
entries, ipcache) to one versioned JSON file, and the difference between two
such files in sentences or JSON.

Verbs:
  snapshot FILE   write every pinned map of the agent to FILE (root or CAP_BPF)
  diff A B        what changed from snapshot A to snapshot B: connections new
                  and ended, services that gained or lost backends, policy
                  entries added or removed per endpoint, identities new or
                  gone in the ipcache

Run 'flowbus audit <verb> --help' for its flags.`

// auditVerbs are the paragraphs of the audit verbs' --help.
var auditVerbs = map[string]string{
	"snapshot": "Write every map the agent pinned (flowbus agent --bpf-pin-dir) to FILE as one JSON document with " +
		"its kind, version, time and node: the connections of the flow maps with their counters, the socket LB's " +
		"services and backends, each endpoint's policy entries in force and the ipcache (root or CAP_BPF).",
	"diff": "Say what changed from snapshot A to snapshot B (flowbus audit snapshot): connections new and ended " +
		"(counted, and listed up to --list-max), services new, removed or that gained or lost backends, policy " +
		"entries added or removed per endpoint, ipcache entries and identities new or gone; in sentences, or as " +
		"JSON with -o json.",
}

// newAuditFlags returns the flags of 'flowbus audit <verb>'.
func newAuditFlags(verb string, io cmdIO) (*flagSet, *bpfFlags, *int) {
	usage := map[string]string{"snapshot": "audit snapshot FILE [flags]", "diff": "audit diff A B [flags]"}[verb]
	fs := newFlagSet("audit "+verb, usage, auditVerbs[verb], io)
	f := &bpfFlags{}
	listMax := new(int)
	switch verb {
	case "snapshot":
		addPinFlags(fs, f)
	case "diff":
		fs.StringVarP(&f.output, "output", "o", "text", "text (sentences) or json")
		fs.check("output", oneOf(&f.output, "text", "json"))
		fs.IntVar(listMax, "list-max", inspect.DefaultListMax, "list at most this many new and this many ended connections (all are counted); -1: all")
		fs.check("list-max", atLeast(listMax, -1))
	}
	return fs, f, listMax
}

// runAudit is `flowbus audit`.
func runAudit(ctx context.Context, args []string, io cmdIO) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		if len(args) == 0 {
			fmt.Fprintln(io.Stderr, auditUsage)
			return fmt.Errorf("%w: a verb is required (snapshot, diff)", errUsage)
		}
		fmt.Fprintln(io.Stdout, auditUsage)
		return nil
	}
	verb := args[0]
	if _, ok := auditVerbs[verb]; !ok {
		return fmt.Errorf("%w: unknown verb %q (want snapshot or diff)", errUsage, verb)
	}
	fs, f, listMax := newAuditFlags(verb, io)
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	switch verb {
	case "snapshot":
		if fs.NArg() != 1 {
			return fmt.Errorf("%w: want one FILE to write, got %d arguments", errUsage, fs.NArg())
		}
		snap, err := takeSnapshot(f)
		if err != nil {
			return err
		}
		if err := inspect.WriteFile(fs.Arg(0), snap); err != nil {
			return err
		}
		io.Log.Info("snapshot written", "file", fs.Arg(0), "node", snap.Node, "connections", len(snap.Connections),
			"services", len(snap.Services), "endpoints", len(snap.Endpoints), "ipcache", len(snap.IPCache))
		return nil
	case "diff":
		if fs.NArg() != 2 {
			return fmt.Errorf("%w: want two snapshot files A B, got %d arguments", errUsage, fs.NArg())
		}
		a, err := inspect.ReadFile(fs.Arg(0))
		if err != nil {
			return err
		}
		b, err := inspect.ReadFile(fs.Arg(1))
		if err != nil {
			return err
		}
		d := inspect.Compare(a, b, *listMax)
		if f.output == "json" {
			enc := json.NewEncoder(io.Stdout)
			enc.SetIndent("", "  ")
			return enc.Encode(d)
		}
		return d.WriteText(io.Stdout)
	}
	return nil
}
