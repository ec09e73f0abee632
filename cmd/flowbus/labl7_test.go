package main

import (
	"testing"

	"github.com/flowbus/flowbus/agent/l7/stream"
	"github.com/flowbus/flowbus/deploy/lab"
)

// TestLabL7Ports: the agent's --l7 for the payments fleet names every
// server port of an L7 kind with its protocol, and parses.
func TestLabL7Ports(t *testing.T) {
	topo, err := lab.DefaultTopology()
	if err != nil {
		t.Fatal(err)
	}
	got := labL7Ports(topo)
	if want := "http:8080,8443,9000 grpc:9090 dns:53 kafka:9092"; got != want {
		t.Errorf("--l7 %q, want %q", got, want)
	}
	if _, err := stream.ParsePorts(got); err != nil {
		t.Errorf("--l7 %q does not parse: %v", got, err)
	}
	two := &lab.Topology{Pods: []lab.PodSpec{
		{Servers: []lab.ServerSpec{{Kind: lab.KindHTTP, Port: 7000}, {Kind: lab.KindTCPEcho, Port: 7}}},
		{Servers: []lab.ServerSpec{{Kind: lab.KindGRPC, Port: 7000}}},
	}}
	if got := labL7Ports(two); got != "auto:7000" {
		t.Errorf("a port two kinds share: --l7 %q, want auto:7000", got)
	}
}
