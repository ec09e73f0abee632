package lab

import (
	"bytes"
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/flowbus/flowbus/agent/endpoints"
)

func TestDefaultTopologyIsThePaymentsFleetPlacedInOrder(t *testing.T) {
	topo, err := DefaultTopology()
	if err != nil {
		t.Fatal(err)
	}
	plan, err := NewPlan(topo, "fb", "")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range plan.Pods {
		got = append(got, p.Namespace+"/"+p.Name+" "+p.NetNS+" "+p.HostIf+" "+p.IPv4.String()+" "+p.IPv6.String())
	}
	want := []string{
		"istio-system/istio-gateway fb-istio-gateway fb1h 10.200.0.1 fd00:fb::1",
		"payments/checkout-api fb-checkout-api fb2h 10.200.0.2 fd00:fb::2",
		"payments/ledger-svc fb-ledger-svc fb3h 10.200.0.3 fd00:fb::3",
		"payments/fraud-detector fb-fraud-detector fb4h 10.200.0.4 fd00:fb::4",
		"payments/sanctions-svc fb-sanctions-svc fb5h 10.200.0.5 fd00:fb::5",
		"kube-system/kube-dns fb-kube-dns fb6h 10.200.0.6 fd00:fb::6",
		"payments/postgres-primary fb-postgres-primary fb7h 10.200.0.7 fd00:fb::7",
		"payments/rewards-cron fb-rewards-cron fb8h 10.200.0.8 fd00:fb::8",
		"payments/ledger-events-0 fb-ledger-events-0 fb9h 10.200.0.9 fd00:fb::9",
		"payments/reconciler fb-reconciler fb10h 10.200.0.10 fd00:fb::a",
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("placement:\n got %q\nwant %q", got, want)
	}
	co, _ := plan.Pod("checkout-api")
	if co.HostMAC != "06:fb:0a:c8:00:02" || co.PodMAC != "02:fb:0a:c8:00:02" {
		t.Errorf("checkout-api MACs host %s pod %s; want 06:fb:0a:c8:00:02, 02:fb:0a:c8:00:02", co.HostMAC, co.PodMAC)
	}
	wantLabels := []string{"k8s:app=checkout-api", "k8s:io.kubernetes.pod.namespace=payments"}
	if !reflect.DeepEqual(co.Labels, wantLabels) || co.Identity != endpoints.Identity(wantLabels) {
		t.Errorf("checkout-api labels %q identity %d; want %q identity %d", co.Labels, co.Identity, wantLabels, endpoints.Identity(wantLabels))
	}
	if plan.Node != "lab-node" {
		t.Errorf("node %q; want lab-node from the topology", plan.Node)
	}
}

func TestPlanEndpointsListServicesWithTheBackendsTheirSelectorPicks(t *testing.T) {
	topo, _ := DefaultTopology()
	plan, err := NewPlan(topo, "fb", "node-a")
	if err != nil {
		t.Fatal(err)
	}
	f := plan.Endpoints()
	if err := f.Validate(); err != nil {
		t.Fatal(err)
	}
	var dns *endpoints.Service
	for i := range f.Services {
		if f.Services[i].Name == "kube-dns" {
			dns = &f.Services[i]
		}
	}
	want := []endpoints.Backend{
		{Namespace: "kube-system", Pod: "kube-dns", IP: netip.MustParseAddr("10.200.0.6"), Port: 53, Protocol: "UDP"},
		{Namespace: "kube-system", Pod: "kube-dns", IP: netip.MustParseAddr("fd00:fb::6"), Port: 53, Protocol: "UDP"},
		{Namespace: "kube-system", Pod: "kube-dns", IP: netip.MustParseAddr("10.200.0.6"), Port: 53, Protocol: "TCP"},
		{Namespace: "kube-system", Pod: "kube-dns", IP: netip.MustParseAddr("fd00:fb::6"), Port: 53, Protocol: "TCP"},
	}
	if dns == nil || !reflect.DeepEqual(dns.Backends, want) {
		t.Fatalf("kube-dns backends %+v; want %+v", dns, want)
	}
	if f.Node != "node-a" || f.Pods[0].Node != "node-a" {
		t.Fatalf("node %q / %q; want the override node-a", f.Node, f.Pods[0].Node)
	}
}

func TestPodsWithTheSameLabelsShareAnIdentityAndOthersDoNot(t *testing.T) {
	topo, err := ParseTopology([]byte(`
pods:
  - {name: a, namespace: x, labels: {app: web}}
  - {name: b, namespace: x, labels: {app: web}}
  - {name: c, namespace: x, labels: {app: db}}
  - {name: d, namespace: y, labels: {app: web}}
`))
	if err != nil {
		t.Fatal(err)
	}
	p1, _ := NewPlan(topo, "fb", "n")
	p2, _ := NewPlan(topo, "fb", "n")
	id := func(p *Plan, i int) uint32 { return p.Pods[i].Identity }
	if id(p1, 0) != id(p1, 1) {
		t.Errorf("same labels, identities %d and %d", id(p1, 0), id(p1, 1))
	}
	if id(p1, 0) == id(p1, 2) || id(p1, 0) == id(p1, 3) {
		t.Errorf("different label sets share an identity: %d %d %d", id(p1, 0), id(p1, 2), id(p1, 3))
	}
	for i := range p1.Pods {
		if id(p1, i) != id(p2, i) {
			t.Errorf("pod %d: identity %d then %d; want stable", i, id(p1, i), id(p2, i))
		}
	}
}

func TestParseTopologyRefusesBadInputWithItsReason(t *testing.T) {
	for _, tc := range []struct {
		name, yaml, want string
	}{
		{"an unknown key is refused", "pods: [{name: a, namespace: x, lables: {}}]", "field lables not found"},
		{"no pods is refused", "pods: []", "no pods"},
		{"a pod name that is not a DNS label is refused", "pods: [{name: A_b, namespace: x}]", `name "A_b"`},
		{"a pod listed twice is refused", "pods: [{name: a, namespace: x}, {name: a, namespace: y}]", "pod a: listed twice"},
		{"a pod without namespace is refused", "pods: [{name: a}]", "pod a: namespace is required"},
		{"a bad IPv4 range is refused", "network: {ipv4: 10.0.0.0/33}\npods: [{name: a, namespace: x}]", `network.ipv4 "10.0.0.0/33"`},
		{"an IPv6 range in ipv4 is refused", "network: {ipv4: 'fd00::/64'}\npods: [{name: a, namespace: x}]", "want an IPv4 CIDR"},
		{"more pods than addresses is refused", "network: {ipv4: 10.0.0.0/30}\npods: [{name: a, namespace: x}, {name: b, namespace: x}, {name: c, namespace: x}]", "3 pods do not fit"},
		{"a client to an unknown pod is refused", "pods: [{name: a, namespace: x, clients: [{to: b, kind: ping}]}]", `"b" is not a pod`},
		{"a client to a port nobody serves is refused",
			"pods: [{name: a, namespace: x, clients: [{to: b, kind: tcp-echo, port: 9}]}, {name: b, namespace: x, servers: [{kind: tcp-echo, port: 7}]}]",
			"pod b has no tcp-echo server on port 9"},
		{"an http server without routes is refused", "pods: [{name: a, namespace: x, servers: [{kind: http, port: 80}]}]", "needs at least one route"},
		{"two servers on one port are refused", "pods: [{name: a, namespace: x, servers: [{kind: tcp-echo, port: 7}, {kind: grpc, port: 7}]}]", "tcp/7 already used"},
		{"an unknown server kind is refused", "pods: [{name: a, namespace: x, servers: [{kind: smtp, port: 25}]}]", `server kind "smtp"`},
		{"reset_from an unknown pod is refused", "pods: [{name: a, namespace: x, servers: [{kind: tcp-echo, port: 7, reset_from: [z]}]}]", `reset_from "z"`},
		{"a route with two ids is refused", "pods: [{name: a, namespace: x, servers: [{kind: http, port: 80, routes: [{path: '/{id}/{id}'}]}]}]", "at most one {id}"},
		{"a bad family is refused",
			"pods: [{name: a, namespace: x, clients: [{to: b, kind: ping, family: ipx}]}, {name: b, namespace: x}]", `family "ipx"`},
		{"an http client without paths is refused",
			"pods: [{name: a, namespace: x, clients: [{to: b, kind: http, port: 80}]}, {name: b, namespace: x, servers: [{kind: http, port: 80, routes: [{path: /}]}]}]",
			"needs paths"},
		{"pipeline on a new_conn edge is refused",
			"pods: [{name: a, namespace: x, clients: [{to: b, kind: http, port: 80, paths: [/], new_conn: true, pipeline: 4}]}, {name: b, namespace: x, servers: [{kind: http, port: 80, routes: [{path: /}]}]}]",
			"pipeline 4: want 2..100"},
		{"stream on an http edge is refused",
			"pods: [{name: a, namespace: x, clients: [{to: b, kind: http, port: 80, paths: [/], stream: 2}]}, {name: b, namespace: x, servers: [{kind: http, port: 80, routes: [{path: /}]}]}]",
			"stream and services are for grpc"},
		{"a dns server takes its port on tcp too",
			"pods: [{name: a, namespace: x, servers: [{kind: dns, port: 53}, {kind: tcp-echo, port: 53}]}]", "tcp/53 already used"},
		{"a dns transport other than udp and tcp is refused",
			"pods: [{name: a, namespace: x, clients: [{to: b, kind: dns, names: [x.], transport: quic}]}, {name: b, namespace: x, servers: [{kind: dns}]}]",
			`transport "quic"`},
		{"cnames on an http server are refused", "pods: [{name: a, namespace: x, servers: [{kind: http, port: 80, routes: [{path: /}], cnames: {a: b}}]}]", "cnames are for dns"},
		{"a kafka client of a topic the broker lacks is refused",
			"pods: [{name: a, namespace: x, clients: [{to: b, kind: kafka, topics: [t2]}]}, {name: b, namespace: x, servers: [{kind: kafka, topics: [t1]}]}]",
			`topic "t2" is not one pod b's kafka server has`},
		{"a kafka role other than produce and consume is refused",
			"pods: [{name: a, namespace: x, clients: [{to: b, kind: kafka, role: admin, topics: [t1]}]}, {name: b, namespace: x, servers: [{kind: kafka, topics: [t1]}]}]",
			`role "admin"`},
		{"a kafka_version that is no release is refused",
			"pods: [{name: a, namespace: x, clients: [{to: b, kind: kafka, topics: [t1], kafka_version: banana}]}, {name: b, namespace: x, servers: [{kind: kafka, topics: [t1]}]}]",
			`kafka_version "banana"`},
		{"a service without selector is refused", "pods: [{name: a, namespace: x}]\nservices: [{name: s, namespace: x}]", "selector is required"},
		{"a service with a bad cluster ip is refused", "pods: [{name: a, namespace: x}]\nservices: [{name: s, namespace: x, selector: {a: b}, cluster_ips: [1.2.3]}]", "cluster ip"},
		{"a truncated file is refused", "pods: [{name: a, namesp", "decode"},
		{"latency on a tcp-echo server is refused", "pods: [{name: a, namespace: x, servers: [{kind: tcp-echo, port: 7, latency: 1ms}]}]",
			"latency is for dns, grpc and kafka servers"},
		{"a negative server latency is refused", "pods: [{name: a, namespace: x, servers: [{kind: grpc, port: 7, latency: -1ms}]}]", "latency -1ms: want 0 to 1s"},
		{"a route latency over a second is refused", "pods: [{name: a, namespace: x, servers: [{kind: http, port: 80, routes: [{path: /, latency: 2s}]}]}]",
			"route /: latency 2s: want 0 to 1s"},
		{"a policy of an unknown kind is refused with its number",
			"pods: [{name: a, namespace: x}]\npolicies: [{apiVersion: v1, kind: ConfigMap, metadata: {name: c}}]", "policy 1: ConfigMap"},
		{"a policy with a bad selector is refused by name",
			"pods: [{name: a, namespace: x}]\npolicies: [{apiVersion: networking.k8s.io/v1, kind: NetworkPolicy, metadata: {name: ok, namespace: x}, spec: {podSelector: {}}}, " +
				"{apiVersion: networking.k8s.io/v1, kind: NetworkPolicy, metadata: {name: bad, namespace: x}, spec: {podSelector: {matchLabels: {'a b': c}}}}]",
			"policy 2: NetworkPolicy x/bad"},
		{"a policy with a malformed CIDR is refused",
			"pods: [{name: a, namespace: x}]\npolicies: [{apiVersion: networking.k8s.io/v1, kind: NetworkPolicy, metadata: {name: w, namespace: x}, spec: {podSelector: {}, egress: [{to: [{ipBlock: {cidr: 10.0.0.0/40}}]}]}}]",
			"policy 1: NetworkPolicy x/w"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseTopology([]byte(tc.yaml))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("ParseTopology error = %v; want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestNewPlanRefusesAPrefixThatCouldCollide(t *testing.T) {
	topo, _ := DefaultTopology()
	for _, p := range []string{"", "fb1", "FB", "toolongprefix", "f-b"} {
		if _, err := NewPlan(topo, p, ""); err == nil || !strings.Contains(err.Error(), "want 1 to 8 lower-case letters") {
			t.Errorf("prefix %q: error %v; want refusal", p, err)
		}
	}
}

func TestEveryExampleTopologyParses(t *testing.T) {
	files, err := filepath.Glob("examples/*.yaml")
	if err != nil || len(files) < 2 {
		t.Fatalf("examples: %v %v; want at least 2", files, err)
	}
	for _, f := range files {
		if _, err := LoadTopology(f); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// The endpoints file of the payments fleet is pinned in a golden file, so a
// change of the format or of the fleet is a visible diff. ifindex is 0 here:
// only a running lab knows it.
func TestEndpointsFileOfThePaymentsFleetMatchesTheGoldenFile(t *testing.T) {
	topo, _ := DefaultTopology()
	plan, err := NewPlan(topo, "fb", "")
	if err != nil {
		t.Fatal(err)
	}
	got, err := plan.Endpoints().Marshal()
	if err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "payments-endpoints.yaml")
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -run Golden -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("endpoints of the payments fleet differ from %s (run with -update if intended):\n%s", golden, got)
	}
	if _, err := endpoints.Parse(want); err != nil {
		t.Fatalf("golden file does not parse: %v", err)
	}
}
