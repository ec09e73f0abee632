package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/flowbus/flowbus/agent/endpoints"
	"github.com/flowbus/flowbus/bpf/inspect"
	"github.com/flowbus/flowbus/internal/bpfpin"
	"github.com/flowbus/flowbus/schemas/hubble"
)

const bpfUsage = `Usage: flowbus bpf <ct|lb|policy|ipcache|flows> <list|get> [flags]

Read the eBPF maps a running agent pinned (flowbus agent --bpf-pin-dir, on by
default with the eBPF source, under /sys/fs/bpf/flowbus/<node>), as a table or
JSON (-o json). Root or CAP_BPF.

Commands:
  ct list          the connections the flow maps track: both ends, interface,
                   direction, state, verdict, peer identity
  lb list          the socket LB's services: frontend → backends, algorithm
  policy get EP    an endpoint's policy entries in force: identity, port and
                   protocol, allow or deny, match type (EP: endpoint id,
                   ifindex, host interface, or namespace/pod with --endpoints)
  ipcache list     address prefix → identity (and pod with --endpoints)
  flows list       the flow maps' counters: packets and bytes each way

Run 'flowbus bpf <map> <verb> --help' for its flags.`

// bpfVerbs are the paragraphs of the bpf verbs' --help.
var bpfVerbs = map[string]string{
	"ct list": "List the connections the agent's flow maps track (one entry per connection and interface): " +
		"both ends from the initiator, the interface, the direction at the pod (egress: the pod opened it), " +
		"the state (established, midstream: opened before the agent saw it, ended: waiting for the sweep), the " +
		"verdict, the peer's identity and when it was last seen.",
	"lb list": "List the socket LB's services (flowbus agent --socket-lb): each frontend (ClusterIP:port/protocol), " +
		"its service id, algorithm and backends in slot order.",
	"policy get": "Print the policy entries in force for one endpoint: direction, peer identity (0: any), protocol " +
		"and ports, allow or deny, Cilium's match type and the policy id. ENDPOINT is an endpoint id, the ifindex " +
		"or name of its host interface, or namespace/pod with --endpoints.",
	"ipcache list": "List the ipcache: each address prefix, its security identity and the CIDR identity of the " +
		"narrowest policy prefix holding it; reserved identities by name, and the pod and its labels with " +
		"--endpoints.",
	"flows list": "List the flow maps' entries with their counters: packets and bytes from the initiator and " +
		"from the responder, TCP flags seen, first and last seen.",
}

// bpfFlags are what every bpf and audit verb that reads maps shares.
type bpfFlags struct {
	pinDir, node, output, endpoints string
}

func addPinFlags(fs *flagSet, f *bpfFlags) {
	fs.StringVar(&f.pinDir, "bpf-pin-dir", bpfpin.DefaultRoot, "where agents pin their maps (flowbus agent --bpf-pin-dir): a directory of maps, or one holding a directory per node")
	fs.StringVar(&f.node, "node", "", "the node whose agent's maps to read, a directory under --bpf-pin-dir; needed when agents of several nodes pinned theirs there")
}

// newBpfFlags returns the flags of 'flowbus bpf <map> <verb>'.
func newBpfFlags(verb string, io cmdIO) (*flagSet, *bpfFlags) {
	usage := "bpf " + verb + " [flags]"
	if verb == "policy get" {
		usage = "bpf policy get ENDPOINT [flags]"
	}
	fs := newFlagSet("bpf "+verb, usage, bpfVerbs[verb], io)
	f := &bpfFlags{}
	addPinFlags(fs, f)
	fs.StringVarP(&f.output, "output", "o", "table", "table or json")
	fs.check("output", oneOf(&f.output, "table", "json"))
	if verb == "ipcache list" || verb == "policy get" {
		fs.StringVar(&f.endpoints, "endpoints", "", "endpoints file the agent reads (flowbus agent --endpoints), to name pods")
	}
	return fs, f
}

// runBpf is `flowbus bpf`: the agent's pinned maps.
func runBpf(ctx context.Context, args []string, io cmdIO) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		if len(args) == 0 {
			fmt.Fprintln(io.Stderr, bpfUsage)
			return fmt.Errorf("%w: a map and a verb are required (ct list, lb list, policy get, ipcache list, flows list)", errUsage)
		}
		fmt.Fprintln(io.Stdout, bpfUsage)
		return nil
	}
	verb := args[0] + " " + at(args, 1)
	if _, ok := bpfVerbs[verb]; !ok {
		return fmt.Errorf("%w: unknown %q (want ct list, lb list, policy get, ipcache list or flows list)", errUsage, strings.TrimSpace(verb))
	}
	fs, f := newBpfFlags(verb, io)
	if err := parseFlags(fs, args[2:]); err != nil {
		return err
	}
	want := 0
	if verb == "policy get" {
		want = 1
	}
	if fs.NArg() != want {
		if want == 1 {
			return fmt.Errorf("%w: want one ENDPOINT (an endpoint id, ifindex, host interface or namespace/pod), got %d arguments", errUsage, fs.NArg())
		}
		return fmt.Errorf("%w: unexpected arguments %v", errUsage, fs.Args())
	}
	var pods *endpoints.File
	if f.endpoints != "" {
		var err error
		if pods, err = endpoints.Read(f.endpoints); err != nil {
			return err
		}
	}
	snap, err := takeSnapshot(f)
	if err != nil {
		return err
	}
	w := io.Stdout
	switch verb {
	case "ct list":
		return writeOut(w, f.output, snap.Connections, func(tw *tabwriter.Writer) {
			fmt.Fprintln(tw, "IFINDEX\tPROTO\tSOURCE\tDESTINATION\tDIRECTION\tSTATE\tVERDICT\tPEER IDENTITY\tLAST SEEN")
			for _, c := range snap.Connections {
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s ago\n", c.IfIndex, c.Proto, c.Src, c.Dst, c.Direction, c.State,
					c.Verdict, c.Identity, snap.Time.Sub(c.LastSeen).Round(time.Second))
			}
		})
	case "flows list":
		return writeOut(w, f.output, snap.Connections, func(tw *tabwriter.Writer) {
			fmt.Fprintln(tw, "IFINDEX\tPROTO\tSOURCE\tDESTINATION\tPACKETS →/←\tBYTES →/←\tTCP FLAGS\tFIRST SEEN\tLAST SEEN")
			for _, c := range snap.Connections {
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%d/%d\t%d/%d\t%s\t%s\t%s\n", c.IfIndex, c.Proto, c.Src, c.Dst, c.Packets[0], c.Packets[1],
					c.Bytes[0], c.Bytes[1], dash(c.Flags), c.FirstSeen.Format(time.RFC3339), c.LastSeen.Format(time.RFC3339))
			}
		})
	case "lb list":
		if !snap.SocketLB {
			return fmt.Errorf("no socket LB maps at %s: is the agent running with --socket-lb?", snap.PinDir)
		}
		return writeOut(w, f.output, snap.Services, func(tw *tabwriter.Writer) {
			fmt.Fprintln(tw, "ID\tFRONTEND\tALGORITHM\tBACKENDS")
			for _, s := range snap.Services {
				var bs []string
				for _, b := range s.Backends {
					bs = append(bs, b.Addr.String())
				}
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\n", s.ID, s.Frontend, s.Algorithm, dash(strings.Join(bs, ", ")))
			}
		})
	case "policy get":
		ep, err := findEndpoint(snap.Endpoints, fs.Arg(0), pods)
		if err != nil {
			return err
		}
		return writeOut(w, f.output, ep, func(tw *tabwriter.Writer) {
			enforced := "none (every direction allowed)"
			if len(ep.Enforced) > 0 {
				enforced = strings.Join(ep.Enforced, ", ") + " (default deny)"
			}
			fmt.Fprintf(tw, "Endpoint %d, ifindex %d, identity %d; enforced: %s\n\n", ep.ID, ep.IfIndex, ep.Identity, enforced)
			fmt.Fprintln(tw, "VERDICT\tDIRECTION\tPEER IDENTITY\tPROTO\tPORTS\tMATCH\tPOLICY")
			for _, r := range ep.Rules {
				peer := "any"
				if r.Peer != 0 {
					peer = strconv.FormatUint(uint64(r.Peer), 10)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\n", r.Verdict, r.Direction, peer, r.Proto, r.Ports(), r.Match, r.PolicyID&(1<<28-1))
			}
		})
	case "ipcache list":
		type row struct {
			inspect.IPEntry
			Name   string   `json:"name,omitempty"`
			Pod    string   `json:"pod,omitempty"`
			Labels []string `json:"labels,omitempty"`
		}
		rows := make([]row, len(snap.IPCache))
		for i, e := range snap.IPCache {
			rows[i].IPEntry = e
			if n, ok := hubble.ReservedIdentityName(e.Identity); ok {
				rows[i].Name = "reserved:" + n
			}
			if pods != nil && e.Prefix.IsSingleIP() {
				if p, ok := pods.PodByIP(e.Prefix.Addr()); ok {
					rows[i].Pod, rows[i].Labels = p.Namespace+"/"+p.Name, p.Labels
				}
			}
		}
		return writeOut(w, f.output, rows, func(tw *tabwriter.Writer) {
			fmt.Fprintln(tw, "PREFIX\tIDENTITY\tCIDR IDENTITY\tNAME\tPOD\tLABELS")
			for _, r := range rows {
				cidr := "-"
				if r.CIDR != 0 {
					cidr = strconv.FormatUint(uint64(r.CIDR), 10)
				}
				fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\n", r.Prefix, r.Identity, cidr, dash(r.Name), dash(r.Pod), dash(strings.Join(r.Labels, ",")))
			}
		})
	}
	return nil
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// writeOut writes v as JSON, or a table with table.
func writeOut(w io.Writer, output string, v any, table func(*tabwriter.Writer)) error {
	if output == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	table(tw)
	return tw.Flush()
}

// findEndpoint finds the endpoint arg names: an endpoint id, an ifindex, a
// host interface's name, or namespace/pod in pods.
func findEndpoint(eps []inspect.Endpoint, arg string, pods *endpoints.File) (inspect.Endpoint, error) {
	known := func() string {
		var ids []string
		for _, e := range eps {
			ids = append(ids, fmt.Sprintf("%d (ifindex %d)", e.ID, e.IfIndex))
		}
		if len(ids) == 0 {
			return "the agent has no endpoint"
		}
		return "endpoints: " + strings.Join(ids, ", ")
	}
	byIf := func(ifindex uint32) (inspect.Endpoint, bool) {
		i := slices.IndexFunc(eps, func(e inspect.Endpoint) bool { return e.IfIndex == ifindex })
		if i < 0 {
			return inspect.Endpoint{}, false
		}
		return eps[i], true
	}
	if n, err := strconv.ParseUint(arg, 10, 32); err == nil {
		if i := slices.IndexFunc(eps, func(e inspect.Endpoint) bool { return e.ID == uint32(n) }); i >= 0 {
			return eps[i], nil
		}
		if e, ok := byIf(uint32(n)); ok {
			return e, nil
		}
		return inspect.Endpoint{}, fmt.Errorf("no endpoint with id or ifindex %s; %s", arg, known())
	}
	if ns, name, ok := strings.Cut(arg, "/"); ok {
		if pods == nil {
			return inspect.Endpoint{}, fmt.Errorf("%w: a pod (%s) needs --endpoints, the agent's endpoints file", errUsage, arg)
		}
		for _, p := range pods.Pods {
			if p.Namespace == ns && p.Name == name {
				if e, ok := byIf(p.IfIndex); ok {
					return e, nil
				}
				return inspect.Endpoint{}, fmt.Errorf("pod %s (ifindex %d) has no endpoint in the agent's maps; %s", arg, p.IfIndex, known())
			}
		}
		return inspect.Endpoint{}, fmt.Errorf("no pod %s in %s", arg, "the endpoints file")
	}
	ifc, err := net.InterfaceByName(arg)
	if err != nil {
		return inspect.Endpoint{}, fmt.Errorf("%q is no endpoint id, ifindex, interface or namespace/pod: %w", arg, err)
	}
	if e, ok := byIf(uint32(ifc.Index)); ok {
		return e, nil
	}
	return inspect.Endpoint{}, fmt.Errorf("interface %s (ifindex %d) has no endpoint; %s", arg, ifc.Index, known())
}

// agentDir finds the directory of one agent's maps under f.pinDir and
// the node it is for.
func agentDir(f *bpfFlags) (dir, node string, err error) {
	root := f.pinDir
	noMaps := func() error {
		return fmt.Errorf("no agent maps at %s: is the agent running with the eBPF source and --bpf-pin-dir (by default %s/<node>)?", root, bpfpin.DefaultRoot)
	}
	if f.node != "" {
		dir = filepath.Join(root, filepath.Base(bpfpin.AgentDir(f.node)))
		if !hasMaps(dir) {
			return "", "", fmt.Errorf("no agent maps for node %s at %s: is the agent of that node running with --bpf-pin-dir?", f.node, dir)
		}
		return dir, f.node, nil
	}
	if _, err := os.Stat(root); err != nil {
		if errors.Is(err, fs.ErrPermission) {
			return "", "", fmt.Errorf("reading the agent's maps at %s needs root or CAP_BPF: %w", root, err)
		}
		return "", "", noMaps()
	}
	if hasMaps(root) {
		return root, filepath.Base(root), nil
	}
	ents, err := os.ReadDir(root)
	if err != nil {
		if errors.Is(err, fs.ErrPermission) {
			return "", "", fmt.Errorf("reading the agent's maps at %s needs root or CAP_BPF: %w", root, err)
		}
		return "", "", noMaps()
	}
	var nodes []string
	for _, e := range ents {
		if e.IsDir() && hasMaps(filepath.Join(root, e.Name())) {
			nodes = append(nodes, e.Name())
		}
	}
	switch len(nodes) {
	case 0:
		return "", "", noMaps()
	case 1:
		return filepath.Join(root, nodes[0]), nodes[0], nil
	}
	return "", "", fmt.Errorf("%w: agents of %d nodes pinned maps under %s (%s): pick one with --node", errUsage, len(nodes), root, strings.Join(nodes, ", "))
}

func hasMaps(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, "flows4"))
	return err == nil
}

func takeSnapshot(f *bpfFlags) (*inspect.Snapshot, error) {
	dir, node, err := agentDir(f)
	if err != nil {
		return nil, err
	}
	return inspect.Take(dir, node)
}
