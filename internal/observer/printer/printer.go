// Package printer writes GetFlowsResponses as the hubble CLI's printer does
// (cilium v1.20 hubble/pkg/printer), line for line: compact, dict, table and
// jsonpb (GetFlowsResponse through encoding/json, which uses the API's
// protojson MarshalJSON with proto names, as hubble does). Colors are not
// implemented: hubble prints none when its output is not a terminal.
package printer

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"path"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	flowpb "github.com/cilium/cilium/api/v1/flow"
	observerpb "github.com/cilium/cilium/api/v1/observer"
	relaypb "github.com/cilium/cilium/api/v1/relay"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/flowbus/flowbus/schemas/hubble"
)

// Output is an output format of `hubble observe -o`.
type Output string

// The output formats.
const (
	Compact Output = "compact" // one line per flow
	Dict    Output = "dict"    // each flow as key: value lines
	JSONPB  Output = "jsonpb"  // each GetFlowsResponse as a line of JSON
	Table   Output = "table"   // tab-aligned columns, written on Close
)

// ParseOutput returns the format `hubble observe -o name` selects: compact,
// dict, json (or JSON, jsonpb) and table (or tab).
func ParseOutput(name string) (Output, error) {
	switch name {
	case "compact", "dict":
		return Output(name), nil
	case "json", "JSON", "jsonpb":
		return JSONPB, nil
	case "tab", "table":
		return Table, nil
	}
	return "", fmt.Errorf("invalid output format: %s", name)
}

// Options say how a Printer prints.
type Options struct {
	Output        Output
	TimeLayout    string // a time.Format layout (see TimeLayout); default time.StampMilli
	NodeName      bool   // print the node name (--print-node-name)
	IPTranslation bool   // print pod, service or DNS names instead of IPs
}

// Printer writes flows, lost events and node status events to out (node
// status events to errw). Not safe for concurrent use.
type Printer struct {
	out, errw      io.Writer // escaped, except in JSONPB
	mode           Output
	timeLayout     string
	nodeName       bool
	ipTranslation  bool
	line           int
	tw             *tabwriter.Writer
	tab            io.Writer // escaped, into tw
	json, jsonErrw *json.Encoder
}

// escapes neutralises terminal control sequences in what the text outputs
// print, as hubble's terminalEscaperWriter does (with colors off): ESC is
// printed as "^[" and CR as "\r", so that a flow's text cannot drive the
// terminal.
var escapes = strings.NewReplacer("\x1b", "^[", "\r", `\r`)

// escaper writes through escapes.
type escaper struct{ w io.Writer }

func (e escaper) Write(b []byte) (int, error) {
	if _, err := escapes.WriteString(e.w, string(b)); err != nil {
		return 0, err
	}
	return len(b), nil
}

// New returns a Printer with the given options.
func New(out, errw io.Writer, o Options) *Printer {
	if o.TimeLayout == "" {
		o.TimeLayout = time.StampMilli
	}
	p := &Printer{out: escaper{out}, errw: escaper{errw}, mode: o.Output, timeLayout: o.TimeLayout, nodeName: o.NodeName, ipTranslation: o.IPTranslation}
	switch o.Output {
	case Table:
		p.tw = tabwriter.NewWriter(out, 2, 0, 3, ' ', 0)
		p.tab = escaper{p.tw}
	case JSONPB:
		p.out, p.errw = out, errw
		p.json, p.jsonErrw = json.NewEncoder(out), json.NewEncoder(errw)
	}
	return p
}

// Close writes what is buffered (the table).
func (p *Printer) Close() error {
	if p.tw != nil {
		return p.tw.Flush()
	}
	return nil
}

// TimeLayout returns the time.Format layout of a `hubble observe
// --time-format` name (StampMilli for an unknown one).
func TimeLayout(name string) string {
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

// Write prints one response: a flow, a lost events record, or (on errw) a
// relay's node status event.
func (p *Printer) Write(res *observerpb.GetFlowsResponse) error {
	switch {
	case res.GetFlow() != nil:
		return p.writeFlow(res)
	case res.GetNodeStatus() != nil:
		return p.writeNodeStatus(res)
	case res.GetLostEvents() != nil:
		return p.writeLost(res)
	}
	return nil
}

func timestamp(layout string, ts *timestamppb.Timestamp) string {
	if !ts.IsValid() {
		return "N/A"
	}
	return ts.AsTime().Format(layout)
}

func (p *Printer) writeFlow(res *observerpb.GetFlowsResponse) error {
	f := res.GetFlow()
	var err error
	switch p.mode {
	case Table:
		src, dst := p.hostNames(f)
		if p.line == 0 {
			hdr := "TIMESTAMP\t"
			if p.nodeName {
				hdr += "NODE\t"
			}
			_, err = fmt.Fprint(p.tab, hdr+"SOURCE\tDESTINATION\tTYPE\tVERDICT\tSUMMARY\n")
		}
		row := timestamp(p.timeLayout, f.GetTime()) + "\t"
		if p.nodeName {
			row += f.GetNodeName() + "\t"
		}
		if err == nil {
			_, err = fmt.Fprint(p.tab, row+src+"\t"+dst+"\t"+flowType(f)+"\t"+verdict(f)+"\t"+summary(f)+"\n")
		}
	case Dict:
		src, dst := p.hostNames(f)
		var b strings.Builder
		if p.line != 0 {
			b.WriteString("------------\n")
		}
		b.WriteString("  TIMESTAMP: " + timestamp(p.timeLayout, f.GetTime()) + "\n")
		if p.nodeName {
			b.WriteString("       NODE: " + f.GetNodeName() + "\n")
		}
		b.WriteString("     SOURCE: " + src + "\nDESTINATION: " + dst + "\n       TYPE: " + flowType(f) +
			"\n    VERDICT: " + verdict(f) + "\n    SUMMARY: " + summary(f) + "\n")
		_, err = io.WriteString(p.out, b.String())
	case Compact:
		src, dst := p.hostNames(f)
		srcID, dstID := fmtIdentity(f.GetSource().GetIdentity()), fmtIdentity(f.GetDestination().GetIdentity())
		node := ""
		if p.nodeName {
			node = fmt.Sprintf(" [%s]", f.GetNodeName())
		}
		arrow := "->"
		if f.GetIsReply() == nil {
			arrow = "<>"
		} else if f.GetIsReply().GetValue() {
			src, dst, srcID, dstID, arrow = dst, src, dstID, srcID, "<-"
		}
		_, err = fmt.Fprintf(p.out, "%s%s: %s %s %s %s %s %s %s (%s)\n",
			timestamp(p.timeLayout, f.GetTime()), node, src, srcID, arrow, dst, dstID, flowType(f), verdict(f), summary(f))
	case JSONPB:
		return p.json.Encode(res)
	}
	if err != nil {
		return fmt.Errorf("write flow: %w", err)
	}
	p.line++
	return nil
}

func (p *Printer) writeLost(res *observerpb.GetFlowsResponse) error {
	l := res.GetLostEvents()
	first, last := l.GetFirst(), l.GetLast()
	window := ""
	if first != nil && last != nil {
		window = fmt.Sprintf(" (first: %s, last: %s)", timestamp(p.timeLayout, first), timestamp(p.timeLayout, last))
	}
	node := res.GetNodeName()
	if node == "" {
		node = "-"
	}
	var err error
	switch p.mode {
	case Table:
		if p.line == 0 {
			hdr := "TIMESTAMP\t"
			if p.nodeName {
				hdr += "NODE\t"
			}
			_, err = fmt.Fprint(p.tab, hdr+"SOURCE\tDESTINATION\tTYPE\tVERDICT\tSUMMARY\n")
		}
		row := timestamp(p.timeLayout, res.GetTime()) + "\t"
		if p.nodeName {
			row += node + "\t"
		}
		if err == nil {
			_, err = fmt.Fprintf(p.tab, "%s%s\t-\tEVENTS LOST\t-\tCPU(%d) - %d%s\n", row, l.GetSource(), l.GetCpu().GetValue(), l.GetNumEventsLost(), window)
		}
	case Dict:
		var b strings.Builder
		if p.line != 0 {
			b.WriteString("------------\n")
		}
		b.WriteString("  TIMESTAMP: " + timestamp(p.timeLayout, res.GetTime()) + "\n")
		if p.nodeName {
			b.WriteString("       NODE: " + node + "\n")
		}
		fmt.Fprintf(&b, "     SOURCE: %s\n       TYPE: EVENTS LOST\n    VERDICT: -\n    SUMMARY: CPU(%d) - %d%s\n", l.GetSource(), l.GetCpu().GetValue(), l.GetNumEventsLost(), window)
		_, err = io.WriteString(p.out, b.String())
	case Compact:
		_, err = fmt.Fprintf(p.out, "%s EVENTS LOST: %s CPU(%d) %d%s\n", timestamp(p.timeLayout, res.GetTime()), l.GetSource(), l.GetCpu().GetValue(), l.GetNumEventsLost(), window)
	case JSONPB:
		return p.json.Encode(res)
	}
	if err != nil {
		return fmt.Errorf("write lost event: %w", err)
	}
	p.line++
	return nil
}

// writeNodeStatus reports relay node state changes on stderr, as hubble
// does (only unavailable and error states outside debug mode).
func (p *Printer) writeNodeStatus(res *observerpb.GetFlowsResponse) error {
	s := res.GetNodeStatus()
	switch s.GetStateChange() {
	case relaypb.NodeState_NODE_ERROR, relaypb.NodeState_NODE_UNAVAILABLE:
	default:
		return nil
	}
	names := joinWithCutOff(s.GetNodeNames(), ", ", 50)
	var err error
	switch p.mode {
	case JSONPB:
		return p.jsonErrw.Encode(res)
	case Dict:
		msg := "N/A"
		if m := s.GetMessage(); m != "" {
			msg = strconv.Quote(m)
		}
		sep := ""
		if p.line != 0 {
			sep = "------------\n"
		} else {
			p.line++
		}
		_, err = fmt.Fprintf(p.errw, "%s  TIMESTAMP: %s\n      STATE: %s\n      NODES: %s\n    MESSAGE: %s\n", sep, timestamp(p.timeLayout, res.GetTime()), s.GetStateChange(), names, msg)
	default:
		prefix := fmt.Sprintf("%s [%s]", timestamp(p.timeLayout, res.GetTime()), res.GetNodeName())
		n := len(s.GetNodeNames())
		msg := fmt.Sprintf("%s: %d nodes are unavailable: %s", prefix, n, names)
		if s.GetStateChange() == relaypb.NodeState_NODE_ERROR {
			msg = fmt.Sprintf("%s: Error %q on %d nodes: %s", prefix, s.GetMessage(), n, names)
		}
		_, err = fmt.Fprintln(p.errw, msg)
	}
	if err != nil {
		return fmt.Errorf("write node status: %w", err)
	}
	return nil
}

func joinWithCutOff(elems []string, sep string, target int) string {
	n, end := 0, len(elems)
	for i, e := range elems {
		n += len(e) + len(sep)
		if n > target && i > 0 {
			end = i
			break
		}
	}
	s := strings.Join(elems[:end], sep)
	if omitted := len(elems) - end; omitted > 0 {
		s += fmt.Sprintf(" (and %d more)", omitted)
	}
	return s
}

func ports(f *flowpb.Flow) (string, string) {
	l4 := f.GetL4()
	switch {
	case l4.GetTCP() != nil:
		return strconv.Itoa(int(l4.GetTCP().GetSourcePort())), strconv.Itoa(int(l4.GetTCP().GetDestinationPort()))
	case l4.GetUDP() != nil:
		return strconv.Itoa(int(l4.GetUDP().GetSourcePort())), strconv.Itoa(int(l4.GetUDP().GetDestinationPort()))
	case l4.GetSCTP() != nil:
		return strconv.Itoa(int(l4.GetSCTP().GetSourcePort())), strconv.Itoa(int(l4.GetSCTP().GetDestinationPort()))
	}
	return "", ""
}

func (p *Printer) hostNames(f *flowpb.Flow) (string, string) {
	if f.GetIP() == nil {
		if eth := f.GetEthernet(); eth != nil {
			return eth.GetSource(), eth.GetDestination()
		}
		return "", ""
	}
	srcNs, srcPod := f.GetSource().GetNamespace(), f.GetSource().GetPodName()
	dstNs, dstPod := f.GetDestination().GetNamespace(), f.GetDestination().GetPodName()
	var srcSvc, dstSvc string
	if s := f.GetSourceService(); s != nil {
		srcNs, srcSvc = s.GetNamespace(), s.GetName()
	}
	if s := f.GetDestinationService(); s != nil {
		dstNs, dstSvc = s.GetNamespace(), s.GetName()
	}
	sp, dp := ports(f)
	return p.hostname(f.GetIP().GetSource(), sp, srcNs, srcPod, srcSvc, f.GetSourceNames()),
		p.hostname(f.GetIP().GetDestination(), dp, dstNs, dstPod, dstSvc, f.GetDestinationNames())
}

func (p *Printer) hostname(ip, port, ns, pod, svc string, names []string) string {
	host := ip
	if p.ipTranslation {
		switch {
		case pod != "":
			host = path.Join(ns, pod)
		case svc != "":
			host = path.Join(ns, svc)
		case len(names) != 0:
			host = strings.Join(names, ",")
		}
	}
	if port != "" && port != "0" {
		return net.JoinHostPort(host, port)
	}
	return host
}

func fmtIdentity(id uint32) string {
	if name, ok := hubble.ReservedIdentityName(id); ok {
		return "(" + name + ")"
	}
	return fmt.Sprintf("(ID:%d)", id)
}

func flowType(f *flowpb.Flow) string {
	if l7 := f.GetL7(); l7 != nil {
		proto, typ := "l7", strings.ToLower(l7.GetType().String())
		switch {
		case l7.GetHttp() != nil:
			proto = "http"
		case l7.GetDns() != nil:
			proto = "dns"
			typ += " " + l7.GetDns().GetObservationSource()
		}
		return proto + "-" + typ
	}
	sub := f.GetEventType().GetSubType()
	switch f.GetEventType().GetType() {
	case hubble.MsgTypeTrace:
		return hubble.TraceObservationPointName(sub)
	case hubble.MsgTypeDrop:
		return hubble.DropReasonText(uint8(sub))
	case hubble.MsgTypePolicyVerdict:
		return "policy-verdict:" + hubble.PolicyMatchTypeName(f.GetPolicyMatchType()) + " " + f.GetTrafficDirection().String()
	case hubble.MsgTypeCapture:
		return f.GetDebugCapturePoint().String()
	case hubble.MsgTypeTraceSock:
		return hubble.SocketTranslationPointName(sub)
	}
	return "UNKNOWN"
}

func verdict(f *flowpb.Flow) string {
	v := f.GetVerdict()
	if f.GetEventType().GetType() == hubble.MsgTypePolicyVerdict {
		switch v {
		case flowpb.Verdict_FORWARDED, flowpb.Verdict_REDIRECTED:
			return "ALLOWED"
		case flowpb.Verdict_DROPPED, flowpb.Verdict_ERROR:
			return "DENIED"
		case flowpb.Verdict_AUDIT:
			return "AUDITED"
		}
	}
	return v.String()
}

func summary(f *flowpb.Flow) string {
	var b strings.Builder
	if t := f.GetIpTraceId(); t != nil && t.GetTraceId() > 0 {
		fmt.Fprintf(&b, "IP Trace ID: %d; ", t.GetTraceId())
	}
	//lint:ignore SA1019 hubble prints the deprecated summary
	b.WriteString(f.GetSummary())
	if a := f.GetAuthType(); a != flowpb.AuthType_DISABLED {
		b.WriteString("; Auth: " + a.String())
	}
	return b.String()
}
