package filesource

import (
	"context"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/flowbus/flowbus/agent/cluster"
	"github.com/flowbus/flowbus/agent/endpoints"
	"github.com/flowbus/flowbus/internal/syncbuf"
)

var addrs = cmp.Comparer(func(a, b netip.Addr) bool { return a == b })

func endpointsFile() *endpoints.File {
	ip := netip.MustParseAddr
	return &endpoints.File{
		Node: "lab-node",
		Pods: []endpoints.Pod{
			{Namespace: "chat", Name: "chat-relay", Workload: "chat-relay", WorkloadKind: "Deployment",
				Labels: []string{"k8s:app=chat-relay", "k8s:io.cilium.k8s.namespace.labels.team=chat", "k8s:io.cilium.k8s.policy.serviceaccount=relay",
					"k8s:io.kubernetes.pod.namespace=chat", "k8s:tier", "reserved:init"},
				IPs: []netip.Addr{ip("10.200.0.2"), ip("fd00:fb::2")}, Interface: "fb2h", IfIndex: 57, Identity: 4242, Node: "lab-node"},
			{Namespace: "payments", Name: "ledger-svc", Workload: "ledger-svc", WorkloadKind: "StatefulSet",
				Labels: []string{"k8s:app.kubernetes.io/name=ledger"}, IPs: []netip.Addr{ip("10.200.0.3")}, Interface: "fb3h", IfIndex: 59, Node: "lab-node"},
		},
		Services: []endpoints.Service{{Namespace: "payments", Name: "ledger-svc", ClusterIPs: []netip.Addr{ip("10.96.200.11")},
			Ports:    []endpoints.ServicePort{{Name: "http", Port: 80, TargetPort: 8080, Protocol: "TCP"}},
			Backends: []endpoints.Backend{{Namespace: "payments", Pod: "ledger-svc", IP: ip("10.200.0.3"), Port: 8080, Protocol: "TCP"}}}},
	}
}

func TestFromEndpointsTranslatesLabelsAndDerivesNamespaces(t *testing.T) {
	ip := netip.MustParseAddr
	got := FromEndpoints(endpointsFile())
	got.SortObjects()
	want := &cluster.Snapshot{
		Source: SourceName,
		Pods: []cluster.Pod{
			{Namespace: "chat", Name: "chat-relay", Labels: map[string]string{"app": "chat-relay", "tier": ""},
				IPs: []netip.Addr{ip("10.200.0.2"), ip("fd00:fb::2")}, Node: "lab-node", Workload: "chat-relay", WorkloadKind: "Deployment", Interface: "fb2h", IfIndex: 57},
			{Namespace: "payments", Name: "ledger-svc", Labels: map[string]string{"app.kubernetes.io/name": "ledger"},
				IPs: []netip.Addr{ip("10.200.0.3")}, Node: "lab-node", Workload: "ledger-svc", WorkloadKind: "StatefulSet", Interface: "fb3h", IfIndex: 59},
		},
		Namespaces: []cluster.Namespace{
			{Name: "chat", Labels: map[string]string{"kubernetes.io/metadata.name": "chat", "team": "chat"}},
			{Name: "payments", Labels: map[string]string{"kubernetes.io/metadata.name": "payments"}},
		},
		Services: []cluster.Service{{Namespace: "payments", Name: "ledger-svc", ClusterIPs: []netip.Addr{ip("10.96.200.11")},
			Ports:    []cluster.ServicePort{{Name: "http", Port: 80, TargetPort: 8080, Protocol: "TCP"}},
			Backends: []cluster.Backend{{Namespace: "payments", Pod: "ledger-svc", IP: ip("10.200.0.3"), Port: 8080, Protocol: "TCP"}}}},
	}
	if d := cmp.Diff(want, got, addrs); d != "" {
		t.Fatalf("(-want +got):\n%s", d)
	}
}

const goodPolicies = `# the fleet's policies
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: relay-from-api, namespace: chat}
spec:
  podSelector: {matchLabels: {app: chat-relay}}
  policyTypes: [Ingress]
  ingress:
  - from:
    - namespaceSelector: {matchLabels: {team: api}}
      podSelector: {matchLabels: {app: api}}
    - ipBlock: {cidr: 10.0.0.0/8, except: [10.1.0.0/16]}
    ports:
    - {port: grpc}
    - {protocol: UDP, port: 5000, endPort: 5010}
---
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: relay-l7}
spec:
  endpointSelector: {matchLabels: {app: chat-relay}}
  ingress:
  - toPorts: [{ports: [{port: "9000", protocol: TCP}]}]
---
apiVersion: v1
kind: List
items:
- apiVersion: cilium.io/v2
  kind: CiliumClusterwideNetworkPolicy
  metadata: {name: world}
  specs:
  - endpointSelector: {}
    egress: [{toEntities: [world]}]
- apiVersion: networking.k8s.io/v1
  kind: NetworkPolicy
  metadata: {name: deny-all}
  spec: {podSelector: {}}
`

func TestParsePoliciesKeepsEveryValidDocument(t *testing.T) {
	p, err := ParsePolicies(strings.NewReader(goodPolicies))
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Rejected) != 0 {
		t.Fatalf("rejected: %v", p.Rejected)
	}
	var nps []string
	for _, np := range p.NetworkPolicies {
		nps = append(nps, np.Namespace+"/"+np.Name)
	}
	if want := []string{"chat/relay-from-api", "default/deny-all"}; !reflect.DeepEqual(nps, want) {
		t.Errorf("network policies %v, want %v", nps, want)
	}
	if got := p.NetworkPolicies[0].Spec.Ingress[0].Ports[1]; *got.EndPort != 5010 || got.Port.IntVal != 5000 {
		t.Errorf("ports decoded as %+v", got)
	}
	want := []cluster.CiliumPolicy{
		{Namespace: "default", Name: "relay-l7", Spec: map[string]any{
			"endpointSelector": map[string]any{"matchLabels": map[string]any{"app": "chat-relay"}},
			"ingress":          []any{map[string]any{"toPorts": []any{map[string]any{"ports": []any{map[string]any{"port": "9000", "protocol": "TCP"}}}}}},
		}},
		{Name: "world", Clusterwide: true, Specs: []map[string]any{{
			"endpointSelector": map[string]any{}, "egress": []any{map[string]any{"toEntities": []any{"world"}}},
		}}},
	}
	if d := cmp.Diff(want, p.CiliumPolicies); d != "" {
		t.Errorf("cilium policies (-want +got):\n%s", d)
	}
}

func TestParsePoliciesRejectsBadDocumentsOneByOne(t *testing.T) {
	np := func(name, spec string) string {
		return "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: " + name + ", namespace: chat}\nspec: " + spec + "\n"
	}
	docs := []string{
		np("ok", "{podSelector: {}}"),
		np("unknown-field", "{podSelector: {}, ingres: []}"),
		np("bad-selector", "{podSelector: {matchExpressions: [{key: app, operator: Near, values: [a]}]}}"),
		np("bad-cidr", "{podSelector: {}, ingress: [{from: [{ipBlock: {cidr: 10.0.0.300/8}}]}]}"),
		np("except-outside", "{podSelector: {}, egress: [{to: [{ipBlock: {cidr: 10.0.0.0/16, except: [10.1.0.0/24]}}]}]}"),
		np("named-endport", "{podSelector: {}, ingress: [{ports: [{port: http, endPort: 90}]}]}"),
		np("both-peer-types", "{podSelector: {}, ingress: [{from: [{podSelector: {}, ipBlock: {cidr: 10.0.0.0/8}}]}]}"),
		np("bad-protocol", "{podSelector: {}, ingress: [{ports: [{protocol: ICMP}]}]}"),
		np("ok", "{podSelector: {}}"),
		"apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: broken, namespace: chat}\nspec: allow everything\n",
		"apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: api, namespace: chat}\n",
		"key: [unclosed\n",
		"apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: fine, namespace: chat}\nspec: {endpointSelector: {}}\n",
	}
	p, err := ParsePolicies(strings.NewReader(strings.Join(docs, "---\n")))
	if err != nil {
		t.Fatal(err)
	}
	if len(p.NetworkPolicies) != 1 || p.NetworkPolicies[0].Name != "ok" || len(p.CiliumPolicies) != 1 || p.CiliumPolicies[0].Name != "fine" {
		t.Errorf("kept %d network policies and %+v", len(p.NetworkPolicies), p.CiliumPolicies)
	}
	want := []string{
		`document 2 (line 6) NetworkPolicy chat/unknown-field: decode: error unmarshaling JSON: while decoding JSON: json: unknown field "ingres"`,
		`document 3 (line 11) NetworkPolicy chat/bad-selector: spec.podSelector.matchExpressions[0].operator: Invalid value: "Near": not a valid selector operator`,
		`document 4 (line 16) NetworkPolicy chat/bad-cidr: spec.ingress[0].from[0].ipBlock.cidr: Invalid value: "10.0.0.300/8": must be a valid CIDR: netip.ParsePrefix("10.0.0.300/8"): ParseAddr("10.0.0.300"): IPv4 field has value >255`,
		"document 5 (line 21) NetworkPolicy chat/except-outside: spec.egress[0].to[0].ipBlock.except[0]: Invalid value: \"10.1.0.0/24\": must be a strict subset of `cidr`",
		`document 6 (line 26) NetworkPolicy chat/named-endport: spec.ingress[0].ports[0].endPort: Forbidden: may not be specified when port is non-numeric`,
		`document 7 (line 31) NetworkPolicy chat/both-peer-types: spec.ingress[0].from[0]: Forbidden: may not specify more than 1 peer type`,
		`document 8 (line 36) NetworkPolicy chat/bad-protocol: spec.ingress[0].ports[0].protocol: Unsupported value: "ICMP": supported values: "TCP", "UDP", "SCTP"`,
		`document 9 (line 41) NetworkPolicy chat/ok: already defined by document 1`,
		`document 10 (line 46) CiliumNetworkPolicy chat/broken: spec is a string, want an object`,
		`document 11 (line 51) Deployment chat/api: apiVersion "apps/v1" kind "Deployment" is not a policy: want networking.k8s.io/v1 NetworkPolicy or cilium.io/v2 CiliumNetworkPolicy or CiliumClusterwideNetworkPolicy`,
	}
	var got []string
	for _, r := range p.Rejected {
		got = append(got, r.Error())
	}
	if len(got) != len(want)+1 {
		t.Fatalf("%d rejections, want %d:\n%s", len(got), len(want)+1, strings.Join(got, "\n"))
	}
	if d := cmp.Diff(want, got[:len(want)]); d != "" {
		t.Errorf("rejections (-want +got):\n%s", d)
	}
	if last := got[len(want)]; !strings.HasPrefix(last, "document 12 (line 55): not YAML: ") {
		t.Errorf("the unparsable document: %s", last)
	}
}

func FuzzParsePolicies(f *testing.F) {
	f.Add(goodPolicies)
	f.Add("apiVersion: v1\nkind: List\nitems: [1, {kind: NetworkPolicy}]\n")
	f.Add("apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: a}\nspecs: [{ingress: {}}]\n")
	f.Fuzz(func(t *testing.T, in string) {
		p, err := ParsePolicies(strings.NewReader(in))
		if err != nil {
			return
		}
		for _, np := range p.NetworkPolicies {
			if errs := validateNetworkPolicy(np); len(errs) > 0 || np.Namespace == "" {
				t.Fatalf("kept an invalid policy %s/%s: %v", np.Namespace, np.Name, errs)
			}
		}
		for _, r := range p.Rejected {
			if r.Err == nil || r.Document < 1 {
				t.Fatalf("rejection without a reason or a document: %+v", r)
			}
		}
	})
}

func TestSourceRereadsChangedFilesAndKeepsTheLastGoodSnapshot(t *testing.T) {
	dir := t.TempDir()
	epsPath, polPath := filepath.Join(dir, "endpoints.yaml"), filepath.Join(dir, "policies.yaml")
	if err := endpoints.Write(epsPath, endpointsFile()); err != nil {
		t.Fatal(err)
	}
	write := func(path, s string) {
		t.Helper()
		// Whole (renamed into place), with a later modification time than
		// the last write's however fast the test runs, so that the source
		// sees one change.
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		later := time.Now().Add(time.Duration(len(s)) * time.Millisecond)
		if err := os.Chtimes(tmp, later, later); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
	}
	write(polPath, goodPolicies)
	store, reg, logs := cluster.NewStore(), prometheus.NewRegistry(), &syncbuf.Buffer{}
	src, err := New(Config{EndpointsFile: epsPath, PoliciesFile: polPath, Store: store, ReloadEvery: 5 * time.Millisecond},
		slog.New(slog.NewTextHandler(logs, nil)), reg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx) }()
	defer func() { cancel(); <-done }()
	wait := func(after uint64) *cluster.Snapshot {
		t.Helper()
		wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
		defer wcancel()
		s, err := store.Wait(wctx, after)
		if err != nil {
			t.Fatalf("no snapshot after revision %d: %v", after, err)
		}
		return s
	}
	s := wait(0)
	if s.Source != SourceName || len(s.Pods) != 2 || len(s.NetworkPolicies) != 2 || len(s.CiliumPolicies) != 2 {
		t.Fatalf("first snapshot: %d pods, %d network policies, %d cilium policies", len(s.Pods), len(s.NetworkPolicies), len(s.CiliumPolicies))
	}

	// A good and a bad document added: the good one is in the next
	// snapshot, the bad one logged and counted.
	write(polPath, goodPolicies+"---\napiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: broken, namespace: chat}\nspec: [1]\n"+
		"---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: extra, namespace: chat}\nspec: {podSelector: {}}\n")
	s2 := wait(s.Revision)
	if len(s2.NetworkPolicies) != 3 || len(s2.CiliumPolicies) != 2 {
		t.Errorf("after a bad document: %d network policies, %d cilium policies", len(s2.NetworkPolicies), len(s2.CiliumPolicies))
	}
	counter := cluster.RejectedObjects(reg).WithLabelValues(SourceName, cluster.KindCiliumNetworkPolicy)
	deadline := time.Now().Add(5 * time.Second)
	for testutil.ToFloat64(counter) != 1 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if n := testutil.ToFloat64(counter); n != 1 {
		t.Errorf("rejected counter %v, want 1", n)
	}
	if l := logs.String(); !strings.Contains(l, "document=4") || !strings.Contains(l, "name=broken") || !strings.Contains(l, `err="spec is a list, want an object"`) {
		t.Errorf("no log line names the rejected document:\n%s", l)
	}

	// A broken endpoints file keeps the last snapshot; fixed, it is read.
	write(epsPath, "version: 1\npods: [{name: x}]\n")
	deadline = time.Now().Add(5 * time.Second)
	for testutil.ToFloat64(src) == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if n := testutil.ToFloat64(src); n != 1 {
		t.Fatalf("reload errors %v, want 1", n)
	}
	if cur := store.Latest(); cur.Revision != s2.Revision {
		t.Fatalf("a bad endpoints file published revision %d", cur.Revision)
	}
	f := endpointsFile()
	f.Pods = f.Pods[:1]
	f.Services = nil
	b, err := f.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	write(epsPath, string(b))
	if s3 := wait(s2.Revision); len(s3.Pods) != 1 || len(s3.Services) != 0 || len(s3.CiliumPolicies) != 2 {
		t.Errorf("after the fix: %d pods, %d services, %d cilium policies", len(s3.Pods), len(s3.Services), len(s3.CiliumPolicies))
	}
}

func TestNewFailsOnABadEndpointsFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "endpoints.yaml")
	if err := os.WriteFile(path, []byte("version: 2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := New(Config{EndpointsFile: path, Store: cluster.NewStore()}, nil, nil)
	if err == nil || !strings.Contains(err.Error(), "version 2: want 1") {
		t.Fatalf("New: %v, want the endpoints file's error", err)
	}
}
