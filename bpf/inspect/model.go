package inspect

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/flowbus/flowbus/schemas/hubble"
)

// Kind and Version identify a snapshot file.
const (
	Kind    = "flowbus.bpf.snapshot"
	Version = 1
)

// ErrNeedsLinux is what Take returns on other systems.
var ErrNeedsLinux = errors.New("reading the agent's eBPF maps needs Linux")

// Snapshot is every pinned map of one agent at one time.
type Snapshot struct {
	Kind        string       `json:"kind"`
	Version     int          `json:"version"`
	Time        time.Time    `json:"time"`
	Node        string       `json:"node"`
	PinDir      string       `json:"pin_dir"`
	SocketLB    bool         `json:"socket_lb"` // the socket LB's maps were pinned
	Connections []Connection `json:"connections"`
	Services    []Service    `json:"services"`
	Endpoints   []Endpoint   `json:"endpoints"`
	IPCache     []IPEntry    `json:"ipcache"`
}

// Connection is one entry of the flow maps, oriented from its initiator.
type Connection struct {
	Proto     string         `json:"proto"`
	Src       netip.AddrPort `json:"src"`
	Dst       netip.AddrPort `json:"dst"`
	IfIndex   uint32         `json:"ifindex"`
	Direction string         `json:"direction"` // egress: the pod behind the interface opened it
	State     string         `json:"state"`     // established, midstream (opened before it was seen), ended
	Verdict   string         `json:"verdict"`
	Identity  uint32         `json:"peer_identity"`
	PolicyID  uint32         `json:"policy_id"`
	Flags     string         `json:"tcp_flags,omitempty"`
	Packets   [2]uint64      `json:"packets"` // from the initiator, from the responder
	Bytes     [2]uint64      `json:"bytes"`
	FirstSeen time.Time      `json:"first_seen"`
	LastSeen  time.Time      `json:"last_seen"`
}

// Key identifies a connection's entry: protocol, both ends, interface.
func (c Connection) Key() string {
	return fmt.Sprintf("%s %s %s %d", c.Proto, c.Src, c.Dst, c.IfIndex)
}

func (c Connection) String() string {
	return fmt.Sprintf("%s %s → %s at ifindex %d (%s)", c.Proto, c.Src, c.Dst, c.IfIndex, c.Direction)
}

// Service is a socket LB frontend and its backends in slot order.
type Service struct {
	ID        uint32    `json:"id"`
	Frontend  string    `json:"frontend"` // addr:port/proto
	Algorithm string    `json:"algorithm"`
	Backends  []Backend `json:"backends"`
}

// Backend is one backend slot of a service.
type Backend struct {
	Addr netip.AddrPort `json:"addr"`
	ID   uint32         `json:"id"`
}

// Endpoint is a pod behind an attached interface and the policy entries in
// force for it.
type Endpoint struct {
	ID       uint32 `json:"id"`
	IfIndex  uint32 `json:"ifindex"`
	Identity uint32 `json:"identity"`
	// Enforced are the directions some policy selects it in (default deny).
	Enforced []string `json:"enforced"`
	Rules    []Rule   `json:"rules"`
}

// Rule is one policy map entry.
type Rule struct {
	Direction string `json:"direction"` // ingress, egress
	Peer      uint32 `json:"peer_identity"`
	Proto     string `json:"proto"` // "any" for every protocol and port
	Port      uint16 `json:"port"`
	PortBits  uint8  `json:"port_bits"` // 16: the port; 0: any port
	Verdict   string `json:"verdict"`   // allow, deny
	Match     string `json:"match"`     // Cilium's policy match type: L3-Only, L3-L4, L4-Only, all, L3-Proto, Proto-Only
	PolicyID  uint32 `json:"policy_id"` // as the map holds it (the agent keeps the match type in the top 4 bits)
}

// Ports is the rule's port range: "8080", "8080-8095", "any".
func (r Rule) Ports() string {
	if r.Proto == "any" || r.PortBits == 0 {
		return "any"
	}
	if r.PortBits >= 16 {
		return strconv.Itoa(int(r.Port))
	}
	hi := uint32(r.Port) | 0xffff>>r.PortBits
	return fmt.Sprintf("%d-%d", r.Port, hi)
}

// String describes the rule: "allow ingress from identity 300 tcp/8080
// (L3-L4, policy 5)".
func (r Rule) String() string {
	peer := "any peer"
	if r.Peer != 0 {
		peer = "identity " + strconv.FormatUint(uint64(r.Peer), 10)
	}
	prep := "from"
	if r.Direction == "egress" {
		prep = "to"
	}
	what := "any protocol"
	if r.Proto != "any" {
		what = r.Proto + "/" + r.Ports()
	}
	return fmt.Sprintf("%s %s %s %s %s (%s, policy %d)", r.Verdict, r.Direction, prep, peer, what, r.Match, r.PolicyID&(1<<28-1))
}

func (r Rule) key() string { return r.String() + strconv.FormatUint(uint64(r.PolicyID), 10) }

// IPEntry is one ipcache entry.
type IPEntry struct {
	Prefix   netip.Prefix `json:"prefix"`
	Identity uint32       `json:"identity"`
	CIDR     uint32       `json:"cidr_identity,omitempty"` // of the narrowest prefix a policy names that holds it
}

// ProtoName is the name of an IANA protocol number, as the tables show it.
func ProtoName(p uint8) string {
	switch p {
	case 0:
		return "any"
	case 1:
		return "icmp"
	case 6:
		return "tcp"
	case 17:
		return "udp"
	case 58:
		return "icmpv6"
	case 132:
		return "sctp"
	}
	return strconv.Itoa(int(p))
}

// MatchName is Cilium's name of a policy match type (the top 4 bits of the
// agent's policy ids), as Hubble prints it.
func MatchName(m uint8) string { return hubble.PolicyMatchTypeName(uint32(m)) }

// matchOf is the match type of an entry of this shape, as the agent sets
// it (agent/source/ebpf, matchType): which of peer, protocol and port it
// names.
func matchOf(peer uint32, proto uint8, portBits uint8) uint8 {
	switch {
	case peer != 0 && proto == 0:
		return 1
	case peer != 0 && portBits == 0:
		return 5
	case peer != 0:
		return 2
	case proto == 0:
		return 4
	case portBits == 0:
		return 6
	}
	return 3
}

// Write writes s as indented JSON.
func Write(w io.Writer, s *Snapshot) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(s)
}

// WriteFile writes s to path, whole or not at all (a temporary file
// renamed over it).
func WriteFile(path string, s *Snapshot) error {
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	if err := Write(f, s); err != nil {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return os.Rename(tmp, path)
}

// Read decodes a snapshot. Another kind of document, another version, a
// truncated or corrupt one is an error saying which.
func Read(r io.Reader) (*Snapshot, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	if len(strings.TrimSpace(string(data))) == 0 {
		return nil, errors.New("empty file, not a snapshot")
	}
	var head struct {
		Kind    string `json:"kind"`
		Version *int   `json:"version"`
	}
	if err := json.Unmarshal(data, &head); err != nil {
		return nil, corrupt(err)
	}
	if head.Kind != Kind {
		return nil, fmt.Errorf("not a flowbus snapshot (kind %q, want %q): write one with 'flowbus audit snapshot'", head.Kind, Kind)
	}
	if head.Version == nil || *head.Version != Version {
		v := "none"
		if head.Version != nil {
			v = strconv.Itoa(*head.Version)
		}
		return nil, fmt.Errorf("snapshot version %s: this flowbus reads version %d", v, Version)
	}
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	var s Snapshot
	if err := dec.Decode(&s); err != nil {
		return nil, corrupt(err)
	}
	if s.Time.IsZero() {
		return nil, errors.New("corrupt snapshot: no time")
	}
	return &s, nil
}

func corrupt(err error) error {
	if errors.Is(err, io.ErrUnexpectedEOF) || strings.Contains(err.Error(), "unexpected end of JSON input") {
		return fmt.Errorf("truncated snapshot (the file ends inside the document): %w", err)
	}
	return fmt.Errorf("corrupt snapshot: %w", err)
}

// ReadFile is Read of the file at path; its errors name the file.
func ReadFile(path string) (*Snapshot, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	s, err := Read(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return s, nil
}

func sortIPCache(es []IPEntry) {
	slices.SortFunc(es, func(a, b IPEntry) int {
		if c := a.Prefix.Addr().Compare(b.Prefix.Addr()); c != 0 {
			return c
		}
		return a.Prefix.Bits() - b.Prefix.Bits()
	})
}

// compareConns orders connections by interface, protocol, source and
// destination.
func compareConns(a, b Connection) int {
	if c := cmp.Compare(a.IfIndex, b.IfIndex); c != 0 {
		return c
	}
	if c := cmp.Compare(a.Proto, b.Proto); c != 0 {
		return c
	}
	if c := a.Src.Compare(b.Src); c != 0 {
		return c
	}
	return a.Dst.Compare(b.Dst)
}
