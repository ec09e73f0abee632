// Package endpoints is the endpoints file, the agent's view of the cluster's
// pods and services: which pods and services exist, with the addresses and
// interfaces a datapath sees, so that an IP or an ifindex can be turned into
// a pod, its labels, its identity and a service, and so that the count-once
// rule can tell a pod (an endpoint some agent reports) from the world.
//
// The eBPF agent source reads it (--endpoints); a deployment writes it from
// its inventory, and the netns lab (deploy/lab) writes one for its pods. It is
// a small, dependency-light package on purpose.
//
// The file is YAML (JSON is valid YAML, so a JSON file reads too):
//
//	version: 1
//	node: lab-node
//	pods:
//	  - namespace: payments
//	    name: checkout-api
//	    workload: checkout-api
//	    workload_kind: Deployment
//	    labels: ["k8s:app=checkout-api", "k8s:io.kubernetes.pod.namespace=payments"]
//	    ips: [10.200.0.2, "fd00:fb::2"]
//	    interface: fb2h        # host side of the pod's veth: where tc programs attach
//	    ifindex: 57            # its ifindex in the host network namespace
//	    identity: 48212        # stable number per label set
//	    node: lab-node
//	    netns: fb-checkout-api # network namespace name (ip netns), informational
//	services:
//	  - namespace: payments
//	    name: ledger-svc
//	    cluster_ips: [10.96.200.11]
//	    ports: [{name: http, port: 80, target_port: 8080, protocol: TCP}]
//	    backends: [{namespace: payments, pod: ledger-svc, ip: 10.200.0.3, port: 8080, protocol: TCP}]
//
// Read validates everything (addresses parse, no IP or ifindex belongs to two
// pods, every backend names a pod of the file) and reports the first problem
// with the pod or service it is in; unknown keys are an error.
package endpoints

import (
	"bytes"
	"errors"
	"fmt"
	"hash/fnv"
	"net/netip"
	"os"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/flowbus/flowbus/schemas"
)

// Version is the version of the file format written by Write; Read refuses others.
const Version = 1

// File is the content of one endpoints file. Its lookup methods are safe for
// concurrent use once the File is no longer modified.
type File struct {
	Node     string
	Pods     []Pod
	Services []Service

	byIP      map[netip.Addr]int
	byIfIndex map[uint32]int
	backends  map[backendKey]int
}

// Pod is one pod.
type Pod struct {
	Namespace    string
	Name         string
	Workload     string
	WorkloadKind string
	Labels       []string // Hubble form "k8s:app=checkout-api", sorted
	IPs          []netip.Addr
	Interface    string // host-side interface of the pod (its veth)
	IfIndex      uint32 // ifindex of Interface in the host network namespace
	Identity     uint32
	Node         string
	NetNS        string
}

// Service is one Kubernetes-style service and its backends.
type Service struct {
	Namespace  string
	Name       string
	ClusterIPs []netip.Addr
	Ports      []ServicePort
	Backends   []Backend
}

// ServicePort is one port of a service.
type ServicePort struct {
	Name       string
	Port       uint16
	TargetPort uint16
	Protocol   string // "TCP" or "UDP"
}

// Backend is one pod address behind a service.
type Backend struct {
	Namespace string
	Pod       string
	IP        netip.Addr
	Port      uint16
	Protocol  string // "TCP" or "UDP"
}

type backendKey struct {
	ip    netip.Addr
	port  uint16
	proto string
}

// Identity returns the identity of a label set: a stable number in
// [256, 65535] derived from the sorted labels (FNV-1a), the range Cilium uses
// for cluster-local identities. Two different label sets can collide; the lab
// resolves a collision inside one file by taking the next free number.
func Identity(labels []string) uint32 {
	s := slices.Clone(labels)
	slices.Sort(s)
	h := fnv.New32a()
	for _, l := range s {
		h.Write([]byte(l))
		h.Write([]byte{0})
	}
	return 256 + h.Sum32()%(65536-256)
}

// PodByIP returns the pod that owns ip.
func (f *File) PodByIP(ip netip.Addr) (*Pod, bool) {
	f.index()
	i, ok := f.byIP[ip.Unmap()]
	if !ok {
		return nil, false
	}
	return &f.Pods[i], true
}

// PodByIfIndex returns the pod whose host-side interface has ifindex.
func (f *File) PodByIfIndex(ifindex uint32) (*Pod, bool) {
	f.index()
	i, ok := f.byIfIndex[ifindex]
	if !ok {
		return nil, false
	}
	return &f.Pods[i], true
}

// ServiceByBackend returns the service that has the backend ip:port/protocol
// (protocol "TCP" or "UDP", case-insensitive).
func (f *File) ServiceByBackend(ip netip.Addr, port uint16, protocol string) (*Service, bool) {
	f.index()
	i, ok := f.backends[backendKey{ip.Unmap(), port, strings.ToUpper(protocol)}]
	if !ok {
		return nil, false
	}
	return &f.Services[i], true
}

// Endpoint returns the pod as one side of a flow record.
func (p *Pod) Endpoint() schemas.Endpoint {
	return schemas.Endpoint{
		Identity:     p.Identity,
		Namespace:    p.Namespace,
		PodName:      p.Name,
		Workload:     p.Workload,
		WorkloadKind: p.WorkloadKind,
		Labels:       slices.Clone(p.Labels),
	}
}

// index builds the lookup maps once; Read and Parse call it, so a File from
// them is ready for concurrent lookups.
func (f *File) index() {
	if f.byIP != nil {
		return
	}
	f.byIP = map[netip.Addr]int{}
	f.byIfIndex = map[uint32]int{}
	f.backends = map[backendKey]int{}
	for i, p := range f.Pods {
		for _, ip := range p.IPs {
			f.byIP[ip.Unmap()] = i
		}
		if p.IfIndex != 0 {
			f.byIfIndex[p.IfIndex] = i
		}
	}
	for i, s := range f.Services {
		for _, b := range s.Backends {
			f.backends[backendKey{b.IP.Unmap(), b.Port, strings.ToUpper(b.Protocol)}] = i
		}
	}
}

// Read reads and validates the endpoints file at path.
func Read(path string) (*File, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read endpoints file: %w", err)
	}
	f, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("endpoints file %s: %w", path, err)
	}
	return f, nil
}

// Parse decodes and validates an endpoints file.
func Parse(b []byte) (*File, error) {
	var w wireFile
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&w); err != nil {
		return nil, fmt.Errorf("decode: %w", err)
	}
	if w.Version != Version {
		return nil, fmt.Errorf("version %d: want %d", w.Version, Version)
	}
	f := &File{Node: w.Node}
	for i, wp := range w.Pods {
		p := Pod{Namespace: wp.Namespace, Name: wp.Name, Workload: wp.Workload, WorkloadKind: wp.WorkloadKind,
			Labels: wp.Labels, Interface: wp.Interface, IfIndex: wp.IfIndex, Identity: wp.Identity, Node: wp.Node, NetNS: wp.NetNS}
		if p.Name == "" || p.Namespace == "" {
			return nil, fmt.Errorf("pod %d: namespace and name are required", i)
		}
		for _, s := range wp.IPs {
			ip, err := netip.ParseAddr(s)
			if err != nil {
				return nil, fmt.Errorf("pod %s/%s: ip: %w", p.Namespace, p.Name, err)
			}
			p.IPs = append(p.IPs, ip)
		}
		f.Pods = append(f.Pods, p)
	}
	for _, ws := range w.Services {
		s := Service{Namespace: ws.Namespace, Name: ws.Name}
		where := func(err error) error { return fmt.Errorf("service %s/%s: %w", s.Namespace, s.Name, err) }
		if s.Name == "" || s.Namespace == "" {
			return nil, fmt.Errorf("service %d: namespace and name are required", len(f.Services))
		}
		for _, c := range ws.ClusterIPs {
			ip, err := netip.ParseAddr(c)
			if err != nil {
				return nil, where(fmt.Errorf("cluster ip: %w", err))
			}
			s.ClusterIPs = append(s.ClusterIPs, ip)
		}
		for _, p := range ws.Ports {
			proto, err := protocol(p.Protocol)
			if err != nil {
				return nil, where(err)
			}
			s.Ports = append(s.Ports, ServicePort{Name: p.Name, Port: p.Port, TargetPort: p.TargetPort, Protocol: proto})
		}
		for _, b := range ws.Backends {
			ip, err := netip.ParseAddr(b.IP)
			if err != nil {
				return nil, where(fmt.Errorf("backend ip: %w", err))
			}
			proto, err := protocol(b.Protocol)
			if err != nil {
				return nil, where(err)
			}
			s.Backends = append(s.Backends, Backend{Namespace: b.Namespace, Pod: b.Pod, IP: ip, Port: b.Port, Protocol: proto})
		}
		f.Services = append(f.Services, s)
	}
	if err := f.Validate(); err != nil {
		return nil, err
	}
	f.index()
	return f, nil
}

func protocol(s string) (string, error) {
	switch u := strings.ToUpper(s); u {
	case "TCP", "UDP":
		return u, nil
	case "":
		return "TCP", nil
	}
	return "", fmt.Errorf("protocol %q: want TCP or UDP", s)
}

// Validate checks that no IP or ifindex belongs to two pods, that pod keys are
// unique, and that every backend names a pod of the file and one of its IPs.
func (f *File) Validate() error {
	pods := map[string]*Pod{}
	ips := map[netip.Addr]string{}
	ifs := map[uint32]string{}
	for i := range f.Pods {
		p := &f.Pods[i]
		key := p.Namespace + "/" + p.Name
		if _, dup := pods[key]; dup {
			return fmt.Errorf("pod %s: listed twice", key)
		}
		pods[key] = p
		for _, ip := range p.IPs {
			if other, dup := ips[ip.Unmap()]; dup {
				return fmt.Errorf("pod %s: ip %s already belongs to pod %s", key, ip, other)
			}
			ips[ip.Unmap()] = key
		}
		if p.IfIndex != 0 {
			if other, dup := ifs[p.IfIndex]; dup {
				return fmt.Errorf("pod %s: ifindex %d already belongs to pod %s", key, p.IfIndex, other)
			}
			ifs[p.IfIndex] = key
		}
	}
	for _, s := range f.Services {
		for _, b := range s.Backends {
			key := b.Namespace + "/" + b.Pod
			p, ok := pods[key]
			if !ok {
				return fmt.Errorf("service %s/%s: backend pod %s is not in the file", s.Namespace, s.Name, key)
			}
			if !slices.Contains(p.IPs, b.IP) {
				return fmt.Errorf("service %s/%s: backend ip %s is not an ip of pod %s", s.Namespace, s.Name, b.IP, key)
			}
		}
	}
	return nil
}

// Marshal encodes f in the file format (YAML, version 1).
func (f *File) Marshal() ([]byte, error) {
	w := wireFile{Version: Version, Node: f.Node}
	for _, p := range f.Pods {
		wp := wirePod{Namespace: p.Namespace, Name: p.Name, Workload: p.Workload, WorkloadKind: p.WorkloadKind,
			Labels: p.Labels, Interface: p.Interface, IfIndex: p.IfIndex, Identity: p.Identity, Node: p.Node, NetNS: p.NetNS}
		for _, ip := range p.IPs {
			wp.IPs = append(wp.IPs, ip.String())
		}
		w.Pods = append(w.Pods, wp)
	}
	for _, s := range f.Services {
		ws := wireService{Namespace: s.Namespace, Name: s.Name}
		for _, ip := range s.ClusterIPs {
			ws.ClusterIPs = append(ws.ClusterIPs, ip.String())
		}
		for _, p := range s.Ports {
			ws.Ports = append(ws.Ports, wirePort(p))
		}
		for _, b := range s.Backends {
			ws.Backends = append(ws.Backends, wireBackend{Namespace: b.Namespace, Pod: b.Pod, IP: b.IP.String(), Port: b.Port, Protocol: b.Protocol})
		}
		w.Services = append(w.Services, ws)
	}
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&w); err != nil {
		return nil, fmt.Errorf("encode endpoints: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("encode endpoints: %w", err)
	}
	return buf.Bytes(), nil
}

// Write writes f to path atomically (temporary file, fsync, rename), so a
// reader never sees half a file.
func Write(path string, f *File) error {
	if err := f.Validate(); err != nil {
		return err
	}
	b, err := f.Marshal()
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	fh, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("write endpoints: %w", err)
	}
	_, werr := fh.Write(b)
	serr := fh.Sync()
	cerr := fh.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write endpoints %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write endpoints: %w", err)
	}
	return nil
}

type wireFile struct {
	Version  int           `yaml:"version"`
	Node     string        `yaml:"node"`
	Pods     []wirePod     `yaml:"pods"`
	Services []wireService `yaml:"services"`
}

type wirePod struct {
	Namespace    string   `yaml:"namespace"`
	Name         string   `yaml:"name"`
	Workload     string   `yaml:"workload"`
	WorkloadKind string   `yaml:"workload_kind"`
	Labels       []string `yaml:"labels,flow"`
	IPs          []string `yaml:"ips,flow"`
	Interface    string   `yaml:"interface"`
	IfIndex      uint32   `yaml:"ifindex"`
	Identity     uint32   `yaml:"identity"`
	Node         string   `yaml:"node"`
	NetNS        string   `yaml:"netns,omitempty"`
}

type wireService struct {
	Namespace  string        `yaml:"namespace"`
	Name       string        `yaml:"name"`
	ClusterIPs []string      `yaml:"cluster_ips,flow"`
	Ports      []wirePort    `yaml:"ports"`
	Backends   []wireBackend `yaml:"backends"`
}

type wirePort struct {
	Name       string `yaml:"name"`
	Port       uint16 `yaml:"port"`
	TargetPort uint16 `yaml:"target_port"`
	Protocol   string `yaml:"protocol"`
}

type wireBackend struct {
	Namespace string `yaml:"namespace"`
	Pod       string `yaml:"pod"`
	IP        string `yaml:"ip"`
	Port      uint16 `yaml:"port"`
	Protocol  string `yaml:"protocol"`
}
