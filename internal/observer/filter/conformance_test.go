package filter

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"

	flowpb "github.com/cilium/cilium/api/v1/flow"
	v1 "github.com/cilium/cilium/pkg/hubble/api/v1"
	ciliumfilters "github.com/cilium/cilium/pkg/hubble/filters"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/flowbus/flowbus/schemas"
	"github.com/flowbus/flowbus/schemas/hubble"
)

// The conformance test runs Cilium's own filter implementation
// (pkg/hubble/filters of the cilium version go.mod pins, imported by tests
// only) and ours over the same random (flow, whitelist+blacklist) pairs and
// requires the same answer for every pair: the same flows pass, and a
// filter one side refuses the other refuses too.
//
// Cilium filters flow.Flow, we filter schemas.Flow: Cilium is given
// hubble.ToProto(flow), what our server sends for that flow, with one
// addition: ToProto leaves Layer4 empty for VRRP (112) and IGMP (2) (the
// protocol number travels in an extension), where Hubble's own flow has a
// Layer4 VRRP or IGMP, so the test sets that Layer4 for Cilium; our filter
// reads the protocol number and answers as Hubble does for such a flow.
//
// None of Cilium's filters needs its runtime: the node name filter uses
// Cilium's default cluster name, a constant (hubble.DefaultClusterName), and
// the CEL filter a logger (CEL is one of the fields we refuse). No resolver,
// no identity cache and no Kubernetes client is involved.
//
// The fields we do not support are never generated; they are listed in
// unsupportedFields, and TestUnsupportedFieldsAreRefused checks that each is
// refused naming it. Every other field of FlowFilter must have a generator
// here, so that a field added in a new cilium version fails this test until
// it is supported or refused.

// conformanceSeed makes a run reproducible; a failure prints the pair.
const (
	conformanceSeed = 20261125
	filterSets      = 1500 // whitelist+blacklist sets
	flowsPerSet     = 16   // flows each set is applied to: 24,000 pairs
)

// unsupportedFields are the FlowFilter fields flowbus refuses with
// InvalidArgument, naming the field.
var unsupportedFields = []protoreflect.Name{"source_ip_xlated", "node_labels", "trace_id", "ip_trace_id", "encrypted", "experimental"}

func TestFiltersAgreeWithCiliumOnRandomFlows(t *testing.T) {
	conformance(t, conformanceSeed)
}

func conformance(t *testing.T, seed uint64) {
	r := rand.New(rand.NewPCG(seed, 1))
	ctx := context.Background()
	aux := ciliumfilters.DefaultFilters(slog.New(slog.DiscardHandler))
	var pairs, passed, failed, refused int
	seen := map[protoreflect.Name]int{}
	for set := range filterSets {
		white, black := randomFilterList(r, 0, 3), randomFilterList(r, 0, 2)
		for _, ff := range append(slices.Clone(white), black...) {
			ff.ProtoReflect().Range(func(fd protoreflect.FieldDescriptor, _ protoreflect.Value) bool {
				seen[fd.Name()]++
				return true
			})
		}
		ours, ourErr := CompileFilters(white, black)
		cw, cerr := ciliumfilters.BuildFilterList(ctx, white, aux)
		cb, cerr2 := ciliumfilters.BuildFilterList(ctx, black, aux)
		if cerr == nil {
			cerr = cerr2
		}
		if (ourErr == nil) != (cerr == nil) {
			t.Fatalf("set %d: ours err = %v, cilium err = %v\nwhitelist %v\nblacklist %v", set, ourErr, cerr, white, black)
		}
		for range flowsPerSet {
			f := randomFlow(r)
			pairs++
			if ourErr != nil {
				refused++
				continue
			}
			got := ours.Pass(&f)
			want := ciliumfilters.Apply(cw, cb, &v1.Event{Event: ciliumView(&f)})
			if got != want {
				t.Fatalf("set %d: ours %v, cilium %v\nflow %+v\nproto %v\nwhitelist %v\nblacklist %v", set, got, want, f, ciliumView(&f), white, black)
			}
			if got {
				passed++
			} else {
				failed++
			}
		}
	}
	t.Logf("%d (flow, filter) pairs: %d passed, %d filtered out, %d refused by both", pairs, passed, failed, refused)
	if pairs < 10000 || passed < pairs/20 || failed < pairs/20 || refused > pairs/4 {
		t.Errorf("the generators are off: %d pairs, %d passed, %d filtered out, %d refused", pairs, passed, failed, refused)
	}
	fields := (&flowpb.FlowFilter{}).ProtoReflect().Descriptor().Fields()
	for i := range fields.Len() {
		name := fields.Get(i).Name()
		if slices.Contains(unsupportedFields, name) {
			continue
		}
		if seen[name] < 100 {
			t.Errorf("FlowFilter field %s was set in %d filters only: give it a generator or list it as unsupported", name, seen[name])
		}
	}
}

// ciliumView is the flow.Flow Cilium filters for f: what our server sends,
// with the Layer4 of VRRP and IGMP flows that Hubble would carry.
func ciliumView(f *schemas.Flow) *flowpb.Flow {
	p := hubble.ToProto(f)
	switch f.L4Protocol {
	case 112:
		p.L4 = &flowpb.Layer4{Protocol: &flowpb.Layer4_VRRP{VRRP: &flowpb.VRRP{}}}
	case 2:
		p.L4 = &flowpb.Layer4{Protocol: &flowpb.Layer4_IGMP{IGMP: &flowpb.IGMP{}}}
	}
	return p
}

func TestUnsupportedFieldsAreRefused(t *testing.T) {
	set := map[protoreflect.Name]func(*flowpb.FlowFilter){
		"source_ip_xlated": func(ff *flowpb.FlowFilter) { ff.SourceIpXlated = []string{"10.0.0.1"} },
		"node_labels":      func(ff *flowpb.FlowFilter) { ff.NodeLabels = []string{"zone=a"} },
		"trace_id":         func(ff *flowpb.FlowFilter) { ff.TraceId = []string{"4bf92f3577b34da6a3ce929d0e0e4736"} },
		"ip_trace_id":      func(ff *flowpb.FlowFilter) { ff.IpTraceId = []uint64{7} },
		"encrypted":        func(ff *flowpb.FlowFilter) { ff.Encrypted = []bool{true} },
		"experimental": func(ff *flowpb.FlowFilter) {
			ff.Experimental = &flowpb.FlowFilter_Experimental{CelExpression: []string{"true"}}
		},
	}
	for _, name := range unsupportedFields {
		t.Run("refuses "+string(name), func(t *testing.T) {
			ff := &flowpb.FlowFilter{SourcePod: []string{"shop/"}}
			set[name](ff)
			for _, lists := range [][2][]*flowpb.FlowFilter{{{ff}, nil}, {nil, {ff}}} {
				_, err := CompileFilters(lists[0], lists[1])
				if err == nil || !strings.Contains(err.Error(), string(name)) {
					t.Errorf("err = %v, want one naming %s", err, name)
				}
			}
		})
	}
}

// TestKafkaProtocolIsAFlowbusExtension pins the one value we accept where
// Cilium does not: protocol "kafka" (flowbus records Kafka as L7).
func TestKafkaProtocolIsAFlowbusExtension(t *testing.T) {
	ff := []*flowpb.FlowFilter{{Protocol: []string{"kafka"}}}
	if _, err := ciliumfilters.BuildFilterList(context.Background(), ff, ciliumfilters.DefaultFilters(slog.New(slog.DiscardHandler))); err == nil {
		t.Error("cilium now accepts protocol kafka: compare it in the conformance test")
	}
	fs, err := CompileFilters(ff, nil)
	if err != nil {
		t.Fatal(err)
	}
	kafka := schemas.Flow{L4Protocol: 6, L7: schemas.L7{Protocol: schemas.L7Kafka, Type: flowpb.L7FlowType_REQUEST}}
	http := schemas.Flow{L4Protocol: 6, L7: schemas.L7{Protocol: schemas.L7HTTP, Type: flowpb.L7FlowType_REQUEST}}
	if !fs.Pass(&kafka) || fs.Pass(&http) {
		t.Errorf("protocol kafka: kafka flow passes %v, http flow passes %v", fs.Pass(&kafka), fs.Pass(&http))
	}
}

// pick returns a random element of xs.
func pick[T any](r *rand.Rand, xs ...T) T { return xs[r.IntN(len(xs))] }

// some returns 1 to max random elements of xs (with repeats).
func some[T any](r *rand.Rand, max int, xs ...T) []T {
	out := make([]T, 1+r.IntN(max))
	for i := range out {
		out[i] = pick(r, xs...)
	}
	return out
}

// The value pools of flows and filters overlap, so that filters match often.
var (
	uuids         = []string{"f1", "f2", "f3", "", "F1"}
	nodeNames     = []string{"", "node-a", "node-b", "kind-worker", "cluster-1/node-a", "default/node-b", "Node-A", "a.b.c", "x/y/z"}
	clusters      = []string{"", "default", "cluster-1", "c2"}
	namespaces    = []string{"", "default", "shop", "kube-system", "data"}
	podNames      = []string{"", "frontend-7d9f", "checkout-api-5c8", "front", "redis-0", "coredns-6f6b"}
	workloads     = []string{"", "frontend", "checkout-api", "redis"}
	kinds         = []string{"", "Deployment", "StatefulSet", "DaemonSet"}
	services      = []string{"", "checkout", "kube-dns", "front"}
	fqdns         = []string{"www.example.com", "api.example.com.", "WWW.Example.COM", "cilium.io", "a-b_c.example.org", "example.com", ""}
	flowLabelPool = []string{"k8s:app=frontend", "k8s:app=checkout", "k8s:io.kubernetes.pod.namespace=shop", "k8s:tier=web",
		"reserved:world", "reserved:host", "k8s:app.kubernetes.io/name=web", "app=raw", "cidr:10.0.0.0/8", "cidr:10.1.0.0/16",
		"cidr:fd00--/64", "k8s:version=10", "k8s:version=9", "$host", "io.k8s:app=x", "unspec:app=frontend", "any:app=frontend",
		"k8s:app", "k8s:empty=", "k8s:a:b=c", "weird=a:b", "reserved:=world", "k8s:app=Front-End.v_2"}
	ips = []string{"10.0.0.1", "10.0.1.5", "10.0.2.9", "10.1.2.3", "192.168.0.1", "fd00::1", "fd00::2", "fd00:0:0:1::5",
		"::ffff:10.0.0.1", "fe80::1%eth0", "2001:db8::1"}
	ports      = []uint16{0, 53, 80, 443, 8080, 40000, 65535}
	ifNames    = []string{"", "lxc1", "lxc2", "eth0"}
	httpURLs   = []string{"", "http://checkout-api.shop:8080/api/v1/cart?id=1", "http://checkout/api/v1/pay", "/relative/path", "http://h/a b", "https://x.io/", "::bad::"}
	methods    = []string{"", "GET", "POST", "get", "DELETE"}
	headers    = []string{"X-Request-Id: abc", "Content-Type: text/plain", "X-Empty: ", "Bad", "K:v", "X-Request-Id: ab c"}
	dnsQueries = []string{"", "api.example.com.", "www.example.com.", "kube-dns.kube-system.svc.cluster.local."}
	l4Numbers  = []uint8{0, 1, 2, 6, 6, 6, 17, 17, 58, 112, 132}
)

func randomAddr(r *rand.Rand) netip.Addr {
	if r.IntN(8) == 0 {
		return netip.Addr{}
	}
	return netip.MustParseAddr(pick(r, ips...))
}

func randomEndpoint(r *rand.Rand) schemas.Endpoint {
	if r.IntN(6) == 0 {
		return schemas.Endpoint{}
	}
	e := schemas.Endpoint{
		Identity:    pick[uint32](r, 0, 1, 2, 6, 9, 11, 14, 1001, 2001, 3001),
		ClusterName: pick(r, clusters...), Namespace: pick(r, namespaces...), PodName: pick(r, podNames...),
		Workload: pick(r, workloads...), WorkloadKind: pick(r, kinds...),
	}
	for range r.IntN(5) {
		e.Labels = append(e.Labels, pick(r, flowLabelPool...))
	}
	return e
}

func randomService(r *rand.Rand) schemas.Service {
	if r.IntN(3) == 0 {
		return schemas.Service{}
	}
	return schemas.Service{Namespace: pick(r, namespaces...), Name: pick(r, services...)}
}

// randomFlow returns a flow with every field our filters read set at
// random, from the value pools.
func randomFlow(r *rand.Rand) schemas.Flow {
	f := schemas.Flow{
		UUID: pick(r, uuids...), TimeNs: 1e18 + r.Int64N(1e12), NodeName: pick(r, nodeNames...),
		Verdict:    flowpb.Verdict(r.IntN(8)),
		DropReason: pick(r, flowpb.DropReason_DROP_REASON_UNKNOWN, flowpb.DropReason_POLICY_DENIED, flowpb.DropReason_INVALID_SOURCE_IP, flowpb.DropReason(r.IntN(210))),
		Direction:  flowpb.TrafficDirection(r.IntN(3)),
		EventType:  pick[int32](r, 0, hubble.MsgTypeDrop, hubble.MsgTypeTrace, hubble.MsgTypeTrace, hubble.MsgTypePolicyVerdict, hubble.MsgTypeAccessLog, hubble.MsgTypeCapture, 99),
		IsReply:    pick(r, schemas.Unknown, schemas.True, schemas.False),
		IPVersion:  flowpb.IPVersion(r.IntN(3)),
		SrcIP:      randomAddr(r), DstIP: randomAddr(r),
		SrcPort: pick(r, ports...), DstPort: pick(r, ports...),
		L4Protocol: pick(r, l4Numbers...),
		TCPFlags:   schemas.TCPFlags(r.IntN(512)),
		Src:        randomEndpoint(r), Dst: randomEndpoint(r),
		SrcService: randomService(r), DstService: randomService(r),
		Count: 1,
	}
	f.EventSubType = pick[int32](r, 0, hubble.TraceFromLxc, 133, int32(r.IntN(300)))
	if r.IntN(3) > 0 {
		f.IfIndex, f.IfName = pick[uint32](r, 0, 7, 8), pick(r, ifNames...)
	}
	for range r.IntN(3) {
		f.SrcNames = append(f.SrcNames, pick(r, fqdns...))
	}
	for range r.IntN(3) {
		f.DstNames = append(f.DstNames, pick(r, fqdns...))
	}
	if f.L4Protocol == 1 || f.L4Protocol == 58 {
		f.ICMPType, f.ICMPCode = uint8(r.IntN(140)), uint8(r.IntN(3))
	}
	switch r.IntN(5) {
	case 0:
		f.L7 = schemas.L7{Type: flowpb.L7FlowType(r.IntN(4)), Protocol: schemas.L7HTTP, HTTPMethod: pick(r, methods...),
			HTTPURL: pick(r, httpURLs...), HTTPStatus: pick[uint32](r, 0, 200, 404, 503, 99, 600), HTTPProtocol: "HTTP/1.1"}
		for range r.IntN(3) {
			f.L7.HTTPHeaders = append(f.L7.HTTPHeaders, pick(r, headers...))
		}
	case 1:
		f.L7 = schemas.L7{Type: flowpb.L7FlowType(r.IntN(4)), Protocol: schemas.L7DNS, DNSQuery: pick(r, dnsQueries...),
			DNSObservationSource: hubble.DNSObservationSourceProxy}
	case 2:
		f.L7 = schemas.L7{Type: flowpb.L7FlowType_REQUEST, Protocol: schemas.L7Kafka, KafkaTopic: "orders"}
	}
	return f
}

// randomFilterList returns min to max random FlowFilters, as they arrive
// over the wire (an empty repeated field is absent).
func randomFilterList(r *rand.Rand, min, max int) []*flowpb.FlowFilter {
	var out []*flowpb.FlowFilter
	for range min + r.IntN(max-min+1) {
		ff := &flowpb.FlowFilter{}
		for range 1 + r.IntN(3) {
			name := fieldNames[r.IntN(len(fieldNames))]
			fieldGens[name](r, ff)
		}
		b, err := proto.Marshal(ff)
		if err != nil {
			panic(err)
		}
		wire := &flowpb.FlowFilter{}
		if err := proto.Unmarshal(b, wire); err != nil {
			panic(err)
		}
		out = append(out, wire)
	}
	return out
}

var fieldNames = func() []protoreflect.Name {
	var ns []protoreflect.Name
	for n := range fieldGens {
		ns = append(ns, n)
	}
	slices.Sort(ns)
	return ns
}()

// Filter values: mostly from the flows' pools, some in other forms
// (non-canonical IPs, prefixes, upper case, patterns), and now and then
// (vals) an invalid one, which both sides must refuse.
var (
	filterIPs = [2][]string{{"10.0.0.1", "10.0.1.5", "fd00::1", "fd00:0::1", "FD00::2", "::ffff:10.0.0.1", "fe80::1%eth0",
		"10.0.0.0/16", "10.0.0.1/32", "fd00::/64", "::ffff:10.0.0.0/104", "0.0.0.0/0", "::/0", "10.0.0.0/8"},
		{"10.0.0.300", "10.0.0.0/33", "nope", "010.0.0.1", "fe80::1%eth0/64", ""}}
	filterNames = [2][]string{{"shop/", "shop/front", "shop/checkout", "frontend", "front", "default/", "/", "kube-system/coredns",
		"/front", "a/b/c", "data/redis", "kube-system/kube-dns", "shop/checkout", "default/front"}, {""}}
	filterFQDNs = [2][]string{{"*.example.com", "www.example.com", "WWW.EXAMPLE.COM.", "cilium.io", "*", "a-b_c.example.org",
		"*example*", " cilium.io "}, {"example.com..", "exa mple.com", ""}}
	filterNodes = [2][]string{{"node-a", "node-*", "*-b", "default/node-a", "cluster-1/*", "*/node-a", "/node-b", "cluster-1/",
		"kind-*", "a.b.c", "Node-A", "*"}, {"x/y/z", "", "node_a!"}}
	filterRegexps  = [2][]string{{`^/api/v1/(cart|pay)$`, `cart`, `^http://checkout`, `example\.com\.$`, `.*`, `^$`, `kube-dns`, `a b`}, {`(`}}
	filterClusters = [2][]string{{"default", "cluster-1", "c2"}, {""}}
	labelKeys      = [2][]string{{"app", "k8s:app", "any:app", "reserved:world", "world", "reserved:host", "host",
		"io.kubernetes.pod.namespace", "k8s:io.kubernetes.pod.namespace", "app.kubernetes.io/name", "k8s:app.kubernetes.io/name",
		"cidr:10.0.0.0/8", "cidr:10.1.0.0/24", "cidr:10.0.0.0/7", "tier", "version", "k8s:version", "unspec:app", "a:b",
		"io.k8s:app", "b", "empty", "k8s:empty"}, {"cidr:fd00--/64", "Bad Key", "-x", "k8s:", ":app", "a/b/c"}}
	labelValues = [2][]string{{"frontend", "checkout", "web", "shop", "10", "9", "5", "", "Front-End.v_2", "raw", "x"}, {"a/b", "-1", "x y"}}
)

// val returns a valid value of pool, or an invalid one once in 40 draws.
func val(r *rand.Rand, pool [2][]string) string {
	if r.IntN(40) == 0 {
		return pick(r, pool[1]...)
	}
	return pick(r, pool[0]...)
}

// vals returns 1 or 2 values of pool (see val).
func vals(r *rand.Rand, pool [2][]string) []string {
	out := []string{val(r, pool)}
	if r.IntN(2) == 0 {
		out = append(out, val(r, pool))
	}
	return out
}

func randomSelector(r *rand.Rand) string {
	if r.IntN(40) == 0 {
		return pick(r, "", " ", "app in", "app=(x)", "!!app", "app,", ",app", "app==", "app!=", "app = frontend",
			"app in (,)", "app in ()", "app notin (frontend,,web)", "app in (frontend, web)", "!app,tier", "app,!tier", "app>", "version>x")
	}
	var reqs []string
	for range 1 + r.IntN(2) {
		key := val(r, labelKeys)
		v := func() string { return val(r, labelValues) }
		var req string
		switch r.IntN(9) {
		case 0:
			req = key
		case 1:
			req = "!" + key
		case 2:
			req = key + "=" + v()
		case 3:
			req = key + "==" + v()
		case 4:
			req = key + "!=" + v()
		case 5:
			req = key + " in (" + strings.Join(append(vals(r, labelValues), v()), ",") + ")"
		case 6:
			req = key + " notin (" + strings.Join(vals(r, labelValues), ", ") + ")"
		case 7:
			req = key + ">" + val(r, [2][]string{{"5", "9"}, {"x"}})
		case 8:
			req = key + "<" + pick(r, "10", "9")
		}
		reqs = append(reqs, req)
	}
	return strings.Join(reqs, pick(r, ",", ", "))
}

// fieldGens sets one field of a FlowFilter (adding values to what is
// there), for every field we support.
var fieldGens = map[protoreflect.Name]func(r *rand.Rand, ff *flowpb.FlowFilter){
	"uuid": func(r *rand.Rand, ff *flowpb.FlowFilter) { ff.Uuid = append(ff.Uuid, some(r, 2, uuids...)...) },
	"source_ip": func(r *rand.Rand, ff *flowpb.FlowFilter) {
		ff.SourceIp = append(ff.SourceIp, vals(r, filterIPs)...)
	},
	"destination_ip": func(r *rand.Rand, ff *flowpb.FlowFilter) {
		ff.DestinationIp = append(ff.DestinationIp, vals(r, filterIPs)...)
	},
	"source_pod": func(r *rand.Rand, ff *flowpb.FlowFilter) {
		ff.SourcePod = append(ff.SourcePod, vals(r, filterNames)...)
	},
	"destination_pod": func(r *rand.Rand, ff *flowpb.FlowFilter) {
		ff.DestinationPod = append(ff.DestinationPod, vals(r, filterNames)...)
	},
	"source_service": func(r *rand.Rand, ff *flowpb.FlowFilter) {
		ff.SourceService = append(ff.SourceService, vals(r, filterNames)...)
	},
	"destination_service": func(r *rand.Rand, ff *flowpb.FlowFilter) {
		ff.DestinationService = append(ff.DestinationService, vals(r, filterNames)...)
	},
	"source_fqdn": func(r *rand.Rand, ff *flowpb.FlowFilter) {
		ff.SourceFqdn = append(ff.SourceFqdn, vals(r, filterFQDNs)...)
	},
	"destination_fqdn": func(r *rand.Rand, ff *flowpb.FlowFilter) {
		ff.DestinationFqdn = append(ff.DestinationFqdn, vals(r, filterFQDNs)...)
	},
	"source_label": func(r *rand.Rand, ff *flowpb.FlowFilter) {
		ff.SourceLabel = append(ff.SourceLabel, randomSelector(r))
	},
	"destination_label": func(r *rand.Rand, ff *flowpb.FlowFilter) {
		ff.DestinationLabel = append(ff.DestinationLabel, randomSelector(r))
	},
	"source_workload": func(r *rand.Rand, ff *flowpb.FlowFilter) {
		ff.SourceWorkload = append(ff.SourceWorkload, &flowpb.Workload{Name: pick(r, workloads...), Kind: pick(r, kinds...)})
	},
	"destination_workload": func(r *rand.Rand, ff *flowpb.FlowFilter) {
		ff.DestinationWorkload = append(ff.DestinationWorkload, &flowpb.Workload{Name: pick(r, workloads...), Kind: pick(r, kinds...)})
	},
	"source_cluster_name": func(r *rand.Rand, ff *flowpb.FlowFilter) {
		ff.SourceClusterName = append(ff.SourceClusterName, vals(r, filterClusters)...)
	},
	"destination_cluster_name": func(r *rand.Rand, ff *flowpb.FlowFilter) {
		ff.DestinationClusterName = append(ff.DestinationClusterName, vals(r, filterClusters)...)
	},
	"traffic_direction": func(r *rand.Rand, ff *flowpb.FlowFilter) {
		ff.TrafficDirection = append(ff.TrafficDirection, flowpb.TrafficDirection(r.IntN(3)))
	},
	"verdict": func(r *rand.Rand, ff *flowpb.FlowFilter) { ff.Verdict = append(ff.Verdict, flowpb.Verdict(r.IntN(8))) },
	"drop_reason_desc": func(r *rand.Rand, ff *flowpb.FlowFilter) {
		ff.DropReasonDesc = append(ff.DropReasonDesc, pick(r, flowpb.DropReason_POLICY_DENIED, flowpb.DropReason_INVALID_SOURCE_IP, flowpb.DropReason_DROP_REASON_UNKNOWN))
	},
	"interface": func(r *rand.Rand, ff *flowpb.FlowFilter) {
		ff.Interface = append(ff.Interface, &flowpb.NetworkInterface{Index: pick[uint32](r, 0, 7, 8), Name: pick(r, ifNames...)})
	},
	"event_type": func(r *rand.Rand, ff *flowpb.FlowFilter) {
		ff.EventType = append(ff.EventType, &flowpb.EventTypeFilter{
			Type:         pick[int32](r, 0, hubble.MsgTypeDrop, hubble.MsgTypeTrace, hubble.MsgTypeAccessLog, hubble.MsgTypePolicyVerdict),
			MatchSubType: r.IntN(2) == 0, SubType: pick[int32](r, 0, hubble.TraceFromLxc, 133),
		})
	},
	"http_status_code": func(r *rand.Rand, ff *flowpb.FlowFilter) {
		ff.HttpStatusCode = append(ff.HttpStatusCode, vals(r, [2][]string{{"200", "503", "5+", "50+", "4+", "404", "1+"}, {"6+", "20", ""}})...)
	},
	"protocol": func(r *rand.Rand, ff *flowpb.FlowFilter) {
		ff.Protocol = append(ff.Protocol, vals(r, [2][]string{{"tcp", "UDP", "icmp", "icmpv4", "ICMPv6", "sctp", "vrrp", "igmp", "http", "dns"}, {"quic"}})...)
	},
	"source_port": func(r *rand.Rand, ff *flowpb.FlowFilter) {
		ff.SourcePort = append(ff.SourcePort, vals(r, [2][]string{{"53", "80", "8080", "40000", "0", "053"}, {"65536", "x", "+53"}})...)
	},
	"destination_port": func(r *rand.Rand, ff *flowpb.FlowFilter) {
		ff.DestinationPort = append(ff.DestinationPort, vals(r, [2][]string{{"53", "80", "8080", "443", "0", "65535"}, {"-1"}})...)
	},
	"reply": func(r *rand.Rand, ff *flowpb.FlowFilter) { ff.Reply = append(ff.Reply, r.IntN(2) == 0) },
	"dns_query": func(r *rand.Rand, ff *flowpb.FlowFilter) {
		ff.DnsQuery = append(ff.DnsQuery, vals(r, filterRegexps)...)
	},
	"source_identity": func(r *rand.Rand, ff *flowpb.FlowFilter) {
		ff.SourceIdentity = append(ff.SourceIdentity, some[uint32](r, 2, 0, 2, 1001, 2001, 11)...)
	},
	"destination_identity": func(r *rand.Rand, ff *flowpb.FlowFilter) {
		ff.DestinationIdentity = append(ff.DestinationIdentity, some[uint32](r, 2, 0, 2, 1001, 2001, 14)...)
	},
	"http_method": func(r *rand.Rand, ff *flowpb.FlowFilter) {
		ff.HttpMethod = append(ff.HttpMethod, some(r, 2, methods...)...)
	},
	"http_path": func(r *rand.Rand, ff *flowpb.FlowFilter) {
		ff.HttpPath = append(ff.HttpPath, vals(r, filterRegexps)...)
	},
	"http_url": func(r *rand.Rand, ff *flowpb.FlowFilter) {
		ff.HttpUrl = append(ff.HttpUrl, vals(r, filterRegexps)...)
	},
	"http_header": func(r *rand.Rand, ff *flowpb.FlowFilter) {
		ff.HttpHeader = append(ff.HttpHeader, &flowpb.HTTPHeader{Key: pick(r, "X-Request-Id", "Content-Type", "X-Empty", "Bad", "K", "K:v"),
			Value: pick(r, "abc", "text/plain", "", "v", " ", "ab c")})
	},
	"tcp_flags": func(r *rand.Rand, ff *flowpb.FlowFilter) {
		ff.TcpFlags = append(ff.TcpFlags, &flowpb.TCPFlags{SYN: r.IntN(2) == 0, ACK: r.IntN(3) == 0, FIN: r.IntN(4) == 0,
			RST: r.IntN(5) == 0, PSH: r.IntN(6) == 0, URG: r.IntN(8) == 0, ECE: r.IntN(8) == 0, CWR: r.IntN(8) == 0, NS: r.IntN(8) == 0})
	},
	"node_name": func(r *rand.Rand, ff *flowpb.FlowFilter) {
		ff.NodeName = append(ff.NodeName, vals(r, filterNodes)...)
	},
	"ip_version": func(r *rand.Rand, ff *flowpb.FlowFilter) {
		ff.IpVersion = append(ff.IpVersion, flowpb.IPVersion(r.IntN(3)))
	},
}
