package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/flowbus/flowbus/deploy/lab"
)

const labUsage = `Usage: flowbus lab <up|traffic|exec|down|status> [flags]

A single-machine lab (root, Linux): pods as network namespaces with veths into
the host, real HTTP, gRPC, TCP and DNS servers and clients in them, and the
endpoints file for the eBPF agent. The default topology is the payments fleet
(deploy/lab/examples/payments.yaml).

Verbs:
  up       create the pods (network namespaces with veths into the host, a
           cgroup each for the agent's --socket-lb), start their servers and
           write the endpoints file for the eBPF agent
  traffic  run the pods' clients for --duration, printing progress every second
  exec     run a command in a pod: its network namespace and cgroup (so an
           agent's --socket-lb translates its connections to ClusterIPs)
  down     remove every namespace, veth, cgroup, process and state file of the
           lab, also after a crash; safe to run twice
  status   list what exists of the lab

Run 'flowbus lab <verb> --help' for its flags.`

// runLab is `flowbus lab`: the single-machine netns lab.
func runLab(ctx context.Context, args []string, io cmdIO) error {
	if len(args) == 0 {
		fmt.Fprintln(io.Stderr, labUsage)
		return fmt.Errorf("%w: a verb is required (up, traffic, down, status)", errUsage)
	}
	if args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprintln(io.Stdout, labUsage)
		return nil
	}
	verb, rest := args[0], args[1:]
	switch verb {
	case "up":
		return labUp(ctx, rest, io)
	case "traffic":
		return labTraffic(ctx, rest, io)
	case "down":
		return labDown(ctx, rest, io)
	case "status":
		return labStatus(ctx, rest, io)
	case "exec":
		return labExec(ctx, rest, io)
	case "serve", "client":
		// The lab's own processes, started inside the pods by up and traffic.
		return lab.Child(ctx, args, io.Stdout, io.Log)
	}
	return fmt.Errorf("%w: unknown verb %q (want up, traffic, exec, down or status)", errUsage, verb)
}

// labVerbs are the paragraphs of the verbs' --help.
var labVerbs = map[string]string{
	"up": "Create the lab's pods (network namespaces with veths into the host), start their servers and write " +
		"the endpoints file for the eBPF agent (root, Linux).",
	"traffic": "Run the lab's clients for --duration, printing progress every second, then a table per client " +
		"edge (root, Linux).",
	"down": "Remove every namespace, veth, process and state file of the lab, also after a crash; safe to run " +
		"twice (root, Linux).",
	"status": "List what exists of the lab: its pods, their namespaces, veths and server processes (Linux).",
	"exec": "Run a command in a pod, inside its network namespace and cgroup, with this command's input and " +
		"output: flowbus lab exec POD -- COMMAND [ARGS...]. With an agent's --socket-lb on the lab's cgroup, its " +
		"connections to a service's cluster IP are translated to a backend (root, Linux).",
}

// newLabFlags returns the flags of 'flowbus lab <verb>', those the verbs
// share first, and the config they fill. traffic takes the prefix from the
// lab's state, so it has no --prefix.
func newLabFlags(verb string, io cmdIO) (*flagSet, *lab.Config) {
	fs := newFlagSet("lab "+verb, "lab "+verb+" [flags]", labVerbs[verb], io)
	cfg := &lab.Config{}
	fs.StringVar(&cfg.StateDir, "data-dir", lab.DefaultStateDir, "directory of the lab's state: lab.json, endpoints.yaml, policies.yaml, logs/")
	if verb != "exec" { // a verb newer than the rename has no old name
		fs.alias("state-dir", "data-dir")
	}
	if verb != "traffic" && verb != "exec" {
		fs.StringVar(&cfg.Prefix, "prefix", lab.DefaultPrefix, "names of the lab's namespaces (<prefix>-<pod>) and host veths (<prefix><N>h); 1-8 letters; down and status use the one saved in --data-dir when there is one")
	}
	return fs, cfg
}

func labSelf() ([]string, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find own executable (the lab runs it inside the pods): %w", err)
	}
	return []string{exe, "lab"}, nil
}

// newLabUpFlags returns the flags of 'flowbus lab up'.
func newLabUpFlags(io cmdIO) (*flagSet, *lab.Config, *string) {
	fs, cfg := newLabFlags("up", io)
	topoPath := fs.String("topology", "", "topology YAML (pods, servers, clients, services); default the payments fleet")
	fs.StringVar(&cfg.Node, "node", "", "node name written in the endpoints file (default: the topology's, else the host name)")
	fs.StringVar(&cfg.EndpointsFile, "endpoints", "", "where to write the endpoints file for the agent (default <data-dir>/endpoints.yaml); down removes it")
	fs.StringVar(&cfg.Kubeconfig, "kubeconfig", "", "also register the pods, their workloads and services in this Kubernetes API server, for an agent with --endpoints-source kubernetes; down unregisters them")
	fs.DurationVar(&cfg.ReadyTimeout, "ready-timeout", 15*time.Second, "how long to wait for the servers to listen")
	fs.check("ready-timeout", positive(&cfg.ReadyTimeout))
	return fs, cfg, topoPath
}

func labUp(ctx context.Context, args []string, io cmdIO) error {
	fs, cfg, topoPath := newLabUpFlags(io)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected arguments %v", errUsage, fs.Args())
	}
	self, err := labSelf()
	if err != nil {
		return err
	}
	cfg.Self, cfg.Log = self, io.Log
	var topo *lab.Topology
	if *topoPath != "" {
		topo, err = lab.LoadTopology(*topoPath)
	} else {
		topo, err = lab.DefaultTopology()
	}
	if err != nil {
		return err
	}
	plan, err := lab.Up(ctx, *cfg, topo)
	if errors.Is(err, context.Canceled) {
		return fmt.Errorf("interrupted; what up had made is removed (%w)", err)
	}
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(io.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "POD\tNAMESPACE\tIPV4\tIPV6\tHOST VETH\tIFINDEX\tIDENTITY\tSERVERS")
	for i, p := range plan.Pods {
		var servers []string
		for _, s := range plan.Topology.Pods[i].Servers {
			servers = append(servers, fmt.Sprintf("%s:%d", s.Kind, s.Port))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%s\n", p.Name, p.Namespace, p.IPv4, p.IPv6, p.HostIf, p.IfIndex, p.Identity, strings.Join(servers, ","))
	}
	tw.Flush()
	fmt.Fprintf(io.Stdout, "\nendpoints file: %s\n", plan.EndpointsFile)
	agent := "sudo flowbus agent --source ebpf --endpoints " + plan.EndpointsFile
	if plan.Kubeconfig != "" {
		fmt.Fprintf(io.Stdout, "kubernetes:     pods, workloads and services registered in the API server of %s on node %s\n", plan.Kubeconfig, plan.Node)
		agent = "sudo flowbus agent --source ebpf --endpoints-source kubernetes --kubeconfig " + plan.Kubeconfig + " --node " + plan.Node
	} else if plan.PoliciesFile != "" {
		fmt.Fprintf(io.Stdout, "policies file:  %s (%d policies; an agent given --policies enforces them)\n", plan.PoliciesFile, len(plan.Topology.Policies))
		agent += " --policies " + plan.PoliciesFile
	}
	if l7 := labL7Ports(&plan.Topology); l7 != "" {
		agent += " --l7 '" + l7 + "'"
	}
	fmt.Fprintf(io.Stdout, "agent:  %s --interfaces '%s[0-9]*h'\n", agent, plan.Prefix)
	if plan.Cgroup != "" {
		fmt.Fprintf(io.Stdout, "        add --socket-lb --socket-lb-cgroup %s to translate the pods' connections to ClusterIPs\n", plan.Cgroup)
	}
	fmt.Fprintf(io.Stdout, "next: flowbus lab traffic --data-dir %s   then: flowbus lab down --data-dir %s\n", cfg.StateDir, cfg.StateDir)
	return nil
}

// labL7Ports is the agent's --l7 for a topology: every server port of an
// L7 kind with its protocol (http, grpc, dns, kafka), one item per
// protocol; a port that two kinds share is left to detection (auto).
func labL7Ports(t *lab.Topology) string {
	protoOf := map[string]string{lab.KindHTTP: "http", lab.KindGRPC: "grpc", lab.KindDNS: "dns", lab.KindKafka: "kafka"}
	byPort := map[uint16]string{}
	for _, p := range t.Pods {
		for _, s := range p.Servers {
			proto, ok := protoOf[s.Kind]
			if !ok {
				continue
			}
			if was, seen := byPort[s.Port]; seen && was != proto {
				proto = "auto"
			}
			byPort[s.Port] = proto
		}
	}
	ports := map[string][]string{}
	for port, proto := range byPort {
		ports[proto] = append(ports[proto], strconv.Itoa(int(port)))
	}
	var items []string
	for _, proto := range []string{"http", "grpc", "dns", "kafka", "auto"} {
		if ps := ports[proto]; len(ps) > 0 {
			slices.SortFunc(ps, func(a, b string) int { x, _ := strconv.Atoi(a); y, _ := strconv.Atoi(b); return x - y })
			items = append(items, proto+":"+strings.Join(ps, ","))
		}
	}
	return strings.Join(items, " ")
}

// newLabTrafficFlags returns the flags of 'flowbus lab traffic'.
func newLabTrafficFlags(io cmdIO) (*flagSet, *lab.Config, *lab.TrafficOptions) {
	fs, cfg := newLabFlags("traffic", io)
	var opt lab.TrafficOptions
	fs.DurationVar(&opt.Duration, "duration", 30*time.Second, "how long the clients send; traffic stops by itself after it")
	fs.check("duration", positive(&opt.Duration))
	fs.Float64Var(&opt.Rate, "rate", 10, "requests per second on each client edge of the topology")
	fs.check("rate", finitePositive(&opt.Rate))
	fs.Uint64Var(&opt.Seed, "seed", 1, "seed of the request ids and choices, for repeatable runs")
	return fs, cfg, &opt
}

func labTraffic(ctx context.Context, args []string, io cmdIO) error {
	fs, cfg, optp := newLabTrafficFlags(io)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected arguments %v", errUsage, fs.Args())
	}
	opt := *optp
	self, err := labSelf()
	if err != nil {
		return err
	}
	cfg.Self, cfg.Log = self, io.Log
	opt.Progress = io.Stdout
	rep, err := lab.Traffic(ctx, *cfg, opt)
	if len(rep.Edges) > 0 {
		fmt.Fprintln(io.Stdout)
		tw := tabwriter.NewWriter(io.Stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "EDGE\tSENT\tOK\t5XX\tRESET\tTIMEOUT\tERRORS\tSKIPPED\tCONNECTIONS\t")
		for _, e := range rep.Edges {
			fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t\n", e.Name(), e.Sent, e.OK, e.Status5xx, e.Resets, e.Timeouts, e.Errors, e.Skipped, e.Connections)
		}
		t := rep.Total()
		fmt.Fprintf(tw, "total\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t\n", t.Sent, t.OK, t.Status5xx, t.Resets, t.Timeouts, t.Errors, t.Skipped, t.Connections)
		tw.Flush()
		for _, e := range rep.Edges {
			if e.LastError != "" {
				fmt.Fprintf(io.Stdout, "%s: last error: %s\n", e.Name(), e.LastError)
			}
		}
	}
	if errors.Is(err, context.Canceled) {
		fmt.Fprintln(io.Stderr, "interrupted: clients stopped; the lab is still up (flowbus lab down removes it)")
		return nil
	}
	return err
}

// labExec is 'flowbus lab exec POD -- COMMAND [ARGS...]'.
func labExec(ctx context.Context, args []string, io cmdIO) error {
	fs, cfg := newLabFlags("exec", io)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() < 2 {
		return fmt.Errorf("%w: want a pod and a command: flowbus lab exec POD -- COMMAND [ARGS...]", errUsage)
	}
	plan, err := lab.LoadPlan(cfg.StateDir)
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, fs.Arg(1), fs.Args()[2:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = io.Stdin, io.Stdout, io.Stderr
	if err := lab.StartInPod(plan, fs.Arg(0), cmd); err != nil {
		return err
	}
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("%s: %w", fs.Arg(1), err)
	}
	return nil
}

func labDown(ctx context.Context, args []string, io cmdIO) error {
	fs, cfg := newLabFlags("down", io)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected arguments %v", errUsage, fs.Args())
	}
	cfg.Log = io.Log
	// Down must finish even if interrupted: it is the cleanup.
	removed, err := lab.Down(context.WithoutCancel(ctx), *cfg)
	if removed.Empty() && err == nil {
		fmt.Fprintln(io.Stdout, "nothing to remove")
		return nil
	}
	fmt.Fprintf(io.Stdout, "removed: %d processes, %d veths, %d namespaces, %d cgroups, %d state files and directories\n",
		len(removed.Processes), len(removed.Links), len(removed.NetNS), len(removed.Cgroups), len(removed.Files))
	return err
}

func labStatus(ctx context.Context, args []string, io cmdIO) error {
	fs, cfg := newLabFlags("status", io)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected arguments %v", errUsage, fs.Args())
	}
	st, err := lab.GetStatus(ctx, *cfg)
	if err != nil {
		return err
	}
	if st.Plan == nil && st.Leftovers.Empty() {
		fmt.Fprintf(io.Stdout, "no lab (prefix %q, state dir %s)\n", st.Prefix, cfg.StateDir)
		return nil
	}
	if st.Plan == nil {
		fmt.Fprintf(io.Stdout, "no state in %s, but the host has lab leftovers with prefix %q: %s\nrun: flowbus lab down --prefix %s\n",
			cfg.StateDir, st.Prefix, st.Leftovers, st.Prefix)
		return nil
	}
	ns, links := map[string]bool{}, map[string]bool{}
	for _, n := range st.Leftovers.NetNS {
		ns[n] = true
	}
	for _, l := range st.Leftovers.Links {
		links[l] = true
	}
	tw := tabwriter.NewWriter(io.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "POD\tNAMESPACE\tNETNS\tHOST VETH\tIPV4\tIPV6\tSERVER PID")
	for _, p := range st.Plan.Pods {
		pid := "-"
		if p.PID != 0 {
			pid = fmt.Sprintf("%d", p.PID)
			if _, err := os.Stat(fmt.Sprintf("/proc/%d", p.PID)); err != nil {
				pid += " (gone)"
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", p.Name, p.Namespace, present(p.NetNS, ns[p.NetNS]), present(p.HostIf, links[p.HostIf]), p.IPv4, p.IPv6, pid)
	}
	tw.Flush()
	fmt.Fprintf(io.Stdout, "\nprefix %q; %d lab processes running; endpoints file %s\n", st.Prefix, len(st.Leftovers.Processes), st.Plan.EndpointsFile)
	return nil
}

func present(name string, ok bool) string {
	if ok {
		return name
	}
	return name + " (missing)"
}
