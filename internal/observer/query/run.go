package query

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	flowpb "github.com/cilium/cilium/api/v1/flow"
	observerpb "github.com/cilium/cilium/api/v1/observer"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	"github.com/flowbus/flowbus/internal/observer"
	"github.com/flowbus/flowbus/internal/observer/printer"
)

// Options are the flags of `hubble observe` that are not filters.
type Options struct {
	Server      string             // host:port of an agent or relay
	DialTimeout time.Duration      // how long to wait for the connection
	TLS         observer.ClientTLS // CAFile is taken from TLSCAFiles
	TLSCAFiles  []string           // --tls-ca-cert-files (at most one)

	Selectors
	Allowlist, Denylist []string // JSON FlowFilters

	Output               string // -o
	TimeFormat           string // --time-format name
	PrintNodeName        bool
	Numeric              bool // no IP translation
	IPTranslation        bool
	Color                string // auto, always or never (accepted, not used)
	FieldMask            []string
	UseDefaultFieldMasks bool
}

// Observe is a checked `hubble observe` command: the request to send and
// how to print the answers.
type Observe struct {
	server  string
	timeout time.Duration
	tls     observer.ClientTLS
	req     *observerpb.GetFlowsRequest
	print   printer.Options
}

// Plan checks the options and the filter flags as hubble observe does and
// builds the request; now is the time relative --since/--until count back
// from. Its errors are the command line's.
func Plan(o Options, f *Filters, now time.Time) (*Observe, error) {
	if _, _, err := f.Lists(); err != nil {
		return nil, err
	}
	switch o.Color {
	case "auto", "always", "never":
	default:
		return nil, errors.New("--color must be auto, always or never")
	}
	out, err := printer.ParseOutput(o.Output)
	if err != nil {
		return nil, err
	}
	if out == printer.Table && o.Follow {
		return nil, errors.New("table output format is not compatible with follow mode")
	}
	fieldMask := o.FieldMask
	if out != printer.JSONPB {
		if len(fieldMask) > 0 {
			return nil, fmt.Errorf("%s output format is not compatible with custom field mask", o.Output)
		}
		if o.UseDefaultFieldMasks {
			fieldMask = DefaultFieldMask
		}
	}
	tls := o.TLS
	switch len(o.TLSCAFiles) {
	case 0:
	case 1:
		tls.CAFile = o.TLSCAFiles[0]
	default:
		return nil, errors.New("--tls-ca-cert-files takes one file")
	}
	req, err := Request(f, o.Selectors, o.Allowlist, o.Denylist, now)
	if err != nil {
		return nil, err
	}
	if len(fieldMask) > 0 {
		fm, err := fieldmaskpb.New(&flowpb.Flow{}, fieldMask...)
		if err != nil {
			return nil, fmt.Errorf("failed to construct field mask: %v", err)
		}
		req.FieldMask = fm
	}
	return &Observe{server: o.Server, timeout: o.DialTimeout, tls: tls, req: req, print: printer.Options{
		Output: out, TimeLayout: printer.TimeLayout(o.TimeFormat), NodeName: o.PrintNodeName,
		IPTranslation: o.IPTranslation && !o.Numeric,
	}}, nil
}

// Request returns the GetFlowsRequest the command sends.
func (ob *Observe) Request() *observerpb.GetFlowsRequest { return ob.req }

// Run connects to the server, sends the request and prints the answers to
// stdout (node status events to stderr) until the server ends the stream or
// ctx ends; a cancelled ctx is not an error.
func (ob *Observe) Run(ctx context.Context, stdout, stderr io.Writer) error {
	creds, err := ob.tls.DialOption()
	if err != nil {
		return err
	}
	conn, err := grpc.NewClient(ob.server, creds)
	if err != nil {
		return fmt.Errorf("connect to %s: %w", ob.server, err)
	}
	defer conn.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if err := waitReady(ctx, conn, ob.timeout); err != nil {
		return fmt.Errorf("connect to %s: %w (is a flowbus agent or relay listening there? see --server)", ob.server, err)
	}
	p := printer.New(stdout, stderr, ob.print)
	err = stream(ctx, observerpb.NewObserverClient(conn), ob.req, p)
	if cerr := p.Close(); err == nil && cerr != nil {
		err = cerr
	}
	return err
}

// waitReady waits until conn is connected, at most timeout.
func waitReady(ctx context.Context, conn *grpc.ClientConn, timeout time.Duration) error {
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

func stream(ctx context.Context, c observerpb.ObserverClient, req *observerpb.GetFlowsRequest, p *printer.Printer) error {
	s, err := c.GetFlows(ctx, req)
	if err != nil {
		return grpcError(err)
	}
	for {
		res, err := s.Recv()
		switch {
		case errors.Is(err, io.EOF), errors.Is(err, context.Canceled), status.Code(err) == codes.Canceled:
			return nil
		case err != nil:
			return grpcError(err)
		}
		if err := p.Write(res); err != nil {
			return err
		}
	}
}

// grpcError words a gRPC status as hubble does ("invalid argument: ...").
func grpcError(err error) error {
	if s, ok := status.FromError(err); ok {
		return fmt.Errorf("%s: %s", strings.ToLower(strings.ReplaceAll(s.Code().String(), "InvalidArgument", "invalid argument")), s.Message())
	}
	return err
}
