package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	flowpb "github.com/cilium/cilium/api/v1/flow"
	observerpb "github.com/cilium/cilium/api/v1/observer"
	"github.com/spf13/pflag"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/flowbus/flowbus/internal/observer"
)

// observeFilterFlags are hubble observe's filter flags with their help, in
// hubble's order; "dns-query" is a flowbus addition.
var observeFilterFlags = []struct{ name, short, help string }{
	{"not", "", "Reverses the next filter to be blacklist i.e. --not --from-ip 2.2.2.2"},
	{"uuid", "", "Show the only flow matching this unique flow identifier, if any"},
	{"node-name", "", `Show all flows which match the given node names (e.g. "k8s*", "test-cluster/*.company.com")`},
	{"node-label", "", "Show only flows observed on nodes matching the given label filter (not supported by flowbus servers)"},
	{"from-cluster", "", "Show all flows originating from endpoints known to be in the given cluster name"},
	{"cluster", "", "Show all flows which match the cluster names"},
	{"to-cluster", "", "Show all flows destined to endpoints known to be in the given cluster name"},
	{"protocol", "", `Show only flows which match the given L4/L7 flow protocol (e.g. "udp", "http", "kafka")`},
	{"tcp-flags", "", `Show only flows which match the given TCP flags (e.g. "syn", "ack", "fin")`},
	{"type", "t", "Filter by event types TYPE[:SUBTYPE] (drop, trace[:to-endpoint|from-endpoint|...], l7, policy-verdict, capture, trace-sock, or numbers)"},
	{"verdict", "", "Show only flows with this verdict [FORWARDED, DROPPED, AUDIT, REDIRECTED, ERROR, TRACED, TRANSLATED]"},
	{"drop-reason-desc", "", `Show only flows which match this drop reason describe (e.g. "POLICY_DENIED", "UNSUPPORTED_L3_PROTOCOL")`},
	{"http-status", "", `Show only flows which match this HTTP status code prefix (e.g. "404", "5+")`},
	{"http-method", "", `Show only flows which match this HTTP method (e.g. "get", "post")`},
	{"http-path", "", `Show only flows which match this HTTP path regular expressions (e.g. "/page/\\d+")`},
	{"http-url", "", `Show only flows which match this HTTP URL regular expressions (e.g. "http://.*cilium\.io/page/\\d+")`},
	{"http-header", "", `Show only flows which match this HTTP header key:value pairs (e.g. "foo:bar")`},
	{"dns-query", "", `Show only DNS flows whose query matches this regular expression (flowbus addition)`},
	{"trace-id", "", "Show only flows which match this trace ID (not supported by flowbus servers)"},
	{"ip-trace-id", "", "Show only flows which match this IP trace ID (not supported by flowbus servers)"},
	{"from-fqdn", "", `Show all flows originating at the given fully qualified domain name (e.g. "*.cilium.io").`},
	{"fqdn", "", `Show all flows related to the given fully qualified domain name (e.g. "*.cilium.io").`},
	{"to-fqdn", "", `Show all flows terminating at the given fully qualified domain name (e.g. "*.cilium.io").`},
	{"from-ip", "", "Show all flows originating at the given IP address (exact, or CIDR e.g. '1.1.1.0/24')"},
	{"snat-ip", "", "Show all flows SNATed with the given IP address (not supported by flowbus servers)"},
	{"ip", "", "Show all flows originating or terminating at the given IP address (exact, or CIDR)"},
	{"to-ip", "", "Show all flows terminating at the given IP address (exact, or CIDR)"},
	{"ipv4", "4", "Show only IPv4 flows"},
	{"ipv6", "6", "Show only IPv6 flows"},
	{"ip-version", "", `Show only IPv4, IPv6 flows or non IP flows (e.g. ARP packets) (ie: "none", "v4", "v6")`},
	{"from-pod", "", "Show all flows originating in the given pod name prefix([namespace/]<pod-name>). If namespace is not provided, 'default' is used"},
	{"pod", "", "Show all flows related to the given pod name prefix ([namespace/]<pod-name>). If namespace is not provided, 'default' is used."},
	{"to-pod", "", "Show all flows terminating in the given pod name prefix([namespace/]<pod-name>). If namespace is not provided, 'default' is used"},
	{"from-namespace", "", "Show all flows originating in the given Kubernetes namespace."},
	{"namespace", "n", "Show all flows related to the given Kubernetes namespace."},
	{"to-namespace", "", "Show all flows terminating in the given Kubernetes namespace."},
	{"from-all-namespaces", "", "Show flows originating in any Kubernetes namespace."},
	{"all-namespaces", "A", "Show all flows in any Kubernetes namespace."},
	{"to-all-namespaces", "", "Show flows terminating in any Kubernetes namespace."},
	{"from-label", "", `Show only flows originating in an endpoint with the given labels (e.g. "key1=value1", "reserved:world")`},
	{"label", "l", `Show only flows related to an endpoint with the given labels (e.g. "key1=value1", "reserved:world")`},
	{"to-label", "", `Show only flows terminating in an endpoint with given labels (e.g. "key1=value1", "reserved:world")`},
	{"from-service", "", "Shows flows from the given service name prefix ([namespace/]<svc-name>). If namespace is not provided, 'default' is used"},
	{"service", "", "Shows flows from or to the given service name prefix ([namespace/]<svc-name>). If namespace is not provided, 'default' is used."},
	{"to-service", "", "Shows flows to the given service name prefix ([namespace/]<svc-name>). If namespace is not provided, 'default' is used"},
	{"from-port", "", "Show only flows with the given source port (e.g. 8080)"},
	{"port", "", "Show only flows with given port in either source or destination (e.g. 8080)"},
	{"to-port", "", "Show only flows with the given destination port (e.g. 8080)"},
	{"from-workload", "", "Show all flows originating at an endpoint with the given workload ([kind/]name)"},
	{"workload", "", "Show all flows related to an endpoint with the given workload ([kind/]name)"},
	{"to-workload", "", "Show all flows terminating at an endpoint with the given workload ([kind/]name)"},
	{"from-identity", "", "Show all flows originating at an endpoint with the given security identity"},
	{"identity", "", "Show all flows related to an endpoint with the given security identity"},
	{"to-identity", "", "Show all flows terminating at an endpoint with the given security identity"},
	{"traffic-direction", "", "Show all flows in the given traffic direction (either ingress or egress)"},
	{"cel-expression", "", "Filter flows using the given CEL expression (not supported by flowbus servers)"},
	{"interface", "", "Show all flows observed at the given interface name (e.g. eth0)"},
	{"encrypted", "", "Show only encrypted flows (not supported by flowbus servers)"},
	{"unencrypted", "", "Show only unencrypted flows (not supported by flowbus servers)"},
	{"reply", "", "Show only reply flows"},
	{"not-reply", "", "Show only non-reply flows"},
}

// noOptDefault are the filter flags usable without a value, with hubble's defaults.
var noOptDefault = map[string]string{
	"not": "true", "ipv4": "v4", "ipv6": "v6", "all-namespaces": "true", "from-all-namespaces": "true",
	"to-all-namespaces": "true", "encrypted": "true", "unencrypted": "true", "reply": "true", "not-reply": "true",
}

// defaultFieldMask is what hubble requests in its non-JSON modes: the
// fields its printer shows.
var defaultFieldMask = []string{"time", "verdict", "ethernet", "IP", "l4", "source.identity", "source.namespace", "source.pod_name",
	"destination.identity", "destination.namespace", "destination.pod_name", "Type", "node_name", "l7", "event_type",
	"source_service", "destination_service", "is_reply", "Summary", "ip_trace_id", "traffic_direction", "policy_match_type",
	"ingress_allowed_by", "ingress_denied_by", "egress_allowed_by", "egress_denied_by"}

// defaultFlowPrintCount is hubble's number of flows for a bare `observe`.
const defaultFlowPrintCount = 20

// runObserve is `flowbus observe`: hubble observe's flags and output against
// an agent (:4244) or a relay (:4245, the default server as in hubble).
func runObserve(ctx context.Context, args []string, cio cmdIO) error {
	fs := pflag.NewFlagSet("observe", pflag.ContinueOnError)
	fs.SetOutput(cio.Stderr)
	fs.Usage = func() {
		fmt.Fprintln(cio.Stderr, "Usage: flowbus observe [flags]\n\nPrint flows from a flowbus agent or relay, as `hubble observe` does: the same\nfilter flags (a flow must match every flag, and any value of a flag; --not\nnegates the next flag) and output formats.\n\nFlags:")
		fmt.Fprint(cio.Stderr, fs.FlagUsages())
	}
	of := &flowFilter{}
	for _, f := range observeFilterFlags {
		fl := fs.VarPF(&filterValue{of: of, name: f.name}, f.name, f.short, f.help)
		if d, ok := noOptDefault[f.name]; ok {
			fl.NoOptDefVal = d
		}
	}
	var (
		last, first         uint64
		all, follow         bool
		since, until        string
		output, timeFormat  string
		printNode, numeric  bool
		ipTranslation       bool
		color               string
		server              string
		dialTimeout         time.Duration
		allowlist, denylist []string
		tlsOpts             observer.ClientTLS
		tlsCAFiles          []string
		fieldMask           []string
		defaultMasks        bool
	)
	fs.BoolVar(&all, "all", false, "Get all flows stored in the server's buffer")
	fs.Uint64Var(&last, "last", 0, fmt.Sprintf("Get last N flows stored in the server's buffer (default %d). Through a relay, N flows per node.", defaultFlowPrintCount))
	fs.Uint64Var(&first, "first", 0, "Get first N flows stored in the server's buffer. Through a relay, N flows per node.")
	fs.BoolVarP(&follow, "follow", "f", false, "Follow flows output")
	fs.StringVar(&since, "since", "", `Filter flows since a specific date. The format is relative (e.g. 3s, 4m, 1h43,, ...) or one of: 2006-01-02, 2006-01-02T15Z07:00, 2006-01-02T15:04Z07:00, RFC3339, RFC3339Nano, RFC1123Z`)
	fs.StringVar(&until, "until", "", "Filter flows until a specific date; same format as --since")
	fs.StringVarP(&output, "output", "o", "compact", "Specify the output format, one of: compact (one line per flow), dict (each flow as key:value pairs), json / jsonpb (GetFlowsResponse as JSON, one per line, as hubble prints it), table (tab-aligned columns)")
	fs.BoolVar(&printNode, "print-node-name", false, "Print node name in output")
	fs.StringVar(&timeFormat, "time-format", "StampMilli", "Time format to use: StampMilli, YearMonthDay, YearMonthDayHour, YearMonthDayHourMinute, RFC3339, RFC3339Milli, RFC3339Micro, RFC3339Nano, RFC1123Z")
	fs.BoolVar(&numeric, "numeric", false, "Display all information in numeric form (no IP translation)")
	fs.BoolVar(&ipTranslation, "ip-translation", true, "Translate IP addresses to logical names such as pod name, FQDN, ...")
	fs.StringVar(&color, "color", "auto", "Accepted for hubble compatibility (auto, always, never); flowbus prints without colors")
	fs.StringVar(&server, "server", "localhost:4245", "Address of a flowbus relay (:4245) or agent (:4244), host:port")
	fs.DurationVar(&dialTimeout, "timeout", 5*time.Second, "How long to wait for the connection to the server")
	fs.StringArrayVar(&allowlist, "allowlist", nil, "Specify allowlist as JSON encoded FlowFilters")
	fs.StringArrayVar(&denylist, "denylist", nil, "Specify denylist as JSON encoded FlowFilters")
	fs.StringSliceVar(&fieldMask, "field-mask", nil, "Comma-separated list of fields for mask (json output only). Fields not in the mask will be removed from server response.")
	fs.BoolVar(&defaultMasks, "use-default-field-masks", true, "Request only visible fields when the output format is compact, table, or dict.")
	fs.BoolVar(&tlsOpts.Enabled, "tls", false, "Use TLS to connect to the server")
	fs.BoolVar(&tlsOpts.InsecureSkipVerify, "tls-allow-insecure", false, "Do not verify the server's certificate (testing only)")
	fs.StringSliceVar(&tlsCAFiles, "tls-ca-cert-files", nil, "CA certificate file to verify the server with (one file; default: system roots)")
	fs.StringVar(&tlsOpts.CertFile, "tls-client-cert-file", "", "Client certificate file for mTLS")
	fs.StringVar(&tlsOpts.KeyFile, "tls-client-key-file", "", "Client key file for mTLS")
	fs.StringVar(&tlsOpts.ServerName, "tls-server-name", "", "Server name to verify in the server's certificate")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected arguments %q (filters are flags, e.g. --pod %s)", errUsage, fs.Args(), fs.Arg(0))
	}
	if of.blacklisting {
		return fmt.Errorf("%w: trailing --not found in the arguments", errUsage)
	}
	switch color {
	case "auto", "always", "never":
	default:
		return fmt.Errorf("%w: --color must be auto, always or never", errUsage)
	}
	mode := output
	switch output {
	case "compact", "dict":
	case "json", "JSON", "jsonpb":
		mode = "jsonpb"
	case "tab", "table":
		mode = "table"
		if follow {
			return fmt.Errorf("%w: table output format is not compatible with follow mode", errUsage)
		}
	default:
		return fmt.Errorf("%w: invalid output format: %s", errUsage, output)
	}
	if mode != "jsonpb" {
		if len(fieldMask) > 0 {
			return fmt.Errorf("%w: %s output format is not compatible with custom field mask", errUsage, output)
		}
		if defaultMasks {
			fieldMask = defaultFieldMask
		}
	}
	if len(tlsCAFiles) > 1 {
		return fmt.Errorf("%w: --tls-ca-cert-files takes one file", errUsage)
	}
	if len(tlsCAFiles) == 1 {
		tlsOpts.CAFile = tlsCAFiles[0]
	}
	req, err := flowsRequest(of, last, first, all, follow, since, until, allowlist, denylist, time.Now())
	if err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if len(fieldMask) > 0 {
		fm, err := fieldmaskpb.New(&flowpb.Flow{}, fieldMask...)
		if err != nil {
			return fmt.Errorf("%w: failed to construct field mask: %v", errUsage, err)
		}
		req.FieldMask = fm
	}

	creds, err := tlsOpts.DialOption()
	if err != nil {
		return err
	}
	conn, err := grpc.NewClient(server, creds)
	if err != nil {
		return fmt.Errorf("connect to %s: %w", server, err)
	}
	defer conn.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if err := obsWaitReady(ctx, conn, dialTimeout); err != nil {
		return fmt.Errorf("connect to %s: %w (is a flowbus agent or relay listening there? see --server)", server, err)
	}
	p := newFlowPrinter(cio.Stdout, cio.Stderr, mode, obsTimeLayout(timeFormat), printNode, ipTranslation && !numeric)
	err = streamFlows(ctx, observerpb.NewObserverClient(conn), req, p)
	if cerr := p.close(); err == nil && cerr != nil {
		err = cerr
	}
	return err
}

// waitReady waits until conn is connected, at most timeout.
func obsWaitReady(ctx context.Context, conn *grpc.ClientConn, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	conn.Connect()
	for {
		s := conn.GetState()
		if s == connectivity.Ready {
			return nil
		}
		if !conn.WaitForStateChange(ctx, s) {
			return fmt.Errorf("not ready after %s (state %s)", timeout, s)
		}
	}
}

func streamFlows(ctx context.Context, c observerpb.ObserverClient, req *observerpb.GetFlowsRequest, p *flowPrinter) error {
	stream, err := c.GetFlows(ctx, req)
	if err != nil {
		return obsGRPCError(err)
	}
	for {
		res, err := stream.Recv()
		switch {
		case errors.Is(err, io.EOF), errors.Is(err, context.Canceled), status.Code(err) == codes.Canceled:
			return nil
		case err != nil:
			return obsGRPCError(err)
		}
		if err := p.write(res); err != nil {
			return err
		}
	}
}

func obsGRPCError(err error) error {
	if s, ok := status.FromError(err); ok {
		return fmt.Errorf("%s: %s", strings.ToLower(strings.ReplaceAll(s.Code().String(), "InvalidArgument", "invalid argument")), s.Message())
	}
	return err
}

// flowsRequest builds the GetFlowsRequest as hubble's getFlowsRequest does.
func flowsRequest(of *flowFilter, last, first uint64, all, follow bool, since, until string, allow, deny []string, now time.Time) (*observerpb.GetFlowsRequest, error) {
	isFirst, isLast := first > 0, last > 0
	switch {
	case isFirst && isLast:
		return nil, errors.New("cannot set both --first and --last")
	case isFirst && all:
		return nil, errors.New("cannot set both --first and --all")
	case isFirst && follow:
		return nil, errors.New("cannot set both --first and --follow")
	case isLast && all:
		return nil, errors.New("cannot set both --last and --all")
	}
	var sinceTs, untilTs *timestamppb.Timestamp
	if since != "" {
		t, err := obsParseTime(since, now)
		if err != nil {
			return nil, fmt.Errorf("failed to parse the since time: %w", err)
		}
		sinceTs = timestamppb.New(t)
	}
	if until != "" && !follow {
		t, err := obsParseTime(until, now)
		if err != nil {
			return nil, fmt.Errorf("failed to parse the until time: %w", err)
		}
		untilTs = timestamppb.New(t)
	}
	if sinceTs == nil && untilTs == nil && !isFirst {
		switch {
		case all:
			last = ^uint64(0)
		case last == 0 && !follow:
			last = defaultFlowPrintCount
		}
	}
	var wl, bl []*flowpb.FlowFilter
	if of.whitelist != nil {
		wl = of.whitelist.flowFilters()
	}
	if of.blacklist != nil {
		bl = of.blacklist.flowFilters()
	}
	al, err := parseRawFilters(allow)
	if err != nil {
		return nil, fmt.Errorf("invalid --allowlist flag: %w", err)
	}
	dl, err := parseRawFilters(deny)
	if err != nil {
		return nil, fmt.Errorf("invalid --denylist flag: %w", err)
	}
	number := last
	if isFirst {
		number = first
	}
	return &observerpb.GetFlowsRequest{Number: number, Follow: follow, First: isFirst, Since: sinceTs, Until: untilTs,
		Whitelist: append(wl, al...), Blacklist: append(bl, dl...)}, nil
}

// timeLayouts are the layouts hubble accepts for --since/--until.
var timeLayouts = []string{"2006-01-02", "2006-01-02T15Z07:00", "2006-01-02T15:04Z07:00", time.RFC3339, time.RFC3339Nano,
	"2006-01-02T15:04:05.999Z07:00", "2006-01-02T15:04:05.999999Z07:00", time.RFC1123Z}

func obsParseTime(s string, now time.Time) (time.Time, error) {
	if d, err := time.ParseDuration(s); err == nil {
		return now.Add(-d), nil
	}
	for _, l := range timeLayouts {
		if t, err := time.Parse(l, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("failed to convert %s to time", s)
}

// timeLayout maps hubble's --time-format names to layouts.
func obsTimeLayout(name string) string {
	switch strings.ToLower(name) {
	case "yearmonthday":
		return "2006-01-02"
	case "yearmonthdayhour":
		return "2006-01-02T15Z07:00"
	case "yearmonthdayhourminute":
		return "2006-01-02T15:04Z07:00"
	case "rfc3339":
		return time.RFC3339
	case "rfc3339milli":
		return "2006-01-02T15:04:05.999Z07:00"
	case "rfc3339micro":
		return "2006-01-02T15:04:05.999999Z07:00"
	case "rfc3339nano":
		return time.RFC3339Nano
	case "rfc1123z":
		return time.RFC1123Z
	}
	return time.StampMilli
}
