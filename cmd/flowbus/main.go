// Command flowbus is the one flowbus binary: the node agent, the aggregator,
// the OCSF feed for a SIEM, the Hubble-compatible relay and observe client,
// the netns lab and the demo, as subcommands. Run `flowbus help` for the list.
//
// # Flags and help
//
// Every subcommand's --help prints to stdout, with exit code 0, the same
// layout (flagSet.printHelp; TestEveryHelpHasTheSharedLayout):
//
//	Usage: flowbus <command> [args] [flags]
//
//	<one paragraph: what the command does, wrapped at 80 columns>
//
//	<Group> flags:            (groups in definition order; "Flags:" if untitled)
//	      --name type   what it sets (default ...)
//	...
//	Config flags:
//	      --config string   YAML file of flag values ...
//
//	<how flags, FLOWBUS_<FLAG> variables and the --config file combine>
//
// A flag's usage is a phrase in lower case but for names (observe keeps
// hubble's own texts). A usage error prints one line, then the hint to run
// --help, with exit code 2.
//
// One name per concept across subcommands (TestOneFlagNamePerConcept holds
// the table): --data-dir for the directory a command keeps its files in,
// --metrics-address and --observer-address for what a command serves,
// <scope>-tls-{cert,key,ca,client-ca}-file for certificate files, with the
// scope naming the connection (observer-: the Observer API a command serves;
// metrics-: its /metrics endpoint; agent-: the relay's connections to
// agents; kafka-: the agent's to Kafka),
// kafka- and nats- prefixes for what belongs to one bus. observe keeps
// hubble observe's names, its compatibility being the point. A YAML key and a
// FLOWBUS_<FLAG> variable are the flag's name.
//
// A renamed flag keeps its old name as a hidden alias (flagSet.alias), also
// as a key or variable, that works and prints a one-line deprecation
// warning. Every numeric and duration flag has a rule (flagSet.check); a
// value that breaks it is a usage error naming the flag and the allowed
// range.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"

	"github.com/spf13/pflag"

	"github.com/flowbus/flowbus/sinks/nats"
)

// cmdIO is what a subcommand may touch of the process.
type cmdIO struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	Log            *slog.Logger
}

type command struct {
	run     func(ctx context.Context, args []string, io cmdIO) error
	summary string
}

func commands() map[string]command {
	return map[string]command{
		"agent":      {runAgent, "run the node agent: capture or read flows, aggregate, publish Arrow batches to the bus"},
		"aggregator": {runAggregator, "consume flows from the bus and write per-pair and per-route Parquet rollups"},
		"audit":      {runAudit, "snapshot every eBPF map an agent pinned to a file, and say what changed between two"},
		"bpf":        {runBpf, "list an agent's pinned eBPF maps: connections, services, policy, ipcache, flows (root)"},
		"demo":       {runDemo, "run agent, embedded NATS and aggregator on one machine and print what came back"},
		"ocsf":       {runOCSF, "consume flows from the bus and write them as OCSF events to files, a Splunk HEC, Kafka or NATS"},
		"observe":    {runObserve, "print flows from an agent or relay (hubble observe compatible)"},
		"relay":      {runRelay, "merge the Observer streams of many agents on :4245"},
		"lab":        {runLab, "create a netns lab of pods with veths and real traffic (root)"},
		"sql":        {runSQL, "print flowbus.sql, DuckDB macros for the Parquet (duckdb -init flowbus.sql)"},
		"version":    {runVersion, "print the version"},
	}
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "Usage: flowbus <command> [flags]\n\nflowbus: eBPF network-flow observability that leaves the node.\n\nCommands:")
	cmds := commands()
	names := make([]string, 0, len(cmds))
	for n := range cmds {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-11s %s\n", n, cmds[n].summary)
	}
	fmt.Fprintf(w, "\n%s\n", wrap("Run 'flowbus <command> --help' for a command's flags. "+configNote, paragraphWidth))
}

func main() {
	// No flowbus process reads the NATS server's own CPU sampling, which
	// otherwise wakes every process once a second (sinks/nats/pse.go).
	nats.StopServerSampling()
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		if len(args) == 0 {
			usage(stderr)
			return 2
		}
		usage(stdout)
		return 0
	}
	name := args[0]
	cmd, ok := commands()[name]
	if !ok {
		fmt.Fprintf(stderr, "flowbus: unknown command %q\n\n", name)
		usage(stderr)
		return 2
	}
	level := slog.LevelInfo
	if v := os.Getenv("FLOWBUS_LOG_LEVEL"); v != "" {
		_ = level.UnmarshalText([]byte(v))
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if _, isVerb := labVerbs[at(args, 1)]; name == "lab" && isVerb {
		name += " " + args[1] // in messages: flowbus lab up: ...
	}
	if _, isVerb := auditVerbs[at(args, 1)]; name == "audit" && isVerb {
		name += " " + args[1]
	}
	if _, isVerb := bpfVerbs[at(args, 1)+" "+at(args, 2)]; name == "bpf" && isVerb {
		name += " " + args[1] + " " + args[2]
	}
	err := cmd.run(ctx, args[1:], cmdIO{Stdin: stdin, Stdout: stdout, Stderr: stderr, Log: log})
	switch {
	case err == nil:
		return 0
	case errors.Is(err, pflag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		fmt.Fprintf(stderr, "flowbus %s: %v\nRun 'flowbus %s --help' for the flags.\n", name, strings.TrimPrefix(err.Error(), errUsage.Error()+": "), name)
		return 2
	default:
		fmt.Fprintf(stderr, "flowbus %s: %v\n", name, err)
		return 1
	}
}

// at returns args[i], or "" past the end.
func at(args []string, i int) string {
	if i < len(args) {
		return args[i]
	}
	return ""
}
