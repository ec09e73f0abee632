package main

import (
	"context"
	"fmt"
	"time"

	"github.com/flowbus/flowbus/internal/observer/query"
)

// newObserveFlags returns the flags of `flowbus observe`: hubble observe's,
// with its names and help texts, in hubble's groups.
func newObserveFlags(cio cmdIO) (*flagSet, *query.Options, *query.Filters) {
	fs := newFlagSet("observe", "observe [flags]", "Print flows from a flowbus agent or relay, as `hubble observe` "+
		"does: the same filter flags (a flow must match every flag, and any value of a flag; --not negates the next "+
		"flag) and output formats.", cio)
	var o query.Options
	fs.group("Selector")
	fs.BoolVar(&o.All, "all", false, "Get all flows stored in the server's buffer")
	fs.Uint64Var(&o.Last, "last", 0, fmt.Sprintf("Get last N flows stored in the server's buffer (default %d). Through a relay, N flows per node.", query.DefaultNumber))
	fs.Uint64Var(&o.First, "first", 0, "Get first N flows stored in the server's buffer. Through a relay, N flows per node.")
	fs.BoolVarP(&o.Follow, "follow", "f", false, "Follow flows output")
	fs.StringVar(&o.Since, "since", "", `Filter flows since a specific date. The format is relative (e.g. 3s, 4m, 1h43,, ...) or one of: 2006-01-02, 2006-01-02T15Z07:00, 2006-01-02T15:04Z07:00, RFC3339, RFC3339Nano, RFC1123Z`)
	fs.StringVar(&o.Until, "until", "", "Filter flows until a specific date; same format as --since")

	fs.group("Filter")
	filters := &query.Filters{}
	query.AddFilterFlags(fs.FlagSet, filters)

	fs.group("Raw filter")
	fs.StringArrayVar(&o.Allowlist, "allowlist", nil, "Specify allowlist as JSON encoded FlowFilters")
	fs.StringArrayVar(&o.Denylist, "denylist", nil, "Specify denylist as JSON encoded FlowFilters")

	fs.group("Formatting")
	fs.StringVarP(&o.Output, "output", "o", "compact", "Specify the output format, one of: compact (one line per flow), dict (each flow as key:value pairs), json / jsonpb (GetFlowsResponse as JSON, one per line, as hubble prints it), table (tab-aligned columns)")
	fs.BoolVar(&o.PrintNodeName, "print-node-name", false, "Print node name in output")
	fs.StringVar(&o.TimeFormat, "time-format", "StampMilli", "Time format to use: StampMilli, YearMonthDay, YearMonthDayHour, YearMonthDayHourMinute, RFC3339, RFC3339Milli, RFC3339Micro, RFC3339Nano, RFC1123Z")
	fs.BoolVar(&o.Numeric, "numeric", false, "Display all information in numeric form (no IP translation)")
	fs.BoolVar(&o.IPTranslation, "ip-translation", true, "Translate IP addresses to logical names such as pod name, FQDN, ...")
	fs.StringVar(&o.Color, "color", "auto", "Accepted for hubble compatibility (auto, always, never); flowbus prints without colors")
	fs.StringSliceVar(&o.FieldMask, "field-mask", nil, "Comma-separated list of fields for mask (json output only). Fields not in the mask will be removed from server response.")
	fs.BoolVar(&o.UseDefaultFieldMasks, "use-default-field-masks", true, "Request only visible fields when the output format is compact, table, or dict.")

	fs.group("Server")
	fs.StringVar(&o.Server, "server", "localhost:4245", "Address of a flowbus relay (:4245) or agent (:4244), host:port")
	fs.DurationVar(&o.DialTimeout, "timeout", 5*time.Second, "How long to wait for the connection to the server")
	fs.check("timeout", positive(&o.DialTimeout))
	fs.BoolVar(&o.TLS.Enabled, "tls", false, "Use TLS to connect to the server")
	fs.BoolVar(&o.TLS.InsecureSkipVerify, "tls-allow-insecure", false, "Do not verify the server's certificate (testing only)")
	fs.StringSliceVar(&o.TLSCAFiles, "tls-ca-cert-files", nil, "CA certificate file to verify the server with (one file; default: system roots)")
	fs.StringVar(&o.TLS.CertFile, "tls-client-cert-file", "", "Client certificate file for mTLS")
	fs.StringVar(&o.TLS.KeyFile, "tls-client-key-file", "", "Client key file for mTLS")
	fs.StringVar(&o.TLS.ServerName, "tls-server-name", "", "Server name to verify in the server's certificate")
	return fs, &o, filters
}

// runObserve is `flowbus observe`: hubble observe's flags and output against
// an agent (:4244) or a relay (:4245, the default server as in hubble). The
// filters, the request and the printing are package query's; this is the
// flag wiring.
func runObserve(ctx context.Context, args []string, cio cmdIO) error {
	fs, o, filters := newObserveFlags(cio)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected arguments %q (filters are flags, e.g. --pod %s)", errUsage, fs.Args(), fs.Arg(0))
	}
	ob, err := query.Plan(*o, filters, time.Now())
	if err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	return ob.Run(ctx, cio.Stdout, cio.Stderr)
}
