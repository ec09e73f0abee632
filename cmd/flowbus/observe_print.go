package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"path"
	"strconv"
	"strings"
	"text/tabwriter"

	flowpb "github.com/cilium/cilium/api/v1/flow"
	observerpb "github.com/cilium/cilium/api/v1/observer"
	relaypb "github.com/cilium/cilium/api/v1/relay"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/flowbus/flowbus/schemas/hubble"
)

// flowPrinter writes GetFlowsResponses as hubble's printer does (cilium
// v1.20 hubble/pkg/printer), so output is line-for-line hubble's: compact,
// dict, table (tab) and json/jsonpb (GetFlowsResponse through encoding/json,
// which uses the API's protojson MarshalJSON with proto names, as hubble
// does). Colors are not implemented.
type flowPrinter struct {
	out, errw      io.Writer
	mode           string // compact, dict, table, jsonpb
	obsTimeLayout  string
	nodeName       bool
	ipTranslation  bool
	line           int
	tw             *tabwriter.Writer
	json, jsonErrw *json.Encoder
}

func newFlowPrinter(out, errw io.Writer, mode, obsTimeLayout string, nodeName, ipTranslation bool) *flowPrinter {
	p := &flowPrinter{out: out, errw: errw, mode: mode, obsTimeLayout: obsTimeLayout, nodeName: nodeName, ipTranslation: ipTranslation}
	switch mode {
	case "table":
		p.tw = tabwriter.NewWriter(out, 2, 0, 3, ' ', 0)
	case "jsonpb":
		p.json, p.jsonErrw = json.NewEncoder(out), json.NewEncoder(errw)
	}
	return p
}

// close flushes the table.
func (p *flowPrinter) close() error {
	if p.tw != nil {
		return p.tw.Flush()
	}
	return nil
}

func (p *flowPrinter) write(res *observerpb.GetFlowsResponse) error {
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

func obsTimestamp(layout string, ts *timestamppb.Timestamp) string {
	if !ts.IsValid() {
		return "N/A"
	}
	return ts.AsTime().Format(layout)
}

func (p *flowPrinter) writeFlow(res *observerpb.GetFlowsResponse) error {
	f := res.GetFlow()
	var err error
	switch p.mode {
	case "table":
		src, dst := p.hostNames(f)
		if p.line == 0 {
			hdr := "TIMESTAMP\t"
			if p.nodeName {
				hdr += "NODE\t"
			}
			_, err = fmt.Fprint(p.tw, hdr+"SOURCE\tDESTINATION\tTYPE\tVERDICT\tSUMMARY\n")
		}
		row := obsTimestamp(p.obsTimeLayout, f.GetTime()) + "\t"
		if p.nodeName {
			row += f.GetNodeName() + "\t"
		}
		if err == nil {
			_, err = fmt.Fprint(p.tw, row+src+"\t"+dst+"\t"+obsFlowType(f)+"\t"+obsVerdict(f)+"\t"+obsSummary(f)+"\n")
		}
	case "dict":
		src, dst := p.hostNames(f)
		var b strings.Builder
		if p.line != 0 {
			b.WriteString("------------\n")
		}
		b.WriteString("  TIMESTAMP: " + obsTimestamp(p.obsTimeLayout, f.GetTime()) + "\n")
		if p.nodeName {
			b.WriteString("       NODE: " + f.GetNodeName() + "\n")
		}
		b.WriteString("     SOURCE: " + src + "\nDESTINATION: " + dst + "\n       TYPE: " + obsFlowType(f) +
			"\n    VERDICT: " + obsVerdict(f) + "\n    SUMMARY: " + obsSummary(f) + "\n")
		_, err = io.WriteString(p.out, b.String())
	case "compact":
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
			obsTimestamp(p.obsTimeLayout, f.GetTime()), node, src, srcID, arrow, dst, dstID, obsFlowType(f), obsVerdict(f), obsSummary(f))
	case "jsonpb":
		return p.json.Encode(res)
	}
	if err != nil {
		return fmt.Errorf("write flow: %w", err)
	}
	p.line++
	return nil
}

func (p *flowPrinter) writeLost(res *observerpb.GetFlowsResponse) error {
	l := res.GetLostEvents()
	first, last := l.GetFirst(), l.GetLast()
	window := ""
	if first != nil && last != nil {
		window = fmt.Sprintf(" (first: %s, last: %s)", obsTimestamp(p.obsTimeLayout, first), obsTimestamp(p.obsTimeLayout, last))
	}
	node := res.GetNodeName()
	if node == "" {
		node = "-"
	}
	var err error
	switch p.mode {
	case "table":
		if p.line == 0 {
			hdr := "TIMESTAMP\t"
			if p.nodeName {
				hdr += "NODE\t"
			}
			_, err = fmt.Fprint(p.tw, hdr+"SOURCE\tDESTINATION\tTYPE\tVERDICT\tSUMMARY\n")
		}
		row := obsTimestamp(p.obsTimeLayout, res.GetTime()) + "\t"
		if p.nodeName {
			row += node + "\t"
		}
		if err == nil {
			_, err = fmt.Fprintf(p.tw, "%s%s\t-\tEVENTS LOST\t-\tCPU(%d) - %d%s\n", row, l.GetSource(), l.GetCpu().GetValue(), l.GetNumEventsLost(), window)
		}
	case "dict":
		var b strings.Builder
		if p.line != 0 {
			b.WriteString("------------\n")
		}
		b.WriteString("  TIMESTAMP: " + obsTimestamp(p.obsTimeLayout, res.GetTime()) + "\n")
		if p.nodeName {
			b.WriteString("       NODE: " + node + "\n")
		}
		fmt.Fprintf(&b, "     SOURCE: %s\n       TYPE: EVENTS LOST\n    VERDICT: -\n    SUMMARY: CPU(%d) - %d%s\n", l.GetSource(), l.GetCpu().GetValue(), l.GetNumEventsLost(), window)
		_, err = io.WriteString(p.out, b.String())
	case "compact":
		_, err = fmt.Fprintf(p.out, "%s EVENTS LOST: %s CPU(%d) %d%s\n", obsTimestamp(p.obsTimeLayout, res.GetTime()), l.GetSource(), l.GetCpu().GetValue(), l.GetNumEventsLost(), window)
	case "jsonpb":
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
func (p *flowPrinter) writeNodeStatus(res *observerpb.GetFlowsResponse) error {
	s := res.GetNodeStatus()
	switch s.GetStateChange() {
	case relaypb.NodeState_NODE_ERROR, relaypb.NodeState_NODE_UNAVAILABLE:
	default:
		return nil
	}
	names := joinWithCutOff(s.GetNodeNames(), ", ", 50)
	var err error
	switch p.mode {
	case "jsonpb":
		return p.jsonErrw.Encode(res)
	case "dict":
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
		_, err = fmt.Fprintf(p.errw, "%s  TIMESTAMP: %s\n      STATE: %s\n      NODES: %s\n    MESSAGE: %s\n", sep, obsTimestamp(p.obsTimeLayout, res.GetTime()), s.GetStateChange(), names, msg)
	default:
		prefix := fmt.Sprintf("%s [%s]", obsTimestamp(p.obsTimeLayout, res.GetTime()), res.GetNodeName())
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

func obsPorts(f *flowpb.Flow) (string, string) {
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

func (p *flowPrinter) hostNames(f *flowpb.Flow) (string, string) {
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
	sp, dp := obsPorts(f)
	return p.hostname(f.GetIP().GetSource(), sp, srcNs, srcPod, srcSvc, f.GetSourceNames()),
		p.hostname(f.GetIP().GetDestination(), dp, dstNs, dstPod, dstSvc, f.GetDestinationNames())
}

func (p *flowPrinter) hostname(ip, port, ns, pod, svc string, names []string) string {
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

func obsFlowType(f *flowpb.Flow) string {
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

func obsVerdict(f *flowpb.Flow) string {
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

func obsSummary(f *flowpb.Flow) string {
	var b strings.Builder
	if t := f.GetIpTraceId(); t != nil && t.GetTraceId() > 0 {
		fmt.Fprintf(&b, "IP Trace ID: %d; ", t.GetTraceId())
	}
	b.WriteString(f.GetSummary()) //nolint:staticcheck // hubble prints the deprecated summary
	if a := f.GetAuthType(); a != flowpb.AuthType_DISABLED {
		b.WriteString("; Auth: " + a.String())
	}
	return b.String()
}
