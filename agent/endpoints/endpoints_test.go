package endpoints

import (
	"errors"
	"io/fs"
	"net/netip"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/flowbus/flowbus/schemas"
)

func sample() *File {
	return &File{
		Node: "lab-node",
		Pods: []Pod{
			{Namespace: "payments", Name: "checkout-api", Workload: "checkout-api", WorkloadKind: "Deployment",
				Labels:    []string{"k8s:app=checkout-api", "k8s:io.kubernetes.pod.namespace=payments"},
				IPs:       []netip.Addr{netip.MustParseAddr("10.200.0.2"), netip.MustParseAddr("fd00:fb::2")},
				Interface: "fb2h", IfIndex: 57, Identity: 4242, Node: "lab-node", NetNS: "fb-checkout-api"},
			{Namespace: "payments", Name: "ledger-svc", Workload: "ledger-svc", WorkloadKind: "Deployment",
				Labels:    []string{"k8s:app=ledger-svc"},
				IPs:       []netip.Addr{netip.MustParseAddr("10.200.0.3"), netip.MustParseAddr("fd00:fb::3")},
				Interface: "fb3h", IfIndex: 59, Identity: 4343, Node: "lab-node"},
		},
		Services: []Service{{
			Namespace: "payments", Name: "ledger-svc",
			ClusterIPs: []netip.Addr{netip.MustParseAddr("10.96.200.11")},
			Ports:      []ServicePort{{Name: "http", Port: 80, TargetPort: 8080, Protocol: "TCP"}},
			Backends:   []Backend{{Namespace: "payments", Pod: "ledger-svc", IP: netip.MustParseAddr("10.200.0.3"), Port: 8080, Protocol: "TCP"}},
		}},
	}
}

func TestWriteThenReadGivesTheSameFileAndLookupsWork(t *testing.T) {
	path := filepath.Join(t.TempDir(), "endpoints.yaml")
	want := sample()
	if err := Write(path, want); err != nil {
		t.Fatal(err)
	}
	got, err := Read(path)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.Pods, want.Pods) || !reflect.DeepEqual(got.Services, want.Services) || got.Node != want.Node {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, want)
	}
	p, ok := got.PodByIP(netip.MustParseAddr("fd00:fb::3"))
	if !ok || p.Name != "ledger-svc" {
		t.Fatalf("PodByIP(fd00:fb::3) = %v, %v; want ledger-svc", p, ok)
	}
	p, ok = got.PodByIP(netip.MustParseAddr("::ffff:10.200.0.2"))
	if !ok || p.Name != "checkout-api" {
		t.Fatalf("PodByIP(v4-mapped 10.200.0.2) = %v, %v; want checkout-api", p, ok)
	}
	if _, ok := got.PodByIP(netip.MustParseAddr("10.200.0.9")); ok {
		t.Fatal("PodByIP(10.200.0.9) found a pod; want none")
	}
	p, ok = got.PodByIfIndex(57)
	if !ok || p.Name != "checkout-api" {
		t.Fatalf("PodByIfIndex(57) = %v, %v; want checkout-api", p, ok)
	}
	s, ok := got.ServiceByBackend(netip.MustParseAddr("10.200.0.3"), 8080, "tcp")
	if !ok || s.Name != "ledger-svc" {
		t.Fatalf("ServiceByBackend = %v, %v; want ledger-svc", s, ok)
	}
	if _, ok := got.ServiceByBackend(netip.MustParseAddr("10.200.0.3"), 8080, "UDP"); ok {
		t.Fatal("ServiceByBackend matched UDP for a TCP backend")
	}
	wantEP := schemas.Endpoint{Identity: 4242, Namespace: "payments", PodName: "checkout-api", Workload: "checkout-api",
		WorkloadKind: "Deployment", Labels: []string{"k8s:app=checkout-api", "k8s:io.kubernetes.pod.namespace=payments"}}
	if ep := got.Pods[0].Endpoint(); !reflect.DeepEqual(ep, wantEP) {
		t.Fatalf("Endpoint() = %+v; want %+v", ep, wantEP)
	}
}

func TestParseRefusesBadFilesWithTheirReason(t *testing.T) {
	good, err := sample().Marshal()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, from, to, want string
	}{
		{"an unknown version is refused", "version: 1", "version: 2", "version 2: want 1"},
		{"an unknown key is refused", "node: lab-node", "node: lab-node\nnodes: x", "field nodes not found"},
		{"a malformed ip names its pod", "10.200.0.2,", "10.200.0.300,", "pod payments/checkout-api: ip"},
		{"an ip of two pods is refused", "10.200.0.3,", "10.200.0.2,", "ip 10.200.0.2 already belongs to pod payments/checkout-api"},
		{"an ifindex of two pods is refused", "ifindex: 59", "ifindex: 57", "ifindex 57 already belongs"},
		{"a backend of an unknown pod is refused", "pod: ledger-svc", "pod: ledger-svd", "backend pod payments/ledger-svd is not in the file"},
		{"a bad protocol is refused", "protocol: TCP\n    backends", "protocol: SCTP\n    backends", `protocol "SCTP"`},
		{"a truncated file is refused", "", "", "decode"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := strings.Replace(string(good), tc.from, tc.to, 1)
			if tc.from == "" {
				in = in[:3]
			}
			if in == string(good) && tc.from != "" {
				t.Fatalf("test input %q not found in\n%s", tc.from, good)
			}
			_, err := Parse([]byte(in))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Parse error = %v; want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestIdentityIsStableAndIgnoresLabelOrder(t *testing.T) {
	a := Identity([]string{"k8s:app=x", "k8s:io.kubernetes.pod.namespace=payments"})
	b := Identity([]string{"k8s:io.kubernetes.pod.namespace=payments", "k8s:app=x"})
	c := Identity([]string{"k8s:app=y", "k8s:io.kubernetes.pod.namespace=payments"})
	if a != b {
		t.Fatalf("identity depends on label order: %d != %d", a, b)
	}
	if a == c {
		t.Fatalf("different label sets share identity %d", a)
	}
	if a < 256 || a > 65535 {
		t.Fatalf("identity %d outside [256, 65535]", a)
	}
}

func TestReadOfAMissingFileSaysSo(t *testing.T) {
	_, err := Read(filepath.Join(t.TempDir(), "none.yaml"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Read(missing) = %v; want a not-exist error", err)
	}
}

func TestParseOfEveryTruncationFailsCleanlyOrGivesAValidFile(t *testing.T) {
	good, err := sample().Marshal()
	if err != nil {
		t.Fatal(err)
	}
	for n := range len(good) {
		f, err := Parse(good[:n])
		if err == nil {
			if verr := f.Validate(); verr != nil {
				t.Fatalf("truncation at %d parsed to an invalid file: %v", n, verr)
			}
		}
	}
}
